"""Stage check_params: check every param before any other stage runs.

Run:    dvc repro check_params      (or: python -m stages.check_params)
Reads:  params.yaml (every key)
Checks: with a card in params hardware (a conf/hardware/ preset), that every method's runs fit it
        (medqa_scale.train.memory, from params model.arch): before any download
Writes: data/params/valid.json, the same bytes while the params are valid: every other stage
        depends on it, so a change to a validation rule reruns this check and nothing else
        data/params/quantization-<method>.json, what each method loads its base model with
        (BitsAndBytesConfig fields for qlora, null for lora): the train and evaluate stages of
        that method depend on it, so a QLoRA knob reruns only the QLoRA stages

Bad params, or runs that cannot fit the card, stop here with one message that names every
problem and its fix (exit status 2).
"""

from __future__ import annotations

import logging
from pathlib import Path

from medqa_scale.core.cli import PipelineError, run
from medqa_scale.core.durable import remove_stale, write_json
from medqa_scale.train.memory import card_problems
from medqa_scale.core.params import METHODS
from medqa_scale.core.validation import check_params, method_quantization

log = logging.getLogger(__name__)

OUT = Path("data/params")
VALID = OUT / "valid.json"


def main() -> None:
    outputs = [VALID] + [OUT / f"quantization-{m}.json" for m in METHODS]
    remove_stale(*outputs)
    params = check_params()
    misfits = card_problems(params)
    if misfits:
        raise PipelineError("the runs would not fit the card; change params and rerun (`python -m medqa_scale.apps.doctor` "
                            "shows every estimate):\n" + "\n".join(f"  - {m}" for m in misfits))
    write_json(VALID, {"params.yaml": "valid"})
    for method in METHODS:
        write_json(OUT / f"quantization-{method}.json", method_quantization(params, method))
    log.info("params.yaml is valid%s", "; every run fits the card of hardware=%s" % params["hardware"]["preset"]
             if params["hardware"]["gpu_memory_gb"] else "")


if __name__ == "__main__":
    run(main)
