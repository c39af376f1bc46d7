"""Method step: how the weights are trained (cards with one plain sentence each), presets, and the
settings — a form generated from the config dataclass fields, with "Advanced" folded away."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QFrame, QGridLayout, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from desktop_ft.core.config import RunConfig, all_dotted_keys, field_info, validate
from desktop_ft.core.errors import ConfigError
from desktop_ft.core.hardware import detect
from desktop_ft.core.methods import METHODS, PRESETS, TASKS, applies, warnings_for
from desktop_ft.core.presets import apply_preset
from desktop_ft.ui import theme
from desktop_ft.ui.page import Card, Page
from desktop_ft.ui.session import Session
from desktop_ft.ui.settings_form import SettingsForm
from desktop_ft.ui.workers import run_async

#: chosen elsewhere (Model, Dataset pages, the method cards, the run folder; how many GPUs: the Memory
#: page, and only on a machine that has several)
NOT_HERE = {"model.name", "data.path", "output.output_dir", "method.method", "method.task",
            *(k for k in all_dotted_keys() if k.startswith("distributed."))}
METHOD_ICONS = {"lora": "mdi6.puzzle-outline", "qlora": "mdi6.puzzle-check-outline", "full": "mdi6.weight-lifter",
                "dpo": "mdi6.thumbs-up-down-outline", "orpo": "mdi6.scale-balance", "kto": "mdi6.thumb-up-outline"}


def method_specs() -> list[dict[str, Any]]:
    """The methods the engine offers, as the registry (``core.methods.METHODS``) describes them."""
    return [{"name": name, "title": spec.title, "sentence": spec.sentence, "needs_cuda": spec.needs_cuda}
            for name, spec in METHODS.items()]


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
        self.needs_cuda = spec["needs_cuda"]
        self.available = True
        self.cuda_note = theme.label("Needs an NVIDIA GPU", "Muted", wrap=True)  # else its width sets the column's
        self.cuda_note.setVisible(self.needs_cuda)
        lay.addWidget(self.cuda_note)
        lay.addStretch(1)
        self.setMinimumHeight(110)
        self.set_cuda(cuda)

    def set_cuda(self, cuda: bool | None) -> None:
        """Grey the card out when it needs a GPU this machine does not have."""
        self.available = not (self.needs_cuda and cuda is False)
        if self.needs_cuda and cuda is False:
            self.cuda_note.setText("Needs an NVIDIA GPU — none found here")
            self.cuda_note.setObjectName("Warn")
            self.cuda_note.style().polish(self.cuda_note)
        self.setEnabled(self.available)

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self.available:
            self.clicked.emit(self.name)
        super().mousePressEvent(event)


class MethodPage(Page):
    presetApplied = Signal(object)  # the RunConfig a preset button produced

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
        for name in task_info.metadata.get("choices", ["sft"]):
            spec = TASKS.get(name)
            self.task.addItem(spec.title if spec else "Pick from the data", name)
            if spec is not None:
                self.task.setItemData(self.task.count() - 1, spec.sentence, Qt.ItemDataRole.ToolTipRole)
        self.task.setToolTip(task_info.metadata["help"])
        self.task.currentIndexChanged.connect(lambda _i: self._on_task(self.task.currentData()))
        task_row.addWidget(self.task)
        self.task_help = theme.label(task_info.metadata["help"], "Muted", wrap=True)
        task_row.addWidget(self.task_help, 1)
        self.content.addLayout(task_row)

        preset_card = Card("Start from a preset", "mdi6.lightning-bolt")
        row = QHBoxLayout()
        self.preset_buttons: dict[str, QPushButton] = {}
        for name, preset in PRESETS.items():
            b = QPushButton(preset.title)
            b.setToolTip(preset.description)
            b.clicked.connect(lambda _c=False, n=name: self._on_preset(n))
            row.addWidget(b)
            self.preset_buttons[name] = b
        row.addStretch(1)
        preset_card.body.addLayout(row)
        self.content.addWidget(preset_card)

        self.problems = theme.label("", "Warn", wrap=True)
        self.problems.hide()
        self.content.addWidget(self.problems)

        settings = Card("Settings", "mdi6.tune-variant")
        self.form = SettingsForm(session, lambda s, f: f"{s}.{f.name}" not in NOT_HERE and s.count(".") == 0
                                 and not f.metadata.get("advanced"))
        settings.body.addWidget(self.form)
        self.content.addWidget(settings)

        # settings that belong to one method or task (method.qlora.*, method.dpo.*, …), when the config has them
        self.specific_card = Card("Settings of this method", "mdi6.puzzle-outline")
        self.specific = SettingsForm(session, lambda s, f: s.count(".") >= 1)
        self.specific_card.body.addWidget(self.specific)
        self.content.addWidget(self.specific_card)
        self.specific_card.setVisible(bool(self.specific.editors))

        from superqt import QCollapsible

        self.advanced = QCollapsible("Advanced settings")
        self.advanced_form = SettingsForm(session, lambda s, f: f"{s}.{f.name}" not in NOT_HERE and s.count(".") == 0
                                          and bool(f.metadata.get("advanced")))
        self.advanced.addWidget(self.advanced_form)
        adv_card = Card()
        adv_card.body.addWidget(self.advanced)
        self.content.addWidget(adv_card)
        self.content.addStretch(1)

        self.hardware = None
        self._workers = []
        self._workers.append(run_async(self, detect, on_result=self._on_hardware))
        session.configChanged.connect(self._on_config_changed)
        self._on_config_changed(session.config)

    def _on_hardware(self, hardware) -> None:
        self.hardware = hardware
        cuda = bool(hardware.gpus)
        for card in self.cards.values():
            card.set_cuda(cuda)
        self._on_config_changed(self.session.config)

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

    def _on_preset(self, name: str) -> None:
        """Apply the preset as the CLI's ``--preset`` does (``core.presets.apply_preset``: its settings
        and the learning rate of the chosen method and task); it may read the data's first rows to
        resolve 'task: auto', so it runs in a worker."""
        for b in self.preset_buttons.values():
            b.setEnabled(False)
        self._workers.append(run_async(self, apply_preset, self.session.config, name,
                                       on_result=self._on_preset_applied, on_error=self._on_preset_failed))

    def _on_preset_applied(self, config: RunConfig) -> None:
        for b in self.preset_buttons.values():
            b.setEnabled(True)
        try:
            validate(config)
        except ConfigError as exc:
            self._show_problems([str(exc)])
            return
        self.session.set_config(config)
        self.presetApplied.emit(config)

    def _on_preset_failed(self, exc: BaseException) -> None:
        for b in self.preset_buttons.values():
            b.setEnabled(True)
        self._show_problems([f"Could not apply the preset: {exc}"])

    def _on_config_changed(self, config) -> None:
        for name, card in self.cards.items():
            card.setProperty("selected", "true" if name == config.method.method else "false")
            card.style().unpolish(card)
            card.style().polish(card)
        if self.task.currentData() != config.method.task:
            self.task.blockSignals(True)
            self.task.setCurrentIndex(max(0, self.task.findData(config.method.task)))
            self.task.blockSignals(False)
        self._show_settings(config)
        try:
            messages = list(warnings_for(config, self.hardware))
        except Exception as exc:  # a bug in a check must not break the page
            messages = [f"Could not check this combination ({type(exc).__name__}: {exc})."]
        self._show_problems(messages)

    def _show_settings(self, config: RunConfig) -> None:
        """Only the settings the registry says apply to the chosen method and task (``methods.applies``):
        no LoRA settings for full fine-tuning or prompt tuning; DPO's own settings for DPO."""
        method, task = config.method.method, config.method.task
        for form in (self.form, self.advanced_form):
            form.show_only({k for k in form.editors if applies(k, method, task)})
        keys = {k for k in self.specific.editors if applies(k, method, task)}
        self.specific.show_only(keys)
        self.specific_card.setVisible(bool(keys))
        owners = [spec.title for spec in (METHODS.get(method), TASKS.get(task))
                  if spec is not None and spec.section and any(k.startswith(f"method.{spec.section}.") for k in keys)]
        self.specific_card.title_row.itemAt(1).widget().setText(
            f"{' and '.join(owners)} settings" if owners else "Settings of this method")

    def _show_problems(self, messages: list[str]) -> None:
        self.problems.setText("\n".join(f"⚠ {m}" for m in messages))
        self.problems.setVisible(bool(messages))


if __name__ == "__main__":
    import sys

    from desktop_ft.ui.app import create_app

    app = create_app(sys.argv)
    page = MethodPage(Session())
    page.resize(1000, 760)
    page.show()
    sys.exit(app.exec())
