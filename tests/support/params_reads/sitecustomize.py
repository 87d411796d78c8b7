"""Records which params keys a process reads, for tests/test_pipeline.py's declared-params test.

On PYTHONPATH (tests/support/dvc_repo.py puts it there for the shared DVC run) with
MEDQA_RECORD_PARAMS set to a folder, every process that imports medqa_scale.core.params gets a
load_params whose mapping records each key read, and at exit writes {"argv", "reads"} to
<folder>/<pid>.json. Without the variable it does nothing.
"""

import os

if os.environ.get("MEDQA_RECORD_PARAMS"):
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/support
    import params_recording

    params_recording.install(os.environ["MEDQA_RECORD_PARAMS"])
