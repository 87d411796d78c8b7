"""medqa_scale.training: TrainingArguments from params, encoded records, the DVCLive callback.

The whole train stage, on a tiny model, is tested in tests/test_stages.py.
Run: python -m pytest tests/test_training.py -q
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from medqa_scale.builtin.corpus import generate_pairs
from medqa_scale.chat import IGNORE_INDEX, to_messages
from medqa_scale.params import read_yaml
from medqa_scale.training import dvclive_callback, encode_records, training_arguments

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def params():
    return copy.deepcopy(read_yaml(ROOT / "params.yaml"))


def test_training_arguments_take_train_args_as_they_are_plus_what_the_pipeline_sets(params, tmp_path):
    params["train"]["lr"] = 5e-05
    params["train"]["batch"]["qlora"] = {"per_device_train_batch_size": 3, "gradient_accumulation_steps": 5}
    params["train"]["args"]["weight_decay"] = 0.25
    args = training_arguments(params, "qlora", "fp32", tmp_path / "ckpt")
    assert args.learning_rate == 5e-05 and isinstance(args.learning_rate, float)
    assert args.per_device_train_batch_size == 3 and args.gradient_accumulation_steps == 5
    assert args.weight_decay == 0.25
    assert args.seed == args.data_seed == params["seed"]
    assert args.output_dir == str(tmp_path / "ckpt")
    assert args.report_to == [] or args.report_to == "none"
    assert not args.bf16 and not args.fp16
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss"
    lora = training_arguments(params, "lora", "fp32", tmp_path / "ckpt")
    assert lora.per_device_train_batch_size == params["train"]["batch"]["lora"]["per_device_train_batch_size"]


@pytest.mark.parametrize("precision,bf16,fp16", [("bf16", True, False), ("fp16", False, True), ("fp32", False, False)])
def test_precision_sets_the_mixed_precision_flags(params, tmp_path, precision, bf16, fp16, monkeypatch):
    from transformers import TrainingArguments

    # Build without validation of the hardware: only the mapping from precision to flags is tested here.
    monkeypatch.setattr(TrainingArguments, "__post_init__", lambda self: None)
    args = training_arguments(params, "lora", precision, tmp_path)
    assert (args.bf16, args.fp16) == (bf16, fp16)


def test_encode_records_masks_the_prompt_of_every_record(tiny_base):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    records = [{"messages": to_messages(r["question"], r["answer"], "系统")} for r in generate_pairs(3, seed=1)]
    data = encode_records(tokenizer, records)
    assert len(data) == 3 and set(data.column_names) == {"input_ids", "attention_mask", "labels"}
    for row in data:
        assert len(row["input_ids"]) == len(row["labels"]) == len(row["attention_mask"])
        assert row["labels"][0] == IGNORE_INDEX and row["labels"][-1] != IGNORE_INDEX


def test_dvclive_callback_logs_into_the_runs_own_directory(tmp_path):
    callback = dvclive_callback(tmp_path / "dvclive" / "lora-1k")
    assert callback.live.dir == str(tmp_path / "dvclive" / "lora-1k")
    assert callback.live._dvcyaml is None and callback.live._save_dvc_exp is False
