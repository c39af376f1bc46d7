"""``desktop-ft run-script SCRIPT [ARGS…]``: run a Python script with this install's Python.

The offline bundle has no separate interpreter, so llama.cpp's GGUF converter (a script, not a
module) runs through this (see ``desktop_ft.core.selfcmd``). From a Python install it is the same
as ``python SCRIPT ARGS…``.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run-script", help="run a Python script with Desktop FT's own Python (the bundle uses it "
                                          "for llama.cpp's GGUF converter)")
    p.add_argument("script", type=Path, help="the .py file to run")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from desktop_ft.core.errors import UserError

    script = args.script.resolve()
    if not script.is_file():
        raise UserError(f"{script}: no such script")
    sys.argv = [str(script), *args.args]
    sys.path.insert(0, str(script.parent))
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
