"""``desktop-ft data inspect`` as scripts and people use it: the --json contract, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
CONTRACT = {"path", "format", "kind", "rows", "columns", "errors"}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "desktop_ft", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}, timeout=300)


def test_json_is_one_object_on_stdout_with_the_contract_keys() -> None:
    result = cli("data", "inspect", str(DATA / "no_assistant.jsonl"), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)  # exactly one JSON document
    assert result.stdout.count("\n") == 1
    assert CONTRACT <= set(out)
    assert (out["format"], out["kind"], out["rows"]) == ("messages", "conversation", 2)
    assert out["columns"] == ["messages"]
    assert out["errors"] == [{"line": 2, "message": "the conversation has no assistant turn, so there is nothing "
                                                    "to learn from."}]
    assert "token_lengths" not in out  # only with --model


def test_json_with_a_model_has_token_lengths_and_a_template_preview(tiny_model: Path) -> None:
    result = cli("data", "inspect", str(DATA / "question_answer.csv"), "--json", "--model", str(tiny_model),
                 "--max-length", "16")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert (out["format"], out["kind"], out["rows"], out["errors"]) == ("question_answer", "prompt_completion", 3, [])
    t = out["token_lengths"]
    assert 0 < t["min"] <= t["median"] <= t["p95"] <= t["max"] and 0 <= t["truncated"] <= 3
    assert out["preview"][0].startswith("<|im_start|>user\nHello, who are you?")


def test_no_usable_row_exits_2_with_one_sentence_and_no_traceback() -> None:
    for name in ("unknown_schema.jsonl", "empty.jsonl", "bad_utf8.csv"):
        result = cli("data", "inspect", str(DATA / name), "--json")
        assert result.returncode == 2, name
        assert result.stdout == ""
        assert "Traceback" not in result.stderr and name in result.stderr
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_columns_option_maps_undetected_names() -> None:
    result = cli("data", "inspect", str(DATA / "custom_columns.csv"), "--columns", "prompt=frage,completion=antwort",
                 "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rows"] == 2


def test_readable_table_names_skipped_lines() -> None:
    result = cli("data", "inspect", str(DATA / "ragged.csv"))
    assert result.returncode == 0
    assert "format:    prompt_completion (kind: prompt_completion)" in result.stdout
    assert "line 3: has 3 fields but the header has 2" in result.stdout


def test_train_columns_flag_sets_data_columns() -> None:
    from desktop_ft.cli import build_parser
    from desktop_ft.cli.train import collect_overrides

    args = build_parser().parse_args(["train", "--columns", "prompt=frage,completion=antwort"])
    assert collect_overrides(args)["data.columns"] == {"prompt": "frage", "completion": "antwort"}


def test_a_model_that_cannot_be_loaded_still_reports_the_data(tmp_path: Path) -> None:
    result = cli("data", "inspect", str(DATA / "dolly.jsonl"), "--json", "--model", str(tmp_path / "no-model"))
    assert result.returncode == 0
    out = json.loads(result.stdout)
    assert out["rows"] == 2 and "token_lengths" not in out
    assert "warning: no token lengths" in result.stderr and "Traceback" not in result.stderr
