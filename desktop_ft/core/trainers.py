"""How each method and task is built: peft adapter configs, quantisation and TRL trainers.

The registry (``desktop_ft.core.methods``) says what a method or task *is*; this module turns a
RunConfig into the peft and TRL objects for it. The engine prepares the shared pieces
(``TrainerParts``) and calls ``build_trainer``; SFT examples come from the datasets' one
``sft_recipe``, the same one ``desktop-ft data inspect`` and the window's preview use.

torch, transformers, peft and trl are imported inside the builders, never at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Callable

from desktop_ft.core import datasets as ds
from desktop_ft.core import speed
from desktop_ft.core.config import RunConfig
from desktop_ft.core.methods import method_spec, task_spec
from desktop_ft.core.precision import TORCH_NAMES, PrecisionPlan


@dataclass
class TrainerParts:
    """What the engine has prepared for a task's trainer."""

    config: RunConfig
    model: Any
    tokenizer: Any
    peft_config: Any
    train_rows: Sequence[dict[str, Any]]   # a RowStore (or its split views), or a list
    eval_rows: Sequence[dict[str, Any]]
    args: dict[str, Any]  # TrainingArguments keywords shared by every TRL trainer
    callbacks: list[Any]
    data_kind: str
    ref_model: Any = None
    padding_free: bool = False  # lay each batch's examples end to end (``speed.padding_free`` decides)


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
    model_type = model.config.model_type
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


#: ``MethodSpec.adapter`` → the function that builds its peft config from (config, model)
PEFT_BUILDERS: dict[str, Callable[[RunConfig, Any], Any]] = {
    "lora": _lora, "dora": _dora, "prompt_tuning": _prompt_tuning, "prefix_tuning": _prefix_tuning}


def peft_config(config: RunConfig, model: Any) -> Any:
    """The peft config of the run's adapter, or None for full fine-tuning."""
    adapter = method_spec(config.method.method).adapter
    return PEFT_BUILDERS[adapter](config, model) if adapter else None


def quantization_config(config: RunConfig, plan: PrecisionPlan) -> Any:
    """The ``BitsAndBytesConfig`` for a quantised method (NF4 + double quantisation for QLoRA)."""
    import torch
    from transformers import BitsAndBytesConfig

    if plan.quantized_bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    s = config.method.qlora
    dtype = getattr(torch, TORCH_NAMES[plan.load])
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=s.quant_type,
                              bnb_4bit_use_double_quant=s.double_quant, bnb_4bit_compute_dtype=dtype,
                              bnb_4bit_quant_storage=dtype)


# -- tasks: each builds its TRL trainer -----------------------------------------------------------------

def is_conversational(rows: Sequence[dict[str, Any]]) -> bool:
    """Whether the rows hold message lists (rendered with the chat template) rather than plain strings."""
    return bool(rows) and any(isinstance(v, list) for v in rows[0].values())


def preference_rows(rows: Iterable[dict[str, Any]], *, chat: bool) -> Iterator[dict[str, Any]]:
    """Preference rows in TRL's shape; plain-text prompts become a user turn when the model chats.

    TRL applies no chat template to plain strings, so an instruct model would otherwise be taught
    on text it never sees at inference time.
    """
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
        yield {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def unpaired_rows(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Preference pairs → KTO's good/bad examples, interleaved.

    KTO reads its data in order (its KL estimate pairs neighbours), and TRL's own unpairing puts
    every good answer before every bad one, so early batches would hold only good answers.
    """
    for row in rows:
        yield {"prompt": row["prompt"], "completion": row["chosen"], "label": True}
        yield {"prompt": row["prompt"], "completion": row["rejected"], "label": False}


def _dataset(examples: Iterable[dict[str, Any]]) -> Any:
    """What a TRL trainer is given: the examples on disk, memory-mapped (None when there are none)."""
    return ds.arrow_examples(examples)


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
    from trl import SFTConfig, SFTTrainer

    recipe = ds.sft_recipe(p.data_kind, p.train_rows, p.tokenizer,
                           assistant_only_loss=p.config.method.assistant_only_loss)
    if recipe.chat_template:
        p.tokenizer.chat_template = recipe.chat_template  # renders the same text; only adds the loss markers
    args = SFTConfig(**p.args, max_length=p.config.training.max_length, packing=p.config.training.packing,
                     **recipe.trl_flags)
    trainer = SFTTrainer(model=p.model, args=args, train_dataset=_dataset(recipe.examples_of(p.train_rows)),
                         eval_dataset=_dataset(recipe.examples_of(p.eval_rows)), processing_class=p.tokenizer,
                         peft_config=p.peft_config, callbacks=p.callbacks, data_collator=_sft_collator(p))
    speed.fit_loss_head(trainer, token_metrics=p.config.training.token_metrics)
    return trainer


def _build_pretrain(p: TrainerParts) -> Any:
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(**p.args, max_length=p.config.training.max_length, packing=p.config.training.packing,
                     completion_only_loss=False, dataset_text_field="text")
    trainer = SFTTrainer(model=p.model, args=args, train_dataset=_dataset(p.train_rows),
                         eval_dataset=_dataset(p.eval_rows), processing_class=p.tokenizer,
                         peft_config=p.peft_config, callbacks=p.callbacks, data_collator=_sft_collator(p))
    speed.fit_loss_head(trainer, token_metrics=p.config.training.token_metrics)
    return trainer


def _build_dpo(p: TrainerParts) -> Any:
    from trl import DPOConfig, DPOTrainer

    s = p.config.method.dpo
    chat = bool(p.tokenizer.chat_template)
    args = DPOConfig(**p.args, max_length=p.config.training.max_length, beta=s.beta, loss_type=[s.loss_type])
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
                     desirable_weight=s.desirable_weight, undesirable_weight=s.undesirable_weight)
    return KTOTrainer(model=p.model, ref_model=p.ref_model, args=args,
                      train_dataset=_dataset(unpaired_rows(preference_rows(p.train_rows, chat=chat))),
                      eval_dataset=_dataset(unpaired_rows(preference_rows(p.eval_rows, chat=chat))),
                      processing_class=p.tokenizer, peft_config=p.peft_config, callbacks=p.callbacks)


def _build_orpo(p: TrainerParts) -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental" notice; the run log says which trainer ran
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    s = p.config.method.orpo
    chat = bool(p.tokenizer.chat_template)
    args = ORPOConfig(**p.args, max_length=p.config.training.max_length, beta=s.beta)
    return ORPOTrainer(model=p.model, args=args,
                       train_dataset=_dataset(preference_rows(p.train_rows, chat=chat)),
                       eval_dataset=_dataset(preference_rows(p.eval_rows, chat=chat)),
                       processing_class=p.tokenizer, peft_config=p.peft_config, callbacks=p.callbacks)


#: task name → the function that builds its TRL trainer
TRAINER_BUILDERS: dict[str, Callable[[TrainerParts], Any]] = {
    "sft": _build_sft, "pretrain": _build_pretrain, "dpo": _build_dpo, "kto": _build_kto, "orpo": _build_orpo}


def build_trainer(task: str, parts: TrainerParts) -> Any:
    """The TRL trainer for ``task`` (a name in ``methods.TASKS``) on the prepared parts."""
    return TRAINER_BUILDERS[task_spec(task).name](parts)
