"""Writes that leave either the old output or the complete new one, never half of one.

Each output is written to a hidden temporary sibling (`.<name>.<random>.tmp`), flushed to disk
with its directory, and renamed into place. DVC links outputs to its cache (hardlink/symlink),
so writing a new file and renaming it also keeps us from writing through a link into the cache.

A directory output replaces the old one with one atomic exchange (Linux renameat2
RENAME_EXCHANGE). Where the filesystem cannot exchange, the old directory is first renamed to
`.<name>.old`; `remove_stale()` puts it back if a kill came between the two renames. Every stage
calls `remove_stale()` on its outputs before it starts, which also deletes temporaries that a
killed run left behind (for the study's base model, 6 GB).
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

_UMASK = os.umask(0)
os.umask(_UMASK)
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@contextmanager
def atomic_path(final: Path | str, *, directory: bool = False):
    """Yield a temporary path beside `final`; move it onto `final` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, (0o777 if directory else 0o666) & ~_UMASK)  # mkstemp/mkdtemp make them private
        _fsync_tree(tmp)
        if directory and final.exists():
            _replace_directory(tmp, final)
        else:
            os.replace(tmp, final)
        _fsync(final.parent)
    finally:
        _remove(tmp)


def _replace_directory(new: Path, final: Path) -> None:
    if _exchange(new, final):
        return  # `new` now holds the old directory; the finally clause removes it
    old = _old_path(final)
    _remove(old)
    final.rename(old)
    new.rename(final)  # a kill before this line leaves `old`, which remove_stale() restores
    _remove(old)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step; False where the OS or filesystem cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(a))


def remove_stale(*outputs: Path | str) -> None:
    """Clean up after a killed run: delete the temporaries it left beside each output, and put
    back an old directory that was moved aside but not yet replaced."""
    for final in map(Path, outputs):
        if not final.parent.is_dir():
            continue
        for tmp in sorted(final.parent.glob(f".{final.name}.*.tmp")):
            log.info("removing %s, left by an earlier run that was stopped", tmp)
            _remove(tmp)
        old = _old_path(final)
        if old.exists() and not final.exists():
            log.info("restoring %s from %s, left by an earlier run that was stopped", final, old)
            old.rename(final)
        _remove(old)


def _old_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.old")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    """Flush a file, or every file and directory under a directory, to disk."""
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            for name in files:
                _fsync(Path(root) / name)
        for root, dirs, _ in os.walk(path, topdown=False):
            for name in dirs:
                _fsync(Path(root) / name)
    _fsync(path)


def write_json(path: Path | str, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def write_jsonl(path: Path | str, records) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")


def read_json(path: Path | str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_jsonl(path: Path | str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
