"""``desktop-ft train --nproc-per-node 2`` on this CPU: a real data-parallel run over gloo, through
the real launcher (torchrun), with the run folder, Stop, resume and failures as the user sees them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from desktop_ft.core.config import save_config
from desktop_ft.core.runs import RunFolder
from tests.conftest import tiny_config

REPO = Path(__file__).resolve().parents[2]


def train_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "desktop_ft", "train", *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(train_cmd(*args), capture_output=True, text=True, cwd=REPO, env=env(), timeout=600)


def config_file(tmp_path: Path, tiny_model: Path, data: Path, out: Path, **training) -> Path:
    path = tmp_path / f"{out.name}.yaml"
    save_config(tiny_config(tiny_model, data, out, **training), path)
    return path


def wait_for_step(run: Path, step: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r.get("event") == "StepLogged" and r["step"] >= step for r in RunFolder(run).read_metrics()):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError(f"step {step} never logged")


def test_two_processes_learn_like_one_with_the_same_global_batch(tmp_path: Path, tiny_model: Path,
                                                                 chat_jsonl: Path) -> None:
    from desktop_ft.core.engine import train

    one = tiny_config(tiny_model, chat_jsonl, tmp_path / "one", batch_size=4, max_steps=4)
    train(one)
    two_dir = tmp_path / "two"
    path = config_file(tmp_path, tiny_model, chat_jsonl, two_dir, batch_size=2, max_steps=4)

    result = cli(str(path), "--nproc-per-node", "2", "--json-events")

    assert result.returncode == 0, result.stderr[-3000:]
    events = [json.loads(line) for line in result.stdout.splitlines()]  # stdout stays pure JSON lines
    assert [e["step"] for e in events if e["event"] == "StepLogged"] == [1, 2, 3, 4]  # once, not once per rank
    assert events[-1]["event"] == "RunFinished" and events[-1]["state"] == "finished"
    run = RunFolder(two_dir)
    status = json.loads(run.status_path.read_text())
    assert status["state"] == "finished" and status["world_size"] == 2 and status["launcher"] == "torchrun"
    assert run.read_config().distributed.nproc_per_node == 2  # config.yaml reruns the same way
    train_steps = [r["step"] for r in run.read_metrics() if r.get("event") == "StepLogged"]
    assert train_steps == [1, 2, 3, 4]
    assert [c.name for c in run.checkpoints()] == ["checkpoint-2", "checkpoint-4"]
    single = [r for r in RunFolder(tmp_path / "one").read_metrics() if r.get("event") == "StepLogged"]
    double = [r for r in run.read_metrics() if r.get("event") == "StepLogged"]
    for a, b in zip(single, double):
        # the mean over ranks of the same 4 examples a step: the same loss, and the same update
        assert b["loss"] == pytest.approx(a["loss"], rel=2e-3)
        assert b["epoch"] == pytest.approx(a["epoch"])
        assert b["tokens_per_second"] > 0
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), run.adapter_dir)
    assert model.peft_config["default"].r == one.method.lora_rank


def test_stop_saves_one_checkpoint_and_resume_continues_on_two_processes(tmp_path: Path, tiny_model: Path,
                                                                         chat_jsonl: Path) -> None:
    out = tmp_path / "run"
    path = config_file(tmp_path, tiny_model, chat_jsonl, out, batch_size=2, max_steps=200, save_steps=1000,
                       eval_steps=1000)
    proc = subprocess.Popen(train_cmd(str(path), "--nproc-per-node", "2", "--json-events"), cwd=REPO, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_step(out, 2, proc)
    workers = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)  # what the window's Stop sends to the command it started
    stdout, stderr = proc.communicate(timeout=300)

    assert proc.returncode == 0, stderr[-3000:]
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    run = RunFolder(out)
    status = run.read_status()
    assert status.state == "stopped" and 2 <= status.step < 200
    assert [c.name for c in run.checkpoints()] == [f"checkpoint-{status.step}"]  # one, at the agreed step
    assert json.loads(stdout.splitlines()[-1])["state"] == "stopped"
    stopped_at = status.step

    again = cli("--resume", str(out), "--max-steps", str(stopped_at + 2), "--json-events")

    assert again.returncode == 0, again.stderr[-3000:]
    events = [json.loads(line) for line in again.stdout.splitlines()]
    started = next(e for e in events if e["event"] == "RunStarted")
    assert started["resumed_from_step"] == stopped_at
    assert [e["step"] for e in events if e["event"] == "StepLogged"] == [stopped_at + 1, stopped_at + 2]
    status = run.read_status()
    assert status.state == "finished" and status.world_size == 2
    steps = [r["step"] for r in run.read_metrics() if r.get("event") == "StepLogged"]
    assert steps == list(range(1, stopped_at + 3))  # no step twice, none missing
    assert (run.adapter_dir / "adapter_config.json").exists()


def test_a_rank_that_dies_fails_the_run_in_status_json(tmp_path: Path, tiny_model: Path, chat_jsonl: Path) -> None:
    out = tmp_path / "run"
    path = config_file(tmp_path, tiny_model, chat_jsonl, out, batch_size=2, max_steps=500, save_steps=1000,
                       eval_steps=1000)
    proc = subprocess.Popen(train_cmd(str(path), "--nproc-per-node", "2"), cwd=REPO, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / "status.json").exists():  # rank 0 has started; rank 1 is loading beside it
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    (launcher,) = psutil.Process(proc.pid).children()
    rank0 = RunFolder(out).read_status().pid
    (other,) = [w for w in launcher.children() if w.pid != rank0]
    other.kill()  # as the out-of-memory killer would
    _out, stderr = proc.communicate(timeout=300)

    assert proc.returncode == 1
    status = RunFolder(out).read_status()
    assert status.state == "failed" and status.error
    assert "resume" in status.error.lower()
    assert "error:" in stderr and f"--resume {out}" in stderr


def test_dry_run_prints_the_launch_command_and_config_and_starts_nothing(tmp_path: Path, tiny_model: Path,
                                                                         chat_jsonl: Path) -> None:
    out = tmp_path / "run"
    path = config_file(tmp_path, tiny_model, chat_jsonl, out)
    result = cli(str(path), "--nproc-per-node", "2", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    launch = [ln for ln in lines if "torch.distributed.run" in ln]
    assert launch == [f"{sys.executable} -m torch.distributed.run --nproc-per-node 2 --standalone -m desktop_ft "
                      f"train {path} --nproc-per-node 2 --json-events"]
    assert "# resolved config:" in lines and "  nproc_per_node: 2" in lines
    assert not out.exists()

    multi = cli(str(path), "--nnodes", "2", "--nproc-per-node", "4", "--master-addr", "node0", "--dry-run")
    assert multi.returncode == 0, multi.stderr
    nodes = [ln for ln in multi.stdout.splitlines() if "torch.distributed.run" in ln]
    assert len(nodes) == 2 and all(f"--node-rank {r} --master-addr node0" in n for r, n in enumerate(nodes))


def test_slurm_writes_a_ready_script(tmp_path: Path, tiny_model: Path, chat_jsonl: Path) -> None:
    path = config_file(tmp_path, tiny_model, chat_jsonl, tmp_path / "shared-run")
    script = tmp_path / "job.sbatch"
    result = cli(str(path), "--nnodes", "2", "--nproc-per-node", "4", "--output-dir", "/shared/run",
                 "--slurm", str(script))
    assert result.returncode == 0, result.stderr
    text = script.read_text()
    assert os.access(script, os.X_OK) and "sbatch" in result.stderr
    assert "#SBATCH --nodes=2" in text
    assert f"train {path} --nnodes 2 --nproc-per-node 4 --output-dir /shared/run" in text
    (srun,) = [ln for ln in text.splitlines() if ln.startswith("srun ")]
    assert "--slurm" not in srun and "--json-events" not in srun
    assert not (tmp_path / "shared-run").exists()


def test_a_strategy_this_machine_cannot_run_is_refused_before_anything_loads(tmp_path: Path) -> None:
    result = cli("--model", str(tmp_path / "no-such-model"), "--nproc-per-node", "2", "--strategy", "fsdp")
    assert result.returncode == 2
    assert "FSDP needs NVIDIA GPUs" in result.stderr and "--strategy ddp" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
