import json
import subprocess
import sys
from pathlib import Path

from desktop_ft.core.config import RunConfig
from desktop_ft.core.runs import RunFolder, RunStatus, list_runs, new_run_folder


def test_metrics_survive_a_torn_last_line(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    run.append_metric({"type": "train", "step": 1, "loss": 2.0})
    run.append_metric({"type": "train", "step": 2, "loss": 1.5})
    run.close()
    with open(run.metrics_path, "a") as fh:
        fh.write('{"type": "train", "step": 3, "lo')  # killed mid-write
    assert [r["step"] for r in run.read_metrics()] == [1, 2]


def test_status_of_a_killed_process_reads_as_failed(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    run = RunFolder(tmp_path)
    run.write_status(RunStatus(state="running", step=7, pid=proc.pid))
    status = run.read_status()
    assert status.state == "failed"
    assert "Resume" in status.error
    assert json.loads(run.status_path.read_text())["state"] == "running"  # the file itself is untouched


def test_last_checkpoint_skips_an_incomplete_one(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    for step, complete in ((2, True), (4, True), (6, False)):
        ckpt = run.checkpoints_dir / f"checkpoint-{step}"
        ckpt.mkdir(parents=True)
        if complete:
            (ckpt / "trainer_state.json").write_text("{}")
    assert run.last_checkpoint().name == "checkpoint-4"


def test_new_run_folders_are_unique_and_listed(tmp_path: Path) -> None:
    config = RunConfig().replace({"output.run_name": "my run"})
    a = new_run_folder(config, runs_root=tmp_path)
    b = new_run_folder(config, runs_root=tmp_path)
    assert a.path != b.path and "my-run" in a.path.name
    a.write_config(config)
    b.write_config(config)
    assert {r.path for r in list_runs(tmp_path)} == {a.path, b.path}


def test_output_dir_holding_a_run_is_refused(tmp_path: Path) -> None:
    import pytest

    from desktop_ft.core.errors import UserError

    RunFolder(tmp_path).write_status(RunStatus(state="finished"))
    with pytest.raises(UserError, match="--resume"):
        new_run_folder(RunConfig().replace({"output.output_dir": str(tmp_path)}))
