"""The precision plan: one answer to 'which dtype?' for the engine, the estimate and chat."""

from __future__ import annotations

import pytest

from desktop_ft.core import vram
from desktop_ft.core.methods import METHODS, method_spec
from desktop_ft.core.precision import compute_dtype, inference_dtype, plan_for


@pytest.mark.parametrize("name", list(METHODS))
def test_trained_parameters_are_fp32_for_every_method_on_every_device(name: str) -> None:
    for device, bf16 in (("cuda", True), ("cuda", False), ("cpu", False)):
        plan = plan_for(method_spec(name), "auto", device, bf16)
        assert plan.trainable == "fp32", (name, device)
        assert plan.compute == ("bf16" if bf16 else "fp16" if device == "cuda" else "fp32")


def test_full_fine_tuning_keeps_fp32_master_weights_under_bf16_autocast() -> None:
    plan = plan_for(method_spec("full"), "auto", "cuda", True)
    assert (plan.load, plan.weights, plan.trainable, plan.compute) == ("fp32", "fp32", "fp32", "bf16")
    assert plan.bf16 and not plan.fp16
    assert plan.reference == "bf16"  # a frozen DPO/KTO reference only runs forward passes
    assert plan_for(method_spec("full"), "auto", "cpu", False).reference == "fp32"


def test_adapters_freeze_the_base_in_the_compute_dtype_and_quantised_bases_upcast_the_rest() -> None:
    lora = plan_for(method_spec("lora"), "auto", "cuda", True)
    assert (lora.load, lora.weights, lora.quantized_bits) == ("bf16", "bf16", None)
    qlora = plan_for(method_spec("qlora"), "auto", "cuda", False)
    assert (qlora.load, qlora.weights, qlora.quantized_bits) == ("fp16", "fp32", 4)
    assert plan_for(method_spec("qlora"), "auto", "cuda", True, quant_compute="fp16").load == "fp16"
    assert plan_for(method_spec("lora_8bit"), "auto", "cuda", True).quantized_bits == 8


def test_precision_setting_on_each_device() -> None:
    assert compute_dtype("fp32", "cuda", True) == "fp32"
    assert compute_dtype("fp16", "cpu", False) == "fp32"  # fp16 on the CPU is not used
    assert compute_dtype("bf16", "cpu", False) == "bf16"
    assert inference_dtype("cpu", False) == "fp32" and inference_dtype("cuda", True) == "bf16"


def test_the_estimate_counts_bytes_by_the_plan() -> None:
    from desktop_ft.core import models

    arch = models.catalog_entry("llama-3.2-1b").arch
    for method in METHODS:
        s = vram.Settings(method=method)
        plan = s.plan("cuda")
        if not plan.quantized_bits:
            assert vram.weights_bytes(arch, s, plan) == arch.parameters() * plan.bytes("weights")
        assert vram.gradients_bytes(arch, s, plan) == vram.trainable_parameters(arch, s) * 4
        assert vram.estimate(arch, s, device="cuda").dtype == plan.compute


@pytest.mark.parametrize("method,expected", [("lora", "bfloat16"), ("full", "float32")])
def test_the_engine_loads_the_model_in_the_plans_dtype(method: str, expected: str, tiny_model) -> None:
    """bf16 asked for on the CPU: a frozen LoRA base is loaded in bf16, a full fine-tune keeps fp32 weights."""
    from desktop_ft.core import engine
    from desktop_ft.core.config import RunConfig

    config = RunConfig().replace({"model.name": str(tiny_model), "method.method": method,
                                  "training.precision": "bf16"})
    plan = engine.precision_plan(config)
    model, _tokenizer = engine._load_model(config, tiny_model, plan, needs_chat=True)
    assert {str(p.dtype) for p in model.parameters()} == {f"torch.{expected}"}
