"""Run one training run: RunConfig in, run folder out, events along the way.

A plain function (Orange3's ``run(data, state)`` habit): it takes an ``on_event`` callable and a
stop flag and knows nothing about who listens — the CLI's progress bar, the window's worker, or a
test. The heavy lifting is TRL's ``SFTTrainer`` with a peft LoRA adapter; our part is choosing
settings that work on the machine at hand, turning the Trainer's logs into events and
``metrics.jsonl``, and keeping the run folder truthful whatever happens (finish, Stop, crash).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from desktop_ft.core import datasets as ds
from desktop_ft.core import distributed, memwatch, methods, speed, trainers
from desktop_ft.core.config import RunConfig, validate
from desktop_ft.core.errors import ModelError, UserError
from desktop_ft.core.events import (CheckpointSaved, EvalLogged, Event, EventCallback, Progress, RunFinished,
                                    RunStarted, StepLogged)
from desktop_ft.core.hardware import bitsandbytes_installed, compute_device, detect
from desktop_ft.core.models import resolve_model
from desktop_ft.core.precision import TORCH_NAMES, PrecisionPlan, plan_for
from desktop_ft.core.runs import (FAILED, FINISHED, RUNNING, STOPPED, RunFolder, RunStatus, create_run, is_disk_full,
                                  folder_size, mark_checkpoint_complete, now_iso, process_start_time)


def precision_plan(config: RunConfig) -> PrecisionPlan:
    """The precision plan of ``config`` on this machine (``desktop_ft.core.precision`` decides it)."""
    device, bf16 = compute_device()
    return plan_for(methods.method_spec(config.method.method), config.training.precision, device, bf16,
                    quant_compute=config.method.qlora.compute_dtype)


def train(config: RunConfig, *, run: RunFolder | None = None, on_event: EventCallback | None = None,
          stop: threading.Event | None = None, resume: bool = False) -> RunFinished:
    """Train ``config`` into a run folder and return how it ended.

    ``stop`` is cooperative: when set, the Trainer finishes the current step, saves a checkpoint and
    the run ends as ``stopped`` (resumable). ``resume=True`` continues ``run`` from its newest
    complete checkpoint and appends to its event log; the config it trains with is recorded. The
    process holds the run's lock throughout: a second trainer on the same folder is refused
    (``RunBusyError``) before it writes anything. A full disk ends the run as ``stopped`` with the
    previous checkpoint intact. A ``UserError`` is re-raised after the run folder says ``failed``;
    so is any other exception (a bug, an out-of-memory error).

    Under a launcher (torchrun, accelerate) every process calls this; rank 0 alone writes the run
    folder (and holds its lock) and emits events, the others only report their own failure
    (``RunFinished.rank``).
    """
    validate(config)
    stop = stop or threading.Event()
    listener = on_event or (lambda _e: None)
    rank = distributed.process_rank()
    with ds.examples_of_this_run():  # the trainer's inputs and TRL's tokenised copies: gone with the run
        if rank != 0:
            return _train_other_rank(config, run, listener, stop, resume, rank)
        if run is None:
            run = create_run(config)
        lock = run.lock()
        try:
            return _train_locked(config, run, listener, stop, resume)
        finally:
            lock.release()


def _train_locked(config: RunConfig, run: RunFolder, listener: EventCallback, stop: threading.Event,
                  resume: bool) -> RunFinished:
    status = RunStatus(state=RUNNING, started_at=now_iso(), pid=os.getpid(), pid_started=process_start_time(),
                       max_steps=max(config.training.max_steps, 0),
                       world_size=distributed.process_world_size(), launcher=distributed.launched_by())
    if resume:
        previous = run.read_status()
        status.started_at = previous.started_at or status.started_at
        status.step = previous.step
        if previous.world_size != status.world_size:
            per_step = config.training.batch_size * config.training.gradient_accumulation_steps
            listener(Progress("warning", f"This run trained on {previous.world_size} process(es) and continues on "
                              f"{status.world_size}: the global batch goes from {per_step * previous.world_size} "
                              f"to {per_step * status.world_size} examples a step."))
        if config != run.read_config():
            run.write_config(config)  # `--resume --set …`: the folder records what it trains with
    run.write_status(status)

    def emit(event: Event) -> None:
        run.append_event(event)
        if isinstance(event, StepLogged):
            status.step, status.max_steps = event.step, event.max_steps
            status.final_loss = event.loss
            _write_status_quietly(run, status)
        elif isinstance(event, Progress):
            run.log(event.message)
        listener(event)

    try:
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
        finished = RunFinished(FAILED, status.step, error=status.error, run_dir=str(run.path))
        run.append_event(finished)
        run.close()
        listener(finished)
        raise
    run.append_event(outcome)
    run.close()
    listener(outcome)
    return outcome


def _train_other_rank(config: RunConfig, run: RunFolder | None, listener: EventCallback, stop: threading.Event,
                      resume: bool, rank: int) -> RunFinished:
    """Rank > 0: the same training, writing nothing; its failure goes to the listener only (the
    launching ``desktop-ft train`` puts it into status.json, rank 0 may be gone by then)."""
    if run is None:
        if not config.output.output_dir:
            raise UserError("a launched process other than rank 0 needs 'output.output_dir'",
                            field="output.output_dir", hint="Start the run with desktop-ft train, which sets it.")
        run = RunFolder(Path(config.output.output_dir).expanduser())
    status = RunStatus(state=RUNNING, pid=os.getpid())
    try:
        outcome = _train(config, run, lambda _e: None, stop, status, resume, writes=False)
    except BaseException as exc:
        listener(RunFinished(FAILED, status.step, error=describe_error(exc), run_dir=str(run.path), rank=rank))
        raise
    return outcome


def _write_status_quietly(run: RunFolder, status: RunStatus) -> None:
    """Per-step status updates: one that cannot be written (a reader holds the file on Windows past
    the retries) is skipped, since the next step writes it again; training must not die of it."""
    try:
        run.write_status(status)
    except PermissionError:
        pass


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
    if is_disk_full(exc):  # a full disk while training stops the run instead; this is before (tokenising)
        return (f"The disk is full ({text[:200]}). While a run prepares its data, the cache ({ds.store_root()}) "
                "holds about ten times the dataset: free space there, or set DESKTOP_FT_CACHE to a folder "
                "on a bigger disk.")
    return f"{type(exc).__name__}: {text[:300]}"


def peak_memory_bytes(device: str | None) -> int | None:
    """CUDA max allocated on a GPU run, peak resident set size on the CPU, both since training began
    (``memwatch.start``), so a GGUF conversion earlier in the same process does not count."""
    return memwatch.peak_bytes(device)


# -- internals -----------------------------------------------------------------------------------

#: task metrics worth keeping (TRL logs many more): DPO/ORPO/KTO reward margins and accuracies
EXTRA_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "kl",
                 "log_odds_ratio", "nll_loss")


def _extras(logs: dict[str, Any], prefix: str = "") -> dict[str, float] | None:
    found = {k: float(logs[prefix + k]) for k in EXTRA_METRICS if isinstance(logs.get(prefix + k), (int, float))}
    return found or None


def _train(config: RunConfig, run: RunFolder, emit: EventCallback, stop: threading.Event,
           status: RunStatus, resume: bool, *, writes: bool = True) -> RunFinished:
    """The run itself; ``writes=False`` on ranks other than 0 (the run folder has one writer)."""
    plan = precision_plan(config)
    status.device = plan.device
    _check_hardware(methods.method_spec(config.method.method), plan)  # before any download or conversion
    distributed.check_config(config, launching=False)
    if distributed.in_launched_process():
        import torch

        distributed.check_machine(config, cuda_devices=torch.cuda.device_count())
    model_path = resolve_model(config.model.name, revision=config.model.revision, on_progress=emit)
    emit(Progress("data", "Reading the dataset…"))
    data = ds.load_dataset(config.data.path, columns=config.data.columns or None, max_rows=config.data.max_rows)
    for err in data.errors[:20] if writes else ():
        run.log(f"skipped {data.path} {data.unit} {err.line}: {err.message}")
    if data.errors:
        emit(Progress("data", f"Skipped {len(data.errors)} bad row(s) of {len(data.errors) + len(data.rows)}; "
                              f"see train.log."))
    task_name = methods.resolve_task(config.method.task, data.kind)
    methods.check_task_data(task_name, data.kind, data.path)
    if task_name != config.method.task:
        config = config.replace({"method.task": task_name})
        if writes:
            run.write_config(config)  # the folder records what ran, so it reruns the same
    method, task = methods.method_spec(config.method.method), methods.task_spec(task_name)
    methods.check_task_settings(config, task_name)
    train_rows, val_rows = ds.split_rows(data.rows, config.data.validation_fraction, config.training.seed,
                                         config.data.max_validation_rows)
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

    fast = speed.plan(config, task_name, plan.device, model, rows=len(train_rows))
    for line in fast.log_lines():
        run.log(line)
    if plan.device == "cpu":
        torch.set_num_threads(fast.threads)
    if fast.padding_free and speed.use_varlen_attention(model):
        run.log("attention: torch sdpa on each example of a padding-free row (no mask over the whole row)")
    callback = _EventCallback(emit, stop, run, config)
    args = _trainer_args(config, run, plan, has_eval=bool(val_rows))
    args["use_liger_kernel"] = fast.liger
    args["dataset_num_proc"] = fast.tokenising_processes if fast.tokenising_processes > 1 else None
    args.update(distributed.trainer_args(config, plan.device))
    parts = trainers.TrainerParts(config=config, model=model, tokenizer=tokenizer, peft_config=peft_config,
                                  train_rows=train_rows, eval_rows=val_rows, args=args, callbacks=[callback],
                                  data_kind=data.kind, ref_model=ref_model, padding_free=fast.padding_free)
    trainer = trainers.build_trainer(task_name, parts)
    trainer.remove_callback(PrinterCallback)  # it prints log dicts on stdout; our events replace it
    _check_labels(trainer, len(train_rows), emit)
    lengths = _tokenised_lengths(trainer)
    if lengths and writes:
        # Batches are padded to their longest row, not to max_length: the estimate's own rule
        # (lengths.padded_length) on the rows exactly as they were tokenised for this run.
        status.estimated_memory_bytes = _estimated_memory(config, plan.device, lengths) \
            or status.estimated_memory_bytes
        run.write_status(status)

    if not resume:
        checkpoint = None
    elif writes:
        checkpoint = _resume_point(run, status, emit)
    else:  # the same choice rank 0 makes, without its clean-up
        checkpoint = run.usable_checkpoint()[0]
    start_step = _step_of(checkpoint) if checkpoint else 0
    callback.start_step = start_step
    callback.checkpoint_bytes = _expected_checkpoint_bytes(model, method)
    check_free_space(run.path, callback.checkpoint_bytes + _expected_output_bytes(model, method),
                     "a checkpoint and the trained weights")
    emit(Progress("train", f"{method.title}, {task.title}: training on {len(train_rows)} examples "
                           f"({plan.device}, {plan.compute})."))
    if stop.is_set():
        raise KeyboardInterrupt
    out_dir = run.adapter_dir if method.trains_adapter else run.model_dir
    try:
        if checkpoint is not None and _training_done_at(checkpoint, config):
            # Killed after the last checkpoint but before the final save: nothing is left to train.
            # The Trainer resumed at max_steps would train one step more (when max_steps is not a
            # whole number of epochs), so load the checkpoint's weights and state and only save.
            from transformers import TrainerState

            trainer._load_from_checkpoint(str(checkpoint))  # private, but the one loader resume uses
            trainer.state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
            callback.last_eval_step = trainer.state.global_step  # its eval, if any, is in the log already
        else:
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        step = trainer.state.global_step
        stopped = callback.stopped and step < trainer.state.max_steps  # the Stop every rank agreed on
        if trainer.eval_dataset is not None and not stopped and callback.last_eval_step != step:
            trainer.evaluate()  # the final eval loss; reaches metrics.jsonl through the callback's on_log
        check_free_space(run.path, _expected_output_bytes(model, method), "the trained weights")
        # every rank calls save_model (FSDP and ZeRO-3 gather the shards); the Trainer writes on rank 0 only
        trainer.save_model(str(out_dir))
        if not method.trains_adapter and writes:
            tokenizer.save_pretrained(str(out_dir))
    except BaseException as exc:
        if not (isinstance(exc, DiskFullError) or is_disk_full(exc)):
            raise
        return _stopped_by_full_disk(run, status, exc, plan.device)

    if not writes:
        return RunFinished(STOPPED if stopped else FINISHED, step, run_dir=str(run.path))
    status.state = STOPPED if stopped else FINISHED
    status.step = step
    status.max_steps = trainer.state.max_steps
    status.ended_at = now_iso()
    status.peak_memory_bytes = peak_memory_bytes(plan.device)
    run.write_status(status)
    run.log(f"{status.state} at step {step}; {'adapter' if method.trains_adapter else 'model'} saved to {out_dir}")
    return RunFinished(status.state, step, adapter_dir=str(out_dir) if method.trains_adapter else None,
                       run_dir=str(run.path), model_dir=None if method.trains_adapter else str(out_dir))


def _training_done_at(checkpoint: Path, config: RunConfig) -> bool:
    """Whether ``checkpoint`` is the run's last step: its step reaches ``max_steps`` (the config's,
    which ``--resume --set training.max_steps=…`` may have raised, or for epochs the Trainer's own)."""
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    target = config.training.max_steps if config.training.max_steps > 0 else int(state.get("max_steps") or 0)
    return target > 0 and int(state.get("global_step") or 0) >= target


def _step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[1])


def _resume_point(run: RunFolder, status: RunStatus, emit: EventCallback) -> Path | None:
    """The newest complete checkpoint; damaged newer ones are removed and named, and the metrics
    past the chosen step are trimmed (only now, once there is a step to continue from).

    With no usable checkpoint at all, training starts again at step 0 and the earlier attempt's
    metrics are kept beside the log (``metrics.attempt-N.jsonl``): nothing is dropped, and the
    curve does not hold two step 1s. That is what "Resume" of a run killed before its first
    checkpoint means to a user: train it, without losing what it logged.
    """
    checkpoint, skipped = run.usable_checkpoint()
    for bad, _why in skipped:
        shutil.rmtree(bad, ignore_errors=True)  # the Trainer would save into it again, over stale files
    if checkpoint is not None:
        run.truncate_metrics_after(_step_of(checkpoint))
        aside = None
    else:
        aside = run.set_metrics_aside()
    for bad, why in skipped:
        emit(Progress("resume", f"Skipped {bad.name}: {why}; it cannot be resumed from and was removed."))
    if checkpoint is not None:
        status.step = _step_of(checkpoint)
        emit(Progress("resume", f"Resuming from step {status.step} ({checkpoint.name})."))
    else:
        status.step = 0
        emit(Progress("resume", "No complete checkpoint to resume from, so training starts again at step 0"
                      + (f"; the earlier attempt's metrics are kept in {aside.name}" if aside else "") + "."))
    return checkpoint


def _expected_checkpoint_bytes(model: Any, method: methods.MethodSpec) -> int:
    """What one Trainer checkpoint takes on disk: the saved weights plus AdamW's two moments (fp32)
    for every trainable parameter, plus a little for the states and the tokenizer."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return _expected_output_bytes(model, method) + trainable * 8 + (4 << 20)


def _expected_output_bytes(model: Any, method: methods.MethodSpec) -> int:
    """The trained weights as saved: the adapter's parameters, or the whole model for full fine-tuning."""
    params = [p for p in model.parameters() if p.requires_grad or not method.trains_adapter]
    return sum(p.numel() * p.element_size() for p in params) + (2 << 20)


def check_free_space(folder: Path, need: int, what: str) -> None:
    """Refuse, with the numbers, to start writing ``need`` bytes into ``folder``'s disk when it has less."""
    free = shutil.disk_usage(_existing(folder)).free
    if free < need:
        raise DiskFullError(f"there is not enough free disk space for {what}: about {_human(need)} are needed "
                            f"and {_human(free)} are free", path=folder,
                            hint="Free some space on that disk (or move the run elsewhere), then try again.")


class DiskFullError(UserError):
    """The disk of the run folder (or an export target) has no room for what must be written next."""


def _existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _stopped_by_full_disk(run: RunFolder, status: RunStatus, exc: BaseException, device: str) -> RunFinished:
    """The disk filled up mid-run: remove what was half written, keep every complete checkpoint,
    end as ``stopped`` (resumable once there is room) with one sentence."""
    run.close()
    good, skipped = run.usable_checkpoint()
    for bad, _why in skipped:
        shutil.rmtree(bad, ignore_errors=True)  # half a checkpoint: frees room and cannot be resumed from
    step = _step_of(good) if good else 0
    if isinstance(exc, DiskFullError):
        what = str(exc)
    else:
        what = f"The disk holding {run.path} is full ({_human(shutil.disk_usage(run.path).free)} free)"
    kept = f"{good.name} is intact and Resume continues from it" if good else "no checkpoint was saved yet"
    status.state = STOPPED
    status.step = step
    status.error = (f"{what.rstrip('.')}; the run stopped at step {step}: {kept}. Free some space on that "
                    "disk, then resume.")
    status.ended_at = now_iso()
    status.peak_memory_bytes = peak_memory_bytes(device)
    run.write_status(status)
    run.log("STOPPED: " + status.error)
    return RunFinished(STOPPED, step, error=status.error, run_dir=str(run.path))


def _needs_chat(kind: str, task: str, rows: Sequence[dict[str, Any]]) -> bool:
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
    from transformers import AutoModelForCausalLM, AutoTokenizer

    trust = config.model.trust_remote_code
    _check_model_folder(model_path)
    model_config = _read_model_config(model_path, trust)
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if needs_chat and not tokenizer.chat_template:
        raise UserError("this model has no chat template, so chat data cannot be formatted for it",
                        path=model_path, hint="Pick an instruct/chat model, or use raw text data.")
    apply_rope_scaling(model_config, config.method.rope_scaling, config.method.rope_factor)
    dtype = getattr(torch, TORCH_NAMES[plan.load])  # the precision plan: fp32 master weights for full
    kwargs: dict[str, Any] = {"config": model_config, "trust_remote_code": trust, "dtype": dtype}
    if plan.quantized_bits:
        kwargs["quantization_config"] = trainers.quantization_config(config, plan)
        # one GPU per process: under a launcher, this process's local rank
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", torch.cuda.current_device()))}
    model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    model.config.use_cache = False
    if plan.quantized_bits:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model,
                                                use_gradient_checkpointing=config.training.gradient_checkpointing)
    return model, tokenizer


#: files any one of which makes a folder's tokenizer loadable
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model")


def _check_model_folder(model_path: Path) -> None:
    """A local model folder must hold its tokenizer: say so before transformers says something obscure."""
    if Path(model_path).is_dir() and not any((Path(model_path) / n).exists() for n in TOKENIZER_FILES):
        raise ModelError("holds a model but no tokenizer (no tokenizer.json or tokenizer_config.json)",
                         path=model_path, hint="Copy the tokenizer files of the model it came from into this "
                                               "folder (tokenizer.save_pretrained does it).")


def _read_model_config(model_path: Path, trust: bool) -> Any:
    """The model's config.json, or one sentence naming the field that is wrong in it."""
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model_path, trust_remote_code=trust)
    except (StrictDataclassError, ValueError, TypeError, KeyError, OSError) as exc:
        text = " ".join(str(exc).split())
        raise ModelError(f"config.json cannot be used ({text[:240]})", path=Path(model_path) / "config.json",
                         hint="Fix that value (numbers without quotes), or use the model's original config.json."
                         ) from None


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
        save_total_limit=None,  # the callback prunes, and only after the newer checkpoint is complete
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
        return [n for batch in _list_lengths(dataset, "input_ids") for n in batch.to_pylist()]
    except Exception:
        return None


def _list_lengths(dataset: Any, column: str) -> Iterator[Any]:
    """The lengths of a list column (token ids), an Arrow array per 10,000 rows: counted by Arrow,
    so a big tokenised dataset never becomes Python lists (``dataset[column]`` would hold them all)."""
    import pyarrow.compute as pc

    for batch in dataset.select_columns([column]).with_format("arrow").iter(batch_size=10_000):
        yield pc.list_value_length(batch[column])


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
        import pyarrow.compute as pc

        kept = sum(int(pc.sum(pc.less(n, max_len)).as_py() or 0) for n in _list_lengths(dataset, "prompt_ids"))
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
                self.stopped = False  # a Stop every rank agreed on
                self.checkpoint_bytes = 0
                self._t0: float | None = None
                self._last_tokens: tuple[float, float] | None = None
                self.last_eval_step = -1

            def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
                self._t0 = time.monotonic()
                self.start_step = state.global_step or self.start_step
                self.emit(RunStarted(str(self.run.path), state.max_steps, resumed_from_step=self.start_step))

            def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
                control = self._check_stop(args, control)
                if control.should_save:  # set by the Trainer's flow callback, which runs before this one
                    newest = self.run.last_checkpoint()
                    need = max(folder_size(newest) if newest else 0, self.checkpoint_bytes)
                    check_free_space(self.run.path, need, f"the checkpoint at step {state.global_step}")
                return control

            def _check_stop(self, args, control):  # noqa: ANN001
                # Checked after the step and again after its log line, so a Stop asked for while a
                # step's events are being shown saves *that* step (the Trainer saves after logging).
                # Under N processes the ranks agree first (all-reduce), so all stop after the same step.
                if self.stopped or distributed.any_rank(self.stop.is_set(), args.device):
                    self.stopped = True
                    control.should_training_stop = True
                    control.should_save = True
                return control

            def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
                path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                mark_checkpoint_complete(path)
                self.run.prune_checkpoints(self.config.training.save_total_limit)
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
                return self._check_stop(args, control)

        return EventCallback(*args, **kwargs)


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


