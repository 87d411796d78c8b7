"""medqa_scale.training: TrainingArguments from params, encoded records, the loss on answer tokens
(equal to the Trainer's own), KL to the base, padding-free batches, cost metering, resuming.

The whole train stage, on a tiny model, is tested in tests/test_stages.py.
Run: python -m pytest tests/test_training.py -q
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from medqa_scale.builtin.corpus import generate_pairs
from medqa_scale.chat_format import IGNORE_INDEX, to_messages
from medqa_scale.params import read_yaml
from medqa_scale.training import (COMPLETE, CostMeter, NonFiniteLoss, RegularisedTrainer, data_collator,
                                  encode_records, last_complete_checkpoint, run_key, scratch_dir, training_arguments,
                                  truncate_steps_log, write_curves)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def params():
    return copy.deepcopy(read_yaml(ROOT / "params.yaml"))


def test_training_arguments_take_train_args_as_they_are_plus_what_the_pipeline_sets(params, tmp_path):
    params["train"]["lr"] = 5e-05
    params["train"]["method_args"]["qlora"] = {"per_device_train_batch_size": 3, "gradient_accumulation_steps": 5,
                                               "optim": "paged_adamw_8bit", "activation_checkpointing": True}
    params["train"]["args"]["weight_decay"] = 0.25
    args = training_arguments(params, "qlora", "fp32", tmp_path / "ckpt", seed=params["seed"])
    assert args.learning_rate == 5e-05 and isinstance(args.learning_rate, float)
    assert args.per_device_train_batch_size == 3 and args.gradient_accumulation_steps == 5
    assert args.weight_decay == 0.25
    assert args.seed == args.data_seed == params["seed"]
    assert args.output_dir == str(tmp_path / "ckpt")
    assert args.report_to == [] or args.report_to == "none"
    assert not args.bf16 and not args.fp16
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss"
    lora = training_arguments(params, "lora", "fp32", tmp_path / "ckpt", seed=params["seed"])
    assert lora.per_device_train_batch_size == params["train"]["method_args"]["lora"]["per_device_train_batch_size"]
    # QLoRA's own arguments win over the shared ones; the paged optimizer needs CUDA, so CPU falls back.
    assert args.activation_checkpointing and not lora.activation_checkpointing
    assert args.optim == ("paged_adamw_8bit" if torch.cuda.is_available() else "adamw_torch")
    assert not args.logging_nan_inf_filter  # a NaN loss must reach the guard


@pytest.mark.parametrize("precision,bf16,fp16", [("bf16", True, False), ("fp16", False, True), ("fp32", False, False)])
def test_precision_sets_the_mixed_precision_flags(params, tmp_path, precision, bf16, fp16, monkeypatch):
    from transformers import TrainingArguments

    # Build without validation of the hardware: only the mapping from precision to flags is tested here.
    monkeypatch.setattr(TrainingArguments, "__post_init__", lambda self: None)
    args = training_arguments(params, "lora", precision, tmp_path, seed=params["seed"])
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


# --- the loss --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tiny_base):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    records = [{"messages": to_messages(r["question"], r["answer"], "系统")} for r in generate_pairs(48, seed=3)]
    return tokenizer, encode_records(tokenizer, records[:32]), encode_records(tokenizer, records[32:])


def fit(tiny_base, data, tmp_path, trainer_class=RegularisedTrainer, padding_free=False, dropout=0.1, **kwargs):
    """Train a fresh adapter on `data` for 4 steps; (the model, its trainer)."""
    from transformers import Trainer

    from medqa_scale.modeling import add_trainable_adapter, load_base_model

    p = copy.deepcopy(read_yaml(ROOT / "params.yaml"))
    p["train"]["padding_free"] = padding_free
    p["train"]["method_args"]["lora"] = {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 1}
    p["train"]["args"].update(num_train_epochs=1, eval_strategy="no", save_strategy="no", load_best_model_at_end=False,
                              logging_steps=1, disable_tqdm=True)
    tokenizer, train, dev = data
    torch.manual_seed(0)
    model = load_base_model(tiny_base, quantization=None, precision="fp32", trust_remote_code=False)
    model = add_trainable_adapter(model, {**p["lora"], "lora_dropout": dropout}, quantized=False, gradient_checkpointing=False)
    trainer = trainer_class(model=model, args=training_arguments(p, "lora", "fp32", tmp_path, seed=p["seed"]), train_dataset=train,
                            eval_dataset=dev, data_collator=data_collator(tokenizer, padding_free), **kwargs)
    trainer.train()
    assert trainer is not None and Trainer is not None
    return model, trainer


def losses(trainer) -> list[float]:
    return [e["loss"] for e in trainer.state.log_history if "loss" in e]


def adapter_weights(model) -> dict:
    return {k: v.detach().clone() for k, v in model.named_parameters() if "lora_" in k}


def test_the_answer_token_loss_with_kl_beta_0_is_the_trainers_own(tiny_base, data, tmp_path):
    from transformers import Trainer

    ours, our_trainer = fit(tiny_base, data, tmp_path / "a", kl_beta=0.0)
    plain, plain_trainer = fit(tiny_base, data, tmp_path / "b", trainer_class=Trainer)
    assert losses(our_trainer) == pytest.approx(losses(plain_trainer), rel=1e-5) and len(losses(plain_trainer)) == 4
    a, b = adapter_weights(ours), adapter_weights(plain)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def base_kl(model, dataset, tokenizer) -> float:
    """Mean KL(base || tuned) over the answer tokens of `dataset`, measured afresh."""
    from medqa_scale.training import answer_kl

    batch = data_collator(tokenizer, False)([dataset[i] for i in range(len(dataset))])
    mask = batch["labels"][:, 1:] != IGNORE_INDEX
    model.eval()
    with torch.no_grad():
        tuned = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1][mask]
        with model.disable_adapter():
            base = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1][mask]
    return answer_kl(base, tuned).item()


def test_kl_beta_keeps_the_tuned_model_closer_to_the_base(tiny_base, data, tmp_path):
    tokenizer, _, dev = data
    free, _ = fit(tiny_base, data, tmp_path / "a", kl_beta=0.0)
    held, trainer = fit(tiny_base, data, tmp_path / "b", kl_beta=50.0)
    assert base_kl(held, dev, tokenizer) < 0.7 * base_kl(free, dev, tokenizer)
    assert all(e["kl_to_base"] >= 0 for e in trainer.state.log_history if "loss" in e)


def test_padding_free_batches_train_exactly_like_padded_ones(tiny_base, data, tmp_path):
    # Without dropout (whose masks depend on the tensor shape) the two layouts are the same sums.
    padded, a = fit(tiny_base, data, tmp_path / "a", dropout=0.0)
    packed, b = fit(tiny_base, data, tmp_path / "b", padding_free=True, dropout=0.0)
    assert losses(b) == pytest.approx(losses(a), rel=1e-4)
    x, y = adapter_weights(padded), adapter_weights(packed)
    assert all(torch.allclose(x[k], y[k], atol=1e-5) for k in x)


def test_a_padding_free_batch_keeps_samples_apart(data):
    tokenizer, train, _ = data
    batch = data_collator(tokenizer, True)([train[0], train[1]])
    n0 = len(train[0]["input_ids"])
    assert batch["input_ids"].shape == (1, n0 + len(train[1]["input_ids"])) and "attention_mask" not in batch
    assert batch["position_ids"][0, n0] == 0 and batch["labels"][0, n0] == IGNORE_INDEX  # restarts, no cross target
    assert batch["use_cache"] is False  # else transformers lets packed samples attend to each other


# --- cost and failure --------------------------------------------------------------------------------


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


# --- resuming -----------------------------------------------------------------------------------------


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


def test_curves_from_the_log_history_are_what_summarize_reads(tmp_path):
    from medqa_scale.summary import loss_curves

    history = [{"loss": 3.0, "learning_rate": 1e-3, "grad_norm": 1.0, "epoch": 0.5, "step": 2},
               {"eval_loss": 2.5, "epoch": 0.5, "step": 2},
               {"loss": 2.0, "learning_rate": 5e-4, "grad_norm": 0.5, "epoch": 1.0, "step": 4},
               {"train_runtime": 1.0, "train_loss": 2.5, "epoch": 1.0, "step": 4}]
    write_curves(tmp_path / "lora-1k", history)
    curves = loss_curves([("lora-1k", 1000)], tmp_path)
    train = curves[curves.series == "train"]
    assert list(train.samples_seen) == [500.0, 1000.0] and list(train.loss) == [3.0, 2.0]
    assert list(curves[curves.series == "eval"].loss) == [2.5]
