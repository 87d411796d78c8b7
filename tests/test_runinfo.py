"""medqa_scale.core.runinfo: what every run records about its libraries, hardware and inputs.

Run: python -m pytest tests/test_runinfo.py -q
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata

from medqa_scale.core.runinfo import LIBRARIES, environment, revisions


def test_environment_names_every_library_version_and_the_hardware():
    env = environment()
    assert set(env["libraries"]) == set(LIBRARIES)
    assert env["libraries"]["torch"] == metadata.version("torch")
    assert env["libraries"]["transformers"] == metadata.version("transformers")
    assert env["hardware"]["cpu_count"] >= 1 and env["hardware"]["torch_threads"] >= 1
    assert env["python"].count(".") == 2


def test_revisions_hold_the_model_provenance_and_the_md5_of_each_data_file(tmp_path):
    (tmp_path / "provenance.json").write_text(json.dumps({"source": "hf", "resolved_commit": "a" * 40}))
    data = tmp_path / "train.jsonl"
    data.write_bytes(b'{"q": 1}\n')
    got = revisions(tmp_path, data)
    assert got == {"model": {"source": "hf", "resolved_commit": "a" * 40},
                   "data": {str(data): hashlib.md5(b'{"q": 1}\n').hexdigest()}}
