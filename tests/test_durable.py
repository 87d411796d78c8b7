"""Tests of medqa_scale.core.durable: an output is the old one or the complete new one, never half of
one, even when the writer is killed; remove_stale() cleans up after a killed run.

One test starts a Python subprocess and SIGKILLs it mid-write (POSIX only, about a second).
Run: python -m pytest -q tests/test_durable.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from medqa_scale.core import durable
from medqa_scale.core.durable import (atomic_path, read_json, read_jsonl, remove_stale, write_json,
                                 write_jsonl)

REPO = Path(__file__).resolve().parents[1]


def test_atomic_path_replaces_on_success(tmp_path):
    final = tmp_path / "sub" / "out.txt"  # parent is created
    with atomic_path(final) as tmp:
        assert tmp.parent == final.parent and tmp != final
        tmp.write_text("new", encoding="utf-8")
        assert not final.exists()
    assert final.read_text(encoding="utf-8") == "new"
    assert sorted(os.listdir(final.parent)) == ["out.txt"]


def test_atomic_path_keeps_old_content_and_no_temp_when_block_raises(tmp_path):
    final = tmp_path / "out.txt"
    final.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(final) as tmp:
            tmp.write_text("half", encoding="utf-8")
            raise RuntimeError("boom")
    assert final.read_text(encoding="utf-8") == "old"
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]


@pytest.mark.parametrize("exchange", ["renameat2", "rename aside"])
def test_atomic_path_directory_replaces_existing_dir(tmp_path, monkeypatch, exchange):
    if exchange == "rename aside":
        # Filesystems without RENAME_EXCHANGE take the path through `.<name>.old`.
        monkeypatch.setattr(durable, "_exchange", lambda a, b: False)
    final = tmp_path / "split"
    final.mkdir()
    (final / "stale.jsonl").write_text("x", encoding="utf-8")
    with atomic_path(final, directory=True) as tmp:
        assert tmp.is_dir()
        (tmp / "test.jsonl").write_text("t", encoding="utf-8")
    assert sorted(os.listdir(final)) == ["test.jsonl"]
    assert (final / "test.jsonl").read_text(encoding="utf-8") == "t"
    assert sorted(os.listdir(tmp_path)) == ["split"]  # no .split.*.tmp or .split.old left behind


def test_atomic_path_directory_failure_keeps_old_dir(tmp_path):
    final = tmp_path / "split"
    final.mkdir()
    (final / "keep.jsonl").write_text("k", encoding="utf-8")
    with pytest.raises(KeyError):
        with atomic_path(final, directory=True) as tmp:
            (tmp / "new.jsonl").write_text("n", encoding="utf-8")
            raise KeyError("x")
    assert sorted(os.listdir(final)) == ["keep.jsonl"]
    assert sorted(os.listdir(tmp_path)) == ["split"]


def test_write_json_sorted_keys_and_unicode(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"b": 1, "a": {"d": 2, "c": [3]}, "中": "文"})
    assert path.read_text(encoding="utf-8") == (
        '{\n  "a": {\n    "c": [\n      3\n    ],\n    "d": 2\n  },\n  "b": 1,\n  "中": "文"\n}\n'
    )


def test_write_json_read_json_round_trip(tmp_path):
    obj = {"rouge-1": 12.5, "runs": ["lora-1k", "qlora-2k"], "中文": {"n": 3, "none": None, "ok": True}}
    path = tmp_path / "m.json"
    write_json(path, obj)
    assert read_json(path) == obj


def test_write_json_fsyncs_the_file_and_its_directory(tmp_path, monkeypatch):
    # A rename is durable only once the file's data and the directory entry are both on disk.
    synced = []
    real_fsync = os.fsync

    def record(fd):
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(durable.os, "fsync", record)
    path = tmp_path / "m.json"
    write_json(path, {"a": 1})
    assert len(synced) >= 2
    assert path.stat().st_ino in synced  # the renamed file is the one flushed
    assert tmp_path.stat().st_ino in synced  # and the directory holding its new name


def test_write_jsonl_round_trip(tmp_path):
    records = [{"q": "头痛\u2028怎么办", "a": "休息"}, {"q": "x", "a": "y\nz"}]
    path = tmp_path / "r.jsonl"
    write_jsonl(path, records)
    assert path.read_text(encoding="utf-8").count("\n") == 2
    assert read_jsonl(path) == records


def test_remove_stale_deletes_temporaries_of_that_output_only(tmp_path):
    out = tmp_path / "out.json"
    out.write_text("current", encoding="utf-8")
    (tmp_path / ".out.json.a1b2.tmp").write_text("half", encoding="utf-8")
    (tmp_path / ".out.json.c3d4.tmp").mkdir()
    (tmp_path / ".out.json.c3d4.tmp" / "part").write_text("half", encoding="utf-8")
    # Not temporaries of `out.json`: another output's, and names that only look alike.
    keep = [".other.json.e5f6.tmp", "other.json", ".out.json.bak", "out.json.x.tmp"]
    for name in keep:
        (tmp_path / name).write_text("keep", encoding="utf-8")

    remove_stale(out)

    assert sorted(os.listdir(tmp_path)) == sorted(keep + ["out.json"])
    assert out.read_text(encoding="utf-8") == "current"


@pytest.mark.parametrize("new_in_place,expected", [
    (False, "old"),  # a kill between the two renames of the fallback leaves `.out.old` and no `out`: restore it
    (True, "new"),   # the new directory made it into place: the old one only needs deleting
])
def test_remove_stale_settles_an_old_directory_left_aside(tmp_path, new_in_place, expected):
    out = tmp_path / "out"
    if new_in_place:
        out.mkdir()
        (out / "data.txt").write_text("new", encoding="utf-8")
    old = tmp_path / ".out.old"
    old.mkdir()
    (old / "data.txt").write_text("old", encoding="utf-8")

    remove_stale(out)

    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert (out / "data.txt").read_text(encoding="utf-8") == expected


def test_remove_stale_of_an_output_whose_directory_does_not_exist(tmp_path):
    # A first run has nothing to clean and must not fail or create anything.
    remove_stale(tmp_path / "missing" / "out.json")
    assert not (tmp_path / "missing").exists()


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from medqa_scale.core.durable import atomic_path

    with atomic_path(Path(sys.argv[1]), directory=True) as tmp:
        (tmp / "new.txt").write_text("new", encoding="utf-8")
        time.sleep(120)
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_a_writer_killed_mid_write_leaves_the_old_directory_and_a_temporary(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(out)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # Kill only once the writer is inside the block: its temporary holds the whole new file.
        deadline = time.monotonic() + 60
        while not any(p.read_text(encoding="utf-8") == "new" for p in tmp_path.glob(".out.*.tmp/new.txt")):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the writer never created its temporary directory"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()

    # SIGKILL runs no cleanup: the old output is whole and the temporary is left behind.
    assert sorted(os.listdir(out)) == ["old.txt"]
    assert (out / "old.txt").read_text(encoding="utf-8") == "old"
    left = list(tmp_path.glob(".out.*.tmp"))
    assert len(left) == 1 and (left[0] / "new.txt").read_text(encoding="utf-8") == "new"

    remove_stale(out)

    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert sorted(os.listdir(out)) == ["old.txt"]
