"""What the train stage hands to transformers' Trainer.

- the encoded data, batched with padding or padding-free (each batch one row, position ids
  restarting per sample: transformers then keeps attention inside each sample);
- TrainingArguments from the method's fields (`train.args`, overridden per method by
  `train.method_args`);
- `RegularisedTrainer`: the loss on answer tokens, computed from their logits alone (all at once,
  or `train.loss_chunk_tokens` at a time; or Liger's fused loss with `use_liger_kernel`), plus
  `train.kl_beta` x KL(base || tuned), the base being the same model with its adapter off.
"""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import Trainer

from medqa_scale.model.chat_format import IGNORE_INDEX, encode_examples
from medqa_scale.model.device import device

log = logging.getLogger(__name__)


def encode_records(tokenizer, records: list[dict], template_kwargs: dict | None = None):
    """A datasets.Dataset of input_ids / attention_mask / answer-only labels, rendered with the
    chat template's `template_kwargs` (params model.chat_template_kwargs)."""
    from datasets import Dataset

    return Dataset.from_list(encode_examples(tokenizer, [r["messages"] for r in records], template_kwargs))


def data_collator(tokenizer, padding_free: bool):
    """Padding-free: each batch becomes one row whose position ids restart at every sample, and
    the first label of each sample is masked, so no sample attends to or predicts across another.
    Otherwise each sample is padded to the batch's longest."""
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

    if padding_free:
        return _WithoutCache(DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX))
    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)


class _WithoutCache:
    """Adds use_cache=False to every batch: transformers tells packed samples apart by their
    position ids only when no KV cache is made, otherwise they attend across each other
    (a test compares packed and padded losses)."""

    def __init__(self, collate):
        self.collate = collate

    def __call__(self, features):
        return {**self.collate(features), "use_cache": False}


def training_arguments(args: dict, *, lr: float, seed: int, precision: str, output_dir: Path, padding_free: bool,
                       num_processes: int):
    """TrainingArguments: the method's fields `args` as they are (params train.args overridden by
    train.method_args.<method>, see core.params.method_args), plus what the pipeline sets itself;
    `seed` is the run's own (one of train.seeds): adapter init, data order and dropout."""
    from transformers import TrainingArguments

    args = dict(args)
    if device() == "cpu" and _needs_cuda(args.get("optim", "")):
        log.info("optimizer %s needs CUDA (bitsandbytes); on CPU this run uses adamw_torch instead", args["optim"])
        args["optim"] = "adamw_torch"
    return TrainingArguments(
        output_dir=str(output_dir),
        learning_rate=float(lr),
        seed=seed,
        data_seed=seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device() == "cpu",
        report_to="none",  # curves are written from the Trainer's log history, see cost.write_curves
        logging_nan_inf_filter=False,  # a NaN loss must reach CostMeter, not be averaged away
        # Padding-free rows carry no attention mask: every token is a real one.
        include_num_input_tokens_seen="all" if padding_free else "non_padding",
        ddp_backend="gloo" if device() == "cpu" and num_processes > 1 else None,
        **args,
    )


def _needs_cuda(optim: str) -> bool:
    return optim.startswith("paged_") or "8bit" in optim


class RegularisedTrainer(Trainer):
    """A Trainer whose training loss is the mean cross-entropy over answer tokens, computed from
    those tokens' logits only, plus `kl_beta` x the mean KL(p_base || p_tuned) over them.

    The prompt's logits are never materialised: at 152k vocabulary and 8 x 1024 tokens they
    would take 5 GB in fp32 for nothing, since their labels are masked. The reference for the KL
    is the model itself with its adapter disabled (PEFT), so no second copy is loaded. With
    kl_beta 0 the loss is exactly the Trainer's own. Evaluation uses the Trainer's own loss.
    """

    def __init__(self, *args, kl_beta: float = 0.0, loss_chunk_tokens: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.kl_beta = kl_beta
        self.loss_chunk_tokens = loss_chunk_tokens
        self._kl: list[float] = []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training or return_outputs or (self.args.use_liger_kernel and self.kl_beta == 0):
            # With use_liger_kernel (TrainingArguments, CUDA) the model's own loss is Liger's fused linear
            # cross-entropy over the labelled tokens, which never materialises their logits either.
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs["labels"]
        targets = labels[:, 1:]
        positions = targets != IGNORE_INDEX  # hidden state at t predicts the token at t + 1
        forward = {k: v for k, v in inputs.items() if k != "labels"}
        n = num_items_in_batch if num_items_in_batch is not None else positions.sum()
        ce, kl = self._answer_terms(model, forward, positions, targets[positions])
        tokens = positions.sum()
        loss = ce / n
        if self.kl_beta > 0:
            self._kl.append((kl / tokens).item())
            loss = loss + self.kl_beta * kl / n
        if self.args.average_tokens_across_devices and self.model_accepts_loss_kwargs and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as the Trainer does for its own loss
        return loss

    def _answer_terms(self, model, forward, positions, gold):
        """(sum of cross-entropy, sum of KL(base || tuned) or None) over the answer tokens. The LM head
        runs on exactly their final hidden states: not on the prompt's, the padding's, or those of
        positions that are answers in another row of the batch. With train.loss_chunk_tokens their
        logits are made that many at a time and recomputed in the backward pass, so at most one
        chunk's logits exist at once."""
        import torch
        from torch.utils.checkpoint import checkpoint

        none = torch.zeros(0, dtype=torch.long, device=positions.device)  # no logits from the model itself
        hidden = model(**forward, logits_to_keep=none, output_hidden_states=True).hidden_states[-1][:, :-1][positions]
        unwrapped = self.accelerator.unwrap_model(model)
        head = (unwrapped.get_base_model() if hasattr(unwrapped, "get_base_model") else unwrapped).get_output_embeddings()
        base = None
        if self.kl_beta > 0:
            with torch.no_grad(), unwrapped.disable_adapter():
                base = model(**forward, logits_to_keep=none, output_hidden_states=True).hidden_states[-1][:, :-1][positions]
        if not self.loss_chunk_tokens:
            ce, kl = _chunk_terms(head, hidden, gold, base)
            return ce, (kl if base is not None else None)
        ce = kl = 0
        for s in range(0, len(gold), self.loss_chunk_tokens):
            part = slice(s, s + self.loss_chunk_tokens)
            c, k = checkpoint(_chunk_terms, head, hidden[part], gold[part], None if base is None else base[part],
                              use_reentrant=False)
            ce, kl = ce + c, kl + k
        return ce, (kl if base is not None else None)

    def _get_train_sampler(self, train_dataset=None):
        from transformers.trainer_pt_utils import BatchRebalanceSampler

        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, BatchRebalanceSampler):
            # transformers builds it without a seed, so every seed would draw the same batches: the
            # run's data seed makes seeds replicates of the data order too.
            sampler.seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return sampler

    def log(self, logs: dict, *args, **kwargs):
        if self._kl and "loss" in logs:
            logs["kl_to_base"] = sum(self._kl) / len(self._kl)
            self._kl.clear()
        super().log(logs, *args, **kwargs)


def _chunk_terms(head, hidden, gold, base_hidden):
    import torch
    import torch.nn.functional as F

    logits = head(hidden).float()
    ce = F.cross_entropy(logits, gold, reduction="sum")
    if base_hidden is None:
        return ce, torch.zeros((), device=ce.device)
    return ce, answer_kl(head(base_hidden).float(), logits) * len(gold)


def answer_kl(base_logits, tuned_logits):
    """Mean over tokens of KL(p_base || p_tuned), from (tokens, vocab) logits."""
    import torch.nn.functional as F

    base = F.log_softmax(base_logits, dim=-1)
    return F.kl_div(F.log_softmax(tuned_logits, dim=-1), base, log_target=True, reduction="batchmean")
