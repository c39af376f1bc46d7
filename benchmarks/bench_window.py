"""Window benchmarks, each against a baseline measured in the same run.

1. Time to the first painted window: what the ``desktop-ft`` command runs before its event loop vs a
   bare PySide6 QWidget, each in a fresh Python process (median of N), printed as a ratio; a plain
   PySide6 window of the same shape is printed beside them as the floor any such window pays.
2. GUI event-loop stalls while a real training run (a child process) streams events into the Train
   view: a 10 ms QTimer measures how late each tick is; p99 and max are printed, with the same
   measurement on an idle window as the baseline.

Run:  QT_QPA_PLATFORM=offscreen python benchmarks/bench_window.py [--runs 3] [--steps 300] [--embedded]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Both print once the first frame is painted: the zero timer fires after show(), and the posted
# paint and layout events it finds are processed before the line is printed.
BARE = """
import sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QWidget
app = QApplication(sys.argv)
w = QWidget(); w.resize(1280, 840); w.show()
QTimer.singleShot(0, lambda: (app.processEvents(), print("shown", flush=True), app.quit()))
app.exec()
"""

# The same shape with nothing of ours: a sidebar list of the seven steps beside a page of ten wrapped,
# selectable labels, a line edit and a button, Fusion and a small style sheet. What any window of
# this kind pays beyond the bare one (PySide building its ``Qt`` namespace of 93 enum types on first
# use, ~15-20 ms, the widget classes, layout and painting text): the floor under Desktop FT's ratio.
SAME_SHAPE = """
import sys
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QApplication, QFrame, QHBoxLayout, QLabel, QLineEdit, QListWidget, QMainWindow,
                               QPushButton, QStackedWidget, QVBoxLayout, QWidget)
app = QApplication([*sys.argv, "-style", "Fusion"])
app.setStyleSheet("QListWidget { border: none; } QPushButton { padding: 6px 14px; border-radius: 6px; }")
w = QMainWindow(); central = QWidget(); row = QHBoxLayout(central)
side = QFrame(); col = QVBoxLayout(side); col.addWidget(QLabel("Title"))
steps = QListWidget(); steps.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
for step in ("Model", "Dataset", "Method", "Memory", "Train", "Chat", "Runs"):
    steps.addItem(step)
col.addWidget(steps); row.addWidget(side)
stack = QStackedWidget(); page = QWidget(); body = QVBoxLayout(page)
for i in range(10):
    label = QLabel(f"Label {i} with a few words of text"); label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse); body.addWidget(label)
body.addWidget(QLineEdit()); body.addWidget(QPushButton("Browse"))
stack.addWidget(page); row.addWidget(stack, 1); w.setCentralWidget(central); w.resize(1280, 840); w.show()
QTimer.singleShot(0, lambda: (app.processEvents(), print("shown", flush=True), app.quit()))
app.exec()
"""

# What the ``desktop-ft`` console script runs: its package (argparse, the error types), then
# ``open_window`` (the application, the Qt self-check, the main window on its Model page).
OURS = """
import sys
import desktop_ft.cli
from desktop_ft.ui.app import open_window
app, window = open_window([sys.argv[0]])
from PySide6.QtCore import QTimer
QTimer.singleShot(0, lambda: (app.processEvents(), print("shown", flush=True),
                              print("torch" in sys.modules, flush=True), app.quit()))
app.exec()
"""


def time_to_window(code: str, env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env, cwd=ROOT)
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - t0
    rest = proc.stdout.read()
    proc.wait(timeout=120)
    assert line.strip() == "shown", line
    return elapsed, rest.strip()


def bench_first_window(runs: int) -> None:
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"), PYTHONPATH=str(ROOT))
    env["DESKTOP_FT_RUNS"] = tempfile.mkdtemp(prefix="bench-runs-")
    # As an installed app starts: byte-code compiled (pip does it at install time) and the icon
    # cache filled, so one start of each, not counted, comes first.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for code in (BARE, SAME_SHAPE, OURS):
        time_to_window(code, env)
    bare, shape, ours, torch_loaded = [], [], [], []
    for _ in range(runs):  # interleaved, so a slower minute slows all three
        bare.append(time_to_window(BARE, env)[0])
        shape.append(time_to_window(SAME_SHAPE, env)[0])
        t, rest = time_to_window(OURS, env)
        ours.append(t)
        torch_loaded.append(rest == "True")
    b, s, o = statistics.median(bare), statistics.median(shape), statistics.median(ours)
    print(f"first window (painted, median of {runs}): bare PySide6 {b * 1000:.0f} ms, the same shape in plain "
          f"PySide6 {s * 1000:.0f} ms ({s / b:.2f}x), Desktop FT {o * 1000:.0f} ms -> ratio {o / b:.2f}x "
          f"({o / s:.2f}x the same shape); torch imported before the window showed: {any(torch_loaded)}")


def bench_stalls(steps: int, embedded: bool) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    work = Path(tempfile.mkdtemp(prefix="bench-stall-"))
    os.environ["DESKTOP_FT_RUNS"] = str(work / "runs")
    sys.path.insert(0, str(ROOT))
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QSettings, QTimer

    from desktop_ft import resources
    from desktop_ft.core.config import RunConfig
    from desktop_ft.ui.app import create_app

    app = create_app([sys.argv[0]])  # noqa: F841 - the QApplication must stay alive while the window runs
    from desktop_ft.ui.main_window import MainWindow

    if embedded:
        config = RunConfig().replace({"training.max_steps": steps, "training.logging_steps": 1,
                                      "training.save_steps": 10_000, "training.eval_steps": 10_000})
    else:
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import build_tiny_model, tiny_config  # the test suite's tiny random Llama

        model = build_tiny_model(work / "tiny")
        config = tiny_config(model, resources.sample_dataset(), work / "run",
                             max_steps=steps, logging_steps=1, save_steps=10_000, eval_steps=50)
    w = MainWindow(settings=QSettings(str(work / "s.ini"), QSettings.Format.IniFormat))
    w.show()
    w.go("train")

    interval = 10
    lates: list[float] = []
    clock = QElapsedTimer()
    ticker = QTimer()
    ticker.setInterval(interval)
    last = [0]
    recording = [False]

    def tick() -> None:
        now = clock.elapsed()
        if recording[0]:
            lates.append(max(0, now - last[0] - interval))
        last[0] = now

    ticker.timeout.connect(tick)
    clock.start()
    ticker.start()

    def measure_idle(ms: int) -> list[float]:
        lates.clear()
        recording[0] = True
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()
        recording[0] = False
        return list(lates)

    idle = measure_idle(3000)
    events = [0]
    w.training_view.stepLogged.connect(lambda _e: events.__setitem__(0, events[0] + 1))
    first = QEventLoop()
    w.training_view.stepLogged.connect(lambda _e: first.quit())
    w.training_view.start(config)
    first.exec()  # child start-up (torch import) is not the GUI's stall; measure once events stream
    lates.clear()
    recording[0] = True
    t0 = time.perf_counter()
    done = QEventLoop()
    w.training_view.runEnded.connect(lambda _f: done.quit())
    done.exec()
    recording[0] = False
    busy = list(lates)
    secs = time.perf_counter() - t0
    w.close()

    def pct(xs: list[float], p: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")

    print(f"event-loop stall, idle window (baseline): p99 {pct(idle, 99):.1f} ms, max {max(idle, default=0):.1f} ms "
          f"({len(idle)} ticks)")
    print(f"event-loop stall while training streams {events[0]} step events in {secs:.1f} s "
          f"({events[0] / max(secs, 1e-9):.1f}/s, {'embedded model' if embedded else 'tiny model'}): "
          f"p99 {pct(busy, 99):.1f} ms, max {max(busy, default=0):.1f} ms ({len(busy)} ticks)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--embedded", action="store_true", help="train the built-in model instead of the tiny one")
    p.add_argument("--skip-window", action="store_true")
    p.add_argument("--skip-stall", action="store_true")
    args = p.parse_args()
    if not args.skip_window:
        bench_first_window(args.runs)
    if not args.skip_stall:
        bench_stalls(args.steps, args.embedded)


if __name__ == "__main__":
    main()
