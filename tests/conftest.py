"""Shared fixtures: a tiny saved base model; from tests/support/, the local hub stand-in and the
small DVC run of the whole DAG. Every test that uses that DVC run is marked slow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A Qwen2 model small enough to build, quantize and train in seconds on CPU.
TINY_ARCH = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                 num_key_value_heads=1, max_position_embeddings=256, tie_word_embeddings=True)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A tiny Qwen2 model and tokenizer saved in Hugging Face layout, with a provenance.json, as
    download_model leaves models/base (random weights: pre-training is not what these tests test)."""
    from medqa_scale.builtin import corpus
    from medqa_scale.builtin.model import build_model, build_tokenizer

    out = tmp_path_factory.mktemp("tiny_base")
    tokenizer = build_tokenizer([r["question"] + r["answer"] for r in corpus.generate_pairs(300, seed=0)], vocab_size=500)
    model = build_model(tokenizer, TINY_ARCH, seed=0)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "provenance.json").write_text(json.dumps({"source": "test", "seed": 0}), encoding="utf-8")
    return out


from support.hub_standin import file_server, hub_env, served_repo  # noqa: E402,F401  (local stand-ins for the hub and a web server)
from support.dvc_repo import first_run, repo  # noqa: E402,F401  (one small DVC run of the whole DAG, shared)


def pytest_collection_modifyitems(items):
    # A test on the shared DVC run is end to end, whichever file holds it: out of the fast tier.
    for item in items:
        if {"repo", "first_run"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
