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


def _engine_trainer(data, tiny_model: Path, tmp_path: Path, plain_template: str | None = None):
    """The SFT trainer exactly as the engine builds it (``trainers.build_trainer``), and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from desktop_ft.core import trainers
    from desktop_ft.core.config import RunConfig

    tok = AutoTokenizer.from_pretrained(tiny_model)
    if plain_template:
        tok.chat_template = plain_template
    config = RunConfig().replace({"model.name": str(tiny_model), "training.max_length": 512})
    args = dict(output_dir=str(tmp_path / "ckpt"), max_steps=1, per_device_train_batch_size=1, report_to="none",
                use_cpu=True)
    parts = trainers.TrainerParts(config=config, model=AutoModelForCausalLM.from_pretrained(tiny_model),
                                  tokenizer=tok, peft_config=None, train_rows=data.rows, eval_rows=[], args=args,
                                  callbacks=[], data_kind=data.kind)
    return trainers.build_trainer("sft", parts), tok


def _learned(processed: dict, tokenizer) -> str:
    ids = processed["input_ids"]
    if "labels" in processed:
        mask = [label != -100 for label in processed["labels"]]
    else:
        mask = processed.get("assistant_masks") or processed.get("completion_mask") or [1] * len(ids)
    return tokenizer.decode([t for t, m in zip(ids, mask) if m])


@pytest.mark.parametrize("name", ["openai_messages.jsonl", "alpaca.json", "text.jsonl"])
def test_loss_segments_agree_with_what_the_engine_trains_on(name: str, tokenizer, tiny_model: Path,
                                                           tmp_path: Path) -> None:
    """What the window highlights is what the engine's SFTTrainer learns: the same tokens, row by row."""
    data = ds.load_dataset(DATA / name)
    trainer, _tok = _engine_trainer(data, tiny_model, tmp_path)
    recipe = ds.sft_recipe(data.kind, data.rows, tokenizer, assistant_only_loss=True)
    assert len(trainer.train_dataset) == len(data.rows)
    for row, processed in zip(data.rows, trainer.train_dataset):
        segments = ds.loss_segments(row, tokenizer, data.kind, recipe=recipe)
        assert "".join(t for t, flag in segments if flag) == _learned(processed, tokenizer)
        assert tokenizer.decode(processed["input_ids"]) == "".join(t for t, _ in segments)


def test_token_lengths_on_a_seeded_sample_of_a_large_dataset(tokenizer) -> None:
    data = ds.load_dataset(DATA / "openai_messages.jsonl")
    report = ds.inspect_dataset(data, tokenizer, token_sample=2)
    assert report.token_lengths["counted"] == 2 and report.counts["rows"] == 3
    assert ds.inspect_dataset(data, tokenizer, token_sample=2).token_lengths == report.token_lengths


def test_a_validation_file_of_another_kind_still_becomes_sft_rows() -> None:
    data = ds.load_dataset(DATA / "openai_messages.jsonl")
    other = ds.load_dataset(DATA / "alpaca.json").rows
    rows = list(ds.sft_recipe(data.kind, data.rows, None, assistant_only_loss=True).examples_of(other))
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


def test_multi_turn_rows_learn_every_reply_as_the_engine_does(tokenizer, tiny_model: Path, tmp_path: Path) -> None:
    """Every assistant reply is highlighted, and those are the tokens the engine's trainer learns."""
    data = ds.load_dataset(DATA / "openai_messages.jsonl")
    recipe = ds.sft_recipe(data.kind, data.rows, tokenizer, assistant_only_loss=True)
    assert recipe.chat_template, "the tiny model's ChatML template is one the engine can mark"
    trainer, tok = _engine_trainer(data, tiny_model, tmp_path)
    row, processed = data.rows[1], trainer.train_dataset[1]  # two assistant replies
    segments = ds.loss_segments(row, tokenizer, "conversation", recipe=recipe)
    assert "".join(t for t, flag in segments if flag) == _learned(processed, tok)
    assert [t for t, flag in segments if flag] == ["4<|im_end|>", "6<|im_end|>"]


def test_a_template_without_markers_learns_every_reply_one_example_each(tiny_model: Path, tmp_path: Path) -> None:
    plain = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
    data = ds.load_dataset(DATA / "openai_messages.jsonl")
    trainer, tok = _engine_trainer(data, tiny_model, tmp_path, plain)
    recipe = ds.sft_recipe(data.kind, data.rows, tok, assistant_only_loss=True)
    assert recipe.loss == "every_reply_split"
    learned = [_learned(p, tok) for p in trainer.train_dataset]
    highlighted = [t for row in data.rows for t, flag in ds.loss_segments(row, tok, data.kind, recipe=recipe) if flag]
    assert len(learned) == sum(len(recipe.examples(r)) for r in data.rows) > len(data.rows)
    assert "".join(learned) == "".join(highlighted)


def test_rows_whose_prompt_fills_max_length_are_counted_as_losing_their_answer(tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    path.write_text('{"prompt": "' + "word " * 200 + '", "completion": "ok"}\n'
                    '{"prompt": "short", "completion": "ok"}\n')
    t = ds.inspect_dataset(ds.load_dataset(path), tokenizer, max_length=64).token_lengths
    assert (t["truncated"], t["answer_cut_off"]) == (1, 1)
