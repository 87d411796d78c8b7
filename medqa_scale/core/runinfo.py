"""What every run records next to its results: library versions, hardware, and the resolved
model and data it read."""

from __future__ import annotations

import hashlib
import os
import platform
from importlib import metadata
from pathlib import Path

from medqa_scale.core.durable import read_json

LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "datasets", "tokenizers",
             "huggingface-hub", "dvc", "dvclive", "rouge-chinese", "jieba", "sacrebleu")


def environment() -> dict:
    """Library versions and hardware."""
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
    return {"model": read_json(model_dir / "provenance.json"),
            "data": {str(f): hashlib.md5(f.read_bytes()).hexdigest() for f in data_files}}
