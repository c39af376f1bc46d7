import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from desktop_ft.core.config import RunConfig
from desktop_ft.core.runs import (
    RunBusyError,
    RunFolder,
    RunStatus,
    create_run,
    list_runs,
    mark_checkpoint_complete,
    process_start_time,
)


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


def _fake_checkpoint(run: RunFolder, step: int, *, complete: bool) -> Path:
    ckpt = run.checkpoints_dir / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (ckpt / "adapter_model.safetensors").write_bytes(b"x" * 100)
    if complete:
        mark_checkpoint_complete(ckpt)
    return ckpt


def test_last_checkpoint_skips_an_incomplete_one_and_says_why(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    _fake_checkpoint(run, 2, complete=True)
    four = _fake_checkpoint(run, 4, complete=True)
    _fake_checkpoint(run, 6, complete=False)  # killed before its marker: content check fails (bad weights)
    (four / "adapter_model.safetensors").write_bytes(b"x" * 10)  # cut short after it was marked
    good, skipped = run.usable_checkpoint()
    assert good.name == "checkpoint-2"
    assert skipped[0][0].name == "checkpoint-6"
    assert "10 bytes, not the 100" in skipped[1][1]


def test_pruning_keeps_the_newest_complete_checkpoints_only(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    for step in (2, 4, 6):
        _fake_checkpoint(run, step, complete=True)
    _fake_checkpoint(run, 8, complete=False)
    run.prune_checkpoints(2)
    assert [c.name for c in run.checkpoints()] == ["checkpoint-4", "checkpoint-6", "checkpoint-8"]


def test_a_reused_pid_does_not_make_a_dead_run_live(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    # this very process, but "started" an hour earlier: the pid was reused by someone else
    run.write_status(RunStatus(state="running", pid=os.getpid(), pid_started=process_start_time() - 3600))
    assert run.read_status().state == "failed" and run.live_pid() is None
    run.write_status(RunStatus(state="running", pid=os.getpid(), pid_started=process_start_time()))
    assert run.read_status().state == "running" and run.live_pid() == os.getpid()


def test_the_run_lock_is_exclusive_and_dies_with_its_process(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from desktop_ft.core.runs import RunFolder, RunStatus, process_start_time; import os\n"
        f"r = RunFolder({str(tmp_path)!r}); lock = r.lock()\n"
        "r.write_status(RunStatus(pid=os.getpid(), pid_started=process_start_time())); print('held', flush=True)\n"
        "time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert run.is_locked() and run.read_status().state == "running"
        with pytest.raises(RunBusyError, match=f"process {holder.pid}"):
            run.lock()
    finally:
        holder.kill()  # SIGKILL: no chance to clean up
        holder.wait()
    assert not run.is_locked()
    assert run.read_status().state == "failed"
    run.lock().release()


def test_status_reader_tolerates_a_torn_file(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    run.status_path.write_text('{"state": "runn')
    status = run.read_status()
    assert status.state == "failed" and "unreadable" in status.error


def test_create_runs_are_unique_and_listed(tmp_path: Path) -> None:
    config = RunConfig().replace({"output.run_name": "my run"})
    a = create_run(config, runs_root=tmp_path)
    b = create_run(config, runs_root=tmp_path)
    assert a.path != b.path and "my-run" in a.path.name
    a.write_config(config)
    b.write_config(config)
    assert {r.path for r in list_runs(tmp_path)} == {a.path, b.path}


def test_output_dir_holding_a_run_is_refused(tmp_path: Path) -> None:
    from desktop_ft.core.errors import UserError

    RunFolder(tmp_path).write_status(RunStatus(state="finished"))
    with pytest.raises(UserError, match="--resume"):
        create_run(RunConfig().replace({"output.output_dir": str(tmp_path)}))


def test_output_dir_that_is_a_file_is_refused_with_a_sentence(tmp_path: Path) -> None:
    from desktop_ft.core.errors import UserError

    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(UserError, match="is a file, not a folder"):
        create_run(RunConfig().replace({"output.output_dir": str(tmp_path / "out")}))


def test_the_metrics_log_holds_events_as_to_dict_plus_time(tmp_path: Path) -> None:
    from desktop_ft.core.events import StepLogged, to_dict

    run = RunFolder(tmp_path)
    ev = StepLogged(step=1, max_steps=3, epoch=0.1, loss=2.0, extras={"rewards/margins": 0.5})
    run.append_event(ev)
    run.close()
    (record,) = run.read_metrics()
    assert {k: v for k, v in record.items() if k != "time"} == to_dict(ev) and record["time"] > 0
    assert run.read_events() == [ev]


def test_status_writes_retry_while_a_reader_holds_the_file(tmp_path: Path, monkeypatch) -> None:
    """Windows: os.replace raises PermissionError while another process has status.json open."""
    import desktop_ft.core.config as config_module

    real = os.replace
    calls = []

    def sharing_violation(src, dst):
        calls.append(dst)
        if len(calls) <= 3:
            raise PermissionError(13, "The process cannot access the file because it is being used")
        return real(src, dst)

    monkeypatch.setattr(config_module.os, "replace", sharing_violation)
    run = RunFolder(tmp_path)
    run.write_status(RunStatus(state="stopped", step=4))
    assert len(calls) == 4 and run.read_status().step == 4
    assert not list(tmp_path.glob(".status.json.*"))  # no temp file left behind


def test_a_per_step_status_write_that_keeps_failing_does_not_end_training(tmp_path: Path, monkeypatch) -> None:
    import desktop_ft.core.config as config_module
    from desktop_ft.core.engine import _write_status_quietly

    monkeypatch.setattr(config_module, "REPLACE_RETRIES", 2)
    monkeypatch.setattr(config_module.os, "replace", lambda *_a: (_ for _ in ()).throw(PermissionError(13, "busy")))
    _write_status_quietly(RunFolder(tmp_path), RunStatus(step=1))  # skipped, not raised


def test_status_json_with_a_wrong_type_reads_as_unreadable_not_a_crash_later(tmp_path):
    """A hand-edited status.json ('final_loss': 'abc') is reported by the reader, naming the field."""
    from desktop_ft.core.runs import RunFolder

    run = RunFolder(tmp_path)
    (tmp_path / "status.json").write_text('{"state": "finished", "step": 3, "final_loss": "abc"}')
    status = run.read_status()
    assert status.state == "failed" and "final_loss" in status.error
    (tmp_path / "status.json").write_text('{"state": "finished", "step": 3, "final_loss": 1}')
    assert run.read_status().final_loss == 1 and run.read_status().state == "finished"
    (tmp_path / "status.json").write_text('{"state": "stopped", "world_size": 2, "launcher": "torchrun"}')
    assert run.read_status().world_size == 2


def test_resume_drops_the_steps_after_the_checkpoint_and_keeps_the_rest(tmp_path):
    """A resumed run's curve has no doubled steps: records past the checkpoint's step go, every earlier
    record stays as it was (evaluations and events without a step included), and a torn last line is dropped."""
    run = RunFolder(tmp_path / "run")
    records = [{"type": "train", "step": s, "loss": 1.0 / s} for s in range(1, 11)]
    records.insert(3, {"type": "eval", "step": 3, "eval_loss": 0.5})
    records.insert(0, {"type": "started"})
    run.metrics_path.parent.mkdir(parents=True, exist_ok=True)
    run.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"type": "train", "st',
                                encoding="utf-8")
    run.truncate_metrics_after(5)
    kept = [json.loads(line) for line in run.metrics_path.read_text(encoding="utf-8").splitlines()]
    assert kept == [r for r in records if r.get("step", 0) <= 5]
    assert not list(run.path.glob(".metrics*.tmp"))


def test_a_run_summary_follows_an_edited_config(tmp_path):
    """Listing parses a run's config once (keyed by its size and time); an edited config is read again."""
    from desktop_ft.core import history

    run = RunFolder(tmp_path / "r")
    run.write_config(RunConfig().replace({"output.run_name": "first", "method.method": "lora"}))
    run.write_status(RunStatus(state="finished", step=1, max_steps=1))
    assert (history.summarize(run).name, history.summarize(run).method) == ("first", "lora")
    run.write_config(RunConfig().replace({"output.run_name": "renamed-run", "method.method": "qlora"}))
    assert (history.summarize(run).name, history.summarize(run).method) == ("renamed-run", "qlora")
    run.config_path.write_text("model: [unclosed\n", encoding="utf-8")
    summary = history.summarize(run)
    assert summary.method == "?" and "config.yaml" in summary.config_error
