"""``desktop-ft train`` as a user meets it: exit codes, one-sentence errors, a working run."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "desktop_ft", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, timeout=600)


def test_missing_data_file_is_one_sentence_and_exit_2(tmp_path: Path, tiny_model: Path) -> None:
    result = cli("train", "--model", str(tiny_model), "--data", str(tmp_path / "nope.jsonl"),
                 "--output-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "nope.jsonl" in result.stderr and "not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_flag_exits_2_and_says_how_to_get_help() -> None:
    result = cli("train", "--learnig-rate", "1")
    assert result.returncode == 2
    assert "--learnig-rate" in result.stderr and "--help" in result.stderr


def test_unknown_set_key_suggests_the_right_one(tmp_path: Path) -> None:
    result = cli("train", "--set", "training.batchsize=2")
    assert result.returncode == 2
    assert "training.batch_size" in result.stderr and "Traceback" not in result.stderr


def test_train_then_rerun_from_its_config(tmp_path: Path, tiny_model: Path, chat_jsonl: Path) -> None:
    out = tmp_path / "run"
    result = cli("train", "--model", str(tiny_model), "--data", str(chat_jsonl), "--max-steps", "3",
                 "--output-dir", str(out), "--set", "training.batch_size=2", "--set", "training.max_length=96",
                 "--json-events")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]  # stdout is pure JSON lines
    assert events[-1]["event"] == "RunFinished" and events[-1]["state"] == "finished"
    assert [e["step"] for e in events if e["event"] == "StepLogged"] == [1, 2, 3]
    assert json.loads((out / "status.json").read_text())["state"] == "finished"
    assert (out / "adapter" / "adapter_config.json").exists()

    again = cli("train", str(out / "config.yaml"), "--output-dir", str(tmp_path / "rerun"), "--max-steps", "1")
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "rerun" / "status.json").read_text())["step"] == 1


def test_list_settings_shows_every_key_with_help() -> None:
    result = cli("train", "--list-settings")
    assert result.returncode == 0
    assert "training.learning_rate" in result.stdout and "method.lora_rank" in result.stdout


def test_importing_the_cli_loads_no_torch() -> None:
    code = ("import sys, desktop_ft.cli as c; c.build_parser(); "
            "assert not any(m.split('.')[0] in ('torch','transformers','trl','peft') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
