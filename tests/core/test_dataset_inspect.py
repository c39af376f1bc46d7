"""Inspection and loss segments, with the tiny model's real tokenizer and chat template."""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop_ft.core import datasets as ds

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_counts_duplicates_and_plain_preview_without_a_tokenizer(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    row = '{"prompt": "a", "completion": "b"}'
    path.write_text("\n".join([row, '{"prompt": "c", "completion": "d"}', row, "oops", row]) + "\n")
    report = ds.inspect_dataset(ds.load_dataset(path), validation_fraction=0.25, seed=1)
    assert report.counts == {"rows": 4, "errors": 1, "duplicates": 2, "train": 3, "validation": 1}
    assert report.duplicate_lines == [3, 5]
    assert report.token_lengths is None
    assert report.preview[0] == "user: a\nassistant: b"


def test_token_lengths_match_the_chat_template_and_count_truncation(tokenizer) -> None:
    data = ds.load_dataset(DATA / "openai_messages.jsonl")
    lengths = sorted(len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"])
                     for r in data.rows)
    report = ds.inspect_dataset(data, tokenizer, max_length=lengths[1])
    t = report.token_lengths
    assert (t["min"], t["median"], t["max"]) == (lengths[0], lengths[1], lengths[2])
    assert t["truncated"] == 1 and t["max_length"] == lengths[1] and t["answer_cut_off"] == 0
    assert sorted(report.lengths) == lengths
    assert report.preview[0].startswith("<|im_start|>system\nYou answer in one word.<|im_end|>")
    assert report.preview[0].endswith("<|im_start|>assistant\nParis<|im_end|>\n")


def test_raw_text_is_counted_with_the_end_of_text_token(tokenizer) -> None:
    data = ds.load_dataset(DATA / "text.jsonl")
    report = ds.inspect_dataset(data, tokenizer)
    expected = len(tokenizer(text="The end." + tokenizer.eos_token)["input_ids"])
    assert report.token_lengths["min"] == expected
    assert report.preview[1] == "The end."


def test_loss_segments_of_a_conversation_mark_only_the_last_reply(tokenizer) -> None:
    row = ds.load_dataset(DATA / "openai_messages.jsonl").rows[1]  # two exchanges
    segments = ds.loss_segments(row, tokenizer, "conversation", every_reply=False)
    assert [flag for _, flag in segments] == [False, True]
    assert segments[1][0] == "6<|im_end|>\n"
    full = tokenizer.apply_chat_template(row["messages"], tokenize=False)
    assert "".join(text for text, _ in segments) == full
    assert "4<|im_end|>" in segments[0][0]  # the earlier reply is context, not learned


def test_loss_segments_without_assistant_only_loss_learn_everything(tokenizer) -> None:
    row = ds.load_dataset(DATA / "openai_messages.jsonl").rows[0]
    segments = ds.loss_segments(row, tokenizer, "conversation", assistant_only_loss=False)
    assert len(segments) == 1 and segments[0][1] is True


def test_loss_segments_of_prompt_completion_and_preference(tokenizer) -> None:
    pc = ds.load_dataset(DATA / "alpaca.json").rows[1]
    segments = ds.loss_segments(pc, tokenizer, "prompt_completion")
    assert segments == [("<|im_start|>user\nTranslate to French.\n\nGood morning<|im_end|>\n<|im_start|>assistant\n",
                         False), ("Bonjour.<|im_end|>\n", True)]
    pref = ds.load_dataset(DATA / "anthropic_hh.jsonl").rows[1]
    segments = ds.loss_segments(pref, tokenizer, "preference")
    assert segments[-1] == ("Hello! How can I help?<|im_end|>\n", True)


@pytest.mark.parametrize("name", ["openai_messages.jsonl", "alpaca.json", "text.jsonl"])
def test_loss_segments_agree_with_what_sft_trainer_trains_on(name: str, tokenizer, tiny_model: Path,
                                                            tmp_path: Path) -> None:
    """What the window highlights is what SFTTrainer learns: the same tokens, row by row."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    data = ds.load_dataset(DATA / name)
    train = Dataset.from_list(ds.sft_rows(data, data.rows, assistant_only_loss=True))
    args = SFTConfig(output_dir=str(tmp_path), report_to="none", completion_only_loss=True, max_length=512,
                     use_cpu=True, max_steps=1)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), args=args, train_dataset=train,
                         processing_class=tokenizer)
    for row, processed in zip(data.rows, trainer.train_dataset):
        ids = processed["input_ids"]
        assert "labels" in processed or data.kind == "text"
        mask = [label != -100 for label in processed["labels"]] if "labels" in processed else [1] * len(ids)
        learned = tokenizer.decode([t for t, m in zip(ids, mask) if m])
        segments = ds.loss_segments(row, tokenizer, data.kind, every_reply=False)  # as sft_rows builds them
        assert "".join(t for t, flag in segments if flag) == learned
        assert tokenizer.decode(ids) == "".join(t for t, _ in segments)


def test_token_lengths_on_a_seeded_sample_of_a_large_dataset(tokenizer) -> None:
    data = ds.load_dataset(DATA / "openai_messages.jsonl")
    report = ds.inspect_dataset(data, tokenizer, token_sample=2)
    assert report.token_lengths["counted"] == 2 and report.counts["rows"] == 3
    assert ds.inspect_dataset(data, tokenizer, token_sample=2).token_lengths == report.token_lengths


def test_a_validation_file_of_another_kind_still_becomes_sft_rows() -> None:
    data = ds.load_dataset(DATA / "openai_messages.jsonl")
    other = ds.load_dataset(DATA / "alpaca.json").rows
    rows = ds.sft_rows(data, other, assistant_only_loss=True)
    assert rows[0] == {"prompt": [{"role": "user", "content": "Give a synonym for happy."}],
                       "completion": [{"role": "assistant", "content": "Joyful."}]}


def test_loss_segments_past_max_length_are_not_learned(tokenizer) -> None:
    row = ds.load_dataset(DATA / "alpaca.json").rows[1]
    full = ds.loss_segments(row, tokenizer, "prompt_completion")
    prompt_tokens = len(tokenizer(full[0][0], add_special_tokens=False)["input_ids"])
    cut = ds.loss_segments(row, tokenizer, "prompt_completion", max_length=prompt_tokens + 1)
    assert [flag for _, flag in cut] == [False, True, False]
    assert "".join(t for t, _ in cut) == "".join(t for t, _ in full)


def test_per_reply_marks_each_assistant_turn_as_its_own_example_would(tokenizer) -> None:
    """The fallback for templates without loss markers: one prompt/completion example per reply."""
    from desktop_ft.core.datasets._inspect import _every_reply_mask

    row = ds.load_dataset(DATA / "openai_messages.jsonl").rows[1]  # user, assistant "4", user, assistant "6"
    ids, mask = _every_reply_mask(row["messages"], tokenizer)
    runs, current = [], []
    for token, flag in zip(ids, mask):
        if flag:
            current.append(token)
        elif current:
            runs, current = runs + [tokenizer.decode(current)], []
    runs += [tokenizer.decode(current)] if current else []
    assert runs == ["4<|im_end|>\n", "6<|im_end|>\n"]
    assert tokenizer.decode(ids) == tokenizer.apply_chat_template(row["messages"], tokenize=False)
    first_turn = {"messages": row["messages"][:2]}  # the example a per-reply split makes for "4"
    assert ds.loss_segments(first_turn, tokenizer, "conversation")[-1] == ("4<|im_end|>\n", True)


def test_multi_turn_segments_agree_with_the_methods_engine(tokenizer, tiny_model: Path, tmp_path: Path) -> None:
    """Where the engine learns every reply (desktop_ft.core.methods), the highlighted replies are its labels."""
    methods = pytest.importorskip("desktop_ft.core.methods")
    if not hasattr(methods, "training_chat_template"):
        pytest.skip("this engine learns only the last reply")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    rows = ds.load_dataset(DATA / "openai_messages.jsonl").rows
    tok = AutoTokenizer.from_pretrained(tiny_model)
    template = methods.training_chat_template(tok, rows)
    assert template, "the tiny model's ChatML template is one the methods engine can mark"
    tok.chat_template = template
    args = SFTConfig(output_dir=str(tmp_path), report_to="none", assistant_only_loss=True,
                     completion_only_loss=False, max_length=512, use_cpu=True, max_steps=1)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), args=args,
                         train_dataset=Dataset.from_list(rows), processing_class=tok)
    row, processed = rows[1], trainer.train_dataset[1]  # two assistant replies
    learned = tokenizer.decode([t for t, label in zip(processed["input_ids"], processed["labels"]) if label != -100])
    segments = ds.loss_segments(row, tokenizer, "conversation")
    assert "".join(t for t, flag in segments if flag) == learned
    assert [t for t, flag in segments if flag] == ["4<|im_end|>", "6<|im_end|>"]


def test_rows_whose_prompt_fills_max_length_are_counted_as_losing_their_answer(tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    path.write_text('{"prompt": "' + "word " * 200 + '", "completion": "ok"}\n{"prompt": "short", "completion": "ok"}\n')
    t = ds.inspect_dataset(ds.load_dataset(path), tokenizer, max_length=64).token_lengths
    assert (t["truncated"], t["answer_cut_off"]) == (1, 1)
