"""Chat on a trained tiny run: streaming, stopping, adapter toggling, checkpoints, clear errors."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from desktop_ft.core.chat import ChatError, ChatModel, GenerationSettings
from desktop_ft.core.errors import RunError

QUESTION = [{"role": "user", "content": "How do I make a cup of tea?"}]


@pytest.fixture(scope="module")
def chat(tiny_run: Path) -> ChatModel:
    return ChatModel.from_run(tiny_run)


def test_streamed_pieces_add_up_to_the_returned_answer(chat: ChatModel) -> None:
    settings = GenerationSettings(max_new_tokens=24)
    pieces: list[str] = []
    streamed = chat.generate(QUESTION, settings=settings, on_token=pieces.append)
    plain = chat.generate(QUESTION, settings=settings)
    assert len(pieces) > 1
    assert "".join(pieces) == streamed == plain


def test_base_side_is_exactly_the_base_model(chat: ChatModel, tiny_run: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from desktop_ft.core.config import load_config

    base = AutoModelForCausalLM.from_pretrained(load_config(tiny_run / "config.yaml").model.name)
    ids = chat.encode(QUESTION)["input_ids"]
    with torch.no_grad():
        expected = base(input_ids=ids).logits
    assert torch.equal(chat.logits(ids, tuned=False), expected)
    assert not torch.allclose(chat.logits(ids, tuned=True), expected)  # the adapter does change the model
    assert torch.equal(chat.logits(ids, tuned=False), expected)  # and toggling back leaves no trace


def test_stop_ends_generation_mid_answer(chat: ChatModel) -> None:
    stop = threading.Event()
    pieces: list[str] = []

    def on_token(text: str) -> None:
        pieces.append(text)
        if len(pieces) == 3:
            stop.set()

    settings = GenerationSettings(max_new_tokens=64, greedy=False, seed=1)  # sampling: no early end-of-turn
    text = chat.generate(QUESTION, settings=settings, on_token=on_token, stop=stop)
    full = chat.generate(QUESTION, settings=settings)
    assert text == "".join(pieces)
    assert len(pieces) <= 4  # the piece that set the flag, plus at most text the decoder held back
    assert len(text) < len(full)


def test_sampling_is_repeatable_with_a_seed(chat: ChatModel) -> None:
    settings = GenerationSettings(max_new_tokens=16, greedy=False, seed=7, temperature=1.0)
    assert chat.generate(QUESTION, settings=settings) == chat.generate(QUESTION, settings=settings)


def test_system_prompt_reaches_the_template(chat: ChatModel) -> None:
    ids = chat.encode(QUESTION, GenerationSettings(system_prompt="Be brief."))["input_ids"][0]
    assert "Be brief." in chat.tokenizer.decode(ids)


def test_checkpoints_are_listed_and_switchable(chat: ChatModel, tiny_run: Path) -> None:
    import torch

    assert chat.checkpoints() == [2, 4]
    ids = chat.encode(QUESTION)["input_ids"]
    final = chat.logits(ids)
    chat.use_checkpoint(2)
    try:
        assert chat.tuned is not None and chat.tuned.checkpoint == 2
        assert not torch.allclose(chat.logits(ids), final)
        from_disk = ChatModel.from_run(tiny_run, checkpoint=2)
        assert torch.allclose(from_disk.logits(ids), chat.logits(ids), atol=1e-5)
    finally:
        chat.use_checkpoint(None)
    assert torch.allclose(chat.logits(ids), final, atol=1e-6)


def test_missing_checkpoint_names_the_available_ones(tiny_run: Path) -> None:
    with pytest.raises(RunError) as info:
        ChatModel.from_run(tiny_run, checkpoint=99)
    assert "no checkpoint 99" in str(info.value) and "2, 4" in str(info.value)


def test_run_without_adapter_or_checkpoint_says_so(tiny_run: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(tiny_run / "config.yaml", bare / "config.yaml")
    with pytest.raises(RunError, match="no adapter yet"):
        ChatModel.from_run(bare)


def test_run_without_final_adapter_falls_back_to_its_newest_checkpoint(tiny_run: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(tiny_run, partial)
    shutil.rmtree(partial / "adapter")
    source = ChatModel.from_run(partial).tuned
    assert source is not None and source.checkpoint == 4


def test_not_a_run_folder(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="not a run folder"):
        ChatModel.from_run(tmp_path)


def test_plain_model_chat_has_no_tuned_side(tiny_model: Path) -> None:
    model = ChatModel.from_model(str(tiny_model))
    assert not model.has_tuned
    settings = GenerationSettings(max_new_tokens=5)
    assert model.generate(QUESTION, settings=settings) == model.generate(QUESTION, tuned=False, settings=settings)


def test_settings_fields_carry_help() -> None:
    import dataclasses

    for f in dataclasses.fields(GenerationSettings):
        assert f.metadata["help"]
    assert GenerationSettings().greedy
    assert GenerationSettings.from_dict(GenerationSettings(seed=3).to_dict()).seed == 3


def test_full_fine_tune_run_loads_two_models(tiny_run: Path, tiny_model: Path, tmp_path: Path) -> None:
    """A run folder holding a full model (not an adapter): base and tuned are two separate models."""
    import torch
    from transformers import AutoModelForCausalLM

    full = tmp_path / "full"
    full.mkdir()
    shutil.copy(tiny_run / "config.yaml", full / "config.yaml")
    tuned = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        tuned.lm_head.weight.mul_(1.5)  # tied with the embeddings: a visibly different model
    tuned.save_pretrained(full / "adapter")
    shutil.copy(tiny_model / "tokenizer.json", full / "adapter" / "tokenizer.json")
    shutil.copy(tiny_model / "tokenizer_config.json", full / "adapter" / "tokenizer_config.json")
    shutil.copy(tiny_model / "chat_template.jinja", full / "adapter" / "chat_template.jinja")

    chat = ChatModel.from_run(full)
    assert chat.tuned is not None and chat.tuned.kind == "full"
    ids = chat.encode(QUESTION)["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        assert torch.equal(chat.logits(ids, tuned=False), base(input_ids=ids).logits)
        assert torch.allclose(chat.logits(ids), tuned(input_ids=ids).logits, atol=1e-5)


def test_two_models_that_do_not_fit_are_refused(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import desktop_ft.core.chat as chat_module

    monkeypatch.setattr(chat_module, "available_memory_bytes", lambda: 1000)
    with pytest.raises(ChatError, match="need about .* GiB, but only .* free"):
        chat_module.check_memory_for(tiny_model, tiny_model)


def test_pair_streams_both_sides_at_once_and_matches_single_answers(chat: ChatModel) -> None:
    settings = GenerationSettings(max_new_tokens=12)
    pieces: dict[str, list[str]] = {"base": [], "tuned": []}
    order: list[str] = []

    def on_token(side: str, piece: str) -> None:
        pieces[side].append(piece)
        order.append(side)

    base, tuned = chat.generate_pair(QUESTION, settings=settings, on_token=on_token)
    assert "".join(pieces["base"]) == base and "".join(pieces["tuned"]) == tuned
    assert base == chat.generate(QUESTION, tuned=False, settings=settings)
    assert tuned == chat.generate(QUESTION, settings=settings)
    assert order[:2] == ["base", "tuned"] or order[:2] == ["tuned", "base"]  # interleaved, not one after the other


@pytest.mark.parametrize("method", ["prompt_tuning", "full"])
def test_other_methods_runs_chat_and_compare_with_their_base(method: str, tiny_model: Path, chat_jsonl: Path,
                                                              tmp_path: Path) -> None:
    """Prompt tuning (virtual tokens, toggled off for the base) and full fine-tuning (model/, two models)."""
    import torch
    from transformers import AutoModelForCausalLM

    from desktop_ft.core.engine import train
    from tests.conftest import tiny_config

    config = tiny_config(tiny_model, chat_jsonl, tmp_path / "run", max_steps=2, save_steps=100)
    config = config.replace({"method.method": method})
    assert train(config).state == "finished"
    chat = ChatModel.from_run(tmp_path / "run")
    assert chat.tuned is not None and chat.tuned.kind == ("full" if method == "full" else "adapter")
    ids = chat.encode(QUESTION)["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        assert torch.equal(chat.logits(ids, tuned=False), base(input_ids=ids).logits)
    settings = GenerationSettings(max_new_tokens=4)
    base_answer, tuned_answer = chat.generate_pair(QUESTION, settings=settings)
    assert base_answer == chat.generate(QUESTION, tuned=False, settings=settings)
    assert tuned_answer == chat.generate(QUESTION, settings=settings)
    if method == "prompt_tuning":
        from desktop_ft.core.export import ExportError, export

        with pytest.raises(ExportError, match="cannot be merged.*Export it as 'adapter'"):
            export(tmp_path / "run", "merged", tmp_path / "out")
