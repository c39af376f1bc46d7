"""The worker layer under the pages: jobs started together, in a fresh process, as a user's first
clicks start them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter (transformers not yet imported, as in a window that just opened): building the
# Dataset page starts an inspection of the current data, choosing a file right after starts another,
# and both import transformers and datasets for the first time at once.
FIRST_CLICKS = r"""
import sys, time
from PySide6.QtWidgets import QApplication
app = QApplication([])
from desktop_ft.core.config import RunConfig
from desktop_ft.ui.session import Session
from desktop_ft.ui.wizard.dataset_page import DatasetPage
import desktop_ft.ui.wizard.dataset_page as dp
errors, results = [], []
on_error, on_result = dp.DatasetPage._on_error, dp.DatasetPage._on_result
dp.DatasetPage._on_error = lambda self, q, e: (errors.append(f"{type(e).__name__}: {e}"), on_error(self, q, e))
dp.DatasetPage._on_result = lambda self, q, r: (results.append(q), on_result(self, q, r))
page = DatasetPage(Session(RunConfig()))
page.show()
page.choose(sys.argv[1])
deadline = time.monotonic() + 240
while len(errors) + len(results) < 2 and time.monotonic() < deadline:
    app.processEvents()
    time.sleep(0.01)
print(repr(errors), len(results))
"""


def test_two_first_jobs_importing_the_ml_stack_at_once_both_succeed(tmp_path):
    data = tmp_path / "chat.jsonl"
    data.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": f"hi {i}"},
                                                       {"role": "assistant", "content": "hello"}]})
                              for i in range(30)) + "\n", encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT), QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", FIRST_CLICKS, str(data)], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[] 2", out.stdout + out.stderr[-3000:]


def test_a_quick_job_is_not_queued_behind_long_ones(qtbot):
    """One long job per core (chat generations, inspections of big files) must not hold up a quick
    one, such as the Runs page listing its runs."""
    import threading

    from PySide6.QtCore import QObject, QThread

    from desktop_ft.ui.workers import run_async

    owner = QObject()
    release = threading.Event()
    started = threading.Semaphore(0)

    def long_job() -> None:
        started.release()
        release.wait(60)

    long_jobs = [run_async(owner, long_job) for _ in range(QThread.idealThreadCount() + 1)]
    try:
        for _ in long_jobs:
            assert started.acquire(timeout=10), "a long job never started"
        done: list[str] = []
        run_async(owner, lambda: "listed", on_result=done.append)
        qtbot.waitUntil(lambda: done == ["listed"], timeout=5000)
        assert all(job.is_running for job in long_jobs)
    finally:
        release.set()
    qtbot.waitUntil(lambda: not any(job.is_running for job in long_jobs), timeout=10000)
