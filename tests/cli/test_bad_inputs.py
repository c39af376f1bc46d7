"""Every bad input of issue 13 is exit 2 and one sentence naming what, where and how to fix it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from desktop_ft.cli import main
from desktop_ft.core.config import RunConfig, save_config


def _one_sentence(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_non_utf8_config(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_bytes(b"model:\n  name: caf\xe9\n")
    assert main(["train", str(bad)]) == 2
    assert "config.yaml line 2: is not UTF-8" in _one_sentence(capsys)


@pytest.mark.parametrize("key", ["training.learning_rate", "training.weight_decay", "data.validation_fraction",
                                 "method.lora_dropout", "training.epochs"])
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_nan_and_inf_are_refused_for_float_settings(key: str, value: str, tmp_path: Path, capsys) -> None:
    section, name = key.split(".")
    path = tmp_path / "config.yaml"
    path.write_text(f"{section}:\n  {name}: {value}\n")
    assert main(["train", str(path)]) == 2
    assert key in _one_sentence(capsys)


def test_max_steps_zero_is_refused(tmp_path: Path, capsys) -> None:
    assert main(["train", "--max-steps", "0", "--output-dir", str(tmp_path / "r")]) == 2
    assert "max_steps' is 0" in _one_sentence(capsys)
    assert not (tmp_path / "r").exists()


def test_output_dir_that_is_a_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "afile").write_text("x")
    assert main(["train", "--output-dir", str(tmp_path / "afile")]) == 2
    assert "is a file, not a folder" in _one_sentence(capsys)


def test_output_dir_that_cannot_be_created_is_one_sentence(tmp_path: Path, capsys, monkeypatch) -> None:
    """What the up-front checks cannot see (root ignores permission bits; read-only mounts, ACLs):
    the mkdir itself fails, and that is a sentence too, not a traceback."""
    real_mkdir = Path.mkdir

    def refuse(self, *args, **kwargs):
        if self.name == "denied":
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    assert main(["train", "--output-dir", str(tmp_path / "denied"), "--max-steps", "1"]) == 2
    line = _one_sentence(capsys)
    assert "denied" in line and "the run folder cannot be written (Permission denied)" in line
    assert "--output-dir" in line


def test_json_array_followed_by_more_data_is_an_error_not_silent_loss(tmp_path: Path, capsys) -> None:
    data = tmp_path / "rows.json"
    data.write_text('[{"text": "a"}, {"text": "b"}]\n{"text": "c"}\n')
    assert main(["data", "inspect", str(data)]) == 2
    assert "rows.json line 2: holds more data after its JSON list ends" in _one_sentence(capsys)


def test_model_folder_without_tokenizer_and_config_json_with_a_string(tiny_model: Path, chat_jsonl: Path,
                                                                      tmp_path: Path, capsys) -> None:
    no_tok = tmp_path / "no-tokenizer"
    no_tok.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model / name, no_tok / name)
    assert main(["train", "--model", str(no_tok), "--data", str(chat_jsonl), "--output-dir",
                 str(tmp_path / "r1")]) == 2
    assert "no tokenizer" in _one_sentence(capsys)

    bad = tmp_path / "bad-config"
    shutil.copytree(tiny_model, bad)
    config = json.loads((bad / "config.json").read_text())
    config["hidden_size"] = "thirty-two"
    (bad / "config.json").write_text(json.dumps(config))
    assert main(["train", "--model", str(bad), "--data", str(chat_jsonl), "--output-dir", str(tmp_path / "r2")]) == 2
    assert "config.json cannot be used" in (line := _one_sentence(capsys)) and "hidden_size" in line


def test_trust_remote_code_from_a_file_needs_the_flag(tmp_path: Path, capsys) -> None:
    path = tmp_path / "received.yaml"
    save_config(RunConfig().replace({"model.trust_remote_code": True, "training.max_steps": 0}), path)
    assert main(["train", str(path)]) == 2
    assert "--trust-remote-code" in _one_sentence(capsys)
    # with the flag the file's setting is obeyed (and the next check, max_steps 0, is what stops it here)
    assert main(["train", str(path), "--trust-remote-code"]) == 2
    assert "max_steps' is 0" in _one_sentence(capsys)


def test_output_dir_of_a_received_run_is_ignored_with_a_warning(tmp_path: Path, capsys, monkeypatch) -> None:
    import desktop_ft.cli.train as cli_train

    received = tmp_path / "received-run"
    elsewhere = tmp_path / "someone-elses-work"
    save_config(RunConfig().replace({"output.output_dir": str(elsewhere)}), received / "config.yaml")
    (received / "status.json").write_text('{"state": "finished"}')
    seen = {}
    monkeypatch.setattr(cli_train, "train_with_progress", lambda config, **kw: seen.setdefault("c", config) and 0)
    assert main(["train", str(received / "config.yaml")]) == 0
    assert seen["c"].output.output_dir is None
    assert "its output_dir" in capsys.readouterr().err and not elsewhere.exists()
