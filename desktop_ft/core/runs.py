"""The run folder: the contract every other part of Desktop FT reads.

::

    RUN_DIR/
      config.yaml      the full resolved RunConfig; `desktop-ft train RUN_DIR/config.yaml` reruns it
      metrics.jsonl    one JSON object per logged event, appended and flushed line by line
      status.json      state, step, max_steps, error, peak memory, times; replaced atomically
      adapter/         the trained peft adapter (PeftModel.from_pretrained loads it)
      model/           instead of adapter/ after full fine-tuning: the whole model and tokenizer
      checkpoints/     checkpoint-N folders that `--resume` continues from
      train.log        the human-readable log

Everything is written so that a crash, a Stop or a ``kill -9`` at any moment leaves a folder that
can be reopened: JSON lines are flushed one by one, status is replaced atomically, checkpoints are
the Trainer's own.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from desktop_ft.core.config import RunConfig, load_config, save_config, write_text_atomic
from desktop_ft.core.errors import RunError, UserError

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
    final_loss: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunStatus:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


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
        save_config(config, self.config_path)

    def read_config(self) -> RunConfig:
        return load_config(self.config_path)

    # status
    def write_status(self, status: RunStatus) -> None:
        status.updated_at = now_iso()
        write_text_atomic(self.status_path, json.dumps(asdict(status), indent=2) + "\n")

    def read_status(self) -> RunStatus:
        """The run's status; a 'running' run whose process is gone reads as 'failed' (it was killed)."""
        try:
            data = json.loads(self.status_path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, found {type(data).__name__}")
            status = RunStatus.from_dict(data)
        except FileNotFoundError:
            return RunStatus(state=FAILED, error="status.json is missing; the run never started properly.")
        except (ValueError, OSError) as exc:  # bad JSON, bad UTF-8, not an object, unreadable file
            return RunStatus(state=FAILED, error=f"status.json is unreadable ({exc}).")
        if status.state == RUNNING and status.pid and not _pid_alive(status.pid):
            status.state = FAILED
            status.error = ("The training process ended without saying why (killed, crashed or out of "
                            "memory). Resume continues from the last checkpoint.")
        return status

    # metrics
    def append_metric(self, record: dict[str, Any]) -> None:
        """Append one JSON line and flush it, so a crash loses at most the line being written."""
        if self._metrics_fh is None:
            self.path.mkdir(parents=True, exist_ok=True)
            self._metrics_fh = open(self.metrics_path, "a", encoding="utf-8")
        self._metrics_fh.write(json.dumps(record, allow_nan=True) + "\n")
        self._metrics_fh.flush()

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
        kept = [r for r in self.read_metrics() if int(r.get("step", 0)) <= step]
        write_text_atomic(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    # checkpoints
    def checkpoints(self) -> list[Path]:
        """Checkpoint folders, oldest first."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = [p for p in self.checkpoints_dir.iterdir() if re.fullmatch(r"checkpoint-\d+", p.name) and p.is_dir()]
        return sorted(found, key=lambda p: int(p.name.split("-")[1]))

    def last_checkpoint(self) -> Path | None:
        """The newest checkpoint that was written completely (it has trainer_state.json)."""
        for ckpt in reversed(self.checkpoints()):
            if (ckpt / "trainer_state.json").exists():
                return ckpt
        return None

    def log(self, line: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%H:%M:%S')} {line}\n")


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    try:
        fh = open(path, encoding="utf-8")
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


def new_run_folder(config: RunConfig, runs_root: Path | None = None) -> RunFolder:
    """A fresh folder for ``config``: its ``output.output_dir`` or a new dated folder under the runs root."""
    if config.output.output_dir:
        path = Path(config.output.output_dir).expanduser()
        if path.exists() and any(path.iterdir()) and (path / "status.json").exists():
            state = RunFolder(path).read_status().state
            raise UserError(f"already holds a run ({state})", path=path,
                            hint="Choose another --output-dir, or continue it with --resume.")
        path.mkdir(parents=True, exist_ok=True)
        return RunFolder(path)
    root = Path(runs_root) if runs_root else default_runs_root()
    root.mkdir(parents=True, exist_ok=True)
    name = _slug(config.output.run_name or _default_name(config))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = root / f"{stamp}-{name}"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{stamp}-{name}-{n}"
    path.mkdir(parents=True)
    return RunFolder(path)


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


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    import psutil

    try:
        return psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except Exception:
        return False


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
