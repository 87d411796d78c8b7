"""The locked install: requirements.lock (CPU) and requirements-cuda.lock (GPU) pin every package
with hashes, were generated from the current requirements.txt, and are what this environment runs.

Run: python -m pytest tests/test_lock.py -q
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".ci"))
from requirements_digest import digest, requirement_lines  # noqa: E402

LOCKS = ("requirements.lock", "requirements-cuda.lock")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()


def pins(path: Path) -> dict[str, tuple[str, int]]:
    """{package: (version, hashes)} of a hashed lock file."""
    out, current = {}, None
    for line in path.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"^([A-Za-z0-9][A-Za-z0-9_.\-\[\]]*)==(\S+)", line):
            current = canonical(m.group(1))
            out[current] = (m.group(2), 0)
        elif current and "--hash=sha256:" in line:
            out[current] = (out[current][0], out[current][1] + line.count("--hash=sha256:"))
    return out


def direct() -> dict[str, str]:
    out = {}
    for line in requirement_lines((ROOT / "requirements.txt").read_text(encoding="utf-8")):
        name, version = line.split("==")
        out[canonical(name)] = version
    return out


@pytest.mark.parametrize("lock", LOCKS)
def test_each_lock_was_generated_from_the_current_direct_requirements(lock):
    header = (ROOT / lock).read_text(encoding="utf-8").split("\n", 3)[:3]
    recorded = next((line.rsplit(" ", 1)[1] for line in header if "requirements.txt sha256:" in line), None)
    assert recorded == digest(ROOT / "requirements.txt"), (
        f"requirements.txt changed since {lock} was generated: run `bash .ci/lock` and commit both lock files")


@pytest.mark.parametrize("lock", LOCKS)
def test_each_lock_pins_every_direct_requirement_and_hashes_every_package(lock):
    locked = pins(ROOT / lock)
    for name, version in direct().items():
        assert name in locked, f"{name} is missing from {lock}"
        assert locked[name][0].split("+")[0] == version, f"{name}: {locked[name][0]} in {lock}, {version} in requirements.txt"
    assert all(hashes for _, hashes in locked.values()), [n for n, (_, h) in locked.items() if not h]


def test_the_cpu_lock_takes_torchs_cpu_build_and_the_cuda_lock_its_cuda_libraries():
    cpu, cuda = pins(ROOT / "requirements.lock"), pins(ROOT / "requirements-cuda.lock")
    assert cpu["torch"][0].endswith("+cpu") and not any(n.startswith("nvidia-cu") for n in cpu)
    assert "+" not in cuda["torch"][0] and any(n.startswith("nvidia-cu") for n in cuda)


def test_this_environment_is_the_cpu_lock():
    # The set-up installs requirements.lock: every package at its locked version. Packages added beside
    # it (the optional llama-cpp-python, see docs/testing.md) are allowed.
    locked = pins(ROOT / "requirements.lock")
    installed = {canonical(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    wrong = {name: (version, installed.get(name)) for name, (version, _) in locked.items() if installed.get(name) != version}
    assert not wrong, f"installed packages differ from requirements.lock (locked, installed): {wrong}"
