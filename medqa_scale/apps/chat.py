"""Ask a run's model questions; it answers as the run was evaluated.

The same base (4-bit for QLoRA and base-4bit), adapter, system prompt, chat template and greedy
decoding as the generate stage.

Run from the repository root:
    python -m medqa_scale.apps.chat lora-2k-42 "高血压患者平时要注意什么？" "感冒了能喝酒吗？"
    python -m medqa_scale.apps.chat base-4bit < questions.txt     # one question a line; blank lines skipped
    python -m medqa_scale.apps.chat qlora-5k-42 --max-new-tokens 256 "..."
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

from medqa_scale.model.chat_format import prompt_ids, to_messages
from medqa_scale.core.cli import PipelineError, run
from medqa_scale.core.params import load_params
from medqa_scale.evaluate.generation import generate_answers, generation_config
from medqa_scale.model.device import pin_device, resolve_precision
from medqa_scale.model.loading import load_run_model
from medqa_scale.serve.runs import BASE, check_lengths, run_inputs

log = logging.getLogger(__name__)


def read_questions(arguments: list[str], lines) -> list[str]:
    """The questions given as arguments, else one a line from `lines` (blank lines skipped)."""
    questions = arguments or [line.strip() for line in lines if line.strip()]
    if not questions:
        raise PipelineError("no questions: give them as arguments, or one a line on stdin")
    return questions


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m medqa_scale.apps.chat", description=__doc__.split("\n")[0])
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
    config = generation_config(tokenizer, e["generation"], args.max_new_tokens or e["max_new_tokens"])
    answers, speed = generate_answers(model, tokenizer, chats, e["batch_size"], config, kwargs)
    log.info("%s: %d answers, %.1f tokens/s, %d ran to max_new_tokens", args.run, len(answers),
             speed["tokens_per_second"], speed["ran_to_max_new_tokens"])
    for answer in answers:
        sys.stdout.write(answer + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    run(main)
