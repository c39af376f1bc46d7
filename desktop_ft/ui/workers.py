"""Work off the GUI thread.

* ``run_async(fn, ...)``: a plain function on Qt's thread pool; its result/error come back to the
  callbacks in the GUI thread (Orange3's ``self.start(run, ...)`` habit).
* ``TrainingProcess``: one training run in a *child process* (``python -m desktop_ft train ...
  --json-events``), followed by a ``QObject`` moved to a ``QThread`` that turns each JSON line into
  an event signal. It reads the run's one event log, ``RUN_DIR/metrics.jsonl`` (the engine writes
  every event there), so the child can keep training after the window closes and be re-attached
  later; its stderr goes to ``RUN_DIR/stderr.log``.
* Stop: SIGTERM on POSIX — the CLI treats it as a clean stop that saves a checkpoint. On Windows
  there is no SIGTERM: ``Popen.terminate()`` ends the process at once, and the run resumes from its
  last saved checkpoint (documented in the README).
* ``RunFollower``: re-attach to a run that is still going (started by an earlier window or by the
  CLI): it tails the same log and watches ``status.json`` and the process (pid *and* start time, so
  a reused pid is never mistaken for the run, nor signalled).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from PySide6.QtCore import QObject, QThread, Signal, Slot

from desktop_ft.core.events import RunFinished, StepLogged, event_from_dict
from desktop_ft.core.selfcmd import desktop_ft_command

if TYPE_CHECKING:
    import subprocess

POLL_S = 0.05  # worker-thread poll interval for new lines (never in the GUI thread)
READ_CHUNK = 1 << 20  # bytes read per poll at most, so one batch of events stays small for the GUI thread
CHILD_NICE = 10  # the training child's CPU priority on POSIX (higher is lower)
#: the longest a busy worker thread keeps the GIL from a GUI thread that asks for it (CPython: 5 ms)
GIL_SWITCH_S = 0.001
#: worker threads beyond one per core: Qt's pool has one per core, so on a 2-core laptop a chat
#: generation and a dataset inspection took both and a quick job (listing the runs, describing a
#: model) waited behind them for minutes; threads are made only when needed and end after 30 s idle
SPARE_WORKERS = 4


def share_the_gil() -> None:
    """Make worker threads hand the GIL to the GUI thread within ``GIL_SWITCH_S``.

    The GUI thread takes the GIL for every Python override Qt calls (pyqtgraph's resize and paint
    handlers, a few hundred in one relayout of the plots), and while a worker computes in Python
    each of those waits up to a switch interval: at CPython's 5 ms, reopening a 50,000-step run
    held the event loop up for over a second with the GUI thread itself mostly idle. At 1 ms the
    worker loses little (a switch costs microseconds) and the window keeps drawing.
    """
    if sys.getswitchinterval() > GIL_SWITCH_S:
        sys.setswitchinterval(GIL_SWITCH_S)


#: the first import of these, made by one worker while another makes it too, can break: each
#: thread takes module locks in its own order, Python breaks the deadlock by handing one of them a
#: half-initialised module, and transformers' lazy module then says e.g. "module 'transformers' has
#: no attribute 'PreTrainedTokenizerBase'" (the Dataset page did, opening while a file was chosen)
ML_STACK = ("transformers", "datasets")
#: transformers' lazily loaded names the window's jobs reach first; resolved in the warm-up too
ML_NAMES = ("AutoConfig", "AutoTokenizer", "PreTrainedTokenizerBase")
_ML_LOCK = threading.Lock()
_ml_ready = False


def import_ml_stack() -> None:
    """Import the ML stack once, one thread at a time; jobs that need it call this first (worker
    thread). A second caller waits for the first, then finds it all in ``sys.modules``."""
    global _ml_ready
    if _ml_ready:
        return
    import importlib

    with _ML_LOCK:
        if not _ml_ready:
            for name in ML_STACK:
                importlib.import_module(name)
            transformers = sys.modules["transformers"]
            for name in ML_NAMES:
                getattr(transformers, name)
            _ml_ready = True


class Job:
    """What ``run_async`` started: one call of a function on Qt's global thread pool."""

    def __init__(self) -> None:
        self.is_running = True


class _Delivery(QObject):
    """Made once, in the GUI thread, and kept: a worker emits ``ready`` with a call to make, and
    Qt queues it to the thread this object lives in (the emitter is another thread)."""

    ready = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.ready.connect(self._call)

    @Slot(object)
    def _call(self, call: Callable[[], None]) -> None:
        call()


_DELIVERY: _Delivery | None = None


def run_async(owner: QObject, fn: Callable[..., Any], *args: Any, on_result: Callable[[Any], None] | None = None,
              on_error: Callable[[BaseException], None] | None = None, ml: bool = False, **kwargs: Any) -> Job:
    """Run ``fn(*args, **kwargs)`` on a worker thread; callbacks run in the GUI thread, and only while
    ``owner`` (the widget that asked) still exists — a page closed meanwhile gets nothing. An error
    with no ``on_error`` is raised in the GUI thread (Qt prints it; tests fail on it). ``ml=True``:
    ``fn`` uses transformers or datasets, imported first by ``import_ml_stack``.

    Qt's thread pool takes the Python callable as it is, so there is no QRunnable of ours whose
    lifetime could go wrong. (superqt's ``create_worker`` did this before; importing superqt, and
    qtpy under it, cost the GUI thread 0.3 s the first time a page started background work.)
    """
    from PySide6.QtCore import QThreadPool
    from shiboken6 import isValid

    global _DELIVERY
    if _DELIVERY is None:
        _DELIVERY = _Delivery()
    delivery, job = _DELIVERY, Job()

    def deliver(callback: Callable[[Any], None] | None, value: Any, failed: bool) -> None:
        job.is_running = False
        if callback is not None:
            if isValid(owner):
                callback(value)
        elif failed:
            raise value

    def work() -> None:
        try:
            if ml:
                import_ml_stack()
            result = fn(*args, **kwargs)
        except Exception as exc:  # handed to the caller, in the GUI thread
            delivery.ready.emit(lambda e=exc: deliver(on_error, e, True))
        else:
            delivery.ready.emit(lambda: deliver(on_result, result, False))

    share_the_gil()
    pool = QThreadPool.globalInstance()
    wanted = QThread.idealThreadCount() + SPARE_WORKERS
    if pool.maxThreadCount() < wanted:
        pool.setMaxThreadCount(wanted)
    pool.start(work)
    return job


def lower_priority(pid: int) -> None:
    """Let the training child yield the CPU to the desktop and the window: nice 10 on POSIX, the
    below-normal priority class on Windows. Best effort: a process that already ended is left alone."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if sys.platform == "win32":
            proc.nice(psutil.BELOW_NORMAL_PRIORITY_CLASS)
        else:
            proc.nice(max(proc.nice(), CHILD_NICE))
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass


def train_command(config_path: Path | None = None, resume_dir: Path | None = None, *,
                  trust_remote_code: bool = False) -> list[str]:
    """The exact command line the window runs (also what 'Copy CLI command' gives, minus the flag).

    ``trust_remote_code`` adds ``--trust-remote-code``: only after the user confirmed it this time.
    """
    cmd = desktop_ft_command("train")
    if resume_dir is not None:
        cmd += ["--resume", str(resume_dir)]
    else:
        cmd.append(str(config_path))
    if trust_remote_code:
        cmd.append("--trust-remote-code")
    return cmd + ["--json-events"]


def _rss(pid: int) -> int | None:
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except Exception:
        return None


class _Tail:
    """Read complete new lines from a growing file, from a starting offset.

    A resume trims the log past its checkpoint by replacing the file; ``replaced`` turns True when
    that happens (another file, or a shorter one), and reading starts again from its top.
    """

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path, self.offset, self._partial = path, offset, b""
        self._ino = _inode(path)
        self.replaced = False

    @property
    def pending(self) -> bool:
        """More was written than the last read took (a read takes at most READ_CHUNK bytes)."""
        try:
            return self.path.stat().st_size > self.offset
        except FileNotFoundError:
            return False

    def lines(self) -> list[str]:
        ino = _inode(self.path)
        if ino is not None and (ino != self._ino or os.path.getsize(self.path) < self.offset):
            self._ino, self.offset, self._partial, self.replaced = ino, 0, b"", True
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(READ_CHUNK)
        except (FileNotFoundError, PermissionError):  # not there yet, or being replaced (Windows)
            return []
        if not data:
            return []
        self.offset += len(data)
        data = self._partial + data
        parts = data.split(b"\n")
        self._partial = parts.pop()
        return [p.decode("utf-8", "replace") for p in parts if p.strip()]


def _last_time(path: Path) -> float:
    """The ``time`` of the last complete line of an event log (0 when there is none)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(fh.seek(0, os.SEEK_END) - 65536, 0))
            lines = fh.read().split(b"\n")
    except OSError:
        return 0.0
    for line in reversed(lines):
        try:
            return float(json.loads(line)["time"])
        except (ValueError, KeyError, TypeError):
            continue
    return 0.0


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


class _Follower(QObject):
    """Lives in a QThread: starts (or adopts) the training process and reports what it does."""

    events = Signal(object)  # a list of core events: all new lines of one poll, in one queued signal
    memory = Signal(object)  # bytes; may exceed a C++ int
    ended = Signal(object)  # RunFinished; state 'failed' with a clear error when the child died

    def __init__(self, run_dir: Path, command: list[str] | None, pid: int | None) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.command = command
        self.pid = pid  # shown to the user; signals go only to what _live_pid confirms
        self.proc: subprocess.Popen | None = None
        self._detach = threading.Event()
        self._started = threading.Event()
        self.last_step = 0

    # -- called from the GUI thread -------------------------------------------------------------
    def request_stop(self) -> bool:
        pid = self.proc.pid if self.proc else self._live_pid()
        if not pid:
            return False
        try:
            if sys.platform == "win32":
                if self.proc:
                    self.proc.terminate()
            else:
                os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def kill(self) -> None:
        """Hard kill (tests and 'the process hangs'); the run stays resumable from its checkpoint."""
        if self.proc:
            self.proc.kill()
        elif pid := self._live_pid():
            os.kill(pid, signal.SIGKILL)

    def _live_pid(self) -> int | None:
        """The pid of the process training the followed run, while it is that process (its start time
        recorded in status.json matches), else None: a reused pid is never signalled."""
        from desktop_ft.core.runs import RunFolder

        return RunFolder(self.run_dir).live_pid()

    def detach(self) -> None:
        self._detach.set()

    # -- runs in the worker thread ---------------------------------------------------------------
    @Slot()
    def run(self) -> None:
        log_path = self.run_dir / "metrics.jsonl"
        stderr_path = self.run_dir / "stderr.log"
        stderr_tail: deque[str] = deque(maxlen=30)
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        err_offset = stderr_path.stat().st_size if stderr_path.exists() else 0
        if self.command is not None:
            import subprocess  # here: the window imports this module while it opens

            env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
            extra: dict[str, Any] = {}
            if sys.platform == "win32":
                extra["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
            else:
                extra["start_new_session"] = True  # Ctrl-C in a terminal or closing the window does not hit it
            try:
                with open(stderr_path, "ab") as err:
                    self.proc = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=err,
                                                 stdin=subprocess.DEVNULL, env=env, **extra)
            except OSError as exc:
                self.ended.emit(RunFinished("failed", 0, error=f"Could not start the training process ({exc}).",
                                            run_dir=str(self.run_dir)))
                return
            self.pid = self.proc.pid
            lower_priority(self.pid)
        events = _Tail(log_path, log_offset)
        errors = _Tail(stderr_path, err_offset)
        last_time = _last_time(log_path)

        def to_event(line: str) -> Any:
            """The event of one log line; after a resume replaced the log, lines already seen are skipped."""
            nonlocal last_time
            try:
                data = json.loads(line)
                t = float(data.get("time") or 0.0)
            except (ValueError, TypeError, AttributeError):
                return None
            if t <= last_time and events.replaced:
                return None
            last_time = max(last_time, t)
            return _json_event(data)

        finished: RunFinished | None = None
        next_mem = 0.0
        peak = 0
        while True:
            alive = self.proc.poll() is None if self.proc else self._live_pid() is not None
            finished = self._emit_lines(events, to_event) or finished
            for line in errors.lines():
                stderr_tail.append(line)  # kept for the error of a crash that sends no RunFinished
            now = time.monotonic()
            if self.pid and now >= next_mem:
                next_mem = now + 1.0
                rss = _rss(self.pid)
                if rss and rss > peak:
                    peak = rss
                    self.memory.emit(rss)
            if not alive and not events.pending:
                break
            if self._detach.is_set():
                return
            if not events.pending:
                time.sleep(POLL_S)
        # the process is gone: drain what it wrote last, then say how it ended
        while True:
            finished = self._emit_lines(events, to_event) or finished
            if not events.pending:
                break
        for line in errors.lines():
            stderr_tail.append(line)
        if finished is None and self.command is None:
            finished = _finished_from_status(self.run_dir)
        if finished is None:
            code = self.proc.returncode if self.proc else None
            how = _describe_exit(code)
            last = next((line for line in reversed(stderr_tail) if line.strip() and not line.startswith(" ")), "")
            detail = f" Last message: {last.strip()[:240]}" if last else ""
            finished = RunFinished("failed", self.last_step, run_dir=str(self.run_dir),
                                   error=f"The training process {how}.{detail} The run folder is kept: "
                                         "Resume continues from the last checkpoint.")
        self.ended.emit(finished)

    def _emit_lines(self, tail: _Tail, to_event: Callable[[str], Any]) -> RunFinished | None:
        batch, finished = [], None
        for line in tail.lines():
            ev = to_event(line)
            if ev is None:
                continue
            if isinstance(ev, StepLogged):
                self.last_step = ev.step
            if isinstance(ev, RunFinished):
                finished = ev
            else:
                batch.append(ev)
        if batch:
            self.events.emit(batch)
        return finished


def _json_event(data: Any) -> Any:
    try:
        return event_from_dict(data) if isinstance(data, dict) and "event" in data else None
    except (ValueError, KeyError, TypeError):
        return None


def _finished_from_status(run_dir: Path) -> RunFinished | None:
    from desktop_ft.core.runs import RunFolder

    status = RunFolder(run_dir).read_status()
    if status.state == "running":
        return None
    return RunFinished(status.state, status.step, error=status.error, run_dir=str(run_dir))


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "ended without reporting how it finished"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code == getattr(signal, "SIGKILL", 9):
            return f"was killed ({name}; for example by the system when memory ran out)"
        if -code == getattr(signal, "SIGSEGV", 11):
            return f"crashed in a native library ({name})"
        return f"was ended by {name}"
    return f"exited with code {code} before finishing"


class TrainingProcess(QObject):
    """One training child process (or a followed run) as Qt signals. Create one per run."""

    events = Signal(object)      # lists of core events: RunStarted, Progress, StepLogged, EvalLogged, CheckpointSaved
    memory = Signal(object)      # peak resident memory of the child so far, in bytes
    ended = Signal(object)       # RunFinished (also for crashes: state 'failed' and a readable error)

    def __init__(self, run_dir: Path, command: list[str] | None = None, *, pid: int | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.run_dir = Path(run_dir)
        self._thread = QThread()
        self._thread.setObjectName(f"training:{self.run_dir.name}")
        self._follower = _Follower(self.run_dir, command, pid)
        self._follower.moveToThread(self._thread)
        self._thread.started.connect(self._follower.run)
        self._follower.events.connect(self.events)
        self._follower.memory.connect(self.memory)
        self._follower.ended.connect(self._on_ended)
        self.running = False

    @classmethod
    def start_new(cls, run_dir: Path, config_path: Path, parent: QObject | None = None, *,
                  trust_remote_code: bool = False) -> TrainingProcess:
        proc = cls(run_dir, train_command(config_path=config_path, trust_remote_code=trust_remote_code),
                   parent=parent)
        proc.start()
        return proc

    @classmethod
    def resume(cls, run_dir: Path, parent: QObject | None = None, *,
               trust_remote_code: bool = False) -> TrainingProcess:
        proc = cls(run_dir, train_command(resume_dir=run_dir, trust_remote_code=trust_remote_code), parent=parent)
        proc.start()
        return proc

    @classmethod
    def follow(cls, run_dir: Path, pid: int | None, parent: QObject | None = None) -> TrainingProcess:
        proc = cls(run_dir, None, pid=pid, parent=parent)
        proc.start()
        return proc

    @property
    def pid(self) -> int | None:
        return self._follower.pid

    def start(self) -> None:
        self.running = True
        share_the_gil()
        self._thread.start()

    def stop(self) -> bool:
        """Ask for a clean stop (a checkpoint is saved); ``ended`` follows."""
        return self._follower.request_stop()

    def kill(self) -> None:
        self._follower.kill()

    def detach(self) -> None:
        """Stop following; the child keeps training on its own (re-attach from the Runs page)."""
        self._follower.detach()
        self._shutdown_thread()

    def _on_ended(self, finished: RunFinished) -> None:
        self.running = False
        self._shutdown_thread()
        self.ended.emit(finished)

    def _shutdown_thread(self) -> None:
        self.running = False
        self._thread.quit()
        self._thread.wait(3000)
