"""``desktop-ft runs list | show | diff | delete``: the headless twin of the window's Runs page.

Both call ``desktop_ft.core.history``, so they list the same runs with the same columns, show the
same differences and refuse the same deletes (anything that is not a run folder; a run that is
still training). RUN is a run folder's path or its name under the runs root (``--root``, or
``DESKTOP_FT_RUNS``). ``--json`` prints one JSON value for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from desktop_ft.core import history
from desktop_ft.core.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list, show, compare or delete runs (headless twin of the Runs page)",
                       description="The runs on this machine: list them, show one, compare several, delete some.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(p))

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--root", metavar="DIR", help="where runs live (default: DESKTOP_FT_RUNS or the user data "
                       "folder)")
        q.add_argument("--json", action="store_true", help="print one JSON value")

    q = actions.add_parser("list", help="every run, newest first")
    common(q)
    q.set_defaults(func=run_list)
    q = actions.add_parser("show", help="one run: state, outcome, weights, checkpoints and config")
    q.add_argument("run", metavar="RUN")
    common(q)
    q.set_defaults(func=run_show)
    q = actions.add_parser("diff", help="the config keys and outcomes in which runs differ")
    q.add_argument("runs", metavar="RUN", nargs="+")
    common(q)
    q.set_defaults(func=run_diff)
    q = actions.add_parser("delete", help="delete run folders (asks first unless --yes)")
    q.add_argument("runs", metavar="RUN", nargs="+")
    q.add_argument("--yes", action="store_true", help="do not ask")
    common(q)
    q.set_defaults(func=run_delete)


def _root(args: argparse.Namespace) -> Path | None:
    return Path(args.root).expanduser() if args.root else None


def _human_bytes(n: int | None) -> str:
    from desktop_ft.core.vram import human_bytes

    return human_bytes(n) if n else "–"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def run_list(args: argparse.Namespace) -> int:
    summaries = history.list_summaries(_root(args))
    if args.json:
        sys.stdout.write(json.dumps([s.to_dict() for s in summaries]) + "\n")
        return 0
    if not summaries:
        from desktop_ft.core.runs import default_runs_root

        print(f"no runs under {_root(args) or default_runs_root()}")
        return 0
    rows = [("RUN", "STATE", "METHOD", "MODEL", "DATASET", "LOSS", "STEPS", "DURATION", "STARTED")]
    for s in summaries:
        rows.append((Path(s.path).name, s.state, s.method, Path(s.model).name or s.model, Path(s.dataset).name,
                     f"{s.final_loss:.4f}" if s.final_loss is not None else "–",
                     f"{s.step}/{s.max_steps}" if s.max_steps else str(s.step), _duration(s.duration_seconds),
                     (s.started_at or "")[:16].replace("T", " ")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    return 0


def run_show(args: argparse.Namespace) -> int:
    folder = history.find_run(args.run, _root(args))
    summary = history.summarize(folder)
    final = history.final_weights(folder)
    config = history.flat_config(folder) if summary.config_error is None else {}
    if args.json:
        sys.stdout.write(json.dumps({**summary.to_dict(), "result_path": str(final[0]) if final else None,
                                     "config": config}) + "\n")
        return 0
    print(f"{summary.name}  ({summary.path})")
    print(f"  state        {summary.state}" + (f": {summary.error}" if summary.error else ""))
    print(f"  method       {summary.method} / {summary.task} on {summary.model}")
    print(f"  data         {summary.dataset}")
    print(f"  steps        {summary.step}/{summary.max_steps}   final loss "
          + (f"{summary.final_loss:.4f}" if summary.final_loss is not None else "–"))
    print(f"  duration     {_duration(summary.duration_seconds)}   started {summary.started_at or '–'}")
    print(f"  memory       peak {_human_bytes(summary.peak_memory_bytes)}, estimated "
          f"{_human_bytes(summary.estimated_memory_bytes)}")
    print(f"  result       {final[0]} ({final[1]})" if final else "  result       none yet")
    print("  checkpoints  " + (", ".join(map(str, summary.checkpoints)) or "none"))
    if summary.config_error:
        print(f"  config       unreadable: {summary.config_error}")
    else:
        print("  config")
        for key, value in config.items():
            print(f"    {key} = {_value(value)}")
    return 0


def run_diff(args: argparse.Namespace) -> int:
    folders = [history.find_run(name, _root(args)) for name in args.runs]
    diff = history.config_diff(folders)
    if args.json:
        sys.stdout.write(json.dumps({"runs": [str(f.path) for f in folders], "differences": diff}) + "\n")
        return 0
    names = [f.path.name for f in folders]
    if len(folders) > 1 and not diff:
        print("the runs have the same config and outcome")
        return 0
    rows = [("KEY", *names)] + [(key, *(_value(v) for v in values)) for key, values in diff.items()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    return 0


def run_delete(args: argparse.Namespace) -> int:
    # every run is found and checked before anything is deleted: one refusal deletes none
    folders = [history.check_deletable(history.find_run(name, _root(args))) for name in args.runs]
    if not args.yes:
        if not sys.stdin.isatty():
            raise UserError("deleting runs asks for confirmation, and there is no terminal to ask on",
                            field="--yes", hint="Add --yes to delete without asking.")
        listing = "\n".join(f"  {f.path}" for f in folders)
        answer = input(f"Delete {len(folders)} run folder(s) and everything in them (weights, checkpoints, "
                       f"curves)?\n{listing}\n[y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 0
    deleted = [str(history.delete_run(folder)) for folder in folders]
    if args.json:
        sys.stdout.write(json.dumps({"deleted": deleted}) + "\n")
    else:
        for path in deleted:
            print(f"deleted {path}")
    return 0


def _value(value: Any) -> str:
    return "–" if value is None else json.dumps(value) if isinstance(value, (dict, list)) else str(value)
