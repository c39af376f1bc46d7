"""``desktop-ft models list``: the catalog, the models already in the Hugging Face cache, the
built-in model, and (with ``--folder``) local model folders."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the models Desktop FT knows (catalog, cache, local)",
                       description="List models: the built-in one, the curated catalog (usable for estimates "
                       "offline), and those already in the local Hugging Face cache.")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION")
    lp = msub.add_parser("list", help="list catalog, cached and local models")
    lp.add_argument("--json", action="store_true", help="print one JSON object")
    lp.add_argument("--folder", action="append", default=[], metavar="DIR",
                    help="also describe this local model folder (repeatable)")
    lp.set_defaults(func=run_list)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def collect(folders: list[str]) -> dict[str, Any]:
    from desktop_ft.core import embedded, models

    builtin = {"name": embedded.EMBEDDED_NAME, "title": embedded.EMBEDDED_DISPLAY, "installed": True}
    try:
        builtin["gguf"] = str(embedded.embedded_gguf_path())
    except models.ModelError:
        builtin["installed"] = False
    local = [models.model_info(Path(f)).to_dict() for f in folders]
    return {"builtin": builtin, "catalog": [m.to_dict() for m in models.catalog()],
            "cached": [c.to_dict() for c in models.scan_hf_cache()], "local": local}


def run_list(args: argparse.Namespace) -> int:
    data = collect(args.folder)
    if args.json:
        sys.stdout.write(json.dumps(data) + "\n")
        return 0
    from desktop_ft.core.vram import human_bytes

    b = data["builtin"]
    print(f"built in:  {b['name']:<40s} {b['title']}{'' if b['installed'] else '  (not installed)'}")
    print("catalog (works offline for estimates; downloads on first training):")
    for m in data["catalog"]:
        flags = "gated" if m["gated"] else ""
        print(f"  {m['id']:<40s} {m['parameters'] / 1e9:6.2f}B  ctx {m['context_length']:>6}  "
              f"{m['licence']:<14s} {flags}")
    print("in the Hugging Face cache:" if data["cached"] else "in the Hugging Face cache: none")
    for c in data["cached"]:
        print(f"  {c['id']:<40s} {human_bytes(c['size_on_disk_bytes']):>10s}"
              f"{'' if c['has_weights'] else '  (config only)'}")
    for m in data["local"]:
        print(f"local: {m['name']}  {m['architecture']}  {m['parameters'] / 1e6:,.1f}M parameters  "
              f"{m['dtype'] or ''}")
    return 0
