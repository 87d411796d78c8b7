"""medqa_scale.apps.export: a run's adapter merged into full-precision weights (the de-quantised base for
QLoRA), loadable without peft or bitsandbytes, answering as the run's model does; a failed check
or a refused DIR leaves nothing written.

Run: python -m pytest tests/test_export.py -q
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import bitsandbytes as bnb
import pytest
import torch
from support.hub_standin import card_metadata_error
from support.workspace import build_workspace, command, small_params  # the same workspace as the chat tests

from medqa_scale.core.cli import PipelineError
from medqa_scale.evaluate.generation import generate_answers, generation_config
from medqa_scale.model.loading import load_base_model, load_run_model

RUNS = {"lora": "lora-64-42", "qlora": "qlora-64-42"}
UNTOUCHED = "model.layers.0.mlp.up_proj.weight"  # a 4-bit layer that lora.target_modules leaves alone


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_base) -> Path:
    ws = build_workspace(tmp_path_factory.mktemp("export"), tiny_base)
    for run in RUNS.values():
        proc = command(ws, "medqa_scale.apps.export", run, "--check", "3")
        assert proc.returncode == 0, proc.stderr[-3000:]
    return ws


def answers(model, ws: Path) -> list[str]:
    from transformers import AutoTokenizer

    e = small_params()["evaluate"]
    tokenizer = AutoTokenizer.from_pretrained(ws / "models/base", padding_side="left")
    chats = [json.loads(line)["messages"] for line in (ws / "data/split/test.jsonl").read_text().splitlines()]
    return generate_answers(model, tokenizer, chats, 4, generation_config(tokenizer, e["generation"], e["max_new_tokens"]))[0]


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("method", RUNS)
def test_export_is_a_plain_model_that_answers_as_the_run_does(exported, method):
    from transformers import AutoModelForCausalLM

    run, out = RUNS[method], exported / "models/export" / RUNS[method]
    names = set(files(out))
    assert {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "export.json"} <= names
    assert any(n.endswith(".safetensors") for n in names) and not any(n.endswith(".bin") for n in names)
    assert not list(out.parent.glob(".*"))  # no temporary directory left beside it
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    assert not any("lora_" in n for n, _ in model.named_modules())
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    assert getattr(model.config, "quantization_config", None) is None
    assert not model.generation_config.do_sample and model.generation_config.num_beams == 1

    quantization = small_params()["quantization"] if method == "qlora" else None
    adapter_model = load_run_model(exported / "models/base", exported / "models/adapters" / run, quantization,
                                   precision="fp32", trust_remote_code=False, merge=False)
    expected = answers(adapter_model, exported)
    assert answers(model, exported) == expected and any(expected)  # all 6 test questions, not only the 3 checked

    record = json.loads((out / "export.json").read_text())
    assert record["run"] == run and record["method"] == method and record["precision"] == "fp32"
    assert record["base"] == json.loads((exported / "models/base/provenance.json").read_text())
    assert record["check"]["questions"] == 3 and record["check"]["result"] == "equal"


def test_qlora_merges_into_the_dequantised_base_and_lora_into_the_original(exported):
    base = exported / "models/base"
    original = load_base_model(base, quantization=None, precision="fp32", trust_remote_code=False).state_dict()[UNTOUCHED]
    four_bit = load_base_model(base, quantization=small_params()["quantization"], precision="fp32",
                               trust_remote_code=False)
    dequantised = four_bit.dequantize(dtype=torch.float32).state_dict()[UNTOUCHED]
    assert not torch.equal(original, dequantised)  # the premise: 4-bit rounding shows in this layer
    weight = {m: load_base_model(exported / "models/export" / run, quantization=None, precision="fp32",
                                 trust_remote_code=False).state_dict()[UNTOUCHED] for m, run in RUNS.items()}
    assert torch.equal(weight["qlora"], dequantised) and torch.equal(weight["lora"], original)


def test_a_failed_check_leaves_the_earlier_export_as_it_was(exported, monkeypatch):
    from medqa_scale.apps import export

    def corrupted(*args, **kwargs):  # the real merge, then every weight moved: answers change
        model = merged_full_precision(*args, **kwargs)
        torch.manual_seed(0)
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn_like(param))
        return model

    merged_full_precision = export.merged_full_precision
    monkeypatch.setattr(export, "merged_full_precision", corrupted)
    monkeypatch.chdir(exported)
    out = exported / "models/export/lora-64-42"
    before = files(out)
    with pytest.raises(PipelineError, match=r"answers test question \d+ .* nothing was written"):
        export.main(["lora-64-42", "--check", "3"])
    assert files(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(RUNS.values())  # no temporary left


def test_export_refuses_the_bases_and_a_dir_that_is_not_an_export(exported):
    proc = command(exported, "medqa_scale.apps.export", "base-4bit")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "base-4bit has no adapter to merge" in proc.stderr

    (exported / "notes").mkdir()
    (exported / "notes/keep.txt").write_text("mine")
    proc = command(exported, "medqa_scale.apps.export", "lora-64-42", "--out", "notes")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert re.search(r"notes exists and is not an earlier export", proc.stderr)
    assert files(exported / "notes") == {"keep.txt": b"mine"}


def test_each_export_carries_a_model_card_whose_scores_are_the_runs(exported, tmp_path):
    from huggingface_hub import ModelCard

    ws, run = exported, RUNS["lora"]
    # The run's metrics as the pipeline writes them (the committed embedded-default run's files).
    root = Path(__file__).resolve().parents[1]
    for src, dst in ((f"metrics/evaluate/lora-1k-42.json", f"metrics/evaluate/{run}.json"),
                     ("metrics/evaluate/base.json", "metrics/evaluate/base.json"),
                     ("metrics/train/lora-1k-42.json", f"metrics/train/{run}.json"),
                     ("metrics/runinfo/train-lora-1k-42.json", f"metrics/runinfo/train-{run}.json"),
                     ("metrics/download_data.json", "metrics/download_data.json")):
        (ws / dst).parent.mkdir(parents=True, exist_ok=True)
        (ws / dst).write_text((root / src).read_text(encoding="utf-8"), encoding="utf-8")
    merged, adapter = tmp_path / "merged", tmp_path / "adapter"
    for out, extra in ((merged, ()), (adapter, ("--adapter-only",))):
        proc = command(ws, "medqa_scale.apps.export", run, "--check", "0", "--out", str(out), *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(f.name for f in adapter.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors",
                                                          "chat_template.jinja", "export.json", "tokenizer.json",
                                                          "tokenizer_config.json"]
    assert (adapter / "adapter_model.safetensors").read_bytes() == (ws / f"models/adapters/{run}/adapter_model.safetensors").read_bytes()
    scores = json.loads((ws / f"metrics/evaluate/{run}.json").read_text(encoding="utf-8"))
    base = json.loads((ws / "metrics/evaluate/base.json").read_text(encoding="utf-8"))
    for out, library in ((merged, "transformers"), (adapter, "peft")):
        card = ModelCard.load(out / "README.md")
        data = card.data.to_dict()
        assert data["library_name"] == library and data["pipeline_tag"] == "text-generation"
        assert data["language"] == ["zh"] and data["license"] == "unknown" and "lora" in data["tags"]
        assert "base_model" not in data  # the built-in base is on no hub
        for metric in ("rouge-1", "rouge-2", "rouge-l", "bleu"):
            i, j = scores["interval"][metric], base["interval"][metric]
            row = (f"| {metric} | {scores[metric]:.2f} [{i['low']:.2f}, {i['high']:.2f}] | "
                   f"{base[metric]:.2f} [{j['low']:.2f}, {j['high']:.2f}] |")
            assert row in card.text, row
        assert card_metadata_error(card.content) is None  # the checks the hub runs on upload
        assert "Not medical advice" in card.text and "medqa_scale/builtin/corpus.py" in card.text
        assert "learning rate" in card.text and "training:" in card.text
    assert "PeftModel.from_pretrained" in ModelCard.load(adapter / "README.md").text


def test_push_to_hub_lands_the_export_and_never_shows_the_token(exported, hub_env, tmp_path, monkeypatch):
    ws, run = exported, RUNS["lora"]
    out = tmp_path / "pushed"
    refused = command(ws, "medqa_scale.apps.export", run, "--adapter-only", "--out", str(out), "--push-to-hub", "team/x")
    assert refused.returncode == 2 and "needs a token with write access in HF_TOKEN" in refused.stderr
    assert not out.exists()  # refused before anything was written
    token = "hf_" + os.urandom(8).hex()
    monkeypatch.setenv("HF_TOKEN", token)
    proc = command(ws, "medqa_scale.apps.export", run, "--adapter-only", "--out", str(out), "--push-to-hub", "team/medqa-lora")
    assert proc.returncode == 0, proc.stderr[-3000:]
    repo = hub_env.repo("team/medqa-lora")
    landed = repo["commits"][repo["refs"]["main"]]
    assert landed == {f.name: f.read_bytes() for f in out.iterdir()}  # every file, byte for byte
    assert "README.md" in landed and "adapter_model.safetensors" in landed
    assert hub_env.tokens and set(hub_env.tokens) == {token}  # sent to the hub on every write
    assert token not in proc.stdout + proc.stderr and all(token not in f.read_text(errors="ignore") for f in out.iterdir())
    assert f"pushed to team/medqa-lora: {hub_env.url}/team/medqa-lora/commit/" in proc.stderr
