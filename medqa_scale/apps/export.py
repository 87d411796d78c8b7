"""Export a trained run as one standalone model, checked to answer as the run does.

The adapter is merged into full-precision weights, loadable with AutoModelForCausalLM alone (no peft,
no bitsandbytes).

Run from the repository root:
    python -m medqa_scale.apps.export lora-2k-42                          # -> models/export/lora-2k-42
    python -m medqa_scale.apps.export qlora-5k-42 --out /srv/models/qlora-5k --check 20
    python -m medqa_scale.apps.export lora-2k-42 --precision bf16 --check 0   # 16-bit weights, unchecked
    python -m medqa_scale.apps.export lora-2k-42 --format gguf            # + GGUF f16 and q8_0, Ollama Modelfiles
    python -m medqa_scale.apps.export best --format gguf                  # the report's most cost-effective setup
    python -m medqa_scale.apps.export lora-2k-42 --format gguf --converter llama.cpp/convert_hf_to_gguf.py
    python -m medqa_scale.apps.export lora-2k-42 --adapter-only           # the adapter alone, with its card
    HF_TOKEN=... python -m medqa_scale.apps.export lora-2k-42 --push-to-hub you/medqa-lora-2k   # then upload it
Reads:  metrics/summary.json (for `best`), models/base (and its provenance.json), models/adapters/<run>, data/params/quantization-<method>.json,
        data/split/test.jsonl (the check's questions), params.yaml: seed, precision, model.trust_remote_code,
        evaluate.{generation, batch_size, max_new_tokens}, preprocess.system_prompt, export.gguf
Writes: DIR (--out; default models/export/<run>, git-ignored and no DVC output): the merged weights as
        safetensors with config.json, a generation_config.json that decodes greedily as evaluate does and
        stops at the end of the assistant's turn, the tokenizer (left padding, for batched generation),
        and export.json: run, method, precision, base provenance, adapter checksum, how it was merged,
        the check's result, library versions. With --format gguf also <run>-f16.gguf, <run>-q8_0.gguf and
        a Modelfile-<type> for each (Ollama), checked as medqa_scale/serve/gguf_check.py says, recorded under
        `gguf` in export.json. README.md, a model card in the Hugging Face hub's format (base model,
        licence, data with revisions, settings, scores with intervals against the reference, hardware and
        cost, how to load it; medqa_scale/serve/model_card.py). With --adapter-only: the run's adapter files,
        the tokenizer, README.md and export.json, nothing merged. DIR gets the whole export or stays as it was.
Prints: log lines only. Exit status 2, with one message, for base/base-4bit (nothing to merge), a model
        not yet made, a DIR that holds something other than an earlier export, or a failed check.

How it merges: a LoRA adapter into the full-precision base; a QLoRA adapter into its base de-quantised
from the 4-bit weights it was trained on (never into 4-bit weights, which would round the update away).
The check loads the export back from the files written and answers the first N (--check, default 5)
test questions greedily; the answers must equal those of the run's model as evaluated (the base, 4-bit
for QLoRA, with the unmerged adapter), or nothing is written.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
from pathlib import Path

from medqa_scale.serve.runs import BASE, run_inputs
from medqa_scale.core.cli import PipelineError, run
from medqa_scale.model.device import pin_device, resolve_precision
from medqa_scale.core.durable import atomic_path, read_json, read_jsonl, remove_stale, write_json
from medqa_scale.evaluate.generation import generate_answers, generation_config
from medqa_scale.model.loading import load_base_model, load_run_model, merged_full_precision
from medqa_scale.core.params import REFERENCE_RUNS, load_params, run_method
from medqa_scale.core.runinfo import environment

log = logging.getLogger(__name__)

EXPORTS = Path("models/export")
TEST = Path("data/split/test.jsonl")
SUMMARY = Path("metrics/summary.json")
RECORD = "export.json"
MERGES = {"lora": "peft merge_and_unload into the full-precision base",
          "qlora": "peft merge_and_unload into the base de-quantised from its 4-bit weights (transformers "
                   "dequantize), not into the original weights, which the adapter never saw"}
REFERENCES = {"lora": "the full-precision base with the unmerged adapter",
              "qlora": "the 4-bit base with the unmerged adapter"}


def check_out(out: Path) -> None:
    """Refuse a DIR that holds anything but an earlier export: it is replaced whole."""
    if out.exists() and not (out / RECORD).is_file():
        raise PipelineError(f"{out} exists and is not an earlier export (it has no {RECORD}); the export would "
                            "replace it: choose another --out, or remove it")


def check_chats(n: int) -> list[dict]:
    """The first `n` test records, whose questions the check asks."""
    if n == 0:
        return []
    if not TEST.exists():
        raise PipelineError(f"{TEST} not found: run `dvc repro split`, or skip the check with --check 0")
    records = read_jsonl(TEST)[:n]
    if len(records) < n:
        log.warning("%s has %d questions; checking those", TEST, len(records))
    return records


def first_difference(expected: list[str], got: list[str]) -> int | None:
    return next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), None)


def difference_message(records: list[dict], i: int, expected: str, got: str, precision: str, evaluated: str) -> str:
    message = (f"the export answers test question {i + 1} (id {records[i].get('id')}: {records[i]['question']!r}) "
               f"with {got!r}, the run's model with {expected!r}; nothing was written")
    if precision != evaluated:
        message += (f". The export is in {precision}, the run was evaluated in {evaluated}: rounding can change "
                    f"greedy answers; export with --precision {evaluated}, or skip the check with --check 0")
    return message


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m medqa_scale.apps.export", description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a trained run such as lora-2k-42 (method-scale-seed), or `best`: the report's most "
                                "cost-effective setup (metrics/summary.json), first seed of train.seeds")
    ap.add_argument("--out", type=Path, help="where to write the export (default: models/export/<run>)")
    ap.add_argument("--check", type=int, default=5, metavar="N",
                    help="test questions the export must answer as the run's model does (default 5; 0 skips)")
    ap.add_argument("--precision", choices=("fp32", "bf16", "fp16"),
                    help="dtype of the exported weights (default: params precision, resolved: fp32 on CPU)")
    ap.add_argument("--format", choices=("safetensors", "gguf"), default="safetensors",
                    help="gguf: also GGUF files at f16 and q8_0 for llama.cpp, with Ollama Modelfiles")
    ap.add_argument("--converter", type=Path, metavar="convert_hf_to_gguf.py",
                    help="llama.cpp's converter script, to write the GGUF files instead of the gguf package")
    ap.add_argument("--push-to-hub", metavar="REPO",
                    help="upload the export to this Hugging Face model repo (created if missing, private), with the "
                         "token in HF_TOKEN; HF_ENDPOINT picks a mirror")
    ap.add_argument("--adapter-only", action="store_true",
                    help="export the run's adapter (PEFT) with the tokenizer and the model card, nothing merged")
    args = ap.parse_args(argv)
    if args.check < 0:
        ap.error("--check must be 0 or more")
    if args.converter and not args.converter.is_file():
        ap.error(f"--converter {args.converter} is not a file")
    if args.converter and args.format != "gguf":
        ap.error("--converter goes with --format gguf")
    if args.adapter_only and args.format != "safetensors":
        ap.error("--adapter-only exports the adapter; GGUF needs the merged model")
    return args


def most_cost_effective(summary_file: Path, seeds: list[int]) -> str:
    """The run of the report's most cost-effective setup with the first seed (`lora-5k` -> `lora-5k-42`)."""
    if not summary_file.exists():
        raise PipelineError(f"{summary_file} not found: run `dvc repro summarize` first, or name the run")
    setup = read_json(summary_file)["most_cost_effective"]
    if setup is None:
        raise PipelineError(f"{summary_file} names no most cost-effective setup (none beat its reference; see "
                            "plots/report.md): name the run to export, e.g. lora-2k-42")
    return f"{setup}-{seeds[0]}"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    p = load_params()
    if args.run == "best":
        args.run = most_cost_effective(SUMMARY, p["train"]["seeds"])
        log.info("best: the most cost-effective setup's run is %s", args.run)
    if args.run in REFERENCE_RUNS:
        raise PipelineError(f"{args.run} has no adapter to merge: {BASE} is that model already; export a trained "
                            "run such as lora-2k-42")
    out = args.out or EXPORTS / args.run
    check_out(out)
    if args.push_to_hub and not os.environ.get("HF_TOKEN"):
        raise PipelineError("--push-to-hub needs a token with write access in HF_TOKEN (it is read from the environment "
                            "only, never from the command line or params)")
    pin_device(p["device"])
    adapter, quantization = run_inputs(args.run)
    if not (BASE / "provenance.json").exists():
        raise PipelineError(f"{BASE}/provenance.json not found: run `dvc repro download_model`")
    records = check_chats(args.check)
    remove_stale(out)  # the temporary directory of an export that was killed
    from transformers import AutoTokenizer, set_seed

    set_seed(p["seed"])
    method, e, trust = run_method(args.run), p["evaluate"], p["model"]["trust_remote_code"]
    evaluated = resolve_precision(p["precision"])
    precision = args.precision or evaluated
    tokenizer = AutoTokenizer.from_pretrained(BASE, padding_side="left")  # generate_answers pads on the left
    config = generation_config(tokenizer, e["generation"], e["max_new_tokens"])

    if args.adapter_only:
        export_adapter(args.run, method, adapter, quantization, out, tokenizer, p, evaluated)
        if args.push_to_hub:
            push(out, args.push_to_hub, args.run)
        return

    def answers(model) -> list[str]:
        return generate_answers(model, tokenizer, [r["messages"] for r in records], e["batch_size"], config,
                                p["model"]["chat_template_kwargs"])[0] if records else []

    # One model in memory at a time: the run's model answers first and is freed before the merge.
    expected = answers(load_run_model(BASE, adapter, quantization, precision=evaluated, trust_remote_code=trust,
                                      merge=False))
    merged = merged_full_precision(BASE, adapter, quantization, precision=precision, trust_remote_code=trust)
    with atomic_path(out, directory=True) as tmp:
        merged.generation_config = config  # greedy as evaluated, not the base's own (sampling, for Qwen2.5)
        merged.save_pretrained(tmp)  # transformers 5 writes safetensors only (no safe_serialization argument)
        tokenizer.save_pretrained(tmp)
        del merged
        # The check reads the files written, so it covers saving and loading too.
        got = answers(load_base_model(tmp, quantization=None, precision=precision, trust_remote_code=trust).eval())
        if (i := first_difference(expected, got)) is not None:
            raise PipelineError(difference_message(records, i, expected[i], got[i], precision, evaluated))
        gguf = None
        if args.format == "gguf":
            from medqa_scale.serve.gguf_check import check_ggufs
            from medqa_scale.serve.gguf_write import write_ggufs

            g = p["export"]["gguf"]
            chats = [r["messages"] for r in check_chats(g["check_prompts"])]
            gguf = write_ggufs(tmp, args.run, tokenizer, config.max_new_tokens,
                               system_prompt=p["preprocess"]["system_prompt"], converter=args.converter)
            gguf["check"] = check_ggufs(tmp, args.run, tokenizer, chats, config, min_q8_0_rouge_l=g["min_q8_0_rouge_l"],
                                        tie_logit_gap=g["tie_logit_gap"], trust_remote_code=trust)
        write_json(tmp / RECORD, {
            "run": args.run, "method": method, "precision": precision, "base": read_json(BASE / "provenance.json"),
            "adapter": {"path": str(adapter), "sha256": sha256(adapter / "adapter_model.safetensors")},
            "merge": MERGES[method], "quantization": quantization,
            "check": {"questions": len(records), "source": str(TEST), "result": "equal" if records else "skipped",
                      "reference": REFERENCES[method], "reference_precision": evaluated,
                      "max_new_tokens": e["max_new_tokens"]},
            "gguf": gguf, "environment": environment()})
        card(tmp, args.run, p, adapter_only=False, precision=precision,
             gguf_files=sorted(f.name for f in tmp.iterdir()) if gguf else [])
    log.info("%s exported to %s (%s, %s); check: %s", args.run, out, precision, MERGES[method],
             f"{len(records)} answers equal" if records else "skipped")
    if args.push_to_hub:
        push(out, args.push_to_hub, args.run)


def push(folder: Path, repo_id: str, run_name: str) -> None:
    """Upload the whole export folder to `repo_id` (created private when missing) in one commit;
    huggingface_hub reads the token from HF_TOKEN and never logs it."""
    from huggingface_hub import HfApi, constants

    from medqa_scale.core.hub import with_retry

    api, what = HfApi(), f"pushing {folder} to {repo_id}"
    advice = "check the network and HF_ENDPOINT, then rerun with --push-to-hub (the export is kept)"
    with_retry(lambda: api.create_repo(repo_id, private=True, exist_ok=True), what, constants.ENDPOINT, advice)
    commit = with_retry(lambda: api.upload_folder(folder_path=folder, repo_id=repo_id,
                                                  commit_message=f"medqa-scale export of {run_name}"),
                        what, constants.ENDPOINT, advice)
    log.info("%s pushed to %s: %s", run_name, repo_id, commit.commit_url)


def export_adapter(run_name: str, method: str, adapter: Path, quantization, out: Path, tokenizer, p: dict,
                   precision: str) -> None:
    """The run's adapter as trained (its own bytes, checksummed), the tokenizer, export.json and the card."""
    import shutil

    with atomic_path(out, directory=True) as tmp:
        for f in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy2(adapter / f, tmp / f)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / RECORD, {"run": run_name, "method": method, "adapter_only": True,
                                  "base": read_json(BASE / "provenance.json"),
                                  "adapter": {"path": str(adapter), "sha256": sha256(adapter / "adapter_model.safetensors")},
                                  "quantization": quantization, "environment": environment()})
        card(tmp, run_name, p, adapter_only=True, precision=precision, gguf_files=[])
    log.info("%s: adapter exported to %s with its model card", run_name, out)


def card(folder: Path, run_name: str, p: dict, *, adapter_only: bool, precision: str, gguf_files: list[str]) -> None:
    """README.md: the model card, from the run's recorded metrics (medqa_scale/serve/model_card.py)."""
    from medqa_scale.core.params import method_args, parse_run
    from medqa_scale.serve.model_card import base_license, model_card

    method, scale, seed = parse_run(run_name)
    reference = "base-4bit" if method == "qlora" else "base"

    def optional(path: Path):
        return read_json(path) if path.exists() else None

    fields = method_args(p["train"]["args"], p["train"]["method_args"][method])
    settings = {"method": method, "scale": scale, "seed": seed, "LoraConfig": p["lora"], "learning rate": p["train"]["lr"],
                "epochs": fields.get("num_train_epochs"), "batch per device x accumulation":
                f"{fields.get('per_device_train_batch_size')} x {fields.get('gradient_accumulation_steps')}",
                "kl_beta": p["train"]["kl_beta"]}
    if method == "qlora":
        settings["BitsAndBytesConfig"] = p["quantization"]
    runinfo = optional(Path("metrics/runinfo") / f"train-{run_name}.json") or {}
    readme = BASE / "README.md"
    text = model_card(run=run_name, method=method, scale=str(scale), seed=int(seed), provenance=read_json(BASE / "provenance.json"),
                      license=base_license(readme.read_text(encoding="utf-8") if readme.exists() else None),
                      settings=settings, sources=(optional(Path("metrics/download_data.json")) or {}).get("sources", {}),
                      scores=optional(Path("metrics/evaluate") / f"{run_name}.json"), reference=reference,
                      reference_scores=optional(Path("metrics/evaluate") / f"{reference}.json"),
                      train=optional(Path("metrics/train") / f"{run_name}.json"),
                      hardware=runinfo.get("environment", {}).get("hardware"), adapter_only=adapter_only,
                      gguf_files=gguf_files, precision=precision)
    (folder / "README.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    run(main)
