"""Four live pyqtgraph plots — loss (train raw, smoothed, eval), learning rate, grad norm, tokens/s.

Points are appended cheaply; the curves are redrawn at most ``REDRAW_HZ`` times a second (a QTimer
coalesces bursts), with clip-to-view and automatic downsampling, so thousands of points stay smooth.

The axes are what a redraw costs: re-laying out and painting eight axes' tick labels and grid lines
was ~30 ms of each ~40 ms redraw on a 2-core laptop CPU while a run trained. So the axes are painted
into a pixmap cache, and the view ranges are sticky: a range grows in steps (x to the next tenth,
y with headroom) and re-fits only when the data leaves it or fills too little of it, so most redraws
only repaint the curves (~5 ms).
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QGraphicsItem, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from desktop_ft.core.events import EvalLogged, StepLogged
from desktop_ft.ui import theme

REDRAW_HZ = 3
#: curves with more points than this are drawn without antialiasing: an antialiased path of a few
#: thousand segments costs tens of milliseconds a plot on a laptop CPU, and at that density the
#: difference does not show
ANTIALIAS_MAX_POINTS = 1500
#: samples drawn per pixel column after pyqtgraph's peak downsampling (its default is 5)
DOWNSAMPLE_PER_PIXEL = 2.0
AXIS_WIDTH = 64  # pixels for the y axis tick labels, e.g. "2.0e-04"
#: a y range gets this share of the data's span above and below it, and is re-fitted when the data
#: leaves it or spans less than ``Y_REFIT_BELOW`` of it
Y_HEADROOM = 0.08
Y_REFIT_BELOW = 0.6
#: the x range ends at the last step rounded up to a multiple of about this share of it
X_CHUNK = 0.1

#: one row per logged train step: step, raw loss, smoothed loss, learning rate, grad norm, tokens/s
COLUMNS = ("step", "loss", "smooth", "lr", "grad", "speed")
_COL = {name: i for i, name in enumerate(COLUMNS)}


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard-style debiased exponential moving average (weight 0 = raw), vectorised.

    Non-finite points (a NaN loss) are skipped: they stay NaN and do not pull the average. The
    recurrence ``acc = w·acc + (1-w)·v`` is solved block by block in closed form
    (``acc_k = w^k · (w·acc_0 + Σ (1-w)·v_m · w^-m)``), each block short enough that ``w^-m`` stays
    finite; ``EmaState.push`` gives the same numbers point by point for live runs.
    """
    values = np.asarray(values, dtype=float)
    if weight <= 0 or len(values) == 0:
        return values.copy()
    out = np.full(len(values), np.nan)
    ok = np.isfinite(values)
    v = values[ok]
    if len(v):
        w = float(weight)
        block = int(max(1, min(4096, 200 / -np.log10(w))))  # w^-block ≤ 1e200
        num = np.empty_like(v)
        den = np.empty_like(v)
        acc = norm = 0.0
        for s in range(0, len(v), block):
            chunk = v[s:s + block]
            m = np.arange(len(chunk))
            up = w ** -m.astype(float)
            down = w ** m.astype(float)
            num[s:s + len(chunk)] = down * (w * acc + np.cumsum((1 - w) * chunk * up))
            den[s:s + len(chunk)] = down * (w * norm + np.cumsum((1 - w) * up))
            acc, norm = num[s + len(chunk) - 1], den[s + len(chunk) - 1]
        out[ok] = num / den
    return out


class EmaState:
    """The same average, one point at a time (a live run adds points one by one)."""

    def __init__(self, weight: float) -> None:
        self.weight, self.acc, self.norm = weight, 0.0, 0.0

    def push(self, value: float) -> float:
        if not math.isfinite(value):
            return math.nan
        if self.weight <= 0:
            return value
        w = self.weight
        self.acc = w * self.acc + (1 - w) * value
        self.norm = w * self.norm + (1 - w)
        return self.acc / self.norm


class Series:
    """The curves of one run as numpy columns that grow in place (amortised O(1) per point), with the
    smoothed loss kept up to date as points arrive, so a redraw only hands arrays to pyqtgraph."""

    def __init__(self, weight: float) -> None:
        self.data = np.empty((256, len(COLUMNS)))
        self.n = 0
        self.eval_step: list[float] = []
        self.eval: list[float] = []
        self._ema = EmaState(weight)

    def column(self, name: str) -> np.ndarray:
        return self.data[:self.n, _COL[name]]

    @property
    def last_step(self) -> float | None:
        return float(self.data[self.n - 1, 0]) if self.n else None

    def append(self, step: float, loss: float, lr: float, grad: float, speed: float) -> None:
        if self.n and step <= self.data[self.n - 1, 0]:  # a resumed run starts again from its checkpoint
            self.truncate_from(step)
        if self.n == len(self.data):
            self.data = np.concatenate([self.data, np.empty_like(self.data)])
        self.data[self.n] = (step, loss, self._ema.push(loss), lr, grad, speed)
        self.n += 1

    def extend(self, columns: dict[str, np.ndarray]) -> None:
        """Many points at once (a reopened run): one vectorised copy and one smoothing pass."""
        steps = np.asarray(columns["step"], dtype=float)
        if self.n and len(steps) and steps[0] <= self.data[self.n - 1, 0]:
            self.truncate_from(steps[0])
        k = len(steps)
        if self.n + k > len(self.data):
            grown = np.empty((max(2 * len(self.data), self.n + k), len(COLUMNS)))
            grown[:self.n] = self.data[:self.n]
            self.data = grown
        rows = self.data[self.n:self.n + k]
        for name in ("step", "loss", "lr", "grad", "speed"):
            rows[:, _COL[name]] = np.asarray(columns[name], dtype=float) if name != "step" else steps
        self.n += k
        self.resmooth(self._ema.weight)

    def add_eval(self, step: float, loss: float) -> None:
        self.eval_step.append(step)
        self.eval.append(loss)

    def truncate_from(self, step: float) -> None:
        self.n = int(np.searchsorted(self.data[:self.n, 0], step, side="left"))
        self.resmooth(self._ema.weight)

    def resmooth(self, weight: float) -> None:
        """Recompute the smoothed column once (a new weight, or a bulk change), vectorised."""
        loss = self.data[:self.n, _COL["loss"]]
        self.data[:self.n, _COL["smooth"]] = ema(loss, weight)
        self._ema = EmaState(weight)
        finite = loss[np.isfinite(loss)]
        if weight > 0 and len(finite):  # carry the average's state on for the points still to come
            m = np.arange(len(finite))[::-1].astype(float)
            self._ema.acc = float(np.sum((1 - weight) * finite * weight ** m))
            self._ema.norm = float(np.sum((1 - weight) * weight ** m))


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
        self._follow_x = True  # the x range follows the data until the user pans or zooms it
        for plot in self._plots():
            plot.getViewBox().sigRangeChangedManually.connect(self._on_user_range)
        self._series: dict[str, Series] = {}
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
        plot.setDownsampling(auto=True, mode="peak")  # min/max per bucket: spikes stay visible
        plot.getAxis("bottom").setLabel("step")
        for side in ("left", "bottom"):  # an SI prefix that changes with the data would re-lay out the plots
            plot.getAxis(side).enableAutoSIPrefix(False)
        plot.getAxis("left").setWidth(AXIS_WIDTH)  # so would tick labels that grow a digit
        plot.setMouseEnabled(x=True, y=False)
        plot.enableAutoRange(y=False)  # y is fitted by _fit_ranges (the user cannot move it)
        for side in ("left", "bottom"):  # repainted from a pixmap unless the axis itself changed
            plot.getAxis(side).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        return plot

    def _plots(self) -> tuple[pg.PlotItem, ...]:
        return (self.loss, self.lr, self.grad, self.speed)

    def _on_user_range(self, _mask) -> None:
        self._follow_x = False  # the user moved x; the auto-range button ("A") gives it back

    # -- data ---------------------------------------------------------------------------------
    def clear(self) -> None:
        self._follow_x = True
        for plot in self._plots():
            plot.clear()
        if self.loss.legend is not None:
            self.loss.legend.clear()
        self._series.clear()
        self._curves.clear()
        self._dirty = True

    def add_event(self, event: object, run: str = "") -> None:
        """One live event; the curves follow at the next redraw tick."""
        s = self._ensure(run)
        if isinstance(event, StepLogged):
            s.append(event.step, _num(event.loss), _num(event.learning_rate), _num(event.grad_norm),
                     _num(event.tokens_per_second))
            self._dirty = True
        elif isinstance(event, EvalLogged):
            s.add_eval(event.step, _num(event.eval_loss))
            self._dirty = True

    def add_history(self, curves: dict[str, np.ndarray], run: str = "") -> None:
        """A run's saved curves at once, as read off the GUI thread by ``core.curves.read_curves``."""
        s = self._ensure(run)
        s.extend(curves)
        for step, loss in zip(curves["eval_step"], curves["eval"]):
            s.add_eval(float(step), float(loss))
        self._dirty = True

    def point_count(self, run: str = "") -> int:
        series = self._series.get(run)
        return series.n if series else 0

    def last_step(self, run: str = "") -> float | None:
        """The last train step the loss curve shows (None before anything is drawn)."""
        curves = self._curves.get(run)
        if not curves:
            return None
        x, _y = curves["raw"].getOriginalDataset()
        return float(x[-1]) if x is not None and len(x) else None

    def _ensure(self, run: str) -> Series:
        if run in self._series:
            return self._series[run]
        c = theme.colors()
        index = len(self._series)
        color = c.series[index % len(c.series)]
        name = run or "train"
        self._series[run] = Series(self.smoothing.value() / 100)
        raw_pen = pg.mkPen(pg.mkColor(color), width=1)
        raw_color = pg.mkColor(color)
        raw_color.setAlpha(70)
        dense = {"autoDownsampleFactor": DOWNSAMPLE_PER_PIXEL}
        curves = {
            "raw": self.loss.plot(pen=pg.mkPen(raw_color, width=1), **dense),
            "smooth": self.loss.plot(pen=pg.mkPen(pg.mkColor(color), width=2.2),
                                     name=f"{name} (smoothed)" if not run else name, **dense),
            "eval": self.loss.plot(pen=None if run else pg.mkPen(c.series[1], width=1.5, style=Qt.PenStyle.DashLine),
                                   symbol="o", symbolSize=7,
                                   symbolBrush=pg.mkBrush(c.series[1] if not run else color),
                                   symbolPen=None, name="eval" if not run else None),
            "lr": self.lr.plot(pen=raw_pen, **dense),
            "grad": self.grad.plot(pen=raw_pen, **dense),
            "speed": self.speed.plot(pen=raw_pen, **dense),
        }
        self._curves[run] = curves
        return self._series[run]

    def _on_smoothing(self, value: int) -> None:
        self.smoothing_value.setText(f"{value / 100:.2f}")
        for series in self._series.values():
            series.resmooth(value / 100)
        self._dirty = True
        self._on_redraw()

    def redraw_now(self) -> None:
        """Draw pending points at once instead of at the next tick."""
        self._on_redraw()

    def _on_redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        total = 0
        for run, s in self._series.items():
            curves = self._curves[run]
            x = s.column("step")
            aa = s.n <= ANTIALIAS_MAX_POINTS and pg.getConfigOption("antialias")
            curves["raw"].setData(x, s.column("loss"), connect="finite", antialias=aa)
            curves["smooth"].setData(x, s.column("smooth"), connect="finite", antialias=aa)
            curves["eval"].setData(np.asarray(s.eval_step, dtype=float), np.asarray(s.eval, dtype=float))
            for key in ("lr", "grad", "speed"):
                curves[key].setData(x, s.column(key), connect="finite", antialias=aa)
            total += s.n
        self._fit_ranges()
        self.redrawn.emit(total)

    def _fit_ranges(self) -> None:
        """Set each plot's range only when it must change (see the module's docstring)."""
        series = [s for s in self._series.values() if s.n]
        if not series:
            return
        if self._follow_x or any(plot.getViewBox().autoRangeEnabled()[0] for plot in self._plots()):
            self._follow_x = True
            lo = min(float(s.data[0, 0]) for s in series)
            hi = max(float(s.data[s.n - 1, 0]) for s in series)
            end = _x_end(lo, hi)
            (x0, x1), _y = self.lr.getViewBox().viewRange()
            if (x0, x1) != (lo, end):
                self.lr.setXRange(lo, end, padding=0)
        for plot, columns in ((self.loss, ("loss", "smooth")), (self.lr, ("lr",)), (self.grad, ("grad",)),
                              (self.speed, ("speed",))):
            values = [s.column(c) for s in series for c in columns]
            if plot is self.loss:
                values += [np.asarray(s.eval, dtype=float) for s in series if s.eval]
            finite = np.concatenate(values)
            finite = finite[np.isfinite(finite)]
            if not len(finite):
                continue
            lo, hi = float(finite.min()), float(finite.max())
            _x, (y0, y1) = plot.getViewBox().viewRange()
            span = (hi - lo) or abs(hi) or 1.0
            t0, t1 = lo - Y_HEADROOM * span, hi + Y_HEADROOM * span
            if lo < y0 or hi > y1 or (t1 - t0) < Y_REFIT_BELOW * (y1 - y0) or plot.getViewBox().autoRangeEnabled()[1]:
                plot.setYRange(t0, t1, padding=0)


def _x_end(first: float, last: float) -> float:
    """Where the x range ends: ``last`` rounded up to a round step near a tenth of the run so far."""
    width = max(last - first, 1.0)
    raw = width * X_CHUNK
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return first + math.ceil(width / step) * step if width > 1 else first + 1.0


def _num(value: object) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return v
