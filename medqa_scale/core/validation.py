"""Checking params.yaml: every problem at once, each naming its key and the fix.

The check_params stage calls `check_params()` before any other stage runs. Types, ranges and
unknown keys are declared as pydantic models, one per params section, which report every error
with its key path; `project_problems()` adds the rules only this project can make (a scale
bigger than the data, method args for every method, field names of the library classes that a
section is passed to).

No other stage imports this module, so editing a rule here reruns check_params alone: while the
params stay valid, its output does not change and nothing downstream reruns.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medqa_scale.core.cli import PipelineError
from medqa_scale.core.params import METHODS, PARAMS_FILE, SOURCE_KINDS, read_yaml, scale_size, source_name

# TrainingArguments fields the pipeline sets itself, from the params named here.
RESERVED_TRAINING_ARGS = {
    "output_dir": "it is models/checkpoints/<run>-<key>",
    "learning_rate": "set train.lr",
    "per_device_train_batch_size": "set train.method_args.<method>",
    "gradient_accumulation_steps": "set train.method_args.<method>",
    "bf16": "set precision",
    "fp16": "set precision",
    "seed": "set train.seeds (one run per seed)",
    "data_seed": "set train.seeds (one run per seed)",
    "report_to": "training curves always go to dvclive/<run>",
    "use_cpu": "the device is chosen from what is available",
    "resume_from_checkpoint": "a killed run resumes from its last complete checkpoint by itself",
    "logging_nan_inf_filter": "a NaN or infinite loss always stops the run",
    "include_num_input_tokens_seen": "tokens/s always counts real (non-padding) tokens",
    "ddp_backend": "nccl on GPUs, gloo on CPU; set train.num_processes",
}
MISSING_FIX = "missing; add it to conf/ (see conf/config.yaml) and recompose params.yaml with `dvc exp run`"

PositiveInt = Field(gt=0)


class ParamsError(PipelineError):
    def __init__(self, problems: list[str], path: Path = PARAMS_FILE):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path} has {len(problems)} problem(s); fix them and rerun:\n{lines}")


# --- the params sections, as pydantic models ------------------------------------------------------


class Section(BaseModel):
    """Strict: `'5e-05'` is not a number and `yes` is not a boolean; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", strict=True)


class LibrarySection(BaseModel):
    """A section passed as keyword arguments to a library class: other keys are checked against
    that class's own fields in `project_problems`."""

    model_config = ConfigDict(extra="allow", strict=True)


class Arch(LibrarySection):  # transformers.Qwen2Config fields
    hidden_size: int = PositiveInt
    num_attention_heads: int = PositiveInt
    num_key_value_heads: int = PositiveInt


class Pretrain(Section):
    passages: int = PositiveInt  # medical passages
    general_passages: int = Field(default=0, ge=0)  # general knowledge: what a retention benchmark asks
    steps: int = PositiveInt
    batch_size: int = PositiveInt
    lr: float = Field(gt=0)


class BuiltinModel(Section):
    vocab_size: int = Field(ge=300)
    arch: Arch
    pretrain: Pretrain


class ModelArch(Section):
    """The config.json fields memory and time estimates need before the model is downloaded."""

    hidden_size: int = PositiveInt
    intermediate_size: int = PositiveInt
    num_hidden_layers: int = PositiveInt
    num_attention_heads: int = PositiveInt
    num_key_value_heads: int = PositiveInt
    head_dim: int | None = Field(default=None, gt=0)  # Qwen3 sets it apart from hidden_size / heads
    vocab_size: int = PositiveInt
    tie_word_embeddings: bool


class Model(Section):
    source: Literal["builtin", "local", "hf", "modelscope"]
    preset: str | None = None  # the conf/model/ preset params came from
    repo_id: str | None = None
    revision: str | None = None
    modelscope_id: str | None = None  # null: the same id as repo_id
    modelscope_revision: str | None = None
    local_path: str | None = None
    trust_remote_code: bool
    chat_template_kwargs: dict[str, bool | int | float | str]  # e.g. Qwen3's enable_thinking
    arch: ModelArch | None = None
    builtin: BuiltinModel | None = None


class Hardware(Section):
    preset: str | None = None  # the conf/hardware/ preset params came from
    gpu_memory_gb: float | None = Field(default=None, gt=0, description="the card runs are checked against; null: none")
    peak_tflops: float | None = Field(default=None, gt=0, description="the card's dense 16-bit peak, for time estimates")


EXTERNAL_DIR = "data/external"


class Fields(Section):
    """Key names that override detection; question and answer go together."""

    question: str | None = None
    answer: str | None = None
    history: str | None = None  # earlier [question, answer] turns
    department: str | None = None  # e.g. label in Huatuo26M-Lite


class Source(Section):
    """One data source: exactly one of the SOURCE_KINDS keys, plus optional settings."""

    builtin: int | None = Field(default=None, gt=0)  # records the synthetic generator makes
    path: str | None = None  # a file or directory under data/external/
    url: str | None = Field(default=None, pattern=r"^https?://")
    hf: str | None = None  # a Hugging Face dataset repo id
    modelscope: str | None = None  # a ModelScope dataset id
    revision: str | None = None  # hf / modelscope: a branch, tag or commit (resolved and recorded)
    files: list[str] | None = None  # hf / modelscope: file patterns to fetch, e.g. ["*.jsonl"]
    members: list[str] | None = None  # a zip archive among the files: globs on the paths inside it to read (default all)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")  # url: the file's expected hash
    name: str | None = None  # default: the file's stem or the repo id
    format: Literal["auto", "json", "jsonl", "csv", "tsv", "parquet", "markdown"] = "auto"
    fields: Fields | None = None
    limit: int | None = Field(default=None, gt=0)  # at most this many records from the source
    share: float | None = Field(default=None, gt=0, le=1)  # this source's share of the mix of sources with a share


class Benchmark(Section):
    """One multiple-choice set: a role and exactly one source kind, as a data source has."""

    role: Literal["domain", "retention"]  # medical knowledge, or general ability the study must not lose
    builtin: Literal["domain", "retention"] | None = None  # the embedded default's own sets
    path: str | None = None
    url: str | None = Field(default=None, pattern=r"^https?://")
    hf: str | None = None
    modelscope: str | None = None
    revision: str | None = None
    files: list[str] | None = None
    members: list[str] | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    name: str | None = None
    format: Literal["auto", "json", "jsonl", "csv", "tsv", "parquet"] = "auto"
    answer_index_base: Literal[0, 1] = 1  # a numeric answer (MedMCQA's cop) counts options from this


class BenchmarkSettings(Section):
    scoring: Literal["letter", "option_text"]  # lm-eval's acc on the letters, or acc_norm on the options' text
    k_shot: int = Field(ge=0)  # solved items from the set's own dev files before each question
    shot_files: str = Field(min_length=1)  # which of a set's files are its dev files (a glob), used only for shots
    multiple_answer: Literal["exact", "skip"]  # exact set match (letter scoring), or set aside and counted
    batch_size: int = PositiveInt


class Data(Section):
    sources: list[Source] = Field(min_length=1)
    max_bad_fraction: float = Field(ge=0, le=1)


class Preprocess(Section):
    system_prompt: str = Field(min_length=1)
    max_source_len: int = PositiveInt
    max_target_len: int = PositiveInt
    min_question_chars: int = Field(ge=1)
    max_question_chars: int = PositiveInt
    min_answer_chars: int = Field(ge=1)
    max_answer_chars: int = PositiveInt
    history: Literal["keep", "drop"]
    mask_pii: bool
    near_duplicate_threshold: float = Field(gt=0, le=1)
    minhash_perm: int = Field(ge=16, le=1024)


class Split(Section):
    dev_size: int = PositiveInt
    test_size: int = PositiveInt
    scales: list[str | int] = Field(min_length=1)
    leak_threshold: float = Field(gt=0, le=1)
    minhash_perm: int = Field(ge=16, le=1024)


class Lora(LibrarySection):  # peft.LoraConfig fields
    r: int = PositiveInt
    lora_alpha: float = Field(gt=0)
    lora_dropout: float = Field(ge=0, lt=1)
    target_modules: list[str] | str = Field(min_length=1)


class Quantization(LibrarySection):  # transformers.BitsAndBytesConfig fields
    load_in_4bit: Literal[True] = Field(description="QLoRA here is 4-bit")
    bnb_4bit_quant_type: Literal["nf4", "fp4"]
    bnb_4bit_use_double_quant: bool
    bnb_4bit_compute_dtype: Literal["auto", "float32", "bfloat16", "float16"]


class MethodArgs(LibrarySection):  # transformers.TrainingArguments fields for one method
    per_device_train_batch_size: int = PositiveInt
    gradient_accumulation_steps: int = PositiveInt


class TrainArgs(LibrarySection):  # transformers.TrainingArguments fields
    num_train_epochs: float = Field(gt=0)
    # The adapter kept is the best by eval loss.
    load_best_model_at_end: Literal[True]
    metric_for_best_model: Literal["eval_loss"]
    activation_checkpointing: bool


class Train(Section):
    seeds: list[int] = Field(min_length=1, description="one training run per seed")
    lr: float = Field(gt=0)
    kl_beta: float = Field(ge=0)
    padding_free: bool
    loss_chunk_tokens: int = Field(ge=0)  # 0: every answer token's logits at once
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention"] | None
    num_processes: int = PositiveInt
    tensorboard: bool
    method_args: dict[str, MethodArgs]
    args: TrainArgs


class Generation(LibrarySection):  # transformers.GenerationConfig fields
    do_sample: Literal[False] = Field(description="evaluation is greedy")
    num_beams: Literal[1]
    repetition_penalty: float = Field(gt=0)


class Bootstrap(Section):
    resamples: int = Field(ge=100)
    confidence: float = Field(gt=0, lt=1)


class Evaluate(Section):
    backend: Literal["transformers", "vllm"]
    batch_size: int = PositiveInt
    max_new_tokens: int = PositiveInt
    max_samples: int | None = Field(gt=0, description="the first N test questions; null for all")
    generation: Generation
    bootstrap: Bootstrap


class Report(Section):
    primary_metric: Literal["nll", "rouge-1", "rouge-2", "rouge-l", "bleu", "win-rate"] = Field(
        description="the verdict's metric: nll (the reference answer's NLL per token), a generation metric, or win-rate "
                    "(the judge's, with judge.enabled)")
    alpha: float = Field(gt=0, lt=0.5, description="family-wise error rate, Holm-adjusted over the report's comparisons")
    margin: dict[str, float] = Field(description="δ per metric: how much worse than the best a cheaper setup may be")
    max_retention_drop: float = Field(ge=0, description="accuracy points of retention a setup may lose before it is flagged")


class Judge(Section):
    enabled: bool
    model: str = Field(min_length=1, description="the judge's model name at the endpoint")
    temperature: float = Field(ge=0)
    seed: int = Field(ge=0)
    max_tokens: int = PositiveInt
    rubric: str = Field(min_length=1)
    base_url: str = Field(pattern=r"^https?://[^\s/]+", description="the endpoint up to /v1, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str | None  # a variable's name: project_problems says so with the fix
    max_concurrent: int = PositiveInt
    max_requests: int = PositiveInt
    timeout_s: float = Field(gt=0)


class Gguf(Section):
    check_prompts: int = Field(ge=1, description="test prompts llama.cpp answers in the check")
    min_q8_0_rouge_l: float = Field(ge=0, le=100)
    tie_logit_gap: float = Field(ge=0, description="logits this close are a tie the f16 check lets part")


class Export(Section):
    gguf: Gguf


class Params(Section):
    seed: int = Field(ge=0)
    precision: Literal["auto", "bf16", "fp16", "fp32"]
    device: str = Field(pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$", description="auto, cpu, cuda or cuda:N")
    profile: str
    strategy: str | None = None  # the conf/strategy/ preset params came from
    hardware: Hardware
    model: Model
    data: Data
    preprocess: Preprocess
    split: Split
    methods: list[Literal["lora", "qlora"]] = Field(min_length=1)
    lora: Lora
    quantization: Quantization
    train: Train
    evaluate: Evaluate
    benchmarks: list[Benchmark]
    benchmark: BenchmarkSettings
    report: Report
    judge: Judge
    export: Export


# --- checking ---------------------------------------------------------------------------------


def check_params(path: Path = PARAMS_FILE) -> dict:
    """params.yaml, read and checked; raises one ParamsError that lists every problem."""
    if not path.exists():
        raise ParamsError([f"{path} not found: run from the repository root"], path)
    params = read_yaml(path)
    problems = validate(params)
    if problems:
        raise ParamsError(problems, path)
    return params


def validate(params) -> list[str]:
    """Every problem in `params`, each as `key: what is wrong and how to fix it`."""
    if not isinstance(params, dict):
        return [f"the file must hold a mapping of params, got {type(params).__name__}"]
    try:
        Params.model_validate(params)
        problems = []
    except ValidationError as e:
        problems = [_describe(err) for err in e.errors()]
    return problems + project_problems(params)


def _describe(err: dict) -> str:
    key = ".".join(str(part) for part in err["loc"])
    if err["type"] == "missing":
        return f"{key}: {MISSING_FIX}"
    if err["type"] == "extra_forbidden":
        return f"{key}: not a known key; check its spelling or remove it"
    value = err.get("input")
    hint = " (unquoted, e.g. 5.0e-05)" if isinstance(value, str) and err["type"] in ("float_type", "int_type") else ""
    return f"{key}: {err['msg'].removeprefix('Value error, ')}{hint}, got {value!r}"


def project_problems(p: dict) -> list[str]:
    """The rules that types cannot say. Each looks only at values of the right type, so that a
    wrong type is reported once, by the models."""
    problems: list[str] = []
    bad = lambda key, msg: problems.append(f"{key}: {msg}")  # noqa: E731
    model, data = _mapping(p, "model"), _mapping(p, "data")
    split, train = _mapping(p, "split"), _mapping(p, "train")

    source = model.get("source")
    if source == "builtin":
        builtin = model.get("builtin")
        if builtin is None:
            bad("model.builtin", "model.source is builtin: give vocab_size, arch and pretrain (see conf/profile/embedded.yaml)")
        arch = _mapping(builtin if isinstance(builtin, dict) else {}, "arch")
        heads, kv, hidden = (arch.get(k) for k in ("num_attention_heads", "num_key_value_heads", "hidden_size"))
        if all(_positive_int(v) for v in (heads, kv, hidden)) and (hidden % heads or heads % kv):
            bad("model.builtin.arch", "hidden_size must divide by num_attention_heads, and that by num_key_value_heads")
    elif source == "local":
        path = model.get("local_path")
        if not (isinstance(path, str) and Path(path).is_dir()):
            bad("model.local_path", f"{path!r} is not a directory; point it at a saved Hugging Face model")
    elif source in ("hf", "modelscope"):
        for key in ("repo_id", "revision" if source == "hf" else "modelscope_revision"):
            if not (isinstance(model.get(key), str) and model[key]):
                bad(f"model.{key}", "must be a non-empty string (pin revision to a commit for reproducibility)")

    data_size = _check_sources(data.get("sources"), bad)
    _check_sources(p.get("benchmarks"), bad, "benchmarks")
    settings = p.get("benchmark") or {}
    if isinstance(settings, dict) and settings.get("multiple_answer") == "exact" and settings.get("scoring") == "option_text":
        bad("benchmark.multiple_answer", "exact set match needs scoring: letter (a set of option texts is no continuation); "
            "use skip, or scoring: letter")

    sizes = []
    scales = split.get("scales")
    for label in scales if isinstance(scales, list) else []:
        try:
            sizes.append(scale_size(label))
        except ValueError:
            bad("split.scales", f"{label!r} is not a scale label; write sizes as 2k (=2000) or 500")
    if len(set(sizes)) != len(sizes):
        bad("split.scales", f"sizes repeat: {scales}")
    dev, test = split.get("dev_size"), split.get("test_size")
    if sizes and _positive_int(data_size) and _positive_int(dev) and _positive_int(test) and max(sizes) + dev + test > data_size:
        bad("split.scales", f"the largest scale ({max(sizes)}) plus dev ({dev}) and test ({test}) needs "
            f"{max(sizes) + dev + test} records but the builtin source makes {data_size}; "
            "lower the scale or raise the builtin record count")

    seeds = train.get("seeds")
    if isinstance(seeds, list) and len(set(map(str, seeds))) != len(seeds):
        bad("train.seeds", f"seeds repeat: {seeds}")
    if isinstance(seeds, list) and any(isinstance(s, int) and s < 0 for s in seeds):
        bad("train.seeds", f"seeds must be non-negative: {seeds}")
    _check_fused_kernels(train, bad)
    evaluate = _mapping(p, "evaluate")
    test, max_samples = split.get("test_size"), evaluate.get("max_samples")
    if _positive_int(test) and _positive_int(max_samples) and max_samples > test:
        bad("evaluate.max_samples", f"{max_samples} is more than split.test_size ({test}); lower it or set null for all")

    methods = p.get("methods")
    if isinstance(methods, list):
        if len(set(map(str, methods))) != len(methods):
            bad("methods", f"methods repeat: {methods}")
        method_args = train.get("method_args")
        for m in (m for m in methods if m in METHODS and isinstance(method_args, dict)):
            if m not in method_args:
                bad(f"train.method_args.{m}", "missing: give per_device_train_batch_size and gradient_accumulation_steps")

    judge = _mapping(p, "judge")
    _check_report(_mapping(p, "report"), evaluate, methods, sizes, bad, p.get("benchmarks"), judge.get("enabled") is True)
    variable = judge.get("api_key_env")
    if isinstance(variable, str) and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", variable):
        bad("judge.api_key_env", "give the name of the environment variable that holds the API key (e.g. DEEPSEEK_API_KEY), "
            "never the key itself; or null for a server without a key")
    problems += _library_field_problems(p)
    return problems


def _check_fused_kernels(train: dict, bad) -> None:
    """Kernels that need a package (and CUDA) the default install does not bring: named here, before
    a run fails deep inside transformers."""
    import importlib.util

    args = _mapping(train, "args")
    if args.get("use_liger_kernel") is True:
        if importlib.util.find_spec("liger_kernel") is None:
            bad("train.args.use_liger_kernel", "needs liger-kernel (CUDA): pip install liger-kernel==0.8.5, or set it false")
        if isinstance(train.get("kl_beta"), (int, float)) and train["kl_beta"] > 0:
            bad("train.args.use_liger_kernel", "its fused loss has no KL term: with kl_beta > 0 use train.loss_chunk_tokens")
    if train.get("attn_implementation") in ("flash_attention_2", "flash_attention_3") and importlib.util.find_spec("flash_attn") is None:
        bad("train.attn_implementation", f"{train['attn_implementation']} needs flash-attn (CUDA): pip install flash-attn, "
            "or leave it null (sdpa)")


def _check_report(report: dict, evaluate: dict, methods, sizes: list[int], bad, benchmarks=(), judged: bool = False) -> None:
    """Every compared metric has a margin, the verdict's metric is one the pipeline measures, and
    the bootstrap is fine enough that Holm's correction over the report's comparisons can call a
    difference at all."""
    primary, alpha, margin = report.get("primary_metric"), report.get("alpha"), report.get("margin")
    if primary == "win-rate" and not judged:
        bad("report.primary_metric", "win-rate is the judge's: set judge.enabled: true (and judge.base_url), or pick "
            "another metric")
    if primary in ("nll", "rouge-1", "rouge-2", "rouge-l", "bleu", "win-rate") and isinstance(margin, dict):
        for metric in dict.fromkeys([primary, "rouge-l", "bleu", *(["win-rate"] if judged else [])]):
            if not isinstance(margin.get(metric), (int, float)) or margin[metric] < 0:
                bad(f"report.margin.{metric}", "give δ >= 0 for every compared metric (the primary one, rouge-l, bleu, and "
                    "win-rate when the judge is on)")
    resamples = _mapping(evaluate, "bootstrap").get("resamples")
    if isinstance(methods, list) and sizes and _positive_int(resamples) and isinstance(alpha, float):
        m, s = len(set(map(str, methods))), len(sizes)
        metrics = 3 + (len(benchmarks) if isinstance(benchmarks, list) else 0)  # each benchmark set's accuracy too
        family = metrics * (m * s + m * (s - 1) + (s if m > 1 else 0)) + judged * (m * s + m * (s - 1))
        if family / (resamples + 1) >= alpha:
            bad("evaluate.bootstrap.resamples", f"{resamples} resamples give p-values no smaller than 1/{resamples + 1}, which "
                f"Holm's correction over {family} comparisons lifts to at least {family / (resamples + 1):.3f}, not below "
                f"report.alpha ({alpha}): no difference could be called; use at least {int(3 * family / alpha)}")


def _check_sources(sources, bad, where: str = "data.sources") -> int | None:
    """Each source names exactly one kind, and a path sits under data/external/ (a DVC dep of
    download_data, so a changed file reruns it). Returns the record count when every source is
    builtin, the only case where it is known before reading."""
    if not isinstance(sources, list):
        return None
    names, builtin_total, all_builtin = [], 0, True
    for i, source in enumerate(sources):
        key = f"{where}.{i}"
        if not isinstance(source, dict):
            continue
        kinds = [k for k in SOURCE_KINDS if source.get(k) is not None]
        if len(kinds) != 1:
            bad(key, f"give exactly one of {', '.join(SOURCE_KINDS)}, got {kinds or 'none'}")
            continue
        kind = kinds[0]
        all_builtin &= kind == "builtin"
        if kind == "builtin" and isinstance(source["builtin"], int):
            builtin_total += source["builtin"]
        if kind == "path":
            path = Path(str(source["path"]))
            if path.is_absolute() or ".." in path.parts or not path.as_posix().startswith(EXTERNAL_DIR + "/"):
                bad(f"{key}.path", f"{source['path']!r} is outside {EXTERNAL_DIR}/: put the file there (that folder is a "
                    "DVC dependency of download_data, so a changed file reruns it) and give its path from the repo root")
            elif not path.exists():
                bad(f"{key}.path", f"{source['path']!r} does not exist; copy your data to it")
        if kind in ("hf", "modelscope") and not source.get("revision"):
            bad(f"{key}.revision", f"a {kind} source needs a revision: pin a commit for reproducibility")
        fields = source.get("fields") or {}
        if isinstance(fields, dict) and (fields.get("question") is None) != (fields.get("answer") is None):
            bad(f"{key}.fields", "give question and answer together (or neither, to detect both)")
        extra = [k for k in ("revision", "files") if source.get(k) is not None and kind not in ("hf", "modelscope")]
        extra += ["sha256"] if source.get("sha256") is not None and kind != "url" else []
        for k in extra:
            bad(f"{key}.{k}", f"applies to other source kinds, not to {kind}")
        names.append(source_name(source))
    if len(set(map(str, names))) != len(names):
        bad(where, f"source names repeat: {names}; give each a distinct name")
    return builtin_total if all_builtin and builtin_total else None


def _library_field_problems(p: dict) -> list[str]:
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig, GenerationConfig, TrainingArguments

    problems = []
    train = _mapping(p, "train")
    sections = [("lora", p.get("lora"), LoraConfig), ("quantization", p.get("quantization"), BitsAndBytesConfig),
                ("train.args", train.get("args"), TrainingArguments)]
    sections += [(f"train.method_args.{m}", args, TrainingArguments) for m, args in _mapping(train, "method_args").items()]
    sections.append(("evaluate.generation", _mapping(p, "evaluate").get("generation"), GenerationConfig))
    for key, section, cls in sections:
        if not isinstance(section, dict):
            continue
        fields = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"} or set(cls().to_dict())
        for name in sorted(set(section) - fields):
            problems.append(f"{key}.{name}: not a field of {cls.__name__}, which this section is passed to; check its spelling")
        if key.startswith("train."):
            reserved = set(RESERVED_TRAINING_ARGS) - ({"per_device_train_batch_size", "gradient_accumulation_steps"}
                                                      if key != "train.args" else set())
            for name in sorted(set(section) & reserved):
                problems.append(f"{key}.{name}: set by the pipeline: {RESERVED_TRAINING_ARGS[name]}")
    return problems


def _mapping(p: dict, key: str) -> dict:
    value = p.get(key)
    return value if isinstance(value, dict) else {}


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def method_quantization(params: dict, method: str) -> dict | None:
    """What a method loads its base with: BitsAndBytesConfig fields for QLoRA, None for LoRA.

    check_params writes it per method, and the train and evaluate stages of that method depend on
    that file alone, so a QLoRA knob reruns only the QLoRA stages.
    """
    return dict(params["quantization"]) if method == "qlora" else None
