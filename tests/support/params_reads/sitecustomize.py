"""Records which params keys a process reads, for tests/test_params_declared.py.

On PYTHONPATH (tests/support/dvc_repo.py puts this folder there for the shared DVC run) with
MEDQA_RECORD_PARAMS set to a folder, every process that imports medqa_scale.core.params gets a
load_params whose mapping records each key read, and at exit writes {"argv", "reads"} to
<folder>/<pid>.json. Without the variable it does nothing. Only this folder is on the path, so
nothing else of the tests can shadow a module of the processes it runs in.
"""

import os

if os.environ.get("MEDQA_RECORD_PARAMS"):
    import params_recording

    params_recording.install(os.environ["MEDQA_RECORD_PARAMS"])
