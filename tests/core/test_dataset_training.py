"""Round trip: each kind of data, from a file, through a real TRL trainer for one step on the tiny model.

The engine picks the task from the kind (method.task 'auto'): conversation and prompt/completion → SFT,
text → continued pre-training, preference → DPO.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop_ft.core import datasets as ds

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize("name, columns", [
    ("sharegpt.json", None),                       # conversation
    ("question_answer.csv", None),                 # prompt_completion
    ("custom_columns.csv", {"prompt": "frage", "completion": "antwort"}),  # mapped via data.columns
    ("notes.md", None),                            # text → pretrain
    ("anthropic_hh.jsonl", None),                  # preference → DPO
])
def test_each_kind_trains_one_step_through_the_engine(name: str, columns, make_config, tmp_path: Path) -> None:
    from desktop_ft.core.engine import train

    config = make_config(data=DATA / name, max_steps=1, batch_size=2, save_steps=1)
    config = config.replace({"data.validation_fraction": 0.0, "data.columns": columns or {}})
    outcome = train(config)
    assert outcome.state == "finished" and outcome.step == 1
    assert (Path(outcome.adapter_dir) / "adapter_config.json").exists()


def test_preference_rows_train_one_dpo_step_as_they_are(tiny_model: Path, tmp_path: Path) -> None:
    """Our preference rows are what TRL's DPOTrainer takes, unchanged: conversational (HH) and plain strings."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    for name in ("anthropic_hh.jsonl", "preference.jsonl"):
        data = ds.load_dataset(DATA / name)
        args = DPOConfig(output_dir=str(tmp_path / name), max_steps=1, per_device_train_batch_size=2,
                         report_to="none", use_cpu=True, max_length=128, save_strategy="no", disable_tqdm=True)
        trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), args=args,
                             train_dataset=Dataset.from_list(data.rows), processing_class=tokenizer)
        result = trainer.train()
        assert trainer.state.global_step == 1 and result.training_loss > 0
