"""A GGUF model is described from its header: picking one converts nothing and loads no weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from desktop_ft.core import embedded, models
from desktop_ft.core.errors import ModelError


def write_gguf(path: Path, *, tied: bool = True, layers: int = 2, hidden: int = 64, heads: int = 4,
               kv_heads: int = 2, ffn: int = 128, vocab: int = 100) -> Path:
    """A small but well-formed Llama GGUF file (F32 tensors with the real names and shapes)."""
    from gguf import GGUFWriter, LlamaFileType

    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(layers)
    writer.add_context_length(1024)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_vocab_size(vocab)
    writer.add_file_type(LlamaFileType.ALL_F32)
    writer.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
    head_dim = hidden // heads
    shapes = {"token_embd.weight": (vocab, hidden), "output_norm.weight": (hidden,)}
    if not tied:
        shapes["output.weight"] = (vocab, hidden)
    for i in range(layers):
        shapes.update({f"blk.{i}.attn_norm.weight": (hidden,), f"blk.{i}.ffn_norm.weight": (hidden,),
                       f"blk.{i}.attn_q.weight": (hidden, hidden),
                       f"blk.{i}.attn_k.weight": (kv_heads * head_dim, hidden),
                       f"blk.{i}.attn_v.weight": (kv_heads * head_dim, hidden),
                       f"blk.{i}.attn_output.weight": (hidden, hidden),
                       f"blk.{i}.ffn_gate.weight": (ffn, hidden), f"blk.{i}.ffn_up.weight": (ffn, hidden),
                       f"blk.{i}.ffn_down.weight": (hidden, ffn)})
    for name, shape in shapes.items():
        writer.add_tensor(name, np.zeros(shape, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("DESKTOP_FT_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def no_conversion(monkeypatch):
    def refuse(*_a, **_k):
        raise AssertionError("describing a GGUF file must not convert it")

    monkeypatch.setattr(embedded, "convert_gguf", refuse)
    monkeypatch.setattr(models, "convert_gguf", refuse)


@pytest.mark.parametrize("tied", [True, False])
def test_model_info_of_a_gguf_file_comes_from_its_header(tmp_path, no_conversion, tied):
    gguf = write_gguf(tmp_path / "m.gguf", tied=tied)
    info = models.model_info(gguf)
    assert (info.architecture, info.source, info.dtype, info.context_length) == ("llama", "gguf", "ALL_F32", 1024)
    assert info.has_chat_template is True and info.size_on_disk_bytes == gguf.stat().st_size
    arch = models.architecture_of(str(gguf))
    assert (arch.hidden_size, arch.num_layers, arch.num_heads, arch.num_kv_heads, arch.intermediate_size,
            arch.vocab_size, arch.tie_embeddings) == (64, 2, 4, 2, 128, 100, tied)
    # the header's count is the tensors' count: 2 layers of attention + MLP + norms, embeddings (+ head)
    per_layer = 64 * 64 * 2 + 2 * (32 * 64) + 3 * 64 * 128 + 2 * 64
    assert info.parameters == 100 * 64 * (1 if tied else 2) + 2 * per_layer + 64
    assert not (embedded.cache_root() / "models").exists()


def test_a_file_that_is_not_gguf_is_one_sentence(tmp_path, no_conversion):
    bad = tmp_path / "notes.gguf"
    bad.write_bytes(b"this is not a model" * 10)
    with pytest.raises(ModelError, match="not a readable GGUF file"):
        models.model_info(bad)


def test_conversion_is_refused_up_front_when_memory_would_run_out(tmp_path, monkeypatch):
    import psutil

    gguf = write_gguf(tmp_path / "m.gguf")

    class Tight:
        available = 1024

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Tight())
    with pytest.raises(ModelError, match="free memory"):
        embedded.convert_gguf(gguf)
    assert not (embedded.cache_root() / "models").exists() or not any((embedded.cache_root() / "models").iterdir())


@pytest.mark.slow
def test_two_processes_converting_one_file_stage_apart_and_leave_one_folder(tmp_path):
    """A run's child and a chat may convert the same GGUF file at once: each writes its own staging
    folder, both end with the same finished folder, and no staging folder is left behind."""
    import os
    import subprocess
    import sys

    code = "from desktop_ft.core import embedded; print(embedded.convert_gguf(embedded.embedded_gguf_path()))"
    env = {**os.environ, "DESKTOP_FT_CACHE": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    folders = {out.strip().splitlines()[-1] for out, _ in outs}
    assert len(folders) == 1
    folder = Path(folders.pop())
    assert embedded.is_converted(folder)
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]


@pytest.mark.slow
def test_the_built_in_model_is_described_without_converting_it(no_conversion, tmp_path):
    info = models.model_info("default")
    assert info.source == "embedded" and info.architecture == "llama" and info.dtype == "Q4_1"
    assert info.parameters == 134_515_008 and info.context_length == 8192  # SmolLM2-135M
    assert not (tmp_path / "cache").exists()


def test_the_header_walk_reads_what_the_gguf_package_reads(tmp_path):
    """Every scalar and string of the metadata, small arrays in full, and the tensor names are those of
    gguf's own GGUFReader; the vocabulary's arrays (strings and numbers) are stepped over, their length kept."""
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    from desktop_ft.core.gguf_header import _Header, _Skipped

    path = tmp_path / "vocab.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(3)
    writer.add_head_count([4, 4, 2])  # per layer, as some files give it
    writer.add_token_list([f"tok{i}-é" for i in range(20_000)])
    writer.add_token_scores([float(i) for i in range(20_000)])
    writer.add_string("general.name", "Tïny")
    writer.add_float32("llama.rope.freq_base", 10000.0)
    writer.add_bool("tokenizer.ggml.add_bos_token", True)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.add_tensor("output.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    for file in (path, embedded.embedded_gguf_path()):
        ours = _Header.read(file)
        theirs = GGUFReader(file, "r")
        assert ours.tensor_names == {t.name for t in theirs.tensors}
        assert set(ours.fields) == set(theirs.fields) - {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count"}
        for key, field in theirs.fields.items():
            if key.startswith("GGUF."):
                continue
            value = ours.fields[key]
            if isinstance(value, _Skipped):
                assert field.types[0] == GGUFValueType.ARRAY and len(value) == len(field.data), key
            else:
                assert value == pytest.approx(field.contents()) if isinstance(value, float) else \
                    value == field.contents(), key
    small = _Header.read(path).fields
    assert small["llama.attention.head_count"] == [4, 4, 2] and small["general.name"] == "Tïny"
    assert isinstance(small["tokenizer.ggml.tokens"], _Skipped) and len(small["tokenizer.ggml.tokens"]) == 20_000
