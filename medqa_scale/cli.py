"""How every entry point starts and fails: logging configured once, and bad input a user can fix
turned into one clear message and exit status 2 instead of a traceback."""

from __future__ import annotations

import logging
import sys

NOISY_LOGGERS = ("jieba", "httpx", "urllib3", "filelock")


class PipelineError(Exception):
    """Bad input a user can fix; the message names what is wrong and how to fix it."""


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run(main) -> None:
    """Run an entry point's `main()`; a PipelineError prints its message alone and exits with 2."""
    configure_logging()
    try:
        main()
    except PipelineError as e:
        logging.getLogger(main.__module__).error("%s", e)
        sys.exit(2)
