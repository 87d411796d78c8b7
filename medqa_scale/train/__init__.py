"""Training: the Trainer and its loss, what a run cost, the resume protocol, and the memory and hours a
run needs before it starts (with the presets' tables). Imports core and model."""
