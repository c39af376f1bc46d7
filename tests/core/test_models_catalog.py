"""The catalog's architecture numbers give the models' real parameter counts, offline; any folder's
config.json gives its count without loading weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from desktop_ft.core import architecture, models
from desktop_ft.core.errors import ModelError


@pytest.mark.parametrize("entry", [m for m in models.catalog() if m.published_parameters], ids=lambda m: m.id)
def test_catalog_count_is_the_published_count(entry: models.CatalogModel) -> None:
    stored = entry.parameters + (entry.arch.vocab_size * entry.arch.hidden_size if entry.stores_tied_head else 0)
    assert stored == entry.published_parameters


def test_known_counts_exactly() -> None:
    assert models.catalog_entry("meta-llama/Llama-3.2-1B-Instruct").parameters == 1_235_814_400
    assert models.catalog_entry("qwen2.5-0.5b").parameters == 494_032_768
    assert models.catalog_entry("default").parameters == 134_515_008  # the built-in SmolLM2-135M
    assert models.catalog_entry("Mistral-7B-Instruct-v0.3").parameters == 7_248_023_552
    assert models.catalog_entry("google/gemma-2-2b").parameters == 2_614_341_888


def _one_per_type() -> list[models.CatalogModel]:
    seen: dict[str, models.CatalogModel] = {}
    for m in models.catalog():
        seen.setdefault(m.arch.model_type, m)
    return list(seen.values())


@pytest.mark.parametrize("entry", _one_per_type(), ids=lambda m: m.arch.model_type)
def test_formula_matches_transformers_for_each_family(entry: models.CatalogModel) -> None:
    """The same config numbers, built by transformers on the meta device (no memory), count the same."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    a = entry.arch
    config = AutoConfig.for_model(a.model_type, hidden_size=a.hidden_size, num_hidden_layers=a.num_layers,
                                  num_attention_heads=a.num_heads, num_key_value_heads=a.num_kv_heads,
                                  head_dim=a.head_dim, intermediate_size=a.intermediate_size, vocab_size=a.vocab_size,
                                  tie_word_embeddings=a.tie_embeddings)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == entry.parameters


def test_model_info_of_a_folder_counts_without_loading(tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM

    info = models.model_info(tiny_model)
    loaded = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert info.parameters == sum(p.numel() for p in loaded.parameters())
    assert info.architecture == "llama"
    assert info.has_chat_template is True
    assert info.dtype == "float32"
    assert info.size_on_disk_bytes and info.size_on_disk_bytes > 0
    assert info.context_length == 1024


def test_config_json_alone_is_enough(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
        "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936, "tie_word_embeddings": True,
        "max_position_embeddings": 32768, "torch_dtype": "bfloat16"}))
    info = models.model_info(tmp_path)
    assert info.parameters == 494_032_768
    assert info.dtype == "bfloat16" and info.size_on_disk_bytes is None and info.has_chat_template is False


def test_multimodal_config_reads_its_text_model(tmp_path: Path) -> None:
    cfg = {"model_type": "gemma3", "text_config": {"model_type": "gemma3_text", "hidden_size": 1152,
           "num_hidden_layers": 26, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256,
           "intermediate_size": 6912, "vocab_size": 262144}}
    arch = architecture.architecture_from_config(cfg)
    assert arch.parameters() == 999_885_952  # gemma ties embeddings by default


def test_moe_and_unknown_configs_do_not_crash() -> None:
    arch = architecture.architecture_from_config({"model_type": "qwen3_moe", "hidden_size": 2048,
                                                  "num_hidden_layers": 48,
                                            "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
                                            "intermediate_size": 6144, "moe_intermediate_size": 768,
                                            "num_experts": 128, "num_experts_per_tok": 8, "vocab_size": 151936})
    assert not arch.exact and 25e9 < arch.parameters() < 35e9  # Qwen3-30B-A3B is 30.5B
    gpt2 = architecture.architecture_from_config({"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12,
                                            "vocab_size": 50257})
    assert not gpt2.exact and gpt2.parameters() > 0


def test_missing_numbers_are_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    with pytest.raises(ModelError, match="num_hidden_layers"):
        models.model_info(tmp_path)
    with pytest.raises(ModelError, match="not found"):
        models.architecture_of(str(tmp_path / "nope"))


def test_scan_hf_cache_lists_cached_models(tmp_path: Path) -> None:
    repo = tmp_path / "models--org--tiny"
    commit = "a" * 40
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "c0ffee").write_text('{"model_type": "llama"}')
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "config.json").symlink_to(Path("../../blobs/c0ffee"))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    found = models.scan_hf_cache(tmp_path)
    assert [m.id for m in found] == ["org/tiny"]
    assert found[0].has_weights is False
    assert models.scan_hf_cache(tmp_path / "missing") == []


def test_offline_download_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelError) as err:
        models.download_model("someone/not-a-real-model-xyz")
    assert "someone/not-a-real-model-xyz" in str(err.value)


def test_download_progress_reports_fractions() -> None:
    seen = []
    bar = models._progress_bar_class("org/m", seen.append)(total=4_000_000, unit="B")
    bar.update(1_000_000)
    bar.update(3_000_000)
    bar.close()
    assert [round(p.fraction, 2) for p in seen] == [0.25, 1.0]
    assert all(p.stage == "download" for p in seen)


@pytest.mark.slow
def test_model_info_of_the_built_in_model() -> None:
    info = models.model_info("default")
    assert info.parameters == 134_515_008 and info.has_chat_template and info.licence == "apache-2.0"


def test_catalog_short_names_resolve_to_their_hub_id(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []
    monkeypatch.setattr(models, "download_model", lambda repo, **_k: asked.append(repo) or Path("/x"))
    models.resolve_model("qwen2.5-0.5b")
    assert asked == ["Qwen/Qwen2.5-0.5B-Instruct"]
