"""The measured peak memory of a training run, and only of the training run.

A run may convert a GGUF model or download one in the same process before training starts; that
peak must not count. ``start(device)`` marks the beginning of training, ``peak_bytes(device)``
reads the highest memory use since then:

- CUDA: ``torch.cuda.reset_peak_memory_stats`` then ``max_memory_allocated`` (what tensors used;
  the CUDA context and allocator cache come on top, see ``vram``).
- CPU on Linux: writing ``5`` to ``/proc/self/clear_refs`` resets the kernel's peak resident set
  size (``VmHWM``), which then covers exactly the training part. Elsewhere (macOS, Windows, or a
  kernel that refuses) a background thread samples the resident set size every 20 ms instead.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

_lock = threading.Lock()
_state: dict[str, object] = {"mode": None, "sampler": None}


def start(device: str | None) -> str:
    """Begin measuring; returns how ('cuda', 'hwm', 'sampler')."""
    stop_sampler()
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
        mode = "cuda"
    elif _reset_hwm():
        mode = "hwm"
    else:
        sampler = _Sampler()
        sampler.start()
        _state["sampler"] = sampler
        mode = "sampler"
    _state["mode"] = mode
    return mode


def peak_bytes(device: str | None) -> int | None:
    """The peak since ``start`` (or, if it was never called, the process's lifetime peak)."""
    mode = _state["mode"]
    if device == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None
    if mode == "hwm":
        hwm = _read_status_kb("VmHWM")
        if hwm is not None:
            return hwm * 1024
    sampler = _state["sampler"]
    if mode == "sampler" and isinstance(sampler, _Sampler):
        return max(sampler.peak, current_rss())
    return lifetime_peak_rss()


def stop_sampler() -> None:
    sampler = _state.get("sampler")
    if isinstance(sampler, _Sampler):
        sampler.stop()
    _state["sampler"] = None


def current_rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def lifetime_peak_rss() -> int | None:
    """Peak resident set size of this process since it started."""
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(rss if sys.platform == "darwin" else rss * 1024)
    except ImportError:  # Windows
        import psutil

        return int(getattr(psutil.Process().memory_info(), "peak_wset", 0)) or None


def _reset_hwm() -> bool:
    path = Path("/proc/self/clear_refs")
    if not path.exists():
        return False
    try:
        before = _read_status_kb("VmHWM")
        path.write_text("5")
        after = _read_status_kb("VmHWM")
    except OSError:
        return False
    rss = _read_status_kb("VmRSS")
    # the reset worked if the peak now sits at the current RSS (it may have been higher before)
    return after is not None and rss is not None and (after <= (before or after)) and after <= rss * 1.05 + 1024


def _read_status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class _Sampler(threading.Thread):
    def __init__(self, interval: float = 0.02) -> None:
        super().__init__(name="desktop-ft-memwatch", daemon=True)
        self.interval = interval
        self.peak = current_rss()
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.peak = max(self.peak, current_rss())
            except Exception:  # the process is going away
                return

    def stop(self) -> None:
        self._stop.set()
