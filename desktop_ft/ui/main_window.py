"""The main window: a steps sidebar (Model → Dataset → Method → Memory → Train → Chat, then Runs)
beside the page stack, with Back/Next at the bottom. Geometry, the last page and recent choices
are kept in QSettings."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QSettings, QSize, Qt, Signal
from PySide6.QtWidgets import (QApplication, QCheckBox, QFrame, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                               QMainWindow, QPushButton, QStackedWidget, QVBoxLayout, QWidget)

from desktop_ft.core.config import RunConfig
from desktop_ft.ui import keep_awake, theme
from desktop_ft.ui.keep_awake import KeepAwake
from desktop_ft.ui.session import Session

STEPS = [
    ("model", "Model", "mdi6.cube-outline"),
    ("dataset", "Dataset", "mdi6.database-outline"),
    ("method", "Method", "mdi6.tune-variant"),
    ("memory", "Memory", "mdi6.memory"),
    ("train", "Train", "mdi6.chart-line"),
    ("chat", "Chat", "mdi6.chat-processing-outline"),
    ("runs", "Runs", "mdi6.history"),
]
DEFAULT_SIZE = QSize(1280, 840)


class MainWindow(QMainWindow):
    """Pages are built the first time they are shown (the window opens fast; pyqtgraph and the
    heavier pages load on demand). Their attributes (``model_page``, ``training_view`` …) build
    them when first touched."""

    pageChanged = Signal(str)

    def __init__(self, settings: QSettings | None = None, config: RunConfig | None = None) -> None:
        super().__init__()
        self.setWindowTitle("Desktop FT")
        self.settings = settings or QSettings()
        self.session = Session(config or self._restored_config())

        self.pages: dict[str, QWidget] = {}
        self._placeholders: dict[str, QWidget] = {}

        central = QWidget()
        root = QHBoxLayout(central)
        root.setContentsMargins(0, 0, 0, 0)
        root.setSpacing(0)
        sidebar = QFrame()
        sidebar.setObjectName("Sidebar")
        sidebar.setFixedWidth(210)
        side = QVBoxLayout(sidebar)
        side.setContentsMargins(0, 6, 0, 12)
        side.setSpacing(0)
        title = QLabel("Desktop FT")
        title.setObjectName("AppTitle")
        side.addWidget(title)
        sub = QLabel("Fine-tune on this machine")
        sub.setObjectName("AppSubtitle")
        side.addWidget(sub)
        self.steps = QListWidget()
        self.steps.setObjectName("Steps")
        self.steps.setIconSize(QSize(20, 20))
        self.steps.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        for i, (key, label, icon) in enumerate(STEPS):
            text = f"{i + 1}  {label}" if key != "runs" else label
            if key == "runs":
                spacer = QListWidgetItem("")
                spacer.setFlags(Qt.ItemFlag.NoItemFlags)
                spacer.setSizeHint(QSize(10, 18))
                self.steps.addItem(spacer)
            item = QListWidgetItem(theme.icon(icon), f"  {text}")
            item.setData(Qt.ItemDataRole.UserRole, key)
            self.steps.addItem(item)
        side.addWidget(self.steps, 1)
        self.run_badge = theme.label("", "Muted", wrap=True)
        self.run_badge.setContentsMargins(16, 0, 12, 0)
        side.addWidget(self.run_badge)
        self.keep_awake_box = QCheckBox("Keep the computer\nawake while training")
        self.keep_awake_box.setToolTip("While a run trains, the computer does not go to sleep (the screen may "
                                       "still turn off). Released when the run ends, is stopped or fails.")
        self.keep_awake_box.setChecked(keep_awake.enabled(self.settings))
        self.keep_awake_box.toggled.connect(self._on_keep_awake_toggled)
        # a check box draws its indicator at its left edge whatever its contents margins say:
        # the sidebar's 16 px indent comes from a layout around it
        awake_row = QHBoxLayout()
        awake_row.setContentsMargins(16, 8, 12, 0)
        awake_row.addWidget(self.keep_awake_box)
        side.addLayout(awake_row)
        root.addWidget(sidebar)

        right = QVBoxLayout()
        right.setContentsMargins(0, 0, 0, 0)
        right.setSpacing(0)
        self.stack = QStackedWidget()
        for key, _label, _icon in STEPS:
            self._placeholders[key] = QWidget()
            self.stack.addWidget(self._placeholders[key])
        right.addWidget(self.stack, 1)
        footer = QHBoxLayout()
        footer.setContentsMargins(28, 8, 28, 14)
        self.back_button = QPushButton(theme.icon("mdi6.arrow-left"), "  Back")
        self.back_button.clicked.connect(self._on_back)
        self.next_button = QPushButton(theme.icon("mdi6.arrow-right", theme.colors().accent_text), "  Next")
        self.next_button.setObjectName("Primary")
        self.next_button.setLayoutDirection(Qt.LayoutDirection.RightToLeft)
        self.next_button.clicked.connect(self._on_next)
        self.problem_label = theme.label("", "Bad", wrap=True)
        footer.addWidget(self.back_button)
        footer.addWidget(self.problem_label, 1)
        footer.addWidget(self.next_button)
        right.addLayout(footer)
        root.addLayout(right, 1)
        self.setCentralWidget(central)

        self.keep_awake = KeepAwake(self.settings, self)
        self.keep_awake.changed.connect(self._on_keep_awake_changed)
        self._tray = None  # built when a run first needs it (``tray``)
        self._in_background = False
        self._quitting = False
        self._run_name = "run"
        self.last_notification: tuple[str, str, str] | None = None  # (how, title, body), for the log and tests

        self.steps.currentRowChanged.connect(self._on_step_row)
        self.session.configChanged.connect(self._on_config_changed)

        self.resize(DEFAULT_SIZE)
        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        self.go(str(self.settings.value("window/page", "model")))

    # -- pages, built on first use ---------------------------------------------------------------
    def page(self, key: str) -> QWidget:
        if key in self.pages:
            return self.pages[key]
        page = self._build(key)
        self.pages[key] = page
        placeholder = self._placeholders.pop(key)
        index = self.stack.indexOf(placeholder)
        self.stack.insertWidget(index, page)
        self.stack.removeWidget(placeholder)
        placeholder.deleteLater()
        return page

    def _build(self, key: str) -> QWidget:
        if key == "model":
            from desktop_ft.ui.wizard.model_page import ModelPage

            return ModelPage(self.session, self.settings)
        if key == "dataset":
            from desktop_ft.ui.wizard.dataset_page import DatasetPage

            return DatasetPage(self.session, self.settings)
        if key == "method":
            from desktop_ft.ui.wizard.method_page import MethodPage

            return MethodPage(self.session)
        if key == "memory":
            from desktop_ft.ui.wizard.estimate_page import EstimatePage

            return EstimatePage(self.session)
        if key == "train":
            from desktop_ft.ui.training_view import TrainingView

            view = TrainingView(self.session)
            view.runStarted.connect(self._on_run_started)
            view.runEnded.connect(self._on_run_ended)
            view.stepLogged.connect(self._on_step_logged)
            return view
        if key == "chat":
            from desktop_ft.ui.chat_view import ChatView

            return ChatView()
        if key == "runs":
            from desktop_ft.ui.runs_view import RunsView

            runs = RunsView()
            runs.openRequested.connect(self._on_open_run)
            runs.resumeRequested.connect(self._on_resume_run)
            runs.followRequested.connect(self._on_follow_run)
            runs.chatRequested.connect(self._on_chat_run)
            return runs
        raise KeyError(key)

    model_page = property(lambda self: self.page("model"))
    dataset_page = property(lambda self: self.page("dataset"))
    method_page = property(lambda self: self.page("method"))
    memory_page = property(lambda self: self.page("memory"))
    training_view = property(lambda self: self.page("train"))
    chat_view = property(lambda self: self.page("chat"))
    runs_view = property(lambda self: self.page("runs"))

    @property
    def tray(self):
        """The tray icon, built the first time a run needs it (the window opens without it)."""
        if self._tray is None:
            from desktop_ft.ui.tray import RunTray

            self._tray = RunTray(self)
            self._tray.showRequested.connect(self._on_show_from_tray)
            self._tray.quitRequested.connect(self._on_quit_from_tray)
        return self._tray

    # -- navigation ---------------------------------------------------------------------------
    def go(self, key: str) -> None:
        keys = [self.steps.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.steps.count())]
        if key not in keys:
            key = "model"
        self.steps.setCurrentRow(keys.index(key))

    def current_key(self) -> str:
        item = self.steps.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item else "model"

    def _on_step_row(self, row: int) -> None:
        item = self.steps.item(row)
        key = item.data(Qt.ItemDataRole.UserRole) if item else None
        if not key:
            return
        self.stack.setCurrentWidget(self.page(key))
        order = [k for k, _l, _i in STEPS]
        index = order.index(key)
        self.back_button.setVisible(0 < index < order.index("runs"))
        self.next_button.setVisible(index < order.index("chat"))
        self.next_button.setText(f"  Next: {STEPS[index + 1][1]}" if index < order.index("chat") else "")
        if key == "runs":
            self.runs_view.refresh()
        if key == "chat":
            self.chat_view.refresh_runs()
        self.pageChanged.emit(key)

    def _on_back(self) -> None:
        order = [k for k, _l, _i in STEPS]
        self.go(order[max(0, order.index(self.current_key()) - 1)])

    def _on_next(self) -> None:
        order = [k for k, _l, _i in STEPS]
        self.go(order[min(len(order) - 1, order.index(self.current_key()) + 1)])

    # -- state ----------------------------------------------------------------------------------
    def _restored_config(self) -> RunConfig:
        """The last wizard choices (a JSON dict in QSettings: json is in the standard library, and
        importing PyYAML was a sixth of opening the window); defaults if missing or stale.

        Versions before this one stored YAML: such a value is read with PyYAML (imported only then),
        so nobody's choices are lost to the change; the next save writes JSON.
        """
        text = self.settings.value("wizard/config")
        if not text:
            return RunConfig()
        try:
            try:
                values = json.loads(str(text))
            except ValueError:
                import yaml

                values = yaml.safe_load(str(text))
            config = RunConfig.from_dict(values)
            return config.replace({"output.output_dir": None})
        except Exception:
            return RunConfig()

    def _on_config_changed(self, config: RunConfig) -> None:
        problem = self.session.problem()
        self.problem_label.setText(str(problem) if problem else "")

    def _on_run_started(self, run_dir: str) -> None:
        self.run_badge.setText("● Training…")
        self._run_name = Path(run_dir).name
        self.keep_awake.hold(run_dir, f"Training {self._run_name}")
        self.tray.set_status(f"{self._run_name}: starting")
        self.tray.show()
        if "runs" in self.pages:
            self.runs_view.refresh()

    def _on_step_logged(self, ev) -> None:
        self.run_badge.setText(f"● Training: step {ev.step}/{ev.max_steps}")
        share = f" ({100 * ev.step // ev.max_steps}%)" if ev.max_steps else ""
        self.tray.set_status(f"{self._run_name}: step {ev.step}/{ev.max_steps}{share}")

    def _on_run_ended(self, finished) -> None:
        self.run_badge.setText({"finished": "✓ Last run finished", "stopped": "Last run stopped (resumable)",
                                "failed": "Last run failed (resumable)"}.get(finished.state, ""))
        self.keep_awake.release_all()
        name = Path(finished.run_dir).name if finished.run_dir else self._run_name
        title, body = _ending_message(name, finished)
        self.tray.set_status(title)
        if not (self.isVisible() and self.isActiveWindow()):
            how = self.tray.notify(title, body, finished.state != "failed", window=self)
            self.last_notification = (how, title, body)
        if not self._in_background:
            self.tray.hide()
        if "runs" in self.pages:
            self.runs_view.refresh()
        if finished.run_dir and "chat" in self.pages:
            self.chat_view.select_run(finished.run_dir)

    def _on_open_run(self, run_dir: str) -> None:
        if not self.training_view.running:
            self.training_view.show_run(run_dir)
        self.go("train")

    def _on_resume_run(self, run_dir: str) -> None:
        if self.training_view.running:
            from PySide6.QtWidgets import QMessageBox  # its class costs the first show ~3 ms

            QMessageBox.information(self, "A run is going", "Stop the current run before resuming another.")
            return
        self.training_view.resume(run_dir)
        self.go("train")

    def _on_follow_run(self, run_dir: str, pid: int) -> None:
        if self.training_view.running:
            from PySide6.QtWidgets import QMessageBox  # its class costs the first show ~3 ms

            QMessageBox.information(self, "A run is going", "This window is already following a run.")
            return
        self.training_view.follow(run_dir, pid)
        self.go("train")

    def _on_chat_run(self, run_dir: str) -> None:
        self.chat_view.select_run(run_dir)
        self.go("chat")

    def _on_keep_awake_toggled(self, on: bool) -> None:
        self.settings.setValue(keep_awake.SETTING, on)
        if not on:
            self.keep_awake.release_all()
        elif "train" in self.pages and self.training_view.running and self.training_view.run_dir is not None:
            self.keep_awake.hold(str(self.training_view.run_dir), f"Training {self.training_view.run_dir.name}")

    def _on_keep_awake_changed(self, held: bool, sentence: str) -> None:
        self.run_badge.setToolTip(sentence)

    def _on_show_from_tray(self) -> None:
        self._in_background = False
        QApplication.instance().setQuitOnLastWindowClosed(True)
        self.show()
        self.raise_()
        self.activateWindow()
        if not ("train" in self.pages and self.training_view.running):
            self.tray.hide()

    def _on_quit_from_tray(self) -> None:
        """Leave for good; a run still training keeps going on its own (follow it later from Runs)."""
        self._quitting = True
        self.close()
        QApplication.quit()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        if "train" in self.pages and self.training_view.running and not self._quitting:
            from PySide6.QtWidgets import QMessageBox

            answer = QMessageBox.question(
                self, "Training is running",
                "Keep training in the background after the window closes?\n\n"
                "Yes: it keeps going; reopen Desktop FT and follow it from the Runs page.\n"
                "No: stop it now (a checkpoint is saved, Resume continues later).",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No | QMessageBox.StandardButton.Cancel,
                QMessageBox.StandardButton.Yes)
            if answer == QMessageBox.StandardButton.Cancel:
                event.ignore()
                return
            if answer == QMessageBox.StandardButton.No:
                self.training_view.stop()
            elif self.tray.available():
                # keep following it from the tray: progress in the tooltip, a notification at the end
                self._save_state()
                self._in_background = True
                self.tray.show()
                QApplication.instance().setQuitOnLastWindowClosed(False)
                self.hide()
                event.ignore()
                return
            self.training_view.detach()
        elif "train" in self.pages and self.training_view.running:  # quitting from the tray
            self.training_view.detach()
        self.keep_awake.release_all()
        if self._tray is not None:
            self._tray.hide()
        if "chat" in self.pages:
            self.chat_view.shutdown()
        self._save_state()
        super().closeEvent(event)

    def _save_state(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/page", self.current_key())
        self.settings.setValue("wizard/config", json.dumps(self.session.config.to_dict()))
        self.settings.sync()


def _ending_message(name: str, finished) -> tuple[str, str]:
    """The notification for a run that ended: its name and its result, in words."""
    if finished.state == "finished":
        return (f"Run finished: {name}",
                f"Trained {finished.step} steps. Open Desktop FT to chat with the tuned model.")
    if finished.state == "stopped":
        return f"Run stopped: {name}", f"Stopped at step {finished.step}; Resume continues from its checkpoint."
    return f"Run failed: {name}", finished.error or "The run failed; Resume continues from its last checkpoint."
