"""medqa_scale.train.trainer: TrainingArguments from the method's fields, encoded records, the loss
on answer tokens (equal to the Trainer's own), KL to the base, padding-free batches.

The whole train stage, on a tiny model, is tested in tests/test_stages.py.
Run: python -m pytest tests/test_trainer.py -q
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from medqa_scale.builtin.corpus import generate_pairs
from medqa_scale.core.params import method_args, read_yaml
from medqa_scale.model.chat_format import IGNORE_INDEX, to_messages
from medqa_scale.train.trainer import RegularisedTrainer, data_collator, encode_records, training_arguments

ROOT = Path(__file__).resolve().parents[1]


def arguments(params: dict, method: str, precision: str, output_dir: Path):
    """training_arguments as the train stage builds them from params."""
    train = params["train"]
    return training_arguments(method_args(train["args"], train["method_args"][method]), lr=train["lr"], seed=params["seed"],
                              precision=precision, output_dir=output_dir, padding_free=train["padding_free"],
                              num_processes=train["num_processes"])


@pytest.fixture
def params():
    return copy.deepcopy(read_yaml(ROOT / "params.yaml"))


def test_training_arguments_take_train_args_as_they_are_plus_what_the_pipeline_sets(params, tmp_path):
    params["train"]["lr"] = 5e-05
    params["train"]["method_args"]["qlora"] = {"per_device_train_batch_size": 3, "gradient_accumulation_steps": 5,
                                               "optim": "paged_adamw_8bit", "activation_checkpointing": True}
    params["train"]["args"]["weight_decay"] = 0.25
    args = arguments(params, "qlora", "fp32", tmp_path / "ckpt")
    assert args.learning_rate == 5e-05 and isinstance(args.learning_rate, float)
    assert args.per_device_train_batch_size == 3 and args.gradient_accumulation_steps == 5
    assert args.weight_decay == 0.25
    assert args.seed == args.data_seed == params["seed"]
    assert args.output_dir == str(tmp_path / "ckpt")
    assert args.report_to == [] or args.report_to == "none"
    assert not args.bf16 and not args.fp16
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss"
    lora = arguments(params, "lora", "fp32", tmp_path / "ckpt")
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
    args = arguments(params, "lora", precision, tmp_path)
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


@pytest.fixture(scope="module")
def data(tiny_base):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    records = [{"messages": to_messages(r["question"], r["answer"], "系统")} for r in generate_pairs(48, seed=3)]
    return tokenizer, encode_records(tokenizer, records[:32]), encode_records(tokenizer, records[32:])


def fit(tiny_base, data, tmp_path, trainer_class=RegularisedTrainer, padding_free=False, dropout=0.1, **kwargs):
    """Train a fresh adapter on `data` for 4 steps; (the model, its trainer)."""
    from transformers import Trainer

    from medqa_scale.model.loading import add_trainable_adapter, load_base_model

    p = copy.deepcopy(read_yaml(ROOT / "params.yaml"))
    # The tests compare what 4 steps change, so the step size is theirs, not whatever lr an experiment
    # (`dvc exp run -S train.lr=5e-5`) left in the workspace's params.yaml: at 5e-5 the change is float noise.
    p["train"]["lr"] = 1e-2
    p["train"]["padding_free"] = padding_free
    p["train"]["method_args"]["lora"] = {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 1}
    p["train"]["args"].update(num_train_epochs=1, eval_strategy="no", save_strategy="no", load_best_model_at_end=False,
                              logging_steps=1, disable_tqdm=True)
    tokenizer, train, dev = data
    torch.manual_seed(0)
    model = load_base_model(tiny_base, quantization=None, precision="fp32", trust_remote_code=False)
    model = add_trainable_adapter(model, {**p["lora"], "lora_dropout": dropout}, quantized=False, gradient_checkpointing=False)
    trainer = trainer_class(model=model, args=arguments(p, "lora", "fp32", tmp_path), train_dataset=train,
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
    from medqa_scale.train.trainer import answer_kl

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


def test_batch_rebalance_draws_its_batches_from_the_runs_seed(tiny_base, data, params, tmp_path):
    # transformers builds BatchRebalanceSampler without a seed (always 42): seeds would all train on
    # the same batches in the same order. Each optimizer step stays a random draw of the data.
    from medqa_scale.model.loading import load_base_model

    tokenizer, train, _ = data
    model = load_base_model(tiny_base, quantization=None, precision="fp32", trust_remote_code=False)
    params["train"]["args"].update(train_sampling_strategy="batch_rebalance", eval_strategy="no", save_strategy="no",
                                   load_best_model_at_end=False)
    params["train"]["method_args"]["lora"] = {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2}

    def batches(seed: int) -> list[list[int]]:
        params["seed"] = seed
        trainer = RegularisedTrainer(model=model, args=arguments(params, "lora", "fp32", tmp_path / str(seed)),
                                     train_dataset=train, data_collator=data_collator(tokenizer, False))
        return [list(b) for b in trainer._get_train_sampler()]

    first, again, other = batches(1), batches(1), batches(2)
    assert first == again and first != other
    assert sorted(i for b in first for i in b) == list(range(len(train)))  # every sample once per epoch
    lengths = [len(ids) for ids in train["input_ids"]]
    step = sorted(i for b in first[:2] for i in b)  # one optimizer step: 8 samples in 2 micro-batches
    assert len(step) == 8 and max(lengths[i] for i in first[0]) >= max(lengths[i] for i in first[1])


@pytest.mark.parametrize("kl_beta", [0.0, 0.5])
def test_a_chunked_answer_loss_trains_exactly_like_the_whole_one(tiny_base, data, tmp_path, kl_beta):
    # train.loss_chunk_tokens: the logits of 7 answer tokens at a time (recomputed in backward), against
    # all at once; the same losses, KL and adapter after 4 steps.
    whole, whole_trainer = fit(tiny_base, data, tmp_path / "a", kl_beta=kl_beta, dropout=0.0)
    chunked, chunked_trainer = fit(tiny_base, data, tmp_path / "b", kl_beta=kl_beta, dropout=0.0, loss_chunk_tokens=7)
    assert losses(chunked_trainer) == pytest.approx(losses(whole_trainer), rel=1e-5)
    kl = [[e["kl_to_base"] for e in t.state.log_history if "kl_to_base" in e] for t in (whole_trainer, chunked_trainer)]
    assert kl[0] == pytest.approx(kl[1], rel=1e-4) and (len(kl[0]) == 4 if kl_beta else not kl[0])
    a, b = adapter_weights(whole), adapter_weights(chunked)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert any(not torch.equal(a[k], torch.zeros_like(a[k])) for k in a if "lora_B" in k)  # it did train
