"""medqa_scale.train.cost: the cost meter's time split, tokens/s and step log, the stop on a
non-finite loss, and the DVCLive curves summarize reads.

Run: python -m pytest tests/test_cost.py -q
"""

from __future__ import annotations

import json

import pytest

from medqa_scale.train.cost import CostMeter, NonFiniteLoss, write_curves


class _State:
    is_world_process_zero = True
    global_step, epoch, num_input_tokens_seen = 3, 0.5, 0


def test_a_nan_or_infinite_loss_stops_the_run_with_advice(tmp_path):
    meter = CostMeter(tmp_path / "steps.jsonl", memory=None)
    for logs in ({"loss": float("nan")}, {"grad_norm": float("inf")}):
        with pytest.raises(NonFiniteLoss, match="lower train.lr.*bf16"):
            meter.on_log(None, _State(), None, logs=logs)


def test_the_cost_meter_splits_time_and_counts_tokens_per_second(tmp_path):
    import time

    class Memory:
        def mb(self):
            return 12.0

    state = _State()
    meter = CostMeter(tmp_path / "steps.jsonl", Memory(), prior={"seconds": {"train": 10.0, "eval": 1.0, "save": 0.5}})
    meter.on_train_begin(None, state, None)
    time.sleep(0.05)
    meter.on_step_end(None, state, None)
    state.num_input_tokens_seen = 500
    meter.on_log(None, state, None, logs={"loss": 2.0, "learning_rate": 1e-3})
    time.sleep(0.03)
    meter.on_evaluate(None, state, None)
    assert 10.04 < meter.seconds["train"] < 10.5 and 1.02 < meter.seconds["eval"] < 1.5 and meter.seconds["save"] == 0.5
    [line] = (tmp_path / "steps.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["step"] == 3 and record["loss"] == 2.0 and record["memory_mb"] == 12.0
    assert 500 / 0.5 < record["tokens_per_second"] < 500 / 0.04


def test_curves_from_the_log_history_are_what_summarize_reads(tmp_path):
    from medqa_scale.evaluate.summary import loss_curves

    history = [{"loss": 3.0, "learning_rate": 1e-3, "grad_norm": 1.0, "epoch": 0.5, "step": 2},
               {"eval_loss": 2.5, "epoch": 0.5, "step": 2},
               {"loss": 2.0, "learning_rate": 5e-4, "grad_norm": 0.5, "epoch": 1.0, "step": 4},
               {"train_runtime": 1.0, "train_loss": 2.5, "epoch": 1.0, "step": 4}]
    write_curves(tmp_path / "lora-1k", history)
    curves = loss_curves([("lora-1k", 1000)], tmp_path)
    train = curves[curves.series == "train"]
    assert list(train.samples_seen) == [500.0, 1000.0] and list(train.loss) == [3.0, 2.0]
    assert list(curves[curves.series == "eval"].loss) == [2.5]
