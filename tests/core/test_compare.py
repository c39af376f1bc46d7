"""Probe sets, replay on base and checkpoints into compare.jsonl, and the forgetting check (tiny model)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from desktop_ft.core import compare
from desktop_ft.core.chat import ChatModel, GenerationSettings

SHORT = GenerationSettings(max_new_tokens=6)


@pytest.fixture()
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    """A private copy of the run folder, so each test starts without probes.json / compare.jsonl."""
    import shutil

    dest = tmp_path / "run"
    shutil.copytree(tiny_run, dest)
    return dest


def test_probes_come_from_the_validation_split_and_are_saved(run_copy: Path) -> None:
    from desktop_ft.core import datasets as ds
    from desktop_ft.core.config import load_config

    config = load_config(run_copy / "config.yaml")
    data = ds.load_dataset(config.data.path)
    _train, val = ds.split_rows(data.rows, config.data.validation_fraction, config.training.seed)
    held_out = {[m for m in r["messages"] if m["role"] == "user"][-1]["content"] for r in val}

    probes = compare.ensure_probes(run_copy)
    assert probes and all(p.source == "validation" for p in probes)
    assert {p.prompt for p in probes} <= held_out
    assert all(p.reference and p.reference.startswith("Step 1:") for p in probes)
    assert compare.load_probes(run_copy) == probes  # saved, so the next replay asks the same questions

    more = compare.add_probes(run_copy, ["What is a prime number?", probes[0].prompt])
    assert [p.prompt for p in more] == [p.prompt for p in probes] + ["What is a prime number?"]
    assert more[-1].source == "user"


def test_replay_writes_one_row_per_prompt_and_checkpoint(run_copy: Path) -> None:
    chat = ChatModel.from_run(run_copy)
    probes = [compare.Probe("How do I boil an egg?"), compare.Probe("How do I tie a tie?")]
    events: list = []
    results = compare.replay(run_copy, probes, checkpoints=True, settings=SHORT, chat=chat, on_event=events.append)
    # checkpoint 4 is where the final adapter was saved: not replayed twice
    assert [(r.prompt, r.checkpoint) for r in results] == [
        ("How do I boil an egg?", None), ("How do I tie a tie?", None),
        ("How do I boil an egg?", 2), ("How do I tie a tie?", 2)]
    base = chat.generate(probes[0].messages(), tuned=False, settings=SHORT)
    assert all(r.base == base for r in results if r.prompt == probes[0].prompt)
    assert results[0].tuned == chat.generate(probes[0].messages(), settings=SHORT)  # back on the final adapter
    assert chat.tuned is not None and chat.tuned.checkpoint is None

    results = compare.replay(run_copy, probes, checkpoints=[4], settings=SHORT, chat=chat)
    assert [r.checkpoint for r in results] == [None, None, 4, 4]  # asked for by name, it is replayed
    assert results[2].tuned == results[0].tuned
    rows = compare.read_table(run_copy)
    assert len(rows) == 6 and rows[2]["checkpoint"] == 2 and "checkpoint" not in rows[0]
    assert rows[0]["settings"]["max_new_tokens"] == 6
    assert {type(e).__name__ for e in events} >= {"Progress", "ProbeAnswered"}
    # replaying one prompt again replaces its row instead of adding one
    compare.replay(run_copy, probes[:1], settings=SHORT, chat=chat)
    assert len(compare.read_table(run_copy)) == 6
    assert [json.loads(line)["prompt"] for line in (run_copy / "compare.jsonl").read_text().splitlines()][0] == \
        "How do I boil an egg?"


def test_stop_keeps_what_was_answered(run_copy: Path) -> None:
    chat = ChatModel.from_run(run_copy)
    stop = threading.Event()

    def on_event(event: object) -> None:
        if isinstance(event, compare.ProbeAnswered) and event.side == "tuned":
            stop.set()

    probes = [compare.Probe(f"Question {i}?") for i in range(3)]
    results = compare.replay(run_copy, probes, settings=SHORT, chat=chat, on_event=on_event, stop=stop)
    assert len(results) == 1
    assert len(compare.read_table(run_copy)) == 1


def test_forgetting_check_measures_the_base_answers_under_both_models(run_copy: Path) -> None:
    chat = ChatModel.from_run(run_copy)
    prompts = compare.general_prompts()
    assert len(prompts) >= 10
    report = compare.forgetting_check(chat, prompts=prompts[:3], max_new_tokens=8, run_dir=run_copy)
    assert report.prompts == 3 and report.tokens > 0
    assert report.increase == pytest.approx(report.nll_tuned - report.nll_base, abs=1e-3)
    assert report.nll_base != report.nll_tuned
    nll, n = chat.answer_nll([{"role": "user", "content": prompts[0]}], report.samples[0]["base"], tuned=False)
    assert n > 0 and report.nll_base > 0
    saved = json.loads((run_copy / "forgetting.json").read_text())
    assert saved["increase"] == report.increase and report.verdict in saved["verdict"]


def test_prompts_file_formats(tmp_path: Path) -> None:
    txt = tmp_path / "p.txt"
    txt.write_text("How do I boil an egg?\n\nWhat is rain?\n")
    assert compare.read_prompts_file(txt) == ["How do I boil an egg?", "What is rain?"]
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"prompt": "A?"}\n{"messages": [{"role": "user", "content": "B?"}]}\n"C?"\n')
    assert compare.read_prompts_file(jl) == ["A?", "B?", "C?"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "A?"}\n{"question": "B?"}\n')
    with pytest.raises(compare.CompareError, match="line 2"):
        compare.read_prompts_file(bad)
    with pytest.raises(compare.CompareError, match="not found"):
        compare.read_prompts_file(tmp_path / "missing.txt")
