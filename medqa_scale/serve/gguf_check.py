"""The answers of GGUF files checked against the model they came from, with llama.cpp
(llama-cpp-python, optional).

llama.cpp must tokenize the test prompts' texts as transformers does. f16 answers must be the
transformers model's token for token (that model in the same f16 weights), up to a near tie that
the transformers model itself cannot tell apart (`export.gguf.tie_logit_gap`), where the two part;
q8_0 answers are compared with f16's (the share identical, mean ROUGE-L), and below the params
threshold the export fails.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from medqa_scale.core.cli import PipelineError
from medqa_scale.evaluate.generation import answer_tokens
from medqa_scale.model.chat_format import prompt_ids
from medqa_scale.serve.gguf_write import OUTTYPES, PRE_TOKENIZER, gguf_name

log = logging.getLogger(__name__)


def llama_cpp_answers(path: Path, prompts: list[list[int]], stop: set[int], max_new_tokens: int) -> list[list[int]]:
    """llama.cpp's greedy answer tokens to each prompt (token ids), up to the first stop token."""
    # The KV cache in f32 (GGML type 0), not llama.cpp's default f16: transformers keeps it in f32.
    llm = load_llama(path, n_ctx=max(len(p) for p in prompts) + max_new_tokens + 8, type_k=0, type_v=0)
    answers = []
    for prompt in prompts:
        llm.reset()
        tokens = []
        for t in llm.generate(prompt, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
            if t in stop or len(tokens) == max_new_tokens:
                break
            tokens.append(t)
        answers.append(tokens)
    return answers


def load_llama(path: Path, **kwargs):
    """llama.cpp's model, with its weights in the plain CPU buffers: without the extra buffer types
    (use_extra_bufts) it would repack them for AMX on CPUs that have it (Sapphire Rapids), where
    decoding a q8_0 file segfaults (ggml-org/llama.cpp#20824; seen here with llama-cpp-python
    0.3.36). llama-cpp-python's Llama() does not take the flag, so its default model params are
    replaced while the model loads."""
    import llama_cpp.llama_cpp as lib
    from llama_cpp import Llama

    default = lib.llama_model_default_params

    def plain_buffers():
        params = default()
        params.use_extra_bufts = False
        return params

    lib.llama_model_default_params = plain_buffers
    try:
        return Llama(model_path=str(path), n_threads=2, verbose=False, seed=0, **kwargs)
    finally:
        lib.llama_model_default_params = default


def llama_cpp_tokens(path: Path, texts: list[str]) -> list[list[int]]:
    """llama.cpp's tokens of each text (special tokens parsed, no BOS added), from the file's vocabulary."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    return [llm.tokenize(t.encode("utf-8"), add_bos=False, special=True) for t in texts]


def agreement(reference: list[str], other: list[str]) -> dict:
    """How closely `other` answers follow `reference`: the share identical and mean ROUGE-L (0-100)."""
    from medqa_scale.evaluate.metrics import rouge_per_sample

    same = sum(a == b for a, b in zip(reference, other))
    scores = rouge_per_sample([o or " " for o in other], [r or " " for r in reference])["rouge-l"]
    exact = [100.0 if a == b else s for a, b, s in zip(reference, other, scores)]  # two empty answers agree
    return {"identical": same / len(reference), "rouge_l": float(np.mean(exact))}


def f16_reference(model_dir: Path, *, trust_remote_code: bool):
    """The export in transformers with its weights rounded to f16, the values the f16 GGUF holds
    (computed in f32)."""
    import torch

    from medqa_scale.model.loading import load_base_model

    model = load_base_model(model_dir, quantization=None, precision="fp32", trust_remote_code=trust_remote_code).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(param.half().float())
    return model


def greedy_tokens(model, prompts: list[list[int]], config) -> list[list[int]]:
    """Greedy answer tokens to each prompt, up to the first stop token."""
    import torch

    stop, answers = set(config.eos_token_id), []
    for prompt in prompts:
        ids = torch.tensor([prompt], device=model.device)
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)
        row = out[0, ids.shape[1]:].tolist()
        answers.append(answer_tokens(row, stop)[0])
    return answers


def logit_gap(model, ids: list[int], a: int, b: int) -> float:
    """How far apart tokens `a` and `b` are in the model's next-token logits after `ids`."""
    import torch

    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0, -1]
    return abs(float(logits[a] - logits[b]))


def compare_tokens(model, prompts: list[list[int]], expected: list[list[int]], got: list[list[int]],
                   tie: float) -> list[dict]:
    """Each prompt's comparison: `identical`, or `tie` where the first differing token is one the
    reference model itself scores within `tie` logits of its own choice (two exact implementations
    round such a near tie either way, and the answers part there), or `different`."""
    results = []
    for prompt, a, b in zip(prompts, expected, got):
        if a == b:
            results.append({"result": "identical", "tokens": len(a)})
            continue
        k = next(i for i, (x, y) in enumerate(zip(a + [-1], b + [-1])) if x != y)
        gap = logit_gap(model, prompt + a[:k], a[k], b[k]) if k < min(len(a), len(b)) else float("inf")
        results.append({"result": "tie" if gap < tie else "different", "at_token": k, "logit_gap": gap})
    return results


def llama_cpp_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def check_ggufs(model_dir: Path, run: str, tokenizer, chats: list[list[dict]], config, *, min_q8_0_rouge_l: float,
                tie_logit_gap: float, trust_remote_code: bool) -> dict | str:
    """Check the GGUF files write_ggufs wrote into `model_dir` with llama.cpp: it tokenizes the test
    prompts as transformers, its f16 answers are transformers' (up to a near tie) and its q8_0 answers
    agree with f16's at `min_q8_0_rouge_l`. Returns the check's record, or why it was skipped."""
    if not chats or not llama_cpp_installed():
        skipped = "skipped: " + ("no test prompts" if not chats else "llama-cpp-python is not installed")
        log.warning("GGUF answers not checked: %s", skipped)
        return skipped
    prompts = [prompt_ids(tokenizer, chat) for chat in chats]
    # llama.cpp and Ollama are given text: it must become the tokens the model was trained on.
    prompt_texts = [tokenizer.decode(p) for p in prompts]
    for i, (ids, got_ids) in enumerate(zip(prompts, llama_cpp_tokens(model_dir / gguf_name(run, "f16"), prompt_texts))):
        if got_ids != ids:
            raise PipelineError(f"llama.cpp tokenizes test prompt {i + 1} differently from transformers ({len(got_ids)} "
                                f"tokens against {len(ids)}): the pre-tokenizer `{PRE_TOKENIZER}` does not fit this "
                                "tokenizer; use llama.cpp's converter (--converter); nothing was written")
    stop = set(config.eos_token_id)
    reference = f16_reference(model_dir, trust_remote_code=trust_remote_code)
    expected = greedy_tokens(reference, prompts, config)
    got = {t: llama_cpp_answers(model_dir / gguf_name(run, t), prompts, stop, config.max_new_tokens) for t in OUTTYPES}
    f16 = compare_tokens(reference, prompts, expected, got["f16"], tie_logit_gap)
    if (i := next((k for k, c in enumerate(f16) if c["result"] == "different"), None)) is not None:
        raise PipelineError(f"llama.cpp's greedy answer to test prompt {i + 1} from the f16 GGUF differs from transformers' "
                            f"at token {f16[i]['at_token']}, where transformers' logits are {f16[i]['logit_gap']:.4f} apart "
                            f"(more than export.gguf.tie_logit_gap, {tie_logit_gap}): {tokenizer.decode(got['f16'][i])!r} "
                            f"against {tokenizer.decode(expected[i])!r}; nothing was written")
    texts = {t: [tokenizer.decode(a, skip_special_tokens=True).strip() for a in got[t]] for t in OUTTYPES}
    q8 = agreement(texts["f16"], texts["q8_0"])
    if q8["rouge_l"] < min_q8_0_rouge_l:
        raise PipelineError(f"the q8_0 GGUF's answers agree with f16's at ROUGE-L {q8['rouge_l']:.1f} ({q8['identical']:.0%} "
                            f"identical), below export.gguf.min_q8_0_rouge_l ({min_q8_0_rouge_l}); nothing was written")
    check = {"prompts": len(prompts), "tokenizer": "llama.cpp tokenizes the prompt texts as transformers",
                       "f16_against_transformers": f16, "tie_logit_gap": tie_logit_gap,
                       "q8_0_against_f16": q8, "min_q8_0_rouge_l": min_q8_0_rouge_l}
    ties = sum(c["result"] == "tie" for c in f16)
    log.info("GGUF check on %d prompts: f16 token-identical to transformers on %d (%d parted at a near tie); q8_0 "
             "against f16 %.0f%% identical, ROUGE-L %.1f", len(prompts), len(prompts) - ties, ties,
             100 * q8["identical"], q8["rouge_l"])
    return check
