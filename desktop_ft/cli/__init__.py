"""The headless twin of the window: ``desktop-ft train | data | estimate | chat | compare | export | runs``.

Each subcommand lives in its own module with ``add_parser(subparsers)`` and ``run(args) -> int``.
``desktop-ft`` with no arguments opens the window. Importing this package loads no torch: heavy
imports happen inside the subcommand that needs them.

Exit codes: 0 success, 1 a bug (traceback), 2 a user error (one sentence on stderr), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from desktop_ft import __version__
from desktop_ft.core.errors import UserError

#: subcommand name → module under desktop_ft.cli
COMMANDS = {
    "train": "train",
    "demo": "demo",
    "data": "data",
    "estimate": "estimate",
    "models": "models",
    "chat": "chat",
    "compare": "compare",
    "export": "export",
    "runs": "runs",
    "screenshots": "screenshots",
    "doctor": "doctor",
    "desktop-entry": "desktop_entry",
    "run-script": "run_script",
}


class _Parser(argparse.ArgumentParser):
    """argparse, but errors end with how to get help (exit code 2, as argparse does)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}. Run '{self.prog} --help' for the options.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="desktop-ft", description="Fine-tune a language model on your own machine. "
                     "Run without arguments to open the window.")
    parser.add_argument("--version", action="version", version=f"desktop-ft {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module in COMMANDS.items():
        importlib.import_module(f"desktop_ft.cli.{module}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        return _launch_window()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    args.argv = argv  # a command that re-executes itself (train under a launcher) passes these on
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _launch_window() -> int:
    """Open the window; until it exists, run the offline demo (train, then before/after answer)."""
    try:
        app = importlib.import_module("desktop_ft.ui.app")
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("desktop_ft.ui"):
            raise
        return main(["demo"])
    return int(app.main() or 0)
