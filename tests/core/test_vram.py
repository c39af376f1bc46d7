"""Each term of the memory estimate, checked against what torch and peft really do where that is
cheap (trainable counts, saved activations) and against first principles elsewhere."""

from __future__ import annotations

import dataclasses

import pytest

from desktop_ft.core import architecture, hardware, models, vram
from desktop_ft.core.config import RunConfig

LLAMA_1B = models.catalog_entry("llama-3.2-1b").arch
LLAMA_8B = models.catalog_entry("llama-3.1-8b").arch
SMOL = models.catalog_entry("default").arch
SMALL = architecture.architecture_from_config({"model_type": "llama", "hidden_size": 128, "num_hidden_layers": 6,
                                         "num_attention_heads": 4, "num_key_value_heads": 2,
                                         "intermediate_size": 256, "vocab_size": 512, "tie_word_embeddings": True})


def _model(arch: architecture.Architecture):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(hidden_size=arch.hidden_size, num_hidden_layers=arch.num_layers,
                                        num_attention_heads=arch.num_heads, num_key_value_heads=arch.num_kv_heads,
                                        intermediate_size=arch.intermediate_size, vocab_size=arch.vocab_size,
                                        tie_word_embeddings=True, attn_implementation="sdpa", use_cache=False))


@pytest.mark.parametrize("targets,rank", [("all-linear", 16), ("q_proj,v_proj", 8)])
def test_trainable_parameters_match_peft(targets: str, rank: int) -> None:
    from peft import LoraConfig, get_peft_model

    peft_targets = "all-linear" if targets == "all-linear" else targets.split(",")
    model = get_peft_model(_model(SMALL), LoraConfig(r=rank, target_modules=peft_targets, task_type="CAUSAL_LM"))
    real = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert vram.trainable_parameters(SMALL, vram.Settings(lora_rank=rank, target_modules=targets)) == real


@pytest.mark.parametrize("dropout", [0.05, 0.0])
def test_activations_match_what_autograd_saves(dropout: float) -> None:
    """Sum the bytes autograd really keeps for backward in a LoRA forward (parameters excluded)."""
    import torch
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_model(SMALL), LoraConfig(r=8, lora_dropout=dropout, target_modules="all-linear",
                                                     task_type="CAUSAL_LM"))
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    ids = torch.randint(0, SMALL.vocab_size, (2, 128))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        hidden = model.base_model.model.model(input_ids=ids).last_hidden_state
    measured = sum(saved.values())
    s = vram.Settings(batch_size=2, max_length=128, lora_rank=8, lora_dropout=dropout, padded=False)
    estimated = vram.activations_bytes(SMALL, s, 4, "cpu")
    assert hidden is not None
    assert estimated == pytest.approx(measured, rel=0.10)


def _bytes(fn, arch, s: vram.Settings, device: str = "cuda"):
    return fn(arch, s, s.plan(device))


def test_weights_by_method() -> None:
    lora = _bytes(vram.weights_bytes, LLAMA_8B, vram.Settings(method="lora"))
    qlora = _bytes(vram.weights_bytes, LLAMA_8B, vram.Settings(method="qlora"))
    no_dq = _bytes(vram.weights_bytes, LLAMA_8B, vram.Settings(method="qlora", double_quant=False))
    assert lora == LLAMA_8B.parameters() * 2  # a frozen base in bf16
    # full fine-tuning keeps fp32 master weights, as the engine loads them
    assert _bytes(vram.weights_bytes, LLAMA_8B, vram.Settings(method="full")) == LLAMA_8B.parameters() * 4
    # 4-bit decoder layers (6.98e9 weights at ~0.516 B) plus fp32 embeddings and output layer
    # (prepare_model_for_kbit_training upcasts them): 7.5-8.1 GB for Llama-3.1-8B
    assert 7.5e9 < qlora < 8.1e9 and qlora < no_dq
    assert _bytes(vram.weights_bytes, SMOL, vram.Settings(), "cpu") == 134_515_008 * 4


def test_optimizer_and_gradients() -> None:
    s = vram.Settings(method="lora", lora_rank=16)
    n = vram.trainable_parameters(LLAMA_1B, s)
    assert _bytes(vram.gradients_bytes, LLAMA_1B, s) == 4 * n  # adapters train in fp32
    assert _bytes(vram.optimizer_bytes, LLAMA_1B, s) == 8 * n  # two fp32 moments
    assert _bytes(vram.optimizer_bytes, LLAMA_1B, dataclasses.replace(s, optimizer="sgd")) == 0
    assert _bytes(vram.optimizer_bytes, LLAMA_1B, dataclasses.replace(s, optimizer="paged_adamw_8bit")) < 2.1 * n
    full = vram.Settings(method="full")  # fp32 master weights: fp32 gradients and moments, 16 bytes a parameter
    params = LLAMA_1B.parameters()
    assert _bytes(vram.optimizer_bytes, LLAMA_1B, full) == 8 * params
    assert _bytes(vram.gradients_bytes, LLAMA_1B, full) + _bytes(vram.weights_bytes, LLAMA_1B, full) == 8 * params


def test_activation_scaling_and_checkpointing() -> None:
    base = vram.Settings(batch_size=2, max_length=1024)
    a = vram.activations_bytes(LLAMA_1B, base, 2)
    double = vram.activations_bytes(LLAMA_1B, dataclasses.replace(base, batch_size=4), 2)
    assert double == pytest.approx(2 * a, rel=1e-6)
    ckpt = vram.activations_bytes(LLAMA_1B, dataclasses.replace(base, gradient_checkpointing=True), 2)
    assert ckpt < a / 5
    dpo = vram.activations_bytes(LLAMA_1B, dataclasses.replace(base, task="dpo"), 2)
    assert dpo == pytest.approx(2 * a, rel=1e-6)  # chosen and rejected go through together


def test_reference_model_only_for_full_preference_training() -> None:
    assert _bytes(vram.reference_bytes, LLAMA_1B, vram.Settings(method="lora", task="dpo")) == 0
    full_dpo = vram.Settings(method="full", task="dpo")
    assert _bytes(vram.reference_bytes, LLAMA_1B, full_dpo) == LLAMA_1B.parameters() * 2  # compute dtype on a GPU
    assert _bytes(vram.reference_bytes, LLAMA_1B, full_dpo, "cpu") == LLAMA_1B.parameters() * 4
    assert _bytes(vram.reference_bytes, LLAMA_1B, vram.Settings(method="full", task="sft")) == 0


def test_breakdown_sums_and_cpu_counts_the_runtime() -> None:
    for device in ("cuda", "cpu"):
        est = vram.estimate(SMOL, vram.Settings(), device=device)
        assert sum(est.breakdown.values()) == est.total_bytes
        assert all(v >= 0 for v in est.breakdown.values())
    assert vram.estimate(SMOL, vram.Settings(), device="cpu").dtype == "fp32"
    assert vram.estimate(SMOL, vram.Settings(), device="cuda", bf16_supported=False).dtype == "fp16"


def test_verdict_thresholds() -> None:
    assert vram.judge(80, 100) == ("fits", True)
    assert vram.judge(95, 100) == ("tight", True)
    assert vram.judge(101, 100) == ("does_not_fit", False)
    assert vram.judge(1, None) == ("unknown", None)


def test_suggestions_fit_and_apply_to_the_config() -> None:
    config = RunConfig().replace({"model.name": "llama-3.1-8b", "training.batch_size": 8,
                                  "training.max_length": 2048})
    hw = hardware.gpu(24)
    est = vram.estimate_for_config(config, hardware=hw)
    assert est.verdict == "does_not_fit" and est.fits is False
    assert est.suggestions
    for s in est.suggestions:
        assert s.total_bytes <= vram.TIGHT_SHARE * 24 * 1024**3
        again = vram.estimate_for_config(config.replace(s.overrides), hardware=hw, suggest=False)
        assert again.total_bytes == s.total_bytes and again.verdict == "fits"


def test_fitting_config_has_no_suggestions() -> None:
    est = vram.estimate_for_config(RunConfig().replace({"model.name": "qwen2.5-0.5b"}), hardware=hardware.gpu(80))
    assert est.verdict == "fits" and est.suggestions == []


def test_settings_come_from_the_config_through_the_registry() -> None:
    from desktop_ft.core.errors import ConfigError

    s = vram.settings_from_config(RunConfig().replace({"method.method": "dora"}))
    assert s.method == "dora" and s.task == "sft" and s.batch_size == 4
    assert vram.trainable_parameters(SMOL, s) > vram.trainable_parameters(SMOL, vram.Settings())
    qlora = vram.settings_from_config(RunConfig().replace({"method.method": "qlora"}))
    assert qlora.optimizer_name == "paged_adamw_8bit"
    odd = RunConfig().replace({"method.method": "qlorra"})
    with pytest.raises(ConfigError, match="Did you mean 'qlora'"):
        vram.estimate_for_config(odd, device="cuda", available_bytes=10**12)


def test_full_fine_tuning_of_an_8b_model_does_not_fit_in_80_gib() -> None:
    """The engine trains fp32 master weights: 16 bytes a parameter with AdamW before any activation."""
    config = RunConfig().replace({"model.name": "llama-3.1-8b", "method.method": "full"})
    est = vram.estimate_for_config(config, hardware=hardware.gpu(80), suggest=False)
    assert est.total_bytes > 16 * LLAMA_8B.parameters() and est.verdict == "does_not_fit"


def test_time_estimate_and_calibration() -> None:
    s = vram.Settings()
    guess = vram.estimate_time(LLAMA_1B, s, steps=100, device="cuda", hardware=hardware.gpu(80, "NVIDIA H100"))
    assert guess.source == "flops" and guess.total_seconds == pytest.approx(100 * guess.seconds_per_step)
    metrics = [{"event": "StepLogged", "step": i, "time": 1000.0 + (5.0 if i == 1 else 5.0 + 2.0 * (i - 1))}
               for i in range(1, 7)]
    metrics[0]["time"] = 990.0  # a slow first step (warm-up) is skipped
    timed = vram.calibrate_time(metrics, total_steps=106)
    assert timed is not None and timed.seconds_per_step == pytest.approx(2.0)
    assert timed.total_seconds == pytest.approx(200.0)
    assert vram.calibrate_time(metrics[:2], total_steps=10) is None
