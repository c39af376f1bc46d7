"""Chat step: the base model and the fine-tuned one answer the same prompt side by side, streaming,
with the same sampling settings; any checkpoint can be the tuned side. A "Probe set" tab shows the
saved before/after table of the run (``compare.jsonl``), answers that changed highlighted; Export
opens the export dialog. Generation runs in a worker thread over ``desktop_ft.core.chat``."""

from __future__ import annotations

import dataclasses
import html
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QKeySequence, QShortcut, QTextCursor
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDoubleSpinBox, QGridLayout, QHBoxLayout,
                               QHeaderView, QLineEdit, QPlainTextEdit, QPushButton, QSpinBox, QSplitter,
                               QTableWidget, QTableWidgetItem, QTabWidget, QTextBrowser, QVBoxLayout, QWidget)

from desktop_ft.core import compare, history
from desktop_ft.core import runs as core_runs
from desktop_ft.core.chat import ChatModel, GenerationSettings
from desktop_ft.core.events import Progress
from desktop_ft.ui import theme
from desktop_ft.ui.page import Card, Page
from desktop_ft.ui.workers import run_async


class _Bridge(QObject):
    """Carries tokens from the generation thread to the GUI thread (queued signals)."""

    token = Signal(str, str)       # side, text
    answered = Signal(str, str)    # side, full answer
    status = Signal(str)


def _replay_status(event: Progress | compare.ProbeAnswered) -> str:
    """One status line for an event of ``compare.replay``."""
    if isinstance(event, Progress):
        return event.message
    return f"Answered: {event.prompt[:60]}"


def chat_runs(root: Path | None = None) -> list[tuple[str, str, list[history.TunedChoice]]]:
    """``(label, path, choices)`` of runs that have something to chat with (worker thread): the final
    adapter or full model, and checkpoints, as ``core.history.tuned_choices`` lists them."""
    out = []
    for run in core_runs.list_runs(root):
        choices = history.tuned_choices(run)
        if choices:
            state = run.read_status().state
            out.append((f"{run.path.name}  ({state})", str(run.path), choices))
    return out


class ChatView(Page):
    answered = Signal(str, str)   # side, full text (tests wait on it)
    modelLoaded = Signal(str)

    def __init__(self, root: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__("Did it learn?", "Ask both models the same thing. Left: the model before training; "
                         "right: your fine-tuned model.", parent, scroll=False)
        self.root = root
        self.model: Any = None
        self._model_key: tuple[str, str | None] | None = None
        self._wanted: str | None = None  # a run asked for before the list had it
        self._workers: list[Any] = []
        self._stop = threading.Event()
        self._busy = False
        self.history: dict[str, list[dict[str, str]]] = {"base": [], "tuned": []}
        self._choices: dict[str, list[history.TunedChoice]] = {}  # run folder → what its tuned side can be
        self._bridge = _Bridge()
        self._bridge.token.connect(self._on_token)
        self._bridge.answered.connect(self._on_answered)
        self._bridge.status.connect(self._on_status)

        top = QHBoxLayout()
        top.addWidget(theme.label("Run", "CardTitle"))
        self.run_combo = QComboBox()
        self.run_combo.setMinimumWidth(200)
        # long run names are elided rather than widening the window
        self.run_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.run_combo.currentIndexChanged.connect(self._on_run_changed)
        top.addWidget(self.run_combo, 1)
        top.addWidget(theme.label("Checkpoint", "CardTitle"))
        self.ckpt_combo = QComboBox()
        self.ckpt_combo.setMinimumWidth(160)
        self.ckpt_combo.currentIndexChanged.connect(self._on_ckpt_changed)
        top.addWidget(self.ckpt_combo)
        self.export_button = QPushButton(theme.icon("mdi6.export"), "  Export…")
        self.export_button.clicked.connect(self._on_export)
        top.addWidget(self.export_button)
        self.content.addLayout(top)
        self.status_label = theme.label("", "Muted", wrap=True)
        self.content.addWidget(self.status_label)

        self.tabs = QTabWidget()
        side = QWidget()
        sl = QVBoxLayout(side)
        sl.setContentsMargins(10, 10, 10, 10)
        panes = QSplitter(Qt.Orientation.Horizontal)
        self.panes: dict[str, QTextBrowser] = {}
        for key, title, icon in (("base", "Base model (before)", "mdi6.robot-outline"),
                                 ("tuned", "Fine-tuned (after)", "mdi6.robot-happy-outline")):
            card = Card(title, icon)
            browser = QTextBrowser()
            browser.setOpenExternalLinks(False)
            card.body.addWidget(browser, 1)
            self.panes[key] = browser
            panes.addWidget(card)
        sl.addWidget(panes, 1)

        self.settings_widgets: dict[str, QWidget] = {}
        self.system = QLineEdit()
        self.system.setPlaceholderText("System prompt (optional)")
        sl.addWidget(self.system)
        settings = QGridLayout()  # two a row: in one row they set the window's width to 1,280 px
        settings.setHorizontalSpacing(10)
        self._build_settings(settings)
        sl.addLayout(settings)

        prompt_row = QHBoxLayout()
        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText("Ask both models something… (Ctrl+Enter sends)")
        self.prompt.setFixedHeight(64)
        prompt_row.addWidget(self.prompt, 1)
        buttons = QVBoxLayout()
        self.send_button = QPushButton(theme.icon("mdi6.send", theme.colors().accent_text), "  Send")
        self.send_button.setObjectName("Primary")
        self.send_button.clicked.connect(self._on_send)
        self.stop_button = QPushButton(theme.icon("mdi6.stop"), "  Stop")
        self.stop_button.clicked.connect(self._on_stop)
        self.clear_button = QPushButton(theme.icon("mdi6.broom"), "  New chat")
        self.clear_button.clicked.connect(self._on_clear)
        for b in (self.send_button, self.stop_button, self.clear_button):
            buttons.addWidget(b)
        prompt_row.addLayout(buttons)
        sl.addLayout(prompt_row)
        QShortcut(QKeySequence("Ctrl+Return"), self.prompt, activated=self._on_send)
        self.tabs.addTab(side, theme.icon("mdi6.chat-processing-outline"), "Side by side")

        probe = QWidget()
        pl = QVBoxLayout(probe)
        probe_row = QHBoxLayout()
        self.probe_note = theme.label("", "Muted", wrap=True)
        probe_row.addWidget(self.probe_note, 1)
        self.replay_button = QPushButton(theme.icon("mdi6.play-box-multiple-outline"), "  Replay probe set")
        self.replay_button.setToolTip("Answer the run's probe prompts with the base model and the fine-tuned one "
                                      "(same settings) and save the table with the run.")
        self.replay_button.clicked.connect(self._on_replay)
        probe_row.addWidget(self.replay_button)
        pl.addLayout(probe_row)
        self.probe_table = QTableWidget(0, 4)
        self.probe_table.setHorizontalHeaderLabels(["Prompt", "Checkpoint", "Base", "Tuned"])
        self.probe_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.probe_table.setWordWrap(True)
        self.probe_table.verticalHeader().hide()
        h = self.probe_table.horizontalHeader()
        for c in (0, 2, 3):
            h.setSectionResizeMode(c, QHeaderView.ResizeMode.Stretch)
        h.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        pl.addWidget(self.probe_table, 1)
        self.tabs.addTab(probe, theme.icon("mdi6.flask-outline"), "Probe set")
        self.content.addWidget(self.tabs, 1)
        self._set_busy(False)
        self.refresh_runs()

    # -- settings generated from core.chat.GenerationSettings ------------------------------------
    def _build_settings(self, grid: QGridLayout, columns: int = 2) -> None:
        for f in dataclasses.fields(GenerationSettings):
            default = f.default if f.default is not dataclasses.MISSING else None
            help_text = f.metadata.get("help", "") if f.metadata else ""
            if isinstance(default, bool):
                w: QWidget = QCheckBox(f.name.replace("_", " "))
                w.setChecked(default)
            elif isinstance(default, int):
                w = QSpinBox()
                w.setRange(int(f.metadata.get("min", 0)) if f.metadata else 0,
                           int(f.metadata.get("max", 100000)) if f.metadata else 100000)
                w.setValue(default)
                w.setPrefix(f"{f.name.replace('_', ' ')}: ")
            elif isinstance(default, float):
                w = QDoubleSpinBox()
                w.setDecimals(2)
                w.setSingleStep(0.05)
                w.setRange(float(f.metadata.get("min", 0.0)) if f.metadata else 0.0,
                           float(f.metadata.get("max", 100.0)) if f.metadata else 100.0)
                w.setValue(default)
                w.setPrefix(f"{f.name.replace('_', ' ')}: ")
            else:
                continue  # text/list settings (stop strings, system prompt) are not shown here
            w.setToolTip(help_text)
            index = len(self.settings_widgets)
            self.settings_widgets[f.name] = w
            grid.addWidget(w, index // columns, index % columns)

    def generation_settings(self) -> GenerationSettings:
        values: dict[str, Any] = {}
        for name, w in self.settings_widgets.items():
            if isinstance(w, QCheckBox):
                values[name] = w.isChecked()
            else:
                values[name] = w.value()
        return GenerationSettings(**values)

    # -- runs and checkpoints ---------------------------------------------------------------------
    def refresh_runs(self) -> None:
        self._workers.append(run_async(self, chat_runs, self.root, on_result=self._on_runs))

    def _on_runs(self, runs: list[tuple[str, str, list[history.TunedChoice]]]) -> None:
        current = self.run_combo.currentData() or self._wanted
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        self._choices = {path: choices for _label, path, choices in runs}
        for label, path, _choices in runs:
            self.run_combo.addItem(label, path)
        index = self.run_combo.findData(current) if current else 0
        self.run_combo.setCurrentIndex(max(0, index))
        self.run_combo.blockSignals(False)
        if not runs:
            self.status_label.setText("No trained runs yet: train one first (step 5), then come back here.")
        self._on_run_changed()

    def select_run(self, path: str) -> None:
        self._wanted = str(path)
        self.refresh_runs()

    def _on_run_changed(self) -> None:
        path = self.run_combo.currentData()
        self.ckpt_combo.blockSignals(True)
        self.ckpt_combo.clear()
        for choice in self._choices.get(path, []) if path else []:
            self.ckpt_combo.addItem(choice.label, choice.checkpoint)
        self.ckpt_combo.blockSignals(False)
        self.export_button.setEnabled(bool(path))
        self._load_probe_table(path)
        self._on_ckpt_changed()

    def _on_ckpt_changed(self) -> None:
        path = self.run_combo.currentData()
        if not path:
            self._set_busy(False)
            return
        key = (path, self.ckpt_combo.currentData())
        if key == self._model_key:
            return
        same_run = self.model is not None and self._model_key is not None and self._model_key[0] == path
        self._model_key = key
        self._set_busy(True)
        if same_run:
            model = self.model
            self.status_label.setText("Switching checkpoint…")
            self._workers.append(run_async(self, _switch, model, key[1],
                                           ml=True, on_result=lambda m, k=key: self._on_model(k, m),
                                           on_error=lambda e, k=key: self._on_model_error(k, e)))
            return
        self._release_model()
        self.status_label.setText("Loading the model and the adapter…")
        self._workers.append(run_async(self, ChatModel.from_run, path, checkpoint=key[1],
                                       ml=True, on_result=lambda m, k=key: self._on_model(k, m),
                                       on_error=lambda e, k=key: self._on_model_error(k, e)))

    def _on_model(self, key: tuple, model: Any) -> None:
        if key != self._model_key:
            return
        self.model = model
        self._set_busy(False)
        which = f"checkpoint at step {key[1]}" if key[1] is not None else self.ckpt_combo.currentText()
        self.status_label.setText(f"Ready: {Path(key[0]).name}, {which}")
        self.modelLoaded.emit(key[0])

    def _on_model_error(self, key: tuple, exc: BaseException) -> None:
        if key != self._model_key:
            return
        self._model_key = None
        self._set_busy(False)
        self.send_button.setEnabled(False)
        self.status_label.setText(f"Could not load this run for chat: {exc}")

    # -- chatting ---------------------------------------------------------------------------------
    def ask(self, text: str) -> None:
        self.prompt.setPlainText(text)
        self._on_send()

    def _on_send(self) -> None:
        text = self.prompt.toPlainText().strip()
        if not text or self.model is None or self._busy:
            return
        self.prompt.clear()
        self._stop.clear()
        self._set_busy(True)
        system = self.system.text().strip()
        for side in ("base", "tuned"):
            self.history[side].append({"role": "user", "content": text})
            who = "Base" if side == "base" else "Tuned"
            self._append(side, f"<p><b>You</b><br>{html.escape(text)}</p><p><b>{who}</b><br>")
        settings = self.generation_settings()
        settings = dataclasses.replace(settings, system_prompt=system)
        histories = {k: list(v) for k, v in self.history.items()}
        self._workers.append(run_async(self, _generate_both, self.model, histories, settings, self._stop, self._bridge,
                                       ml=True, on_result=lambda _r: self._set_busy(False),
                                       on_error=self._on_generate_error))

    def _on_generate_error(self, exc: BaseException) -> None:
        self._set_busy(False)
        self.replay_button.setEnabled(True)
        self.status_label.setText(f"Generation failed: {exc}")

    def _on_token(self, side: str, text: str) -> None:
        browser = self.panes[side]
        cursor = browser.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(text)
        browser.setTextCursor(cursor)
        browser.ensureCursorVisible()

    def _on_answered(self, side: str, text: str) -> None:
        self.history[side].append({"role": "assistant", "content": text})
        self.answered.emit(side, text)

    def _on_status(self, text: str) -> None:
        self.status_label.setText(text)

    def _append(self, side: str, markup: str) -> None:
        browser = self.panes[side]
        cursor = browser.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertHtml(markup)
        browser.setTextCursor(cursor)

    def _on_stop(self) -> None:
        self._stop.set()

    def _on_clear(self) -> None:
        self.history = {"base": [], "tuned": []}
        for b in self.panes.values():
            b.clear()

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        self.send_button.setEnabled(not busy and self.model is not None)
        self.stop_button.setEnabled(busy)

    def _on_export(self) -> None:
        path = self.run_combo.currentData()
        if path:
            from desktop_ft.ui.export_dialog import ExportDialog

            ExportDialog(path, self).open()

    # -- probe set --------------------------------------------------------------------------------
    def _load_probe_table(self, path: str | None) -> None:
        rows = compare.read_table(path) if path else []
        self.probe_table.setRowCount(len(rows))
        c = theme.colors()
        changed = 0
        for r, row in enumerate(rows):
            base, tuned = str(row.get("base", "")).strip(), str(row.get("tuned", "")).strip()
            differs = base.strip() != tuned.strip()
            changed += differs
            checkpoint = row.get("checkpoint")
            values = [row.get("prompt", ""), f"step {checkpoint}" if checkpoint is not None else "final", base, tuned]
            for col, value in enumerate(values):
                item = QTableWidgetItem(str(value))
                item.setToolTip(str(value)[:3000])
                if col == 3 and differs:
                    item.setBackground(QColor(c.accent).lighter(185) if not c.dark else QColor("#23407a"))
                self.probe_table.setItem(r, col, item)
        self.probe_table.resizeRowsToContents()
        for r in range(self.probe_table.rowCount()):  # long answers scroll in their tooltip, not the table
            self.probe_table.setRowHeight(r, min(self.probe_table.rowHeight(r), 140))
        self.probe_note.setText(f"{len(rows)} saved probe answers; {changed} changed after training (highlighted). "
                                "Run 'desktop-ft compare RUN_DIR' to add more." if rows else
                                "No probe set saved for this run yet. Replay it here, or run 'desktop-ft compare "
                                "RUN_DIR --checkpoints' to replay it on every checkpoint.")

    def _on_replay(self) -> None:
        path = self.run_combo.currentData()
        if not path or self.model is None or self._busy:
            return
        self._stop.clear()
        self._set_busy(True)
        self.replay_button.setEnabled(False)
        self._workers.append(run_async(self, compare.replay, path, chat=self.model,
                                       settings=self.generation_settings(), stop=self._stop,
                                       on_event=lambda e: self._bridge.status.emit(_replay_status(e)),
                                       ml=True, on_result=self._on_replayed, on_error=self._on_generate_error))

    def _on_replayed(self, _results: Any) -> None:
        self._set_busy(False)
        self.replay_button.setEnabled(True)
        self._load_probe_table(self.run_combo.currentData())

    def _release_model(self) -> None:
        model, self.model = self.model, None
        if model is not None:
            model.close()

    def shutdown(self) -> None:
        """Stop generating (called when the window closes)."""
        self._stop.set()


def _switch(model: Any, step: int | None) -> Any:
    model.use_checkpoint(step)
    return model


def _generate_both(model: Any, histories: dict[str, list[dict[str, str]]], settings: Any, stop: threading.Event,
                   bridge: _Bridge) -> None:
    """Base first, then tuned, same prompt and settings; tokens stream to the panes as they come."""
    for side in ("base", "tuned"):
        if stop.is_set():
            break
        bridge.status.emit("The base model is answering…" if side == "base" else "The fine-tuned model is answering…")
        text = model.generate(histories[side], tuned=side == "tuned", settings=settings,
                              on_token=lambda t, s=side: bridge.token.emit(s, t), stop=stop)
        bridge.answered.emit(side, text)
    bridge.status.emit("Stopped." if stop.is_set() else "Both answered with the same prompt and settings.")
