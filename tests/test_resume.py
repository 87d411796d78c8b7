"""medqa_scale.train.resume: the run key, scratch directories, complete checkpoints only, the step
log cut back to the checkpoint. A killed run resuming end to end is in tests/test_stages.py.

Run: python -m pytest tests/test_resume.py -q
"""

from __future__ import annotations

import json

from medqa_scale.train.resume import COMPLETE, last_complete_checkpoint, run_key, scratch_dir, truncate_steps_log


def test_the_run_key_changes_with_any_setting_or_input(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "w.bin").write_bytes(b"w" * (3 * 2**20))
    (tmp_path / "train.jsonl").write_text("a\n")
    files = [tmp_path / "base", tmp_path / "train.jsonl"]
    key = run_key(files, {"lr": 1e-4})
    assert run_key(files, {"lr": 1e-4}) == key and run_key(files, {"lr": 2e-4}) != key
    (tmp_path / "train.jsonl").write_text("b\n")
    assert run_key(files, {"lr": 1e-4}) != key
    (tmp_path / "train.jsonl").write_text("a\n")
    (tmp_path / "base" / "w.bin").write_bytes(b"w" * (3 * 2**20 - 1) + b"x")  # the last MiB of a large file
    assert run_key(files, {"lr": 1e-4}) != key


def test_scratch_dirs_of_other_keys_go_and_only_complete_checkpoints_count(tmp_path):
    for name in ("lora-1k-aaaa", "lora-1k-bbbb", "lora-10k-cccc"):
        (tmp_path / name).mkdir()
    scratch = scratch_dir(tmp_path, "lora-1k", "bbbb")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lora-10k-cccc", "lora-1k-bbbb"]
    for step, complete in ((2, True), (4, True), (6, False)):
        (scratch / f"checkpoint-{step}").mkdir()
        if complete:
            (scratch / f"checkpoint-{step}" / COMPLETE).write_text("{}")
    assert last_complete_checkpoint(scratch).name == "checkpoint-4"
    assert (scratch / "checkpoint-6").exists()  # only clean=True deletes
    assert last_complete_checkpoint(scratch, clean=True).name == "checkpoint-4"
    assert sorted(p.name for p in scratch.iterdir()) == ["checkpoint-2", "checkpoint-4"]


def test_truncate_steps_log_keeps_the_steps_up_to_the_checkpoint(tmp_path):
    log = tmp_path / "steps.jsonl"
    log.write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3, 4)))
    truncate_steps_log(log, 2)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2]


def test_prepare_resume_cleans_partial_checkpoints_and_a_finished_run_starts_over(tmp_path):
    from medqa_scale.train.resume import mark_complete, mark_finished, prepare_resume, prior_cost

    scratch = tmp_path / "lora-1k-42-abcd"
    for step in (2, 4):
        (scratch / f"checkpoint-{step}").mkdir(parents=True)
    mark_complete(scratch / "checkpoint-2", {"train": 3.0, "eval": 1.0, "save": 0.5}, 2)  # 4: killed while saving
    (scratch / "steps.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3, 4)))
    prepare_resume(scratch, "lora-1k-42")
    assert sorted(p.name for p in scratch.iterdir()) == ["checkpoint-2", "steps.jsonl"]
    assert [json.loads(line)["step"] for line in (scratch / "steps.jsonl").read_text().splitlines()] == [1, 2]
    assert prior_cost(last_complete_checkpoint(scratch)) == {"seconds": {"train": 3.0, "eval": 1.0, "save": 0.5}}
    assert prior_cost(None) is None
    mark_finished(scratch, tmp_path / "adapter")
    prepare_resume(scratch, "lora-1k-42")
    assert not scratch.exists()  # its outputs asked for again: the run starts over
