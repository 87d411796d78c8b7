"""GGUF files of a merged export, for llama.cpp and Ollama.

A Qwen2 export (Qwen2.5 and the built-in tiny model alike) is written with the `gguf` package as
llama.cpp's converter writes it: the same architecture keys, tensor names (gguf's own name map),
the byte-level BPE vocabulary with its merges and special tokens, the pre-tokenizer `qwen2`, the
chat template and the end-of-turn token. Where llama.cpp's converter script is at hand
(`--converter`), it writes the files instead. Either way gguf's reader then finds every tensor
with its shape and the metadata llama.cpp needs. serve/gguf_check.py checks the answers.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np

from medqa_scale.core.cli import PipelineError

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


def write_ggufs(model_dir: Path, run: str, tokenizer, max_new_tokens: int, *, system_prompt: str,
                converter: Path | None) -> dict:
    """Write `<run>-f16.gguf`, `<run>-q8_0.gguf` and a Modelfile for each into `model_dir` (a merged
    export), each read back against the export; return the record of what was written."""
    record = {"writer": f"llama.cpp {converter}" if converter else "gguf (medqa_scale.serve.gguf_write)", "files": {}}
    stop_tokens = [t for t in ("<|im_end|>", "<|endoftext|>") if t in tokenizer.get_vocab()]
    for outtype in OUTTYPES:
        path = model_dir / gguf_name(run, outtype)
        if converter:
            convert_with_llama_cpp(converter, model_dir, path, outtype)
        else:
            write_gguf(model_dir, path, outtype, run)
        (model_dir / f"Modelfile-{outtype}").write_text(
            modelfile(path.name, system_prompt, stop_tokens, max_new_tokens), encoding="utf-8")
        record["files"][outtype] = {"file": path.name, "bytes": path.stat().st_size, "read_back": read_back(path, model_dir)}
        log.info("%s: %s, %.1f MB", path, record["files"][outtype]["read_back"], path.stat().st_size / 2**20)
    return record
