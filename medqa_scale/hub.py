"""Fetching a base model in Hugging Face layout: from the Hugging Face hub, ModelScope or a local
directory. Only what a model needs to load is fetched; pickled weights (*.bin, *.pt) never are.

The output holds nothing that changes between identical downloads (no timestamps, no hub cache
metadata), so the stages after it do not rerun for nothing.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from medqa_scale.cli import PipelineError

log = logging.getLogger(__name__)

MODEL_FILES = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken"]


def copy_local(src: Path, out: Path) -> dict:
    for pattern in MODEL_FILES:
        for f in sorted(src.glob(pattern)):
            shutil.copy2(f, out / f.name)
    return {"source": "local", "path": str(src.resolve())}


def download_hf(repo_id: str, revision: str, out: Path) -> dict:
    """The files of `repo_id` at the commit `revision` resolves to; HF_ENDPOINT selects a mirror."""
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
