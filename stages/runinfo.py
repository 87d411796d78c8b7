"""What every stage shares at run time: logging, the error exit, the device, and provenance."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import resource
import sys
from importlib import metadata
from pathlib import Path

from stages.params import PipelineError

log = logging.getLogger(__name__)

LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "datasets", "tokenizers",
             "huggingface-hub", "dvc", "dvclive", "rouge-chinese", "jieba", "sacrebleu")


def cli(main) -> None:
    """Run a stage's `main()`: configure logging once, and turn bad input into one clear message."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("jieba", "httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        main()
    except PipelineError as e:
        logging.getLogger(main.__module__).error("%s", e)
        sys.exit(2)


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_precision(setting: str) -> str:
    """`auto`: bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU."""
    import torch

    if setting != "auto":
        return setting
    if not torch.cuda.is_available():
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def torch_dtype(precision: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def reset_peak_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb() -> float:
    """CUDA max allocated on a GPU; the process's peak resident set size on CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def environment() -> dict:
    """Library versions and hardware, recorded next to every run's results."""
    import torch

    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    hardware = {"machine": platform.machine(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        hardware.update(gpu=props.name, gpu_memory_mb=props.total_memory // 2**20, cuda=torch.version.cuda,
                        gpu_count=torch.cuda.device_count())
    return {"python": platform.python_version(), "libraries": versions, "hardware": hardware}


def revisions(model_dir: Path, *data_files: Path) -> dict:
    """The resolved base model (its provenance.json) and the md5 of each data file a run read."""
    provenance = json.loads((model_dir / "provenance.json").read_text(encoding="utf-8"))
    return {"model": provenance, "data": {str(f): hashlib.md5(f.read_bytes()).hexdigest() for f in data_files}}
