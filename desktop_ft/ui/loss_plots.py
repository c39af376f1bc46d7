"""Four live pyqtgraph plots — loss (train raw, smoothed, eval), learning rate, grad norm, tokens/s.

Points are appended cheaply; the curves are redrawn at most ``REDRAW_HZ`` times a second (a QTimer
coalesces bursts), with clip-to-view and automatic downsampling, so thousands of points stay smooth.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from desktop_ft.core.events import EvalLogged, StepLogged
from desktop_ft.ui import theme

REDRAW_HZ = 5


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard-style debiased exponential moving average (weight 0 = raw)."""
    if weight <= 0 or len(values) == 0:
        return values
    out = np.empty_like(values)
    acc, norm = 0.0, 0.0
    for i, v in enumerate(values):
        acc = acc * weight + (1 - weight) * v
        norm = norm * weight + (1 - weight)
        out[i] = acc / norm
    return out


class LossPlots(QWidget):
    """The curves of one run (or several overlaid, for comparing runs)."""

    redrawn = Signal(int)  # number of train points drawn (tests wait on this)

    def __init__(self, parent: QWidget | None = None, *, compact: bool = False) -> None:
        super().__init__(parent)
        c = theme.colors()
        pg.setConfigOptions(antialias=True, background=c.panel, foreground=c.muted)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.view = pg.GraphicsLayoutWidget()
        self.view.setMinimumHeight(220)
        self.view.ci.setSpacing(12)
        lay.addWidget(self.view, 1)
        self.loss = self._plot("Loss", 0, 0)
        self.loss.addLegend(offset=(-10, 10), labelTextColor=c.text)
        self.lr = self._plot("Learning rate", 0, 1)
        self.grad = self._plot("Grad norm", 1, 0)
        self.speed = self._plot("Tokens / s", 1, 1)
        self.loss.setXLink(self.lr)
        self.grad.setXLink(self.lr)
        self.speed.setXLink(self.lr)
        self._series: dict[str, dict[str, list[float]]] = {}
        self._curves: dict[str, dict[str, pg.PlotDataItem]] = {}
        self._dirty = False
        self._timer = QTimer(self)
        self._timer.setInterval(int(1000 / REDRAW_HZ))
        self._timer.timeout.connect(self._on_redraw)
        self._timer.start()
        row = QHBoxLayout()
        row.addWidget(theme.label("Smoothing", "Muted"))
        self.smoothing = QSlider(Qt.Orientation.Horizontal)
        self.smoothing.setRange(0, 99)
        self.smoothing.setValue(60)
        self.smoothing.setMaximumWidth(200)
        self.smoothing.setToolTip("How much the solid loss line is smoothed (the faint line is the raw loss).")
        self.smoothing.valueChanged.connect(self._on_smoothing)
        row.addWidget(self.smoothing)
        self.smoothing_value = QLabel("0.60")
        row.addWidget(self.smoothing_value)
        row.addStretch(1)
        lay.addLayout(row)

    def _plot(self, title: str, r: int, col: int) -> pg.PlotItem:
        c = theme.colors()
        plot = self.view.addPlot(row=r, col=col)
        plot.setTitle(f"<span style='color:{c.text};font-size:10pt'>{title}</span>")
        plot.showGrid(x=True, y=True, alpha=0.15)
        plot.setClipToView(True)
        plot.setDownsampling(auto=True, mode="peak")
        plot.getAxis("bottom").setLabel("step")
        plot.setMouseEnabled(x=True, y=False)
        return plot

    # -- data ---------------------------------------------------------------------------------
    def clear(self) -> None:
        for plot in (self.loss, self.lr, self.grad, self.speed):
            plot.clear()
        if self.loss.legend is not None:
            self.loss.legend.clear()
        self._series.clear()
        self._curves.clear()
        self._dirty = True

    def add_event(self, event: object, run: str = "") -> None:
        s = self._ensure(run)
        if isinstance(event, StepLogged):
            if s["step"] and event.step <= s["step"][-1]:  # a resumed run replays nothing, but be safe
                self._truncate(s, event.step)
            s["step"].append(event.step)
            s["loss"].append(_num(event.loss))
            s["lr"].append(_num(event.learning_rate))
            s["grad"].append(_num(event.grad_norm))
            s["speed"].append(_num(event.tokens_per_second))
            self._dirty = True
        elif isinstance(event, EvalLogged):
            s["eval_step"].append(event.step)
            s["eval"].append(_num(event.eval_loss))
            self._dirty = True

    def point_count(self, run: str = "") -> int:
        return len(self._series.get(run, {}).get("step", []))

    def _truncate(self, s: dict[str, list[float]], step: int) -> None:
        keep = sum(1 for x in s["step"] if x < step)
        for key in ("step", "loss", "lr", "grad", "speed"):
            del s[key][keep:]

    def _ensure(self, run: str) -> dict[str, list[float]]:
        if run in self._series:
            return self._series[run]
        c = theme.colors()
        index = len(self._series)
        color = c.series[index % len(c.series)]
        name = run or "train"
        self._series[run] = {k: [] for k in ("step", "loss", "lr", "grad", "speed", "eval_step", "eval")}
        raw_pen = pg.mkPen(pg.mkColor(color), width=1)
        raw_color = pg.mkColor(color)
        raw_color.setAlpha(70)
        curves = {
            "raw": self.loss.plot(pen=pg.mkPen(raw_color, width=1)),
            "smooth": self.loss.plot(pen=pg.mkPen(pg.mkColor(color), width=2.2), name=f"{name} (smoothed)" if not run else name),
            "eval": self.loss.plot(pen=None if run else pg.mkPen(c.series[1], width=1.5, style=Qt.PenStyle.DashLine),
                                   symbol="o", symbolSize=7,
                                   symbolBrush=pg.mkBrush(c.series[1] if not run else color),
                                   symbolPen=None, name="eval" if not run else None),
            "lr": self.lr.plot(pen=raw_pen),
            "grad": self.grad.plot(pen=raw_pen),
            "speed": self.speed.plot(pen=raw_pen),
        }
        self._curves[run] = curves
        return self._series[run]

    def _on_smoothing(self, value: int) -> None:
        self.smoothing_value.setText(f"{value / 100:.2f}")
        self._dirty = True
        self._on_redraw()

    def _on_redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        weight = self.smoothing.value() / 100
        total = 0
        for run, s in self._series.items():
            curves = self._curves[run]
            x = np.asarray(s["step"], dtype=float)
            loss = np.asarray(s["loss"], dtype=float)
            curves["raw"].setData(x, loss, connect="finite")
            curves["smooth"].setData(x, ema(loss, weight), connect="finite")
            curves["eval"].setData(np.asarray(s["eval_step"], dtype=float), np.asarray(s["eval"], dtype=float))
            for key in ("lr", "grad", "speed"):
                curves[key].setData(x, np.asarray(s[key], dtype=float), connect="finite")
            total += len(x)
        self.redrawn.emit(total)


def _num(value: object) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return v
