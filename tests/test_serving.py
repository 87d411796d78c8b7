"""medqa_scale.serve.serving: every run answering from one loaded base per precision, with the answers
the generate stage gives, and no more copies of the base however many runs there are.

Run: python -m pytest tests/test_serving.py -q
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.workspace import build_workspace, expected_answers, small_params  # the same workspace as the chat tests

from medqa_scale.builtin.corpus import generate_pairs
from medqa_scale.model.chat_format import to_messages
from medqa_scale.evaluate.generation import generation_config
from medqa_scale.serve.serving import group_by_base, load_shared_models, stream_answer

ROOT = Path(__file__).resolve().parents[1]
RUNS = ["base", "base-4bit", "lora-64-42", "qlora-64-42"]
MORE = ["lora-128-42", "lora-256-42", "qlora-128-42", "qlora-256-42"]  # copies of the two adapters, under new names


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_base) -> Path:
    ws = build_workspace(tmp_path_factory.mktemp("serving"), tiny_base)
    for run in MORE:
        shutil.copytree(ws / "models/adapters" / f"{run.split('-')[0]}-64-42", ws / "models/adapters" / run)
    return ws


def inputs(ws: Path, runs: list[str]) -> dict:
    q = small_params()["quantization"]
    return {r: (None if r.startswith("base") else ws / "models/adapters" / r,
                q if r.startswith("qlora") or r == "base-4bit" else None) for r in runs}


def test_runs_are_grouped_by_the_base_they_answer_with_full_precision_first(workspace):
    groups = group_by_base(inputs(workspace, ["qlora-64-42", "base", "base-4bit", "lora-64-42"]))
    assert [(q is not None, runs) for q, runs in groups] == [(False, ["base", "lora-64-42"]),
                                                             (True, ["qlora-64-42", "base-4bit"])]


def test_every_run_answers_as_the_generate_stage_answers(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    p = small_params()
    shared = load_shared_models(workspace / "models/base", inputs(workspace, RUNS), precision="fp32",
                                trust_remote_code=False)
    questions = [r["question"] for r in generate_pairs(3, seed=11)]
    config = generation_config(shared.tokenizer, p["evaluate"]["generation"], p["evaluate"]["max_new_tokens"])
    for run in RUNS:
        streamed = [list(stream_answer(shared, run, to_messages(q, None, p["preprocess"]["system_prompt"]), config))
                    for q in questions]
        assert [s[-1] for s in streamed] == expected_answers(workspace, run, questions), run
        assert all(s[-1].startswith(s[0]) or not s[0] for s in streamed)  # the answer grows as it streams
    # The adapters are switched, not merged: the base and each run still differ after every switch.
    chat = to_messages(questions[0], None, p["preprocess"]["system_prompt"])
    answers = {run: list(stream_answer(shared, run, chat, generation_config(shared.tokenizer, {}, 6)))[-1] for run in RUNS}
    assert answers["base"] == expected_answers(workspace, "base", questions[:1])[0]
    assert answers["lora-64-42"] != answers["base"]


COUNT = r"""
import gc, json, sys
from collections import Counter
from pathlib import Path

import torch
from safetensors import safe_open

from medqa_scale.serve.serving import load_shared_models

runs = json.loads(sys.argv[1])
shared = load_shared_models(Path("models/base"), {r: (Path(a) if a else None, q) for r, (a, q) in runs.items()},
                            precision="fp32", trust_remote_code=False)
gc.collect()
with safe_open("models/base/model.safetensors", "pt") as f:
    weights = {k: f.get_slice(k).get_shape() for k in f.keys()}
linear = Counter(tuple(s) for k, s in weights.items() if k.endswith("proj.weight"))
embedding = tuple(weights["model.embed_tokens.weight"])
live = Counter((tuple(o.shape), o.dtype) for o in gc.get_objects() if isinstance(o, torch.Tensor))
packed = Counter()  # bitsandbytes packs two 4-bit values a byte: a (n/2, 1) uint8 tensor
for shape, k in linear.items():
    packed[shape[0] * shape[1] // 2] += k
print(json.dumps({
    "full_precision_linear": [live[(s, torch.float32)] / k for s, k in linear.items()],
    "four_bit_linear": [live[((n, 1), torch.uint8)] / k for n, k in packed.items()],
    "embedding": live[(embedding, torch.float32)],
    "models": len({id(m) for m in shared.models.values()}),
}))
"""


def held_copies(ws: Path, runs: list[str]) -> dict:
    """Copies of the base's weight tensors alive after loading `runs`, counted in a fresh process."""
    spec = {r: (str(a) if a else None, q) for r, (a, q) in inputs(ws, runs).items()}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", COUNT, json.dumps(spec)], cwd=ws, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_one_full_precision_and_one_4bit_copy_of_the_base_whatever_the_number_of_runs(workspace):
    few = held_copies(workspace, RUNS)
    many = held_copies(workspace, RUNS + MORE)
    for held in (few, many):
        assert set(held["full_precision_linear"]) == {1.0}  # every projection once in full precision
        assert set(held["four_bit_linear"]) == {1.0}  # and once packed 4-bit
        assert held["embedding"] == 2 and held["models"] == 2  # the embedding stays float in the 4-bit model
    assert few == many
