"""Fault injection: the run folder survives kill -9 at any point, a damaged checkpoint, a second
trainer on the same folder and a full disk — every step ends up in the metrics exactly once.

Real processes, really killed (SIGKILL: no handler runs), on the tiny random Llama. Kills inside a
checkpoint save are placed by a small wrapper that patches the Trainer in the child and kills the
child from there, so the folder is left exactly as a crash at that instant leaves it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from desktop_ft.core.config import save_config
from desktop_ft.core.runs import RunFolder
from tests.conftest import tiny_config

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and tmpfs are POSIX")

MAX_STEPS = 8

#: Child-side patches: each kills the process at one instant of a checkpoint save.
KILLS = {
    # weights and optimizer written, trainer_state.json not yet: the checkpoint is incomplete
    "mid_save": """
import transformers
_orig = transformers.Trainer._save_rng_state
def _patched(self, output_dir):
    if self.state.global_step >= AT: os.kill(os.getpid(), signal.SIGKILL)
    return _orig(self, output_dir)
transformers.Trainer._save_rng_state = _patched
""",
    # the optimizer file cut in half as a disk-full or power cut leaves it, then dead
    "torn_optimizer": """
import transformers
_orig = transformers.Trainer._save_optimizer_and_scheduler
def _patched(self, output_dir):
    _orig(self, output_dir)
    if self.state.global_step >= AT:
        p = os.path.join(output_dir, "optimizer.pt")
        os.truncate(p, os.path.getsize(p) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
transformers.Trainer._save_optimizer_and_scheduler = _patched
""",
    # the Trainer finished the save, our completion marker not written yet: the content check decides
    "before_marker": """
import desktop_ft.core.engine as engine
_orig = engine.mark_checkpoint_complete
def _patched(path):
    if int(str(path).rsplit("-", 1)[1]) >= AT: os.kill(os.getpid(), signal.SIGKILL)
    return _orig(path)
engine.mark_checkpoint_complete = _patched
""",
}


def _child(argv: list[str], patch: str = "", at: int = 0) -> list[str]:
    code = (f"import os, signal, sys\nAT = {at}\n{patch}\n"
            "from desktop_ft.cli import main\nsys.exit(main(sys.argv[1:]))")
    return [sys.executable, "-c", code, *argv]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), TOKENIZERS_PARALLELISM="false")


def _steps(run: RunFolder) -> list[int]:
    return [r["step"] for r in run.read_metrics() if r.get("event") == "StepLogged"]


def _wait_for_steps(run: RunFolder, proc: subprocess.Popen, n: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if len(_steps(run)) >= n:
            return
        time.sleep(0.05)


def _config_file(tmp_path: Path, tiny_model: Path, chat_jsonl: Path, **training) -> tuple[Path, Path]:
    out = tmp_path / "run"
    values = dict(max_steps=MAX_STEPS, save_steps=2, logging_steps=1, batch_size=2, save_total_limit=2)
    values.update(training)
    config = tiny_config(tiny_model, chat_jsonl, out, **values).replace({"data.validation_fraction": 0.0})
    path = tmp_path / "config.yaml"
    save_config(config, path)
    return path, out


def test_kill_9_soak_ends_with_a_complete_run_and_every_step_once(tiny_model, chat_jsonl, tmp_path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    config_path, out = _config_file(tmp_path, tiny_model, chat_jsonl)
    run = RunFolder(out)
    argv = ["train", str(config_path)]
    history = []
    for _attempt in range(4):
        mode = rng.choice(["between", "between", *KILLS])
        done = max(_steps(run), default=0)
        if mode == "between":
            proc = subprocess.Popen(_child(argv), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _wait_for_steps(run, proc, len(_steps(run)) + rng.randint(1, 3))
            proc.send_signal(signal.SIGKILL)
        else:
            at = rng.choice([s for s in range(2, MAX_STEPS, 2) if s > done] or [MAX_STEPS])
            proc = subprocess.Popen(_child(argv, KILLS[mode], at), env=_env(), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=300)
        history.append((mode, proc.returncode, _steps(run)[-1:] or [0]))
        assert b"Traceback" not in err, (seed, history, err.decode()[-2000:])
        if proc.returncode == 0:
            break
        assert run.read_status().state == "failed", (seed, history)  # a killed run reads as such, never 'running'
        argv = ["train", "--resume", str(out)]
    final = subprocess.run(_child(argv), env=_env(), capture_output=True, timeout=300)
    assert final.returncode == 0 and b"Traceback" not in final.stderr, (seed, history, final.stderr.decode()[-2000:])

    assert run.read_status().state == "finished", (seed, history)
    assert _steps(run) == list(range(1, MAX_STEPS + 1)), (seed, history)  # none lost, none doubled
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(run.adapter_dir))


def test_a_run_killed_after_its_last_checkpoint_finishes_without_training_a_step_more(
        tiny_model, chat_jsonl, tmp_path) -> None:
    """Killed after the checkpoint at max_steps but before its marker (the soak found it: seed
    497509479): resuming there made the Trainer train step 9 of 8, since max_steps is not a whole
    number of epochs here, and the log ended with two steps too many."""
    config_path, out = _config_file(tmp_path, tiny_model, chat_jsonl)
    run = RunFolder(out)
    killed = subprocess.run(_child(["train", str(config_path)], KILLS["before_marker"], MAX_STEPS), env=_env(),
                            capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL and _steps(run) == list(range(1, MAX_STEPS + 1))
    final = subprocess.run(_child(["train", "--resume", str(out)]), env=_env(), capture_output=True, timeout=300)
    assert final.returncode == 0, final.stderr.decode()[-2000:]
    assert _steps(run) == list(range(1, MAX_STEPS + 1))  # nothing trained past the end
    status = run.read_status()
    assert status.state == "finished" and status.step == MAX_STEPS
    assert (run.adapter_dir / "adapter_model.safetensors").exists()


def test_a_damaged_newest_checkpoint_is_skipped_by_name_and_metrics_trimmed_to_the_good_one(make_config) -> None:
    import threading

    from desktop_ft.core.engine import train
    from desktop_ft.core.events import Progress, StepLogged

    stop = threading.Event()
    config = make_config(max_steps=8, save_steps=2, logging_steps=1, save_total_limit=3)

    def on_event(ev):
        if isinstance(ev, StepLogged) and ev.step >= 5:
            stop.set()

    assert train(config, on_event=on_event, stop=stop).state == "stopped"
    run = RunFolder(Path(config.output.output_dir))
    newest = run.checkpoints()[-1]
    assert newest.name == "checkpoint-5"  # Stop saves the step it stopped at
    weights = newest / "adapter_model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)  # a crash or full disk mid-save

    events = []
    changed = run.read_config().replace({"training.learning_rate": 1e-3})  # `--resume --set …`
    outcome = train(changed, run=run, resume=True, on_event=events.append)
    assert outcome.state == "finished" and outcome.step == 8
    assert run.read_config().training.learning_rate == 1e-3  # the folder records what it trained with
    said = [e.message for e in events if isinstance(e, Progress) and e.stage == "resume"]
    assert any("checkpoint-5" in m and "adapter_model.safetensors" in m for m in said), said
    assert any("Resuming from step 4" in m for m in said), said
    assert _steps(run) == list(range(1, 9))


def test_resume_with_no_usable_checkpoint_keeps_the_earlier_metrics(make_config) -> None:
    from desktop_ft.core.engine import train
    from desktop_ft.core.events import StepLogged

    config = make_config(max_steps=3, save_steps=100, logging_steps=1)
    run = RunFolder(Path(config.output.output_dir))
    assert train(config).state == "finished"
    for ckpt in run.checkpoints():  # the final save at step 3 is the only checkpoint: damage it
        (ckpt / "trainer_state.json").write_text("{")
    before = _steps(run)
    events = []
    assert train(run.read_config(), run=run, resume=True, on_event=events.append).state == "finished"
    assert _steps(run) == [1, 2, 3]  # started again, the curve holds each step once
    kept = [json.loads(line) for line in (run.path / "metrics.attempt-1.jsonl").read_text().splitlines()]
    assert [r["step"] for r in kept if r["event"] == "StepLogged"] == before  # the first attempt is not lost
    assert [e.step for e in events if isinstance(e, StepLogged)] == [1, 2, 3]


def test_a_second_trainer_on_a_live_run_is_refused_and_changes_nothing(tiny_model, chat_jsonl, tmp_path,
                                                                     capsys) -> None:
    from desktop_ft.cli import main

    config_path, out = _config_file(tmp_path, tiny_model, chat_jsonl, max_steps=400, save_steps=1000)
    run = RunFolder(out)
    first = subprocess.Popen(_child(["train", str(config_path)]), env=_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        _wait_for_steps(run, first, 1)
        assert first.poll() is None
        status_before = run.status_path.read_text()
        for argv in (["train", "--resume", str(out)], ["train", str(config_path)]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert f"process {first.pid}" in err and err.count("\n") == 1, err
        assert run.read_status().pid == first.pid
        assert json.loads(run.status_path.read_text())["pid"] == json.loads(status_before)["pid"]
        assert run.read_status().state == "running" and run.live_pid() == first.pid
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert run.read_status().state == "failed" and run.live_pid() is None


@pytest.fixture()
def tiny_disk(tmp_path: Path):
    """A real 64 MiB tmpfs (root can mount one); skipped where the machine does not allow it."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + made.stderr.decode().strip())
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` until only ``leave`` bytes are free."""
    import shutil

    filler = disk / "filler.bin"
    free = shutil.disk_usage(disk).free
    with open(filler, "wb") as fh:
        fh.truncate(0)
        chunk = b"\0" * (1 << 20)
        todo = max(free - leave, 0)
        while todo > 0:
            fh.write(chunk[: min(len(chunk), todo)])
            todo -= len(chunk)
    return filler


@pytest.mark.parametrize("checked", [True, False], ids=["checked-before-save", "enospc-mid-save"])
def test_a_full_disk_stops_the_run_with_the_previous_checkpoint_intact(make_config, tiny_disk, monkeypatch,
                                                                      checked) -> None:
    from desktop_ft.core import engine
    from desktop_ft.core.events import CheckpointSaved

    if not checked:  # let the save itself run into ENOSPC
        monkeypatch.setattr(engine, "check_free_space", lambda *a, **k: None)
    config = make_config(out=tiny_disk / "run", max_steps=6, save_steps=2, logging_steps=1, save_total_limit=3)
    run = RunFolder(tiny_disk / "run")
    filler = []

    def on_event(ev):
        if isinstance(ev, CheckpointSaved) and ev.step == 2:
            filler.append(_fill(tiny_disk, leave=48 << 10))  # room for the log lines, not for a checkpoint

    outcome = engine.train(config, on_event=on_event)
    assert outcome.state == "stopped" and outcome.step == 2
    assert "checkpoint-2 is intact" in outcome.error and "Free some space" in outcome.error
    assert "\n" not in outcome.error
    status = run.read_status()
    assert status.state == "stopped" and status.error == outcome.error
    assert [c.name for c in run.checkpoints()] == ["checkpoint-2"]  # the half-written one is gone
    assert run.last_checkpoint().name == "checkpoint-2"

    filler[0].unlink()  # the user frees space and resumes
    monkeypatch.undo()
    assert engine.train(run.read_config(), run=run, resume=True).state == "finished"
    assert _steps(run) == list(range(1, 7))


def test_too_little_space_for_a_first_checkpoint_refuses_before_training(make_config, tiny_disk) -> None:
    from desktop_ft.core.engine import DiskFullError, train

    _fill(tiny_disk, leave=256 << 10)
    config = make_config(out=tiny_disk / "run", max_steps=2)
    with pytest.raises(DiskFullError, match="not enough free disk space"):
        train(config)
    assert RunFolder(tiny_disk / "run").read_status().state == "failed"
