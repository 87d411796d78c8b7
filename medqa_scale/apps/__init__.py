"""The commands that are not stages, each a thin layer over the library (python -m medqa_scale.apps.<name>):
app (the web page), chat, export, doctor, sweep. Nothing in the library or stages/ imports them."""
