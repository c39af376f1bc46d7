"""What this machine has for training: CUDA GPUs and their memory, bf16, bitsandbytes, Apple MPS,
CPU cores and RAM.

``detect()`` works on any machine (no GPU, no CUDA build of torch, no bitsandbytes): whatever
cannot be found is simply absent. torch is imported inside the function, so importing this
module stays light.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Gpu:
    """One CUDA device."""

    name: str
    total_bytes: int
    free_bytes: int
    capability: tuple[int, int]
    index: int = 0


@dataclass(frozen=True)
class Hardware:
    """The machine at hand, as the memory estimate and the wizard need it."""

    gpus: list[Gpu] = field(default_factory=list)
    bf16: bool = False
    bitsandbytes: bool = False
    mps: bool = False
    cpu_cores: int = 1
    ram_total_bytes: int = 0
    ram_available_bytes: int = 0

    @property
    def best_device(self) -> str:
        """Where the engine trains: 'cuda' when a GPU is there, else 'cpu' (MPS is not used yet)."""
        return "cuda" if self.gpus else "cpu"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def detect() -> Hardware:
    """Look at the machine now (free GPU memory and available RAM change from call to call)."""
    import psutil
    import torch

    vm = psutil.virtual_memory()
    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    gpus: list[Gpu] = []
    bf16 = mps = False
    try:
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(i)
                try:
                    free, total = torch.cuda.mem_get_info(i)
                except RuntimeError:
                    free, total = props.total_memory, props.total_memory
                gpus.append(Gpu(props.name, int(total), int(free), (props.major, props.minor), i))
            bf16 = bool(torch.cuda.is_bf16_supported())
    except Exception:  # a broken driver must not stop the app from opening
        gpus = []
    try:
        mps = bool(torch.backends.mps.is_available())
    except Exception:
        mps = False
    return Hardware(gpus=gpus, bf16=bf16, bitsandbytes=bitsandbytes_usable(bool(gpus)), mps=mps,
                    cpu_cores=int(cores), ram_total_bytes=int(vm.total), ram_available_bytes=int(vm.available))


def compute_device() -> tuple[str, bool]:
    """Where this process trains and generates: ('cuda', bf16 supported?) with a CUDA GPU, else ('cpu', False)."""
    import torch

    if torch.cuda.is_available():
        return "cuda", bool(torch.cuda.is_bf16_supported())
    return "cpu", False


def bitsandbytes_usable(has_cuda: bool) -> bool:
    """QLoRA and 8-bit optimizers need bitsandbytes and a CUDA GPU; found without importing it."""
    return has_cuda and bitsandbytes_installed()


def bitsandbytes_installed() -> bool:
    """Whether the bitsandbytes package can be imported (looked up, not imported)."""
    return importlib.util.find_spec("bitsandbytes") is not None


def gpu(total_gb: float, name: str = "GPU", capability: tuple[int, int] = (8, 0)) -> Hardware:
    """A pretend machine with one GPU of ``total_gb`` GiB, for 'would it fit on a 24 GB card?'."""
    total = int(total_gb * 1024**3)
    return Hardware(gpus=[Gpu(name, total, total, capability)], bf16=capability >= (8, 0), bitsandbytes=True,
                    cpu_cores=os.cpu_count() or 1)
