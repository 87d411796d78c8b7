"""bench/gpu_check.sh in its dry-run mode (CPU, toy sizes): every step of the GPU check runs end to
end and lands in its table, so that the script does not break unnoticed between the rare runs on
a lent GPU. The figures are not judged here: toy sizes say nothing about a GPU.

Run: python -m pytest tests/test_gpu_check.py -q
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_the_dry_run_runs_every_check_and_prints_one_table(tmp_path):
    measured = (ROOT / "bench/measured.json").read_bytes() if (ROOT / "bench/measured.json").exists() else None
    out = subprocess.run(["bash", "bench/gpu_check.sh", "--dry-run", "--out", str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, env={**os.environ, "PYTHON": sys.executable})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    table = (tmp_path / "gpu_check.md").read_text(encoding="utf-8")
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1] for line in table.splitlines()[2:]}
    assert rows["environment"] == rows["built-in base model"] == "ok"
    assert rows["train + generate lora fp32"] == rows["train + generate qlora fp32"] == "ok"
    assert rows["3B regime: ours against plain Trainer + PEFT"] == "ok"
    assert rows["doctor's memory estimate, lora"] == rows["doctor's memory estimate, qlora"] == "ok"
    assert "lora: tokens/s" in table and "qlora: tokens/s" in table
    assert table in out.stdout  # the same table on the console
    # A dry run records nothing in the repository's measured tokens/s (the doctor reads them).
    assert ((ROOT / "bench/measured.json").read_bytes() if (ROOT / "bench/measured.json").exists() else None) == measured
