"""Read training data and turn it into the shapes TRL's trainers take.

``load_dataset(path)`` takes the files people have (.jsonl, .json, .csv/.tsv, .parquet, .txt/.md, a
``save_to_disk`` folder, a Hugging Face dataset id), detects the format from the column names
(OpenAI messages, ShareGPT, Alpaca, Dolly, prompt/completion and question/answer pairs,
preference pairs, Anthropic HH, raw text) and normalises every row to one of four kinds:

- conversation: ``{"messages": [{"role", "content"}, ...]}``
- prompt_completion: ``{"prompt": str, "completion": str}``
- preference: ``{"prompt", "chosen", "rejected"}`` (strings, or message lists)
- text: ``{"text": str}``

Every row is validated on its own: a bad one becomes a ``RowError`` with its line (1-based, as an
editor shows it) and a sentence, and every good row is kept. Only a file with no usable row at all
raises ``DatasetError``. ``sft_recipe`` (in ``_examples``) turns rows into SFT examples and says
which tokens are learned; ``inspect_dataset`` and ``loss_segments`` (in ``_inspect``) describe what a
model will see and learn, through that same recipe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desktop_ft import resources
from desktop_ft.core.datasets._formats import (EXPECTED, ROLES, TARGETS, Format, RowProblem, as_messages,
                                               detect_format, resolve_mapping, validate_messages)
from desktop_ft.core.datasets._examples import (SftRecipe, per_turn_rows, sft_recipe, split_rows, to_prompt_completion,
                                                training_chat_template)
from desktop_ft.core.datasets._inspect import DatasetReport, inspect_dataset, loss_segments, render_plain
from desktop_ft.core.datasets import _store
from desktop_ft.core.datasets._read import SUPPORTED, RowError, line_at, line_offsets, open_source
from desktop_ft.core.datasets._store import RowStore, arrow_examples, examples_of_this_run, store_root
from desktop_ft.core.errors import DatasetError

__all__ = [
    "KINDS", "ROLES", "LoadedDataset", "RowError", "DatasetReport", "load_dataset", "inspect_dataset",
    "loss_segments", "split_rows", "SftRecipe", "sft_recipe", "per_turn_rows", "to_prompt_completion",
    "training_chat_template", "validate_messages", "as_messages",
    "parse_columns", "render_plain", "SUPPORTED", "TARGETS", "RowStore", "arrow_examples", "examples_of_this_run",
    "store_root", "line_at", "line_offsets",
]

KINDS = ("conversation", "prompt_completion", "preference", "text")
#: rows looked at to detect the format
DETECT_SAMPLE = 200


@dataclass
class LoadedDataset:
    """Valid rows, normalised to TRL shapes, plus what was wrong with the others.

    ``rows`` is a ``RowStore``: the rows on disk (memory-mapped Arrow in the cache), read as a
    sequence of dicts, so a file of any size costs a bounded amount of memory.
    """

    path: str
    format: str
    kind: str
    rows: RowStore
    columns: list[str] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    unit: str = "line"                              # 'line' in text files; 'row' in parquet/saved/hub data
    notes: list[str] = field(default_factory=list)  # e.g. "rows read from the list under 'data'"
    fields: dict[str, str] = field(default_factory=dict)  # part → column used, e.g. {"prompt": "question"}

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def lines(self) -> Sequence[int]:
        """The source line (or row number) of each kept row, read from the store as asked for."""
        return self.rows.lines


def load_dataset(path: str | Path, *, columns: dict[str, str] | None = None,
                 max_rows: int | None = None) -> LoadedDataset:
    """Load a dataset; raise ``DatasetError`` only when no row at all is usable.

    ``columns`` maps parts to column names when detection cannot tell (``{"prompt": "question",
    "completion": "answer"}``); ``max_rows`` stops after that many valid rows. Rows are read as a
    stream and written to an on-disk store (``_store``); a file read before with the same options
    and unchanged since is not read again.
    """
    target = Path(str(path)).expanduser() if str(path) else resources.sample_dataset()
    key = _store.source_key(target, columns=columns or {}, max_rows=max_rows)
    hit = _store.cached(key)
    if hit is not None:
        return _loaded(*hit)
    where, source = open_source(path if str(path) else target)
    errors: list[RowError] = []
    pending: list[tuple[int, dict[str, Any]]] = []
    seen_columns: dict[str, None] = dict.fromkeys(source.columns or [])
    records = source.records
    unit = source.unit

    def take(item: Any) -> tuple[int, dict[str, Any]] | None:
        if isinstance(item, RowError):
            errors.append(item)
            return None
        line, record = item
        if isinstance(record, str):
            record = {"text": record}
        elif isinstance(record, list) and record and all(isinstance(m, dict) and ("role" in m or "from" in m)
                                                         for m in record):
            record = {"messages": record}  # a bare list of messages per line
        if not isinstance(record, dict):
            what = {list: "a list", int: "a number", float: "a number", bool: "true/false"}.get(type(record), "null")
            errors.append(RowError(line, f"must be an object with named fields, got {what}."))
            return None
        for key in record:
            if key not in seen_columns:
                seen_columns[str(key)] = None
        return line, record

    for item in records:
        taken = take(item)
        if taken:
            pending.append(taken)
            if len(pending) >= DETECT_SAMPLE:
                break
    if not pending:
        _raise_nothing_usable(where, errors, unit)
    found = list(seen_columns)
    try:
        mapping = resolve_mapping(columns, found)
    except DatasetError as exc:
        exc.path = exc.path or where  # name the file: a validation file may lack what the training file has
        raise
    fmt = _vote(pending, mapping) or detect_format(found, [r for _, r in pending], mapping)
    if fmt is None:
        raise DatasetError(f"has no format Desktop FT recognises (columns found: {', '.join(found) or 'none'})",
                           path=where, hint=f"Expected {EXPECTED}. Or say which column is which, e.g. "
                           "--columns prompt=COLUMN,completion=COLUMN (data.columns in a config)."
                           + (" The first line is read as the column names: add a header line if it holds "
                              "data." if source.kind == "csv" else ""))

    writer = _store.StoreWriter(key)

    def keep(line: int, record: dict[str, Any]) -> bool:
        try:
            writer.add(fmt.normalise(record), line)
        except RowProblem as problem:
            errors.append(RowError(line, str(problem)))
        return bool(max_rows) and writer.count >= max_rows  # type: ignore[operator]

    try:
        done = False
        for line, record in pending:
            if keep(line, record):
                done = True
                break
        del pending
        if not done:
            for item in records:
                taken = take(item)
                if taken and keep(*taken):
                    break
        if not writer.count:
            _raise_nothing_usable(where, errors, unit, fmt)
    except BaseException:
        writer.abandon()
        raise
    errors.sort(key=lambda e: e.line)
    meta = {"path": str(where), "format": fmt.name, "kind": fmt.kind, "columns": list(seen_columns),
            "errors": [e.to_dict() for e in errors], "unit": unit, "notes": list(source.notes),
            "fields": dict(fmt.fields)}
    return _loaded(writer.finish(meta), meta)


def _loaded(store: RowStore, meta: dict[str, Any]) -> LoadedDataset:
    """The dataset a store holds, with what its metadata says (the same whether just read or cached)."""
    return LoadedDataset(path=meta["path"], format=meta["format"], kind=meta["kind"], rows=store,
                         columns=meta["columns"], errors=[RowError(**e) for e in meta["errors"]], unit=meta["unit"],
                         notes=meta["notes"], fields=meta["fields"])


def _vote(pending: list[tuple[int, dict[str, Any]]], mapping: dict[str, str]) -> Format | None:
    """The format most of the first rows have on their own, so a few odd rows cannot decide for all.

    Its columns are then taken from every row of that format (optional ones such as Alpaca's
    'input' may be missing from some rows).
    """
    from collections import Counter

    names: Counter[str] = Counter()
    by_name: dict[str, list[dict[str, Any]]] = {}
    for _, record in pending:
        found = detect_format(list(record), [record], mapping)
        if found is not None:
            names[found.name] += 1
            by_name.setdefault(found.name, []).append(record)
    if not names:
        return None
    winners = by_name[names.most_common(1)[0][0]]
    columns = list(dict.fromkeys(key for record in winners for key in record))
    return detect_format(columns, winners, mapping)


def _raise_nothing_usable(where: Any, errors: list[RowError], unit: str, fmt: Format | None = None) -> None:
    if not errors:
        raise DatasetError("is empty", path=where, hint="Add rows: for chat data, one JSON object per line "
                           "with a 'messages' list.")
    errors.sort(key=lambda e: e.line)
    first = errors[0]
    how = f" as {fmt.name} data" if fmt else ""
    more = f" ({len(errors)} rows have problems; the first is shown)" if len(errors) > 1 else ""
    if unit == "line":
        raise DatasetError(f"has no usable rows{how}{more}: {first.message}", path=where, line=first.line)
    raise DatasetError(f"has no usable rows{how}{more}: row {first.line} {first.message}", path=where)


def parse_columns(text: str | dict[str, str] | None) -> dict[str, str]:
    """``prompt=question,completion=answer`` (or a JSON/YAML mapping) → ``{"prompt": "question", ...}``."""
    if not text:
        return {}
    if isinstance(text, dict):
        return {str(k): str(v) for k, v in text.items()}
    text = text.strip()
    if text.startswith("{"):
        try:
            import yaml

            value = yaml.safe_load(text)
        except Exception:
            value = None
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        raise DatasetError(f"cannot read the column mapping {text!r}", field="data.columns",
                           hint="Write it as prompt=question,completion=answer.")
    mapping = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            key, sep, value = part.partition(":")
        if not sep or not key.strip() or not value.strip():
            raise DatasetError(f"cannot read {part.strip()!r} in the column mapping", field="data.columns",
                               hint="Write it as prompt=question,completion=answer.")
        mapping[key.strip()] = value.strip()
    return mapping
