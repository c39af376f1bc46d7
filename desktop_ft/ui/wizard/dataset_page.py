"""Dataset step: drop or pick a file (or take the sample), see its format, a preview, the rows that
cannot be used (with line numbers), token lengths against the max length, and one example with
the tokens that count toward the loss highlighted."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QAbstractListModel, QModelIndex, QSettings, Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QListView,
                               QPlainTextEdit, QPushButton, QSplitter, QTableWidget, QTableWidgetItem, QTabWidget,
                               QTextBrowser, QVBoxLayout, QWidget)

from desktop_ft import resources
from desktop_ft.core import datasets as core_datasets
from desktop_ft.core.errors import ConfigError, ModelError, UserError
from desktop_ft.core.lengths import local_tokenizer
from desktop_ft.ui import theme
from desktop_ft.ui.page import Card, Page
from desktop_ft.ui.session import Session
from desktop_ft.ui.workers import run_async

RECENT_KEY = "recent/datasets"


# -- work done in a worker thread ---------------------------------------------------------------------

def inspect_file(path: str, model_name: str, max_length: int, columns: dict[str, str] | None = None,
                 assistant_only_loss: bool = True) -> dict[str, Any]:
    """Load ``path`` and measure it as ``desktop-ft data inspect`` does (``datasets.inspect_dataset``), with
    the model's tokenizer where it is available offline; the example is highlighted by ``loss_segments``."""
    data = core_datasets.load_dataset(path or resources.sample_dataset(), columns=columns or None)
    result: dict[str, Any] = {"data": data, "lengths": None, "segments": None, "tokenizer_error": None}
    try:
        tokenizer = local_tokenizer(model_name)
    except ModelError as exc:  # no tokenizer on this machine: the page says so, and shows what needs none
        result["tokenizer_error"] = str(exc)
        tokenizer = None
    report = core_datasets.inspect_dataset(data, tokenizer, max_length=max_length,
                                           assistant_only_loss=assistant_only_loss)
    result["report"] = report
    if tokenizer is not None:
        result["lengths"] = [n for n in report.lengths if n is not None]
    if tokenizer is not None and data.rows:
        result["segments"] = core_datasets.loss_segments(data.rows[0], tokenizer, data.kind, recipe=report.recipe,
                                                         max_length=max_length)
    problems = [(err.line, err.message) for err in data.errors]
    problems += [(int(e["line"]), str(e["message"])) for e in report.template_errors]
    result["problems"] = problems
    result["offsets"] = {}
    if data.unit == "line" and problems and Path(data.path).is_file():  # so showing a line is a seek, not a scan
        result["offsets"] = core_datasets.line_offsets(data.path, (line for line, _ in problems))
    return result


class ProblemsModel(QAbstractListModel):
    """The rows that cannot be used, for a list view: rows are formatted only when the view draws them."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._problems: list[tuple[int, str]] = []

    def set_problems(self, problems: list[tuple[int, str]]) -> None:
        self.beginResetModel()
        self._problems = problems
        self.endResetModel()

    def problem(self, row: int) -> tuple[int, str]:
        return self._problems[row]

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008 - Qt's own default
        return 0 if parent.isValid() else len(self._problems)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and index.isValid():
            line, message = self._problems[index.row()]
            return f"line {line}: {message}"
        return None


# -- the page -----------------------------------------------------------------------------------------

class DatasetPage(Page):
    inspected = Signal(object)   # the result dict, after the page showed it

    def __init__(self, session: Session, settings: QSettings | None = None, parent: QWidget | None = None) -> None:
        super().__init__("What should it learn from?", "A file of examples — chat conversations, prompt/answer "
                         "pairs, preference pairs or plain text (JSONL, JSON, CSV, Parquet, TXT). Drop it here or "
                         "pick it; the sample dataset is one click away.", parent)
        self.session = session
        self.settings = settings or QSettings()
        self.result: dict[str, Any] | None = None
        self._request = 0
        self._workers: list[Any] = []
        self.setAcceptDrops(True)

        drop = Card()
        drop_row = QHBoxLayout()
        pic = QLabel()
        pic.setPixmap(theme.icon("mdi6.file-upload-outline", theme.colors().accent).pixmap(40, 40))
        drop_row.addWidget(pic)
        texts = QVBoxLayout()
        self.file_label = theme.label("", "CardTitle", wrap=True)
        texts.addWidget(self.file_label)
        self.summary = theme.label("Drop a file anywhere on this page.", "Muted", wrap=True)
        texts.addWidget(self.summary)
        drop_row.addLayout(texts, 1)
        pick = QPushButton(theme.icon("mdi6.folder-open-outline"), "  Choose file…")
        pick.clicked.connect(self._on_pick)
        sample = QPushButton(theme.icon("mdi6.star-outline"), "  Use the sample dataset")
        sample.clicked.connect(self._on_sample)
        drop_row.addWidget(pick)
        drop_row.addWidget(sample)
        drop.body.addLayout(drop_row)
        self.error = theme.label("", "Bad", wrap=True)
        self.error.hide()
        drop.body.addWidget(self.error)
        self.content.addWidget(drop)

        self.tabs = QTabWidget()
        self.tabs.setMinimumHeight(430)
        self.preview = QTableWidget(0, 3)
        self.preview.setHorizontalHeaderLabels(["Line", "Prompt", "Answer"])
        self.preview.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.preview.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.preview.verticalHeader().hide()
        self.preview.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.preview.setWordWrap(False)
        self.preview.setAlternatingRowColors(True)
        self.tabs.addTab(self.preview, theme.icon("mdi6.table"), "Preview")

        problems = QSplitter(Qt.Orientation.Vertical)
        self.problems = ProblemsModel(self)
        self.problem_list = QListView()
        self.problem_list.setObjectName("Plain")
        self.problem_list.setUniformItemSizes(True)  # a million problems lay out as fast as ten
        self.problem_list.setModel(self.problems)
        self.problem_list.selectionModel().currentRowChanged.connect(lambda cur, _prev: self._on_problem_row(cur.row()))
        problems.addWidget(self.problem_list)
        self.problem_row = QPlainTextEdit()
        self.problem_row.setReadOnly(True)
        self.problem_row.setFont(theme.mono_font())
        self.problem_row.setPlaceholderText("Click a problem to see its line.")
        problems.addWidget(self.problem_row)
        self.tabs.addTab(problems, theme.icon("mdi6.alert-outline"), "Problems")

        lengths = QWidget()
        lay = QVBoxLayout(lengths)
        self.length_text = theme.label("", wrap=True)
        lay.addWidget(self.length_text)
        import pyqtgraph as pg

        c = theme.colors()
        self.hist = pg.PlotWidget(background=c.panel)
        self.hist.showGrid(x=False, y=True, alpha=0.15)
        self.hist.setLabel("bottom", "tokens per example")
        self.hist.setLabel("left", "examples")
        self.hist.setMouseEnabled(x=False, y=False)
        self.hist.setMinimumHeight(300)
        lay.addWidget(self.hist, 1)
        self.tabs.addTab(lengths, theme.icon("mdi6.chart-bar"), "Token lengths")

        self.example = QTextBrowser()
        self.tabs.addTab(self.example, theme.icon("mdi6.eye-outline"), "What the model learns")
        self.content.addWidget(self.tabs, 1)

        session.configChanged.connect(self._on_config_changed)
        self._key = None
        self._on_config_changed(session.config)

    # -- drag and drop --------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt override
        urls = event.mimeData().urls()
        if urls:
            self.choose(urls[0].toLocalFile())

    # -- slots ----------------------------------------------------------------------------------
    def _on_pick(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a dataset", "",
                                              "Datasets (*.jsonl *.json *.csv *.parquet *.txt);;All files (*)")
        if path:
            self.choose(path)

    def _on_sample(self) -> None:
        self.choose(str(resources.sample_dataset()))

    def choose(self, path: str) -> None:
        try:
            self.session.update({"data.path": path})
        except ConfigError as exc:
            self._show_error(str(exc))
            return
        recent = [r for r in (self.settings.value(RECENT_KEY) or []) if r and r != path]
        self.settings.setValue(RECENT_KEY, [path] + recent[:7])

    def _on_config_changed(self, config) -> None:
        key = (config.data.path, config.model.name, tuple(sorted(config.data.columns.items())),
               config.method.assistant_only_loss)
        if key != self._key:
            self._key = key
            self._load(config)
        elif self.result is not None:
            self._show_lengths(config.training.max_length)

    def _load(self, config) -> None:
        path = config.data.path or str(resources.sample_dataset())
        self.file_label.setText(Path(path).name + ("  (sample)" if not config.data.path or
                                                     Path(path) == resources.sample_dataset() else ""))
        self.summary.setText("Reading…")
        self.error.hide()
        self._request += 1
        req = self._request
        self._workers.append(run_async(self, inspect_file, path, config.model.name, config.training.max_length,
                                       config.data.columns or None, config.method.assistant_only_loss,
                                       ml=True, on_result=lambda r, q=req: self._on_result(q, r),
                                       on_error=lambda e, q=req: self._on_error(q, e)))

    def _on_error(self, req: int, exc: BaseException) -> None:
        if req != self._request:
            return
        self.summary.setText("This file cannot be used.")
        self._show_error(str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}")

    def _show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.show()

    def _on_result(self, req: int, result: dict[str, Any]) -> None:
        if req != self._request:
            return
        self.result = result
        data = result["data"]
        report = result["report"]
        bad = len(data.errors) + len(report.template_errors)
        dups = report.duplicates
        self.summary.setText(f"Format: {data.format} · kind: {data.kind.replace('_', ' ')} · {len(data.rows)} usable "
                             f"rows" + (f" · {bad} row(s) with problems (skipped when training)" if bad else
                                        " · no problems found")
                             + (f" · {dups} duplicate row(s)" if dups else ""))
        self._fill_preview(data)
        self.problems.set_problems(result["problems"])
        self.problem_row.clear()
        self.tabs.setTabText(1, f"Problems ({bad})")
        self._show_lengths(self.session.config.training.max_length)
        self._show_example(result.get("segments"))
        self.inspected.emit(result)

    def _fill_preview(self, data) -> None:
        rows = data.rows[:200]
        lines = data.lines[:len(rows)]  # one read of the store, not one per row
        self.preview.setRowCount(len(rows))
        for r, (row, line) in enumerate(zip(rows, lines)):
            prompt, answer = _prompt_answer(row)
            for c, text in enumerate((str(line), prompt, answer)):
                item = QTableWidgetItem(text.replace("\n", " ⏎ "))
                item.setToolTip(text[:2000])
                self.preview.setItem(r, c, item)
        self.preview.resizeColumnToContents(0)

    def _on_problem_row(self, row: int) -> None:
        if self.result is None or row < 0:
            return
        line, message = self.problems.problem(row)
        offset = self.result["offsets"].get(line)
        if offset is None:  # a row of a parquet/saved dataset, or a problem of the whole file
            self.problem_row.setPlainText(f"line {line}: {message}" if self.result["data"].unit == "line"
                                          else f"row {line}: {message}")
            return
        try:
            text = core_datasets.line_at(self.result["data"].path, offset)
        except OSError as exc:
            self.problem_row.setPlainText(f"Cannot read the file: {exc}")
            return
        self.problem_row.setPlainText(f"line {line}: {message}\n\n{text}")

    def _show_lengths(self, max_length: int) -> None:
        self.hist.clear()
        result = self.result or {}
        lengths = result.get("lengths")
        if not lengths:
            self.length_text.setText(result.get("tokenizer_error") and
                                     f"Token lengths need the model's tokenizer, which is not available offline: "
                                     f"{result['tokenizer_error']}" or "No rows to measure.")
            return
        import pyqtgraph as pg

        arr = np.asarray(lengths)
        truncated = int((arr > max_length).sum())
        top = max(int(arr.max()), max_length) * 1.05
        counts, edges = np.histogram(arr, bins=min(40, max(5, len(arr) // 4)), range=(0, top))
        c = theme.colors()
        bars = pg.BarGraphItem(x0=edges[:-1], x1=edges[1:], height=counts, brush=pg.mkBrush(c.series[0]),
                               pen=pg.mkPen(c.panel))
        self.hist.addItem(bars)
        line = pg.InfiniteLine(pos=max_length, angle=90, pen=pg.mkPen(c.bad, width=2, style=Qt.PenStyle.DashLine),
                               label=f"max length {max_length}", labelOpts={"color": c.bad, "position": 0.9})
        self.hist.addItem(line)
        med, p95 = int(np.median(arr)), int(np.percentile(arr, 95))
        verdict = (f"<span style='color:{c.bad}'><b>{truncated} row(s) would be truncated</b></span> at the max length "
                   f"of {max_length} tokens." if truncated else
                   f"<span style='color:{c.good}'><b>No row would be truncated</b></span> at the max length of "
                   f"{max_length} tokens.")
        self.length_text.setText(f"{verdict} Shortest {arr.min()}, median {med}, 95% under {p95}, longest "
                                 f"{arr.max()} tokens (measured with the model's chat template).")

    def _show_example(self, segments: list[tuple[str, bool]] | None) -> None:
        c = theme.colors()
        if not segments:
            self.example.setHtml(f"<p style='color:{c.muted}'>The rendered example needs the model's tokenizer.</p>")
            return
        bg = "#dbe7ff" if not c.dark else "#23407a"
        parts = []
        for text, learned in segments:
            esc = html.escape(text)
            if learned:
                parts.append(f"<span style='background:{bg}; color:{c.text}; font-weight:600'>{esc}</span>")
            else:
                parts.append(f"<span style='color:{c.muted}'>{esc}</span>")
        self.example.setHtml(
            f"<p style='color:{c.muted}'>The first example as the model sees it (through its chat template). "
            f"<span style='background:{bg}; color:{c.text}; font-weight:600'>&nbsp;Highlighted&nbsp;</span> text "
            f"counts toward the loss — that is what the model learns to write; grey text is context only.</p>"
            f"<pre style='font-family:\"DejaVu Sans Mono\",monospace; font-size:10pt; white-space:pre-wrap'>"
            + "".join(parts) + "</pre>")


def _prompt_answer(row: dict[str, Any]) -> tuple[str, str]:
    if "messages" in row:
        msgs = row["messages"]
        last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=len(msgs) - 1)
        prompt = next((m["content"] for m in reversed(msgs[:last]) if m["role"] == "user"), "")
        return prompt, msgs[last]["content"]
    if "prompt" in row:
        def text(v: Any) -> str:
            if isinstance(v, list):
                return " ".join(str(m.get("content", "")) for m in v if isinstance(m, dict))
            return str(v)
        return text(row["prompt"]), text(row.get("completion") or row.get("chosen") or "")
    return str(row.get("text", ""))[:300], ""


if __name__ == "__main__":
    import sys

    from desktop_ft.ui.app import create_app

    app = create_app(sys.argv)
    page = DatasetPage(Session())
    page.resize(1000, 760)
    page.show()
    sys.exit(app.exec())
