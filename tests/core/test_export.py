"""Export on tiny models: merged logits equal the adapter model's, GGUF loads back close, clear failures."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest

from desktop_ft.core.chat import ChatModel, GenerationSettings
from desktop_ft.core.errors import RunError
from desktop_ft.core.export import ExportError, export, modelfile_text
from tests.core.test_chat import QUESTION


@pytest.fixture(scope="module")
def smol_tokenizer_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder whose base is a tiny random Llama with the built-in model's real tokenizer.

    llama.cpp's converter only writes GGUF for tokenizers it recognises, so the GGUF tests need a
    real one; the weights stay tiny. The adapter is a real peft LoRA with random (non-zero) weights.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from desktop_ft.core.config import RunConfig, save_config
    from desktop_ft.core.embedded import embedded_gguf_path

    root = tmp_path_factory.mktemp("smol-tiny")
    base = root / "base"
    gguf = embedded_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer.save_pretrained(base)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(base)
    run = root / "run"
    save_config(RunConfig().replace({"model.name": str(base), "output.output_dir": str(run)}), run / "config.yaml")
    model = get_peft_model(LlamaForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    model.save_pretrained(run / "adapter")
    tokenizer.save_pretrained(run / "adapter")
    return run


def _logits(model, ids):  # noqa: ANN001, ANN202
    import torch

    with torch.no_grad():
        return model(input_ids=ids).logits


def test_merged_export_matches_the_adapter_model(tiny_run: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = export(tiny_run, "merged", tmp_path / "merged")
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= set(result.files)
    assert result.check_answer is not None and result.checked_with == "transformers"
    chat = ChatModel.from_run(tiny_run)
    ids = chat.encode(QUESTION)["input_ids"]
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    diff = (_logits(merged, ids) - chat.logits(ids)).abs().max().item()
    assert diff < 1e-4
    assert AutoTokenizer.from_pretrained(tmp_path / "merged").chat_template == chat.tokenizer.chat_template
    assert not list((tmp_path / "merged").glob(".desktop-ft-export-*"))  # staging cleaned up


def test_adapter_export_loads_with_peft(tiny_run: Path, tmp_path: Path) -> None:
    result = export(tiny_run, "adapter", tmp_path / "a", checkpoint=2)
    assert "adapter_model.safetensors" in result.files and "optimizer.pt" not in result.files
    assert result.checked_with == "peft" and result.check_answer is not None


def test_gguf_f16_and_ollama_q8_0_load_back_with_close_logits(smol_tokenizer_run: Path, tmp_path: Path) -> None:
    import torch

    from desktop_ft.core.export import load_gguf_with_transformers

    chat = ChatModel.from_run(smol_tokenizer_run)
    ids = chat.encode(QUESTION)["input_ids"]
    tuned = chat.logits(ids)
    base = chat.logits(ids, tuned=False)
    # the f16 file is loaded back below by the test itself (the same load the check does), to save time
    f16 = export(smol_tokenizer_run, "gguf", tmp_path / "g", quantization="f16", check=False)
    assert f16.files == ["run-f16.gguf"] and f16.check_answer is None
    ollama = export(smol_tokenizer_run, "ollama", tmp_path / "o", quantization="q8_0")
    assert ollama.files == ["run-q8_0.gguf", "Modelfile"] and ollama.check_answer is not None
    assert (tmp_path / "o" / "run-q8_0.gguf").stat().st_size < (tmp_path / "g" / "run-f16.gguf").stat().st_size

    for path, tolerance in ((tmp_path / "g" / "run-f16.gguf", 0.02), (tmp_path / "o" / "run-q8_0.gguf", 0.1)):
        model, tokenizer = load_gguf_with_transformers(path)
        assert tokenizer(chat.tokenizer.decode(ids[0]), add_special_tokens=False)["input_ids"] == ids[0].tolist()
        logits = _logits(model, ids)
        diff = (logits - tuned).abs().max().item()
        assert diff < tolerance * tuned.abs().max().item(), (path.name, diff)
        # closer to the fine-tune than to the base: the adapter really is in the file
        assert diff < (logits - base).abs().max().item()
        assert torch.equal(logits[0, -1].argmax(), tuned[0, -1].argmax())

    modelfile = (tmp_path / "o" / "Modelfile").read_text()
    assert "FROM ./run-q8_0.gguf" in modelfile
    assert "<|im_start|>{{ .Role }}" in modelfile
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM' in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile and "PARAMETER temperature 0.7" in modelfile


def test_modelfile_for_llama3_and_unknown_templates(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    chatml = modelfile_text("m.gguf", tokenizer, GenerationSettings(greedy=True, system_prompt="Be kind."))
    assert "<|im_start|>" in chatml and 'SYSTEM """Be kind."""' in chatml and "temperature 0" in chatml
    tokenizer.chat_template = ("{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
                               "{{ m['content'] }}<|eot_id|>{% endfor %}")
    assert "<|start_header_id|>{{ .Role }}" in modelfile_text("m.gguf", tokenizer, GenerationSettings())
    tokenizer.chat_template = "{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    other = modelfile_text("m.gguf", tokenizer, GenerationSettings())
    assert "TEMPLATE \"\"\"" not in other and "TEMPLATE not written" in other


def test_unrecognised_tokenizer_is_a_clear_gguf_error(tiny_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="does not recognise this model's tokenizer") as info:
        export(tiny_run, "gguf", tmp_path / "g", quantization="f16")
    assert "merged" in str(info.value)
    assert not any((tmp_path / "g").iterdir())  # nothing half-written left behind


def test_missing_checkpoint_and_missing_adapter(tiny_run: Path, tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no checkpoint 9.*Available checkpoints: 2, 4"):
        export(tiny_run, "merged", tmp_path / "m", checkpoint=9)
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(tiny_run / "config.yaml", bare / "config.yaml")
    with pytest.raises(RunError, match="no adapter yet"):
        export(bare, "adapter", tmp_path / "a")


def test_disk_full_and_unwritable_folders_are_one_sentence(tiny_run: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from collections import namedtuple

    import desktop_ft.core.export as ex

    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    with pytest.raises(ExportError, match="file, not a folder|cannot write"):
        export(tiny_run, "merged", not_a_folder / "out")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(ex.shutil, "disk_usage", lambda _p: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(ExportError, match="not enough disk space"):
        export(tiny_run, "merged", tmp_path / "small")
    monkeypatch.undo()

    def full(self, folder, *_a, **_k):  # noqa: ANN001, ANN002, ANN003, ANN202
        Path(folder, "model.safetensors").write_bytes(b"half a model")  # the disk fills up mid-write
        raise OSError(errno.ENOSPC, "No space left on device")

    from transformers import PreTrainedModel

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full)
    with pytest.raises(ExportError, match="the disk is full") as info:
        export(tiny_run, "merged", tmp_path / "full")
    assert str(tmp_path / "full") in str(info.value)
    assert not list((tmp_path / "full").iterdir())


def test_no_converter_says_how_to_install_it(tiny_run: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import desktop_ft.core.gguf_converter as conv

    monkeypatch.setattr(conv, "find_converter", lambda: None)
    with pytest.raises(ExportError, match="not installed.*--install"):
        export(tiny_run, "gguf", tmp_path / "g")


def test_bad_format_and_quantization(tiny_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown export format 'onnx'"):
        export(tiny_run, "onnx", tmp_path)
    with pytest.raises(ExportError, match="quantization"):
        export(tiny_run, "merged", tmp_path, quantization="q8_0")
    with pytest.raises(ExportError, match="unknown quantization 'q3'"):
        export(tiny_run, "gguf", tmp_path, quantization="q3")


def test_converter_pin_matches_constraints() -> None:
    from desktop_ft.core.gguf_converter import CONVERTER_PACKAGE, CONVERTER_VERSION
    from tests.conftest import REPO

    pins = (REPO / "requirements" / "constraints.txt").read_text()
    assert f"{CONVERTER_PACKAGE}=={CONVERTER_VERSION}" in pins


def test_exports_never_mix_and_a_same_kind_export_is_replaced_whole(tiny_run: Path, tmp_path: Path) -> None:  # noqa: F811
    target = tmp_path / "out"
    export(tiny_run, "adapter", target, check=False)
    first = (target / "desktop-ft-export.json").stat().st_mtime_ns
    # merging into a folder that holds an adapter export would load as merged weights + the adapter again
    with pytest.raises(ExportError, match="already holds a adapter export; a merged export only replaces"):
        export(tiny_run, "merged", target, check=False)
    assert not (target / "config.json").exists()
    export(tiny_run, "adapter", target, check=False)  # the same kind again: replaced whole
    assert (target / "desktop-ft-export.json").stat().st_mtime_ns >= first
    assert not list(tmp_path.glob(".out.*"))  # no staging or replaced folder left beside it

    own = tmp_path / "mine"
    own.mkdir()
    (own / "notes.txt").write_text("my work")
    with pytest.raises(ExportError, match=r"already holds other files \(notes.txt\)"):
        export(tiny_run, "adapter", own, check=False)
    assert (own / "notes.txt").read_text() == "my work"


def test_the_run_folder_the_base_model_and_the_hf_cache_are_refused(tiny_run: Path, tiny_model: Path,  # noqa: F811
                                                                    tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import constants

    with pytest.raises(ExportError, match="is the run folder itself"):
        export(tiny_run, "merged", tiny_run, check=False)
    with pytest.raises(ExportError, match="is the run folder itself"):
        export(tiny_run, "adapter", tiny_run / "adapter", check=False)
    with pytest.raises(ExportError, match="base model's folder"):
        export(tiny_run, "merged", tiny_model, check=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ExportError, match="Hugging Face cache"):
        export(tiny_run, "merged", tmp_path / "hub" / "models--x", check=False)


def test_the_logit_check_catches_an_adapter_applied_twice(tiny_run: Path, tmp_path: Path) -> None:  # noqa: F811
    from desktop_ft.core.export import compare_logits
    from desktop_ft.core.runs import read_run_config, tuned_source

    result = export(tiny_run, "merged", tmp_path / "merged")  # passes: same logits as the run's model
    source = tuned_source(tiny_run, None)
    base = Path(read_run_config(tiny_run).model.name)
    assert compare_logits(result, source, base_path=base, prompt="Hello! What can you help me with?") < 1e-3
    for item in source.path.glob("adapter_*"):  # what a merged export over an adapter export left behind
        shutil.copy2(item, tmp_path / "merged" / item.name)
    with pytest.raises(ExportError, match="does not compute what the run's model computes"):
        compare_logits(result, source, base_path=base, prompt="Hello! What can you help me with?")
