"""The engine on the tiny model: real TRL SFTTrainer + peft, a few CPU steps each."""

import json
import math
import threading
from pathlib import Path

import pytest

from desktop_ft.core.engine import train
from desktop_ft.core.events import CheckpointSaved, EvalLogged, RunFinished, RunStarted, StepLogged
from desktop_ft.core.runs import RunFolder


def test_events_arrive_in_order_and_the_run_folder_keeps_the_contract(make_config, tmp_path: Path) -> None:
    events = []
    outcome = train(make_config(), on_event=events.append)

    assert outcome.state == "finished" and outcome.step == 4
    kinds = [type(e) for e in events]
    assert kinds.index(RunStarted) < kinds.index(StepLogged)
    assert kinds[-1] is RunFinished
    steps = [e for e in events if isinstance(e, StepLogged)]
    assert [e.step for e in steps] == [1, 2, 3, 4]
    assert all(math.isfinite(e.loss) and e.max_steps == 4 for e in steps)
    assert all(e.tokens_per_second and e.tokens_per_second > 0 for e in steps)
    assert steps[-1].eta_seconds == 0
    assert any(isinstance(e, EvalLogged) for e in events)
    assert any(isinstance(e, CheckpointSaved) for e in events)

    run = RunFolder(tmp_path / "run")
    status = json.loads(run.status_path.read_text())
    assert status["state"] == "finished" and status["step"] == 4 and status["max_steps"] == 4
    assert status["peak_memory_bytes"] > 0 and status["started_at"] and status["ended_at"]
    metrics = run.read_metrics()
    train_rows = [m for m in metrics if m["event"] == "StepLogged"]
    eval_rows = [m for m in metrics if m["event"] == "EvalLogged"]
    assert [m["step"] for m in train_rows] == [1, 2, 3, 4]
    assert all({"loss", "learning_rate", "grad_norm", "tokens_per_second"} <= set(m) for m in train_rows)
    assert eval_rows and all("eval_loss" in m for m in eval_rows)
    assert len({m["step"] for m in eval_rows}) == len(eval_rows), "an eval step is logged twice"
    assert run.read_config().training.max_steps == 4
    assert (run.checkpoints_dir / "checkpoint-4" / "trainer_state.json").exists()


def test_adapter_loads_with_peft_and_changes_the_output(make_config, tiny_model: Path, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    train(make_config())
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        before = base(ids).logits.clone()
        tuned = PeftModel.from_pretrained(base, tmp_path / "run" / "adapter")
        after = tuned(ids).logits
    assert not torch.allclose(before, after)


def test_loss_goes_down_on_the_learnable_sample(make_config) -> None:
    events = []
    train(make_config(max_steps=12, learning_rate=1e-2, save_steps=50), on_event=events.append)
    losses = [e.loss for e in events if isinstance(e, StepLogged)]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_stop_saves_a_checkpoint_and_leaves_a_resumable_run(make_config, tmp_path: Path) -> None:
    stop = threading.Event()

    def on_event(event):
        if isinstance(event, StepLogged) and event.step == 2:
            stop.set()

    outcome = train(make_config(max_steps=8, save_steps=100), on_event=on_event, stop=stop)
    run = RunFolder(tmp_path / "run")
    assert outcome.state == "stopped" and outcome.step == 2
    assert run.read_status().state == "stopped"
    assert run.last_checkpoint().name == "checkpoint-2"
    assert [m["step"] for m in run.read_metrics() if m["event"] == "StepLogged"] == [1, 2]
    assert (run.adapter_dir / "adapter_config.json").exists()

    events = []
    resumed = train(run.read_config(), run=run, on_event=events.append, resume=True)
    assert resumed.state == "finished" and resumed.step == 8
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.resumed_from_step == 2
    assert [e.step for e in events if isinstance(e, StepLogged)] == [3, 4, 5, 6, 7, 8]
    assert [m["step"] for m in run.read_metrics() if m["event"] == "StepLogged"] == list(range(1, 9))


def test_a_dataset_error_fails_the_run_with_a_sentence(make_config, tmp_path: Path) -> None:
    from desktop_ft.core.errors import DatasetError

    config = make_config(data=tmp_path / "missing.jsonl")
    with pytest.raises(DatasetError):
        train(config)
    status = RunFolder(tmp_path / "run").read_status()
    assert status.state == "failed" and "not found" in status.error


def test_answers_all_cut_off_refuse_to_start(make_config, tmp_path: Path) -> None:
    from desktop_ft.core.errors import UserError

    long_prompt = tmp_path / "long.jsonl"
    row = {"messages": [{"role": "user", "content": "word " * 400}, {"role": "assistant", "content": "ok"}]}
    long_prompt.write_text("\n".join(json.dumps(row) for _ in range(8)) + "\n")
    with pytest.raises(UserError, match="max length"):
        train(make_config(data=long_prompt, max_length=32))


def test_a_run_removes_the_tokenised_copies_of_its_data_when_it_ends(make_config, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """What the trainer is given and TRL's tokenised passes beside it are ~10× the dataset (20 GB for
    a 2 GB file): there while the run trains, gone when it finishes or fails."""
    from desktop_ft.core.errors import UserError

    monkeypatch.setenv("DESKTOP_FT_CACHE", str(tmp_path / "cache"))
    examples = tmp_path / "cache" / "datasets" / "examples"
    while_training: list[list[list[str]]] = []  # at each step: the files in each examples folder

    def look(event) -> None:
        if isinstance(event, StepLogged):
            while_training.append([sorted(f.name for f in folder.iterdir()) for folder in examples.iterdir()])

    assert train(make_config(), on_event=look).state == "finished"
    assert len(while_training[0]) == 2  # the training and the evaluation examples
    assert all(any(name.startswith("cache-") for name in files) for files in while_training[0])  # TRL's passes
    assert list(examples.iterdir()) == []

    long_prompt = tmp_path / "long.jsonl"
    row = {"messages": [{"role": "user", "content": "word " * 400}, {"role": "assistant", "content": "ok"}]}
    long_prompt.write_text("\n".join(json.dumps(row) for _ in range(8)) + "\n")
    with pytest.raises(UserError):
        train(make_config(data=long_prompt, out=tmp_path / "run2", max_length=32))
    assert list(examples.iterdir()) == []


def test_a_full_disk_before_training_is_one_sentence_that_says_where_and_what_to_do() -> None:
    import errno

    from desktop_ft.core.engine import describe_error

    text = describe_error(OSError(errno.ENOSPC, "No space left on device"))
    assert text.startswith("The disk is full") and "DESKTOP_FT_CACHE" in text and "datasets" in text
