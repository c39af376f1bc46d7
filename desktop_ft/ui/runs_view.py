"""Runs page: every run on disk — state, method, model, dataset, final loss, duration — and what to
do with them: reopen (curves, chat), compare curves and configs, resume, follow a run still going,
delete (asks first), open its folder, copy its CLI command."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QAction, QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (QAbstractItemView, QHeaderView, QMessageBox, QSizePolicy,
                               QSplitter, QTableWidget, QTableWidgetItem, QTabWidget, QToolBar, QWidget)

from desktop_ft.core import curves, history
from desktop_ft.core import runs as core_runs
from desktop_ft.ui import theme
from desktop_ft.ui.loss_plots import LossPlots
from desktop_ft.ui.page import Page
from desktop_ft.ui.workers import run_async

COLUMNS = ["Run", "State", "Method", "Model", "Dataset", "Final loss", "Steps", "Duration", "Started"]
STATE_ICONS = {"running": "mdi6.progress-clock", "finished": "mdi6.check-circle", "stopped": "mdi6.pause-circle",
               "failed": "mdi6.close-circle"}


def scan_runs(root: Path | None = None) -> list[dict[str, Any]]:
    """One row per run folder, newest first, from ``history.list_summaries`` (what ``desktop-ft runs
    list`` prints), with the table's texts already made (worker thread: this grows with the number of
    runs). A folder that cannot be read is one row saying why."""
    return [_guarded_row(summary) for summary in history.list_summaries(root)]


def _guarded_row(s: history.RunSummary) -> dict[str, Any]:
    """``_row``, or a row saying the folder cannot be read: one bad status.json (a field of the wrong
    type, say) must be one bad row, never an empty list."""
    try:
        return _row(s)
    except (TypeError, ValueError) as exc:
        error = f"This run folder cannot be read: status.json has a value of the wrong type ({exc})."
        return {"path": s.path, "state": "failed", "live": False, "pid": None, "error": error,
                "values": [Path(s.path).name, "unreadable", "?", "?", "?", "–", "–", "–", ""]}


def _row(s: history.RunSummary) -> dict[str, Any]:
    values = [s.name,
              s.state + (" (live)" if s.live else ""),
              s.method.upper(),
              _model_label(s.model),
              Path(s.dataset).name,
              f"{s.final_loss:.4f}" if s.final_loss is not None else "–",
              f"{s.step}/{s.max_steps}" if s.max_steps else str(s.step),
              theme.human_duration(s.duration_seconds),
              (s.started_at or "")[:16].replace("T", " ")]
    return {"path": s.path, "state": s.state, "live": s.live, "pid": s.pid, "values": values,
            "error": s.error or s.config_error}


def read_curves(paths: list[str]) -> dict[str, dict[str, Any]]:
    """The saved curves of each selected run, as numpy columns (worker thread)."""
    return {p: curves.read_curves(p) for p in paths}


def cli_command(path: str, state: str) -> str:
    if state in ("stopped", "failed"):
        return f"desktop-ft train --resume {shlex.quote(path)}"
    return f"desktop-ft train {shlex.quote(str(Path(path) / 'config.yaml'))}"


def _model_label(name: str) -> str:
    from desktop_ft.core.embedded import is_embedded

    return "SmolLM2-135M (built in)" if is_embedded(name) else Path(name).name or name


class RunsView(Page):
    openRequested = Signal(str)
    resumeRequested = Signal(str)
    followRequested = Signal(str, int)
    chatRequested = Signal(str)
    refreshed = Signal(int)   # number of runs listed
    curvesShown = Signal(int)
    configShown = Signal(int)  # config rows shown (one run: all of them; several: the differences)

    def __init__(self, root: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__("Runs", "Every run on this machine. Select one to see its curves; select several "
                         "to compare them.", parent, scroll=False)
        self.root = root
        self.runs: list[dict[str, Any]] = []
        self._workers: list[Any] = []
        self._req = 0

        # a tool bar, not a row of buttons: where the window is too narrow for all of them, the last
        # ones move into its » menu instead of setting the window's width (a row needed 1,250 px)
        bar = QToolBar()
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        bar.setIconSize(QSize(18, 18))
        self.buttons: dict[str, QAction] = {}
        for key, text, icon, slot in [
            ("open", "Open", "mdi6.chart-line", self._on_open),
            ("chat", "Chat", "mdi6.chat-processing-outline", self._on_chat),
            ("resume", "Resume", "mdi6.restart", self._on_resume),
            ("follow", "Follow", "mdi6.eye-outline", self._on_follow),
            ("folder", "Open folder", "mdi6.folder-open-outline", self._on_folder),
            ("copy", "Copy CLI command", "mdi6.content-copy", self._on_copy),
            ("delete", "Delete…", "mdi6.delete-outline", self._on_delete),
        ]:
            action = bar.addAction(theme.icon(icon, theme.colors().bad if key == "delete" else None), text)
            action.triggered.connect(slot)
            self.buttons[key] = action
        bar.widgetForAction(self.buttons["delete"]).setObjectName("Danger")
        spacer = QWidget()
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        bar.addWidget(spacer)
        refresh = bar.addAction(theme.icon("mdi6.refresh"), "")
        refresh.setToolTip("Look for runs again")
        refresh.triggered.connect(self.refresh)
        self.content.addWidget(bar)
        self.message = theme.label("", "Muted", wrap=True)
        self.content.addWidget(self.message)

        split = QSplitter(Qt.Orientation.Vertical)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        header = self.table.horizontalHeader()
        # sized to their contents once per listing (``_on_runs``): ResizeToContents would measure every
        # row again on every cell set, which made listing 500 runs take minutes
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setResizeContentsPrecision(100)  # widths from the first 100 rows, not all of them
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.table.itemDoubleClicked.connect(lambda _i: self._on_open())
        split.addWidget(self.table)
        self.detail = QTabWidget()
        self.plots = LossPlots()
        self.detail.addTab(self.plots, theme.icon("mdi6.chart-line"), "Curves")
        self.config_table = QTableWidget(0, 1)
        self.config_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.config_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.detail.addTab(self.config_table, theme.icon("mdi6.compare-horizontal"), "Config")
        split.addWidget(self.detail)
        split.setSizes([260, 420])
        self.content.addWidget(split, 1)
        self._on_selection()

    # -- data -------------------------------------------------------------------------------------
    def refresh(self) -> None:
        self._req += 1
        req = self._req
        self._workers.append(run_async(self, scan_runs, self.root, on_result=lambda r, q=req: self._on_runs(q, r),
                                       on_error=lambda e: self.message.setText(f"Could not list runs: {e}")))

    def _on_runs(self, req: int, runs: list[dict[str, Any]]) -> None:
        if req != self._req:
            return
        selected = set(self.selected_paths())
        self.runs = runs
        self.table.setSortingEnabled(False)
        self.table.setUpdatesEnabled(False)
        self.table.blockSignals(True)  # one selection update after the fill, not one per row
        self.table.setRowCount(len(runs))
        c = theme.colors()
        icons: dict[str, Any] = {}  # one icon per state, not one per row
        for r, run in enumerate(runs):
            state = run["state"]
            if state not in icons:
                color = {"finished": c.good, "stopped": c.warn, "failed": c.bad}.get(state, c.accent)
                icons[state] = theme.icon(STATE_ICONS.get(state, "mdi6.help-circle-outline"), color)
            for col, text in enumerate(run["values"]):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, run["path"])
                if col == 0:
                    item.setToolTip(run["path"])
                if col == 1:
                    item.setIcon(icons[state])
                    if run["error"]:
                        item.setToolTip(run["error"])
                self.table.setItem(r, col, item)
        self.table.clearSelection()
        for r, run in enumerate(runs):
            if run["path"] in selected:
                self.table.selectRow(r)
        self.table.blockSignals(False)
        for col in range(1, self.table.columnCount()):
            self.table.resizeColumnToContents(col)
        self.table.setUpdatesEnabled(True)
        root = self.root or core_runs.default_runs_root()
        self.message.setText("" if runs else f"No runs yet. Runs are kept in {root}.")
        self.message.setVisible(bool(self.message.text()))
        self._on_selection()
        self.refreshed.emit(len(runs))

    def selected_paths(self) -> list[str]:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        return [self.table.item(r, 0).data(Qt.ItemDataRole.UserRole) for r in rows if self.table.item(r, 0)]

    def select(self, paths: list[str]) -> None:
        self.table.clearSelection()
        mode = self.table.selectionMode()
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(Qt.ItemDataRole.UserRole) in paths:
                self.table.selectRow(r)
        self.table.setSelectionMode(mode)

    def _run(self, path: str) -> dict[str, Any] | None:
        return next((r for r in self.runs if r["path"] == path), None)

    # -- slots ------------------------------------------------------------------------------------
    def _on_selection(self) -> None:
        paths = self.selected_paths()
        one = len(paths) == 1
        run = self._run(paths[0]) if one else None
        state = run["state"] if run else None
        self.buttons["open"].setEnabled(one)
        self.buttons["chat"].setEnabled(one and state in ("finished", "stopped"))
        self.buttons["resume"].setEnabled(one and state in ("stopped", "failed"))
        self.buttons["follow"].setEnabled(one and bool(run and run["live"]))
        self.buttons["folder"].setEnabled(one)
        self.buttons["copy"].setEnabled(one)
        self.buttons["delete"].setEnabled(bool(paths) and not any((self._run(p) or {}).get("live") for p in paths))
        if paths:
            self._workers.append(run_async(self, read_curves, paths, on_result=self._on_curves))
            self._workers.append(run_async(self, _diff, paths, on_result=lambda d, p=paths: self._show_config(p, d)))
        else:
            self.plots.clear()
            self._show_config([], {})

    def _on_curves(self, curves: dict[str, dict[str, Any]]) -> None:
        if set(curves) != set(self.selected_paths()):
            return
        self.plots.clear()
        many = len(curves) > 1
        for path, columns in curves.items():
            self.plots.add_history(columns, run=Path(path).name if many else "")
        self.plots.redraw_now()
        self.curvesShown.emit(len(curves))

    def _show_config(self, paths: list[str], diff: dict[str, list[Any]]) -> None:
        """One run: its config (and outcome); several: only what differs (``history.config_diff``, as
        ``desktop-ft runs diff`` prints it)."""
        if paths != self.selected_paths():
            return
        keys = list(diff)
        self.detail.setTabText(1, f"Config differences ({len(keys)})" if len(paths) > 1 else "Config")
        self.config_table.setColumnCount(max(1, len(paths)))
        self.config_table.setHorizontalHeaderLabels([Path(p).name for p in paths] or [""])
        self.config_table.setRowCount(len(keys))
        self.config_table.setVerticalHeaderLabels(keys)
        for r, key in enumerate(keys):
            for c, value in enumerate(diff[key]):
                self.config_table.setItem(r, c, QTableWidgetItem("–" if value is None else str(value)))
        self.configShown.emit(len(keys))

    def _one(self) -> str | None:
        paths = self.selected_paths()
        return paths[0] if len(paths) == 1 else None

    def _on_open(self) -> None:
        if (p := self._one()):
            self.openRequested.emit(p)

    def _on_chat(self) -> None:
        if (p := self._one()):
            self.chatRequested.emit(p)

    def _on_resume(self) -> None:
        if (p := self._one()):
            self.resumeRequested.emit(p)

    def _on_follow(self) -> None:
        if (p := self._one()) and (run := self._run(p)):
            self.followRequested.emit(p, int(run["pid"] or 0))

    def _on_folder(self) -> None:
        if (p := self._one()):
            QDesktopServices.openUrl(QUrl.fromLocalFile(p))

    def _on_copy(self) -> None:
        if (p := self._one()) and (run := self._run(p)):
            text = cli_command(p, run["state"])
            QGuiApplication.clipboard().setText(text)
            self.message.setText(f"Copied: {text}")
            self.message.show()

    def _on_delete(self) -> None:
        paths = self.selected_paths()
        if not paths:
            return
        names = "\n".join(Path(p).name for p in paths)
        answer = QMessageBox.question(self, "Delete runs?", f"Delete {len(paths)} run folder(s) and everything in "
                                      f"them (adapter, checkpoints, curves)?\n\n{names}",
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        if answer != QMessageBox.StandardButton.Yes:
            return
        self._workers.append(run_async(self, _delete, paths, on_result=lambda _r: self.refresh(),
                                       on_error=lambda e: self.message.setText(f"Could not delete: {e}")))


def _delete(paths: list[str]) -> list[str]:
    """Delete the run folders (worker thread); every one is checked first, so a refusal deletes none."""
    folders = [history.check_deletable(Path(p)) for p in paths]
    return [str(history.delete_run(folder)) for folder in folders]


def _diff(paths: list[str]) -> dict[str, list[Any]]:
    return history.config_diff([Path(p) for p in paths])


if __name__ == "__main__":
    import sys

    from desktop_ft.ui.app import create_app

    app = create_app(sys.argv)
    view = RunsView()
    view.refresh()
    view.resize(1100, 760)
    view.show()
    sys.exit(app.exec())
