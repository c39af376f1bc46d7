"""The one place where pages find the richer core APIs (catalog, hardware, memory estimate, methods,
dataset inspection, chat, export) that other parts of Desktop FT provide.

Each function returns the real callable/module, or ``None`` when this build does not have it; pages
then say plainly what is not available instead of showing invented data. Nothing here imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any


def _get(module: str, attr: str | None = None) -> Any:
    try:
        mod = importlib.import_module(f"desktop_ft.core.{module}")
    except ImportError as exc:
        if exc.name and not exc.name.startswith("desktop_ft"):
            raise
        return None
    if attr is None:
        return mod
    return getattr(mod, attr, None)


def models(attr: str) -> Any:
    return _get("models", attr)


def hardware_detect() -> Any:
    return _get("hardware", "detect")


def estimate_for_config() -> Any:
    return _get("vram", "estimate_for_config")


def methods_module() -> Any:
    return _get("methods")


def datasets(attr: str) -> Any:
    return _get("datasets", attr)


def chat_module() -> Any:
    return _get("chat")


def compare_module() -> Any:
    return _get("compare")


def export_module() -> Any:
    return _get("export")
