"""Who may use the web page: credentials from the environment, never from the command line or
params (both end up in shell history, process lists and dvc.lock), a refusal to serve other
machines without them, and a per-user limit on asks.

    MEDQA_APP_AUTH=user:password[,user2:password2]    or
    MEDQA_APP_AUTH_FILE=/path/to/file                 (one user:password per line; # comments)
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from pathlib import Path

from medqa_scale.core.cli import PipelineError

AUTH_ENV, AUTH_FILE_ENV = "MEDQA_APP_AUTH", "MEDQA_APP_AUTH_FILE"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def credentials(environ: dict) -> list[tuple[str, str]]:
    """The (user, password) pairs the environment names; [] when it names none. A malformed entry
    stops with a message that shows where it is, never the password."""
    if environ.get(AUTH_FILE_ENV):
        path = Path(environ[AUTH_FILE_ENV])
        if not path.is_file():
            raise PipelineError(f"{AUTH_FILE_ENV} names {path}, which is not a file; give a file of user:password lines")
        entries = [(f"{path} line {n}", line.strip()) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                   if line.strip() and not line.lstrip().startswith("#")]
    elif environ.get(AUTH_ENV):
        entries = [(f"{AUTH_ENV} entry {n}", part.strip()) for n, part in enumerate(environ[AUTH_ENV].split(","), 1)]
    else:
        return []
    pairs = []
    for where, entry in entries:
        user, sep, password = entry.partition(":")
        if not sep or not user.strip() or not password:
            raise PipelineError(f"{where} is not user:password; write each login as user:password")
        pairs.append((user.strip(), password))
    if not pairs:
        raise PipelineError(f"{AUTH_FILE_ENV} names a file with no user:password line")
    return pairs


def check_exposure(host: str, logins: list) -> None:
    """Serving any address but this machine's own needs logins."""
    if host not in LOCAL_HOSTS and not logins:
        raise PipelineError(
            f"--host {host} would serve every model and the whole test set to anyone who can reach the port, "
            f"with no login. Set {AUTH_ENV}=user:password (several: comma-separated) or {AUTH_FILE_ENV}=<file of "
            "user:password lines> in the environment, or leave --host at 127.0.0.1 (this machine only)")


class RateLimit:
    """At most `per_minute` events per key in any 60 s (a sliding window); thread-safe, as Gradio
    calls handlers from worker threads. `clock` is for tests."""

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.per_minute, self.clock = per_minute, clock
        self._seen: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()

    def wait(self, key: str) -> float:
        """0 and the event counted when `key` may go on; otherwise the seconds until it may."""
        if self.per_minute <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            seen = self._seen[key]
            while seen and now - seen[0] >= 60:
                seen.popleft()
            if len(seen) >= self.per_minute:
                return 60 - (now - seen[0])
            seen.append(now)
            return 0.0
