"""The precision plan: which number format the weights, the trained parameters and the maths use.

One place decides it for a method on a device; the engine loads and trains by it, the memory
estimate counts bytes by it, and chat loads models by it. The rules are those of the HF Trainer
with peft:

- the maths runs in the compute dtype: bf16 (or fp16 where a GPU lacks bf16) under the Trainer's
  autocast on a GPU; fp32 on the CPU, where bf16 is many times slower (unless asked for);
- full fine-tuning keeps fp32 master weights, so the weights, their gradients and the optimizer
  moments are fp32 (16 bytes a parameter with AdamW) — an lr × gradient update is often below what
  a bf16 weight can represent, and would be lost;
- an adapter trains in fp32 (peft upcasts it) on a frozen base loaded in the compute dtype;
- a quantised base (QLoRA, 8-bit LoRA) stores its linear layers in 4 or 8 bits; peft's
  ``prepare_model_for_kbit_training`` then upcasts every other parameter (embeddings, norms,
  output layer) to fp32.

Names are 'fp32', 'bf16' and 'fp16'; ``TORCH_NAMES`` maps them to torch's.
"""

from __future__ import annotations

from dataclasses import dataclass

from desktop_ft.core.methods import MethodSpec

BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
TORCH_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True)
class PrecisionPlan:
    """What dtype each part of a run uses on ``device``."""

    device: str  # 'cuda' or 'cpu'
    compute: str  # activations and matmuls (TrainingArguments' bf16/fp16 flags)
    load: str  # the dtype the model is loaded in (``from_pretrained(dtype=...)``)
    weights: str  # the dtype of the non-quantised base weights while training
    trainable: str  # the trained parameters, their gradients and the optimizer moments
    reference: str  # a frozen reference copy (full fine-tuning with DPO/KTO): forward passes only
    quantized_bits: int | None = None  # 4 or 8: the base's linear layers are stored by bitsandbytes

    @property
    def bf16(self) -> bool:
        return self.compute == "bf16"

    @property
    def fp16(self) -> bool:
        return self.compute == "fp16"

    def bytes(self, part: str) -> int:
        """Bytes per value of ``part`` ('compute', 'weights', 'trainable', 'reference', 'load')."""
        return BYTES[getattr(self, part)]


def compute_dtype(precision: str, device: str, bf16_supported: bool) -> str:
    """``training.precision`` on ``device``: 'auto' is bf16 on a GPU that has it, else fp16; fp32 on the CPU."""
    if device == "cuda":
        if precision == "auto":
            return "bf16" if bf16_supported else "fp16"
        return precision
    return "bf16" if precision == "bf16" else "fp32"


def plan_for(method: MethodSpec, precision: str, device: str, bf16_supported: bool, *,
             quant_compute: str = "auto") -> PrecisionPlan:
    """The plan for ``method`` trained at ``precision`` ('auto', 'fp32', 'bf16', 'fp16') on ``device``.

    ``quant_compute`` is QLoRA's ``method.qlora.compute_dtype``: what 4-bit weights are
    dequantised to ('auto': bf16 when the run computes in bf16, else fp16).
    """
    compute = compute_dtype(precision, device, bf16_supported)
    reference = compute if device == "cuda" else "fp32"
    if not method.trains_adapter:
        return PrecisionPlan(device, compute, load="fp32", weights="fp32", trainable="fp32", reference=reference)
    if method.quantized_bits == 4:
        dequant = quant_compute if quant_compute != "auto" else ("bf16" if compute == "bf16" else "fp16")
        return PrecisionPlan(device, compute, load=dequant, weights="fp32", trainable="fp32", reference=reference,
                             quantized_bits=4)
    if method.quantized_bits == 8:
        return PrecisionPlan(device, compute, load=compute, weights="fp32", trainable="fp32", reference=reference,
                             quantized_bits=8)
    return PrecisionPlan(device, compute, load=compute, weights=compute, trainable="fp32", reference=reference)


def inference_dtype(device: str, bf16_supported: bool) -> str:
    """What chat and export load a model in: the compute dtype 'auto' picks (fp32 on the CPU)."""
    return compute_dtype("auto", device, bf16_supported)
