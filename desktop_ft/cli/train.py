"""``desktop-ft train``: run a fine-tune from a config file and/or flags; flags override the file."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

from desktop_ft.core import distributed
from desktop_ft.core.config import (RunConfig, all_dotted_keys, field_info, load_config, parse_cli_value,
                                    write_text_atomic)
from desktop_ft.core.errors import ConfigError, UserError
from desktop_ft.core.events import Event, Progress, RunFinished, StepLogged, EvalLogged, event_from_dict, to_dict
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
    # the distributed section: the same config.yaml on 1 or N processes, these flags choose
    "nproc_per_node": "distributed.nproc_per_node",
    "nnodes": "distributed.nnodes",
    "node_rank": "distributed.node_rank",
    "master_addr": "distributed.master_addr",
    "master_port": "distributed.master_port",
    "rdzv_endpoint": "distributed.rdzv_endpoint",
    "launcher": "distributed.launcher",
    "strategy": "distributed.strategy",
    "distributed_config": "distributed.config_file",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune a model (headless twin of the window's Train step)",
                       description="Fine-tune a model. CONFIG is a config.yaml (e.g. a run folder's); "
                       "flags and --set override it.")
    p.add_argument("config", nargs="?", help="a config.yaml file (optional)")
    for flag, key in SHORTCUTS.items():
        info = field_info(key)
        p.add_argument(f"--{flag.replace('_', '-')}", dest=flag, default=None, metavar=flag.upper().split("_")[0],
                       choices=info.metadata.get("choices"), help=info.metadata["help"])
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
    p.add_argument("--dry-run", action="store_true", help="print the exact launch command(s) and the resolved "
                   "config, and start nothing")
    p.add_argument("--slurm", metavar="FILE", help="write an sbatch script for --nnodes x --nproc-per-node "
                   "(one srun per node, rendezvous on the first node) to FILE, and start nothing")
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
        defaults = RunConfig()
        for key in all_dotted_keys():
            print(f"{key} (default {defaults.get(key)!r}): {field_info(key).metadata['help']}")
        return 0
    if args.list_methods:
        _print_methods()
        return 0
    config, resume_run = build_config(args)
    if args.dry_run or args.slurm or (distributed.needs_launcher(config) and not distributed.in_launched_process()):
        return launch(config, args, resume_run)
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


# -- several processes: re-execute through torchrun / accelerate launch ---------------------------

#: flags of ours that the launched processes must not see again (value-taking ones first)
_LAUNCH_ONLY = {"--slurm": True, "--dry-run": False, "--json-events": False}


def child_args(argv: list[str], out_dir: str | None) -> list[str]:
    """``train …`` as the launched processes get it: the user's own arguments, minus --dry-run /
    --slurm, plus the run folder every rank must name, and --json-events (this command follows them)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name, eq, _ = arg.partition("=")
        if name in _LAUNCH_ONLY:
            skip = _LAUNCH_ONLY[name] and not eq
            continue
        out.append(arg)
    if out_dir is not None:
        out += ["--output-dir", out_dir]
    return out + ["--json-events"]


def launch(config: RunConfig, args: argparse.Namespace, resume_run: Any) -> int:
    """Check, then print (--dry-run), write (--slurm) or run the launcher and follow its processes."""
    from desktop_ft.core.config import validate
    from desktop_ft.core.runs import new_run_path

    validate(config)
    distributed.check_config(config, launching=not args.slurm)
    argv = list(getattr(args, "argv", None) or ["train"])
    if args.slurm:
        if not config.output.output_dir and resume_run is None:
            raise ConfigError("a SLURM job needs 'output.output_dir' on storage every node shares",
                              field="output.output_dir", hint="Pass --output-dir /shared/path/run-name.")
        script = distributed.slurm_script(config, child_args(argv, None)[:-1], job_name=Path(args.slurm).stem)
        write_text_atomic(Path(args.slurm), script)
        os.chmod(args.slurm, 0o755)
        print(f"wrote {args.slurm}: {config.distributed.nnodes} node(s) x {config.distributed.nproc_per_node} "
              f"process(es), strategy {config.distributed.strategy}; submit it with: sbatch {args.slurm}",
              file=sys.stderr)
        return 0
    out_dir = None
    if resume_run is None and not config.output.output_dir:
        out_dir = str(new_run_path(config))  # every rank (and node) must name the same folder
        config = config.replace({"output.output_dir": out_dir})
    single = not (distributed.needs_launcher(config) and not distributed.in_launched_process())
    if single:
        commands = [[sys.executable, "-m", "desktop_ft", *child_args(argv, out_dir)[:-1]]]
    else:
        # only accelerate's command depends on the GPUs here (--cpu); torchrun's never loads torch in this process
        cpu = distributed.launcher(config) == "accelerate" and _cuda_devices() == 0
        commands = distributed.launch_commands(config, child_args(argv, out_dir), cpu=cpu)
    if args.dry_run:
        print(dry_run_text(config, commands))
        return 0
    distributed.check_machine(config, cuda_devices=_cuda_devices())
    from desktop_ft.core.models import resolve_model

    # once, here: N processes downloading or converting into the same cache would race
    resolve_model(config.model.name, revision=config.model.revision)
    run_dir = Path(resume_run.path if resume_run is not None else config.output.output_dir).expanduser()
    return follow(commands[config.distributed.node_rank], run_dir, config, json_events=args.json_events,
                  write_status=config.distributed.node_rank == 0)


def _cuda_devices() -> int:
    import torch

    return torch.cuda.device_count()


def dry_run_text(config: RunConfig, commands: list[list[str]]) -> str:
    d = config.distributed
    lines = [f"# {distributed.world_size(config)} process(es): {d.nnodes} node(s) x {d.nproc_per_node}, "
             f"strategy {d.strategy} ({distributed.STRATEGIES[d.strategy].sentence}), "
             f"launcher {distributed.launcher(config)}"]
    for rank, cmd in enumerate(commands):
        if len(commands) > 1:
            lines.append(f"# node {rank}:")
        lines.append(distributed.shell_line(cmd))
    strategy_file = distributed.strategy_file(config)
    if strategy_file is not None:
        lines.append(f"# strategy config: {strategy_file}")
    lines.append("# resolved config:")
    lines.append(yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True).rstrip())
    return "\n".join(lines)


def follow(command: list[str], run_dir: Path, config: RunConfig, *, json_events: bool, write_status: bool) -> int:
    """Run the launcher, show its ranks' events, forward Stop to every process, and make status.json
    say how the run ended even when rank 0 could not (it was killed because another rank failed)."""
    import subprocess

    from desktop_ft.core.runs import FAILED, FINISHED, RUNNING, STOPPED, RunFolder

    env = dict(os.environ, **{distributed.LAUNCHER_ENV: distributed.launcher(config)})
    # a session of its own: the terminal's Ctrl-C reaches this process only, which stops the ranks cleanly
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, text=True,
                            bufsize=1, start_new_session=True)
    show: Any = _JsonPrinter() if json_events else _ProgressPrinter()
    stopping = threading.Event()
    previous = _forward_stop(proc, stopping)
    failures: list[RunFinished] = []
    finished: RunFinished | None = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                event = event_from_dict(json.loads(line))
            except (ValueError, KeyError, TypeError):
                sys.stderr.write(line)  # a library's print on stdout: show it, it is not ours
                continue
            if isinstance(event, RunFinished):
                if event.state == FAILED:
                    failures.append(event)
                if event.rank != 0:
                    continue  # the run's own outcome comes from rank 0 (or from here, below)
                finished = event
            show(event)
        rc = proc.wait()
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        show.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    run = RunFolder(run_dir)
    status = run.read_status()
    # what each rank said, different sentences only, ranks > 0 first: when rank 0 fails too it is
    # often because a peer went away (a closed connection), and the peer's sentence is the cause
    said: dict[str, int] = {}
    for f in sorted(failures, key=lambda f: f.rank == 0):
        said.setdefault(f.error or "", f.rank)
    rank0_alone = list(said.values()) == [0]
    if (write_status and status.state not in (FINISHED, STOPPED) and not rank0_alone
            and (said or status.state == RUNNING or rc)):
        status.state = FAILED
        if said:
            status.error = "; ".join(f"rank {rank}: {error}" for error, rank in said.items())
        else:
            status.error = (f"a training process ended without saying why (the launcher exited with {rc}); "
                            "resume continues from the last checkpoint.")
        run.write_status(status)
        finished = RunFinished(FAILED, status.step, error=status.error, run_dir=str(run_dir))
        if json_events:
            show(finished)
    if finished is None or finished.state == FAILED:
        error = finished.error if finished else status.error
        print(f"error: {error}", file=sys.stderr)
        print(f"continue with: desktop-ft train --resume {run_dir}", file=sys.stderr)
        return 1
    _say_outcome(finished)
    return 1 if finished.error else 0


def _forward_stop(proc: Any, stopping: threading.Event) -> dict[int, Any]:
    """SIGTERM / the first Ctrl-C: SIGINT to every training process (their Stop), which agree to stop
    after the same step and save one checkpoint. A second Ctrl-C ends them at once.

    SIGINT, not SIGTERM: the launcher itself ends a group with SIGTERM when one rank fails, and a
    process told that must end at once, not wait in a collective for a peer that is gone."""
    import psutil

    def on_signal(signum: int, _frame: Any) -> None:
        if stopping.is_set():
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        stopping.set()
        print("\nstopping every process after this step and saving a checkpoint… (Ctrl-C again to abort)",
              file=sys.stderr)
        try:  # the launcher's own children are the ranks (torchrun and accelerate launch alike)
            workers = [w for agent in psutil.Process(proc.pid).children() for w in agent.children()]
            workers = workers or psutil.Process(proc.pid).children()
        except psutil.Error:
            workers = []
        if not workers:
            _kill_group(proc)  # nothing started training yet: nothing to save
        for worker in workers:
            try:
                worker.send_signal(signal.SIGINT)
            except psutil.Error:
                pass

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    return previous


def _kill_group(proc: Any) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass


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
    if distributed.process_rank() == 0 and not (json_events and distributed.in_launched_process()):
        _say_outcome(outcome)  # under a launcher, the desktop-ft train that started it says it
    return 1 if outcome.error else 0


def _say_outcome(outcome: RunFinished) -> None:
    if outcome.state == "finished":
        print(f"finished: {'adapter' if outcome.adapter_dir else 'model'} saved to "
              f"{outcome.adapter_dir or outcome.model_dir}", file=sys.stderr)
        return
    if outcome.error:  # stopped by the run itself (a full disk), not by the user
        print(f"error: {outcome.error}", file=sys.stderr)
    print(f"{outcome.state} at step {outcome.step}; continue with: desktop-ft train --resume "
          f"{outcome.run_dir}", file=sys.stderr)


def _install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM and the first Ctrl-C ask for a clean stop (checkpoint saved); a second Ctrl-C aborts.

    In a process a launcher started, only SIGINT is Stop (the launching desktop-ft train sends it to
    every rank); SIGTERM keeps its default, ending the process at once, which is how torchrun ends
    the other ranks when one fails."""
    launched = distributed.in_launched_process()

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        if distributed.process_rank() == 0:
            print("\nstopping after this step and saving a checkpoint… (Ctrl-C again to abort)", file=sys.stderr)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_signal)
        if not launched:
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
