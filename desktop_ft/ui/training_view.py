"""The Train step: start, follow, stop and resume a run, with live curves, progress and the log.

The view owns at most one ``TrainingProcess`` (a child process followed from a QThread); it only
renders the events that arrive and forwards Start/Stop/Resume. Closing the window asks whether a
running child should keep going (it can be re-attached from the Runs page).
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QGridLayout, QHBoxLayout, QMessageBox, QPlainTextEdit, QProgressBar, QPushButton,
                               QSplitter, QVBoxLayout, QWidget)

from desktop_ft.core.config import RunConfig
from desktop_ft.core.curves import read_curves
from desktop_ft.core.errors import UserError
from desktop_ft.core.events import (CheckpointSaved, EvalLogged, Progress, RunFinished, RunStarted, StepLogged)
from desktop_ft.core.runs import RunFolder, create_run
from desktop_ft.ui import theme
from desktop_ft.ui.loss_plots import LossPlots
from desktop_ft.ui.page import Card
from desktop_ft.ui.session import Session
from desktop_ft.ui.workers import TrainingProcess, run_async


STATS_HZ = 4  # the step, loss and progress numbers are set at most this often (each sets off a repaint)


def _scale_out(config: RunConfig) -> str:
    """' · GPUs 4 × FSDP' for a run on several processes; nothing for one (the common case)."""
    from desktop_ft.core.distributed import STRATEGIES, world_size

    n = world_size(config)
    if n <= 1:
        return ""
    return f" &nbsp;·&nbsp; <b>GPUs</b> {n} × {STRATEGIES[config.distributed.strategy].title}"


class _Stat(QWidget):
    """A small caption-over-number tile."""

    def __init__(self, caption: str) -> None:
        super().__init__()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(theme.label(caption, "Muted"))
        self.value = theme.label("–", "BigNumber")
        lay.addWidget(self.value)

    def set(self, text: str) -> None:
        self.value.setText(text)


def confirm_remote_code(parent: QWidget, config: RunConfig) -> bool | None:
    """For a config that sets ``model.trust_remote_code``, ask every time (it may be someone else's run):
    True = allowed, None = refused; False when the config does not ask."""
    if not config.model.trust_remote_code:
        return False
    answer = QMessageBox.warning(
        parent, "Run the model's own code?",
        f"This run's settings ask to run Python code shipped with the model '{config.model.name}'. That code "
        "can do anything your user account can. Allow it only if you trust the model's authors.",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
    return True if answer == QMessageBox.StandardButton.Yes else None


class TrainingView(QWidget):
    """Live view of one run."""

    runStarted = Signal(str)        # run folder
    runEnded = Signal(object)       # RunFinished
    stepLogged = Signal(object)     # the last StepLogged of each batch of events, after the view took it in
    historyShown = Signal(int)      # a reopened run's saved curves are in the plot (number of train points)

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.process: TrainingProcess | None = None
        self.run_dir: Path | None = None
        self.max_steps = 0
        self._started_at = 0.0
        self._last_log_step = -1
        self._history = 0  # increases with each reopened run; a stale read's result is dropped
        self._loading = False  # a run's saved curves are being read; live events wait in _pending
        self._pending: list[object] = []
        self._last_step: StepLogged | None = None  # newest step not yet shown in the numbers

        outer = QVBoxLayout(self)
        outer.setContentsMargins(28, 22, 28, 14)
        outer.setSpacing(12)
        head = QHBoxLayout()
        titles = QVBoxLayout()
        titles.setSpacing(2)
        self.title = theme.label("Train", "PageTitle")
        titles.addWidget(self.title)
        self.subtitle = theme.label("Check the summary, then start. You can stop at any time: a checkpoint "
                                    "is saved and Resume continues from it.", "PageIntro", wrap=True)
        titles.addWidget(self.subtitle)
        head.addLayout(titles, 1)
        self.state_label = theme.label("Ready", "Muted")
        head.addWidget(self.state_label, 0, Qt.AlignmentFlag.AlignTop)
        outer.addLayout(head)

        # what will be trained + the buttons
        self.summary_card = Card("This run", "mdi6.clipboard-text-outline")
        self.summary = theme.label("", wrap=True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary_card.body.addWidget(self.summary)
        buttons = QHBoxLayout()
        self.start_button = QPushButton(theme.icon("mdi6.play", theme.colors().accent_text), "  Start training")
        self.start_button.setObjectName("Primary")
        self.start_button.clicked.connect(self._on_start)
        self.stop_button = QPushButton(theme.icon("mdi6.stop"), "  Stop")
        self.stop_button.setToolTip("Stop after the current step and save a checkpoint.")
        self.stop_button.clicked.connect(self._on_stop)
        self.resume_button = QPushButton(theme.icon("mdi6.restart"), "  Resume")
        self.resume_button.setToolTip("Continue this run from its last checkpoint.")
        self.resume_button.clicked.connect(self._on_resume)
        for b in (self.start_button, self.stop_button, self.resume_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        self.summary_card.body.addLayout(buttons)
        outer.addWidget(self.summary_card)

        # the error banner
        self.banner = Card()
        self.banner.setObjectName("Banner")
        self.banner_text = theme.label("", "Bad", wrap=True)
        self.banner.body.addWidget(self.banner_text)
        self.banner.hide()
        outer.addWidget(self.banner)

        # progress + stats
        stats = QGridLayout()
        stats.setHorizontalSpacing(28)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("%p%")
        stats.addWidget(self.progress, 0, 0, 1, 7)
        self.stat_step = _Stat("Step")
        self.stat_epoch = _Stat("Epoch")
        self.stat_loss = _Stat("Loss")
        self.stat_eval = _Stat("Eval loss")
        self.stat_eta = _Stat("Time left")
        self.stat_speed = _Stat("Tokens / s")
        self.stat_mem = _Stat("Peak memory")
        for i, w in enumerate((self.stat_step, self.stat_epoch, self.stat_loss, self.stat_eval, self.stat_eta,
                               self.stat_speed, self.stat_mem)):
            stats.addWidget(w, 1, i)
        outer.addLayout(stats)

        split = QSplitter(Qt.Orientation.Vertical)
        self.plots = LossPlots()
        split.addWidget(self.plots)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(3000)
        self.log.setFont(theme.mono_font())
        self.log.setPlaceholderText("What the run does appears here.")
        split.addWidget(self.log)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        split.setSizes([420, 110])
        outer.addWidget(split, 1)

        session.configChanged.connect(self._on_config_changed)
        self._on_config_changed(session.config)
        self._update_buttons()

    # -- public API ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def start(self, config: RunConfig) -> Path:
        """Create the run folder, write its config.yaml (the CLI's shape) and start the child process."""
        if self.running:
            raise RuntimeError("a run is already going")
        trust = confirm_remote_code(self, config)
        if trust is None:
            raise UserError("the model's own code was not allowed to run, so the run was not started",
                            field="model.trust_remote_code", hint="Turn model.trust_remote_code off, or allow it.")
        run = create_run(config, prepare=True)
        self._reset(run.path, f"Training {run.path.name}")
        self._log(f"Run folder: {run.path} (the process's own messages go to stderr.log there)")
        self._attach(TrainingProcess.start_new(run.path, run.config_path, parent=self, trust_remote_code=trust))
        return run.path

    def resume(self, run_dir: Path | str) -> None:
        """Show the run's saved curves, then start the child that continues it (its first steps
        replace the saved ones past its checkpoint)."""
        run_dir = Path(run_dir)
        if self.running:
            raise RuntimeError("a run is already going")
        try:
            trust = confirm_remote_code(self, RunFolder(run_dir).read_config())
        except UserError as exc:
            self._show_error(f"Could not resume: {exc}")
            return
        if trust is None:
            return
        self.show_run(run_dir, then=lambda: self._resume_now(run_dir, trust))

    def _resume_now(self, run_dir: Path, trust: bool) -> None:
        self.banner.hide()
        self._log(f"Resuming {run_dir.name} from its last checkpoint…")
        self._attach(TrainingProcess.resume(run_dir, parent=self, trust_remote_code=trust))

    def follow(self, run_dir: Path | str, pid: int | None) -> None:
        """Re-attach to a run that is still going in another process: its new events are followed at
        once, and wait until the saved curves are read."""
        run_dir = Path(run_dir)
        self.show_run(run_dir)
        self._log(f"Following {run_dir.name} (process {pid}), started outside this window.")
        self._attach(TrainingProcess.follow(run_dir, pid, parent=self))

    def show_run(self, run_dir: Path | str, then=None) -> None:
        """Show a run's saved curves and status (no process). The curves are read in a worker thread
        (they grow with the run); ``historyShown`` says when they are in, then ``then()`` runs."""
        run_dir = Path(run_dir)
        folder = RunFolder(run_dir)
        self._reset(run_dir, run_dir.name)
        self._loading = True
        token = self._history
        status = folder.read_status()
        self.max_steps = status.max_steps or self.max_steps
        self._set_progress(status.step)
        self.stat_mem.set(theme.human_bytes(status.peak_memory_bytes))
        self._set_state(status.state)
        if status.state == "failed" and status.error:
            self._show_error(status.error)
        self._update_buttons()
        run_async(self, read_curves, run_dir,
                  on_result=lambda curves: self._on_history(token, curves, then),
                  on_error=lambda exc: self._on_history(token, None, then, exc))

    def _on_history(self, token: int, curves, then, error: BaseException | None = None) -> None:
        if token != self._history:  # another run was opened meanwhile
            return
        self._loading = False
        if curves is not None:
            self.plots.add_history(curves)
            if len(curves["step"]):
                self.stat_loss.set(f"{curves['loss'][-1]:.4f}")
                if curves["speed"][-1] == curves["speed"][-1]:  # not NaN
                    self.stat_speed.set(f"{curves['speed'][-1]:,.0f}")
            if len(curves["eval"]):
                self.stat_eval.set(f"{curves['eval'][-1]:.4f}")
        else:
            self._log(f"Could not read the saved curves: {error}")
        # live events that came while reading: keep only those past what was read
        last_step = curves["step"][-1] if curves is not None and len(curves["step"]) else -1
        last_eval = curves["eval_step"][-1] if curves is not None and len(curves["eval_step"]) else -1
        pending, self._pending = self._pending, []
        fresh = [ev for ev in pending if not (isinstance(ev, StepLogged) and ev.step <= last_step)
                 and not (isinstance(ev, EvalLogged) and ev.step <= last_eval)]
        if fresh:
            self._take_batch(fresh)
        self.plots.redraw_now()
        self.historyShown.emit(self.plots.point_count())
        if then is not None:
            then()

    def stop(self) -> None:
        if self.process is not None:
            self._log("Stopping after this step and saving a checkpoint…")
            self.state_label.setText("Stopping…")
            self.process.stop()

    def detach(self) -> None:
        if self.process is not None:
            self.process.detach()
            self.process = None

    # -- slots --------------------------------------------------------------------------------
    def _on_start(self) -> None:
        problem = self.session.problem()
        if problem is not None:
            self._show_error(f"The settings need a fix first: {problem}")
            return
        try:
            self.start(self.session.config)
        except (UserError, OSError) as exc:
            self._show_error(f"Could not start: {exc}")

    def _on_stop(self) -> None:
        self.stop()

    def _on_resume(self) -> None:
        if self.run_dir is not None:
            self.resume(self.run_dir)

    def _on_events(self, batch: list[object]) -> None:
        if self._loading:
            self._pending.extend(batch)
        else:
            self._take_batch(batch)

    def _on_memory(self, rss: int) -> None:
        self.stat_mem.set(theme.human_bytes(rss))

    def _on_ended(self, finished: RunFinished) -> None:
        self._show_last_step()
        self.process = None
        self._set_state(finished.state)
        if finished.state == "failed":
            self._show_error(finished.error or "The run failed.")
            self._log(f"Failed: {finished.error}")
        elif finished.state == "stopped":
            self._log(f"Stopped at step {finished.step}; a checkpoint is saved. Resume continues from it.")
        else:
            self._log(f"Finished at step {finished.step}. The adapter is in {finished.adapter_dir}.")
            self._set_progress(self.max_steps or finished.step)
        if self.run_dir is not None:
            status = RunFolder(self.run_dir).read_status()
            if status.peak_memory_bytes:
                self.stat_mem.set(theme.human_bytes(status.peak_memory_bytes))
        self._update_buttons()
        self.runEnded.emit(finished)

    def _on_config_changed(self, config: RunConfig) -> None:
        t = config.training
        model = config.model.name or "default"
        if model == "default":
            model = "SmolLM2-135M-Instruct (built in)"
        data = Path(config.data.path).name if config.data.path else "sample dataset (three-step tutor)"
        length = f"{t.max_steps} steps" if t.max_steps > 0 else f"{t.epochs:g} epoch(s)"
        self.summary.setText(
            f"<b>Model</b> {model} &nbsp;·&nbsp; <b>Data</b> {data} &nbsp;·&nbsp; <b>Method</b> "
            f"{config.method.method.upper()} (rank {config.method.lora_rank}) &nbsp;·&nbsp; <b>Length</b> {length}, "
            f"batch {t.batch_size}×{t.gradient_accumulation_steps}, lr {t.learning_rate:g}, max length {t.max_length}"
            + _scale_out(config))

    # -- internals ----------------------------------------------------------------------------
    def _attach(self, process: TrainingProcess) -> None:
        self.process = process
        process.events.connect(self._on_events)
        process.memory.connect(self._on_memory)
        process.ended.connect(self._on_ended)
        self._started_at = time.monotonic()
        self._set_state("running")
        self._update_buttons()
        self.runStarted.emit(str(self.run_dir))

    def _reset(self, run_dir: Path, title: str) -> None:
        self.run_dir = Path(run_dir)
        self.title.setText(title)
        self.subtitle.setText(str(run_dir))
        self.plots.clear()
        self.log.clear()
        self.banner.hide()
        self.max_steps = 0
        self._last_log_step = -1
        self._history += 1
        self._loading = False
        self._pending = []
        self._last_step = None
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        for s in (self.stat_step, self.stat_epoch, self.stat_loss, self.stat_eval, self.stat_eta, self.stat_speed,
                  self.stat_mem):
            s.set("–")

    def _take_batch(self, batch: list[object]) -> None:
        """One poll's events: every point goes to the plot (drawn at its next tick), the numbers
        above it are set once, from the last step."""
        last: StepLogged | None = None
        for ev in batch:
            if isinstance(ev, StepLogged):
                self.plots.add_event(ev)
                self.max_steps = ev.max_steps or self.max_steps
                last = ev
                if ev.step - self._last_log_step >= 10 or ev.step == self.max_steps:
                    self._last_log_step = ev.step
                    self._log(f"step {ev.step}/{self.max_steps}  loss {ev.loss:.4f}"
                              + (f"  lr {ev.learning_rate:.2e}" if ev.learning_rate is not None else "")
                              + (f"  {ev.tokens_per_second:,.0f} tok/s" if ev.tokens_per_second else ""))
            else:
                self._take(ev)
        if last is not None:
            if self._last_step is None:  # the numbers follow at most STATS_HZ times a second
                QTimer.singleShot(int(1000 / STATS_HZ), self._show_last_step)
            self._last_step = last

    def _show_last_step(self) -> None:
        last, self._last_step = self._last_step, None
        if last is None:
            return
        self._set_progress(last.step)
        self.stat_epoch.set(f"{last.epoch:.2f}")
        self.stat_loss.set(f"{last.loss:.4f}")
        if last.tokens_per_second:
            self.stat_speed.set(f"{last.tokens_per_second:,.0f}")
        self.stat_eta.set(theme.human_duration(last.eta_seconds) if last.eta_seconds is not None else "–")
        self.stepLogged.emit(last)

    def _take(self, ev: object) -> None:
        if isinstance(ev, EvalLogged):
            self.plots.add_event(ev)
            self.stat_eval.set(f"{ev.eval_loss:.4f}")
            self._log(f"eval at step {ev.step}: loss {ev.eval_loss:.4f}")
        elif isinstance(ev, RunStarted):
            self.max_steps = ev.max_steps
            self._set_progress(ev.resumed_from_step)
            self._log(f"Training started: {ev.max_steps} steps"
                      + (f", resumed from step {ev.resumed_from_step}" if ev.resumed_from_step else "") + ".")
        elif isinstance(ev, Progress):
            self._log(ev.message)
            self.state_label.setText(ev.message)
        elif isinstance(ev, CheckpointSaved):
            self._log(f"Checkpoint saved at step {ev.step}.")

    def _set_progress(self, step: int) -> None:
        self.stat_step.set(f"{step} / {self.max_steps}" if self.max_steps else str(step))
        if self.max_steps:
            self.progress.setRange(0, self.max_steps)
            self.progress.setValue(min(step, self.max_steps))

    def _set_state(self, state: str) -> None:
        text = {"running": "Running", "finished": "Finished", "stopped": "Stopped — resumable",
                "failed": "Failed — resumable"}.get(state, state)
        name = {"finished": "Good", "stopped": "Warn", "failed": "Bad"}.get(state, "Muted")
        self.state_label.setText(text)
        self.state_label.setObjectName(name)
        self.state_label.style().unpolish(self.state_label)
        self.state_label.style().polish(self.state_label)

    def _show_error(self, text: str) -> None:
        self.banner_text.setText(text)
        self.banner.show()

    def _log(self, text: str) -> None:
        self.log.appendPlainText(f"{time.strftime('%H:%M:%S')}  {text}")

    def _update_buttons(self) -> None:
        running = self.running
        resumable = False
        if not running and self.run_dir is not None:
            folder = RunFolder(self.run_dir)
            resumable = folder.read_status().state in ("stopped", "failed") and folder.config_path.exists()
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.resume_button.setEnabled(resumable)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.detach()
        super().closeEvent(event)


if __name__ == "__main__":  # a quick look: python -m desktop_ft.ui.training_view [RUN_DIR]
    import sys

    from desktop_ft.ui.app import create_app

    app = create_app(sys.argv)
    view = TrainingView(Session())
    if len(sys.argv) > 1:
        view.show_run(sys.argv[1])
    view.resize(1200, 800)
    view.show()
    sys.exit(app.exec())
