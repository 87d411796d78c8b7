"""A model card (README.md in the Hugging Face hub's format) for an exported run, written from what
the pipeline recorded: the base model's provenance, the run's settings, the data sources with
their resolved revisions, the scores with intervals against the run's reference, the hardware and
the training cost. Pure functions of plain values; medqa_scale/apps/export.py gathers them.
"""

from __future__ import annotations

import re

SCORES = ("rouge-1", "rouge-2", "rouge-l", "bleu", "char-bleu-4")
DISCLAIMER = ("**Not medical advice.** This model was fine-tuned for a study of how much training data is worth. "
              "Its answers can be wrong or unsafe; never use them to diagnose or treat anyone. See a doctor.")


def base_license(readme: str | None) -> str:
    """The `license:` of the base model's own card front matter, or "unknown"."""
    if readme and (m := re.match(r"^---\n(.*?)\n---", readme, re.S)):
        if lic := re.search(r"^license:\s*['\"]?([^'\"\n]+)", m.group(1), re.M):
            return lic.group(1).strip()
    return "unknown"


def base_model_id(provenance: dict) -> str | None:
    return provenance.get("repo_id") if provenance.get("source") in ("hf", "modelscope") else None


def metadata(*, provenance: dict, license: str, sources: dict, adapter_only: bool) -> dict:
    """The card's YAML front matter (huggingface_hub.ModelCardData fields)."""
    datasets = sorted({s["provenance"]["repo_id"] for s in sources.values()
                       if s.get("provenance", {}).get("source") == "hf" and s["provenance"].get("repo_id")})
    data = {"license": license, "language": ["zh"], "library_name": "peft" if adapter_only else "transformers",
            "pipeline_tag": "text-generation",
            "tags": ["medical", "chinese", "question-answering", "medqa-scale"]}
    if base := base_model_id(provenance):
        data["base_model"] = base
    if datasets:
        data["datasets"] = datasets
    return data


def score_rows(run: str, scores: dict | None, reference: str, reference_scores: dict | None) -> list[str]:
    if not scores:
        return [f"No scores yet: `metrics/evaluate/{run}.json` is missing (run `dvc repro evaluate`)."]
    rows = [f"| metric | `{run}` [95% interval] | `{reference}` [95% interval] |", "|---|---|---|"]
    for metric in SCORES:
        if metric in scores:
            rows.append(f"| {metric} | {_with_interval(scores, metric)} | "
                        f"{_with_interval(reference_scores, metric) if reference_scores else 'not evaluated'} |")
    n = scores.get("n_test")
    rows.append("")
    rows.append(f"On {n} held-out test questions, greedy decoding; intervals from a bootstrap over questions "
                f"({scores.get('interval', {}).get('resamples', '?')} resamples). Scores are 0-100.")
    return rows


def _with_interval(scores: dict, metric: str) -> str:
    interval = scores.get("interval", {}).get(metric)
    value = f"{scores[metric]:.2f}"
    return f"{value} [{interval['low']:.2f}, {interval['high']:.2f}]" if interval else value


def model_card(*, run: str, method: str, scale: str, seed: int, provenance: dict, license: str, settings: dict,
               sources: dict, scores: dict | None, reference: str, reference_scores: dict | None, train: dict | None,
               hardware: dict | None, adapter_only: bool, gguf_files: list[str], precision: str) -> str:
    """README.md text: YAML metadata, then the body."""
    from huggingface_hub import ModelCardData

    meta = metadata(provenance=provenance, license=license, sources=sources, adapter_only=adapter_only)
    meta["tags"] = [*meta["tags"], method]
    base = base_model_id(provenance) or f"the built-in base model ({provenance.get('source', 'unknown')} source, seed " \
                                        f"{provenance.get('seed', '?')})"
    revision = provenance.get("resolved_commit")
    lines = ["---", ModelCardData(**meta).to_yaml().strip(), "---", "",
             f"# {run}: {'a LoRA adapter' if adapter_only else 'a merged model'} for Chinese medical question answering",
             "", DISCLAIMER, "",
             f"Fine-tuned from {base}{f' at commit `{revision}`' if revision else ''} with "
             f"{'QLoRA (4-bit NF4 base)' if method == 'qlora' else 'LoRA'} on {scale} training samples, seed {seed}, "
             f"by the medqa-scale pipeline. {'The adapter alone: load it onto the base model.' if adapter_only else f'The adapter is merged into {precision} weights.'}",
             f"Licence: `{license}`{' (carried over from the base model)' if license != 'unknown' else ' (the base model records none: check its own terms)'}.",
             "", "## Training settings", ""]
    for key, value in settings.items():
        lines.append(f"- **{key}**: `{value}`")
    lines += ["", "## Data", ""]
    for name, source in sources.items():
        prov = source.get("provenance", {})
        where = prov.get("repo_id") or prov.get("path") or prov.get("url") or prov.get("generator") or prov.get("source")
        rev = (f"revision `{prov['resolved_commit']}`" if prov.get("resolved_commit") else f"sha256 `{prov['sha256']}`"
               if prov.get("sha256") else f"seed {prov['seed']}" if "seed" in prov else None)
        lines.append(f"- `{name}` ({source.get('kind')}): {where}{f', {rev}' if rev else ''}; "
                     f"{source.get('records')} records read, {source.get('skipped_total', 0)} left out")
    lines += ["", f"## Scores against `{reference}`", "", *score_rows(run, scores, reference, reference_scores), "",
              "## Hardware and cost", ""]
    if train:
        lines.append(f"- training: {train.get('train_runtime_s', 0):.1f} s of optimizer steps, "
                     f"{train.get('tokens_per_second', 0):.0f} tokens/s, peak memory {train.get('peak_memory_mb', 0):.0f} MB "
                     f"({train.get('peak_memory_kind')}); {train.get('produced_on', '')}")
    else:
        lines.append(f"- training cost not recorded: `metrics/train/{run}.json` is missing")
    if hardware:
        lines.append(f"- hardware: {hardware}")
    lines += ["", "## How to load", ""]
    if adapter_only:
        lines += ["```python", "from peft import PeftModel", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                  f"base = AutoModelForCausalLM.from_pretrained(\"{base_model_id(provenance) or '<the base model>'}\")",
                  "model = PeftModel.from_pretrained(base, \"<this folder or repo>\")",
                  "tokenizer = AutoTokenizer.from_pretrained(\"<this folder or repo>\")", "```"]
    else:
        lines += ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                  "model = AutoModelForCausalLM.from_pretrained(\"<this folder or repo>\")  # no peft or bitsandbytes needed",
                  "tokenizer = AutoTokenizer.from_pretrained(\"<this folder or repo>\")", "```"]
    gguf = [f for f in gguf_files if f.endswith(".gguf")]
    if gguf:
        q8 = next((f for f in gguf if "q8_0" in f), gguf[0])
        lines += ["", "llama.cpp and Ollama:", "", "```bash", f"llama-cli -m {q8} -cnv",
                  f"ollama create {run} -f Modelfile-{q8.rsplit('-', 1)[-1].removesuffix('.gguf')}", "```"]
    else:
        lines += ["", "llama.cpp and Ollama: export with `python -m medqa_scale.apps.export "
                  f"{run} --format gguf`, which adds GGUF files and Ollama Modelfiles."]
    return "\n".join(lines) + "\n"
