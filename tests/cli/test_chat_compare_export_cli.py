"""``desktop-ft chat | compare | export`` as a user meets them: output shape, exit codes, one-sentence errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from desktop_ft.cli import main
from tests.cli.test_train_cli import cli


def test_compare_json_is_exactly_one_object(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    result = cli("compare", str(run), "--prompt", "How do I boil an egg?", "--prompt", "What is rain?",
                 "--max-new-tokens", "5", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)  # the whole of stdout is one JSON object
    assert out["run"] == str(run)
    assert [r["prompt"] for r in out["results"]] == ["How do I boil an egg?", "What is rain?"]
    assert all(set(r) == {"prompt", "base", "tuned"} for r in out["results"])
    assert "forgetting" not in out  # only with a full probe-set replay
    assert len((run / "compare.jsonl").read_text().splitlines()) == 2
    assert "Traceback" not in result.stderr


def test_compare_probe_set_with_checkpoints_and_forgetting(tiny_run: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["compare", str(run), "--checkpoints", "--max-new-tokens", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    probes = json.loads((run / "probes.json").read_text())["probes"]
    assert len(out["results"]) == 2 * len(probes)  # final adapter and checkpoint 2 (4 is the final one)
    assert {r.get("checkpoint") for r in out["results"]} == {None, 2}
    assert set(out["forgetting"]) >= {"increase", "nll_base", "nll_tuned", "verdict", "prompts"}


def test_chat_one_prompt_base_and_tuned(tiny_run: Path, capsys: pytest.CaptureFixture) -> None:
    from desktop_ft.core.chat import ChatModel, GenerationSettings

    assert main(["chat", str(tiny_run), "--prompt", "How do I boil an egg?", "--max-new-tokens", "6",
                 "--greedy"]) == 0
    tuned = capsys.readouterr().out
    assert main(["chat", str(tiny_run), "--base", "--prompt", "How do I boil an egg?", "--max-new-tokens", "6",
                 "--greedy"]) == 0
    base = capsys.readouterr().out
    chat = ChatModel.from_run(tiny_run)
    messages = [{"role": "user", "content": "How do I boil an egg?"}]
    settings = GenerationSettings(max_new_tokens=6)
    assert tuned == chat.generate(messages, settings=settings) + "\n"
    assert base == chat.generate(messages, tuned=False, settings=settings) + "\n"


def test_interactive_chat_keeps_the_conversation(tiny_run: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    lines = iter(["Hello", "/base", "And now?", "/quit"])
    monkeypatch.setattr("builtins.input", lambda _prompt="": next(lines))
    assert main(["chat", str(tiny_run), "--max-new-tokens", "3"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2 and "now answering with the base model" in captured.err


@pytest.mark.parametrize("args, words", [
    (["chat", "{run}", "--checkpoint", "7", "--prompt", "hi"], ["no checkpoint 7", "2, 4"]),
    (["compare", "{tmp}"], ["not a run folder"]),
    (["export", "{run}", "--format", "adapter", "--out", "{tmp}/x", "--checkpoint", "3"], ["no checkpoint 3"]),
    (["export", "{run}", "--format", "merged", "--quantization", "f16", "--out", "{tmp}/x"], ["quantization"]),
    (["chat", "{tmp}/nope", "--checkpoint", "1"], ["needs a run folder"]),
])
def test_user_errors_are_one_sentence_and_exit_2(tiny_run: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture, args: list[str],
                                                 words: list[str]) -> None:
    argv = [a.format(run=tiny_run, tmp=tmp_path) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and all(w in last for w in words) and "Traceback" not in err


def test_export_cli_prints_the_check(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["export", str(tiny_run), "--format", "adapter", "--out", str(tmp_path / "a"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["format"] == "adapter" and out["checked_with"] == "peft"
    assert (tmp_path / "a" / "adapter_config.json").exists()
