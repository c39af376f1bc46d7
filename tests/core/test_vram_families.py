"""The estimate reads other families' config shapes right, and counts prompt and prefix tuning as
what they are: checked against transformers and peft on small random models."""

from __future__ import annotations

import pytest

from desktop_ft.core import architecture, vram

#: GPT-NeoX (fused qkv, plain MLP, LayerNorm with biases, untied), Phi (biases everywhere, one norm
#: per layer, a biased head), Gemma (head_dim ≠ hidden/heads, multi-query, tied), Llama (GQA)
SHAPES = {
    "llama": ("LlamaConfig", dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, tie_word_embeddings=True)),
    "gpt_neox": ("GPTNeoXConfig", dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                                       num_attention_heads=4, rotary_pct=0.25, tie_word_embeddings=False)),
    "phi": ("PhiConfig", dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                              partial_rotary_factor=0.5, tie_word_embeddings=False)),
    "gemma": ("GemmaConfig", dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=1, head_dim=48, tie_word_embeddings=True)),
}


def _model(shape: str):
    import torch
    import transformers

    cls, kwargs = SHAPES[shape]
    config = getattr(transformers, cls)(vocab_size=300, max_position_embeddings=256, **kwargs)
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config), config


@pytest.mark.parametrize("shape", list(SHAPES))
def test_parameter_count_and_linear_layers_match_transformers(shape: str) -> None:
    import torch

    model, config = _model(shape)
    arch = architecture.architecture_from_config(config.to_dict())
    assert arch.parameters() == sum(p.numel() for p in model.parameters())
    assert arch.exact
    layer = model.base_model.layers[0]
    linears = {name.rsplit(".", 1)[-1]: (m.in_features, m.out_features) for name, m in layer.named_modules()
               if isinstance(m, torch.nn.Linear)}
    assert linears == arch.linear_layers()


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("method", ["lora", "prompt_tuning", "prefix_tuning"])
def test_trainable_parameters_match_peft(shape: str, method: str) -> None:
    from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, get_peft_model

    model, config = _model(shape)
    arch = architecture.architecture_from_config(config.to_dict())
    peft_config = {"lora": LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM"),
                   "prompt_tuning": PromptTuningConfig(num_virtual_tokens=12, task_type="CAUSAL_LM"),
                   "prefix_tuning": PrefixTuningConfig(num_virtual_tokens=12, task_type="CAUSAL_LM")}[method]
    tuned = get_peft_model(model, peft_config)
    real = sum(p.numel() for p in tuned.parameters() if p.requires_grad)
    s = vram.Settings(method=method, lora_rank=8, num_virtual_tokens=12 if method != "lora" else 0)
    assert vram.trainable_parameters(arch, s) == real


def test_prompt_tuning_is_not_estimated_as_lora() -> None:
    from desktop_ft.core import models

    arch = models.catalog_entry("llama-3.2-1b").arch
    lora = vram.estimate(arch, vram.Settings(method="lora"), device="cuda")
    prompt = vram.estimate(arch, vram.Settings(method="prompt_tuning", num_virtual_tokens=20), device="cuda")
    assert prompt.trainable_parameters == 20 * arch.hidden_size
    assert prompt.tokens_per_batch == 4 * (512 + 20)  # the virtual tokens go through the model too
    assert prompt.breakdown["optimizer"] < lora.breakdown["optimizer"] / 100
