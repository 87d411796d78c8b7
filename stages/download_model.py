"""Stage download_model: put the base model in models/base, in Hugging Face layout.

Run:    dvc repro download_model        (or: python -m stages.download_model)
Reads:  params seed, model
Writes: models/base/ (config, safetensors weights, tokenizer, provenance.json)
        metrics/runinfo/download_model.json (library versions, hardware)

`model.source` picks where the model comes from:
  builtin     a tiny Qwen2ForCausalLM built from the seed and pre-trained on built-in text (offline)
  local       a saved Hugging Face model directory (model.local_path)
  hf          the Hugging Face hub (model.repo_id at model.revision); HF_ENDPOINT selects a mirror
  modelscope  ModelScope (pip install modelscope), same repo_id and revision
The output holds nothing that changes between identical downloads (no timestamps, no hub cache
metadata), so downstream stages do not rerun for nothing.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from stages.atomic import atomic_path, write_json
from stages.params import PipelineError, load_params
from stages.runinfo import cli, environment

log = logging.getLogger(__name__)

OUT = Path("models/base")
RUNINFO = Path("metrics/runinfo/download_model.json")
# What a model needs to load; pickled weights (*.bin, *.pt) are never fetched.
MODEL_FILES = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken"]


def main() -> None:
    p = load_params()
    source = p["model"]["source"]
    with atomic_path(OUT, directory=True) as tmp:
        if source == "builtin":
            provenance = build_builtin(p, tmp)
        elif source == "local":
            provenance = copy_local(Path(p["model"]["local_path"]), tmp)
        elif source == "hf":
            provenance = download_hf(p["model"]["repo_id"], p["model"]["revision"], tmp)
        else:
            provenance = download_modelscope(p["model"]["repo_id"], p["model"]["revision"], tmp)
        check_layout(tmp)
        write_json(tmp / "provenance.json", provenance)
    write_json(RUNINFO, {"provenance": provenance, "environment": environment()})
    log.info("base model ready in %s (%s)", OUT, provenance)


def build_builtin(p: dict, out: Path) -> dict:
    import torch

    from stages import medqa_synth, tiny_model

    b = p["model"]["builtin"]
    torch.manual_seed(p["seed"])
    dialogues = medqa_synth.pretraining_dialogues(b["pretrain"]["passages"], seed=p["seed"])
    vocabulary_text = [m["content"] for d in dialogues for m in d] + medqa_synth.tokenizer_text(p["seed"])
    tokenizer = tiny_model.build_tokenizer(vocabulary_text, b["vocab_size"])
    model = tiny_model.build_model(tokenizer, b["arch"], seed=p["seed"])
    tiny_model.pretrain(model, tokenizer, dialogues, steps=b["pretrain"]["steps"],
                        batch_size=b["pretrain"]["batch_size"], lr=b["pretrain"]["lr"], seed=p["seed"])
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"source": "builtin", "seed": p["seed"], "parameters": sum(x.numel() for x in model.parameters())}


def copy_local(src: Path, out: Path) -> dict:
    for pattern in MODEL_FILES:
        for f in sorted(src.glob(pattern)):
            shutil.copy2(f, out / f.name)
    return {"source": "local", "path": str(src.resolve())}


def download_hf(repo_id: str, revision: str, out: Path) -> dict:
    from huggingface_hub import HfApi, constants, snapshot_download

    # Resolve a branch or tag to its commit first, and download exactly that commit.
    commit = HfApi().model_info(repo_id, revision=revision).sha
    log.info("downloading %s@%s (commit %s) from %s", repo_id, revision, commit, constants.ENDPOINT)
    # Top-level files only: some repos keep extra weight copies in subfolders (original/, onnx/).
    snapshot_download(repo_id, revision=commit, local_dir=out, allow_patterns=MODEL_FILES, ignore_patterns=["*/*"])
    shutil.rmtree(out / ".cache", ignore_errors=True)  # hub bookkeeping with timestamps
    return {"source": "hf", "repo_id": repo_id, "revision": revision, "resolved_commit": commit}


def download_modelscope(repo_id: str, revision: str, out: Path) -> dict:
    try:
        from modelscope import snapshot_download
    except ImportError as e:
        raise PipelineError("model.source is modelscope but the modelscope package is missing: pip install modelscope==1.40.2") from e
    snapshot_download(repo_id, revision=revision, local_dir=str(out), allow_patterns=MODEL_FILES)
    for meta in (".msc", ".mv", "._____temp", ".cache"):
        target = out / meta
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    return {"source": "modelscope", "repo_id": repo_id, "revision": revision}


def check_layout(path: Path) -> None:
    """Fail here, with the fix, rather than in a later stage's from_pretrained."""
    missing = [name for name in ("config.json", "tokenizer_config.json") if not (path / name).exists()]
    if not list(path.glob("*.safetensors")):
        missing.append("*.safetensors weights (pickled .bin weights are not loaded)")
    if missing:
        raise PipelineError(f"the base model is missing {', '.join(missing)}; check model.source and its path or repo")


if __name__ == "__main__":
    cli(main)
