"""The numbers of a decoder-only transformer that decide its size and its training memory.

``architecture_from_config`` reads them from any ``config.json`` (Llama, Qwen, Gemma, Mistral, Phi
and similar, MoE roughly); ``Architecture`` counts parameters exactly from them, without loading
a weight. Where the numbers come from (catalog, folder, Hub) is ``desktop_ft.core.models``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop_ft.core.errors import ModelError

#: model types whose q/k/v projections carry a bias although their config has no ``attention_bias``
_QKV_BIAS_TYPES = {"qwen2", "qwen2_moe", "qwen2_vl"}
#: model types with an RMSNorm over each head of q and k (``q_norm``/``k_norm``, ``head_dim`` each)
_QK_NORM_TYPES = {"qwen3", "qwen3_moe", "gemma3", "gemma3_text"}
#: model types with four norms per decoder layer (pre/post attention and pre/post feed-forward)
_FOUR_NORM_TYPES = {"gemma2", "gemma3", "gemma3_text"}
#: model types whose embeddings are tied to the output layer unless config.json says otherwise
_TIED_BY_DEFAULT = {"gemma", "gemma2", "gemma3", "gemma3_text"}
#: model types fusing q/k/v into ``qkv_proj`` and gate/up into ``gate_up_proj`` (same counts, other names)
_FUSED_TYPES = {"phi3"}
#: model types with a plain two-matrix MLP (up, activation, down) instead of a gated one
_PLAIN_MLP_TYPES = {"gpt_neox", "phi", "gpt2", "falcon", "gptj", "opt"}
#: model types normalising with LayerNorm (a weight and a bias) instead of RMSNorm
_LAYERNORM_TYPES = {"gpt_neox", "phi", "gpt2", "falcon", "gptj", "opt"}
#: model types with one norm per layer feeding attention and MLP in parallel
_ONE_NORM_TYPES = {"phi", "gptj"}
#: decoder families whose layer layout the formula below describes exactly
_EXACT_TYPES = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text", "phi3",
                "smollm3", "olmo", "granite", "gpt_neox", "phi"}


@dataclass(frozen=True)
class Architecture:
    """The numbers of a decoder-only transformer that decide its size and its training memory.

    Field names follow the usual ``config.json`` keys. ``exact`` is False for layouts this module
    does not know in detail (mixture-of-experts, unusual norms): counts are then close, not exact.
    """

    model_type: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_embeddings: bool
    max_context: int
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    norms_per_layer: int = 2
    num_experts: int = 0
    experts_per_token: int = 0
    expert_intermediate_size: int = 0
    exact: bool = True
    gated_mlp: bool = True  # gate/up/down (Llama, Gemma); False: up/down only (GPT-NeoX, Phi)
    layer_norm: bool = False  # LayerNorm (weight + bias) instead of RMSNorm
    lm_head_bias: bool = False  # Phi's output layer has a bias
    hidden_act: str = "silu"  # the MLP's activation (what it keeps for backward depends on it)

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    def linear_layers(self) -> dict[str, tuple[int, int]]:
        """Each decoder layer's linear modules as ``name → (in_features, out_features)`` (peft's names)."""
        h, q, kv = self.hidden_size, self.q_dim, self.kv_dim
        inter = self.intermediate_size if not self.num_experts else self.expert_intermediate_size
        if self.model_type in _FUSED_TYPES:
            return {"qkv_proj": (h, q + 2 * kv), "o_proj": (q, h), "gate_up_proj": (h, 2 * inter),
                    "down_proj": (inter, h)}
        if self.model_type == "gpt_neox":
            return {"query_key_value": (h, q + 2 * kv), "dense": (q, h), "dense_h_to_4h": (h, inter),
                    "dense_4h_to_h": (inter, h)}
        if self.model_type == "phi":
            return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "dense": (q, h), "fc1": (h, inter),
                    "fc2": (inter, h)}
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}

    def layer_parameters(self) -> int:
        """Parameters of one decoder layer: attention, feed-forward, norms."""
        h, q, kv, inter = self.hidden_size, self.q_dim, self.kv_dim, self.intermediate_size
        attn = h * q + 2 * h * kv + q * h
        if self.qkv_bias:
            attn += q + 2 * kv
        if self.o_bias:
            attn += h
        if self.num_experts:  # SwiGLU experts plus a router (shared experts are not counted)
            mlp = self.num_experts * 3 * h * self.expert_intermediate_size + h * self.num_experts
        elif self.gated_mlp:
            mlp = 3 * h * inter + ((2 * inter + h) if self.mlp_bias else 0)
        else:
            mlp = 2 * h * inter + ((inter + h) if self.mlp_bias else 0)
        norms = self.norms_per_layer * self.norm_parameters + (2 * self.head_dim if self.qk_norm else 0)
        return attn + mlp + norms

    @property
    def norm_parameters(self) -> int:
        """One norm: a weight (RMSNorm), or a weight and a bias (LayerNorm)."""
        return 2 * self.hidden_size if self.layer_norm else self.hidden_size

    def embedding_parameters(self) -> int:
        return self.vocab_size * self.hidden_size

    def parameters(self) -> int:
        """Total parameters, counted once for tied embeddings, exactly as ``sum(p.numel())`` counts them."""
        total = self.embedding_parameters() + self.num_layers * self.layer_parameters() + self.norm_parameters
        if not self.tie_embeddings:
            total += self.vocab_size * self.hidden_size
        if self.lm_head_bias:
            total += self.vocab_size
        return total

    def quantizable_parameters(self) -> int:
        """Weights of the decoder layers' linear modules: what 4-bit loading quantises (not embeddings,
        not the output layer, not norms or biases)."""
        h, q, kv, inter = self.hidden_size, self.q_dim, self.kv_dim, self.intermediate_size
        if self.num_experts:
            mlp = self.num_experts * 3 * h * self.expert_intermediate_size
        else:
            mlp = (3 if self.gated_mlp else 2) * h * inter
        return self.num_layers * (h * q + 2 * h * kv + q * h + mlp)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def architecture_from_config(config: dict[str, Any], *, source: str | Path | None = None) -> Architecture:
    """Read the architecture numbers from a ``config.json`` dict (any decoder-only family).

    Multimodal configs that nest the language model under ``text_config`` are read from there.
    Missing numbers are a ``ModelError`` naming the key, never a ``KeyError``.
    """
    cfg = dict(config)
    text = cfg.get("text_config")
    if isinstance(text, dict) and "hidden_size" not in cfg:
        merged = {**{k: v for k, v in cfg.items() if k != "text_config"}, **text}
        merged["model_type"] = text.get("model_type") or cfg.get("model_type")
        cfg = merged
    model_type = str(cfg.get("model_type") or "unknown")

    def need(*keys: str) -> int:
        for key in keys:
            value = cfg.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                return int(value)
        raise ModelError(f"config.json has no '{keys[0]}', so the model's size cannot be worked out",
                         path=source, field=keys[0],
                         hint="Desktop FT understands decoder-only language models (Llama, Qwen, Gemma, "
                              "Mistral, Phi and similar).")

    hidden = need("hidden_size", "n_embd", "d_model")
    layers = need("num_hidden_layers", "n_layer", "num_layers")
    heads = need("num_attention_heads", "n_head", "num_heads")
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    inter = int(cfg.get("intermediate_size") or cfg.get("n_inner") or 4 * hidden)
    vocab = need("vocab_size")
    tie = cfg.get("tie_word_embeddings")
    if tie is None:
        tie = model_type in _TIED_BY_DEFAULT
    context = int(cfg.get("max_position_embeddings") or cfg.get("n_positions") or cfg.get("seq_length") or 2048)
    experts = int(cfg.get("num_experts") or cfg.get("num_local_experts") or cfg.get("n_routed_experts") or 0)
    attention_bias = bool(cfg.get("attention_bias", False))
    plain = model_type in _PLAIN_MLP_TYPES
    if plain:  # GPT-NeoX and Phi: every linear has a bias (NeoX's attention ones unless attention_bias=false)
        attention_bias = bool(cfg.get("attention_bias", True)) or model_type == "phi"
    act = str(cfg.get("hidden_activation") or cfg.get("hidden_act") or cfg.get("activation_function") or "silu")
    return Architecture(
        model_type=model_type, hidden_size=hidden, num_layers=layers, num_heads=heads, num_kv_heads=kv_heads,
        head_dim=head_dim, intermediate_size=inter, vocab_size=vocab, tie_embeddings=bool(tie),
        max_context=context,
        qkv_bias=attention_bias or model_type in _QKV_BIAS_TYPES,
        o_bias=attention_bias and model_type not in _QKV_BIAS_TYPES,
        mlp_bias=bool(cfg.get("mlp_bias", False)) or plain,
        qk_norm=model_type in _QK_NORM_TYPES,
        norms_per_layer=4 if model_type in _FOUR_NORM_TYPES else 1 if model_type in _ONE_NORM_TYPES else 2,
        num_experts=experts,
        experts_per_token=int(cfg.get("num_experts_per_tok") or 0),
        expert_intermediate_size=int(cfg.get("moe_intermediate_size") or inter) if experts else 0,
        exact=model_type in _EXACT_TYPES and not experts,
        gated_mlp=not plain, layer_norm=model_type in _LAYERNORM_TYPES, lm_head_bias=model_type == "phi",
        hidden_act=act,
    )
