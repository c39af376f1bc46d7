"""'Use N GPUs': the Memory page's offer on a machine with several GPUs (hidden on one GPU or none).

It writes ``distributed.nproc_per_node`` and ``distributed.strategy`` into the shared config; the
strategies, their names and sentences come from ``desktop_ft.core.distributed``.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QWidget

from desktop_ft.core.distributed import STRATEGIES, check_config
from desktop_ft.core.errors import ConfigError
from desktop_ft.ui import theme
from desktop_ft.ui.page import Card
from desktop_ft.ui.session import Session


class GpuChoice(Card):
    """A check box 'Use all N GPUs' and the strategy; shown only once ``set_gpu_count(n)`` with n ≥ 2."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__("Several GPUs", "mdi6.expansion-card-variant", parent)
        self.session = session
        self.count = 0
        row = QHBoxLayout()
        self.use = QCheckBox()
        self.use.setToolTip("Train with one process per GPU: each GPU takes its share of every batch "
                            "(torchrun under the hood).")
        row.addWidget(self.use)
        self.strategy = QComboBox()
        for name, spec in STRATEGIES.items():
            self.strategy.addItem(spec.title, name)
            self.strategy.setItemData(self.strategy.count() - 1, spec.sentence[0].upper() + spec.sentence[1:] + ".",
                                      Qt.ItemDataRole.ToolTipRole)
        row.addWidget(self.strategy)
        row.addStretch(1)
        self.body.addLayout(row)
        self.sentence = theme.label("", "Muted", wrap=True)
        self.body.addWidget(self.sentence)
        self.error = theme.label("", "Bad", wrap=True)
        self.error.hide()
        self.body.addWidget(self.error)
        self.use.toggled.connect(self._on_changed)
        self.strategy.currentIndexChanged.connect(lambda _i: self._on_changed())
        session.configChanged.connect(self._on_config_changed)
        self.hide()

    def set_gpu_count(self, count: int) -> None:
        """What the hardware report found; fewer than two GPUs means there is nothing to offer."""
        self.count = count
        self.use.setText(f"Use {count} GPUs")
        self.setVisible(count >= 2)
        self._on_config_changed(self.session.config)

    def _on_config_changed(self, config) -> None:
        d = config.distributed
        blockers = (self.use.blockSignals(True), self.strategy.blockSignals(True))
        self.use.setChecked(d.nproc_per_node > 1)
        self.strategy.setCurrentIndex(max(self.strategy.findData(d.strategy), 0))
        self.strategy.setEnabled(d.nproc_per_node > 1)
        self.use.blockSignals(blockers[0])
        self.strategy.blockSignals(blockers[1])
        spec = STRATEGIES[d.strategy]
        self.sentence.setText(f"{spec.title}: {spec.sentence}." if d.nproc_per_node > 1 else
                              "One GPU trains; the others stay free.")

    def _on_changed(self, *_args) -> None:
        n = self.count if self.use.isChecked() else 1
        change = {"distributed.nproc_per_node": n, "distributed.strategy": self.strategy.currentData()}
        try:
            check_config(self.session.config.replace(change))  # e.g. QLoRA weights cannot be sharded
            self.session.update(change)
            self.error.hide()
        except ConfigError as exc:
            self.error.setText(str(exc))
            self.error.show()
            self._on_config_changed(self.session.config)  # the widgets show what the config still says
