"""The sha256 of a requirements file's requirement lines, comments and blank lines left out, so
that a reworded comment does not call for a new lock (.ci/lock writes it; tests/test_lock.py checks it).

Run: python .ci/requirements_digest.py requirements.txt
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path


def requirement_lines(text: str) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def digest(path: str | Path) -> str:
    return hashlib.sha256("\n".join(requirement_lines(Path(path).read_text(encoding="utf-8"))).encode()).hexdigest()


if __name__ == "__main__":
    print(digest(sys.argv[1]))
