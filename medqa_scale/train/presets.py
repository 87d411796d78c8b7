"""The presets of conf/ (hardware, model, strategy) composed as `dvc exp run -S` composes them, and
the table (docs/presets.md) of what every hardware and model preset fits and costs for the study.

    python -m medqa_scale.apps.doctor --presets-table      # prints the table docs/presets.md holds
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from medqa_scale.train.memory import (FIT_FRACTION, UTILISATION, GiB, estimate_hours, fit, parameter_counts, planning_arch,
                                params_run_settings)
from medqa_scale.core.params import read_yaml, scale_size

TABLE_START, TABLE_END = "<!-- presets-table -->", "<!-- /presets-table -->"


def names(conf: Path, group: str) -> list[str]:
    """A config group's options, as `-S <group>=<option>` names them."""
    return sorted(p.stem for p in (conf / group).glob("*.yaml"))


def gpu_presets(conf: Path) -> list[str]:
    """The hardware presets with a card, smallest first."""
    memory = {name: read_yaml(conf / "hardware" / f"{name}.yaml")["hardware"]["gpu_memory_gb"] for name in names(conf, "hardware")}
    return sorted((n for n, gb in memory.items() if gb), key=memory.get)


def compose(conf: Path, overrides: list[str]) -> dict:
    """params.yaml as `dvc exp run -S o1 -S o2 ...` would compose it from `conf`, without a repository."""
    from dvc.utils.hydra import compose_and_dump

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "params.yaml"
        compose_and_dump(out, str(conf.resolve()), None, "config", str(Path(tmp) / "plugins"), overrides)
        return read_yaml(out)


def study_rows(conf: Path) -> list[dict]:
    """For each model preset, method and card: the study (profile=study) with that hardware preset,
    its estimated peak memory, whether it fits, the first advice that fits when not, and the hours
    of one run at each of the study's scales."""
    rows = []
    size = {m: sum(parameter_counts(read_yaml(conf / "model" / f"{m}.yaml")["model"]["arch"])) for m in names(conf, "model")}
    for model in sorted(size, key=size.get):  # smallest first
        for hardware in gpu_presets(conf):
            params = compose(conf, ["profile=study", f"hardware={hardware}", f"model={model}"])
            arch, card = planning_arch(params), params["hardware"]["gpu_memory_gb"]
            for method in params["methods"]:
                est, advice = fit(arch, params_run_settings(params, method, "bf16"), int(card * GiB))
                hours = [estimate_hours(params, arch, method, scale_size(s))[0] for s in params["split"]["scales"]]
                rows.append({"model": model, "hardware": hardware, "card_gb": card, "method": method,
                             "memory_gib": est["total"] / GiB, "fits": not advice,
                             "advice": next((a for a in advice if a.endswith("fits")), advice[-1] if advice else ""),
                             "hours": hours, "scales": [str(s) for s in params["split"]["scales"]]})
    return rows


def presets_markdown(conf: Path) -> str:
    """docs/presets.md's tables: memory and fit, hours per run, and the combinations that do not fit."""
    rows = study_rows(conf)
    cards = list(dict.fromkeys(r["hardware"] for r in rows))
    gb = {r["hardware"]: r["card_gb"] for r in rows}
    keys = list(dict.fromkeys((r["model"], r["method"]) for r in rows))
    cell = {(r["model"], r["method"], r["hardware"]): r for r in rows}
    head = "| model | method | " + " | ".join(f"{c} ({gb[c]:g} GB)" for c in cards) + " |\n" + "|---" * (2 + len(cards)) + "|\n"
    memory = head + "".join(
        f"| {m} | {meth} | " + " | ".join(
            f"{cell[m, meth, c]['memory_gib']:.1f} {'✓' if cell[m, meth, c]['fits'] else '✗'}" for c in cards) + " |\n"
        for m, meth in keys)
    hours = head + "".join(
        f"| {m} | {meth} | " + " | ".join(
            " / ".join(f"{h:.1f}" for h in cell[m, meth, c]["hours"]) if cell[m, meth, c]["fits"] else "—"
            for c in cards) + " |\n"
        for m, meth in keys)
    misfits = "".join(f"- `hardware={r['hardware']} model={r['model']}`, {r['method']}: ~{r['memory_gib']:.1f} GiB; "
                      f"{r['advice']}\n" for r in rows if not r["fits"])
    scales = " / ".join(rows[0]["scales"])
    return (f"{TABLE_START}\n"
            f"Estimated training peak memory (GiB) of the study (`profile=study`: {scales} samples, 1024 tokens, "
            f"rank-8 adapters on attention) with each hardware preset's batch settings; ✓ fits in "
            f"{FIT_FRACTION:.0%} of the card, ✗ does not (what to change is listed below):\n\n{memory}\n"
            f"Estimated hours per run at {scales} samples (training and its evaluations, full-length samples: an "
            f"upper bound), from FLOPs at {UTILISATION['lora']:.0%} (LoRA) and {UTILISATION['qlora']:.0%} (QLoRA) of "
            f"the peak of the card each preset names; — where the run does not fit:\n\n{hours}\n"
            f"Do not fit, and the doctor's first change that fits:\n\n{misfits}{TABLE_END}")
