"""Ask a run's model questions; it answers as the run was evaluated.

The same base (4-bit for QLoRA and base-4bit), adapter, system prompt, chat template and greedy
decoding as the generate stage.

Run from the repository root:
    python -m medqa_scale.chat lora-2k-42 "高血压患者平时要注意什么？" "感冒了能喝酒吗？"
    python -m medqa_scale.chat base-4bit < questions.txt     # one question a line; blank lines skipped
    python -m medqa_scale.chat qlora-5k-42 --max-new-tokens 256 "..."
Reads:  models/base, models/adapters/<run> (not for base, base-4bit), data/params/quantization-<method>.json,
        params.yaml: seed, precision, model.trust_remote_code, preprocess.{system_prompt, max_source_len},
        evaluate.{generation, batch_size, max_new_tokens}
Prints: each answer on stdout, in question order, each followed by a newline; log lines on stderr.
Writes: nothing. Exit status 2, with one message, for an unknown run, a model not yet made, or a
        question longer than the prompts the model was trained and evaluated on.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from medqa_scale.chat_format import prompt_ids, to_messages
from medqa_scale.cli import PipelineError, run
from medqa_scale.device import pin_device, resolve_precision
from medqa_scale.durable import read_json
from medqa_scale.generation import generate_answers
from medqa_scale.modeling import load_run_model
from medqa_scale.params import REFERENCE_RUNS, load_params, run_method

log = logging.getLogger(__name__)

BASE = Path("models/base")
ADAPTERS = Path("models/adapters")
QUANTIZATION = Path("data/params")


def run_inputs(run_name: str) -> tuple[Path | None, dict | None]:
    """The run's adapter directory (None for the reference runs) and its base's quantization
    (BitsAndBytesConfig fields, None for a full-precision base), each checked to exist."""
    try:
        method = run_method(run_name)
    except ValueError as e:
        raise PipelineError(f"{e}, or one of {', '.join(REFERENCE_RUNS)}") from None
    if not (BASE / "config.json").exists():
        raise PipelineError(f"{BASE} holds no model: run `dvc repro download_model`")
    adapter = None if run_name in REFERENCE_RUNS else ADAPTERS / run_name
    if adapter is not None and not (adapter / "adapter_config.json").exists():
        raise PipelineError(f"{adapter} holds no adapter: run `dvc repro train@{run_name}` (its method, scale and "
                            "seed must be in params methods, split.scales and train.seeds)")
    if method is None:
        return adapter, None
    quantization_file = QUANTIZATION / f"quantization-{method}.json"
    if not quantization_file.exists():
        raise PipelineError(f"{quantization_file} not found: run `dvc repro check_params`")
    return adapter, read_json(quantization_file)


def read_questions(arguments: list[str], lines) -> list[str]:
    """The questions given as arguments, else one a line from `lines` (blank lines skipped)."""
    questions = arguments or [line.strip() for line in lines if line.strip()]
    if not questions:
        raise PipelineError("no questions: give them as arguments, or one a line on stdin")
    return questions


def check_lengths(prompts: list[list[int]], limit: int) -> None:
    """Raise on the first prompt over `limit` tokens: preprocess left such questions out of
    training and evaluation, so how the model answers them was never measured."""
    for i, ids in enumerate(prompts, 1):
        if len(ids) > limit:
            raise PipelineError(f"question {i} is {len(ids)} tokens with the system prompt and chat template, over "
                                f"preprocess.max_source_len ({limit} tokens), the longest prompt the model was trained "
                                "and evaluated on: shorten it")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m medqa_scale.chat", description=__doc__.split("\n")[0])
    ap.add_argument("run", help="base, base-4bit, or a trained run such as lora-2k-42 (method-scale-seed)")
    ap.add_argument("questions", nargs="*", help="questions to answer (default: one a line from stdin)")
    ap.add_argument("--max-new-tokens", type=positive_int, help="longest answer in tokens (default: evaluate.max_new_tokens)")
    return ap.parse_intermixed_args(argv)  # options may come after the questions, or between them


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    p = load_params()
    pin_device(p["device"])
    adapter, quantization = run_inputs(args.run)
    if not args.questions and sys.stdin.isatty():
        log.info("type one question a line; end with Ctrl-D")
    questions = read_questions(args.questions, sys.stdin)  # stdin is read only without arguments
    from transformers import AutoTokenizer, set_seed

    set_seed(p["seed"])
    tokenizer = AutoTokenizer.from_pretrained(BASE, padding_side="left")  # generate_answers pads on the left
    chats = [to_messages(q, None, p["preprocess"]["system_prompt"]) for q in questions]
    kwargs = p["model"]["chat_template_kwargs"]
    check_lengths([prompt_ids(tokenizer, c, kwargs) for c in chats], p["preprocess"]["max_source_len"])
    e = p["evaluate"]
    # Merged for LoRA, unmerged on the 4-bit base for QLoRA: exactly as the generate stage answers.
    model = load_run_model(BASE, adapter, quantization, precision=resolve_precision(p["precision"]),
                           trust_remote_code=p["model"]["trust_remote_code"], merge=True)
    answers, speed = generate_answers(model, tokenizer, chats, e["batch_size"], args.max_new_tokens or e["max_new_tokens"],
                                      e["generation"], kwargs)
    log.info("%s: %d answers, %.1f tokens/s, %d ran to max_new_tokens", args.run, len(answers),
             speed["tokens_per_second"], speed["ran_to_max_new_tokens"])
    for answer in answers:
        sys.stdout.write(answer + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    run(main)
