"""Questions about the runs on disk: what runs there are, what one holds, how two differ, and
deleting one. Read-only queries over ``runs.RunFolder`` (which owns what a run folder *is* and how
it is written), plus the one guarded delete.

The Runs page and ``desktop-ft runs list|show|diff|delete`` both call these functions, so the
window and the CLI show the same runs, the same columns and the same differences, and refuse the
same deletes. The Chat page and ``desktop-ft chat`` ask ``tuned_choices`` which weights of a run
can be chatted with (the final adapter, a full fine-tune's ``model/``, usable checkpoints).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from desktop_ft.core.errors import RunError, UserError
from desktop_ft.core.runs import (
    RUNNING,
    RunFolder,
    default_runs_root,
    final_weights,
    list_checkpoints,
    list_runs,
    weights_kind,
)


@dataclass(frozen=True)
class TunedChoice:
    """One thing the tuned side of a chat can be: ``checkpoint`` None is the final result."""

    label: str
    checkpoint: int | None
    kind: str  # 'adapter' | 'full'


def tuned_choices(run: RunFolder | Path) -> list[TunedChoice]:
    """What a run can chat with, best first: the final adapter or model, then checkpoints newest first."""
    run = run if isinstance(run, RunFolder) else RunFolder(Path(run))
    out = []
    final = final_weights(run)
    if final is not None:
        out.append(TunedChoice("final adapter" if final[1] == "adapter" else "final model", None, final[1]))
    for step in reversed(list_checkpoints(run)):
        kind = weights_kind(run.checkpoints_dir / f"checkpoint-{step}") or "adapter"
        out.append(TunedChoice(f"step {step}", step, kind))
    return out


# -- one line per run -------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunSummary:
    """What the Runs table shows of one run (and ``desktop-ft runs list --json`` prints)."""

    path: str
    name: str
    state: str
    live: bool
    method: str
    task: str
    model: str
    dataset: str
    step: int
    max_steps: int
    final_loss: float | None
    started_at: str | None
    ended_at: str | None
    duration_seconds: float | None
    peak_memory_bytes: int | None
    estimated_memory_bytes: int | None
    result: str | None  # 'adapter' | 'full' | None (no final weights yet)
    checkpoints: list[int]
    error: str | None
    pid: int | None
    config_error: str | None = None  # config.yaml could not be read (the run is still listed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(run: RunFolder | Path) -> RunSummary:
    """The summary of one run folder; a config.yaml that no longer loads is reported, not raised."""
    run = run if isinstance(run, RunFolder) else RunFolder(Path(run))
    status = run.read_status()
    described, config_error = _described(run)
    final = final_weights(run)
    return RunSummary(
        path=str(run.path), name=described.get("name") or run.path.name,
        state=status.state, live=status.state == RUNNING,
        method=described.get("method", "?"), task=described.get("task", "?"), model=described.get("model", "?"),
        dataset=described.get("dataset", "?"),
        step=status.step, max_steps=status.max_steps, final_loss=status.final_loss,
        started_at=status.started_at, ended_at=status.ended_at or None,
        duration_seconds=_duration(status.started_at, status.ended_at or status.updated_at),
        peak_memory_bytes=status.peak_memory_bytes, estimated_memory_bytes=status.estimated_memory_bytes,
        result=final[1] if final else None, checkpoints=list_checkpoints(run), error=status.error,
        pid=status.pid, config_error=config_error)


#: config.yaml (path, size, mtime) → what a summary shows of it: parsing the YAML is most of listing
#: a run, and a run's config does not change once it started, so a second listing parses none
_DESCRIBED: dict[tuple[str, int, int], tuple[dict[str, str], str | None]] = {}


def _described(run: RunFolder) -> tuple[dict[str, str], str | None]:
    try:
        st = run.config_path.stat()
        key: tuple[str, int, int] | None = (str(run.config_path), st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _DESCRIBED:
        return _DESCRIBED[key]
    try:
        config = run.read_config()
        found: tuple[dict[str, str], str | None] = ({
            "name": config.output.run_name or "", "method": config.method.method, "task": config.method.task,
            "model": config.model.name, "dataset": config.data.path or "sample"}, None)
    except UserError as exc:
        found = ({}, str(exc))
    if key is not None:
        if len(_DESCRIBED) > 10_000:
            _DESCRIBED.clear()
        _DESCRIBED[key] = found
    return found


def list_summaries(root: Path | None = None) -> list[RunSummary]:
    """Every run under ``root`` (default: the runs root), newest first; a folder that cannot be read
    at all (permissions, a broken disk) is listed as 'unreadable' with the reason, never dropped."""
    out = []
    for run in list_runs(root):
        try:
            out.append(summarize(run))
        except OSError as exc:
            out.append(RunSummary(path=str(run.path), name=run.path.name, state="unreadable", live=False,
                                  method="?", task="?", model="?", dataset="?", step=0, max_steps=0,
                                  final_loss=None, started_at=None, ended_at=None, duration_seconds=None,
                                  peak_memory_bytes=None, estimated_memory_bytes=None, result=None, checkpoints=[],
                                  error=f"This run folder cannot be read ({exc}).", pid=None))
    return out


def _duration(start: str | None, end: str | None) -> float | None:
    try:
        if start and end:
            return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return None
    return None


# -- finding a run -----------------------------------------------------------------------------------

def find_run(name_or_path: str | Path, root: Path | None = None) -> RunFolder:
    """A run given as a folder path, or as a folder name under the runs root; anything else raises."""
    given = Path(name_or_path).expanduser()
    root = Path(root) if root else default_runs_root()
    for candidate in (given, root / given):
        if candidate.is_dir() and is_run_folder(candidate):
            return RunFolder(candidate)
    if given.is_dir() or (root / given).is_dir():
        raise RunError("is not a run folder (it has no config.yaml and status.json that Desktop FT wrote)",
                       path=given if given.is_dir() else root / given,
                       hint="Give a folder 'desktop-ft train' made; 'desktop-ft runs list' shows them.")
    names = [run.path.name for run in list_runs(root)]
    import difflib

    close = difflib.get_close_matches(str(name_or_path), names, n=1)
    hint = f"Did you mean '{close[0]}'?" if close else "'desktop-ft runs list' shows the runs."
    raise RunError(f"no run '{name_or_path}' here or under {root}", field="run", hint=hint)


def is_run_folder(path: Path) -> bool:
    """A real folder (not a link) holding a config.yaml that loads and a status.json with a run state."""
    import json

    from desktop_ft.core.runs import STATES

    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return False
    run = RunFolder(path)
    try:
        data = json.loads(run.status_path.read_text(encoding="utf-8"))
        run.read_config()
    except (OSError, ValueError, UserError):
        return False
    return isinstance(data, dict) and data.get("state") in STATES


# -- differences -------------------------------------------------------------------------------------

def flat_config(run: RunFolder | Path) -> dict[str, Any]:
    """The run's config as ``{"training.batch_size": 4, ...}`` (dotted keys, leaves only)."""
    run = run if isinstance(run, RunFolder) else RunFolder(Path(run))
    return _flatten(run.read_config().to_dict())


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and dotted.count(".") < 2 and dotted != "data.columns":
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


#: the outcome of a run, compared beside its config
OUTCOME_KEYS = ("state", "step", "final_loss", "duration_seconds", "peak_memory_bytes")


def config_diff(runs: list[RunFolder | Path]) -> dict[str, list[Any]]:
    """``{key: [value in run 1, value in run 2, ...]}`` for the config keys (and outcome) that differ.

    A key one run's config lacks has None there. One run gives its whole config.
    """
    folders = [r if isinstance(r, RunFolder) else RunFolder(Path(r)) for r in runs]
    flats = []
    for run in folders:
        summary = summarize(run)
        flat = _flatten(run.read_config().to_dict()) if summary.config_error is None else {}
        flat.update({f"outcome.{k}": getattr(summary, k) for k in OUTCOME_KEYS})
        flats.append(flat)
    keys = sorted({k for flat in flats for k in flat})
    rows = {key: [flat.get(key) for flat in flats] for key in keys}
    if len(flats) < 2:
        return rows
    return {key: values for key, values in rows.items() if len({repr(v) for v in values}) > 1}


# -- deleting ----------------------------------------------------------------------------------------

def check_deletable(run: RunFolder | Path) -> RunFolder:
    """The run folder, if deleting it is safe; otherwise a ``RunError`` saying why not."""
    path = Path(run.path if isinstance(run, RunFolder) else run).expanduser()
    if path.is_symlink():
        raise RunError("is a link, not a run folder; nothing was deleted", path=path,
                       hint="Delete the folder it points to by its own path.")
    if not is_run_folder(path):
        raise RunError("is not a run folder (no config.yaml and status.json that Desktop FT wrote); nothing "
                       "was deleted", path=path)
    if (path / ".git").exists():
        raise RunError("holds a git repository, so it is more than a run folder; nothing was deleted", path=path,
                       hint="Remove the run's files by hand if you mean it.")
    folder = RunFolder(path)
    status = folder.read_status()
    if status.state == RUNNING or folder.is_locked():  # the lock: a training process holds it for the run's life
        raise RunError(f"is still training (process {status.pid}); nothing was deleted", path=path,
                       hint="Stop it first (Stop in the window, or Ctrl-C / kill -TERM the process), then delete.")
    return folder


def delete_run(run: RunFolder | Path) -> Path:
    """Delete one run folder and everything in it, after ``check_deletable``; returns its path."""
    folder = check_deletable(run)
    shutil.rmtree(folder.path)
    return folder.path


__all__ = ["RunError", "RunSummary", "TunedChoice", "check_deletable", "config_diff", "delete_run", "find_run",
           "flat_config", "is_run_folder", "list_summaries", "summarize", "tuned_choices"]
