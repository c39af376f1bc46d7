"""Long use, tested like first use: the real main window follows a live run of 5,000 steps and
reopens a finished run of 50,000 logged steps. The process must survive (a Qt binding that leaks a
reference per call aborts it in this test), the event loop must never stall for more than 250 ms
(a QTimer heartbeat measures it; see ``Heartbeat`` for what is counted), and the plot must end on
the last step. Run with ``-s`` to see the figures.

The live run is a child process that writes its run folder exactly as the training child does
(``status.json`` with its pid and start time, every event appended to the run's one event log
with ``RunFolder.append_event``) at a few hundred steps a second, so no torch is needed and it
runs on every Python."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from desktop_ft.core.config import RunConfig
from desktop_ft.core.events import EvalLogged, StepLogged, to_dict
from desktop_ft.core.runs import RunFolder, RunStatus
from desktop_ft.ui.main_window import MainWindow

ROOT = Path(__file__).resolve().parents[2]
MAX_STALL_S = 0.25
LIVE_STEPS = 5_000
HISTORY_STEPS = 50_000

WRITER = r"""
import json, math, os, sys, time
from pathlib import Path
from desktop_ft.core.events import EvalLogged, RunFinished, RunStarted, StepLogged, to_dict
from desktop_ft.core.runs import RunFolder, RunStatus, process_start_time

run = RunFolder(Path(sys.argv[1]))
steps, per_burst = int(sys.argv[2]), int(sys.argv[3])
status = RunStatus(state="running", max_steps=steps, pid=os.getpid(), pid_started=process_start_time(),
                   started_at="2026-01-01T10:00:00+00:00")
run.write_status(status)
emit = run.append_event  # the run's one event log, as the engine writes it
Path(sys.argv[4]).write_text("ready")  # the window may follow from here
while not Path(sys.argv[5]).exists():  # ... and says when it does
    time.sleep(0.01)
emit(RunStarted(str(run.path), steps))
for step in range(1, steps + 1):
    loss = 2.0 + math.exp(-step / 800) + 0.1 * math.sin(step)
    emit(StepLogged(step, steps, step / 1000, loss, 2e-4 * (1 - step / steps), 0.5 + 0.1 * math.cos(step),
                    4000.0 + step % 50, eta_seconds=(steps - step) * 0.01))
    if step % 250 == 0:
        emit(EvalLogged(step, step / 1000, loss + 0.1))
    if step % per_burst == 0:
        status.step, status.final_loss = step, loss
        run.write_status(status)
        time.sleep(0.05)
status.state, status.step, status.ended_at = "finished", steps, "2026-01-01T10:10:00+00:00"
run.write_status(status)
emit(RunFinished("finished", steps, adapter_dir=str(run.adapter_dir), run_dir=str(run.path)))
run.close()
"""


class Heartbeat:
    """A 20 ms QTimer in the GUI thread. Between two ticks the event loop was held up; how long is
    measured twice: on the wall clock, and in CPU time of the GUI thread — the work the window did
    without getting back to its event loop, which is what the code controls (on a shared machine the
    wall-clock gap also holds the time the scheduler gave to other processes)."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.last = self.started = time.monotonic()
        self.last_cpu = self.cpu = time.thread_time()
        self.worst = self.worst_cpu = 0.0
        self.gaps: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(20)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    @property
    def ticks(self) -> int:
        return len(self.gaps)

    def _tick(self) -> None:
        now, cpu = time.monotonic(), time.thread_time()
        self.gaps.append(now - self.last)
        self.worst = max(self.worst, now - self.last)
        self.worst_cpu = max(self.worst_cpu, cpu - self.last_cpu)
        self.last, self.last_cpu = now, cpu

    def summary(self) -> str:
        p99 = self.p99()
        busy = (time.thread_time() - self.cpu) / max(time.monotonic() - self.started, 1e-9)
        return (f"longest stall {self.worst_cpu * 1000:.0f} ms of GUI-thread work ({self.worst * 1000:.0f} ms on "
                f"the wall clock, p99 {p99 * 1000:.0f} ms) over {self.ticks} ticks; GUI thread busy {busy:.0%}")

    def p99(self) -> float:
        """The 99th percentile of the wall-clock gaps between ticks, in seconds."""
        gaps = sorted(self.gaps)
        return gaps[int(0.99 * (len(gaps) - 1))] if gaps else 0.0

    def stop(self) -> float:
        """The longest stall in GUI-thread work, in seconds."""
        self.timer.stop()
        self._tick()
        return self.worst_cpu


def _run_folder(path: Path) -> RunFolder:
    run = RunFolder(path)
    run.write_config(RunConfig().replace({"output.output_dir": str(path)}))
    return run


def test_window_follows_a_live_run_of_5000_steps(qtbot, qsettings, tmp_path):
    run = _run_folder(tmp_path / "live-run")
    ready, go = tmp_path / "ready", tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(run.path), str(LIVE_STEPS), "25", str(ready), str(go)],
                             env=env, cwd=ROOT)
    try:
        w = MainWindow(settings=qsettings)
        qtbot.addWidget(w)
        w.show()
        view = w.training_view  # built before the heartbeat starts: opening a page is not what is measured
        qtbot.waitUntil(ready.exists, timeout=60000)
        beat = Heartbeat()
        with qtbot.waitSignal(view.runEnded, timeout=120000) as ended:
            w._on_follow_run(str(run.path), child.pid)
            assert view.running and w.current_key() == "train"
            go.write_text("go")
        qtbot.waitUntil(lambda: view.plots.last_step() == LIVE_STEPS, timeout=5000)  # the next tick draws it
        worst = beat.stop()
        print(f"live: {LIVE_STEPS} steps followed, {beat.summary()}")
    finally:
        child.wait(timeout=60)
    assert child.returncode == 0
    assert ended.args[0].state == "finished" and ended.args[0].step == LIVE_STEPS
    assert view.plots.point_count() == LIVE_STEPS
    assert view.plots.last_step() == LIVE_STEPS
    assert view.stat_step.value.text() == f"{LIVE_STEPS} / {LIVE_STEPS}"
    assert "Finished" in view.state_label.text()
    assert beat.ticks > 20, beat.summary()  # the heartbeat ran all along (fewer ticks on a busy machine)
    assert worst < MAX_STALL_S, f"the event loop stalled for {worst * 1000:.0f} ms"
    assert beat.p99() < MAX_STALL_S, beat.summary()  # on the wall clock too, all but the scheduler's rare hiccups


def test_window_reopens_a_finished_run_of_50000_steps(qtbot, qsettings, tmp_path):
    run = _run_folder(tmp_path / "long-run")
    run.write_status(RunStatus(state="finished", step=HISTORY_STEPS, max_steps=HISTORY_STEPS, final_loss=2.0,
                               started_at="2026-01-01T10:00:00+00:00", ended_at="2026-01-02T10:00:00+00:00"))
    with open(run.metrics_path, "w", encoding="utf-8") as fh:
        for step in range(1, HISTORY_STEPS + 1):
            ev = StepLogged(step, HISTORY_STEPS, step / 10000, 2 + 1 / step, 1e-4, 0.5, 3000.0)
            fh.write(json.dumps({**to_dict(ev), "time": 1.0 + step}) + "\n")  # as RunFolder.append_event writes
            if step % 1000 == 0:
                fh.write(json.dumps({**to_dict(EvalLogged(step, step / 10000, 2.1)), "time": 1.0 + step}) + "\n")
    w = MainWindow(settings=qsettings)
    qtbot.addWidget(w)
    w.show()
    w.go("train")
    beat = Heartbeat()
    for _ in range(2):  # reopening twice replaces the curves, it does not add to them
        with qtbot.waitSignal(w.training_view.historyShown, timeout=60000) as shown:
            w._on_open_run(str(run.path))
        assert shown.args[0] == HISTORY_STEPS
    view = w.training_view
    view.plots.smoothing.setValue(90)  # a new smoothing weight redraws 50,000 points at once
    qtbot.wait(300)
    worst = beat.stop()
    print(f"reopen: {HISTORY_STEPS} steps twice + resmooth, {beat.summary()}")
    assert w.current_key() == "train"
    assert view.plots.point_count() == HISTORY_STEPS and view.plots.last_step() == HISTORY_STEPS
    assert view.stat_eval.value.text() == "2.1000"
    assert "Finished" in view.state_label.text()
    assert worst < MAX_STALL_S, f"the event loop stalled for {worst * 1000:.0f} ms"
    assert beat.p99() < MAX_STALL_S, beat.summary()  # the worker reading the log must not starve the GUI thread


def test_dataset_page_keeps_drawing_while_a_big_file_is_read(qtbot, qsettings, tmp_path):
    """Reading, checking and measuring 100,000 chats happens in a worker; the GUI thread must get
    the GIL back between the worker's reads (see ``core.scan`` and ``workers.share_the_gil``)."""
    data = tmp_path / "big.jsonl"
    with open(data, "w", encoding="utf-8") as fh:
        for i in range(100_000):
            fh.write(json.dumps({"messages": [{"role": "user", "content": f"question {i} " + "word " * (i % 40)},
                                              {"role": "assistant", "content": "answer " * (1 + i % 90)}]}) + "\n")
    w = MainWindow(settings=qsettings)
    qtbot.addWidget(w)
    w.show()
    page = w.page("dataset")
    w.go("dataset")
    with qtbot.waitSignal(page.inspected, timeout=120000):  # the sample dataset first: imports warmed
        pass
    beat = Heartbeat()
    with qtbot.waitSignal(page.inspected, timeout=300000) as done:
        page.choose(str(data))
    worst = beat.stop()
    print(f"dataset: 100,000 chats read and inspected, {beat.summary()}")
    assert len(done.args[0]["data"].rows) == 100_000
    assert beat.ticks > 20, beat.summary()
    assert worst < MAX_STALL_S, f"the event loop stalled for {worst * 1000:.0f} ms"
    assert beat.p99() < MAX_STALL_S, beat.summary()
