"""``desktop-ft chat RUN_DIR|MODEL``: one answer with --prompt, or a conversation in the terminal.

A run folder answers with its fine-tune (``--base``: the base model, ``--checkpoint N``: that
checkpoint); anything else is taken as a model ('default', a folder, a .gguf file, a Hub id).
The answer streams to stdout; progress and hints go to stderr. Ctrl-C stops the answer being
written; at the prompt it ends the chat, as do /quit and an empty line at end of input.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from desktop_ft.core.errors import UserError
from desktop_ft.core.events import Progress


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chat", help="chat with a run's fine-tuned model (or its base, or any model)",
                       description="Chat with a fine-tuned run (RUN_DIR) or any model (MODEL).")
    p.add_argument("target", metavar="RUN_DIR|MODEL", help="a run folder, or a model: 'default', a folder, "
                   "a .gguf file or a Hugging Face id")
    p.add_argument("--base", action="store_true", help="answer with the base model (the run's adapter off)")
    p.add_argument("--checkpoint", type=int, metavar="N", help="answer with the run's checkpoint-N")
    p.add_argument("--prompt", help="ask one question, print the answer and exit")
    add_generation_flags(p, greedy_default=False)
    p.set_defaults(func=run)


def add_generation_flags(p: argparse.ArgumentParser, *, greedy_default: bool,
                         max_new_tokens: int | None = None) -> None:
    """The sampling flags, with help from ``GenerationSettings``' fields."""
    from desktop_ft.core.chat import GenerationSettings
    import dataclasses

    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(GenerationSettings)}
    defaults = GenerationSettings()
    if max_new_tokens is not None:
        defaults.max_new_tokens = max_new_tokens
    p.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens, metavar="N",
                   help=helps["max_new_tokens"] + f" Default {defaults.max_new_tokens}.")
    p.add_argument("--system", default="", metavar="TEXT", help=helps["system_prompt"])
    if greedy_default:
        p.add_argument("--sample", dest="greedy", action="store_false", default=True,
                       help="sample instead of always taking the most likely token (greedy is the default "
                            "for comparisons)")
    else:
        p.add_argument("--greedy", dest="greedy", action="store_true", default=False, help=helps["greedy"])
    p.add_argument("--temperature", type=float, default=defaults.temperature, help=helps["temperature"])
    p.add_argument("--top-p", type=float, default=defaults.top_p, help=helps["top_p"])
    p.add_argument("--seed", type=int, default=defaults.seed, help=helps["seed"])


def settings_from_args(args: argparse.Namespace) -> Any:
    from desktop_ft.core.chat import GenerationSettings

    if args.max_new_tokens < 1:
        raise UserError("--max-new-tokens must be at least 1", field="max_new_tokens")
    return GenerationSettings(max_new_tokens=args.max_new_tokens, greedy=args.greedy, temperature=args.temperature,
                              top_p=args.top_p, seed=args.seed, system_prompt=args.system)


def load_chat_model(target: str, checkpoint: int | None) -> Any:
    from desktop_ft.core.chat import ChatModel

    path = Path(target).expanduser()
    progress = _progress_printer()
    if path.is_dir() and (path / "config.yaml").exists():
        print(f"Loading {path}…", file=sys.stderr)
        return ChatModel.from_run(path, checkpoint=checkpoint, on_progress=progress)
    if checkpoint is not None:
        raise UserError("--checkpoint needs a run folder", path=target,
                        hint="Give the folder 'desktop-ft train' wrote (it holds config.yaml).")
    print(f"Loading {target}…", file=sys.stderr)
    return ChatModel.from_model(target, on_progress=progress)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    chat = load_chat_model(args.target, args.checkpoint)
    tuned = not args.base
    if args.base and not chat.has_tuned:
        print("note: this is a plain model, so --base changes nothing", file=sys.stderr)
    side = "base model" if not tuned or not chat.has_tuned else (
        f"fine-tuned, {chat.tuned.label}" if chat.tuned else "fine-tuned")
    if args.prompt is not None:
        _answer(chat, [{"role": "user", "content": args.prompt}], tuned, settings)
        return 0
    print(f"Chatting with the {side}. /reset starts over, /base and /tuned switch sides, /quit ends.",
          file=sys.stderr)
    history: list[dict[str, str]] = []
    while True:
        try:
            line = input("you> ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            return 0
        if text == "/reset":
            history = []
            print("(new conversation)", file=sys.stderr)
            continue
        if text in ("/base", "/tuned"):
            tuned = text == "/tuned"
            print(f"(now answering with the {'fine-tuned' if tuned else 'base'} model)", file=sys.stderr)
            continue
        history.append({"role": "user", "content": line})
        answer = _answer(chat, history, tuned, settings)
        history.append({"role": "assistant", "content": answer})


def _answer(chat: Any, messages: list[dict[str, str]], tuned: bool, settings: Any) -> str:
    """Stream one answer to stdout; Ctrl-C stops it (and keeps what was written)."""
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        def show(piece: str) -> None:
            sys.stdout.write(piece)
            sys.stdout.flush()

        answer = chat.generate(messages, tuned=tuned, settings=settings, on_token=show, stop=stop)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    sys.stdout.write("\n")
    if stop.is_set():
        print("(stopped)", file=sys.stderr)
    sys.stdout.flush()
    return answer


def _progress_printer() -> Any:
    def show(event: Progress) -> None:
        print(f"[{event.stage}] {event.message}", file=sys.stderr)

    return show
