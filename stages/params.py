"""The one place that reads and validates params.yaml.

Every stage calls `load_params()` first. It reads the file with a YAML 1.2 reader (PyYAML's 1.1
rules read `5e-05`, as `dvc exp run -S train.lr=5e-5` writes it, as a string) and checks all of
it, raising one `ParamsError` that lists every problem, each with the key and the fix, before
any model or data is touched.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from ruamel.yaml import YAML

PARAMS_FILE = Path("params.yaml")
METHODS = ("lora", "qlora")
MODEL_SOURCES = ("builtin", "local", "hf", "modelscope")
DATA_SOURCES = ("builtin", "local")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
SCALE_LABEL = re.compile(r"^([1-9][0-9]*)(k?)$")
# TrainingArguments fields the pipeline sets itself, from the params named here.
RESERVED_TRAINING_ARGS = {
    "output_dir": "it is models/checkpoints/<run>",
    "learning_rate": "set train.lr",
    "per_device_train_batch_size": "set train.batch.<method>",
    "gradient_accumulation_steps": "set train.batch.<method>",
    "bf16": "set precision",
    "fp16": "set precision",
    "seed": "set the top-level seed",
    "data_seed": "set the top-level seed",
    "report_to": "training curves always go to dvclive/<run>",
    "use_cpu": "the device is chosen from what is available",
}


class PipelineError(Exception):
    """Bad input a user can fix; the stage prints the message alone and exits with status 2."""


class ParamsError(PipelineError):
    def __init__(self, problems: list[str], path: Path = PARAMS_FILE):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path} has {len(problems)} problem(s); fix them and rerun:\n{lines}")


def read_yaml(path: Path) -> dict:
    """YAML 1.2, as DVC itself reads params: `5e-05` is a float, `yes` is a string."""
    yaml = YAML(typ="safe", pure=True)
    with open(path, encoding="utf-8") as f:
        return yaml.load(f)


def scale_size(label) -> int:
    """`20k` -> 20000, `500` -> 500. The label is the size, so no label can claim a size it lacks."""
    m = SCALE_LABEL.fullmatch(str(label))
    if not m:
        raise ValueError(f"{label!r} is not a scale label like 2k or 500")
    return int(m.group(1)) * (1000 if m.group(2) else 1)


def run_name(method: str, scale) -> str:
    return f"{method}-{scale}"


def parse_run(run: str) -> tuple[str, str]:
    """`lora-2k` -> (`lora`, `2k`)."""
    method, _, scale = run.partition("-")
    return method, scale


def load_params(path: Path = PARAMS_FILE) -> dict:
    if not path.exists():
        raise ParamsError([f"{path} not found: run from the repository root"], path)
    params = read_yaml(path)
    problems = validate(params if isinstance(params, dict) else {})
    if problems:
        raise ParamsError(problems, path)
    return params


# --- validation ---------------------------------------------------------------------------------


class _Checker:
    """Collects problems instead of stopping at the first one."""

    def __init__(self, params: dict):
        self.params = params
        self.problems: list[str] = []

    def get(self, key: str):
        node = self.params
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return _MISSING
            node = node[part]
        return node

    def bad(self, key: str, msg: str) -> None:
        self.problems.append(f"{key}: {msg}")

    def present(self, key: str):
        value = self.get(key)
        if value is _MISSING:
            self.bad(key, "missing; add it to conf/ (see conf/config.yaml) and recompose params.yaml")
        return value

    def number(self, key: str, *, minimum=None, above=None, below=None, integer=False):
        value = self.present(key)
        if value is _MISSING:
            return None
        kind = "an integer" if integer else "a number"
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type:
            hint = " (quote-free, e.g. 5.0e-05)" if isinstance(value, str) else ""
            self.bad(key, f"must be {kind}{hint}, got {value!r} ({type(value).__name__})")
            return None
        if minimum is not None and value < minimum:
            self.bad(key, f"must be >= {minimum}, got {value}")
        elif above is not None and value <= above:
            self.bad(key, f"must be > {above}, got {value}")
        elif below is not None and value >= below:
            self.bad(key, f"must be < {below}, got {value}")
        else:
            return value
        return None

    def choice(self, key: str, choices):
        value = self.present(key)
        if value is not _MISSING and value not in choices:
            self.bad(key, f"unknown value {value!r}; choose one of {', '.join(map(str, choices))}")
            return None
        return None if value is _MISSING else value

    def mapping(self, key: str) -> dict | None:
        value = self.present(key)
        if value is _MISSING:
            return None
        if not isinstance(value, dict):
            self.bad(key, f"must be a mapping, got {value!r}")
            return None
        return value

    def known_fields(self, key: str, fields: set[str]) -> None:
        value = self.get(key)
        if isinstance(value, dict):
            for name in sorted(set(value) - fields):
                self.bad(f"{key}.{name}", "not a field of the library class this section is passed to; check its spelling")


_MISSING = object()


def _fields(cls) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}


def validate(params: dict) -> list[str]:
    c = _Checker(params)
    c.number("seed", minimum=0, integer=True)
    c.choice("precision", PRECISIONS)
    _check_model(c)
    data_size = _check_data(c)
    c.present("preprocess.system_prompt")
    c.number("preprocess.max_source_len", above=0, integer=True)
    c.number("preprocess.max_target_len", above=0, integer=True)
    _check_split(c, data_size)
    methods = _check_methods(c)
    _check_library_sections(c)
    _check_train(c, methods)
    c.number("evaluate.batch_size", above=0, integer=True)
    c.number("evaluate.max_new_tokens", above=0, integer=True)
    return c.problems


def _check_model(c: _Checker) -> None:
    source = c.choice("model.source", MODEL_SOURCES)
    trust = c.present("model.trust_remote_code")
    if trust is not _MISSING and not isinstance(trust, bool):
        c.bad("model.trust_remote_code", f"must be true or false, got {trust!r}")
    if source == "builtin":
        c.number("model.builtin.vocab_size", minimum=300, integer=True)
        arch = c.mapping("model.builtin.arch")
        if arch is not None:
            heads, kv, hidden = arch.get("num_attention_heads"), arch.get("num_key_value_heads"), arch.get("hidden_size")
            if all(isinstance(v, int) and v > 0 for v in (heads, kv, hidden)):
                if hidden % heads or heads % kv:
                    c.bad("model.builtin.arch", "hidden_size must divide by num_attention_heads, and that by num_key_value_heads")
            else:
                c.bad("model.builtin.arch", "needs positive integers hidden_size, num_attention_heads, num_key_value_heads")
        for key in ("passages", "steps", "batch_size"):
            c.number(f"model.builtin.pretrain.{key}", above=0, integer=True)
        c.number("model.builtin.pretrain.lr", above=0)
    elif source == "local":
        path = c.present("model.local_path")
        if path is not _MISSING and not (isinstance(path, str) and Path(path).is_dir()):
            c.bad("model.local_path", f"{path!r} is not a directory; point it at a saved Hugging Face model")
    elif source in ("hf", "modelscope"):
        for key in ("model.repo_id", "model.revision"):
            value = c.present(key)
            if value is not _MISSING and not (isinstance(value, str) and value):
                c.bad(key, "must be a non-empty string (pin revision to a commit for reproducibility)")


def _check_data(c: _Checker) -> int | None:
    """Returns the number of records the source will give, where it is known before reading it."""
    source = c.choice("data.source", DATA_SOURCES)
    if source == "builtin":
        return c.number("data.builtin_records", above=0, integer=True)
    if source == "local":
        path = c.present("data.local_path")
        if path is not _MISSING and not (isinstance(path, str) and Path(path).is_file()):
            c.bad("data.local_path", f"{path!r} is not a file; point it at a JSONL file of question/answer records")
    return None


def _check_split(c: _Checker, data_size: int | None) -> None:
    dev = c.number("split.dev_size", above=0, integer=True)
    test = c.number("split.test_size", above=0, integer=True)
    scales = c.present("split.scales")
    if scales is _MISSING:
        return
    if not isinstance(scales, list) or not scales:
        c.bad("split.scales", f"must be a non-empty list of labels like [2k, 5k, 10k], got {scales!r}")
        return
    sizes = []
    for label in scales:
        try:
            sizes.append(scale_size(label))
        except ValueError:
            c.bad("split.scales", f"{label!r} is not a scale label; write sizes as 2k (=2000) or 500")
    if len(set(sizes)) != len(sizes):
        c.bad("split.scales", f"sizes repeat: {scales}")
    if sizes and data_size and dev and test and max(sizes) + dev + test > data_size:
        c.bad("split.scales", f"the largest scale ({max(sizes)}) plus dev ({dev}) and test ({test}) needs "
              f"{max(sizes) + dev + test} records but data.builtin_records is {data_size}; lower the scale or raise data.builtin_records")


def _check_methods(c: _Checker) -> list[str]:
    methods = c.present("methods")
    if methods is _MISSING:
        return []
    if not isinstance(methods, list) or not methods:
        c.bad("methods", f"must be a non-empty list drawn from {list(METHODS)}, got {methods!r}")
        return []
    for m in methods:
        if m not in METHODS:
            c.bad("methods", f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    if len(set(methods)) != len(methods):
        c.bad("methods", f"methods repeat: {methods}")
    return [m for m in methods if m in METHODS]


def _check_library_sections(c: _Checker) -> None:
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig

    if c.mapping("lora") is not None:
        c.known_fields("lora", _fields(LoraConfig))
        c.number("lora.r", above=0, integer=True)
        c.number("lora.lora_alpha", above=0)
        c.number("lora.lora_dropout", minimum=0, below=1)
        targets = c.present("lora.target_modules")
        if targets is not _MISSING and not (isinstance(targets, list) and targets):
            c.bad("lora.target_modules", f"must be a non-empty list of module names, got {targets!r}")
    if c.mapping("quantization") is not None:
        c.known_fields("quantization", _fields(BitsAndBytesConfig))
        if c.get("quantization.load_in_4bit") is not True:
            c.bad("quantization.load_in_4bit", "QLoRA here is 4-bit: set it to true")
        c.choice("quantization.bnb_4bit_quant_type", ("nf4", "fp4"))
        c.choice("quantization.bnb_4bit_compute_dtype", ("auto", "float32", "bfloat16", "float16"))


def _check_train(c: _Checker, methods: list[str]) -> None:
    from transformers import TrainingArguments

    c.number("train.lr", above=0)
    batch = c.mapping("train.batch")
    if batch is not None:
        for m in methods:
            if m not in batch:
                c.bad(f"train.batch.{m}", "missing: give per_device_train_batch_size and gradient_accumulation_steps")
                continue
            for key in ("per_device_train_batch_size", "gradient_accumulation_steps"):
                c.number(f"train.batch.{m}.{key}", above=0, integer=True)
    args = c.mapping("train.args")
    if args is not None:
        c.known_fields("train.args", _fields(TrainingArguments))
        for name in sorted(set(args) & set(RESERVED_TRAINING_ARGS)):
            c.bad(f"train.args.{name}", f"set by the pipeline: {RESERVED_TRAINING_ARGS[name]}")
        c.number("train.args.num_train_epochs", above=0)
        if args.get("load_best_model_at_end") is not True or args.get("metric_for_best_model") != "eval_loss":
            c.bad("train.args", "the adapter kept is the best by eval loss: set load_best_model_at_end: true and metric_for_best_model: eval_loss")
