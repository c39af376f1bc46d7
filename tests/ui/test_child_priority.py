"""The training child started by the window runs at a lower CPU priority, so the desktop and the
window stay responsive while it uses every core."""

import sys

import psutil

from desktop_ft.ui.workers import CHILD_NICE, TrainingProcess


def test_the_training_child_runs_at_lower_priority(qtbot, tmp_path):
    code = "import time, os\nfor _ in range(400):\n    time.sleep(0.01)\n"
    window_nice = psutil.Process().nice()
    (tmp_path / "run").mkdir()  # the window creates the run folder before it starts the child
    proc = TrainingProcess(tmp_path / "run", [sys.executable, "-c", code])
    with qtbot.waitSignal(proc.ended, timeout=60000):
        proc.start()
        qtbot.waitUntil(lambda: proc.pid is not None, timeout=20000)
        child = psutil.Process(proc.pid)
        if sys.platform == "win32":
            qtbot.waitUntil(lambda: child.nice() == psutil.BELOW_NORMAL_PRIORITY_CLASS, timeout=5000)
        else:
            qtbot.waitUntil(lambda: child.nice() >= CHILD_NICE, timeout=5000)
    assert psutil.Process().nice() == window_nice  # the window itself is left alone
