"""The resume protocol of a training run, whole: a scratch directory per run keyed by everything
that affects training, checkpoints marked complete only once the Trainer has finished saving
them (with the cost so far), and, before a run starts, the partial checkpoints and the step log
past the last complete one removed.

A kill at any moment leaves either a complete checkpoint to resume from or one that is ignored
and cleaned; a changed param or input gives another key and starts fresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

from medqa_scale.core.durable import read_json, write_json

log = logging.getLogger(__name__)

COMPLETE = "complete.json"  # written into a checkpoint once the Trainer has finished saving it
COST = "cost.json"  # the cost meter's totals, saved with every checkpoint
FINISHED = "finished.json"  # in a run's scratch directory once its adapter is written


def run_key(files: list[Path], settings: dict) -> str:
    """A short hash of everything that affects training: the settings and the input files'
    contents (large files by size and their first and last MiB: the base model's weights are
    gigabytes, and a changed download changes those too)."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in files:
        for f in sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()):
            h.update(str(f.relative_to(path.parent)).encode())
            size = f.stat().st_size
            h.update(str(size).encode())
            with f.open("rb") as stream:
                h.update(stream.read(2**20))
                if size > 2**21:
                    stream.seek(-(2**20), 2)
                    h.update(stream.read())
    return h.hexdigest()[:16]


def code_files(modules, root: Path) -> list[Path]:
    """The project's own source files among `modules` (sys.modules' values): the stage and the
    library code it imported, so that a checkpoint of edited code is never resumed."""
    root = root.resolve()
    files = {Path(m.__file__).resolve() for m in list(modules) if getattr(m, "__file__", None)}
    return sorted(f for f in files if f.is_relative_to(root) and f.suffix == ".py" and ".venv" not in f.parts
                  and f.relative_to(root).parts[0] in ("stages", "medqa_scale"))


def scratch_dir(root: Path, run: str, key: str) -> Path:
    """`root/<run>-<key>`, after removing the run's directories of other keys: a changed param
    or input starts fresh."""
    for stale in root.glob(f"{run}-*"):
        if stale.name != f"{run}-{key}" and stale.name[len(run) + 1:].isalnum():
            shutil.rmtree(stale, ignore_errors=True)
    return root / f"{run}-{key}"


def last_complete_checkpoint(directory: Path, clean: bool = False) -> Path | None:
    """The checkpoint with the highest step that the Trainer finished saving. `clean` deletes
    the partial ones (a kill during a save), so the Trainer's own rotation never counts them."""
    complete = None
    for checkpoint in sorted(directory.glob("checkpoint-*"), key=checkpoint_step):
        if (checkpoint / COMPLETE).exists():
            complete = checkpoint
        elif clean:
            shutil.rmtree(checkpoint, ignore_errors=True)
    return complete


def checkpoint_step(checkpoint: Path) -> int:
    """The optimizer step of a Trainer checkpoint directory (checkpoint-<step>)."""
    return int(checkpoint.name.split("-")[1])


def truncate_steps_log(steps_log: Path, step: int) -> None:
    """Keep the log lines up to `step`: a resumed run logs the later steps again."""
    if steps_log.exists():
        lines = [line for line in steps_log.read_text(encoding="utf-8").splitlines() if json.loads(line)["step"] <= step]
        steps_log.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def mark_complete(checkpoint: Path, seconds: dict, step: int) -> None:
    """Mark a checkpoint the Trainer has finished saving as one to resume from, with the cost so
    far; the mark is written last, so a kill before it leaves a checkpoint that does not count."""
    (checkpoint / COST).write_text(json.dumps({"seconds": seconds}))
    (checkpoint / COMPLETE).write_text(json.dumps({"step": step}))


def prior_cost(checkpoint: Path | None) -> dict | None:
    """The cost totals saved with a checkpoint (None for a fresh start)."""
    return read_json(checkpoint / COST) if checkpoint else None


def prepare_resume(scratch: Path, name: str) -> None:
    """Delete partly saved checkpoints and the step log past the last complete one; say where
    the run resumes. A run that finished (its outputs asked for again) starts over."""
    if (scratch / FINISHED).exists():
        shutil.rmtree(scratch)
    resume = last_complete_checkpoint(scratch, clean=True)
    if resume:
        step = checkpoint_step(resume)
        log.info("resuming %s from step %d (%s)", name, step, resume)
        truncate_steps_log(scratch / "steps.jsonl", step)
    else:
        (scratch / "steps.jsonl").unlink(missing_ok=True)


def mark_finished(scratch: Path, adapter: Path) -> None:
    """Kept to inspect; the next run of the stage starts over."""
    write_json(scratch / FINISHED, {"adapter": str(adapter)})
