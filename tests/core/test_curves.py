"""A run's saved curves: Arrow's columnar read gives exactly what the event-by-event read gives,
on logs as the engine writes them and on logs a user's machine can leave behind (a kill mid-line,
a damaged line, NaN losses)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from desktop_ft.core.curves import _read_by_event, read_curves
from desktop_ft.core.events import (CheckpointSaved, EvalLogged, Progress, RunFinished, RunStarted, StepLogged)
from desktop_ft.core.runs import RunFolder

ROOT = Path(__file__).resolve().parents[2]


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key], equal_nan=True), key


def _log(tmp_path: Path, steps: int = 40) -> RunFolder:
    run = RunFolder(tmp_path / "run")
    run.append_event(RunStarted(str(run.path), steps))
    run.append_event(Progress("tokenising", "Tokenising 40 rows", 0.5))
    for step in range(1, steps + 1):
        loss = float("nan") if step == 7 else (math.inf if step == 8 else 3.0 - step / 100)
        extras = {"rewards/margins": step / 10} if step % 3 == 0 else None
        run.append_event(StepLogged(step, steps, step / steps, loss, None if step == 5 else 1e-4 * step,
                                    0.5, 1000.0 + step, eta_seconds=steps - step, extras=extras))
        if step % 10 == 0:
            run.append_event(EvalLogged(step, step / steps, 2.5 - step / 100, extras={"eval_acc": 0.5}))
            run.append_event(CheckpointSaved(step, str(run.path / f"checkpoint-{step}")))
    run.append_event(RunFinished("finished", steps, adapter_dir="a", run_dir=str(run.path)))
    run.close()
    return run


def test_curves_read_as_columns_match_the_events_on_a_log_the_engine_writes(tmp_path):
    run = _log(tmp_path)
    curves = read_curves(run)
    _same(curves, _read_by_event(run))
    assert curves["step"].tolist() == list(range(1, 41))
    assert math.isnan(curves["loss"][6]) and curves["loss"][7] == math.inf  # NaN/inf kept where they were
    assert math.isnan(curves["lr"][4]) and curves["lr"][5] == 1e-4 * 6  # a null value is NaN, not dropped
    assert curves["speed"][-1] == 1040.0
    assert curves["eval_step"].tolist() == [10, 20, 30, 40]
    assert curves["eval"].tolist() == [2.4, 2.3, 2.2, 2.1]


def test_a_line_being_written_is_left_out_until_it_is_whole(tmp_path):
    run = _log(tmp_path, steps=3)
    with open(run.metrics_path, "a", encoding="utf-8") as fh:
        fh.write('{"event": "StepLogged", "step": 4, "max_steps": 4, "epo')  # a live run mid-write, or a kill
    assert read_curves(run)["step"].tolist() == [1, 2, 3]
    with open(run.metrics_path, "a", encoding="utf-8") as fh:
        fh.write('ch": 1.0, "loss": 1.25}\n')
    curves = read_curves(run)
    assert curves["step"].tolist() == [1, 2, 3, 4] and curves["loss"][-1] == 1.25


def test_a_damaged_line_costs_that_line_only(tmp_path):
    run = _log(tmp_path, steps=20)
    lines = run.metrics_path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[5] = "\x00\x00garbage from a crash\n"  # not JSON at all
    lines[9] = json.dumps({"event": "StepLogged", "step": 8, "max_steps": 20, "epoch": 0.4, "loss": "oops"}) + "\n"
    lines.insert(3, "\n")
    lines.insert(4, "[1, 2]\n")  # JSON, but not a record
    run.metrics_path.write_text("".join(lines), encoding="utf-8")
    curves = read_curves(run)
    _same(curves, _read_by_event(run))
    assert 4 not in curves["step"].tolist()  # line 6 held step 4
    assert len(curves["step"]) == 19 and curves["eval_step"].tolist() == [10, 20]


def test_no_log_or_an_empty_one_gives_empty_curves(tmp_path):
    run = RunFolder(tmp_path / "never-started")
    assert all(len(v) == 0 for v in read_curves(run).values())
    run.path.mkdir()
    run.metrics_path.write_text("", encoding="utf-8")
    assert all(len(v) == 0 for v in read_curves(run).values())
    run.metrics_path.write_text('{"event": "RunStarted", "run_dir": "x", "max_steps": 3}', encoding="utf-8")
    assert all(len(v) == 0 for v in read_curves(run).values())  # one line, still being written


def test_a_long_log_whose_last_line_is_far_from_a_newline(tmp_path):
    run = _log(tmp_path, steps=5)
    with open(run.metrics_path, "a", encoding="utf-8") as fh:
        fh.write('{"event": "Progress", "stage": "x", "message": "' + "y" * 200_000)  # > the tail read at once
    assert read_curves(run)["step"].tolist() == [1, 2, 3, 4, 5]


def test_reading_curves_keeps_the_gil_free_of_pandas(tmp_path):
    """pyarrow's conversions of arrays with nulls import pandas: half a second of a worker holding
    the GIL while the window draws. The columnar read must not."""
    run = _log(tmp_path, steps=5)
    code = ("import sys; from desktop_ft.core.curves import read_curves; "
            f"c = read_curves({str(run.path)!r}); assert len(c['step']) == 5; print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
