"""A horizontal stacked bar: memory parts (weights, optimizer, …) against the device's capacity."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from desktop_ft.ui import theme


class MemoryBar(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.parts: list[tuple[str, int, str]] = []
        self.capacity: int | None = None
        self.setMinimumHeight(64)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_parts(self, parts: list[tuple[str, int]], capacity: int | None) -> None:
        colors = theme.colors().series
        shown = [(name, int(v)) for name, v in parts if v > 0]  # colours follow the legend's order
        self.parts = [(name, v, colors[i % len(colors)]) for i, (name, v) in enumerate(shown)]
        self.capacity = capacity
        self.update()

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt override
        c = theme.colors()
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        total = sum(v for _n, v, _c in self.parts)
        scale_max = max(total, self.capacity or 0) * 1.08 or 1
        bar = QRectF(0, 8, self.width() - 1, 34)
        p.setPen(QPen(QColor(c.border)))
        p.setBrush(QColor(c.window))
        p.drawRoundedRect(bar, 8, 8)
        x = bar.left()
        p.setPen(Qt.PenStyle.NoPen)
        for _name, value, color in self.parts:
            w = bar.width() * value / scale_max
            p.setBrush(QColor(color))
            p.drawRect(QRectF(x, bar.top() + 1, w, bar.height() - 2))
            x += w
        if self.capacity:
            cx = bar.left() + bar.width() * self.capacity / scale_max
            p.setPen(QPen(QColor(c.text), 2, Qt.PenStyle.DashLine))
            p.drawLine(int(cx), 2, int(cx), int(bar.bottom() + 6))
            p.setPen(QColor(c.muted))
            label = f"available {theme.human_bytes(self.capacity)}"
            fm = p.fontMetrics()
            tx = min(max(0, cx - fm.horizontalAdvance(label) / 2), self.width() - fm.horizontalAdvance(label) - 2)
            p.drawText(int(tx), int(bar.bottom() + 20), label)
        p.end()
