"""The workspace the chat, export, serving, GGUF and web page tests share: a tiny base model, a LoRA
and a QLoRA adapter that change the answers, test records, params.yaml and data/params/, laid out
as the pipeline leaves them; the commands run in it as a user runs them; and the answers the
generate stage would give there.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from ruamel.yaml import YAML

from medqa_scale.builtin.corpus import generate_pairs
from medqa_scale.core.params import read_yaml
from medqa_scale.evaluate.generation import generate_answers, generation_config
from medqa_scale.model.chat_format import to_messages
from medqa_scale.model.loading import add_trainable_adapter, load_base_model, load_run_model, save_adapter

ROOT = Path(__file__).resolve().parents[2]


def small_params() -> dict:
    p = copy.deepcopy(read_yaml(ROOT / "params.yaml"))
    p["precision"] = "fp32"
    p["evaluate"].update(batch_size=4, max_new_tokens=6)
    return p

def make_adapter(base: Path, out: Path, p: dict, quantization: dict | None) -> None:
    """An adapter as train leaves one, without training: every lora_B random, so the adapter
    changes the answers (a new adapter's lora_B is zero, which changes nothing)."""
    model = load_base_model(base, quantization=quantization, precision="fp32", trust_remote_code=False)
    model = add_trainable_adapter(model, p["lora"], quantized=quantization is not None, gradient_checkpointing=False)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.2)
    save_adapter(model, out)

def build_workspace(ws: Path, tiny_base: Path) -> Path:
    """models/base, two adapters (lora-64-42, qlora-64-42), test records, params.yaml and
    data/params/ laid out as the pipeline leaves them."""
    p = small_params()
    shutil.copytree(tiny_base, ws / "models/base")
    (ws / "data/params").mkdir(parents=True)
    quantization = {"lora": None, "qlora": p["quantization"]}
    for method, q in quantization.items():
        (ws / f"data/params/quantization-{method}.json").write_text(json.dumps(q), encoding="utf-8")
        make_adapter(ws / "models/base", ws / f"models/adapters/{method}-64-42", p, q)
    records = [{**r, "messages": to_messages(r["question"], r["answer"], p["preprocess"]["system_prompt"])}
               for r in generate_pairs(6, seed=7)]
    (ws / "data/split").mkdir(parents=True)
    (ws / "data/split/test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                              encoding="utf-8")
    write_params_file(ws / "params.yaml", p)
    return ws

def write_params_file(path: Path, params: dict) -> None:
    """params.yaml in block style: ruamel's flow style leaves a URL unquoted, which DVC's reader refuses."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    with open(path, "w", encoding="utf-8") as f:
        yaml.dump(params, f)


def command(workspace: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", *args], cwd=workspace, env=env, input=stdin, capture_output=True,
                          text=True)

def expected_answers(workspace: Path, run: str, questions: list[str], max_new_tokens: int | None = None) -> list[str]:
    """generate_answers on the run's model, loaded as the generate stage loads it."""
    from transformers import AutoTokenizer

    p, base = small_params(), workspace / "models/base"
    quantization = p["quantization"] if run.startswith("qlora") or run == "base-4bit" else None
    adapter = None if run.startswith("base") else workspace / "models/adapters" / run
    model = load_run_model(base, adapter, quantization, precision="fp32", trust_remote_code=False, merge=True)
    tokenizer = AutoTokenizer.from_pretrained(base, padding_side="left")
    chats = [to_messages(q, None, p["preprocess"]["system_prompt"]) for q in questions]
    config = generation_config(tokenizer, p["evaluate"]["generation"], max_new_tokens or p["evaluate"]["max_new_tokens"])
    return generate_answers(model, tokenizer, chats, 4, config)[0]
