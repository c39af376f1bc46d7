"""The run folder: the contract every other part of Desktop FT reads.

::

    RUN_DIR/
      config.yaml      the full resolved RunConfig; `desktop-ft train RUN_DIR/config.yaml` reruns it
      metrics.jsonl    the event log: ``events.to_dict(event)`` + ``time`` per line, appended and flushed
      status.json      state, step, max_steps, error, peak memory, times; replaced atomically
      adapter/         the trained peft adapter (PeftModel.from_pretrained loads it)
      model/           instead of adapter/ after full fine-tuning: the whole model and tokenizer
      checkpoints/     checkpoint-N folders that `--resume` continues from
      train.log        the human-readable log
      .lock            held (an OS file lock) by the one process training this run

Everything is written so that a crash, a Stop or a ``kill -9`` at any moment leaves a folder that
can be reopened: JSON lines are flushed one by one, status is replaced atomically, and a checkpoint
counts only once its completion marker (written last, after fsync) is there or, for a checkpoint
without one, once its files pass a content check. Only one process trains a run at a time: it
holds ``.lock``, which the kernel releases when that process dies, however it dies.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import shutil
import sys
import time
import typing
import zipfile
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from desktop_ft.core.config import (
    RunConfig,
    load_config,
    save_config,
    write_text_atomic,
)
from desktop_ft.core.errors import RunError, UserError
from desktop_ft.core.events import Event, event_from_dict, to_dict
from desktop_ft.core.scan import open_for_scan

RUNNING, FINISHED, STOPPED, FAILED = "running", "finished", "stopped", "failed"
STATES = (RUNNING, FINISHED, STOPPED, FAILED)


def default_runs_root() -> Path:
    """Where runs live unless the user says otherwise (``DESKTOP_FT_RUNS`` overrides)."""
    env = os.environ.get("DESKTOP_FT_RUNS")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("desktop-ft", appauthor=False)) / "runs"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunStatus:
    """The content of ``status.json``."""

    state: str = RUNNING
    step: int = 0
    max_steps: int = 0
    error: str | None = None
    peak_memory_bytes: int | None = None
    estimated_memory_bytes: int | None = None
    device: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    updated_at: str | None = None
    pid: int | None = None
    #: the process's start time (psutil ``create_time``): a pid alone is reused by the OS
    pid_started: float | None = None
    final_loss: float | None = None
    world_size: int = 1  # training processes (all nodes); rank 0 alone writes the run folder
    launcher: str | None = None  # 'torchrun' or 'accelerate' when launched; None for one plain process

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunStatus:
        """The status in ``data``; a ``ValueError`` naming the field when a value has the wrong type
        (a hand-edited or foreign file), so a reader reports it instead of failing later on it."""
        hints = _status_hints()
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            kinds = _json_types(hints[f.name])
            if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
                raise ValueError(f"field '{f.name}' has {value!r}, which is not a {kinds[0].__name__}")
            values[f.name] = value
        return cls(**values)




@functools.cache
def _status_hints() -> dict[str, Any]:
    """RunStatus's resolved field types (resolving the string annotations was most of reading a status, and
    the Runs page reads hundreds)."""
    return typing.get_type_hints(RunStatus)


def _json_types(hint: Any) -> tuple[type, ...]:
    """The Python types a JSON value may have for a field annotated ``hint`` (``float | None`` →
    float or int: JSON writes 1.0 as 1); read off the annotation so no table can drift from it."""
    kinds = tuple(t for t in typing.get_args(hint) if t is not type(None)) or (hint,)
    return (*kinds, int) if float in kinds else kinds


@dataclass
class RunFolder:
    """Paths and readers/writers of one run folder."""

    path: Path
    _metrics_fh: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    # paths
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def status_path(self) -> Path:
        return self.path / "status.json"

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    @property
    def model_dir(self) -> Path:
        """The whole trained model (full fine-tuning saves this instead of an adapter)."""
        return self.path / "model"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def log_path(self) -> Path:
        return self.path / "train.log"

    # config
    def write_config(self, config: RunConfig) -> None:
        """Record the config this run trains with (the only writer of ``config.yaml``): at creation,
        when ``task: auto`` is resolved, and when a resume changes settings. The built-in sample
        dataset is spelled out as a path, so the folder reruns anywhere."""
        if not config.data.path:
            from desktop_ft import resources

            config = config.replace({"data.path": str(resources.sample_dataset())})
        save_config(config, self.config_path)

    def read_config(self) -> RunConfig:
        return load_config(self.config_path)

    @property
    def lock_path(self) -> Path:
        return self.path / ".lock"

    # status
    def write_status(self, status: RunStatus) -> None:
        status.updated_at = now_iso()
        write_text_atomic(self.status_path, json.dumps(asdict(status), indent=2) + "\n")

    def read_status(self) -> RunStatus:
        """The run's status; a 'running' run whose process is gone reads as 'failed' (it was killed).

        "Gone" means: no process with the recorded pid *and* start time (a pid is reused by the OS)
        and nobody holds the run's lock. A missing or torn file is read again once, then reported.
        """
        status = None
        problem = ""
        for attempt in range(3):
            try:
                data = json.loads(self.status_path.read_text(encoding="utf-8"))
                if not isinstance(data, dict):
                    raise ValueError(f"expected a JSON object, found {type(data).__name__}")
                status = RunStatus.from_dict(data)
                break
            except FileNotFoundError:
                problem = "status.json is missing; the run never started properly."
            except (ValueError, TypeError, OSError) as exc:  # torn, bad UTF-8, not an object, locked (Windows)
                problem = f"status.json is unreadable ({exc})."
            time.sleep(0.02 * (attempt + 1))
        if status is None:
            if self.is_locked():
                return RunStatus(state=RUNNING)
            return RunStatus(state=FAILED, error=problem)
        if status.state == RUNNING and not self.is_live(status):
            status.state = FAILED
            status.error = ("The training process ended without saying why (killed, crashed or out of "
                            "memory). Resume continues from the last checkpoint.")
        return status

    def is_live(self, status: RunStatus) -> bool:
        """Whether the process ``status`` names is still the one training this run."""
        if status.pid and status.pid_started is not None:
            return process_alive(status.pid, status.pid_started)
        return self.is_locked()  # an older status.json without a start time: only the lock can tell

    def live_pid(self) -> int | None:
        """The pid of the process training this run now, or None (safe to signal: start time checked)."""
        status = self.read_status()
        if status.state != RUNNING or not status.pid:
            return None
        if status.pid_started is None:  # an older status.json: trust the pid only while the lock is held
            return status.pid if self.is_locked() else None
        return status.pid if process_alive(status.pid, status.pid_started) else None

    # the lock
    def lock(self) -> RunLock:
        """Take the run's lock for this process, or raise ``RunBusyError`` naming the process that has it."""
        lock = RunLock(self.lock_path)
        if not lock.acquire():
            raise RunBusyError(self._busy_message(), path=self.path,
                               hint="Follow it from the Runs page, or stop it before resuming.")
        return lock

    def is_locked(self) -> bool:
        """Whether some process (this one included) holds the run's lock right now."""
        if not self.lock_path.exists():
            return False
        probe = RunLock(self.lock_path)
        if probe.acquire():
            probe.release()
            return False
        return True

    def _busy_message(self) -> str:
        try:
            status = RunStatus.from_dict(json.loads(self.status_path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            status = RunStatus()
        who = f"process {status.pid}" if status.pid else "another process"
        if status.pid:
            try:
                import psutil

                proc = psutil.Process(status.pid)
                who += f" ({proc.name()}, started {datetime.fromtimestamp(proc.create_time()):%H:%M:%S})"
            except Exception:  # the holder may have just ended; the pid is still the best name
                pass
        return f"is being trained right now by {who}"

    # metrics
    def append_metric(self, record: dict[str, Any]) -> None:
        """Append one JSON line and flush it, so a crash loses at most the line being written."""
        if self._metrics_fh is None:
            self.path.mkdir(parents=True, exist_ok=True)
            self._metrics_fh = open(self.metrics_path, "a", encoding="utf-8")
        self._metrics_fh.write(json.dumps(record, allow_nan=True) + "\n")
        self._metrics_fh.flush()

    def append_event(self, event: Event) -> None:
        """The run's one event log: ``events.to_dict(event)`` plus the time, one line per event."""
        self.append_metric({**to_dict(event), "time": time.time()})

    def read_events(self) -> list[Event]:
        """Every event of the log, in order (lines of an unknown kind skipped)."""
        return list(self.iter_events())

    def iter_events(self) -> Iterator[Event]:
        """The log's events one by one, without holding the file in memory."""
        for record in self.iter_metrics():
            try:
                yield event_from_dict(record)
            except (KeyError, TypeError, ValueError):
                continue

    def close(self) -> None:
        if self._metrics_fh is not None:
            self._metrics_fh.close()
            self._metrics_fh = None

    def read_metrics(self) -> list[dict[str, Any]]:
        """All complete metric lines; a torn last line (from a kill mid-write) is skipped."""
        return list(self.iter_metrics())

    def iter_metrics(self) -> Iterator[dict[str, Any]]:
        """The metric lines one by one, without holding the file in memory."""
        return iter_jsonl(self.metrics_path)

    def truncate_metrics_after(self, step: int) -> None:
        """Drop records past ``step`` (used on resume, so a resumed run's curve has no doubled steps)."""
        if not self.metrics_path.exists():
            return
        self.close()
        kept = (json.dumps(r) + "\n" for r in self.iter_metrics() if _record_step(r) <= step)
        write_text_atomic(self.metrics_path, kept)  # a record at a time: a 50,000-step log is never in memory

    def set_metrics_aside(self) -> Path | None:
        """Keep the metrics of an attempt that left no checkpoint under a new name; the next attempt starts afresh."""
        if not self.metrics_path.exists() or self.metrics_path.stat().st_size == 0:
            return None
        self.close()
        n = 1
        while (aside := self.path / f"metrics.attempt-{n}.jsonl").exists():
            n += 1
        os.replace(self.metrics_path, aside)
        return aside

    # checkpoints
    def checkpoints(self) -> list[Path]:
        """Checkpoint folders, oldest first (complete or not; see ``usable_checkpoint``)."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = [p for p in self.checkpoints_dir.iterdir() if re.fullmatch(r"checkpoint-\d+", p.name) and p.is_dir()]
        return sorted(found, key=lambda p: int(p.name.split("-")[1]))

    def usable_checkpoint(self) -> tuple[Path | None, list[tuple[Path, str]]]:
        """The newest checkpoint that passes ``checkpoint_problem``, and the newer ones skipped with why."""
        skipped: list[tuple[Path, str]] = []
        for ckpt in reversed(self.checkpoints()):
            problem = checkpoint_problem(ckpt)
            if problem is None:
                return ckpt, skipped
            skipped.append((ckpt, problem))
        return None, skipped

    def last_checkpoint(self) -> Path | None:
        """The newest checkpoint that was written completely."""
        return self.usable_checkpoint()[0]

    def prune_checkpoints(self, keep: int | None) -> None:
        """Keep the newest ``keep`` complete checkpoints (None or 0: all); a checkpoint is only ever
        deleted once a newer one is complete, so a crash at any moment leaves one to resume from."""
        if not keep or keep < 1:
            return
        complete = [c for c in self.checkpoints() if (c / CHECKPOINT_MARKER).exists()]
        for old in complete[:-keep]:
            shutil.rmtree(old, ignore_errors=True)

    def log(self, line: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%H:%M:%S')} {line}\n")


class RunBusyError(UserError):
    """Another live process is training this run."""


class RunLock:
    """An exclusive OS lock on one file, held by the training process for the run's life.

    ``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows: the kernel drops it when the process
    dies, so a ``kill -9`` leaves no stale lock (a pid file would). Plain code rather than the
    ``filelock`` package: we need exactly "try once, never wait", whatever instance asks, and
    filelock 4 adds in-process reentrancy and deadlock detection we must not trip over.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another holder has it."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if sys.platform == "win32":
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if sys.platform == "win32":
                import msvcrt

                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# -- checkpoints -----------------------------------------------------------------------------------

#: written last into a checkpoint folder, after every other file is fsynced: "this one is complete"
CHECKPOINT_MARKER = "desktop-ft-complete.json"


def mark_checkpoint_complete(ckpt: Path) -> None:
    """Flush every file of ``ckpt`` to disk, then write the marker listing them with their sizes."""
    files = {}
    for path in sorted(ckpt.rglob("*")):
        if path.is_file() and path.name != CHECKPOINT_MARKER:
            _fsync_file(path)
            files[path.relative_to(ckpt).as_posix()] = path.stat().st_size
    write_text_atomic(ckpt / CHECKPOINT_MARKER, json.dumps({"step": _ckpt_step(ckpt), "files": files}) + "\n")
    _fsync_dir(ckpt)


def checkpoint_problem(ckpt: Path) -> str | None:
    """Why ``ckpt`` cannot be resumed from, or None when it can.

    With a marker, every file it lists must be there at its recorded size. Without one (a run from
    before markers, or a kill between the save and the marker), the content is checked: the
    Trainer's state names this step, the weights' and optimizer's files are whole.
    """
    marker = ckpt / CHECKPOINT_MARKER
    if marker.exists():
        try:
            listed = json.loads(marker.read_text(encoding="utf-8"))["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return f"its completion marker {CHECKPOINT_MARKER} is unreadable"
        for name, size in listed.items():
            path = ckpt / name
            if not path.is_file():
                return f"{name} is missing"
            if path.stat().st_size != size:
                return f"{name} is {path.stat().st_size} bytes, not the {size} it was saved with"
        return None
    state_path = ckpt / "trainer_state.json"
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "trainer_state.json is missing (the save did not finish)"
    except (OSError, ValueError) as exc:
        return f"trainer_state.json is unreadable ({type(exc).__name__})"
    if not isinstance(state, dict) or state.get("global_step") != _ckpt_step(ckpt):
        return "trainer_state.json does not describe this step"
    weights = [p for p in ckpt.iterdir() if p.suffix in (".safetensors", ".bin") and p.name != "training_args.bin"]
    if not weights:
        return "it holds no weights"
    for path in weights:
        problem = _safetensors_problem(path) if path.suffix == ".safetensors" else _zip_problem(path)
        if problem:
            return f"{path.name} {problem}"
    for name in ("optimizer.pt", "scheduler.pt"):
        problem = _zip_problem(ckpt / name)
        if problem:
            return f"{name} {problem}"
    return None


def _ckpt_step(ckpt: Path) -> int:
    return int(ckpt.name.split("-")[1])


def _safetensors_problem(path: Path) -> str | None:
    """A safetensors file is whole when its header parses and its size is header + the data it names."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if n <= 0 or 8 + n > size:
                return "is cut short"
            header = json.loads(fh.read(n))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError):
        return "is unreadable"
    return None if size == 8 + n + end else "is cut short"


def _zip_problem(path: Path) -> str | None:
    """torch.save writes a zip archive; a cut-short one has no central directory."""
    if not path.exists():
        return "is missing"
    try:
        with zipfile.ZipFile(path) as zf:
            zf.infolist()
    except (OSError, zipfile.BadZipFile):
        return "is cut short or unreadable"
    return None


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    if sys.platform == "win32":  # directories cannot be opened for fsync there; NTFS journals them
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def folder_size(path: Path) -> int:
    """Bytes of every file under ``path`` (0 when it is not there)."""
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the disk running out of space.

    ``open``/``write`` raise ``OSError(ENOSPC)``; torch.save and safetensors wrap it in their own
    errors, so their messages are read too.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
            return True
        text = str(seen).lower()
        if "no space left" in text or "os error 28" in text or "file write failed" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _record_step(record: dict[str, Any]) -> int:
    try:
        return int(record.get("step") or 0)
    except (TypeError, ValueError):
        return 0


# -- live-ness ---------------------------------------------------------------------------------------

def process_start_time(pid: int | None = None) -> float | None:
    """When process ``pid`` (default: this one) started, as psutil reports it; None if it is gone."""
    import psutil

    try:
        return psutil.Process(pid or os.getpid()).create_time()
    except psutil.Error:
        return None


def process_alive(pid: int | None, started: float | None) -> bool:
    """Whether process ``pid`` runs *and* is the one that started at ``started`` (a reused pid is not)."""
    if not pid or started is None:
        return False
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(proc.create_time() - started) < 1.0
    except psutil.Error:
        return False


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    try:
        fh = open_for_scan(path, "r", encoding="utf-8")
    except FileNotFoundError:
        return
    with fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield record


def create_run(config: RunConfig, runs_root: Path | None = None, *, prepare: bool = False) -> RunFolder:
    """The one place a run folder is made and its ``config.yaml`` first written.

    The folder is ``output.output_dir`` when set (refused if it already holds a run, a file, or
    cannot be written), else a new dated folder under the runs root. A folder that holds only a
    ``config.yaml`` prepared for it (the window writes one, then starts the training process on
    it) is used as it is. ``prepare=True`` (the window) records the folder as ``output.output_dir``,
    so ``desktop-ft train RUN/config.yaml`` trains into exactly this folder.
    """
    if config.output.output_dir:
        path = Path(config.output.output_dir).expanduser()
        _check_output_dir(path)
        run = RunFolder(path)
        if run.config_path.exists() and not run.status_path.exists() and _points_at(run):
            return run  # prepared by create_run a moment ago (the window), not yet started
    else:
        root = Path(runs_root) if runs_root else default_runs_root()
        _check_output_dir(root)
        path = new_run_path(config, root)
        run = RunFolder(path)
    if prepare:
        config = config.replace({"output.output_dir": str(run.path)})
    try:  # the checks above cannot see everything (root bypasses permissions, a read-only mount, ACLs)
        path.mkdir(parents=True, exist_ok=True)
        run.write_config(config)
    except OSError as exc:
        raise RunError(f"the run folder cannot be written ({exc.strerror or exc})", path=path,
                       field="output.output_dir",
                       hint="Pick a folder you can write to (--output-dir), or free some space.") from None
    return run


def new_run_path(config: RunConfig, runs_root: Path | None = None) -> Path:
    """The dated folder a new run of ``config`` gets under the runs root (not created yet).

    A launcher picks it before starting its processes, so that every rank names the same folder.
    """
    root = Path(runs_root) if runs_root else default_runs_root()
    root.mkdir(parents=True, exist_ok=True)
    name = _slug(config.output.run_name or _default_name(config))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = root / f"{stamp}-{name}"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{stamp}-{name}-{n}"
    return path


def _points_at(run: RunFolder) -> bool:
    try:
        recorded = run.read_config().output.output_dir
    except UserError:
        return False
    return recorded is not None and bool(recorded) and Path(recorded).expanduser().resolve() == run.path.resolve()


def _check_output_dir(path: Path) -> None:
    """An output folder must be a folder we can write, and must not hold another run."""
    if path.exists() and not path.is_dir():
        raise UserError("is a file, not a folder", path=path, field="output.output_dir",
                        hint="Give output.output_dir a folder (it is created if missing).")
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError("cannot be written (permission denied)", path=probe, field="output.output_dir",
                        hint="Choose a folder you can write, e.g. under your home folder.")
    if (path / "status.json").exists():
        state = RunFolder(path).read_status().state
        if state == RUNNING:
            raise RunBusyError(RunFolder(path)._busy_message(), path=path,
                               hint="Follow it from the Runs page, or choose another --output-dir.")
        raise UserError(f"already holds a run ({state})", path=path,
                        hint="Choose another --output-dir, or continue it with --resume.")


def output_dir_from_elsewhere(config_path: Path, config: RunConfig) -> str | None:
    """The ``output.output_dir`` of a config that came with a run folder but points somewhere else.

    A config.yaml beside a run's status/metrics is that run's record; if its output_dir is not that
    folder, the run was made on another machine or in another place, and writing there (someone
    else's path, maybe one of ours that holds other work) is not what opening it means.
    """
    folder = Path(config_path).expanduser().resolve().parent
    recorded = config.output.output_dir
    if not recorded or not any((folder / n).exists() for n in ("status.json", "metrics.jsonl")):
        return None
    if Path(recorded).expanduser().resolve() == folder:
        return None
    return recorded


def list_runs(runs_root: Path | None = None) -> list[RunFolder]:
    """Every run folder under the runs root, newest first."""
    root = Path(runs_root) if runs_root else default_runs_root()
    if not root.is_dir():
        return []
    runs = [RunFolder(p) for p in root.iterdir() if (p / "config.yaml").exists()]
    return sorted(runs, key=lambda r: r.path.stat().st_mtime, reverse=True)


def _default_name(config: RunConfig) -> str:
    model = Path(config.model.name or "default").name
    return f"{model}-{config.method.method}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "run"


# -- what a run holds: its config, its checkpoints, its tuned weights ----------------------------------

@dataclass(frozen=True)
class TunedSource:
    """What the tuned side is: the final adapter, a checkpoint, or a full model folder."""

    path: Path
    kind: str  # "adapter" | "full"
    checkpoint: int | None = None

    @property
    def label(self) -> str:
        return f"checkpoint {self.checkpoint}" if self.checkpoint is not None else "final"


def read_run_config(run_dir: Path) -> RunConfig:
    """The config of the run in ``run_dir``; a ``RunError`` when it is not a run folder."""
    run = RunFolder(run_dir)
    if not run_dir.exists():
        raise RunError("run folder not found", path=run_dir, hint="Check the path.")
    if not run.config_path.exists():
        raise RunError("is not a run folder (no config.yaml)", path=run_dir,
                        hint="Give a folder that 'desktop-ft train' wrote, or a model name for a plain chat.")
    return run.read_config()


def list_checkpoints(run: RunFolder | Path) -> list[int]:
    """Steps of ``checkpoints/checkpoint-N`` folders that hold an adapter or a model, oldest first."""
    run = run if isinstance(run, RunFolder) else RunFolder(Path(run))
    return [int(p.name.split("-")[1]) for p in run.checkpoints() if weights_kind(p) is not None]


def tuned_source(run_dir: Path, checkpoint: int | None) -> TunedSource:
    """Where the tuned weights of a run are: ``adapter/``, or ``checkpoints/checkpoint-N``."""
    run = RunFolder(run_dir)
    available = list_checkpoints(run_dir)
    if checkpoint is not None:
        path = run.checkpoints_dir / f"checkpoint-{checkpoint}"
        kind = weights_kind(path)
        if kind is None:
            listing = ", ".join(map(str, available)) if available else "none"
            raise RunError(f"this run has no checkpoint {checkpoint}", path=run_dir, field="checkpoint",
                            hint=f"Available checkpoints: {listing}.")
        return TunedSource(path, kind, checkpoint)
    final = final_weights(run)
    if final is not None:
        return TunedSource(*final)
    if available:  # still training, or killed before the end: the newest checkpoint is the best we have
        step = available[-1]
        path = run.checkpoints_dir / f"checkpoint-{step}"
        return TunedSource(path, weights_kind(path) or "adapter", step)
    state = run.read_status().state
    raise RunError(f"this run has no adapter yet (it is {state}, with no checkpoint saved)", path=run_dir,
                    hint="Wait for the first checkpoint, resume the run, or chat with the base model "
                         "(--base).")


def final_weights(run: RunFolder | Path) -> tuple[Path, str] | None:
    """``(folder, kind)`` of the run's final result: ``adapter/``, or ``model/`` after full fine-tuning."""
    run = run if isinstance(run, RunFolder) else RunFolder(Path(run))
    for folder in (run.adapter_dir, run.model_dir):
        kind = weights_kind(folder)
        if kind is not None:
            return folder, kind
    return None


def weights_kind(folder: Path) -> str | None:
    """'adapter' or 'full' for a folder holding an adapter or a whole model; None when it holds neither."""
    if (folder / "adapter_config.json").exists() and any(folder.glob("adapter_model.*")):
        return "adapter"
    if (folder / "config.json").exists() and (any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))):
        return "full"
    return None
