"""How every entry point starts and fails: logging configured once, and bad input a user can fix
turned into one clear message and exit status 2 instead of a traceback."""

from __future__ import annotations

import logging
import sys
import warnings

NOISY_LOGGERS = ("jieba", "httpx", "urllib3", "filelock")


class PipelineError(Exception):
    """Bad input a user can fix; the message names what is wrong and how to fix it."""


# Library warnings about calls that are not ours, filtered once here (each names who calls it).
# Deprecations in our own calls and numeric warnings (fp16 overflow, NaN) still show.
QUIET_WARNINGS = (
    # peft 0.21.2's PeftModel.__init__ calls transformers 5's deprecated is_gradient_checkpointing
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),
    # peft 0.21.2's prepare_model_for_kbit_training calls the deprecated gradient_checkpointing_enable
    (FutureWarning, r"`gradient_checkpointing_enable` is deprecated"),
)


class DropMessages(logging.Filter):
    """Drops a logger's records whose message starts with one of `prefixes`."""

    def __init__(self, *prefixes: str):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


# bitsandbytes 0.50, on a CPU with AVX512-BF16 and without the optional `kernels` package, logs on
# import that it falls back to its own 4-bit CPU code: harmless, and printed by every process that
# imports peft (which imports bitsandbytes). Installed when this module is imported, not in
# configure_logging: bitsandbytes logs at import time, and a stage may import it (through peft)
# before its main() runs; every entry point imports this module first or before peft.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
    DropMessages("Failed to load CPU gemm_4bit_forward from kernels-community"))


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for category, message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def run(main) -> None:
    """Run an entry point's `main()`; a PipelineError prints its message alone and exits with 2."""
    configure_logging()
    try:
        main()
    except PipelineError as e:
        logging.getLogger(main.__module__).error("%s", e)
        sys.exit(2)
