"""How Desktop FT starts another copy of itself: the training child, llama.cpp's converter.

From a Python install that is ``python -m desktop_ft …`` (``sys.executable`` is the interpreter).
In the PyInstaller bundle ``sys.executable`` *is* the app, with no ``-m`` and no interpreter to run
a script with, so the app takes the subcommand directly and runs scripts through its hidden
``run-script`` subcommand. Every place that starts a child asks here.
"""

from __future__ import annotations

import sys
from pathlib import Path


def frozen() -> bool:
    """True inside the PyInstaller bundle."""
    return bool(getattr(sys, "frozen", False))


def desktop_ft_command(*args: str) -> list[str]:
    """The command line that runs ``desktop-ft ARGS…`` with this very install."""
    if frozen():
        return [sys.executable, *args]
    return [sys.executable, "-m", "desktop_ft", *args]


def python_script_command(script: str | Path, *args: str) -> list[str]:
    """The command line that runs a Python script with this install's Python and packages."""
    if frozen():
        return [sys.executable, "run-script", str(script), *args]
    return [sys.executable, str(script), *args]
