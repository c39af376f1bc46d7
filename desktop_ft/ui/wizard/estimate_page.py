"""Memory step: will this run fit? The estimate as a stacked bar against this device's memory, a
verdict, and the suggested settings that fit as one-click buttons. Recomputed (off the GUI thread,
debounced) whenever a setting changes."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from desktop_ft.core.config import RunConfig
from desktop_ft.core.errors import ConfigError, UserError
from desktop_ft.core.hardware import Hardware, detect
from desktop_ft.core.lengths import run_lengths
from desktop_ft.core.vram import MemoryEstimate, estimate_for_config
from desktop_ft.ui import theme
from desktop_ft.ui.gpu_choice import GpuChoice
from desktop_ft.ui.memory_bar import MemoryBar
from desktop_ft.ui.page import Card, Page
from desktop_ft.ui.session import Session
from desktop_ft.ui.workers import run_async

PART_LABELS = {"weights": "Weights", "optimizer": "Optimizer state", "gradients": "Gradients",
               "activations": "Activations", "logits": "Logits", "overhead": "Overhead"}
VERDICTS = {"fits": ("Fits", "Good", "mdi6.check-circle"), "tight": ("Tight — may not fit", "Warn", "mdi6.alert"),
            "does_not_fit": ("Won't fit", "Bad", "mdi6.close-circle"),
            "unknown": ("Unknown on this device", "Muted", "mdi6.help-circle-outline")}


def estimate(config: RunConfig) -> MemoryEstimate:
    """The estimate ``desktop-ft estimate --config`` gives for this config: its data's token lengths
    (``lengths.run_lengths``, counted as ``data inspect`` counts them), batches padded to the longest row."""
    lengths, note = run_lengths(config)
    result = estimate_for_config(config, lengths=lengths)
    if note:
        result.notes.insert(0, note)
    return result


class EstimatePage(Page):
    estimated = Signal(object)

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__("Will it fit?", "An estimate of the memory this run needs on this machine, part by "
                         "part. Change a setting anywhere and it updates.", parent)
        self.session = session
        self.result: Any = None
        self._request = 0
        self._workers: list[Any] = []
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(300)
        self._timer.timeout.connect(self._on_recompute)

        head = Card("Estimate", "mdi6.memory")
        top = QHBoxLayout()
        self.verdict_icon = QLabel()
        top.addWidget(self.verdict_icon)
        self.verdict = theme.label("Estimating…", "BigNumber")
        top.addWidget(self.verdict)
        top.addStretch(1)
        self.total = theme.label("", "BigNumber")
        top.addWidget(self.total)
        head.body.addLayout(top)
        self.device = theme.label("", "Muted", wrap=True)
        head.body.addWidget(self.device)
        self.notes = theme.label("", "Muted", wrap=True)
        self.notes.hide()
        self.bar = MemoryBar()
        head.body.addWidget(self.bar)
        self.legend = QGridLayout()
        self.legend.setHorizontalSpacing(24)
        head.body.addLayout(self.legend)
        head.body.addWidget(self.notes)
        self.content.addWidget(head)

        self.gpu_choice = GpuChoice(session)  # only on a machine with several GPUs
        self.content.addWidget(self.gpu_choice)

        self.suggest_card = Card("Settings that fit", "mdi6.lightbulb-on-outline")
        self.suggest_box = QVBoxLayout()
        self.suggest_card.body.addLayout(self.suggest_box)
        self.content.addWidget(self.suggest_card)
        self.suggest_card.hide()
        self.error = theme.label("", "Bad", wrap=True)
        self.error.hide()
        self.content.addWidget(self.error)
        self.content.addStretch(1)
        session.configChanged.connect(self._on_config_changed)
        self._timer.start(0)
        self._workers.append(run_async(self, detect, on_result=self._on_hardware))

    def _on_hardware(self, hardware: Hardware) -> None:
        self.gpu_choice.set_gpu_count(len(hardware.gpus))

    def _on_config_changed(self, _config) -> None:
        self._timer.start()

    def _on_recompute(self) -> None:
        self._request += 1
        req = self._request
        self._workers.append(run_async(self, estimate, self.session.config,
                                       on_result=lambda r, q=req: self._on_result(q, r),
                                       on_error=lambda e, q=req: self._on_error(q, e)))

    def _on_error(self, req: int, exc: BaseException) -> None:
        if req != self._request:
            return
        self.verdict.setText("Could not estimate")
        self.error.setText(str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}")
        self.error.show()

    def _on_result(self, req: int, est: Any) -> None:
        if req != self._request:
            return
        self.result = est
        self.error.hide()
        text, style, icon = VERDICTS.get(est.verdict, (est.verdict, "Muted", "mdi6.help-circle-outline"))
        color = {"Good": theme.colors().good, "Warn": theme.colors().warn, "Bad": theme.colors().bad}.get(
            style, theme.colors().muted)
        self.verdict.setText(text)
        self.verdict.setObjectName(style)
        self.verdict.setStyleSheet("font-size: 16pt;")
        self.verdict_icon.setPixmap(theme.icon(icon, color).pixmap(28, 28))
        self.total.setText(f"{theme.human_bytes(est.total_bytes)} needed")
        avail = est.available_bytes
        self.device.setText(f"On {est.device}: {theme.human_bytes(avail)} available." if avail else f"On {est.device}.")
        parts = [(PART_LABELS.get(k, k.replace('_', ' ').capitalize()), int(v)) for k, v in est.breakdown.items()]
        self.bar.set_parts(parts, avail)
        while self.legend.count():
            w = self.legend.takeAt(0).widget()
            if w:
                w.deleteLater()
        colors = theme.colors().series
        shown = [p for p in parts if p[1] > 0]
        for i, (name, value) in enumerate(shown):
            sw = QLabel()
            sw.setFixedSize(12, 12)
            sw.setStyleSheet(f"background:{colors[i % len(colors)]}; border-radius:3px;")
            holder = QWidget()
            hl = QHBoxLayout(holder)
            hl.setContentsMargins(0, 0, 0, 0)
            hl.addWidget(sw)
            hl.addWidget(theme.label(f"{name}: {theme.human_bytes(value)}"))
            hl.addStretch(1)
            self.legend.addWidget(holder, i // 3, i % 3)
        while self.suggest_box.count():
            w = self.suggest_box.takeAt(0).widget()
            if w:
                w.deleteLater()
        suggestions = est.suggestions
        for s in suggestions:
            overrides = dict(s.overrides)
            detail = ", ".join(f"{k.split('.')[-1].replace('_', ' ')} = {v}" for k, v in overrides.items())
            b = QPushButton(theme.icon("mdi6.auto-fix"),
                            f"  {s.title} — {theme.human_bytes(s.total_bytes)}  ({detail})")
            b.setStyleSheet("text-align: left;")
            b.clicked.connect(lambda _c=False, o=overrides: self._on_apply(o))
            self.suggest_box.addWidget(b)
        self.suggest_card.setVisible(bool(suggestions))
        notes = est.notes
        self.notes.setText("\n".join(notes))
        self.notes.setVisible(bool(notes))
        self.estimated.emit(est)

    def _on_apply(self, overrides: dict[str, Any]) -> None:
        try:
            self.session.update(overrides)
        except ConfigError as exc:
            self.error.setText(str(exc))
            self.error.show()


if __name__ == "__main__":
    import sys

    from desktop_ft.ui.app import create_app

    app = create_app(sys.argv)
    page = EstimatePage(Session())
    page.resize(1000, 600)
    page.show()
    sys.exit(app.exec())
