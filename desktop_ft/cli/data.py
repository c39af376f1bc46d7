"""``desktop-ft data inspect``: what Desktop FT makes of a dataset file, before any training.

Prints the detected format and kind, how many rows are usable, every skipped row with its line and
why, and (with ``--model``) token lengths through that model's chat template. ``--json`` prints
exactly one JSON object on stdout:

    {"path", "format", "kind", "rows", "columns", "errors": [{"line", "message"}], "duplicates",
     "token_lengths"?, "preview"?}

Exit 0 when at least one row is usable; 2 with one sentence on stderr when none is.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

#: problems listed in the readable table (``--json`` lists all)
SHOWN_ERRORS = 20


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="look at a dataset: format, usable rows, problems, token lengths",
                       description="Work with training data.")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    i = data_sub.add_parser("inspect", help="detect the format, check every row, show token lengths and a preview",
                            description="Detect a dataset's format, check every row and report what training "
                            "would use. Exit 0 when at least one row is usable, 2 when none is.")
    i.add_argument("path", metavar="PATH", help="a .jsonl/.json/.csv/.tsv/.parquet/.txt/.md file, a folder saved "
                   "with datasets' save_to_disk, or a Hugging Face dataset id (owner/name[:split])")
    i.add_argument("--model", metavar="M", default=None,
                   help="count tokens with this model's tokenizer and chat template ('default' is the built-in "
                        "model; a folder or Hugging Face id works too)")
    i.add_argument("--max-length", type=int, default=512, metavar="L",
                   help="count rows longer than L tokens, which training would cut (default 512)")
    i.add_argument("--columns", default=None, metavar="MAP",
                   help="say which column is which when the format is not detected, "
                        "e.g. prompt=question,completion=answer")
    i.add_argument("--validation-fraction", type=float, default=0.0, metavar="F",
                   help="also show the seeded train/validation split for this share of rows")
    i.add_argument("--max-validation-rows", type=int, default=None, metavar="N",
                   help="hold out at most N rows (default: data.max_validation_rows of a run, "
                        f"{_default_max_validation()})")
    i.add_argument("--seed", type=int, default=42, help="seed for the train/validation split (default 42)")
    i.add_argument("--validation", metavar="PATH", default=None,
                   help="a separate validation file: checked the same way, its rows counted as the validation set")
    i.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of a table")
    i.set_defaults(func=run_inspect)
    p.set_defaults(func=lambda _args: (p.print_help(), 2)[1])


def _default_max_validation() -> int:
    """The run's own cap (``data.max_validation_rows``), so inspect shows the split a run makes."""
    from desktop_ft.core.config import RunConfig

    return RunConfig().data.max_validation_rows


def run_inspect(args: argparse.Namespace) -> int:
    from desktop_ft.core import datasets as ds

    data = ds.load_dataset(args.path, columns=ds.parse_columns(args.columns) or None)
    tokenizer = _tokenizer(args.model, data.kind) if args.model else None
    validation = ds.load_dataset(args.validation, columns=ds.parse_columns(args.columns) or None) \
        if args.validation else None
    report = ds.inspect_dataset(data, tokenizer, max_length=args.max_length,
                                validation_fraction=args.validation_fraction, seed=args.seed, validation=validation,
                                max_validation_rows=args.max_validation_rows or _default_max_validation())
    result: dict[str, Any] = {
        "path": data.path, "format": data.format, "kind": data.kind, "rows": len(data.rows),
        "columns": data.columns, "errors": [e.to_dict() for e in data.errors], "duplicates": report.duplicates,
    }
    if report.token_lengths is not None:
        result["token_lengths"] = report.token_lengths
    result["preview"] = report.preview
    if report.template_errors:
        result["template_errors"] = report.template_errors
    if validation is not None or args.validation_fraction:
        result["split"] = {"train": report.counts["train"], "validation": report.counts["validation"]}
    if validation is not None and validation.errors:
        result["validation_errors"] = [e.to_dict() for e in validation.errors]
    if args.json:
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    else:
        _print_table(data, report, validation)
    return 0


def _tokenizer(model: str, kind: str) -> Any:
    """The model's tokenizer, or None with a warning: the data is still worth reporting without it."""
    from desktop_ft.core.errors import UserError
    from desktop_ft.core.models import resolve_model

    try:
        path = resolve_model(model)
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        tokenizer = AutoTokenizer.from_pretrained(path)
    except UserError as exc:
        print(f"warning: no token lengths: {exc}", file=sys.stderr)
        return None
    except (OSError, ValueError) as exc:  # transformers' "cannot find/load this tokenizer"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"warning: no token lengths: the tokenizer of {model} cannot be loaded ({first[:200]})",
              file=sys.stderr)
        return None
    if not tokenizer.chat_template and kind != "text":
        print(f"warning: {model} has no chat template, so token lengths of chat rows cannot be counted",
              file=sys.stderr)
        return None
    return tokenizer


def _print_table(data: Any, report: Any, validation: Any = None) -> None:
    unit = data.unit
    c = report.counts
    print(f"path:      {data.path}")
    print(f"format:    {data.format} (kind: {data.kind})")
    print(f"rows:      {c['rows']} usable, {c['errors']} skipped, {c['duplicates']} duplicate"
          + ("" if not c["validation"] else f"; split {c['train']} train / {c['validation']} validation"))
    print(f"columns:   {', '.join(data.columns)}")
    print("uses:      " + ", ".join(f"{part} ← {col}" for part, col in data.fields.items()))
    for note in data.notes:
        print(f"note:      {note}")
    t = report.token_lengths
    if t:
        print(f"tokens:    min {t['min']}, median {t['median']}, p95 {t['p95']}, max {t['max']}; "
              f"{t['truncated']} row(s) longer than {t['max_length']} would be cut"
              + (f" (counted on a sample of {t['counted']} rows)" if t["counted"] < report.counts["rows"] else ""))
        if t.get("answer_cut_off"):
            print(f"           {t['answer_cut_off']} of them lose their whole answer: training skips those rows")
    if report.duplicate_lines:
        print(f"duplicates at {unit}s: {', '.join(map(str, report.duplicate_lines))}"
              + (" …" if report.duplicates > len(report.duplicate_lines) else ""))
    if data.errors:
        print(f"\nskipped {len(data.errors)} row(s):")
        for e in data.errors[:SHOWN_ERRORS]:
            print(f"  {unit} {e.line}: {e.message}")
        if len(data.errors) > SHOWN_ERRORS:
            print(f"  … and {len(data.errors) - SHOWN_ERRORS} more (--json lists them all)")
    if validation is not None and validation.errors:
        print(f"\nvalidation file {validation.path}: skipped {len(validation.errors)} row(s):")
        for e in validation.errors[:SHOWN_ERRORS]:
            print(f"  {validation.unit} {e.line}: {e.message}")
    for e in report.template_errors[:SHOWN_ERRORS]:
        print(f"  {unit} {e['line']}: {e['message']}")
    for n, text in enumerate(report.preview, start=1):
        line = data.lines[n - 1]
        print(f"\n--- preview {n} ({unit} {line}) ---")
        print(text if len(text) <= 1200 else text[:1200] + " …")
