"""What a GGUF file is, read from its header: the architecture numbers without touching the weights.

Describing a model (the Model page, ``desktop-ft estimate``, ``models info``) must not de-quantise
it: a 7B Q4 file would need about 30 GB of RAM in fp32. The header is read in one pass over the
metadata and the tensor table (``_Header``, on the ``gguf`` package's layout constants), skipping the
vocabulary's arrays, so describing any model costs milliseconds.
The numbers come back as a ``config.json``-shaped dict, so ``architecture_from_config`` reads GGUF
and Hugging Face models with one rule.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from desktop_ft.core.errors import ModelError

#: GGUF architecture names that differ from the transformers ``model_type`` of the same family
_MODEL_TYPES = {"gptneox": "gpt_neox", "phi2": "phi", "command-r": "cohere", "qwen2moe": "qwen2_moe",
                "qwen3moe": "qwen3_moe", "stablelm": "stablelm", "starcoder2": "starcoder2"}

#: ``{arch}.<key>`` in the header → the ``config.json`` key it means
_KEYS = {
    "embedding_length": "hidden_size",
    "block_count": "num_hidden_layers",
    "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
    "attention.key_length": "head_dim",
    "feed_forward_length": "intermediate_size",
    "context_length": "max_position_embeddings",
    "vocab_size": "vocab_size",
    "rope.freq_base": "rope_theta",
    "expert_count": "num_experts",
    "expert_used_count": "num_experts_per_tok",
    "expert_feed_forward_length": "moe_intermediate_size",
}


def read_header(path: Path) -> dict[str, Any]:
    """A ``config.json``-like dict of the model in the GGUF file at ``path``, plus ``gguf_file_type``
    (the quantisation, e.g. 'Q4_1') and ``has_chat_template``. A ``ModelError`` when it is no GGUF."""
    from gguf import LlamaFileType

    path = Path(path)
    try:
        header = _Header.read(path)
    except FileNotFoundError:
        raise ModelError("GGUF file not found", path=path, hint="Check the path.") from None
    except (ValueError, OSError, IndexError, KeyError, struct.error) as exc:
        raise ModelError(f"is not a readable GGUF file ({exc})", path=path,
                         hint="Pick a .gguf model file (llama.cpp's format), or a Hugging Face model folder.") from None
    value = header.fields.get

    arch = value("general.architecture")
    if not isinstance(arch, str):
        raise ModelError("has no general.architecture in its header", path=path, field="general.architecture",
                         hint="The file is not a GGUF model; pick a .gguf model file.")
    config: dict[str, Any] = {"model_type": _MODEL_TYPES.get(arch, arch)}
    for key, hf_key in _KEYS.items():
        found = value(f"{arch}.{key}")
        if isinstance(found, list):  # some files give per-layer head counts: the first layer's describes it
            found = found[0] if found else None
        if found is not None and not isinstance(found, _Skipped):
            config[hf_key] = found
    if "vocab_size" not in config:
        tokens = value("tokenizer.ggml.tokens")
        if tokens is not None:
            config["vocab_size"] = len(tokens)
    config["tie_word_embeddings"] = "output.weight" not in header.tensor_names
    file_type = value("general.file_type")
    try:
        config["gguf_file_type"] = LlamaFileType(file_type).name.removeprefix("MOSTLY_") if file_type is not None \
            else None
    except ValueError:
        config["gguf_file_type"] = None
    config["has_chat_template"] = value("tokenizer.chat_template") is not None
    return config


class _Skipped:
    """An array the description does not need (the vocabulary, its scores, the merges): only its length."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length


#: arrays up to this many numbers are read (per-layer head counts); longer ones and every array of
#: strings are skipped over
_SMALL_ARRAY = 4096


class _Header:
    """The key/value metadata and the tensor names of a GGUF file, read in one pass over its start.

    The ``gguf`` package's ``GGUFReader`` also builds a view of every entry of every array (the
    49,152 tokens and 48,900 merges of SmolLM2: 6 s on a busy 2-core machine), which describing a
    model does not need; this walks the same layout (``gguf.GGUFValueType``) and skips the arrays by
    their sizes, so it costs milliseconds for any model.
    """

    def __init__(self, fields: dict[str, Any], tensor_names: set[str]) -> None:
        self.fields, self.tensor_names = fields, tensor_names

    @classmethod
    def read(cls, path: Path) -> _Header:
        import mmap

        from gguf import GGUF_MAGIC

        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if len(buf) < 24 or struct.unpack_from("<I", buf, 0)[0] != GGUF_MAGIC:
                raise ValueError("it does not start with the GGUF magic number")
            version = struct.unpack_from("<I", buf, 4)[0]
            order = ">" if version & 0xFFFF == 0 else "<"  # a big-endian file reads its version byte-swapped
            walk = _Walk(buf, 8, order)
            n_tensors, n_fields = walk.unpack("QQ")
            fields = {}
            for _ in range(n_fields):
                key = walk.string()
                fields[key] = walk.value(walk.unpack("I")[0])
            names = set()
            for _ in range(n_tensors):
                names.add(walk.string())
                n_dims = walk.unpack("I")[0]
                walk.pos += 8 * n_dims + 4 + 8  # dimensions, type, offset
            return cls(fields, names)


class _Walk:
    """A read position in a GGUF buffer."""

    _SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def __init__(self, buf: Any, pos: int, order: str) -> None:
        self.buf, self.pos, self.order = buf, pos, order

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        fmt = self.order + fmt
        out = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return out

    def string(self) -> str:
        n = self.unpack("Q")[0]
        text = bytes(self.buf[self.pos:self.pos + n]).decode("utf-8", errors="replace")
        self.pos += n
        return text

    def value(self, kind: int) -> Any:
        from gguf import GGUFValueType

        if kind == GGUFValueType.STRING:
            return self.string()
        if kind == GGUFValueType.ARRAY:
            item, n = self.unpack("IQ")
            if item in self._SCALARS and n <= _SMALL_ARRAY:
                return [self.value(item) for _ in range(n)]
            if item in self._SCALARS:
                self.pos += n * struct.calcsize(self._SCALARS[item])
            elif item == GGUFValueType.STRING:  # the vocabulary: step over each string by its length
                length, buf, pos = struct.Struct(self.order + "Q").unpack_from, self.buf, self.pos
                for _ in range(n):
                    pos += 8 + length(buf, pos)[0]
                self.pos = pos
            else:
                for _ in range(n):
                    self.value(item)
            return _Skipped(n)
        if kind not in self._SCALARS:
            raise ValueError(f"unknown value type {kind} in its header")
        return self.unpack(self._SCALARS[kind])[0]
