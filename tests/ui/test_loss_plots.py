"""The live plots keep their view ranges until the data needs new ones (a range change re-lays out and
repaints the axes, most of a redraw's cost), and never hide data."""

from desktop_ft.core.events import StepLogged
from desktop_ft.ui.loss_plots import LossPlots


def _step(i: int, loss: float) -> StepLogged:
    return StepLogged(step=i, max_steps=1000, epoch=0.0, loss=loss, learning_rate=1e-4, grad_norm=1.0,
                      tokens_per_second=900.0)


def _ranges(plots: LossPlots):
    return [tuple(map(tuple, p.getViewBox().viewRange())) for p in plots._plots()]


def test_ranges_hold_still_while_points_land_inside_and_grow_when_they_leave(qtbot):
    plots = LossPlots()
    qtbot.addWidget(plots)
    for i in range(1, 101):
        plots.add_event(_step(i, 2.0 + (i % 7) / 10))
    plots.redraw_now()
    before = _ranges(plots)
    (x0, x1), (y0, y1) = before[0]
    assert x0 <= 1 and x1 >= 100 and y0 <= 2.0 and y1 >= 2.6  # everything drawn is in view
    plots.add_event(_step(101, 2.3))
    plots.redraw_now()
    assert _ranges(plots) == before  # a point inside the ranges moves no axis
    plots.add_event(_step(150, 9.0))
    plots.redraw_now()
    (x0, x1), (y0, y1) = plots.loss.getViewBox().viewRange()
    assert x1 >= 150 and y1 >= 9.0  # data that leaves the ranges widens them


def test_x_follows_the_run_until_the_user_moves_it(qtbot):
    plots = LossPlots()
    qtbot.addWidget(plots)
    for i in range(1, 51):
        plots.add_event(_step(i, 2.0))
    plots.redraw_now()
    plots.lr.getViewBox().sigRangeChangedManually.emit([True, False])  # as a pan with the mouse does
    plots.lr.setXRange(10, 20, padding=0)
    for i in range(51, 400):
        plots.add_event(_step(i, 2.0))
    plots.redraw_now()
    assert plots.lr.getViewBox().viewRange()[0] == [10, 20]
    plots.lr.getViewBox().enableAutoRange(x=True)  # the auto-range button
    plots.redraw_now()
    plots.add_event(_step(400, 2.0))
    plots.redraw_now()
    assert plots.lr.getViewBox().viewRange()[0][1] >= 400
