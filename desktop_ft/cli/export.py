"""``desktop-ft export RUN_DIR --format adapter|merged|gguf|ollama --out DIR``: take the fine-tune away.

Every export is loaded back and answers one probe prompt before the command says it is done.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from desktop_ft.core.events import Progress
from desktop_ft.core.export import DEFAULT_QUANTIZATION, FORMATS, QUANTIZATIONS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a run as an adapter, a merged model, GGUF or an Ollama model",
                       description="Export a run's fine-tune. adapter: the LoRA folder; merged: one model folder "
                       "(safetensors); gguf: for llama.cpp, LM Studio and others; ollama: GGUF + Modelfile.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder")
    p.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    p.add_argument("--quantization", choices=QUANTIZATIONS, default=None,
                   help=f"GGUF number format (gguf and ollama only; default {DEFAULT_QUANTIZATION}): q8_0 is "
                        "about half the size of f16 with nearly the same answers")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write into (created if needed)")
    p.add_argument("--checkpoint", type=int, metavar="N", help="export checkpoint-N instead of the final adapter")
    p.add_argument("--no-check", dest="check", action="store_false", default=True,
                   help="skip loading the export back to answer a probe prompt")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from desktop_ft.core.export import ExportStopped, export

    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        result = export(args.run_dir, args.format, args.out, args.quantization, on_event=_show,
                        checkpoint=args.checkpoint, stop=stop, check=args.check)
    except ExportStopped:
        print("export stopped; nothing was written under the final names", file=sys.stderr)
        return 130
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        return 0
    print(f"exported {result.format} to {result.path} ({result.size_bytes / 2**20:.1f} MiB)")
    if result.check_answer is not None:
        answer = " ".join(result.check_answer.split())
        print(f"check ({result.checked_with}): {result.check_prompt!r} -> {answer[:200]!r}")
    if result.format == "ollama":
        print(f"next: cd {result.out_dir} && ollama create my-model -f Modelfile")
    return 0


def _show(event: Progress) -> None:
    print(f"[{event.stage}] {event.message}", file=sys.stderr)
