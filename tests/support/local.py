"""Helpers for tests that reach this machine only: a free localhost port, and Debian's Chromium
(Playwright's own browser download is unreachable here)."""

from __future__ import annotations

import socket

from support.optional import need_chromium


def free_port() -> int:
    """A localhost port nothing listens on (the OS's pick, released again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_chromium(playwright):
    """Headless Chromium through Playwright; without Chromium the test skips (fails in CI), naming the install."""
    return playwright.chromium.launch(executable_path=need_chromium(), args=["--no-sandbox"])
