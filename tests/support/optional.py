"""The optional pieces some tests need: llama-cpp-python (the GGUF checks; its server extra for the
judge's end-to-end test) and Chromium (the web page
and DVC plots in a real browser). Without them those tests skip, naming the install command; CI
sets MEDQA_REQUIRE_OPTIONAL=1 (.ci/run), which turns each such skip into a failure, so CI always
runs them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

REQUIRE = "MEDQA_REQUIRE_OPTIONAL"
LLAMA_CPP_INSTALL = "pip install llama-cpp-python==0.3.36"
LLAMA_CPP_SERVER_INSTALL = "pip install 'llama-cpp-python[server]==0.3.36' sse-starlette==3.7.1 starlette-context==0.3.6"
CHROMIUM_INSTALL = "apt-get install -y chromium"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def missing(what: str, install: str) -> None:
    """Skip the test, or fail it where MEDQA_REQUIRE_OPTIONAL=1, saying how to install `what`."""
    message = f"{what} is not installed: `{install}` (docs/testing.md)"
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{message}; {REQUIRE}=1 requires it")
    pytest.skip(message)


def need_llama_cpp() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        missing("llama-cpp-python", LLAMA_CPP_INSTALL)


def need_llama_cpp_server() -> None:
    """llama-cpp-python with its OpenAI-compatible server (the `server` extra)."""
    if any(importlib.util.find_spec(m) is None for m in ("llama_cpp", "sse_starlette", "starlette_context")):
        missing("llama-cpp-python's server", LLAMA_CPP_SERVER_INSTALL)


def need_chromium() -> str:
    """The Chromium executable the browser tests drive (Debian's: Playwright's own download is unreachable)."""
    if not os.path.exists(CHROMIUM):
        missing(f"Chromium ({CHROMIUM})", CHROMIUM_INSTALL)
    return CHROMIUM
