"""Export a run: adapter folder, merged model, GGUF or an Ollama Modelfile, with progress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLineEdit,
                               QPlainTextEdit, QProgressBar, QPushButton, QVBoxLayout, QWidget)

from desktop_ft.core import export as core_export
from desktop_ft.core.events import Progress
from desktop_ft.ui import theme
from desktop_ft.ui.workers import run_async

FORMATS = [("adapter", "LoRA adapter folder (peft)"), ("merged", "Merged model (safetensors, loads anywhere)"),
           ("gguf", "GGUF file (llama.cpp, LM Studio)"), ("ollama", "Ollama (GGUF + Modelfile)")]


class _Bridge(QObject):
    progress = Signal(object)


class ExportDialog(QDialog):
    exported = Signal(object)

    def __init__(self, run_dir: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.setMinimumWidth(560)
        self.run_dir = run_dir
        self._worker: Any = None
        self._bridge = _Bridge()
        self._bridge.progress.connect(self._on_progress)
        lay = QVBoxLayout(self)
        lay.addWidget(theme.label(f"Export {Path(run_dir).name}", "CardTitle"))
        form = QFormLayout()
        self.format = QComboBox()
        for key, text in FORMATS:
            self.format.addItem(text, key)
        self.format.currentIndexChanged.connect(self._on_format)
        form.addRow("Format", self.format)
        self.quant = QComboBox()
        self.quant.addItems(["q8_0", "f16"])
        form.addRow("Quantization", self.quant)
        out_row = QHBoxLayout()
        self.out = QLineEdit(str(Path(run_dir) / "export"))
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._on_browse)
        out_row.addWidget(self.out, 1)
        out_row.addWidget(browse)
        form.addRow("Folder", out_row)
        lay.addLayout(form)
        self.bar = QProgressBar()
        self.bar.setRange(0, 100)
        self.bar.setValue(0)
        lay.addWidget(self.bar)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumHeight(140)
        lay.addWidget(self.log)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.ActionRole)
        self.export_button.setObjectName("Primary")
        self.export_button.clicked.connect(self._on_export)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)
        self._on_format()

    def _on_format(self) -> None:
        self.quant.setEnabled(self.format.currentData() in ("gguf", "ollama"))

    def _on_browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Export into")
        if path:
            self.out.setText(path)

    def _on_export(self) -> None:
        fmt = self.format.currentData()
        quant = self.quant.currentText() if self.quant.isEnabled() else None
        self.export_button.setEnabled(False)
        self.bar.setRange(0, 0)
        self.log.appendPlainText(f"Exporting as {fmt}…")
        emit = self._bridge.progress.emit
        self._worker = run_async(self, core_export.export, self.run_dir, fmt, self.out.text(), quantization=quant,
                                 on_event=emit,
                                 ml=True, on_result=self._on_done, on_error=self._on_error)

    def _on_progress(self, event: Progress) -> None:
        self.log.appendPlainText(event.message)
        if event.fraction is not None:
            self.bar.setRange(0, 100)
            self.bar.setValue(int(event.fraction * 100))

    def _on_done(self, result: core_export.ExportResult) -> None:
        self.bar.setRange(0, 100)
        self.bar.setValue(100)
        self.log.appendPlainText(f"Done: {result.path}")
        self.export_button.setEnabled(True)
        self.exported.emit(result)

    def _on_error(self, exc: BaseException) -> None:
        self.bar.setRange(0, 100)
        self.bar.setValue(0)
        self.log.appendPlainText(f"Export failed: {exc}")
        self.export_button.setEnabled(True)
