"""medqa_scale.core.cli: a PipelineError becomes one logged message and exit status 2.

Run: python -m pytest tests/test_cli.py -q
"""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from medqa_scale.core.cli import PipelineError, run

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_a_pipeline_error_exits_2_with_its_message(caplog):
    def main():
        raise PipelineError("data.local_path: 'x.jsonl' is not a file; point it at a JSONL file")

    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exit_:
        run(main)
    assert exit_.value.code == 2
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "data.local_path: 'x.jsonl' is not a file; point it at a JSONL file"]


def test_a_successful_main_returns_and_other_errors_are_not_hidden():
    calls = []
    run(lambda: calls.append(1))
    assert calls == [1]
    with pytest.raises(ZeroDivisionError):
        run(lambda: 1 / 0)


def test_the_message_is_printed_without_a_traceback():
    code = ("from medqa_scale.core.cli import PipelineError, run\n"
            "def main():\n    raise PipelineError('seed: must be >= 0, got -1')\n"
            "run(main)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "seed: must be >= 0, got -1" in proc.stderr and "Traceback" not in proc.stderr


def test_the_bitsandbytes_cpu_kernel_notice_is_dropped_and_other_warnings_are_not(capsys):
    """bitsandbytes logs it at import on CPUs with AVX512-BF16 (not every machine has one), so the
    record is sent through its logger as bitsandbytes sends it."""
    import logging

    import medqa_scale.core.cli  # noqa: F401  (installs the filter)

    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    try:
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure ...", "err")
        logger.warning("something else went wrong")
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert "kernels-community" not in err and "something else went wrong" in err


def test_library_deprecations_that_are_not_ours_are_filtered_and_ours_still_show():
    import warnings

    from medqa_scale.core.cli import configure_logging

    configure_logging()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        configure_logging()  # the filters go in front of "default"
        warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
        warnings.warn("`our_function` is deprecated", FutureWarning)
    assert [str(w.message) for w in caught] == ["`our_function` is deprecated"]
