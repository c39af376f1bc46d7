"""Method step: how the weights are trained (cards with one plain sentence each), presets, and the
settings — a form generated from the config dataclass fields, with "Advanced" folded away."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QFrame, QGridLayout, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from desktop_ft.core.config import field_info
from desktop_ft.core.errors import ConfigError
from desktop_ft.ui import core_api, theme
from desktop_ft.ui.page import Card, Note, Page
from desktop_ft.ui.session import Session
from desktop_ft.ui.settings_form import SettingsForm

#: chosen elsewhere (Model, Dataset pages, the method cards, the run folder)
NOT_HERE = {"model.name", "data.path", "output.output_dir", "method.method", "method.task"}
METHOD_ICONS = {"lora": "mdi6.puzzle-outline", "qlora": "mdi6.puzzle-check-outline", "full": "mdi6.weight-lifter",
                "dpo": "mdi6.thumbs-up-down-outline", "orpo": "mdi6.scale-balance", "kto": "mdi6.thumb-up-outline"}


def method_specs() -> list[dict[str, Any]]:
    """The methods the engine offers: from ``core.methods.METHODS`` when present, else the config's choices."""
    mod = core_api.methods_module()
    specs = getattr(mod, "METHODS", None) if mod else None
    if specs:
        out = []
        for name, spec in specs.items():
            out.append({"name": name, "title": getattr(spec, "title", name.upper()),
                        "sentence": getattr(spec, "sentence", ""), "needs_cuda": bool(getattr(spec, "needs_cuda", False))})
        return out
    info = field_info("method.method")
    return [{"name": n, "title": n.upper() if len(n) <= 5 else n.title(), "sentence": info.metadata["help"].split(": ", 1)[-1]
             if n == "lora" else "", "needs_cuda": False} for n in info.metadata.get("choices", [])]


def presets() -> dict[str, Any]:
    mod = core_api.methods_module()
    return dict(getattr(mod, "PRESETS", {}) or {}) if mod else {}


class MethodCard(QFrame):
    clicked = Signal(str)

    def __init__(self, spec: dict[str, Any], cuda: bool | None) -> None:
        super().__init__()
        self.setObjectName("Card")
        self.name = spec["name"]
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(14, 12, 14, 12)
        row = QHBoxLayout()
        pic = theme.label("")
        pic.setPixmap(theme.icon(METHOD_ICONS.get(self.name, "mdi6.tune"), theme.colors().accent).pixmap(22, 22))
        row.addWidget(pic)
        row.addWidget(theme.label(spec["title"], "CardTitle"))
        row.addStretch(1)
        lay.addLayout(row)
        text = theme.label(spec["sentence"] or "", wrap=True)
        text.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
        lay.addWidget(text)
        self.available = not (spec["needs_cuda"] and cuda is False)
        if spec["needs_cuda"]:
            lay.addWidget(theme.label("Needs an NVIDIA GPU" + (" — none found here" if cuda is False else ""),
                                      "Warn" if cuda is False else "Muted"))
        lay.addStretch(1)
        self.setEnabled(self.available)
        self.setMinimumHeight(110)

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self.available:
            self.clicked.emit(self.name)
        super().mousePressEvent(event)


class MethodPage(Page):
    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__("How should it learn?", "Pick a method and a starting point. Every setting explains "
                         "itself when you hover it; the defaults are good for a first run.", parent)
        self.session = session
        self.cards: dict[str, MethodCard] = {}
        grid = QGridLayout()
        grid.setSpacing(12)
        for i, spec in enumerate(method_specs()):
            card = MethodCard(spec, cuda=None)
            card.clicked.connect(self._on_method)
            grid.addWidget(card, i // 3, i % 3)
            self.cards[spec["name"]] = card
        for c in range(3):
            grid.setColumnStretch(c, 1)
        self.content.addLayout(grid)

        task_info = field_info("method.task")
        task_row = QHBoxLayout()
        task_row.addWidget(theme.label("Objective", "CardTitle"))
        self.task = QComboBox()
        mod = core_api.methods_module()
        tasks = getattr(mod, "TASKS", None) if mod else None
        self.task.addItems(list(tasks) if tasks else list(task_info.metadata.get("choices", ["sft"])))
        self.task.setToolTip(task_info.metadata["help"])
        self.task.currentTextChanged.connect(self._on_task)
        task_row.addWidget(self.task)
        self.task_help = theme.label(task_info.metadata["help"], "Muted", wrap=True)
        task_row.addWidget(self.task_help, 1)
        self.content.addLayout(task_row)

        preset_card = Card("Start from a preset", "mdi6.lightning-bolt")
        found = presets()
        if found:
            row = QHBoxLayout()
            for name, preset in found.items():
                b = QPushButton(getattr(preset, "title", name))
                b.setToolTip(getattr(preset, "description", ""))
                b.clicked.connect(lambda _c=False, p=preset: self._on_preset(p))
                row.addWidget(b)
            row.addStretch(1)
            preset_card.body.addLayout(row)
        else:
            preset_card.body.addWidget(Note("Presets are not available in this build yet; the defaults "
                                            "below are a sensible first run."))
        self.content.addWidget(preset_card)

        self.problems = theme.label("", "Warn", wrap=True)
        self.problems.hide()
        self.content.addWidget(self.problems)

        settings = Card("Settings", "mdi6.tune-variant")
        self.form = SettingsForm(session, lambda s, f: f"{s}.{f.name}" not in NOT_HERE and not f.metadata.get("advanced"))
        settings.body.addWidget(self.form)
        self.content.addWidget(settings)

        from superqt import QCollapsible

        self.advanced = QCollapsible("Advanced settings")
        self.advanced_form = SettingsForm(session, lambda s, f: f"{s}.{f.name}" not in NOT_HERE
                                          and bool(f.metadata.get("advanced")))
        self.advanced.addWidget(self.advanced_form)
        adv_card = Card()
        adv_card.body.addWidget(self.advanced)
        self.content.addWidget(adv_card)
        self.content.addStretch(1)

        session.configChanged.connect(self._on_config_changed)
        self._on_config_changed(session.config)

    def _on_method(self, name: str) -> None:
        try:
            self.session.update({"method.method": name})
        except ConfigError as exc:
            self._show_problems([str(exc)])

    def _on_task(self, name: str) -> None:
        if name and name != self.session.config.method.task:
            try:
                self.session.update({"method.task": name})
            except ConfigError as exc:
                self._show_problems([str(exc)])

    def _on_preset(self, preset: Any) -> None:
        try:
            self.session.update(dict(getattr(preset, "overrides", {})))
        except ConfigError as exc:
            self._show_problems([str(exc)])

    def _on_config_changed(self, config) -> None:
        for name, card in self.cards.items():
            card.setProperty("selected", "true" if name == config.method.method else "false")
            card.style().unpolish(card)
            card.style().polish(card)
        if self.task.currentText() != config.method.task:
            self.task.blockSignals(True)
            self.task.setCurrentText(config.method.task)
            self.task.blockSignals(False)
        mod = core_api.methods_module()
        warn = getattr(mod, "warnings_for", None) if mod else None
        messages: list[str] = []
        if warn is not None:
            try:
                messages = list(warn(config))
            except Exception as exc:  # a bug in a check must not break the page
                messages = [f"Could not check this combination ({type(exc).__name__}: {exc})."]
        self._show_problems(messages)

    def _show_problems(self, messages: list[str]) -> None:
        self.problems.setText("\n".join(f"⚠ {m}" for m in messages))
        self.problems.setVisible(bool(messages))


if __name__ == "__main__":
    import sys

    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv)
    theme.apply(app)
    page = MethodPage(Session())
    page.resize(1000, 760)
    page.show()
    sys.exit(app.exec())
