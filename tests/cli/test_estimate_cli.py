from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from desktop_ft.cli import main
from desktop_ft.core.config import RunConfig, save_config

CONTRACT = {"total_bytes", "breakdown", "device", "available_bytes", "fits", "suggestions"}


def _json(capsys, argv) -> dict:
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    return json.loads(out[0])


def test_fitting_config_json(capsys) -> None:
    data = _json(capsys, ["estimate", "Qwen/Qwen2.5-0.5B-Instruct", "--gpu-memory", "24", "--json"])
    assert CONTRACT <= set(data)
    assert data["fits"] is True and data["device"] == "cuda" and data["suggestions"] == []
    assert data["available_bytes"] == 24 * 1024**3
    assert sum(data["breakdown"].values()) == data["total_bytes"]


def test_non_fitting_config_json_has_suggestions(capsys) -> None:
    data = _json(capsys, ["estimate", "llama-3.1-8b", "--method", "full", "--gpu-memory", "24", "--json"])
    assert data["fits"] is False and data["verdict"] == "does_not_fit"
    assert data["suggestions"]
    for s in data["suggestions"]:
        assert set(s) == {"title", "overrides", "total_bytes"} and s["total_bytes"] < 24 * 1024**3


def test_flags_change_the_estimate(capsys) -> None:
    base = _json(capsys, ["estimate", "llama-3.2-1b", "--device", "cuda", "--json"])
    ckpt = _json(capsys, ["estimate", "llama-3.2-1b", "--device", "cuda", "--gradient-checkpointing", "--json"])
    qlora = _json(capsys, ["estimate", "llama-3.2-1b", "--device", "cuda", "--method", "qlora", "--json"])
    dpo = _json(capsys, ["estimate", "llama-3.2-1b", "--device", "cuda", "--task", "dpo", "--json"])
    assert ckpt["total_bytes"] < base["total_bytes"] < dpo["total_bytes"]
    # 4-bit decoder layers; the tied 128k-token embedding stays (fp32) and dominates on a 1B model
    assert qlora["breakdown"]["weights"] < 0.7 * base["breakdown"]["weights"]


def test_config_file_and_flag_override_use_the_configs_data(capsys, tmp_path: Path, tiny_model: Path,
                                                            chat_jsonl: Path) -> None:
    from desktop_ft.core.lengths import sample_lengths

    path = tmp_path / "config.yaml"
    config = RunConfig().replace({"model.name": str(tiny_model), "data.path": str(chat_jsonl),
                                  "training.batch_size": 2})
    save_config(config, path)
    from_file = _json(capsys, ["estimate", "--config", str(path), "--device", "cpu", "--json"])
    bigger = _json(capsys, ["estimate", "--config", str(path), "--device", "cpu", "--batch-size", "8", "--json"])
    longest = sample_lengths(config).longest
    assert 0 < longest < 512  # short chats: the 512 ceiling would overstate every batch
    assert from_file["tokens_per_batch"] == 2 * longest and bigger["tokens_per_batch"] == 8 * longest
    assert bigger["total_bytes"] > from_file["total_bytes"]
    assert "padded to their longest row" in from_file["notes"][0]
    # a bare model with --data FILE gives the same answer; without data, the max_length ceiling
    bare = _json(capsys, ["estimate", str(tiny_model), "--data", str(chat_jsonl), "--batch-size", "2",
                          "--device", "cpu", "--json"])
    ceiling = _json(capsys, ["estimate", str(tiny_model), "--batch-size", "2", "--device", "cpu", "--json"])
    assert bare["total_bytes"] == from_file["total_bytes"] and ceiling["tokens_per_batch"] == 2 * 512


def test_estimate_flags_are_checked_as_train_checks_them(capsys) -> None:
    assert main(["estimate", "llama-3.1-8b", "--method", "qlorra"]) == 2
    assert "Did you mean 'qlora'" in capsys.readouterr().err
    assert main(["estimate", "llama-3.1-8b", "--task", "dppo"]) == 2
    assert "Did you mean 'dpo'" in capsys.readouterr().err
    assert main(["estimate", "llama-3.1-8b", "--optimizer", "adamw"]) == 2
    assert "'training.optimizer' is 'adamw', which is not one of its choices" in capsys.readouterr().err
    for bad in ("nan", "inf", "-3", "lots"):
        assert main(["estimate", "llama-3.1-8b", "--gpu-memory", bad]) == 2
        err = capsys.readouterr().err
        assert "--gpu-memory must be a positive number of GiB" in err and "Traceback" not in err
    assert main(["estimate", "llama-3.1-8b", "--set", "training.batch_size=nan"]) == 2
    assert main(["estimate", "llama-3.1-8b", "--set", "training.bach_size=2"]) == 2
    assert "Did you mean 'training.batch_size'" in capsys.readouterr().err


def test_folder_with_only_config_json(capsys, tmp_path: Path, tiny_model: Path) -> None:
    (tmp_path / "config.json").write_text((tiny_model / "config.json").read_text())
    data = _json(capsys, ["estimate", str(tmp_path), "--device", "cpu", "--json"])
    assert data["parameters"] > 0


def test_bad_input_is_one_sentence(capsys, tmp_path: Path) -> None:
    assert main(["estimate"]) == 2
    assert main(["estimate", str(tmp_path / "missing")]) == 2
    assert main(["estimate", "default", "--batch-size", "0"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 3


def test_human_output_shows_verdict_and_suggestions(capsys) -> None:
    assert main(["estimate", "llama-3.1-8b", "--gpu-memory", "12"]) == 0
    out = capsys.readouterr().out
    assert "does NOT fit" in out and "settings that fit" in out and "--set " in out


def test_models_list_json(capsys) -> None:
    data = _json(capsys, ["models", "list", "--json"])
    assert {"builtin", "catalog", "cached", "local"} <= set(data)
    ids = [m["id"] for m in data["catalog"]]
    assert "meta-llama/Llama-3.2-1B-Instruct" in ids
    llama = data["catalog"][ids.index("meta-llama/Llama-3.2-1B-Instruct")]
    assert llama["parameters"] == 1_235_814_400 and llama["gated"] is True and llama["context_length"] == 131072


def test_cli_and_estimate_modules_do_not_import_torch() -> None:
    code = ("import sys, desktop_ft.cli, desktop_ft.cli.estimate, desktop_ft.cli.models, desktop_ft.core.vram, "
            "desktop_ft.core.hardware, desktop_ft.core.memwatch; "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
