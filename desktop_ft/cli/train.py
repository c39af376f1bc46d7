"""``desktop-ft train``: run a fine-tune from a config file and/or flags; flags override the file."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from desktop_ft.core.config import (
    RunConfig,
    all_dotted_keys,
    field_info,
    load_config,
    parse_cli_value,
)
from desktop_ft.core.errors import ConfigError, UserError
from desktop_ft.core.events import (
    EvalLogged,
    Event,
    Progress,
    RunFinished,
    StepLogged,
    to_dict,
)
from desktop_ft.core.methods import METHODS, PRESETS, TASKS
from desktop_ft.core.presets import apply_preset

#: flag → config key; the flags are shortcuts for the commonest --set keys
SHORTCUTS = {
    "model": "model.name",
    "data": "data.path",
    "method": "method.method",
    "task": "method.task",
    "max_steps": "training.max_steps",
    "epochs": "training.epochs",
    "learning_rate": "training.learning_rate",
    "output_dir": "output.output_dir",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune a model (headless twin of the window's Train step)",
                       description="Fine-tune a model. CONFIG is a config.yaml (e.g. a run folder's); "
                       "flags and --set override it.")
    p.add_argument("config", nargs="?", help="a config.yaml file (optional)")
    for flag, key in SHORTCUTS.items():
        info = field_info(key)
        p.add_argument(f"--{flag.replace('_', '-')}", dest=flag, default=None, metavar=flag.upper().split("_")[0],
                       help=info.metadata["help"])
    p.add_argument("--preset", default=None, metavar="PRESET",
                   help="start from a preset: " + "; ".join(f"'{k}' ({v.title}): {v.description}"
                                                          for k, v in PRESETS.items())
                   + " Flags and --set still win.")
    p.add_argument("--columns", default=None, metavar="MAP", help="which column is which when the data's format is "
                   "not detected, e.g. prompt=question,completion=answer (sets data.columns)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="set any config key, e.g. --set training.batch_size=8 (see --list-settings)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped, failed or killed run from its "
                   "last checkpoint")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow a config that sets model.trust_remote_code: true to run the Python code shipped "
                   "with its model (never obeyed from a file alone)")
    p.add_argument("--json-events", action="store_true",
                   help="print one JSON object per event on stdout (for the window and scripts)")
    p.add_argument("--list-settings", action="store_true", help="list every config key with its help and exit")
    p.add_argument("--list-methods", action="store_true",
                   help="list the methods, tasks and presets with one sentence each and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list_settings:
        for key in all_dotted_keys():
            info = field_info(key)
            default = info.default if info.default is not info.default_factory else "{}"  # type: ignore[misc]
            print(f"{key} (default {default!r}): {info.metadata['help']}")
        return 0
    if args.list_methods:
        _print_methods()
        return 0
    config, resume_run = build_config(args)
    return train_with_progress(config, resume_run=resume_run, json_events=args.json_events)


def build_config(args: argparse.Namespace) -> tuple[RunConfig, Any]:
    """The config to train (file or run folder, then flags, then the preset) and the run to resume."""
    from desktop_ft.core.runs import RunFolder, output_dir_from_elsewhere

    resume_run = None
    if args.resume:
        resume_run = RunFolder(Path(args.resume).expanduser())
        if not resume_run.config_path.exists():
            raise UserError("is not a run folder (no config.yaml)", path=args.resume,
                            hint="Give the folder a previous 'desktop-ft train' wrote.")
        config = resume_run.read_config()
    elif args.config:
        config = load_config(args.config)
        foreign = output_dir_from_elsewhere(Path(args.config), config)
        if foreign:
            print(f"warning: {args.config} belongs to a run made elsewhere; its output_dir ({foreign}) is ignored "
                  "and a new run folder is made (give --output-dir to choose one).", file=sys.stderr)
            config = config.replace({"output.output_dir": None})
    else:
        config = RunConfig()
    overrides = collect_overrides(args)
    from_file = config.model.trust_remote_code and not overrides.get("model.trust_remote_code")
    config = config.replace(overrides)
    if args.preset:
        # the preset picks the learning rate for the method and task chosen above; explicit flags still win
        config = apply_preset(config, args.preset).replace(overrides)
    if config.model.trust_remote_code and from_file and not args.trust_remote_code:
        raise ConfigError("asks to run Python code shipped with the model (model.trust_remote_code: true), which "
                          "is never obeyed from a file alone", path=args.resume or args.config,
                          field="model.trust_remote_code",
                          hint=f"If you trust the authors of {config.model.name}, add --trust-remote-code.")
    return config, resume_run


def _print_methods() -> None:
    print("Methods (--method): how the weights are trained")
    for name, spec in METHODS.items():
        need = " [needs an NVIDIA GPU]" if spec.needs_cuda else ""
        print(f"  {name:14} {spec.title}: {spec.sentence}{need}")
    print("Tasks (--task): what the model learns; 'auto' picks from the data")
    for name, task in TASKS.items():
        print(f"  {name:14} {task.title}: {task.sentence} Data: {', '.join(task.data_kinds)}.")
    print("Presets (--preset)")
    for name, preset in PRESETS.items():
        print(f"  {name:14} {preset.title}: {preset.description}")


def collect_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The shortcut flags and every ``--set KEY=VALUE``, as dotted keys with typed values."""
    overrides: dict[str, Any] = {}
    for flag, key in SHORTCUTS.items():
        value = getattr(args, flag)
        if value is not None:
            overrides[key] = parse_cli_value(key, value)
    if getattr(args, "columns", None):
        from desktop_ft.core.datasets import parse_columns

        overrides["data.columns"] = parse_columns(args.columns)
    overrides.update(collect_set_overrides(args.overrides))
    for key in ("model.name", "data.path", "output.output_dir"):
        if key in overrides and overrides[key] is not None:
            overrides[key] = str(overrides[key])
    return overrides


def collect_set_overrides(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as dotted keys with typed values (YAML rules: 1e-4, true, null)."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set needs KEY=VALUE, got {item!r}", hint="For example --set training.batch_size=8.")
        overrides[key.strip()] = parse_cli_value(key.strip(), value)
    return overrides


def train_with_progress(config: RunConfig, *, resume_run: Any = None, json_events: bool = False) -> int:
    """Run the engine with a terminal progress bar (or a JSON event stream) and Ctrl-C as Stop."""
    from desktop_ft.core.engine import train

    stop = threading.Event()
    _install_stop_handlers(stop)
    show = _JsonPrinter() if json_events else _ProgressPrinter()
    try:
        outcome = train(config, run=resume_run, on_event=show, stop=stop, resume=resume_run is not None)
    finally:
        show.close()
    if outcome.state == "finished":
        print(f"finished: adapter saved to {outcome.adapter_dir}", file=sys.stderr)
        return 0
    if outcome.error:  # stopped by the run itself (a full disk), not by the user
        print(f"error: {outcome.error}", file=sys.stderr)
    print(f"{outcome.state} at step {outcome.step}; continue with: desktop-ft train --resume "
          f"{outcome.run_dir}", file=sys.stderr)
    return 1 if outcome.error else 0


def _install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM and the first Ctrl-C ask for a clean stop (checkpoint saved); a second Ctrl-C aborts."""

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping after this step and saving a checkpoint… (Ctrl-C again to abort)", file=sys.stderr)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)


class _JsonPrinter:
    """One JSON object per line on stdout, flushed: the window's worker reads this stream."""

    def __call__(self, event: Event) -> None:
        sys.stdout.write(json.dumps(to_dict(event)) + "\n")
        sys.stdout.flush()

    def close(self) -> None:
        pass


class _ProgressPrinter:
    """A tqdm bar with loss, lr and tokens/s; stage messages and eval results printed above it."""

    def __init__(self) -> None:
        self.bar: Any = None

    def __call__(self, event: Event) -> None:
        from tqdm import tqdm

        if isinstance(event, Progress):
            self._write(f"[{event.stage}] {event.message}")
        elif isinstance(event, StepLogged):
            if self.bar is None:
                self.bar = tqdm(total=event.max_steps, unit="step", dynamic_ncols=True, file=sys.stderr)
            self.bar.total = event.max_steps
            self.bar.n = event.step
            postfix = {"loss": f"{event.loss:.4f}"}
            if event.learning_rate is not None:
                postfix["lr"] = f"{event.learning_rate:.2e}"
            if event.tokens_per_second:
                postfix["tok/s"] = f"{event.tokens_per_second:.0f}"
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.refresh()
        elif isinstance(event, EvalLogged):
            self._write(f"[eval] step {event.step}: eval loss {event.eval_loss:.4f}")
        elif isinstance(event, RunFinished) and event.error:
            self._write(f"[failed] {event.error}")

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
