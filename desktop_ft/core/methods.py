"""Training methods (how the weights change) and tasks (what the model is taught), as a registry.

The engine, the wizard, the CLI and the memory estimate all read these tables; none of them has an
``if method == ...`` of its own. Adding a method or a task means adding one entry below (and, if it
has settings of its own, a small settings dataclass plus the one line in ``MethodConfig`` that
holds it, so the YAML file and ``--set method.<section>.<key>`` know it).

- ``METHODS``: name → ``MethodSpec`` (title, one plain sentence, needs CUDA?, settings dataclass,
  which config keys the wizard shows, recommended learning rate, how to build the peft config and
  the quantisation config).
- ``TASKS``: name → ``TaskSpec`` (which dataset kinds it takes, its settings, how to build its TRL
  trainer from the shared pieces the engine prepares).
- ``PRESETS``: title-cased starting points that set the hyperparameters.
- ``warnings_for(config, hardware)``: known-bad combinations, as sentences.

No torch, transformers, peft or trl at import time: builders import them when called.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from desktop_ft.core.config import RunConfig


def _setting(default: Any, *, help: str, **meta: Any) -> Any:
    """A settings field with its help text (and optional choices / range) as metadata."""
    return field(default=default, metadata={"help": help, **meta})


# -- settings of their own, one dataclass per method or task that has any -------------------------

@dataclass
class QLoraSettings:
    """How QLoRA stores the frozen base model in 4 bits."""

    quant_type: str = _setting("nf4", help="4-bit number format of the frozen weights: 'nf4' (NormalFloat, "
                               "best for trained weights) or 'fp4'.", choices=["nf4", "fp4"], advanced=True)
    double_quant: bool = _setting(True, help="Also compress the quantisation constants (saves about 0.4 bits "
                                  "per weight at no quality cost).", advanced=True)
    compute_dtype: str = _setting("auto", help="Number format for the maths on the 4-bit weights: 'auto' picks "
                                  "bf16 where the GPU supports it, else fp16.", choices=["auto", "bf16", "fp16"],
                                  advanced=True)


@dataclass
class PromptTuningSettings:
    """Prompt tuning learns a few 'virtual words' put in front of every input."""

    num_virtual_tokens: int = _setting(20, help="How many virtual words are learned. More can learn more; "
                                       "8-100 is typical.", min=1, max=512)
    init_text: str = _setting("", help="Start the virtual words from this text (e.g. 'Answer in three steps:'); "
                              "empty starts from random words.", advanced=True)


@dataclass
class PrefixTuningSettings:
    """Prefix tuning learns a few virtual key/value vectors in every layer."""

    num_virtual_tokens: int = _setting(20, help="How many virtual positions are learned in each layer; "
                                       "10-100 is typical.", min=1, max=512)


@dataclass
class DpoSettings:
    """Direct Preference Optimisation: prefer the 'chosen' answer over the 'rejected' one."""

    beta: float = _setting(0.1, help="How far the model may move from where it started: lower moves further "
                           "towards your preferences, higher stays closer to the original. 0.05-0.5 is typical.",
                           min=0.001, max=5.0)
    loss_type: str = _setting("sigmoid", help="The DPO loss: 'sigmoid' (the original, a safe default), 'ipo' "
                              "(less overfitting on small data), 'hinge', 'apo_zero' or 'sppo_hard'.",
                              choices=["sigmoid", "ipo", "hinge", "apo_zero", "sppo_hard", "nca_pair"],
                              advanced=True)


@dataclass
class OrpoSettings:
    """ORPO: learns the chosen answers and the preference in one go, without a reference model."""

    beta: float = _setting(0.1, help="Weight of the preference part against the plain answer-learning part; "
                           "0.05-0.5 is typical.", min=0.001, max=5.0)


@dataclass
class KtoSettings:
    """KTO: learns from answers marked good or bad, one at a time (pairs are split up)."""

    beta: float = _setting(0.1, help="How far the model may move from where it started; 0.05-0.5 is typical.",
                           min=0.001, max=5.0)
    desirable_weight: float = _setting(1.0, help="Weight of the good answers; raise it when you have fewer good "
                                       "than bad ones.", min=0.01, max=10.0, advanced=True)
    undesirable_weight: float = _setting(1.0, help="Weight of the bad answers; raise it when you have fewer bad "
                                         "than good ones.", min=0.01, max=10.0, advanced=True)


# -- the registry types --------------------------------------------------------------------------------

LORA_KEYS = ("method.lora_rank", "method.lora_alpha", "method.lora_dropout", "method.target_modules")


@dataclass(frozen=True)
class MethodSpec:
    """How the weights are trained."""

    name: str
    title: str
    sentence: str
    needs_cuda: bool = False
    settings: type | None = None  # dataclass of its own settings, held at ``method.<section>``
    section: str | None = None
    keys: tuple[str, ...] = ()  # the config keys the wizard shows for this method
    learning_rate: float = 2e-4  # recommended starting learning rate
    trains_adapter: bool = True  # False: the whole model is trained and saved
    quantized_bits: int | None = None  # 4 or 8: the frozen base is loaded through bitsandbytes
    optimizer: str = "adamw_torch"  # what training.optimizer 'auto' means for this method
    build_peft: Callable[[RunConfig, Any], Any] | None = None  # (config, model) → peft config


@dataclass(frozen=True)
class TaskSpec:
    """What the model is taught, and from which kind of data."""

    name: str
    title: str
    sentence: str
    data_kinds: tuple[str, ...]
    settings: type | None = None
    section: str | None = None
    keys: tuple[str, ...] = ()
    learning_rate_factor: float = 1.0  # multiplies the method's learning rate
    needs_reference: bool = False  # keeps a reference model (frozen copy for full fine-tuning)
    build_trainer: Callable[[TrainerParts], Any] | None = None
    check: Callable[[RunConfig], None] | None = None  # raises ConfigError for settings it cannot train with


@dataclass(frozen=True)
class Preset:
    """A starting point: ``overrides`` maps dotted config keys to values."""

    title: str
    description: str
    overrides: dict[str, Any]


@dataclass
class TrainerParts:
    """What the engine has prepared for a task's ``build_trainer``."""

    config: RunConfig
    model: Any
    tokenizer: Any
    peft_config: Any
    train_rows: list[dict[str, Any]]
    eval_rows: list[dict[str, Any]]
    args: dict[str, Any]  # TrainingArguments keywords shared by every TRL trainer
    callbacks: list[Any]
    data_kind: str
    ref_model: Any = None
    padding_free: bool = False  # lay each batch's examples end to end (``speed.padding_free`` decides)


# -- builders (lazy imports) ---------------------------------------------------------------------------

#: attention and MLP projection names per architecture family, for an explicit LoRA target list
TARGETS_BY_ARCH = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma3_text": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "falcon": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}


def lora_targets(spec: str, model_type: str | None = None) -> str | list[str]:
    """``method.target_modules`` → peft's ``target_modules``.

    'all-linear' stays peft's keyword (every linear layer but the output head); 'attention' picks
    the attention projections of the model's architecture; anything else is a comma-separated list.
    """
    spec = (spec or "all-linear").strip()
    if spec == "all-linear":
        return spec
    if spec in ("attention", "attention-only"):
        names = TARGETS_BY_ARCH.get(model_type or "", [])
        attention = [n for n in names if any(k in n for k in ("q_proj", "k_proj", "v_proj", "qkv", "query",
                                                                "c_attn", "o_proj"))]
        return attention or "all-linear"
    return [m.strip() for m in spec.split(",") if m.strip()]


def _lora(config: RunConfig, model: Any, **extra: Any) -> Any:
    from peft import LoraConfig

    m = config.method
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    return LoraConfig(r=m.lora_rank, lora_alpha=m.lora_alpha, lora_dropout=m.lora_dropout,
                      target_modules=lora_targets(m.target_modules, model_type), task_type="CAUSAL_LM", **extra)


def _dora(config: RunConfig, model: Any) -> Any:
    return _lora(config, model, use_dora=True)


def _prompt_tuning(config: RunConfig, model: Any) -> Any:
    from peft import PromptTuningConfig

    s = config.method.prompt_tuning
    if s.init_text.strip():
        return PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=s.num_virtual_tokens,
                                  prompt_tuning_init="TEXT", prompt_tuning_init_text=s.init_text,
                                  tokenizer_name_or_path=model.config.name_or_path)
    return PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=s.num_virtual_tokens)


def _prefix_tuning(config: RunConfig, model: Any) -> Any:
    from peft import PrefixTuningConfig

    return PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=config.method.prefix_tuning.num_virtual_tokens)


def quantization_config(config: RunConfig, spec: MethodSpec, bf16_ok: bool) -> Any:
    """The ``BitsAndBytesConfig`` for a quantised method (NF4 + double quantisation for QLoRA)."""
    import torch
    from transformers import BitsAndBytesConfig

    if spec.quantized_bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    s = config.method.qlora
    dtype = s.compute_dtype if s.compute_dtype != "auto" else ("bf16" if bf16_ok else "fp16")
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=s.quant_type,
                              bnb_4bit_use_double_quant=s.double_quant,
                              bnb_4bit_compute_dtype=torch.bfloat16 if dtype == "bf16" else torch.float16,
                              bnb_4bit_quant_storage=torch.bfloat16 if dtype == "bf16" else torch.float16)


def bitsandbytes_installed() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


# -- tasks: each builds its TRL trainer -----------------------------------------------------------------

def is_conversational(rows: list[dict[str, Any]]) -> bool:
    """Whether the rows hold message lists (rendered with the chat template) rather than plain strings."""
    return bool(rows) and any(isinstance(v, list) for v in rows[0].values())


def preference_rows(rows: list[dict[str, Any]], *, chat: bool) -> list[dict[str, Any]]:
    """Preference rows in TRL's shape; plain-text prompts become a user turn when the model chats.

    TRL applies no chat template to plain strings, so an instruct model would otherwise be taught
    on text it never sees at inference time.
    """
    out = []
    for row in rows:
        prompt, chosen, rejected = row["prompt"], row["chosen"], row["rejected"]
        if chat and isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        if isinstance(prompt, list):
            if isinstance(chosen, str):
                chosen = [{"role": "assistant", "content": chosen}]
            if isinstance(rejected, str):
                rejected = [{"role": "assistant", "content": rejected}]
        elif isinstance(chosen, list) or isinstance(rejected, list):
            prompt = [{"role": "user", "content": prompt}]
        out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return out


def unpaired_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Preference pairs → KTO's good/bad examples, interleaved.

    KTO reads its data in order (its KL estimate pairs neighbours), and TRL's own unpairing puts
    every good answer before every bad one, so early batches would hold only good answers.
    """
    out = []
    for row in rows:
        out.append({"prompt": row["prompt"], "completion": row["chosen"], "label": True})
        out.append({"prompt": row["prompt"], "completion": row["rejected"], "label": False})
    return out


def _dataset(rows: list[dict[str, Any]]) -> Any:
    from datasets import Dataset

    return Dataset.from_list(rows) if rows else None


#: ChatML with ``{% generation %}`` markers around each assistant reply (and its end-of-turn token)
CHATML_TRAINING_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def training_chat_template(tokenizer: Any, rows: list[dict[str, Any]]) -> str | None:
    """A chat template that marks every assistant reply for the loss, or None when none is known.

    The model's own template if it has ``{% generation %}`` markers; TRL's patched version for the
    templates it knows (Qwen, Llama 3, Gemma, Phi-3, ...); our ChatML one when it renders these
    rows exactly as the model's template does (SmolLM2 and other ChatML models). Never a template
    that would render differently from what the model sees at inference.
    """
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    own = tokenizer.chat_template
    if not isinstance(own, str):
        return None
    if has_generation_markers(own):
        return own
    try:
        patched = get_training_chat_template(tokenizer)
        if patched:
            return patched
    except (ValueError, TypeError):
        pass
    try:
        for row in rows[:8]:
            a = tokenizer.apply_chat_template(row["messages"], tokenize=False)
            b = tokenizer.apply_chat_template(row["messages"], tokenize=False, chat_template=CHATML_TRAINING_TEMPLATE)
            if a != b:
                return None
    except Exception:  # a template that cannot render these rows is not ours to judge
        return None
    return CHATML_TRAINING_TEMPLATE if rows else None


def per_turn_rows(row: dict[str, Any]) -> list[dict[str, Any]]:
    """A conversation → one conversational prompt/completion per assistant reply (all earlier turns as prompt)."""
    messages = row["messages"]
    return [{"prompt": messages[:i], "completion": [m]} for i, m in enumerate(messages)
            if m["role"] == "assistant" and i > 0]


def _multi_turn(rows: list[dict[str, Any]]) -> bool:
    return any(sum(m["role"] == "assistant" for m in r.get("messages", [])) > 1 for r in rows)


def _sft_collator(p: TrainerParts) -> Any:
    """TRL's collator in padding-free mode when the engine asked for it, else None (TRL's own choice).

    Passed in rather than set through ``SFTConfig.padding_free``: TRL refuses that flag without
    packing because it would skip truncation, but the datasets are still truncated to
    ``max_length`` when they are prepared; only the collator changes.
    """
    if not p.padding_free or p.config.training.packing:
        return None
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(pad_token_id=p.tokenizer.pad_token_id, padding_free=True)


def _build_sft(p: TrainerParts) -> Any:
    from desktop_ft.core import datasets as ds
    from trl import SFTConfig, SFTTrainer

    m = p.config.method
    template = None
    multi_turn = p.data_kind == "conversation" and m.assistant_only_loss and _multi_turn(p.train_rows)
    if multi_turn:
        # every assistant reply counts, not just the last one, when the template can mark them
        template = training_chat_template(p.tokenizer, p.train_rows)
    if multi_turn and not template:
        # no loss markers for this template: one prompt/completion example per assistant reply
        train_rows = [r for row in p.train_rows for r in per_turn_rows(row)]
        eval_rows = [r for row in p.eval_rows for r in per_turn_rows(row)]
        args = SFTConfig(**p.args, max_length=p.config.training.max_length, packing=p.config.training.packing,
                         completion_only_loss=True, dataset_num_proc=None)
    elif template:
        p.tokenizer.chat_template = template  # renders the same text; only adds the loss markers
        train_rows = [{"messages": r["messages"]} for r in p.train_rows]
        eval_rows = [{"messages": r["messages"]} for r in p.eval_rows]
        args = SFTConfig(**p.args, max_length=p.config.training.max_length, packing=p.config.training.packing,
                         assistant_only_loss=True, completion_only_loss=False, dataset_num_proc=None)
    else:
        # loss on the last assistant reply (conversation) or the completion (prompt/completion)
        train_rows = [ds.sft_row(p.data_kind, r, assistant_only_loss=m.assistant_only_loss) for r in p.train_rows]
        eval_rows = [ds.sft_row(p.data_kind, r, assistant_only_loss=m.assistant_only_loss) for r in p.eval_rows]
        completion_only = m.assistant_only_loss and bool(train_rows) and "completion" in train_rows[0]
        args = SFTConfig(**p.args, max_length=p.config.training.max_length, packing=p.config.training.packing,
                         completion_only_loss=True if completion_only else False, dataset_num_proc=None)
    return SFTTrainer(model=p.model, args=args, train_dataset=_dataset(train_rows), eval_dataset=_dataset(eval_rows),
                      processing_class=p.tokenizer, peft_config=p.peft_config, callbacks=p.callbacks,
                      data_collator=_sft_collator(p))


def _build_pretrain(p: TrainerParts) -> Any:
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(**p.args, max_length=p.config.training.max_length, packing=p.config.training.packing,
                     completion_only_loss=False, dataset_text_field="text", dataset_num_proc=None)
    return SFTTrainer(model=p.model, args=args, train_dataset=_dataset(p.train_rows),
                      eval_dataset=_dataset(p.eval_rows), processing_class=p.tokenizer, peft_config=p.peft_config,
                      callbacks=p.callbacks, data_collator=_sft_collator(p))


def _build_dpo(p: TrainerParts) -> Any:
    from trl import DPOConfig, DPOTrainer

    s = p.config.method.dpo
    chat = bool(p.tokenizer.chat_template)
    args = DPOConfig(**p.args, max_length=p.config.training.max_length, beta=s.beta, loss_type=[s.loss_type],
                     dataset_num_proc=None)
    # With an adapter the reference is the base with the adapter switched off (TRL does this when
    # ref_model is None); for full fine-tuning it is the frozen copy the engine made.
    return DPOTrainer(model=p.model, ref_model=p.ref_model, args=args,
                      train_dataset=_dataset(preference_rows(p.train_rows, chat=chat)),
                      eval_dataset=_dataset(preference_rows(p.eval_rows, chat=chat)),
                      processing_class=p.tokenizer, peft_config=p.peft_config, callbacks=p.callbacks)


def _build_kto(p: TrainerParts) -> Any:
    from trl import KTOConfig, KTOTrainer

    s = p.config.method.kto
    chat = bool(p.tokenizer.chat_template)
    args = KTOConfig(**p.args, max_length=p.config.training.max_length, beta=s.beta,
                     desirable_weight=s.desirable_weight, undesirable_weight=s.undesirable_weight,
                     dataset_num_proc=None)
    return KTOTrainer(model=p.model, ref_model=p.ref_model, args=args,
                      train_dataset=_dataset(unpaired_rows(preference_rows(p.train_rows, chat=chat))),
                      eval_dataset=_dataset(unpaired_rows(preference_rows(p.eval_rows, chat=chat))),
                      processing_class=p.tokenizer, peft_config=p.peft_config, callbacks=p.callbacks)


def _check_kto(config: RunConfig) -> None:
    from desktop_ft.core.errors import ConfigError

    if config.training.batch_size < 2:
        raise ConfigError("KTO needs at least 2 examples per batch (it estimates its KL term from the other "
                          f"examples in the batch); 'training.batch_size' is {config.training.batch_size}",
                          field="training.batch_size",
                          hint="Set training.batch_size to 2 or more (lower gradient_accumulation_steps to match).")


def _build_orpo(p: TrainerParts) -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental" notice; the run log says which trainer ran
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    s = p.config.method.orpo
    chat = bool(p.tokenizer.chat_template)
    args = ORPOConfig(**p.args, max_length=p.config.training.max_length, beta=s.beta, dataset_num_proc=None)
    return ORPOTrainer(model=p.model, args=args,
                       train_dataset=_dataset(preference_rows(p.train_rows, chat=chat)),
                       eval_dataset=_dataset(preference_rows(p.eval_rows, chat=chat)),
                       processing_class=p.tokenizer, peft_config=p.peft_config, callbacks=p.callbacks)


# -- the registries ------------------------------------------------------------------------------------

METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in [
    MethodSpec("lora", "LoRA",
               "Trains small add-on matrices and keeps the model itself frozen: fast, light, and the "
               "result is a small file.",
               keys=LORA_KEYS, learning_rate=2e-4, build_peft=_lora),
    MethodSpec("qlora", "QLoRA",
               "LoRA on a copy of the model squeezed into 4 bits: about a third of the memory, a little "
               "slower; needs an NVIDIA GPU.",
               needs_cuda=True, settings=QLoraSettings, section="qlora",
               keys=LORA_KEYS + ("method.qlora.quant_type", "method.qlora.double_quant",
                                 "method.qlora.compute_dtype"),
               learning_rate=2e-4, quantized_bits=4, optimizer="paged_adamw_8bit", build_peft=_lora),
    MethodSpec("lora_8bit", "8-bit LoRA",
               "LoRA on a copy of the model stored in 8 bits: half the memory of plain LoRA; needs an "
               "NVIDIA GPU.",
               needs_cuda=True, keys=LORA_KEYS, learning_rate=2e-4, quantized_bits=8, build_peft=_lora),
    MethodSpec("dora", "DoRA",
               "LoRA that learns the size and the direction of each change separately: often closer to full "
               "fine-tuning, somewhat slower.",
               keys=LORA_KEYS, learning_rate=2e-4, build_peft=_dora),
    MethodSpec("full", "Full fine-tuning",
               "Changes every weight of the model: the most capable, but needs about four times the model's "
               "size in memory and saves a whole new model.",
               learning_rate=2e-5, trains_adapter=False),
    MethodSpec("prompt_tuning", "Prompt tuning",
               "Learns a few 'virtual words' put in front of every input; the model is untouched. Tiny, "
               "but learns less than LoRA.",
               settings=PromptTuningSettings, section="prompt_tuning",
               keys=("method.prompt_tuning.num_virtual_tokens", "method.prompt_tuning.init_text"),
               learning_rate=3e-2, build_peft=_prompt_tuning),
    MethodSpec("prefix_tuning", "Prefix tuning",
               "Learns a few extra key/value vectors in every layer; the model is untouched. Small, and "
               "learns more than prompt tuning.",
               settings=PrefixTuningSettings, section="prefix_tuning",
               keys=("method.prefix_tuning.num_virtual_tokens",), learning_rate=1e-2, build_peft=_prefix_tuning),
]}

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in [
    TaskSpec("sft", "Supervised fine-tuning",
             "Teaches the model to give the answers in your data.",
             data_kinds=("conversation", "prompt_completion", "text", "preference"),
             keys=("method.assistant_only_loss",),
             build_trainer=_build_sft),
    TaskSpec("dpo", "DPO (preferences)",
             "Teaches the model to prefer the 'chosen' answer over the 'rejected' one, staying close to "
             "where it started.",
             data_kinds=("preference",), settings=DpoSettings, section="dpo",
             keys=("method.dpo.beta", "method.dpo.loss_type"), learning_rate_factor=0.25, needs_reference=True,
             build_trainer=_build_dpo),
    TaskSpec("orpo", "ORPO (preferences, no reference)",
             "Learns the chosen answers and the preference in one pass, without a reference model: less "
             "memory than DPO.",
             data_kinds=("preference",), settings=OrpoSettings, section="orpo", keys=("method.orpo.beta",),
             learning_rate_factor=0.25, build_trainer=_build_orpo),
    TaskSpec("kto", "KTO (good/bad answers)",
             "Learns from answers marked good or bad one at a time; preference pairs are split into one "
             "good and one bad example.",
             data_kinds=("preference",), settings=KtoSettings, section="kto",
             keys=("method.kto.beta", "method.kto.desirable_weight", "method.kto.undesirable_weight"),
             learning_rate_factor=0.25, needs_reference=True, build_trainer=_build_kto, check=_check_kto),
    TaskSpec("pretrain", "Continued pre-training",
             "Keeps training the model on raw text so it picks up your domain's words and facts; it does not "
             "teach it to answer.",
             data_kinds=("text",), build_trainer=_build_pretrain),
]}

#: ``method.task: auto`` picks the task from the dataset's kind
TASK_FOR_KIND = {"preference": "dpo", "text": "pretrain", "conversation": "sft", "prompt_completion": "sft"}

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
    from desktop_ft.core.errors import ConfigError

    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    if key not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'", field="preset",
                          hint="Choose one of: " + ", ".join(f"{k} ({p.title})" for k, p in PRESETS.items()) + ".")
    return key


def recommended_learning_rate(method: str, task: str) -> float:
    """The method's starting learning rate, scaled down for preference tasks."""
    spec = METHODS.get(method, METHODS["lora"])
    factor = TASKS[task].learning_rate_factor if task in TASKS else 1.0
    return spec.learning_rate * factor


def apply_preset(config: RunConfig, name: str, data_kind: str | None = None) -> RunConfig:
    """``config`` with the preset's settings and the learning rate recommended for its method and task.

    ``data_kind`` resolves ``method.task: auto`` (preference data → DPO's lower learning rate).
    """
    preset = PRESETS[preset_key(name)]
    task = resolve_task(config.method.task, data_kind)
    lr = recommended_learning_rate(config.method.method, task)
    return config.replace({**preset.overrides, "training.learning_rate": lr})


def resolve_task(task: str, data_kind: str | None) -> str:
    """``method.task`` with 'auto' replaced by the task for the dataset's kind."""
    if task != "auto":
        return task
    return TASK_FOR_KIND.get(data_kind or "conversation", "sft")


def resolve_optimizer(config: RunConfig) -> str:
    """``training.optimizer`` with 'auto' replaced by the method's choice (paged 8-bit AdamW for QLoRA)."""
    if config.training.optimizer != "auto":
        return config.training.optimizer
    spec = METHODS.get(config.method.method)
    return spec.optimizer if spec else "adamw_torch"


def check_task_data(task: str, data_kind: str, path: str | None = None) -> None:
    """Raise a ``ConfigError`` when the task cannot learn from this kind of data."""
    from desktop_ft.core.errors import ConfigError

    spec = TASKS[task]
    if data_kind in spec.data_kinds:
        return
    fits = [t for t, s in TASKS.items() if data_kind in s.data_kinds]
    needs = " or ".join(spec.data_kinds)
    raise ConfigError(f"task '{task}' needs {needs} data, but this dataset holds {data_kind} rows",
                      path=path, field="method.task",
                      hint=f"Use --task {fits[0]} for this data, or give a {needs} dataset." if fits
                      else f"Give a {needs} dataset.")


def method_settings_fields(name: str) -> list[dataclasses.Field]:
    """The fields of a method's or task's own settings dataclass (empty when it has none)."""
    spec = METHODS.get(name) or TASKS.get(name)
    return list(dataclasses.fields(spec.settings)) if spec and spec.settings else []


# -- known-bad combinations ----------------------------------------------------------------------------

def warnings_for(config: RunConfig, hardware: Any = None) -> list[str]:
    """Plain sentences about combinations that fail or disappoint; empty when all looks fine.

    ``hardware`` is optional: a ``desktop_ft.core.hardware.Hardware`` (its ``gpus``, ``bf16``,
    ``bitsandbytes``) or a dict with ``cuda`` (bool), ``vram_bytes`` (int), ``bf16``, ``bitsandbytes``.
    Without it, this machine's CUDA is checked only if torch is already imported (this function
    never imports torch).
    """
    if hardware is not None and not isinstance(hardware, dict) and hasattr(hardware, "gpus"):
        gpus = list(hardware.gpus)
        hardware = {"cuda": bool(gpus), "vram_bytes": gpus[0].total_bytes if gpus else None,
                    "bf16": hardware.bf16, "bitsandbytes": hardware.bitsandbytes}
    out: list[str] = []
    m, t = config.method, config.training
    spec = METHODS.get(m.method)
    if spec is None:
        return [f"Unknown method '{m.method}'; choose one of: {', '.join(METHODS)}."]
    cuda = _hw(hardware, "cuda", "has_cuda")
    if cuda is None:
        cuda = _cuda_if_known()
    vram = _hw(hardware, "vram_bytes", "gpu_memory_bytes", "total_vram_bytes")
    bnb = _hw(hardware, "bitsandbytes", "has_bitsandbytes")
    if bnb is None:
        bnb = bitsandbytes_installed()

    if spec.needs_cuda and cuda is False:
        out.append(f"{spec.title} needs an NVIDIA GPU with CUDA, and this machine has none: use LoRA instead.")
    if spec.quantized_bits and not bnb:
        out.append(f"{spec.title} needs the bitsandbytes package (pip install bitsandbytes), which is not installed.")
    if m.method == "full":
        if t.learning_rate > 1e-4:
            out.append(f"Full fine-tuning with learning rate {t.learning_rate:g} usually wrecks the model; "
                       "1e-5 to 5e-5 is safe.")
        params = _model_params(config.model.name)
        if params and vram and params * 16 > vram:  # weights + grads + Adam states ≈ 16 bytes/parameter
            out.append(f"Full fine-tuning a {params / 1e9:.1f}B model needs about {params * 16 / 2**30:.0f} GiB; "
                       f"this GPU has {vram / 2**30:.0f} GiB. Use LoRA or QLoRA.")
        elif params and params > 3e9 and not vram:
            out.append(f"Full fine-tuning a {params / 1e9:.1f}B model needs about {params * 16 / 2**30:.0f} GiB "
                       "of memory; LoRA or QLoRA needs a fraction of that.")
    if spec.trains_adapter and spec.build_peft in (_lora, _dora) and t.learning_rate < 1e-5:
        out.append(f"Learning rate {t.learning_rate:g} is very low for {spec.title}; 1e-4 to 3e-4 is typical.")
    if m.method in ("lora", "dora", "qlora", "lora_8bit") and m.lora_alpha < m.lora_rank / 4:
        out.append("LoRA alpha is far below the rank, so the add-on barely changes the model; alpha = 2 × rank "
                   "is a good start.")
    if m.task in ("dpo", "kto", "orpo") and t.learning_rate > 1e-4 and m.method == "full":
        out.append("Preference training with a high learning rate tends to collapse the model; try 5e-7 to 5e-6 "
                   "for full fine-tuning.")
    if m.task in ("dpo", "kto") and m.method in ("prompt_tuning", "prefix_tuning"):
        out.append(f"{TASKS[m.task].title} with {spec.title} learns very little; LoRA is the usual choice.")
    if t.precision == "fp16" and cuda and _hw(hardware, "bf16") is True:
        out.append("This GPU supports bf16, which is more stable than fp16; set precision to 'auto'.")
    if t.precision == "bf16" and cuda is False:
        out.append("bf16 on the CPU is many times slower than fp32 on most processors; set precision to 'auto'.")
    if m.rope_scaling != "none" and m.rope_factor <= 1.0:
        out.append("RoPE scaling with factor 1 changes nothing; set method.rope_factor to 2 or more.")
    if t.packing and m.task not in ("sft", "pretrain", "auto"):
        out.append("Packing only applies to SFT and pre-training; it is ignored for preference tasks.")
    if t.optimizer in ("adamw_8bit", "paged_adamw_8bit") and not bnb:
        out.append(f"Optimizer '{t.optimizer}' needs bitsandbytes; use 'auto' or 'adamw_torch'.")
    if m.task == "kto" and t.batch_size < 2:
        out.append("KTO needs a batch size of at least 2; raise training.batch_size.")
    if t.max_steps == -1 and t.epochs > 10:
        out.append(f"{t.epochs:g} epochs will likely memorise the data; 1-3 is typical.")
    return out


def _hw(hardware: Any, *names: str) -> Any:
    if hardware is None:
        return None
    for name in names:
        value = hardware.get(name) if isinstance(hardware, dict) else getattr(hardware, name, None)
        if value is not None:
            return value
    return None


def _cuda_if_known() -> bool | None:
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        return bool(torch.cuda.is_available())
    except Exception:
        return None


def _model_params(name: str) -> float | None:
    """Parameter count guessed from a model name such as 'Qwen2.5-7B-Instruct' (None when unknown)."""
    import re

    match = re.search(r"(\d+(?:\.\d+)?)\s*([bBmM])\b", (name or "").replace("_", "-").replace("-", " "))
    if not match:
        return None
    value = float(match.group(1))
    return value * (1e9 if match.group(2).lower() == "b" else 1e6)
