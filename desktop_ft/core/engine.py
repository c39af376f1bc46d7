"""Run one training run: RunConfig in, run folder out, events along the way.

A plain function (Orange3's ``run(data, state)`` habit): it takes an ``on_event`` callable and a
stop flag and knows nothing about who listens — the CLI's progress bar, the window's worker, or a
test. The heavy lifting is TRL's ``SFTTrainer`` with a peft LoRA adapter; our part is choosing
settings that work on the machine at hand, turning the Trainer's logs into events and
``metrics.jsonl``, and keeping the run folder truthful whatever happens (finish, Stop, crash).
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from desktop_ft import resources
from desktop_ft.core import datasets as ds
from desktop_ft.core import memwatch, methods, trainers
from desktop_ft.core.config import RunConfig, validate
from desktop_ft.core.errors import UserError
from desktop_ft.core.events import (CheckpointSaved, EvalLogged, Event, EventCallback, Progress, RunFinished,
                                    RunStarted, StepLogged)
from desktop_ft.core.hardware import bitsandbytes_installed, compute_device, detect
from desktop_ft.core.models import resolve_model
from desktop_ft.core.precision import TORCH_NAMES, PrecisionPlan, plan_for
from desktop_ft.core.runs import FAILED, FINISHED, RUNNING, STOPPED, RunFolder, RunStatus, new_run_folder, now_iso


def precision_plan(config: RunConfig) -> PrecisionPlan:
    """The precision plan of ``config`` on this machine (``desktop_ft.core.precision`` decides it)."""
    device, bf16 = compute_device()
    return plan_for(methods.method_spec(config.method.method), config.training.precision, device, bf16,
                    quant_compute=config.method.qlora.compute_dtype)


def train(config: RunConfig, *, run: RunFolder | None = None, on_event: EventCallback | None = None,
          stop: threading.Event | None = None, resume: bool = False) -> RunFinished:
    """Train ``config`` into a run folder and return how it ended.

    ``stop`` is cooperative: when set, the Trainer finishes the current step, saves a checkpoint and
    the run ends as ``stopped`` (resumable). ``resume=True`` continues ``run`` from its last
    complete checkpoint and appends to its ``metrics.jsonl``. A ``UserError`` is re-raised after the
    run folder says ``failed``; so is any other exception (a bug, an out-of-memory error).
    """
    validate(config)
    stop = stop or threading.Event()
    listener = on_event or (lambda _e: None)
    if run is None:
        run = new_run_folder(config)
    status = RunStatus(state=RUNNING, started_at=now_iso(), pid=os.getpid(),
                       max_steps=max(config.training.max_steps, 0))
    if resume:
        previous = run.read_status()
        status.started_at = previous.started_at or status.started_at
    run.write_status(status)

    def emit(event: Event) -> None:
        if isinstance(event, StepLogged):
            run.append_metric({"type": "train", **_metric_fields(event), "time": time.time()})
            status.step, status.max_steps = event.step, event.max_steps
            status.final_loss = event.loss
            run.write_status(status)
        elif isinstance(event, EvalLogged):
            run.append_metric({"type": "eval", "step": event.step, "epoch": event.epoch,
                               "eval_loss": event.eval_loss, **(event.extras or {}), "time": time.time()})
        elif isinstance(event, Progress):
            run.log(event.message)
        listener(event)

    try:
        if not resume:
            run.write_config(_resolved(config))
        outcome = _train(config, run, emit, stop, status, resume)
    except BaseException as exc:  # the run folder must say what happened, whatever it was
        status.state = FAILED
        status.error = describe_error(exc)
        status.ended_at = now_iso()
        status.peak_memory_bytes = peak_memory_bytes(status.device)
        run.write_status(status)
        run.log("FAILED: " + status.error)
        if not isinstance(exc, UserError):
            run.log(traceback.format_exc())
        run.close()
        listener(RunFinished(FAILED, status.step, error=status.error, run_dir=str(run.path)))
        raise
    run.close()
    listener(outcome)
    return outcome


def describe_error(exc: BaseException) -> str:
    """One sentence for status.json and the window."""
    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "Interrupted. Resume continues from the last checkpoint."
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "out of memory" in text.lower() or type(exc).__name__ == "OutOfMemoryError":
        return ("Out of memory: " + text[:200] + ". Lower the batch size or max length, turn on gradient "
                "checkpointing, or use QLoRA.")
    return f"{type(exc).__name__}: {text[:300]}"


def peak_memory_bytes(device: str | None) -> int | None:
    """CUDA max allocated on a GPU run, peak resident set size on the CPU, both since training began
    (``memwatch.start``), so a GGUF conversion earlier in the same process does not count."""
    return memwatch.peak_bytes(device)


# -- internals -----------------------------------------------------------------------------------

def _resolved(config: RunConfig) -> RunConfig:
    """The config as written to the run folder: the sample dataset spelled out, so it reruns anywhere."""
    if not config.data.path:
        return config.replace({"data.path": str(resources.sample_dataset())})
    return config


def _metric_fields(event: StepLogged) -> dict[str, Any]:
    return {"step": event.step, "epoch": event.epoch, "loss": event.loss, "learning_rate": event.learning_rate,
            "grad_norm": event.grad_norm, "tokens_per_second": event.tokens_per_second, **(event.extras or {})}


#: task metrics worth keeping (TRL logs many more): DPO/ORPO/KTO reward margins and accuracies
EXTRA_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "kl",
                 "log_odds_ratio", "nll_loss")


def _extras(logs: dict[str, Any], prefix: str = "") -> dict[str, float] | None:
    found = {k: float(logs[prefix + k]) for k in EXTRA_METRICS if isinstance(logs.get(prefix + k), (int, float))}
    return found or None


def _train(config: RunConfig, run: RunFolder, emit: EventCallback, stop: threading.Event,
           status: RunStatus, resume: bool) -> RunFinished:
    plan = precision_plan(config)
    status.device = plan.device
    _check_hardware(methods.method_spec(config.method.method), plan)  # before any download or conversion
    model_path = resolve_model(config.model.name, revision=config.model.revision, on_progress=emit)
    emit(Progress("data", "Reading the dataset…"))
    data = ds.load_dataset(config.data.path, columns=config.data.columns or None, max_rows=config.data.max_rows)
    for err in data.errors[:20]:
        run.log(f"skipped {data.path} {data.unit} {err.line}: {err.message}")
    if data.errors:
        emit(Progress("data", f"Skipped {len(data.errors)} bad row(s) of {len(data.errors) + len(data.rows)}; "
                              f"see train.log."))
    task_name = methods.resolve_task(config.method.task, data.kind)
    methods.check_task_data(task_name, data.kind, data.path)
    if task_name != config.method.task:
        config = config.replace({"method.task": task_name})
        if not resume:
            run.write_config(_resolved(config))  # the folder records what ran, so it reruns the same
    method, task = methods.method_spec(config.method.method), methods.task_spec(task_name)
    methods.check_task_settings(config, task_name)
    train_rows, val_rows = ds.split_rows(data.rows, config.data.validation_fraction, config.training.seed)
    if config.data.validation_path:
        val_rows = ds.load_dataset(config.data.validation_path, columns=config.data.columns or None).rows

    emit(Progress("load", "Loading the model…"))
    import torch
    from datasets.utils.logging import disable_progress_bar
    from transformers import PrinterCallback

    disable_progress_bar()  # tokenising bars would interleave with ours; Progress events say the same

    status.estimated_memory_bytes = _estimated_memory(config, plan.device)
    memwatch.start(plan.device)
    for warning in methods.warnings_for(config, detect()):
        emit(Progress("warning", warning))
    torch.manual_seed(config.training.seed)
    needs_chat = _needs_chat(data.kind, task_name, data.rows)
    model, tokenizer = _load_model(config, model_path, plan, needs_chat=needs_chat)
    peft_config = trainers.peft_config(config, model)
    ref_model = None
    if task.needs_reference and not method.trains_adapter:
        ref_model = _frozen_copy(model, plan)  # full fine-tuning: the reference is the model as it started

    callback = _EventCallback(emit, stop, run, config)
    args = _trainer_args(config, run, plan, has_eval=bool(val_rows))
    parts = trainers.TrainerParts(config=config, model=model, tokenizer=tokenizer, peft_config=peft_config,
                                  train_rows=train_rows, eval_rows=val_rows, args=args, callbacks=[callback],
                                  data_kind=data.kind, ref_model=ref_model)
    trainer = trainers.build_trainer(task_name, parts)
    trainer.remove_callback(PrinterCallback)  # it prints log dicts on stdout; our events replace it
    _check_labels(trainer, len(train_rows), emit)
    lengths = _tokenised_lengths(trainer)
    if lengths:
        # Batches are padded to their longest row, not to max_length: the estimate's own rule
        # (lengths.padded_length) on the rows exactly as they were tokenised for this run.
        status.estimated_memory_bytes = _estimated_memory(config, plan.device, lengths) \
            or status.estimated_memory_bytes
        run.write_status(status)

    checkpoint = run.last_checkpoint() if resume else None
    start_step = int(checkpoint.name.split("-")[1]) if checkpoint else 0
    if resume:
        run.truncate_metrics_after(start_step)
        emit(Progress("resume", f"Resuming from step {start_step}." if checkpoint else
                      "No checkpoint yet; starting from the beginning."))
    callback.start_step = start_step
    emit(Progress("train", f"{method.title}, {task.title}: training on {len(train_rows)} examples "
                           f"({plan.device}, {plan.compute})."))
    if stop.is_set():
        raise KeyboardInterrupt
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    step = trainer.state.global_step
    stopped = stop.is_set() and step < trainer.state.max_steps
    if trainer.eval_dataset is not None and not stopped and callback.last_eval_step != step:
        trainer.evaluate()  # the final eval loss; reaches metrics.jsonl through the callback's on_log
    if method.trains_adapter:
        out_dir = run.adapter_dir
        trainer.save_model(str(out_dir))
    else:
        out_dir = run.model_dir
        trainer.save_model(str(out_dir))
        tokenizer.save_pretrained(str(out_dir))
    status.state = STOPPED if stopped else FINISHED
    status.step = step
    status.max_steps = trainer.state.max_steps
    status.ended_at = now_iso()
    status.peak_memory_bytes = peak_memory_bytes(plan.device)
    run.write_status(status)
    run.log(f"{status.state} at step {step}; {'adapter' if method.trains_adapter else 'model'} saved to {out_dir}")
    return RunFinished(status.state, step, adapter_dir=str(out_dir) if method.trains_adapter else None,
                       run_dir=str(run.path), model_dir=None if method.trains_adapter else str(out_dir))


def _needs_chat(kind: str, task: str, rows: list[dict[str, Any]]) -> bool:
    """SFT renders every kind but raw text as a chat; preference tasks only when the rows hold messages."""
    if kind == "text":
        return False
    return task == "sft" or trainers.is_conversational(rows)


def _check_hardware(method: methods.MethodSpec, plan: PrecisionPlan) -> None:
    """QLoRA and 8-bit LoRA need CUDA and bitsandbytes: say so before loading anything."""
    if method.needs_cuda and plan.device != "cuda":
        raise UserError(f"'method.method' is '{method.name}', and {method.title} needs an NVIDIA GPU with CUDA, "
                        "but none was found", field="method.method",
                        hint="Use --method lora here (same quality, more memory), or run on a CUDA machine.")
    if method.quantized_bits and not bitsandbytes_installed():
        raise UserError(f"'method.method' is '{method.name}', and {method.title} needs the bitsandbytes "
                        "package, which is not installed", field="method.method",
                        hint="Install it with: pip install bitsandbytes")


def _load_model(config: RunConfig, model_path: Path, plan: PrecisionPlan, *, needs_chat: bool) -> tuple[Any, Any]:
    """Tokenizer and model, quantised for QLoRA / 8-bit LoRA and with RoPE scaling applied."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    trust = config.model.trust_remote_code
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if needs_chat and not tokenizer.chat_template:
        raise UserError("this model has no chat template, so chat data cannot be formatted for it",
                        path=model_path, hint="Pick an instruct/chat model, or use raw text data.")
    model_config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust)
    apply_rope_scaling(model_config, config.method.rope_scaling, config.method.rope_factor)
    dtype = getattr(torch, TORCH_NAMES[plan.load])  # the precision plan: fp32 master weights for full
    kwargs: dict[str, Any] = {"config": model_config, "trust_remote_code": trust, "dtype": dtype}
    if plan.quantized_bits:
        kwargs["quantization_config"] = trainers.quantization_config(config, plan)
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    model.config.use_cache = False
    if plan.quantized_bits:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model,
                                                use_gradient_checkpointing=config.training.gradient_checkpointing)
    return model, tokenizer


def apply_rope_scaling(model_config: Any, kind: str, factor: float) -> None:
    """Set linear / dynamic / YaRN RoPE scaling on a transformers config, or say why it cannot be done."""
    if kind == "none":
        return
    params = getattr(model_config, "rope_parameters", None)
    if not isinstance(params, dict) or "rope_type" not in params:
        raise UserError(f"this model ({model_config.model_type}) has no single RoPE setting to scale",
                        field="method.rope_scaling", hint="Set method.rope_scaling to 'none' for this model.")
    current = params.get("rope_type", "default")
    if current not in ("default", kind):
        raise UserError(f"this model already uses '{current}' RoPE scaling", field="method.rope_scaling",
                        hint="Set method.rope_scaling to 'none' to keep the model's own scaling.")
    original = int(getattr(model_config, "max_position_embeddings", 0) or 0)
    new = {**params, "rope_type": kind, "factor": float(factor)}
    if kind == "yarn" and original:
        new["original_max_position_embeddings"] = original
    model_config.rope_parameters = new
    if original and kind in ("linear", "yarn"):
        model_config.max_position_embeddings = int(original * factor)


def _frozen_copy(model: Any, plan: PrecisionPlan) -> Any:
    """The reference model for preference training with full fine-tuning: the start, frozen.

    It only runs forward passes, so it is kept in the plan's reference dtype (on a GPU, the
    compute dtype: half the memory).
    """
    import copy

    import torch

    ref = copy.deepcopy(model).to(getattr(torch, TORCH_NAMES[plan.reference]))
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def _trainer_args(config: RunConfig, run: RunFolder, plan: PrecisionPlan, *, has_eval: bool) -> dict[str, Any]:
    """TrainingArguments keywords every TRL trainer shares; each task adds its own (beta, packing, ...)."""
    t = config.training
    return dict(
        output_dir=str(run.checkpoints_dir),
        max_steps=t.max_steps,
        num_train_epochs=t.epochs,
        learning_rate=t.learning_rate,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        warmup_steps=t.warmup_ratio,
        lr_scheduler_type=t.lr_scheduler,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim=methods.resolve_optimizer(config),
        bf16=plan.bf16,
        fp16=plan.fp16,
        gradient_checkpointing=t.gradient_checkpointing,
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=t.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        report_to="none",
        use_cpu=plan.device == "cpu",
        dataloader_num_workers=0,
        dataloader_pin_memory=plan.device == "cuda",
        disable_tqdm=True,
    )


def _estimated_memory(config: RunConfig, device: str, lengths: list[int] | None = None) -> int | None:
    """The pre-run estimate for status.json; an estimate that fails must never stop training."""
    try:
        from desktop_ft.core import vram

        return vram.estimate_for_config(config, device=device, suggest=False, lengths=lengths).total_bytes
    except Exception:
        return None


def _tokenised_lengths(trainer: Any) -> list[int] | None:
    """Tokens per tokenised training row (SFT/pretrain shapes); None where the trainer keeps other columns."""
    try:
        dataset = trainer.train_dataset
        if "input_ids" not in dataset.column_names:
            return None
        return [len(ids) for ids in dataset["input_ids"]]
    except Exception:
        return None


def _check_labels(trainer: Any, rows_before: int, emit: EventCallback) -> None:
    """Refuse a run that would train on nothing; say how many rows lost their answer to truncation.

    SFT: TRL drops examples whose every label token is masked (the answer lies past ``max_length``).
    Preference tasks keep such rows but learn nothing from them: a prompt that fills
    ``max_length`` leaves no chosen or rejected token. If nothing is left, training would crash
    deep inside the sampler or silently learn nothing; we say why instead.
    """
    max_len = trainer.args.max_length
    dataset = trainer.train_dataset
    kept = len(dataset) if dataset is not None else 0
    if kept and max_len and "prompt_ids" in dataset.column_names:
        kept = sum(1 for ids in dataset["prompt_ids"] if len(ids) < max_len)
        rows_before = max(rows_before, len(dataset))
    if kept == 0:
        raise UserError(f"every answer is cut off at max length {max_len}, so the model would learn nothing",
                        field="training.max_length",
                        hint="Raise training.max_length or use shorter examples.")
    if kept < rows_before:
        emit(Progress("data", f"{rows_before - kept} of {rows_before} examples have no answer left within "
                              f"max length {max_len}, so they teach nothing."))


class _EventCallback:
    """Turns the Trainer's logs into our events and checks the stop flag after every step.

    Built lazily as a ``TrainerCallback`` subclass so that importing this module stays light.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        from transformers import TrainerCallback

        class EventCallback(TrainerCallback):
            def __init__(self, emit: EventCallback, stop: threading.Event, run: RunFolder,
                         config: RunConfig) -> None:
                self.emit, self.stop, self.run, self.config = emit, stop, run, config
                self.start_step = 0
                self._t0: float | None = None
                self._last_tokens: tuple[float, float] | None = None
                self.last_eval_step = -1

            def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
                self._t0 = time.monotonic()
                self.start_step = state.global_step or self.start_step
                self.emit(RunStarted(str(self.run.path), state.max_steps, resumed_from_step=self.start_step))

            def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
                return self._check_stop(control)

            def _check_stop(self, control):  # noqa: ANN001
                # Checked after the step and again after its log line, so a Stop asked for while a
                # step's events are being shown saves *that* step (the Trainer saves after logging).
                if self.stop.is_set():
                    control.should_training_stop = True
                    control.should_save = True
                return control

            def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
                path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                self.emit(CheckpointSaved(state.global_step, str(path)))

            def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
                logs = logs or {}
                now = time.monotonic()
                if "eval_loss" in logs:
                    self.last_eval_step = state.global_step
                    self.emit(EvalLogged(state.global_step, float(logs.get("epoch", state.epoch or 0)),
                                         float(logs["eval_loss"]), extras=_extras(logs, "eval_")))
                    return
                if "loss" not in logs:
                    return
                tps = None
                if "num_tokens" in logs:
                    tokens = float(logs["num_tokens"])
                    if self._last_tokens is not None and now > self._last_tokens[1]:
                        tps = (tokens - self._last_tokens[0]) / (now - self._last_tokens[1])
                    elif self._t0 is not None and now > self._t0:
                        tps = tokens / (now - self._t0)
                    self._last_tokens = (tokens, now)
                done = state.global_step - self.start_step
                eta = None
                if self._t0 is not None and done > 0:
                    eta = (now - self._t0) / done * max(state.max_steps - state.global_step, 0)
                self.emit(StepLogged(step=state.global_step, max_steps=state.max_steps,
                                     epoch=float(logs.get("epoch", state.epoch or 0.0)),
                                     loss=float(logs["loss"]), learning_rate=_opt(logs.get("learning_rate")),
                                     grad_norm=_opt(logs.get("grad_norm")), tokens_per_second=tps,
                                     eta_seconds=eta, extras=_extras(logs)))
                return self._check_stop(control)

        return EventCallback(*args, **kwargs)


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


