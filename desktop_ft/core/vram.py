"""How much memory a training run will take, where it goes, whether it fits, and what would fit.

Worked out from the model's ``config.json`` numbers alone (``architecture.Architecture``), before any
weight is loaded, for the way Desktop FT actually trains: transformers + peft + TRL, with the number
formats of ``desktop_ft.core.precision`` (the same plan the engine loads and trains by: fp32 master
weights for full fine-tuning, a frozen base in the compute dtype under fp32 adapters), what a method
and task mean from ``desktop_ft.core.methods``, SDPA attention, and TRL's tiled log-probability head
(TRL >= 1.x never materialises the full ``batch × length × vocab`` logits). Every term is a plain
function of the settings; how each is derived, and how well the sum matched measured peaks, is
written down in ``docs/memory.md``.

The estimate is a *peak* for the worst batch. Without data every sequence is assumed as long as
``training.max_length``; with the run's data (``lengths``) a batch is padded to its longest row, as
TRL's collators pad it, so the worst batch is the one holding the longest row.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from desktop_ft.core import distributed
from desktop_ft.core.architecture import Architecture
from desktop_ft.core.lengths import LengthSample, padded_length
from desktop_ft.core.methods import MethodSpec, TaskSpec, method_spec, optimizer_for, resolve_task, task_spec
from desktop_ft.core.precision import BYTES, PrecisionPlan, plan_for

if TYPE_CHECKING:  # pragma: no cover
    from desktop_ft.core.config import RunConfig
    from desktop_ft.core.hardware import Hardware

GiB = 1024**3
MiB = 1024**2

#: optimizer state bytes per trainable parameter, beyond the parameter itself (None: 2 × param dtype)
OPTIMIZER_STATE_BYTES = {"sgd": 0.0, "adamw_8bit": 2.03, "paged_adamw_8bit": 2.03, "adamw_bnb_8bit": 2.03,
                         "paged_adamw_32bit": 8.0, "adafactor": 0.05, "lion_8bit": 1.02, "paged_lion_8bit": 1.02}

# NF4 with double quantisation: 4 bits per weight, one 8-bit absmax per 64 weights, one fp32
# second-level constant per 256 absmax blocks (QLoRA paper, section 3): 0.5 + 1/64 + 4/16384 bytes.
NF4_DQ_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
NF4_BYTES = 0.5 + 4 / 64  # without double quantisation: an fp32 absmax per 64 weights
INT8_BYTES = 1.0 + 4 / 4096  # LLM.int8: one byte per weight plus per-row fp32 scales (approximately)

#: TRL's tiled log-probability head works on [4096 tokens × 32768 vocab] tiles
TRL_TOKEN_TILE = 4096
TRL_VOCAB_TILE = 32768

#: CUDA context and kernels loaded by torch: outside torch's allocator, visible in nvidia-smi
CUDA_CONTEXT_BYTES = 512 * MiB
#: caching-allocator slack (reserved but not allocated, fragmentation) as a share of the peak
CUDA_ALLOCATOR_SHARE = 0.08
#: a Python process that has imported torch, transformers, peft, TRL and datasets, with a Trainer
#: set up (measured on Linux x86-64 CPU wheels; see docs/memory.md)
CPU_RUNTIME_BYTES = 480 * MiB
#: glibc keeps freed blocks (per-thread arenas, raised mmap threshold), so from the second step on
#: the resident peak sits about 30% above the live tensors of a step (measured, docs/memory.md)
CPU_ALLOCATOR_SHARE = 0.30

TIGHT_SHARE = 0.90  # above 90% of the available memory the verdict is "tight"


@dataclass(frozen=True)
class Settings:
    """The settings the estimate depends on, read from a RunConfig with defaults for missing keys."""

    method: str = "lora"
    task: str = "sft"
    batch_size: int = 4
    max_length: int = 512
    gradient_checkpointing: bool = False
    lora_rank: int = 16
    lora_dropout: float = 0.05
    target_modules: str = "all-linear"
    optimizer: str = "auto"  # as in the config: 'auto' is the method's own choice (``optimizer_name``)
    precision: str = "auto"
    packing: bool = False
    double_quant: bool = True
    gradient_accumulation_steps: int = 1
    #: prompt or prefix tuning: the learned virtual tokens (0 for every other method)
    num_virtual_tokens: int = 0
    #: batches mix lengths, so attention gets a padding mask and GQA keys/values are repeated
    padded: bool = True

    @property
    def spec(self) -> MethodSpec:
        return method_spec(self.method)

    @property
    def task_spec(self) -> TaskSpec:
        return task_spec(self.task)

    @property
    def is_full(self) -> bool:
        return not self.spec.trains_adapter

    @property
    def is_adapter(self) -> bool:
        return self.spec.trains_adapter

    @property
    def optimizer_name(self) -> str:
        return optimizer_for(self.method, self.optimizer)

    def plan(self, device: str, bf16_supported: bool = True) -> PrecisionPlan:
        """The precision plan the engine trains these settings with on ``device``."""
        return plan_for(self.spec, self.precision, device, bf16_supported)


@dataclass(frozen=True)
class Suggestion:
    """A nearby configuration that fits: apply ``overrides`` with ``RunConfig.replace``."""

    title: str
    overrides: dict[str, Any]
    total_bytes: int


@dataclass
class MemoryEstimate:
    """Peak memory of a run with its parts (``breakdown`` sums to ``total_bytes``) and the verdict."""

    total_bytes: int
    breakdown: dict[str, int]
    device: str
    available_bytes: int | None
    verdict: str  # 'fits' | 'tight' | 'does_not_fit' | 'unknown' (no such device here)
    fits: bool | None
    suggestions: list[Suggestion] = field(default_factory=list)
    dtype: str = "fp32"
    trainable_parameters: int = 0
    parameters: int = 0
    tokens_per_batch: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The ``desktop-ft estimate --json`` object (the first six keys are the stable contract)."""
        return {"total_bytes": self.total_bytes, "breakdown": dict(self.breakdown), "device": self.device,
                "available_bytes": self.available_bytes, "fits": self.fits,
                "suggestions": [asdict(s) for s in self.suggestions], "verdict": self.verdict,
                "dtype": self.dtype, "parameters": self.parameters,
                "trainable_parameters": self.trainable_parameters, "tokens_per_batch": self.tokens_per_batch,
                "notes": list(self.notes)}


# -- reading the config --------------------------------------------------------------------------------

def settings_from_config(config: RunConfig) -> Settings:
    """Pick the estimate's inputs out of a RunConfig (unknown method or task names raise ``ConfigError``)."""
    m, t = config.method, config.training
    method_spec(m.method)
    return Settings(
        method=m.method,
        task=resolve_task(m.task, None),
        batch_size=t.batch_size,
        max_length=t.max_length,
        gradient_checkpointing=t.gradient_checkpointing,
        lora_rank=m.lora_rank,
        lora_dropout=m.lora_dropout,
        target_modules=m.target_modules,
        optimizer=t.optimizer,
        precision=t.precision,
        packing=t.packing,
        double_quant=m.qlora.double_quant,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        num_virtual_tokens=_virtual_tokens(config),
    )


def _virtual_tokens(config: RunConfig) -> int:
    adapter = method_spec(config.method.method).adapter
    if adapter == "prompt_tuning":
        return config.method.prompt_tuning.num_virtual_tokens
    if adapter == "prefix_tuning":
        return config.method.prefix_tuning.num_virtual_tokens
    return 0


# -- the terms ------------------------------------------------------------------------------------------

def target_layers(arch: Architecture, target_modules: str) -> dict[str, tuple[int, int]]:
    """The decoder layers' linear modules that get adapters: 'all-linear' or a comma-separated list.

    Names that match nothing (say 'q_proj' on Phi-3, whose projections are fused) fall back to
    'all-linear' rather than to zero: an estimate too low is worse than one a bit high.
    """
    layers = arch.linear_layers()
    spec = (target_modules or "all-linear").strip()
    if spec in ("all-linear", "all", "*"):
        return layers
    wanted = {name.strip() for name in spec.split(",") if name.strip()}
    chosen = {name: dims for name, dims in layers.items() if name in wanted}
    return chosen or layers


def trainable_parameters(arch: Architecture, s: Settings) -> int:
    """Full: every parameter. LoRA: r × (in + out) per adapted module and layer (+ DoRA's magnitudes).
    Prompt tuning: one embedding per virtual token. Prefix tuning: a key and a value per virtual token
    in every layer (peft sizes them by the key/value heads: ``num_key_value_heads × head_dim``)."""
    if s.is_full:
        return arch.parameters()
    if s.spec.adapter == "prompt_tuning":
        return s.num_virtual_tokens * arch.hidden_size
    if s.spec.adapter == "prefix_tuning":
        return s.num_virtual_tokens * arch.num_layers * 2 * arch.kv_dim
    per_layer = 0
    for fan_in, fan_out in target_layers(arch, s.target_modules).values():
        per_layer += s.lora_rank * (fan_in + fan_out)
        if s.spec.adapter == "dora":
            per_layer += fan_out
    return per_layer * arch.num_layers


def weights_bytes(arch: Architecture, s: Settings, plan: PrecisionPlan) -> int:
    """The model while training, in the plan's weight dtype (fp32 master weights for full training);
    or 4-bit/8-bit linear layers with everything else (embeddings, output layer, norms) in the
    plan's fp32, because the engine runs peft's ``prepare_model_for_kbit_training``."""
    total = arch.parameters()
    if plan.quantized_bits:
        quantized = arch.quantizable_parameters()
        per = INT8_BYTES if plan.quantized_bits == 8 else (NF4_DQ_BYTES if s.double_quant else NF4_BYTES)
        return int(quantized * per + (total - quantized) * plan.bytes("weights"))
    return total * plan.bytes("weights")


def gradients_bytes(arch: Architecture, s: Settings, plan: PrecisionPlan) -> int:
    return trainable_parameters(arch, s) * plan.bytes("trainable")


def optimizer_bytes(arch: Architecture, s: Settings, plan: PrecisionPlan) -> int:
    """AdamW keeps two moments per trainable parameter in its dtype; 8-bit AdamW one byte each; SGD none."""
    per = OPTIMIZER_STATE_BYTES.get(s.optimizer_name)
    if per is None:
        per = 2 * plan.bytes("trainable")
    return int(trainable_parameters(arch, s) * per)


def rows_per_batch(s: Settings) -> int:
    """Sequences in one micro-batch: preference tasks run chosen and rejected together."""
    return s.batch_size * (2 if s.task_spec.paired else 1)


def tokens_per_batch(s: Settings) -> int:
    """Tokens in one micro-batch at the worst case; prompt tuning puts its virtual tokens in front of
    every sequence (they go through every layer and the output head too)."""
    extra = s.num_virtual_tokens if s.spec.adapter == "prompt_tuning" else 0
    return rows_per_batch(s) * (s.max_length + extra)


def layer_activation_bytes_per_token(arch: Architecture, s: Settings, dtype_bytes: int,
                                     device: str = "cuda") -> float:
    """Bytes one decoder layer keeps for backward, per token, without gradient checkpointing.

    Counted from what autograd saves in the transformers Llama-family layer:
    - each RMSNorm saves its input upcast to fp32 (and, when its weight trains, its output);
    - a frozen linear saves nothing; a trained one saves its input (shared by q/k/v and gate/up);
      a LoRA branch with dropout saves the dropped input and its mask per module (a bool mask on
      CUDA; on the CPU the mask has the input's dtype);
    - SDPA (flash / memory-efficient kernels, no length² term) saves q, k, v and its output;
      with a padding mask transformers repeats GQA keys/values to all heads first;
    - the gated MLP saves gate, up and act(gate) (the input of down_proj).
    """
    d = dtype_bytes
    h, q, kv, inter = arch.hidden_size, arch.q_dim, arch.kv_dim, arch.intermediate_size
    if arch.num_experts:  # active experts only (MoE estimates are rough)
        inter = arch.expert_intermediate_size * max(arch.experts_per_token, 1)
    kv_saved = q if s.padded else kv
    total = 0.0
    # RMSNorm saves its input upcast to fp32; LayerNorm (GPT-NeoX, Phi) its input as it is
    total += arch.norms_per_layer * (d if arch.layer_norm else 4) * h
    if arch.qk_norm:
        total += 4 * (q + kv)
    total += d * (q + 2 * kv_saved + q)  # SDPA: q, k, v, output
    total += d * mlp_saved_per_token(arch, inter)
    if s.is_full:
        if not arch.layer_norm:  # RMSNorm's weight gradient needs its normalised input
            total += arch.norms_per_layer * d * h
        # inputs of the trained linears: attention input (shared by q/k/v), attention output, MLP input
        # (shared by gate/up; the same tensor as the attention input where one norm feeds both), down input
        mlp_input = 0 if arch.norms_per_layer == 1 else h
        total += d * (h + q + mlp_input + inter)
    elif s.spec.lora_like:
        targets = target_layers(arch, s.target_modules)
        if s.lora_dropout > 0:
            mask = 1 if device == "cuda" else d
            total += sum((d + mask) * fan_in for fan_in, _ in targets.values())
        else:  # the same input tensor is saved by every adapter reading it: count distinct inputs
            total += d * sum(set(fan_in for fan_in, _ in targets.values()))
        total += sum(d * s.lora_rank for _ in targets)  # A's output, saved as B's input
        if s.spec.adapter == "dora":  # peft's DoRA scales the base and the LoRA outputs by the trained
            # magnitude, so autograd keeps both outputs of every adapted module
            total += 2 * d * sum(fan_out for _, fan_out in targets.values())
    return total


#: intermediate-sized tensors an activation function keeps for its backward pass: torch's native
#: kernels keep their input; transformers' ``gelu_new`` (Phi) is written out in Python (x, tanh, 1 + tanh)
ACTIVATION_SAVES = {"gelu_new": 3, "gelu_fast": 3, "quick_gelu": 2}


def mlp_saved_per_token(arch: Architecture, inter: int) -> int:
    """Values per token the MLP keeps for backward with frozen weights: gated (Llama, Gemma) the gate
    (for the activation), act(gate) and up (for their product); plain (GPT-NeoX, Phi) what the
    activation keeps of the up projection's output."""
    act = ACTIVATION_SAVES.get(arch.hidden_act, 1)
    return (act + 2) * inter if arch.gated_mlp else act * inter


def activations_bytes(arch: Architecture, s: Settings, dtype_bytes: int, device: str = "cuda") -> int:
    """All layers' saved activations for one micro-batch, or with checkpointing: each layer's input
    plus one layer recomputed during backward."""
    tokens = tokens_per_batch(s)
    per_layer = layer_activation_bytes_per_token(arch, s, dtype_bytes, device)
    final_norm = 4 * arch.hidden_size
    if s.gradient_checkpointing:
        per_token = arch.num_layers * dtype_bytes * arch.hidden_size + per_layer + final_norm
    else:
        per_token = arch.num_layers * per_layer + final_norm
    prefix = 0
    if s.spec.adapter == "prefix_tuning":  # every layer's keys and values are longer by the prefix
        kv_saved = arch.q_dim if s.padded else arch.kv_dim
        layers = 1 if s.gradient_checkpointing else arch.num_layers
        prefix = rows_per_batch(s) * s.num_virtual_tokens * 2 * kv_saved * dtype_bytes * layers
    return int(tokens * per_token + prefix)


def logits_bytes(arch: Architecture, s: Settings, dtype_bytes: int, device: str) -> int:
    """TRL's tiled log-prob head: one [≤4096 tokens × ≤32768 vocab] tile in the compute dtype (the
    Triton kernel folds it in place on CUDA; the torch fallback on the CPU holds about eight fp32
    tile-sized temporaries at its backward peak) and the fp32 gradient of the hidden states. The
    output layer's gradient, which full training accumulates over the tiles, is the tensor that
    becomes the weight's ``.grad``: it is counted once, as ``gradients`` (``estimate``)."""
    tokens = tokens_per_batch(s)
    tile = min(tokens, TRL_TOKEN_TILE) * min(arch.vocab_size, TRL_VOCAB_TILE)
    total = tile * dtype_bytes if device == "cuda" else tile * 4 * 8
    total += tokens * arch.hidden_size * 4  # fp32 grad_hidden accumulator
    total += tokens * 4 * 4  # per-token statistics (log-sum-exp, entropy, …)
    return int(total)


def autocast_copies_bytes(arch: Architecture, s: Settings, plan: PrecisionPlan) -> int:
    """Full fine-tuning with fp32 weights and 16-bit compute: the compute-dtype copies of the linear
    weights that autocast makes in the forward pass and autograd saves for backward (0 when the
    compute dtype is the weights' own, as on the CPU)."""
    if not s.is_full or plan.compute == plan.weights:
        return 0
    linear = arch.quantizable_parameters() + arch.vocab_size * arch.hidden_size  # + the output head (tied or not)
    return linear * plan.bytes("compute")


def reference_bytes(arch: Architecture, s: Settings, plan: PrecisionPlan) -> int:
    """DPO/KTO: with adapters the reference is the same model with the adapter off (no extra weights, its
    no-grad pass frees as it goes); full training keeps a frozen copy in the plan's reference dtype."""
    if not s.task_spec.needs_reference or not s.is_full:
        return 0
    return arch.parameters() * plan.bytes("reference")


def optimizer_step_bytes(arch: Architecture, s: Settings, plan: PrecisionPlan, device: str) -> int:
    """Temporaries of the optimizer step: torch's foreach AdamW on CUDA allocates about one copy of the
    trainable parameters; the per-tensor loop on the CPU about two copies of the largest tensor."""
    if s.optimizer_name == "sgd":
        return 0
    pb = plan.bytes("trainable")
    if device == "cuda" and s.optimizer_name.startswith("adamw_torch"):
        return trainable_parameters(arch, s) * pb
    if s.is_full:
        return 2 * arch.vocab_size * arch.hidden_size * pb
    if not s.spec.lora_like:  # prompt/prefix tuning: one trained tensor
        return 2 * trainable_parameters(arch, s) * pb
    biggest = max((r for r in target_layers(arch, s.target_modules).values()), key=lambda d: d[0] + d[1])
    return 2 * s.lora_rank * max(biggest) * pb


def estimate(arch: Architecture, s: Settings, *, device: str = "cuda", bf16_supported: bool = True,
             available_bytes: int | None = None) -> MemoryEstimate:
    """The peak of a run with settings ``s`` on ``device``; the verdict against ``available_bytes``."""
    plan = s.plan(device, bf16_supported)
    dtype = plan.compute
    d = BYTES[dtype]
    weights = weights_bytes(arch, s, plan)
    grads = gradients_bytes(arch, s, plan)
    optim = optimizer_bytes(arch, s, plan)
    acts = activations_bytes(arch, s, d, device)
    logits = logits_bytes(arch, s, d, device)
    ref = reference_bytes(arch, s, plan)
    step_tmp = optimizer_step_bytes(arch, s, plan, device)
    # Two moments can be the peak: early in backward (all activations alive, few gradients yet) or
    # at the optimizer step (all gradients, no activations). Adapter gradients are tiny, so for
    # LoRA both are counted at once; for full training the larger of the two moments is taken.
    if s.is_full:
        head_grad = arch.vocab_size * arch.hidden_size * plan.bytes("trainable")
        # fp32 master weights under 16-bit autocast: every matmul casts its weight to the compute
        # dtype and autograd keeps that copy for the backward pass (until its layer is done)
        casts = autocast_copies_bytes(arch, s, plan)
        backward = acts + logits + head_grad + casts
        step = grads + step_tmp
        if backward >= step:
            dynamic = {"gradients": head_grad, "activations": acts, "logits": logits, "autocast_copies": casts}
        else:
            dynamic = {"gradients": grads, "activations": 0, "logits": 0, "optimizer_step": step_tmp}
    else:
        dynamic = {"gradients": grads, "activations": acts, "logits": logits, "optimizer_step": 0}
    breakdown = {"weights": weights, "optimizer": optim, **dynamic, "reference": ref}
    model_bytes = sum(breakdown.values())
    if device == "cuda":
        breakdown["allocator"] = int(model_bytes * CUDA_ALLOCATOR_SHARE)
        breakdown["runtime"] = CUDA_CONTEXT_BYTES
    else:
        breakdown["allocator"] = int((model_bytes - weights - optim) * CPU_ALLOCATOR_SHARE)
        breakdown["runtime"] = CPU_RUNTIME_BYTES
    breakdown = {k: int(v) for k, v in breakdown.items()}
    total = sum(breakdown.values())
    verdict, fits = judge(total, available_bytes)
    notes = []
    if plan.quantized_bits and device != "cuda":
        notes.append("QLoRA and 8-bit loading need a CUDA GPU with bitsandbytes.")
    if "8bit" in s.optimizer_name and device != "cuda":
        notes.append("8-bit optimizers need a CUDA GPU with bitsandbytes.")
    if not arch.exact:
        notes.append(f"'{arch.model_type}' layers are not modelled in detail; the estimate is rough.")
    return MemoryEstimate(total_bytes=total, breakdown=breakdown, device=device, available_bytes=available_bytes,
                          verdict=verdict, fits=fits, dtype=dtype, trainable_parameters=trainable_parameters(arch, s),
                          parameters=arch.parameters(), tokens_per_batch=tokens_per_batch(s), notes=notes)


def judge(total: int, available: int | None) -> tuple[str, bool | None]:
    if available is None:
        return "unknown", None
    if total <= TIGHT_SHARE * available:
        return "fits", True
    if total <= available:
        return "tight", True
    return "does_not_fit", False


# -- against a config and a machine ---------------------------------------------------------------------

def estimate_for_config(config: RunConfig, hardware: Hardware | None = None, device: str | None = None,
                        *, available_bytes: int | None = None, suggest: bool = True,
                        lengths: Sequence[int] | LengthSample | None = None) -> MemoryEstimate:
    """Estimate the run ``config`` describes on ``device`` (default: the machine's best device).

    ``hardware`` defaults to ``hardware.detect()``; ``available_bytes`` overrides what the device
    has (the CLI's ``--gpu-memory``). ``lengths`` are the data's token lengths (``lengths.
    sample_lengths``, or the engine's tokenised rows): batches are then as long as the longest row
    (``lengths.padded_length``), not ``max_length``. When the run is tight or does not fit,
    ``suggestions`` holds the nearest settings that fit, each with its own estimate.
    """
    from desktop_ft.core import models

    arch = models.architecture_of(config.model.name)
    if hardware is None:
        from desktop_ft.core.hardware import detect

        hardware = detect()
    device = (device or hardware.best_device).lower()
    if device not in ("cuda", "cpu"):
        from desktop_ft.core.errors import ConfigError

        raise ConfigError(f"unknown device '{device}'", field="device", hint="Use 'cuda' or 'cpu'.")
    if available_bytes is None:
        available_bytes = available_memory(hardware, device)
    bf16 = hardware.bf16 if hardware.gpus else True
    s = settings_from_config(config)
    if isinstance(lengths, LengthSample):  # the data's kind settles 'task: auto' (preference → DPO)
        s = replace(s, task=resolve_task(config.method.task, lengths.kind))
    if lengths is not None:
        s = replace(s, max_length=padded_length(lengths, s.max_length, packing=s.packing))
    result = estimate(arch, s, device=device, bf16_supported=bf16, available_bytes=available_bytes)
    if isinstance(lengths, LengthSample) and not s.packing:
        sample = f"{lengths.counted} of {lengths.rows}" if lengths.counted < lengths.rows else f"all {lengths.rows}"
        result.notes.insert(0, f"Batches are padded to their longest row: {s.max_length} tokens (the longest of "
                               f"{sample} rows of {Path(lengths.path).name}, max_length "
                               f"{config.training.max_length}).")
    if device == "cuda":
        result = _per_gpu(result, arch, config)
    if suggest and available_bytes is not None and result.verdict in ("tight", "does_not_fit"):
        can_quantize = device == "cuda" and (hardware.bitsandbytes or not hardware.gpus)
        result.suggestions = suggestions(arch, s, device=device, bf16_supported=bf16,
                                         available_bytes=available_bytes, can_quantize=can_quantize)
        shard = distributed.shard_suggestion(config, len(hardware.gpus)) if device == "cuda" else None
        if shard is not None:
            title, overrides = shard
            trial = _per_gpu(estimate(arch, s, device=device, bf16_supported=bf16, available_bytes=available_bytes),
                             arch, config.replace(overrides))
            if trial.verdict == "fits":
                result.suggestions.insert(0, Suggestion(title, overrides, trial.total_bytes))
    return result


def _per_gpu(result: MemoryEstimate, arch: Architecture, config: RunConfig) -> MemoryEstimate:
    """One GPU's share under the config's strategy and process count (``distributed.shard_breakdown``)."""
    d = config.distributed
    gpus = distributed.world_size(config)
    if gpus <= 1 and not distributed.STRATEGIES[d.strategy].offload:
        return result
    breakdown = distributed.shard_breakdown(result.breakdown, d.strategy, gpus, num_layers=arch.num_layers)
    result.breakdown = breakdown
    result.total_bytes = sum(breakdown.values())
    result.verdict, result.fits = judge(result.total_bytes, result.available_bytes)
    result.notes.append(f"Per GPU, {distributed.STRATEGIES[d.strategy].title} over {gpus} GPU(s): "
                        f"{distributed.STRATEGIES[d.strategy].sentence}.")
    return result


def available_memory(hardware: Hardware, device: str) -> int | None:
    """What a run may use: the GPU's free memory (the first GPU, as the engine uses), or available RAM."""
    if device == "cuda":
        if not hardware.gpus:
            return None
        gpu = hardware.gpus[0]
        return int(gpu.free_bytes or gpu.total_bytes)
    return int(hardware.ram_available_bytes) or None


#: (title, settings change, config overrides) builders, nearest (least change to the result) first
def _candidates(s: Settings, device: str, can_quantize: bool) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if not s.gradient_checkpointing:
        out.append(("Turn on gradient checkpointing", {"training.gradient_checkpointing": True}))
    b, acc = s.batch_size, s.gradient_accumulation_steps
    while b > 1:
        b = max(1, b // 2)
        acc = acc * 2
        out.append((f"Batch size {b} with {acc} accumulation steps (same effective batch)",
                    {"training.batch_size": b, "training.gradient_accumulation_steps": acc}))
    if device == "cuda" and can_quantize and s.optimizer_name in ("adamw_torch", "adamw_torch_fused", "adamw"):
        out.append(("8-bit AdamW optimizer", {"training.optimizer": "paged_adamw_8bit"}))
    if s.is_full:
        out.append(("LoRA instead of full fine-tuning", {"method.method": "lora"}))
    if device == "cuda" and can_quantize and s.spec.quantized_bits != 4:
        out.append(("QLoRA: 4-bit base model", {"method.method": "qlora"}))
    length = s.max_length
    while length > 256:
        length = max(256, length // 2)
        out.append((f"Max length {length}", {"training.max_length": length}))
    return out


_SETTING_OF_KEY = {"training.gradient_checkpointing": "gradient_checkpointing", "training.batch_size": "batch_size",
                   "training.gradient_accumulation_steps": "gradient_accumulation_steps",
                   "training.optimizer": "optimizer", "method.method": "method", "training.max_length": "max_length"}


def _apply(s: Settings, overrides: dict[str, Any]) -> Settings:
    return replace(s, **{_SETTING_OF_KEY[k]: v for k, v in overrides.items()})


def suggestions(arch: Architecture, s: Settings, *, device: str, bf16_supported: bool, available_bytes: int,
                can_quantize: bool = True, limit: int = 4) -> list[Suggestion]:
    """Nearby settings that fit: single changes first, then the same changes stacked in order.

    Changes that keep the result the same (checkpointing, smaller batch with more accumulation,
    8-bit AdamW) come before ones that change it (LoRA for full, 4-bit base, shorter sequences).
    """
    found: list[Suggestion] = []
    seen: set[tuple] = set()

    def consider(title: str, overrides: dict[str, Any]) -> bool:
        key = tuple(sorted(overrides.items()))
        if key in seen:
            return False
        seen.add(key)
        trial = estimate(arch, _apply(s, overrides), device=device, bf16_supported=bf16_supported,
                         available_bytes=available_bytes)
        if trial.verdict == "fits":
            found.append(Suggestion(title, dict(overrides), trial.total_bytes))
            return True
        return False

    candidates = _candidates(s, device, can_quantize)
    fitting_kinds: set[str] = set()
    for title, overrides in candidates:  # one change at a time: the smallest step of each kind that fits
        kind = next(iter(overrides))
        if kind not in fitting_kinds and consider(title, overrides):
            fitting_kinds.add(kind)
    if not found:
        # nothing fits with one change: stack changes until it fits, in two orders (keep the
        # method and change the loop first; or change the method first, then the loop)
        method_first = sorted(candidates, key=lambda c: next(iter(c[1])) != "method.method")
        for order in (candidates, method_first):
            stacked: dict[str, Any] = {}
            titles: dict[str, str] = {}
            for title, overrides in order:
                stacked.update(overrides)
                titles[next(iter(overrides))] = title
                if consider(" + ".join(titles.values()), dict(stacked)):
                    break
    return found[:limit]


# -- time -----------------------------------------------------------------------------------------------

#: dense bf16 tensor throughput (TFLOP/s) of common GPUs, by a word in the device name
GPU_TFLOPS = {"H200": 989, "H100": 989, "H800": 989, "A100": 312, "A800": 312, "L40S": 362, "L40": 181, "L4": 121,
              "A10G": 125, "A10": 125, "A6000": 155, "4090": 165, "4080": 97, "4070": 58, "3090": 71, "3080": 59,
              "3060": 25, "T4": 65, "V100": 125}
GPU_UTILISATION = 0.35  # share of the peak a fine-tuning step typically reaches (MFU)
CPU_GFLOPS_PER_CORE = 12.0  # fp32 training throughput per physical core, order of magnitude


@dataclass(frozen=True)
class TimeEstimate:
    """Seconds per optimizer step and for the whole run; ``source`` says how it was obtained."""

    seconds_per_step: float
    total_seconds: float
    steps: int
    source: str  # 'flops' (before training) or 'measured' (from the run's first steps)


def flops_per_token(arch: Architecture, s: Settings) -> float:
    """Forward 2·P, backward 4·P for full training (2·P with a frozen base: input gradients only),
    one more forward with gradient checkpointing, plus attention over the sequence."""
    p = arch.parameters() - arch.embedding_parameters()
    p += arch.vocab_size * arch.hidden_size  # the output projection is a real matmul even when tied
    attention = 2 * arch.num_layers * s.max_length * arch.q_dim  # QKᵀ and AV, causal half, forward
    forward = 2 * p + attention
    backward = 2 * forward if s.is_full else forward + 2 * trainable_parameters(arch, s)
    return forward + backward + (forward if s.gradient_checkpointing else 0)


def estimate_time(arch: Architecture, s: Settings, *, steps: int, device: str = "cuda",
                  hardware: Hardware | None = None) -> TimeEstimate:
    """A first guess from FLOPs and the device's throughput (replace it with ``calibrate_time``)."""
    tokens = tokens_per_batch(s) * s.gradient_accumulation_steps
    flops = flops_per_token(arch, s) * tokens
    if device == "cuda":
        name = hardware.gpus[0].name if hardware and hardware.gpus else ""
        peak = next((v for k, v in GPU_TFLOPS.items() if k.lower() in name.lower()), 100) * 1e12
        rate = peak * GPU_UTILISATION
    else:
        cores = hardware.cpu_cores if hardware else 4
        rate = cores * CPU_GFLOPS_PER_CORE * 1e9
    per_step = flops / rate
    return TimeEstimate(per_step, per_step * max(steps, 0), max(steps, 0), "flops")


def calibrate_time(metrics: list[dict[str, Any]] | str | Path, *, total_steps: int,
                   skip_first: int = 1) -> TimeEstimate | None:
    """Seconds per step from a run's ``metrics.jsonl`` train records (their ``time`` and ``step``).

    The first ``skip_first`` intervals are skipped (warm-up: kernels, allocator, data loading).
    Returns None until there are at least two usable intervals.
    """
    if not isinstance(metrics, list):
        from desktop_ft.core.runs import iter_jsonl

        metrics = list(iter_jsonl(Path(metrics)))
    points = [(int(r["step"]), float(r["time"])) for r in metrics
              if r.get("event") == "StepLogged" and "time" in r and "step" in r]
    points.sort()
    rates = []
    for (s0, t0), (s1, t1) in zip(points, points[1:]):
        if s1 > s0 and t1 >= t0:
            rates.append((t1 - t0) / (s1 - s0))
    rates = rates[skip_first:]
    if len(rates) < 2:
        return None
    per_step = statistics.median(rates)
    done = points[-1][0]
    remaining = max(total_steps - done, 0)
    return TimeEstimate(per_step, per_step * remaining, total_steps, "measured")


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return "?"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


__all__ = ["MemoryEstimate", "Suggestion", "Settings", "TimeEstimate", "estimate", "estimate_for_config",
           "settings_from_config", "suggestions", "estimate_time", "calibrate_time", "human_bytes"]
