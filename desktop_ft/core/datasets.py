"""Read training data and turn it into the shapes TRL's trainers take.

This first reader handles chat JSONL (OpenAI ``messages``); every row is validated on its own, so
one broken line is reported with its line number while every good row is kept.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desktop_ft.core.errors import DatasetError

KINDS = ("conversation", "prompt_completion", "preference", "text")
ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class RowError:
    """One unusable row: 1-based line (as an editor shows it) and a plain sentence."""

    line: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "message": self.message}


@dataclass
class LoadedDataset:
    """Valid rows, normalised to TRL shapes, plus what was wrong with the others."""

    path: str
    format: str
    kind: str
    rows: list[dict[str, Any]]
    columns: list[str] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # source line of each kept row

    def __len__(self) -> int:
        return len(self.rows)


def resources_dir() -> Path:
    """The ``resources/`` folder shipped with the package (sample data, icons)."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "resources"
    if packaged.is_dir():
        return packaged
    return here.parent / "resources"


def sample_dataset_path() -> Path:
    """The built-in sample: a tutor who answers in exactly three steps (see README for its licence)."""
    return resources_dir() / "sample_data" / "three_step_tutor.jsonl"


def load_dataset(path: str | Path, *, max_rows: int | None = None) -> LoadedDataset:
    """Load a dataset file; raise ``DatasetError`` only when no row at all is usable."""
    path = Path(path).expanduser() if str(path) else sample_dataset_path()
    if not path.exists():
        raise DatasetError("file not found", path=path, hint="Check the path or pick the file again.")
    if path.is_dir():
        raise DatasetError("is a folder; this version reads .jsonl files", path=path)
    if path.suffix.lower() not in (".jsonl", ".json", ".ndjson"):
        raise DatasetError(f"has type '{path.suffix}', which this version cannot read yet", path=path,
                           hint="Use a .jsonl file with one {\"messages\": [...]} object per line.")
    return _load_chat_jsonl(path, max_rows=max_rows)


def _load_chat_jsonl(path: Path, *, max_rows: int | None) -> LoadedDataset:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot be read ({exc.strerror})", path=path) from None
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    errors: list[RowError] = []
    columns: set[str] = set()
    for lineno, raw_line in enumerate(raw.splitlines(), start=1):
        try:
            text = raw_line.decode("utf-8-sig" if lineno == 1 else "utf-8").strip()
        except UnicodeDecodeError as exc:
            errors.append(RowError(lineno, f"is not valid UTF-8 (byte {exc.start + 1}); save the file as UTF-8."))
            continue
        if not text:
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            errors.append(RowError(lineno, f"is not valid JSON ({exc.msg} at column {exc.colno})."))
            continue
        if not isinstance(obj, dict):
            errors.append(RowError(lineno, f"must be a JSON object, got {type(obj).__name__}."))
            continue
        columns.update(obj)
        problem = validate_messages(obj.get("messages"))
        if problem:
            errors.append(RowError(lineno, problem))
            continue
        rows.append({"messages": [{"role": m["role"], "content": m["content"]} for m in obj["messages"]]})
        lines.append(lineno)
        if max_rows and len(rows) >= max_rows:
            break
    if not rows:
        if not errors:
            raise DatasetError("is empty", path=path, hint="Add one JSON object per line.")
        first = errors[0]
        raise DatasetError(f"has no usable rows; first problem: {first.message}", path=path, line=first.line,
                           hint='Each line should look like {"messages": [{"role": "user", "content": "..."}, '
                                '{"role": "assistant", "content": "..."}]}.')
    return LoadedDataset(path=str(path), format="messages", kind="conversation", rows=rows,
                         columns=sorted(columns), errors=errors, lines=lines)


def validate_messages(messages: Any) -> str | None:
    """None when ``messages`` is a usable conversation, else a sentence saying what is wrong."""
    if messages is None:
        return "has no 'messages' field."
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list of {role, content}."
    for i, msg in enumerate(messages, start=1):
        if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
            return f"message {i} must be an object with 'role' and 'content'."
        if msg["role"] not in ROLES:
            return f"message {i} has unknown role {msg['role']!r}; use one of {', '.join(ROLES)}."
        if not isinstance(msg["content"], str):
            return f"message {i} 'content' must be text, got {type(msg['content']).__name__}."
        if not msg["content"].strip() and msg["role"] != "system":
            return f"message {i} ({msg['role']}) is empty."
    if not any(m["role"] == "assistant" for m in messages):
        return "the conversation has no assistant turn, so there is nothing to learn from."
    if messages[0]["role"] == "assistant":
        return "the conversation starts with the assistant; add the user's turn before it."
    return None


def split_rows(rows: list[dict[str, Any]], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded train/validation split; no validation set when there are too few rows."""
    if fraction <= 0 or len(rows) < 4:
        return list(rows), []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_val = max(1, int(round(len(rows) * fraction)))
    n_val = min(n_val, len(rows) - 1)
    val_idx = set(order[:n_val])
    train = [r for i, r in enumerate(rows) if i not in val_idx]
    val = [r for i, r in enumerate(rows) if i in val_idx]
    return train, val


def sft_rows(data: LoadedDataset, rows: list[dict[str, Any]], *, assistant_only_loss: bool) -> list[dict[str, Any]]:
    """Rows of ``data`` (already normalised) in the shape TRL's SFTTrainer takes for its kind.

    conversation → conversational prompt/completion (loss on the last assistant reply) when
    ``assistant_only_loss``, else ``messages`` as they are; prompt_completion and text pass through.
    """
    if data.kind == "conversation" and assistant_only_loss:
        return [to_prompt_completion(r) for r in rows]
    return list(rows)


def to_prompt_completion(row: dict[str, Any]) -> dict[str, Any]:
    """Conversation → conversational prompt/completion, so the loss falls on the last assistant reply.

    This works with any chat template (no ``{% generation %}`` markers needed), which is why the
    engine uses it for assistant-only loss.
    """
    messages = row["messages"]
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return {"prompt": messages[:last], "completion": [messages[last]]}
