"""Where a run's model comes from: the base, the run's adapter and its base's quantization, each
checked to exist with a message naming the stage that makes it; and the prompt length a run was
trained and evaluated on. The commands that answer questions (chat, export, the web page) share
these.
"""

from __future__ import annotations

from pathlib import Path

from medqa_scale.core.cli import PipelineError
from medqa_scale.core.durable import read_json
from medqa_scale.core.params import REFERENCE_RUNS, run_method

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


def check_lengths(prompts: list[list[int]], limit: int) -> None:
    """Raise on the first prompt over `limit` tokens: preprocess left such questions out of
    training and evaluation, so how the model answers them was never measured."""
    for i, ids in enumerate(prompts, 1):
        if len(ids) > limit:
            raise PipelineError(f"question {i} is {len(ids)} tokens with the system prompt and chat template, over "
                                f"preprocess.max_source_len ({limit} tokens), the longest prompt the model was trained "
                                "and evaluated on: shorten it")
