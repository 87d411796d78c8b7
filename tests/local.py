"""Helpers for tests that reach this machine only: a free localhost port, and Debian's Chromium
(Playwright's own browser download is unreachable here)."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    """A localhost port nothing listens on (the OS's pick, released again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_chromium(playwright):
    """Headless Chromium through Playwright, or the test fails saying how to install it."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: `apt-get install -y chromium` (README, Set up and run)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
