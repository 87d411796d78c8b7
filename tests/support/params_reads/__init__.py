"""The params-read recorder: sitecustomize.py, on PYTHONPATH for the shared DVC run, gives each
stage a recording params mapping (params_recording.py)."""
