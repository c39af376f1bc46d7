"""``desktop-ft train`` with methods, tasks and presets, and resume after a ``kill -9``."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from desktop_ft import resources

REPO = Path(__file__).resolve().parents[2]
SAMPLE = resources.sample_dataset()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "desktop_ft", *args], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ), timeout=600)


def test_resume_after_kill_9_continues_steps_and_metrics(tiny_model: Path, chat_jsonl: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "desktop_ft", "train", "--model", str(tiny_model), "--data", str(chat_jsonl),
           "--max-steps", "10", "--output-dir", str(out), "--json-events", "--set", "training.save_steps=2",
           "--set", "training.batch_size=2", "--set", "training.max_length=96", "--set", "training.eval_steps=100"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    saved, killed_after = 0, None
    try:
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "CheckpointSaved":
                saved = event["step"]
            if event["event"] == "StepLogged" and saved >= 4 and event["step"] > saved:
                os.kill(proc.pid, signal.SIGKILL)  # no handler, no clean-up: as if the power went
                killed_after = event["step"]
                break
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and killed_after is not None

    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "running"  # the killed process never got to say otherwise

    resumed = cli("train", "--resume", str(out), "--json-events")
    assert resumed.returncode == 0, resumed.stderr
    events = [json.loads(line) for line in resumed.stdout.splitlines()]
    started = next(e for e in events if e["event"] == "RunStarted")
    assert 4 <= started["resumed_from_step"] < killed_after
    steps = [e["step"] for e in events if e["event"] == "StepLogged"]
    assert steps == list(range(started["resumed_from_step"] + 1, 11))
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if m["event"] == "StepLogged"] == list(range(1, 11))  # none doubled, none lost
    final = json.loads((out / "status.json").read_text())
    assert final["state"] == "finished" and final["step"] == 10
    from desktop_ft.core.runs import RunFolder

    kept = [int(p.name.split("-")[1]) for p in RunFolder(out).checkpoints()]
    assert kept[-1] == 10 and len(kept) <= 3  # training.save_total_limit (3) caps the checkpoints kept


def test_task_defaults_from_preference_data_and_preset_flags_win(tiny_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "pref.jsonl"
    questions = [json.loads(line)["messages"][0]["content"] for line in SAMPLE.read_text().splitlines()[:8]]
    data.write_text("".join(json.dumps({"prompt": q, "chosen": "One, two, three.", "rejected": "No."}) + "\n"
                            for q in questions))
    out = tmp_path / "run"
    result = cli("train", "--model", str(tiny_model), "--data", str(data), "--preset", "quick test",
                 "--max-steps", "2", "--output-dir", str(out), "--set", "training.max_length=64")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["method"]["task"] == "dpo"  # from the data's kind
    assert config["method"]["lora_rank"] == 8  # from the preset
    assert config["training"]["max_steps"] == 2  # the flag wins over the preset's 30
    assert config["training"]["learning_rate"] == 2e-4 * 0.25  # LoRA's rate, scaled for preferences
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if m["event"] == "StepLogged"]
    assert steps and "rewards/margins" in steps[0]["extras"]


def test_qlora_on_a_machine_without_cuda_is_one_sentence_and_exit_2(tiny_model: Path, chat_jsonl: Path,
                                                                   tmp_path: Path) -> None:
    result = cli("train", "--model", str(tiny_model), "--data", str(chat_jsonl), "--method", "qlora",
                 "--output-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "NVIDIA GPU" in result.stderr and "--method lora" in result.stderr
    assert "Traceback" not in result.stderr


def test_list_methods_names_every_method_task_and_preset() -> None:
    result = cli("train", "--list-methods")
    assert result.returncode == 0
    for word in ("lora", "qlora", "full", "dora", "prompt_tuning", "dpo", "kto", "orpo", "pretrain", "Quick test",
                 "Low memory"):
        assert word in result.stdout


def test_list_settings_prints_every_key_with_its_real_default() -> None:
    from desktop_ft.core.config import all_dotted_keys

    result = cli("train", "--list-settings")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert [line.split(" (default ")[0] for line in lines] == all_dotted_keys()
    assert "MISSING" not in result.stdout
    assert "training.learning_rate (default 0.0002):" in result.stdout
    assert "data.columns (default {}):" in result.stdout  # a default_factory field
    assert "method.qlora.quant_type (default 'nf4'):" in result.stdout
