"""Errors meant for people, not tracebacks.

Every user-facing failure (a bad file, an unknown config key, a model that cannot be found) is a
``UserError``: it carries *what* is wrong, *where* (file, line, field) and *how to fix it*, so the
CLI can print one sentence and exit 2 and the window can show it in place. Anything else that
escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class UserError(Exception):
    """A problem the user can fix; ``str()`` is one readable sentence."""

    message: str
    path: str | Path | None = None
    line: int | None = None
    field: str | None = None
    hint: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = str(self.path)
            if self.line is not None:
                where += f" line {self.line}"
            where += ": "
        field = f"'{self.field}' " if self.field and self.field not in self.message else ""
        text = f"{where}{field}{self.message}"
        if self.hint:
            text = text.rstrip(".") + f". {self.hint}"
        return text


class ConfigError(UserError):
    """The run configuration (YAML file, flags, ``--set``) is wrong."""


class DatasetError(UserError):
    """A dataset file cannot be used as a whole (empty, unreadable, no known format)."""


class ModelError(UserError):
    """A model cannot be found, downloaded or converted."""


class RunError(UserError):
    """A run folder is missing, or does not hold what was asked of it (a checkpoint, an adapter)."""


def did_you_mean(name: str, candidates: list[str], *, what: str = "Valid names") -> str:
    """The hint for a misspelt name: the closest candidate, or the list of valid ones."""
    import difflib

    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
    if close:
        return f"Did you mean '{close[0]}'?"
    return f"{what}: " + ", ".join(candidates) + "."
