"""GGUF files of a merged export, for llama.cpp and Ollama, checked against the model they came from.

A Qwen2 export (Qwen2.5 and the built-in tiny model alike) is written with the `gguf` package as
llama.cpp's converter writes it: the same architecture keys, tensor names (gguf's own name map),
the byte-level BPE vocabulary with its merges and special tokens, the pre-tokenizer `qwen2`, the
chat template and the end-of-turn token. Where llama.cpp's converter script is at hand
(`--converter`), it writes the files instead; the checks are the same either way.

The checks: gguf's reader finds every tensor with its shape and the metadata llama.cpp needs; and,
when llama-cpp-python is installed, llama.cpp answers test prompts greedily. f16 answers must be
the transformers model's token for token (that model in the same f16 weights), up to a near tie that
the transformers model itself cannot tell apart (`export.gguf.tie_logit_gap`), where the two part;
q8_0 answers are compared with f16's (the share identical, mean ROUGE-L), and below the params
threshold the export fails.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np

from medqa_scale.cli import PipelineError
from medqa_scale.generation import answer_tokens

log = logging.getLogger(__name__)

OUTTYPES = ("f16", "q8_0")
PRE_TOKENIZER = "qwen2"  # llama.cpp's name for Qwen2's split pattern (the built-in tokenizer uses it too)


def gguf_name(run: str, outtype: str) -> str:
    return f"{run}-{outtype}.gguf"


def vocabulary(tokenizer, vocab_size: int) -> tuple[list[str], list[int]]:
    """Every token id's text and type, as llama.cpp's converter lists a byte-level BPE vocabulary:
    special added tokens are CONTROL, other added ones USER_DEFINED, unused ids padding."""
    import gguf

    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def tensor_type(name: str, data: np.ndarray, outtype: str):
    """The GGML type a tensor is stored in: 1-D tensors (norms, biases) stay f32, as llama.cpp keeps
    them; q8_0 quantizes matrices whose rows split into 32-value blocks, and stores the rest f16."""
    import gguf

    if data.ndim == 1:
        return gguf.GGMLQuantizationType.F32
    if outtype == "q8_0" and data.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
        return gguf.GGMLQuantizationType.Q8_0
    return gguf.GGMLQuantizationType.F16


def write_gguf(model_dir: Path, out: Path, outtype: str, name: str) -> None:
    """A GGUF file of the Hugging Face Qwen2 model saved in `model_dir`, at `outtype` (f16 or q8_0)."""
    import gguf
    from safetensors import safe_open
    from transformers import AutoTokenizer

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "qwen2":
        raise PipelineError(f"GGUF export writes Qwen2 models; this one is {config.get('model_type')!r}: give llama.cpp's "
                            "convert_hf_to_gguf.py with --converter")
    arch = gguf.MODEL_ARCH.QWEN2
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    writer = gguf.GGUFWriter(out, gguf.MODEL_ARCH_NAMES[arch])
    writer.add_name(name)
    writer.add_file_type({"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[outtype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_freq_base((config.get("rope_parameters") or {}).get("rope_theta") or config["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    tokens, types = vocabulary(tokenizer, config["vocab_size"])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(PRE_TOKENIZER)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    # Merges, the eos/pad/bos ids, add_bos_token and the chat template, from the tokenizer's own files.
    gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens)).add_to_gguf(writer)
    writer.add_eot_token_id(tokenizer.convert_tokens_to_ids("<|im_end|>"))
    names = gguf.get_tensor_name_map(arch, config["num_hidden_layers"])
    with safe_open(model_dir / "model.safetensors", framework="pt") as f:
        for key in f.keys():
            mapped = names.get_name(key, try_suffixes=(".weight", ".bias"))
            if mapped is None:
                raise PipelineError(f"{model_dir}: no GGUF name for tensor {key}; use llama.cpp's converter (--converter)")
            data = f.get_tensor(key).float().numpy()
            kind = tensor_type(mapped, data, outtype)
            if kind == gguf.GGMLQuantizationType.Q8_0:
                writer.add_tensor(mapped, gguf.quants.quantize(data, kind), raw_dtype=kind)
            else:
                writer.add_tensor(mapped, data.astype(np.float32 if kind == gguf.GGMLQuantizationType.F32 else np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def convert_with_llama_cpp(converter: Path, model_dir: Path, out: Path, outtype: str) -> None:
    """llama.cpp's own convert_hf_to_gguf.py, run on the export."""
    proc = subprocess.run([sys.executable, str(converter), str(model_dir), "--outfile", str(out), "--outtype", outtype],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise PipelineError(f"{converter} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")


def read_back(path: Path, model_dir: Path) -> dict:
    """Check a GGUF file with gguf's reader against the safetensors it came from: every tensor, with
    its shape, and the metadata llama.cpp needs. Returns what it checked."""
    import gguf
    from safetensors import safe_open
    from transformers import AutoTokenizer

    reader = gguf.GGUFReader(path)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, config["num_hidden_layers"])
    with safe_open(model_dir / "model.safetensors", framework="pt") as f:
        expected = {names.get_name(k, try_suffixes=(".weight", ".bias")): list(f.get_slice(k).get_shape()) for k in f.keys()}
    found = {t.name: [int(n) for n in reversed(t.shape.tolist())] for t in reader.tensors}  # GGUF lists dims reversed
    problems = []
    if found.keys() != expected.keys():
        problems.append(f"tensors {sorted(set(expected) ^ set(found))} are in one of the two files only")
    problems += [f"{n} has shape {found[n]}, expected {s}" for n, s in expected.items() if n in found and found[n] != s]

    def field(key: str):
        f = reader.get_field(key)
        return None if f is None else f.contents()

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    metadata = {"general.architecture": "qwen2", "qwen2.block_count": config["num_hidden_layers"],
                "qwen2.embedding_length": config["hidden_size"], "tokenizer.ggml.pre": PRE_TOKENIZER,
                "tokenizer.chat_template": tokenizer.chat_template,
                "tokenizer.ggml.eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>")}
    problems += [f"{k} is {field(k)!r}, expected {v!r}" for k, v in metadata.items() if field(k) != v]
    if problems:
        raise PipelineError(f"{path} does not match the export it came from: " + "; ".join(problems))
    return {"tensors": len(found), "metadata": sorted(metadata)}


def llama_cpp_answers(path: Path, prompts: list[list[int]], stop: set[int], max_new_tokens: int) -> list[list[int]]:
    """llama.cpp's greedy answer tokens to each prompt (token ids), up to the first stop token."""
    from llama_cpp import Llama

    # The KV cache in f32 (GGML type 0), not llama.cpp's default f16: transformers keeps it in f32.
    llm = Llama(model_path=str(path), n_ctx=max(len(p) for p in prompts) + max_new_tokens + 8, n_threads=2,
                verbose=False, seed=0, type_k=0, type_v=0)
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


def llama_cpp_tokens(path: Path, texts: list[str]) -> list[list[int]]:
    """llama.cpp's tokens of each text (special tokens parsed, no BOS added), from the file's vocabulary."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    return [llm.tokenize(t.encode("utf-8"), add_bos=False, special=True) for t in texts]


def agreement(reference: list[str], other: list[str]) -> dict:
    """How closely `other` answers follow `reference`: the share identical and mean ROUGE-L (0-100)."""
    from medqa_scale.metrics import rouge_per_sample

    same = sum(a == b for a, b in zip(reference, other))
    scores = rouge_per_sample([o or " " for o in other], [r or " " for r in reference])["rouge-l"]
    exact = [100.0 if a == b else s for a, b, s in zip(reference, other, scores)]  # two empty answers agree
    return {"identical": same / len(reference), "rouge_l": float(np.mean(exact))}


def modelfile(gguf_file: str, system_prompt: str, stop: list[str], max_new_tokens: int) -> str:
    """An Ollama Modelfile: the file, ChatML as the study's chat template renders it (system turn,
    user turn, then the assistant's), the study's system prompt, its stop tokens and greedy decoding."""
    quoted = system_prompt.replace('"""', '\\"\\"\\"')
    lines = [f"FROM ./{gguf_file}",
             'TEMPLATE """{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}'
             '{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}<|im_start|>assistant\n'
             '{{ .Response }}<|im_end|>\n"""',
             f'SYSTEM """{quoted}"""',
             *(f'PARAMETER stop "{s}"' for s in stop),
             "PARAMETER temperature 0", "PARAMETER top_k 1", "PARAMETER repeat_penalty 1",
             f"PARAMETER num_predict {max_new_tokens}"]
    return "\n".join(lines) + "\n"


def f16_reference(model_dir: Path, *, trust_remote_code: bool):
    """The export in transformers with its weights rounded to f16, the values the f16 GGUF holds
    (computed in f32)."""
    import torch

    from medqa_scale.modeling import load_base_model

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


def export_gguf(model_dir: Path, run: str, tokenizer, chats: list[list[dict]], config, *, min_q8_0_rouge_l: float,
                tie_logit_gap: float, system_prompt: str, converter: Path | None, trust_remote_code: bool) -> dict:
    """Write `<run>-f16.gguf`, `<run>-q8_0.gguf` and a Modelfile for each into `model_dir` (a merged
    export), check them, and return the record of what was written and checked."""
    from medqa_scale.chat_format import prompt_ids

    record = {"writer": f"llama.cpp {converter}" if converter else "gguf (medqa_scale.gguf_export)", "files": {}}
    stop_tokens = [t for t in ("<|im_end|>", "<|endoftext|>") if t in tokenizer.get_vocab()]
    for outtype in OUTTYPES:
        path = model_dir / gguf_name(run, outtype)
        if converter:
            convert_with_llama_cpp(converter, model_dir, path, outtype)
        else:
            write_gguf(model_dir, path, outtype, run)
        (model_dir / f"Modelfile-{outtype}").write_text(
            modelfile(path.name, system_prompt, stop_tokens, config.max_new_tokens), encoding="utf-8")
        record["files"][outtype] = {"file": path.name, "bytes": path.stat().st_size, "read_back": read_back(path, model_dir)}
        log.info("%s: %s, %.1f MB", path, record["files"][outtype]["read_back"], path.stat().st_size / 2**20)
    if not chats or not llama_cpp_installed():
        record["check"] = "skipped: " + ("no test prompts" if not chats else "llama-cpp-python is not installed")
        log.warning("GGUF answers not checked: %s", record["check"])
        return record
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
    record["check"] = {"prompts": len(prompts), "tokenizer": "llama.cpp tokenizes the prompt texts as transformers",
                       "f16_against_transformers": f16, "tie_logit_gap": tie_logit_gap,
                       "q8_0_against_f16": q8, "min_q8_0_rouge_l": min_q8_0_rouge_l}
    ties = sum(c["result"] == "tie" for c in f16)
    log.info("GGUF check on %d prompts: f16 token-identical to transformers on %d (%d parted at a near tie); q8_0 "
             "against f16 %.0f%% identical, ROUGE-L %.1f", len(prompts), len(prompts) - ties, ties,
             100 * q8["identical"], q8["rouge_l"])
    return record
