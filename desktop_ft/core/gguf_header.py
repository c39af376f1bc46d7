"""What a GGUF file is, read from its header: the architecture numbers without touching the weights.

Describing a model (the Model page, ``desktop-ft estimate``, ``models info``) must not de-quantise
it: a 7B Q4 file would need about 30 GB of RAM in fp32. The ``gguf`` package's reader memory-maps the
file and parses only the metadata and the tensor table, so this costs what reading the header costs.
The numbers come back as a ``config.json``-shaped dict, so ``architecture_from_config`` reads GGUF
and Hugging Face models with one rule.
"""

from __future__ import annotations

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
    from gguf import GGUFReader, LlamaFileType

    path = Path(path)
    try:
        reader = GGUFReader(path, "r")
    except FileNotFoundError:
        raise ModelError("GGUF file not found", path=path, hint="Check the path.") from None
    except (ValueError, OSError, IndexError, KeyError) as exc:
        raise ModelError(f"is not a readable GGUF file ({exc})", path=path,
                         hint="Pick a .gguf model file (llama.cpp's format), or a Hugging Face model folder.") from None

    def value(key: str) -> Any:
        field = reader.fields.get(key)
        return field.contents() if field is not None else None

    arch = value("general.architecture")
    if not isinstance(arch, str):
        raise ModelError("has no general.architecture in its header", path=path, field="general.architecture",
                         hint="The file is not a GGUF model; pick a .gguf model file.")
    config: dict[str, Any] = {"model_type": _MODEL_TYPES.get(arch, arch)}
    for key, hf_key in _KEYS.items():
        found = value(f"{arch}.{key}")
        if isinstance(found, list):  # some files give per-layer head counts: the first layer's describes it
            found = found[0] if found else None
        if found is not None:
            config[hf_key] = found
    if "vocab_size" not in config:
        tokens = reader.fields.get("tokenizer.ggml.tokens")
        if tokens is not None:
            config["vocab_size"] = len(tokens.data)
    names = {tensor.name for tensor in reader.tensors}
    config["tie_word_embeddings"] = "output.weight" not in names
    file_type = value("general.file_type")
    try:
        config["gguf_file_type"] = LlamaFileType(file_type).name.removeprefix("MOSTLY_") if file_type is not None \
            else None
    except ValueError:
        config["gguf_file_type"] = None
    config["has_chat_template"] = value("tokenizer.chat_template") is not None
    return config
