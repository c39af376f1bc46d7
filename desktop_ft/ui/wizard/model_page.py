"""Model step: pick the base model (built-in, catalog, local Hugging Face cache, a folder, a GGUF file
or a Hub id), see what it is, and see what this machine has."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtWidgets import (QFormLayout, QHBoxLayout, QLineEdit, QListWidget, QListWidgetItem, QPushButton,
                               QVBoxLayout, QWidget)

from desktop_ft.core import embedded
from desktop_ft.core.errors import ConfigError, UserError
from desktop_ft.ui import theme
from desktop_ft.ui.page import Card, Note, Page
from desktop_ft.ui.session import Session

RECENT_KEY = "recent/models"


# -- work done in worker threads (plain functions; what they import loads there, after the window shows) ------

def describe_model(name: str) -> dict[str, Any]:
    """What is known about a model, without loading it (``models.model_info``)."""
    from desktop_ft.core import models as core_models

    return core_models.model_info(name).to_dict()


def describe_hardware() -> dict[str, Any]:
    """This machine, as ``hardware.detect()`` sees it."""
    from desktop_ft.core.hardware import detect

    return detect().to_dict()


def list_choices() -> list[tuple[str, str, str]]:
    """``(group, label, name)`` for the list: the catalog and the local Hugging Face cache."""
    from desktop_ft.core import models as core_models

    out: list[tuple[str, str, str]] = []
    for m in core_models.catalog():
        extra = " · ".join(x for x in (_count(m.parameters), m.licence) if x)
        out.append(("Catalog", f"{m.title} — {extra}" if extra else m.title, m.id))
    for c in core_models.scan_hf_cache():
        size = c.size_on_disk_bytes
        out.append(("In your Hugging Face cache", f"{c.id} — {theme.human_bytes(size)}" if size else c.id, c.id))
    return out


# -- the page -----------------------------------------------------------------------------------------

class ModelPage(Page):
    infoReady = Signal(dict)
    hardwareReady = Signal(dict)

    def __init__(self, session: Session, settings: QSettings | None = None, parent: QWidget | None = None) -> None:
        super().__init__("Which model do you want to teach?", "The built-in model works offline and trains on "
                         "any computer. Bigger models learn more but need a GPU.", parent)
        self.session = session
        self.settings = settings or QSettings()
        self._workers: list[Any] = []
        self._shown: str | None = None  # the model whose details are shown (answers for others are dropped)
        row = QHBoxLayout()
        row.setSpacing(14)
        left = Card("Choose a model", "mdi6.cube-outline")
        self.list = QListWidget()
        self.list.setObjectName("Plain")
        self.list.setMinimumHeight(260)
        self.list.itemClicked.connect(self._on_item)
        left.body.addWidget(self.list, 1)
        buttons = QHBoxLayout()
        folder = QPushButton(theme.icon("mdi6.folder-outline"), " Model folder…")
        folder.clicked.connect(self._on_pick_folder)
        gguf = QPushButton(theme.icon("mdi6.file-outline"), " GGUF file…")
        gguf.clicked.connect(self._on_pick_gguf)
        buttons.addWidget(folder)
        buttons.addWidget(gguf)
        buttons.addStretch(1)
        left.body.addLayout(buttons)
        hub = QHBoxLayout()
        self.hub_id = QLineEdit()
        self.hub_id.setPlaceholderText("Hugging Face id, e.g. Qwen/Qwen2.5-0.5B-Instruct")
        self.hub_id.returnPressed.connect(self._on_use_hub)
        use = QPushButton("Use")
        use.clicked.connect(self._on_use_hub)
        hub.addWidget(self.hub_id, 1)
        hub.addWidget(use)
        left.body.addLayout(hub)
        self.error = theme.label("", "Bad", wrap=True)
        self.error.hide()
        left.body.addWidget(self.error)
        row.addWidget(left, 3)

        right = QVBoxLayout()
        right.setSpacing(14)
        self.info_card = Card("Selected model", "mdi6.information-outline")
        self.selected = theme.label("", "BigNumber", wrap=True)
        self.info_card.body.addWidget(self.selected)
        self.info_form = QFormLayout()
        self.info_form.setHorizontalSpacing(18)
        self.info_card.body.addLayout(self.info_form)
        self.info_note = theme.label("", "Muted", wrap=True)
        self.info_card.body.addWidget(self.info_note)
        right.addWidget(self.info_card)
        self.hw_card = Card("This machine", "mdi6.chip")
        self.hw_form = QFormLayout()
        self.hw_form.setHorizontalSpacing(18)
        self.hw_card.body.addLayout(self.hw_form)
        self.hw_note = Note("Looking at this machine…")
        self.hw_card.body.addWidget(self.hw_note)
        right.addWidget(self.hw_card)
        right.addStretch(1)
        row.addLayout(right, 2)
        self.content.addLayout(row, 1)

        self._fill_list([])
        self._scanned = False
        session.configChanged.connect(self._on_config_changed)
        self._show_selected(session.config.model.name, describe=False)  # described after the first paint

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().paintEvent(event)
        if not self._scanned:
            # The cache scan and hardware.detect() (which imports torch) start once the page is on the
            # screen: begun earlier, the import holds the interpreter while the first window is drawn.
            self._scanned = True
            QTimer.singleShot(0, self._start_scans)

    def _start_scans(self) -> None:
        from desktop_ft.ui.workers import run_async  # with the event classes: after the first paint

        if not self._described:
            self._describe(self._shown)
        self._workers.append(run_async(self, list_choices, on_result=self._fill_list, on_error=lambda e: None))
        self._workers.append(run_async(self, describe_hardware, on_result=self._on_hardware,
                                       on_error=self._on_hw_error))

    # -- list ------------------------------------------------------------------------------------
    def _fill_list(self, extra: list[tuple[str, str, str]]) -> None:
        self.list.clear()
        entries = [("Built in", f"{embedded.EMBEDDED_DISPLAY} — 135 M parameters, offline", "default")]
        recent = [str(r) for r in (self.settings.value(RECENT_KEY) or []) if r]
        entries += [("Recent", r, r) for r in recent if not embedded.is_embedded(r)]
        entries += extra
        group = None
        for g, label, name in entries:
            if g != group:
                header = QListWidgetItem(g.upper())
                header.setFlags(Qt.ItemFlag.NoItemFlags)
                f = header.font()
                f.setPointSizeF(f.pointSizeF() * 0.85)
                f.setBold(True)
                header.setFont(f)
                header.setForeground(self.palette().placeholderText())
                self.list.addItem(header)
                group = g
            item = QListWidgetItem(theme.icon("mdi6.cube-outline"), label)
            item.setData(Qt.ItemDataRole.UserRole, name)
            item.setToolTip(name)
            self.list.addItem(item)
        self._mark_current()

    def _mark_current(self) -> None:
        current = self.session.config.model.name
        for i in range(self.list.count()):
            item = self.list.item(i)
            name = item.data(Qt.ItemDataRole.UserRole)
            if name and (name == current or (embedded.is_embedded(name) and embedded.is_embedded(current))):
                self.list.setCurrentItem(item)
                return

    # -- slots -----------------------------------------------------------------------------------
    def _on_item(self, item: QListWidgetItem) -> None:
        name = item.data(Qt.ItemDataRole.UserRole)
        if name:
            self.choose(name)

    def _on_pick_folder(self) -> None:
        from PySide6.QtWidgets import QFileDialog  # its class costs the first show ~2 ms

        path = QFileDialog.getExistingDirectory(self, "Choose a Hugging Face model folder (with config.json)")
        if path:
            self.choose(path)

    def _on_pick_gguf(self) -> None:
        from PySide6.QtWidgets import QFileDialog  # its class costs the first show ~2 ms

        path, _ = QFileDialog.getOpenFileName(self, "Choose a GGUF model", "", "GGUF models (*.gguf)")
        if path:
            self.choose(path)

    def _on_use_hub(self) -> None:
        text = self.hub_id.text().strip()
        if text:
            self.choose(text)

    def choose(self, name: str) -> None:
        path = Path(name).expanduser()
        if not embedded.is_embedded(name) and path.is_dir() and not (path / "config.json").exists():
            self._error(f"{path} has no config.json, so it is not a Hugging Face model folder.")
            return
        try:
            self.session.update({"model.name": name})
        except ConfigError as exc:
            self._error(str(exc))
            return
        self.error.hide()
        if not embedded.is_embedded(name):
            recent = [r for r in (self.settings.value(RECENT_KEY) or []) if r and r != name]
            self.settings.setValue(RECENT_KEY, [name] + recent[:7])

    def _error(self, text: str) -> None:
        self.error.setText(text)
        self.error.show()

    def _on_config_changed(self, config) -> None:
        if config.model.name != self._shown:
            self._show_selected(config.model.name)

    def _show_selected(self, name: str, describe: bool = True) -> None:
        self._shown = name
        self.selected.setText(embedded.EMBEDDED_DISPLAY if embedded.is_embedded(name) else name)
        _clear_form(self.info_form)
        self.info_note.setText("Reading the model…")
        self._mark_current()
        self._described = False
        if describe:
            self._describe(name)

    def _describe(self, name: str) -> None:
        from desktop_ft.ui.workers import run_async

        self._described = True
        self._workers.append(run_async(self, describe_model, name, on_result=lambda d, n=name: self._on_info(n, d),
                                       on_error=lambda e, n=name: self._on_info_error(n, e)))

    def _on_info(self, name: str, info: dict) -> None:
        if name != self._shown:
            return
        _clear_form(self.info_form)
        rows = [("Architecture", info.get("architecture")),
                ("Parameters", _count(info.get("parameters"))),
                ("Weights", info.get("dtype")),
                ("Context", f"{info['context_length']:,} tokens" if info.get("context_length") else None),
                ("Chat template", _yes_no(info.get("has_chat_template"))),
                ("Size on disk", theme.human_bytes(info["size_on_disk_bytes"]) if info.get("size_on_disk_bytes")
                 else None),
                ("Licence", info.get("licence") or ("Apache-2.0" if embedded.is_embedded(name) else None)),
                ("Gated", _yes_no(info.get("gated")))]
        for key, value in rows:
            if value not in (None, ""):
                self.info_form.addRow(theme.label(key, "Muted"), theme.label(str(value)))
        note = info.get("note") or ""
        if info.get("has_chat_template") is False:
            note = "This model has no chat template: chat datasets cannot be formatted for it. Pick an instruct model."
        self.info_note.setText(note)
        self.info_note.setObjectName("Warn" if info.get("has_chat_template") is False else "Muted")
        self.info_note.style().polish(self.info_note)
        self.infoReady.emit(info)

    def _on_info_error(self, name: str, exc: BaseException) -> None:
        if name != self._shown:
            return
        self.info_note.setText(str(exc) if isinstance(exc, UserError) else f"Could not read this model: {exc}")
        self.info_note.setObjectName("Bad")
        self.info_note.style().polish(self.info_note)

    def _on_hardware(self, hw: dict) -> None:
        _clear_form(self.hw_form)
        gpus = hw["gpus"]
        if gpus:
            for g in gpus:
                self.hw_form.addRow(theme.label("GPU", "Muted"), theme.label(
                    f"{g.get('name')} — {theme.human_bytes(g.get('total_bytes'))} VRAM"
                    + (f" ({theme.human_bytes(g.get('free_bytes'))} free)" if g.get("free_bytes") else "")))
        else:
            self.hw_form.addRow(theme.label("GPU", "Muted"), theme.label("none found — training runs on the CPU"))
        if hw.get("mps"):
            self.hw_form.addRow(theme.label("Apple GPU", "Muted"), theme.label("available (MPS)"))
        self.hw_form.addRow(theme.label("CPU", "Muted"), theme.label(f"{hw.get('cpu_cores')} cores"))
        self.hw_form.addRow(theme.label("Memory", "Muted"), theme.label(
            f"{theme.human_bytes(hw.get('ram_total_bytes'))} "
            f"({theme.human_bytes(hw.get('ram_available_bytes'))} free)"))
        self.hw_form.addRow(theme.label("bf16", "Muted"), theme.label(_yes_no(hw["bf16"])))
        self.hw_form.addRow(theme.label("4-bit (QLoRA)", "Muted"), theme.label(
            "available" if hw["bitsandbytes"] else "not available (needs bitsandbytes and a CUDA GPU)"))
        self.hw_note.hide()
        self.hardwareReady.emit(hw)

    def _on_hw_error(self, exc: BaseException) -> None:
        self.hw_note.text.setText(f"Could not look at this machine: {exc}")


def _clear_form(form: QFormLayout) -> None:
    while form.rowCount():
        form.removeRow(0)


def _count(n: Any) -> str | None:
    if not n:
        return None
    n = float(n)
    if n >= 0.995e9:
        return f"{n / 1e9:.2f} B"
    if n >= 1e6:
        return f"{n / 1e6:.0f} M"
    return f"{n / 1e3:.0f} K"


def _yes_no(v: Any) -> str | None:
    return None if v is None else ("yes" if v else "no")


if __name__ == "__main__":
    import sys

    from desktop_ft.ui.app import create_app

    app = create_app(sys.argv)
    page = ModelPage(Session())
    page.resize(1000, 700)
    page.show()
    sys.exit(app.exec())
