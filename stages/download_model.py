"""Stage download_model: put the base model in models/base, in Hugging Face layout.

Run:    dvc repro download_model        (or: python -m stages.download_model)
Reads:  params seed, model (source, repo_id, revision, modelscope_id, modelscope_revision, local_path, builtin)
Writes: models/base/ (config, safetensors weights, tokenizer, provenance.json)
        metrics/runinfo/download_model.json (library versions, hardware)

`model.source` picks where the model comes from:
  builtin     a tiny Qwen2ForCausalLM built from the seed and pre-trained on built-in text (offline)
  local       a saved Hugging Face model directory (model.local_path)
  hf          the Hugging Face hub (model.repo_id at model.revision); HF_ENDPOINT selects a mirror
  modelscope  ModelScope (pip install modelscope), model.modelscope_id (or repo_id) at model.modelscope_revision
"""

from __future__ import annotations

import logging
from pathlib import Path

from medqa_scale.core import hub
from medqa_scale.core.cli import run
from medqa_scale.core.durable import atomic_path, remove_stale, write_json
from medqa_scale.core.params import load_params
from medqa_scale.core.runinfo import environment

log = logging.getLogger(__name__)

OUT = Path("models/base")
RUNINFO = Path("metrics/runinfo/download_model.json")


def main() -> None:
    remove_stale(OUT, RUNINFO)
    p = load_params()
    m = p["model"]
    with atomic_path(OUT, directory=True) as tmp:
        if m["source"] == "builtin":
            from medqa_scale.builtin.model import build_and_save

            provenance = build_and_save(m["builtin"], p["seed"], tmp)
        elif m["source"] == "local":
            provenance = hub.copy_local(Path(m["local_path"]), tmp)
        elif m["source"] == "hf":
            provenance = hub.download_hf(m["repo_id"], m["revision"], tmp)
        else:
            provenance = hub.download_modelscope(m["modelscope_id"] or m["repo_id"], m["modelscope_revision"], tmp)
        hub.check_layout(tmp)
        write_json(tmp / "provenance.json", provenance)
    write_json(RUNINFO, {"provenance": provenance, "environment": environment()})
    log.info("base model ready in %s (%s)", OUT, provenance)


if __name__ == "__main__":
    run(main)
