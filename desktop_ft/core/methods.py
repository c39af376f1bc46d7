"""What each training method and task means: the one registry the engine, estimate, chat, CLI and window ask.

No other module has an ``if method == ...`` of its own; they ask this one. Adding a method or a task
means adding one entry below (and, if it has settings of its own, a settings dataclass in
``desktop_ft.core.config`` held at ``method.<section>``, so the YAML file and ``--set`` know it).

- ``METHODS``: name → ``MethodSpec``: title, one plain sentence, which adapter it trains (or none:
  the whole model), quantised bits of the frozen base, needs CUDA?, what ``optimizer: auto``
  means, its recommended learning rate, and which config keys apply to it.
- ``TASKS``: name → ``TaskSpec``: which dataset kinds it takes, whether it keeps a reference
  model, whether chosen and rejected answers go through the model together, its keys.
- ``method_spec(name)`` / ``task_spec(name)``: the spec, or a ``ConfigError`` naming the closest
  valid name; ``resolve_task`` and ``resolve_optimizer`` turn 'auto' into what will run.
- ``PRESETS``: title-cased starting points that set the hyperparameters (``core.presets`` applies them).
- ``warnings_for(config, hardware)``: known-bad combinations, as sentences.

How each method is built (peft and TRL objects) is ``desktop_ft.core.trainers``; which number
formats it uses is ``desktop_ft.core.precision``. Nothing here imports torch or the config module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from desktop_ft.core.errors import ConfigError, did_you_mean
from desktop_ft.core.hardware import bitsandbytes_installed

if TYPE_CHECKING:  # pragma: no cover
    from desktop_ft.core.config import RunConfig
    from desktop_ft.core.hardware import Hardware

LORA_KEYS = ("method.lora_rank", "method.lora_alpha", "method.lora_dropout", "method.target_modules")


@dataclass(frozen=True)
class MethodSpec:
    """How the weights are trained."""

    name: str
    title: str
    sentence: str
    needs_cuda: bool = False
    section: str | None = None  # ``method.<section>`` holds its own settings (a dataclass in config)
    keys: tuple[str, ...] = ()  # the config keys that apply to this method (the wizard shows them)
    learning_rate: float = 2e-4  # recommended starting learning rate
    adapter: str | None = "lora"  # peft adapter kind: 'lora', 'dora', 'prompt_tuning', 'prefix_tuning'; None: full
    quantized_bits: int | None = None  # 4 or 8: the frozen base is loaded through bitsandbytes
    optimizer: str = "adamw_torch"  # what training.optimizer 'auto' means for this method

    @property
    def trains_adapter(self) -> bool:
        """True when only an adapter is trained and saved; False when every weight is."""
        return self.adapter is not None

    @property
    def lora_like(self) -> bool:
        """LoRA-style low-rank add-ons (LoRA, QLoRA, 8-bit LoRA, DoRA): the ``method.lora_*`` keys apply."""
        return self.adapter in ("lora", "dora")


@dataclass(frozen=True)
class TaskSpec:
    """What the model is taught, and from which kind of data."""

    name: str
    title: str
    sentence: str
    data_kinds: tuple[str, ...]
    section: str | None = None
    keys: tuple[str, ...] = ()
    learning_rate_factor: float = 1.0  # multiplies the method's learning rate
    needs_reference: bool = False  # compares against a reference model (frozen copy for full fine-tuning)
    paired: bool = False  # chosen and rejected answers run through the model in one batch (twice the rows)
    min_batch_size: int = 1

    @property
    def learns_preferences(self) -> bool:
        return self.data_kinds == ("preference",)


@dataclass(frozen=True)
class Preset:
    """A starting point: ``overrides`` maps dotted config keys to values."""

    title: str
    description: str
    overrides: dict[str, Any]


# -- the registries ------------------------------------------------------------------------------------

METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in [
    MethodSpec("lora", "LoRA",
               "Trains small add-on matrices and keeps the model itself frozen: fast, light, and the "
               "result is a small file.",
               keys=LORA_KEYS, learning_rate=2e-4, adapter="lora"),
    MethodSpec("qlora", "QLoRA",
               "LoRA on a copy of the model squeezed into 4 bits: about a third of the memory, a little "
               "slower; needs an NVIDIA GPU.",
               needs_cuda=True, section="qlora",
               keys=LORA_KEYS + ("method.qlora.quant_type", "method.qlora.double_quant",
                                 "method.qlora.compute_dtype"),
               learning_rate=2e-4, quantized_bits=4, optimizer="paged_adamw_8bit", adapter="lora"),
    MethodSpec("lora_8bit", "8-bit LoRA",
               "LoRA on a copy of the model stored in 8 bits: half the memory of plain LoRA; needs an "
               "NVIDIA GPU.",
               needs_cuda=True, keys=LORA_KEYS, learning_rate=2e-4, quantized_bits=8, adapter="lora"),
    MethodSpec("dora", "DoRA",
               "LoRA that learns the size and the direction of each change separately: often closer to full "
               "fine-tuning, somewhat slower.",
               keys=LORA_KEYS, learning_rate=2e-4, adapter="dora"),
    MethodSpec("full", "Full fine-tuning",
               "Changes every weight of the model: the most capable, but needs about four times the model's "
               "size in memory and saves a whole new model.",
               learning_rate=2e-5, adapter=None),
    MethodSpec("prompt_tuning", "Prompt tuning",
               "Learns a few 'virtual words' put in front of every input; the model is untouched. Tiny, "
               "but learns less than LoRA.",
               section="prompt_tuning",
               keys=("method.prompt_tuning.num_virtual_tokens", "method.prompt_tuning.init_text"),
               learning_rate=3e-2, adapter="prompt_tuning"),
    MethodSpec("prefix_tuning", "Prefix tuning",
               "Learns a few extra key/value vectors in every layer; the model is untouched. Small, and "
               "learns more than prompt tuning.",
               section="prefix_tuning",
               keys=("method.prefix_tuning.num_virtual_tokens",), learning_rate=1e-2, adapter="prefix_tuning"),
]}

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in [
    TaskSpec("sft", "Supervised fine-tuning",
             "Teaches the model to give the answers in your data.",
             data_kinds=("conversation", "prompt_completion", "text", "preference"),
             keys=("method.assistant_only_loss",)),
    TaskSpec("dpo", "DPO (preferences)",
             "Teaches the model to prefer the 'chosen' answer over the 'rejected' one, staying close to "
             "where it started.",
             data_kinds=("preference",), section="dpo",
             keys=("method.dpo.beta", "method.dpo.loss_type"), learning_rate_factor=0.25, needs_reference=True,
             paired=True),
    TaskSpec("orpo", "ORPO (preferences, no reference)",
             "Learns the chosen answers and the preference in one pass, without a reference model: less "
             "memory than DPO.",
             data_kinds=("preference",), section="orpo", keys=("method.orpo.beta",),
             learning_rate_factor=0.25, paired=True),
    TaskSpec("kto", "KTO (good/bad answers)",
             "Learns from answers marked good or bad one at a time; preference pairs are split into one "
             "good and one bad example.",
             data_kinds=("preference",), section="kto",
             keys=("method.kto.beta", "method.kto.desirable_weight", "method.kto.undesirable_weight"),
             learning_rate_factor=0.25, needs_reference=True, min_batch_size=2),
    TaskSpec("pretrain", "Continued pre-training",
             "Keeps training the model on raw text so it picks up your domain's words and facts; it does not "
             "teach it to answer.",
             data_kinds=("text",)),
]}

#: ``method.task: auto`` picks the task from the dataset's kind
TASK_FOR_KIND = {"preference": "dpo", "text": "pretrain", "conversation": "sft", "prompt_completion": "sft"}


def method_spec(name: str) -> MethodSpec:
    """The method called ``name``; an unknown name is a ``ConfigError`` naming the closest one."""
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method '{name}'", field="method.method",
                          hint=did_you_mean(name, list(METHODS), what="Choose one of")) from None


def task_spec(name: str) -> TaskSpec:
    """The task called ``name`` ('auto' must be resolved first, see ``resolve_task``)."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task '{name}'", field="method.task",
                          hint=did_you_mean(name, ["auto", *TASKS], what="Choose one of")) from None


def resolve_task(task: str, data_kind: str | None) -> str:
    """``method.task`` with 'auto' replaced by the task for the dataset's kind (unknown names raise)."""
    if task != "auto":
        return task_spec(task).name
    return TASK_FOR_KIND.get(data_kind or "conversation", "sft")


def resolve_optimizer(config: RunConfig) -> str:
    """``training.optimizer`` with 'auto' replaced by the method's choice (paged 8-bit AdamW for QLoRA)."""
    return optimizer_for(config.method.method, config.training.optimizer)


def optimizer_for(method: str, optimizer: str) -> str:
    """``optimizer`` for ``method``: 'auto' is the method's own choice."""
    return method_spec(method).optimizer if optimizer == "auto" else optimizer


def check_task_data(task: str, data_kind: str, path: str | None = None) -> None:
    """Raise a ``ConfigError`` when the task cannot learn from this kind of data."""
    spec = task_spec(task)
    if data_kind in spec.data_kinds:
        return
    fits = [t for t, s in TASKS.items() if data_kind in s.data_kinds]
    needs = " or ".join(spec.data_kinds)
    raise ConfigError(f"task '{task}' needs {needs} data, but this dataset holds {data_kind} rows",
                      path=path, field="method.task",
                      hint=f"Use --task {fits[0]} for this data, or give a {needs} dataset." if fits
                      else f"Give a {needs} dataset.")


def check_task_settings(config: RunConfig, task: str) -> None:
    """Raise a ``ConfigError`` for settings the task cannot train with (KTO needs 2+ rows a batch)."""
    spec = task_spec(task)
    if config.training.batch_size < spec.min_batch_size:
        raise ConfigError(f"{spec.title.split(' ')[0]} needs at least {spec.min_batch_size} examples per batch "
                          "(it estimates its KL term from the other examples in the batch); "
                          f"'training.batch_size' is {config.training.batch_size}",
                          field="training.batch_size",
                          hint=f"Set training.batch_size to {spec.min_batch_size} or more (lower "
                          "gradient_accumulation_steps to match).")


# -- presets -------------------------------------------------------------------------------------------

PRESETS: dict[str, Preset] = {
    "quick_test": Preset(
        "Quick test",
        "A couple of minutes on a laptop CPU with the built-in model: checks that everything works and that "
        "the loss goes down. Not for a model you keep.",
        {"training.max_steps": 30, "training.batch_size": 4, "training.gradient_accumulation_steps": 1,
         "training.max_length": 256, "training.warmup_ratio": 0.0, "training.lr_scheduler": "constant",
         "training.eval_steps": 10, "training.save_steps": 10, "training.save_total_limit": 2,
         "training.gradient_checkpointing": False, "method.lora_rank": 8, "method.lora_alpha": 16,
         "method.lora_dropout": 0.0, "data.validation_fraction": 0.1},
    ),
    "balanced": Preset(
        "Balanced",
        "One pass over your data with settings that suit most datasets of a few hundred to a few thousand "
        "examples.",
        {"training.max_steps": -1, "training.epochs": 1.0, "training.batch_size": 4,
         "training.gradient_accumulation_steps": 4, "training.max_length": 1024, "training.warmup_ratio": 0.03,
         "training.lr_scheduler": "cosine", "training.eval_steps": 50, "training.save_steps": 50,
         "training.save_total_limit": 3, "method.lora_rank": 16, "method.lora_alpha": 32,
         "method.lora_dropout": 0.05, "method.target_modules": "all-linear", "data.validation_fraction": 0.05},
    ),
    "best_quality": Preset(
        "Best quality",
        "Three passes, a larger adapter and longer examples: hours rather than minutes, for a model you "
        "mean to use.",
        {"training.max_steps": -1, "training.epochs": 3.0, "training.batch_size": 8,
         "training.gradient_accumulation_steps": 4, "training.max_length": 2048, "training.warmup_ratio": 0.05,
         "training.lr_scheduler": "cosine", "training.weight_decay": 0.01, "training.eval_steps": 100,
         "training.save_steps": 100, "training.save_total_limit": 3, "method.lora_rank": 64,
         "method.lora_alpha": 128, "method.lora_dropout": 0.05, "method.target_modules": "all-linear",
         "data.validation_fraction": 0.05},
    ),
    "low_memory": Preset(
        "Low memory",
        "One example at a time, gradients added up over 16, activations recomputed and a small adapter: "
        "fits where the others do not (pick QLoRA too on an NVIDIA GPU).",
        {"training.max_steps": -1, "training.epochs": 1.0, "training.batch_size": 1,
         "training.gradient_accumulation_steps": 16, "training.max_length": 512,
         "training.gradient_checkpointing": True, "training.warmup_ratio": 0.03, "training.eval_steps": 100,
         "training.save_steps": 100, "training.save_total_limit": 2, "method.lora_rank": 8,
         "method.lora_alpha": 16, "method.lora_dropout": 0.05, "data.validation_fraction": 0.05},
    ),
}


def preset_key(name: str) -> str:
    """'Quick test', 'quick-test' and 'quick_test' all name the same preset; unknown names raise."""
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    if key not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'", field="preset",
                          hint="Choose one of: " + ", ".join(f"{k} ({p.title})" for k, p in PRESETS.items()) + ".")
    return key


def recommended_learning_rate(method: str, task: str) -> float:
    """The method's starting learning rate, scaled down for preference tasks ('auto': the SFT rate)."""
    factor = task_spec(task).learning_rate_factor if task != "auto" else 1.0
    return method_spec(method).learning_rate * factor


def settings_that_apply(method: str, task: str, data_kind: str | None = None) -> set[str]:
    """The method-owned config keys that apply to ``method`` with ``task``: the union of their ``keys``.

    Full fine-tuning and prompt tuning get no LoRA settings; DPO gets ``method.dpo.*``. Keys no
    method or task owns (``method.rope_scaling``, every ``training.*`` key) always apply (``applies``).
    """
    keys = set(method_spec(method).keys)
    keys.update(task_spec(resolve_task(task, data_kind)).keys)
    return keys


def applies(key: str, method: str, task: str, data_kind: str | None = None) -> bool:
    """Whether the config key ``key`` means anything for this method and task (what the Method page shows)."""
    owned = {k for m in METHODS.values() for k in m.keys} | {k for t in TASKS.values() for k in t.keys}
    return key not in owned or key in settings_that_apply(method, task, data_kind)


# -- known-bad combinations ----------------------------------------------------------------------------

def warnings_for(config: RunConfig, hardware: Hardware | None = None) -> list[str]:
    """Plain sentences about combinations that fail or disappoint; empty when all looks fine.

    ``hardware`` is what ``desktop_ft.core.hardware.detect()`` found; without it, nothing is said
    about the GPU (bitsandbytes is still looked for).
    """
    out: list[str] = []
    m, t = config.method, config.training
    spec = method_spec(m.method)
    task = TASKS.get(m.task)  # None for 'auto'
    cuda = bool(hardware.gpus) if hardware is not None else None
    vram = hardware.gpus[0].total_bytes if hardware is not None and hardware.gpus else None
    bnb = hardware.bitsandbytes if hardware is not None else bitsandbytes_installed()

    if spec.needs_cuda and cuda is False:
        out.append(f"{spec.title} needs an NVIDIA GPU with CUDA, and this machine has none: use LoRA instead.")
    if spec.quantized_bits and not bnb:
        out.append(f"{spec.title} needs the bitsandbytes package (pip install bitsandbytes), which is not installed.")
    if not spec.trains_adapter:
        if t.learning_rate > 1e-4:
            out.append(f"Full fine-tuning with learning rate {t.learning_rate:g} usually wrecks the model; "
                       "1e-5 to 5e-5 is safe.")
        params = _model_params(config.model.name)
        if params and vram and params * 16 > vram:  # fp32 weights + grads + Adam states ≈ 16 bytes/parameter
            out.append(f"Full fine-tuning a {params / 1e9:.1f}B model needs about {params * 16 / 2**30:.0f} GiB; "
                       f"this GPU has {vram / 2**30:.0f} GiB. Use LoRA or QLoRA.")
        elif params and params > 3e9 and not vram:
            out.append(f"Full fine-tuning a {params / 1e9:.1f}B model needs about {params * 16 / 2**30:.0f} GiB "
                       "of memory; LoRA or QLoRA needs a fraction of that.")
    if spec.lora_like and t.learning_rate < 1e-5:
        out.append(f"Learning rate {t.learning_rate:g} is very low for {spec.title}; 1e-4 to 3e-4 is typical.")
    if spec.lora_like and m.lora_alpha < m.lora_rank / 4:
        out.append("LoRA alpha is far below the rank, so the add-on barely changes the model; alpha = 2 × rank "
                   "is a good start.")
    if task and task.learns_preferences and t.learning_rate > 1e-4 and not spec.trains_adapter:
        out.append("Preference training with a high learning rate tends to collapse the model; try 5e-7 to 5e-6 "
                   "for full fine-tuning.")
    if task and task.needs_reference and spec.adapter in ("prompt_tuning", "prefix_tuning"):
        out.append(f"{task.title} with {spec.title} learns very little; LoRA is the usual choice.")
    if t.precision == "fp16" and cuda and hardware is not None and hardware.bf16:
        out.append("This GPU supports bf16, which is more stable than fp16; set precision to 'auto'.")
    if t.precision == "bf16" and cuda is False:
        out.append("bf16 on the CPU is many times slower than fp32 on most processors; set precision to 'auto'.")
    if m.rope_scaling != "none" and m.rope_factor <= 1.0:
        out.append("RoPE scaling with factor 1 changes nothing; set method.rope_factor to 2 or more.")
    if t.packing and task and task.learns_preferences:
        out.append("Packing only applies to SFT and pre-training; it is ignored for preference tasks.")
    if t.optimizer in ("adamw_8bit", "paged_adamw_8bit") and not bnb:
        out.append(f"Optimizer '{t.optimizer}' needs bitsandbytes; use 'auto' or 'adamw_torch'.")
    if task and t.batch_size < task.min_batch_size:
        out.append(f"{task.title.split(' ')[0]} needs a batch size of at least {task.min_batch_size}; "
                   "raise training.batch_size.")
    if t.max_steps == -1 and t.epochs > 10:
        out.append(f"{t.epochs:g} epochs will likely memorise the data; 1-3 is typical.")
    return out


def _model_params(name: str) -> float | None:
    """Parameter count guessed from a model name such as 'Qwen2.5-7B-Instruct' (None when unknown)."""
    import re

    match = re.search(r"(\d+(?:\.\d+)?)\s*([bBmM])\b", (name or "").replace("_", "-").replace("-", " "))
    if not match:
        return None
    value = float(match.group(1))
    return value * (1e9 if match.group(2).lower() == "b" else 1e6)
