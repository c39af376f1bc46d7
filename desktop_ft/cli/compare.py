"""``desktop-ft compare RUN_DIR``: the same prompts answered by the base and the fine-tuned model.

Without prompts, the run's probe set is replayed (picked from its validation split on first use
and saved in the run folder); ``--prompt``/``--prompts`` add the user's own prompts to that set and
compare just those. ``--checkpoints`` also answers with every checkpoint. Results are merged into
``RUN_DIR/compare.jsonl``. A forgetting check (everyday questions; see ``core.compare``) runs with
a full replay unless ``--no-forgetting``. ``--json`` prints exactly one JSON object on stdout:
``{"run", "results": [{"prompt", "base", "tuned", "checkpoint"?}], "forgetting"?}``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from desktop_ft.cli.chat import add_generation_flags, settings_from_args
from desktop_ft.core.compare import ProbeAnswered
from desktop_ft.core.errors import UserError
from desktop_ft.core.events import Progress

DEFAULT_MAX_NEW_TOKENS = 128


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="answer the same prompts with the base and the fine-tuned model",
                       description="Replay the run's probe set (or your prompts) on the base model and the "
                       "fine-tuned model, side by side; saved to RUN_DIR/compare.jsonl.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder")
    p.add_argument("--prompt", action="append", default=[], metavar="P",
                   help="a prompt to compare (repeatable); added to the run's probe set")
    p.add_argument("--prompts", metavar="FILE", help="prompts from a file: one per line (.txt), or JSON lines "
                   "with 'prompt' or 'messages'")
    p.add_argument("--checkpoints", action="store_true", help="also answer with every saved checkpoint")
    p.add_argument("--no-forgetting", dest="forgetting", action="store_false", default=True,
                   help="skip the forgetting check (everyday questions scored by both models)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of text")
    add_generation_flags(p, greedy_default=True, max_new_tokens=DEFAULT_MAX_NEW_TOKENS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from desktop_ft.core import compare
    from desktop_ft.core.chat import ChatModel

    run_dir = Path(args.run_dir).expanduser()
    settings = settings_from_args(args)
    prompts = list(args.prompt)
    if args.prompts:
        prompts += compare.read_prompts_file(args.prompts)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, lambda *_: _stop(stop))
    show = _Progress(quiet=False)
    chat = ChatModel.from_run(run_dir, on_progress=show)  # fails early and clearly: no run, no adapter
    if prompts:
        compare.add_probes(run_dir, prompts)
        probes = [compare.Probe(p) for p in dict.fromkeys(p.strip() for p in prompts) if p]
    else:
        probes = compare.ensure_probes(run_dir)
    results = compare.replay(run_dir, probes, checkpoints=args.checkpoints, settings=settings, chat=chat,
                             on_event=show, stop=stop)
    forgetting = None
    if args.forgetting and not prompts and not stop.is_set():
        try:
            forgetting = compare.forgetting_check(chat, on_event=show, stop=stop, run_dir=run_dir)
        except UserError as exc:  # the comparison itself is done and saved; say why this part is missing
            print(f"note: no forgetting check: {exc}", file=sys.stderr)
    if args.json:
        out: dict[str, Any] = {"run": str(run_dir), "results": [r.to_dict() for r in results]}
        if forgetting is not None:
            out["forgetting"] = {k: v for k, v in forgetting.to_dict().items() if k != "samples"}
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
    else:
        _print_table(results, forgetting)
    if stop.is_set():
        print("stopped; the answers so far are saved in compare.jsonl", file=sys.stderr)
        return 130
    return 0


def _stop(stop: threading.Event) -> None:
    if stop.is_set():
        raise KeyboardInterrupt
    stop.set()
    print("\nstopping after this answer… (Ctrl-C again to abort)", file=sys.stderr)


def _print_table(results: list[Any], forgetting: Any) -> None:
    for r in results:
        side = f"fine-tuned (checkpoint {r.checkpoint})" if r.checkpoint is not None else "fine-tuned"
        print(f"\n### {r.prompt}\n--- base ---\n{r.base.strip()}\n--- {side} ---\n{r.tuned.strip()}")
    changed = sum(r.changed for r in results)
    print(f"\n{changed} of {len(results)} answers changed.")
    if forgetting is not None:
        print(f"Forgetting check ({forgetting.prompts} everyday questions): {forgetting.verdict}")


class _Progress:
    """Stage messages on stderr, one line each (stdout stays clean for --json)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.last = ""

    def __call__(self, event: Progress | ProbeAnswered) -> None:
        if isinstance(event, Progress) and not self.quiet and event.message != self.last:
            self.last = event.message
            print(f"[{event.stage}] {event.message}", file=sys.stderr)
