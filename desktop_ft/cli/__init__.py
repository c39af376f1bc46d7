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
    for module in COMMANDS.values():
        importlib.import_module(f"desktop_ft.cli.{module}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        from desktop_ft.ui.app import main as open_window

        return int(open_window() or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
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
