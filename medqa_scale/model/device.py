"""The device a run uses, its precision, and its peak memory."""

from __future__ import annotations

import os
import sys
import threading


def pin_device(setting: str) -> None:
    """Make `setting` (params `device`) the only device this process sees: `cuda:N` shows GPU N
    alone (as cuda:0), `cpu` hides every GPU, `auto` and `cuda` leave the choice as it is. Call it
    before anything touches CUDA: the driver reads CUDA_VISIBLE_DEVICES once, at initialisation.
    Queued experiments are pinned to different GPUs this way (`-S device=cuda:1`)."""
    if setting == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    elif setting.startswith("cuda:"):
        os.environ["CUDA_VISIBLE_DEVICES"] = setting.split(":", 1)[1]


# TrainingArguments.optim values that run on torch alone; any other may be one of bitsandbytes'
# (8-bit, paged, Lion, AdEMAMix, RMSprop...).
TORCH_OPTIMIZERS = {"adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adagrad"}


def needs_bitsandbytes(method: str | None, optim: str = "adamw_torch") -> bool:
    """Whether a run needs bitsandbytes: for a 4-bit model (method qlora: qlora-* and base-4bit)
    or for an optimizer of bitsandbytes' (TrainingArguments.optim)."""
    return method == "qlora" or optim not in TORCH_OPTIMIZERS


def keep_bitsandbytes_out() -> None:
    """Make bitsandbytes look uninstalled, in a run that does not need it (needs_bitsandbytes).

    peft imports bitsandbytes whenever it is installed (peft/helpers.py) and transformers' Trainer
    imports peft, so every LoRA run would otherwise load bitsandbytes' kernels and log their
    start-up notices. A None entry in sys.modules is Python's "not importable": `import` raises
    ImportError and importlib.util.find_spec returns None, which is what peft and transformers
    check. Call it before either is imported."""
    sys.modules.setdefault("bitsandbytes", None)


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


CUDA_PEAK = "cuda_max_allocated"
CPU_GROWTH = "cpu_rss_growth_over_loaded_model"


class PeakMemory:
    """Peak memory of one phase (training, generation), measured from `start()` on.

    On a GPU: CUDA's max allocated, reset at start. On CPU: the growth of the process's
    resident memory over what it held at start (the loaded model), sampled every few
    milliseconds by a thread: activations are freed before a step ends, so sampling only
    between steps would miss them, and the lifetime peak RSS mostly measures torch itself.
    `kind` names which of the two a figure is.
    """

    def __init__(self, interval_s: float = 0.005):
        import torch

        self.kind = CUDA_PEAK if torch.cuda.is_available() else CPU_GROWTH
        self._interval = interval_s
        self._baseline = self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> PeakMemory:
        import torch

        if self.kind == CUDA_PEAK:
            torch.cuda.reset_peak_memory_stats()
        else:
            self._baseline = self._peak = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self._peak = max(self._peak, _rss_bytes())

    def mb(self) -> float:
        """The peak so far, in MiB."""
        import torch

        if self.kind == CUDA_PEAK:
            return torch.cuda.max_memory_allocated() / 2**20
        self._peak = max(self._peak, _rss_bytes())
        return (self._peak - self._baseline) / 2**20

    def stop(self) -> float:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.mb()


_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:  # cheaper than psutil at a 5 ms period
        return int(f.read().split()[1]) * _PAGE
