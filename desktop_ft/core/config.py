"""The run configuration: dataclasses whose fields carry their own help text.

One source of truth (as TRL's ``SFTConfig`` is): the wizard builds its widgets and tooltips from
these fields, the CLI builds ``--help`` and ``--set`` from them, and ``config.yaml`` in every run
folder is exactly ``RunConfig.to_dict()``. A run designed in the window therefore reruns on a
server with ``desktop-ft train config.yaml`` unchanged.

Field metadata keys: ``help`` (one plain sentence), optionally ``choices``, ``min``, ``max``
(a sensible range for the wizard) and ``advanced`` (hidden behind "Advanced" in the window).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import tempfile
import time
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desktop_ft.core.errors import ConfigError, did_you_mean
from desktop_ft.core.methods import METHODS, TASKS


def _f(default: Any = dataclasses.MISSING, *, help: str, default_factory: Any = dataclasses.MISSING,
       **meta: Any) -> Any:
    """A dataclass field with its help text (and optional choices / range) as metadata."""
    kwargs: dict[str, Any] = {"metadata": {"help": help, **meta}}
    if default_factory is not dataclasses.MISSING:
        kwargs["default_factory"] = default_factory
    else:
        kwargs["default"] = default
    return field(**kwargs)


# -- settings of their own: one dataclass per method or task that has any (its ``section``) -------

@dataclass
class QLoraSettings:
    """How QLoRA stores the frozen base model in 4 bits."""

    quant_type: str = _f("nf4", help="4-bit number format of the frozen weights: 'nf4' (NormalFloat, "
                         "best for trained weights) or 'fp4'.", choices=["nf4", "fp4"], advanced=True)
    double_quant: bool = _f(True, help="Also compress the quantisation constants (saves about 0.4 bits "
                            "per weight at no quality cost).", advanced=True)
    compute_dtype: str = _f("auto", help="Number format for the maths on the 4-bit weights: 'auto' picks "
                            "bf16 where the GPU supports it, else fp16.", choices=["auto", "bf16", "fp16"],
                            advanced=True)


@dataclass
class PromptTuningSettings:
    """Prompt tuning learns a few 'virtual words' put in front of every input."""

    num_virtual_tokens: int = _f(20, help="How many virtual words are learned. More can learn more; "
                                 "8-100 is typical.", min=1, max=512)
    init_text: str = _f("", help="Start the virtual words from this text (e.g. 'Answer in three steps:'); "
                        "empty starts from random words.", advanced=True)


@dataclass
class PrefixTuningSettings:
    """Prefix tuning learns a few virtual key/value vectors in every layer."""

    num_virtual_tokens: int = _f(20, help="How many virtual positions are learned in each layer; "
                                 "10-100 is typical.", min=1, max=512)


@dataclass
class DpoSettings:
    """Direct Preference Optimisation: prefer the 'chosen' answer over the 'rejected' one."""

    beta: float = _f(0.1, help="How far the model may move from where it started: lower moves further "
                     "towards your preferences, higher stays closer to the original. 0.05-0.5 is typical.",
                     min=0.001, max=5.0)
    loss_type: str = _f("sigmoid", help="The DPO loss: 'sigmoid' (the original, a safe default), 'ipo' "
                        "(less overfitting on small data), 'hinge', 'apo_zero' or 'sppo_hard'.",
                        choices=["sigmoid", "ipo", "hinge", "apo_zero", "sppo_hard", "nca_pair"],
                        advanced=True)


@dataclass
class OrpoSettings:
    """ORPO: learns the chosen answers and the preference in one go, without a reference model."""

    beta: float = _f(0.1, help="Weight of the preference part against the plain answer-learning part; "
                     "0.05-0.5 is typical.", min=0.001, max=5.0)


@dataclass
class KtoSettings:
    """KTO: learns from answers marked good or bad, one at a time (pairs are split up)."""

    beta: float = _f(0.1, help="How far the model may move from where it started; 0.05-0.5 is typical.",
                     min=0.001, max=5.0)
    desirable_weight: float = _f(1.0, help="Weight of the good answers; raise it when you have fewer good "
                                 "than bad ones.", min=0.01, max=10.0, advanced=True)
    undesirable_weight: float = _f(1.0, help="Weight of the bad answers; raise it when you have fewer bad "
                                   "than good ones.", min=0.01, max=10.0, advanced=True)


@dataclass
class ModelChoice:
    """Which base model to fine-tune."""

    name: str = _f("default", help="Model to fine-tune: 'default' (the built-in SmolLM2-135M-Instruct), "
                   "a Hugging Face id such as 'Qwen/Qwen2.5-0.5B-Instruct', a local folder, or a .gguf file.")
    revision: str | None = _f(None, help="Hub branch, tag or commit to download (Hugging Face ids only).",
                              advanced=True)
    trust_remote_code: bool = _f(False, help="Run Python code shipped with the model. Only for models whose "
                                 "authors you trust; off by default.", advanced=True)


@dataclass
class DataChoice:
    """Which examples to train on."""

    path: str = _f("", help="Training data: a .jsonl/.json/.csv/.parquet/.txt file, a saved datasets folder, "
                   "or a Hugging Face dataset id. Empty means the built-in sample dataset.")
    validation_path: str | None = _f(None, help="Separate file for validation. If empty, a slice of the "
                                     "training data is held out instead.", advanced=True)
    validation_fraction: float = _f(0.05, help="Share of the rows held out to measure eval loss "
                                    "(0 turns evaluation off).", min=0.0, max=0.5)
    max_validation_rows: int = _f(1000, help="Hold out at most this many rows, whatever the share: the eval "
                                  "loss of a thousand rows is as steady as of more, and every evaluation runs "
                                  "the model over all of them (5% of a million rows would take hours on a CPU).",
                                  min=1, max=10_000_000, advanced=True)
    columns: dict[str, str] = _f(default_factory=dict, help="Explicit column mapping when the format is not "
                                 "detected, e.g. {prompt: question, completion: answer}.", advanced=True)
    max_rows: int | None = _f(None, help="Use only the first N rows (handy for a quick test).", min=1,
                              advanced=True)


@dataclass
class MethodConfig:
    """How the weights are trained (method) and towards what objective (task).

    The LoRA keys are shared by every LoRA-like method; settings that belong to one method or task
    live in its own section (``method.qlora.*``, ``method.dpo.*``, ...), described in
    the settings dataclasses above (which method or task uses which: ``desktop_ft.core.methods``).
    """

    method: str = _f("lora", help="How weights are trained: 'lora' (small add-ons, model frozen), 'qlora' "
                     "(LoRA on a 4-bit model, NVIDIA GPU), 'lora_8bit', 'dora', 'full' (every weight), "
                     "'prompt_tuning' or 'prefix_tuning'.", choices=list(METHODS))
    task: str = _f("auto", help="Objective: 'sft' (learn the answers), 'dpo', 'orpo' or 'kto' (learn "
                   "preferences), 'pretrain' (raw text). 'auto' picks from the data: preference → dpo, "
                   "text → pretrain, otherwise sft.", choices=["auto", *TASKS])
    lora_rank: int = _f(16, help="LoRA rank: size of the add-on matrices. Higher learns more but uses more "
                        "memory; 8-64 is typical.", min=1, max=512)
    lora_alpha: int = _f(32, help="LoRA alpha: scales the add-on's effect; usually twice the rank.",
                         min=1, max=1024)
    lora_dropout: float = _f(0.05, help="Dropout on the LoRA layers: a little randomness that reduces "
                             "overfitting on small datasets.", min=0.0, max=0.5)
    target_modules: str = _f("all-linear", help="Which layers get LoRA add-ons: 'all-linear' (best quality), "
                             "'attention' (the attention projections only, lighter) or a comma-separated list "
                             "such as 'q_proj,v_proj'.", advanced=True)
    assistant_only_loss: bool = _f(True, help="Learn only from the assistant's replies, not from the user's "
                                   "questions (recommended for chat data).", advanced=True)
    rope_scaling: str = _f("none", help="Stretch the model's position encoding to read longer texts than it "
                           "was trained on: 'linear', 'dynamic' (NTK) or 'yarn' (best where supported).",
                           choices=["none", "linear", "dynamic", "yarn"], advanced=True)
    rope_factor: float = _f(2.0, help="How many times longer the context becomes with RoPE scaling; 2-4 "
                            "is typical. Raise training.max_length to match.", min=1.0, max=32.0, advanced=True)
    qlora: QLoraSettings = _f(default_factory=QLoraSettings, help="QLoRA settings.")
    prompt_tuning: PromptTuningSettings = _f(default_factory=PromptTuningSettings, help="Prompt tuning settings.")
    prefix_tuning: PrefixTuningSettings = _f(default_factory=PrefixTuningSettings, help="Prefix tuning settings.")
    dpo: DpoSettings = _f(default_factory=DpoSettings, help="DPO settings.")
    orpo: OrpoSettings = _f(default_factory=OrpoSettings, help="ORPO settings.")
    kto: KtoSettings = _f(default_factory=KtoSettings, help="KTO settings.")


@dataclass
class TrainingConfig:
    """Hyperparameters of the optimisation loop."""

    max_steps: int = _f(-1, help="Stop after this many optimizer steps (-1 means: train for 'epochs').",
                        min=-1, max=1_000_000)
    epochs: float = _f(1.0, help="How many times to go over the whole dataset.", min=0.01, max=100.0)
    learning_rate: float = _f(2e-4, help="How big each update is. LoRA likes 1e-4 to 3e-4; full "
                              "fine-tuning 1e-5 to 5e-5; preference tasks a quarter of that; prompt and prefix "
                              "tuning 1e-2 to 3e-2. Too high makes the loss jump or explode.",
                              min=1e-8, max=0.5)
    batch_size: int = _f(4, help="Examples per step on each device. Larger is faster per example but "
                         "needs more memory.", min=1, max=512)
    gradient_accumulation_steps: int = _f(1, help="Add up gradients over this many batches before one "
                                          "update: a bigger effective batch without more memory.",
                                          min=1, max=512)
    max_length: int = _f(512, help="Longest example in tokens; longer ones are cut. Memory grows with it.",
                         min=16, max=131072)
    warmup_ratio: float = _f(0.03, help="Share of steps spent slowly raising the learning rate at the start.",
                             min=0.0, max=0.5, advanced=True)
    lr_scheduler: str = _f("cosine", help="How the learning rate changes over the run.",
                           choices=["cosine", "linear", "constant", "constant_with_warmup"], advanced=True)
    weight_decay: float = _f(0.0, help="Pulls weights slightly towards zero each step; a mild regulariser.",
                             min=0.0, max=1.0, advanced=True)
    max_grad_norm: float = _f(1.0, help="Clip gradients to this norm so one bad batch cannot wreck the run.",
                              min=0.0, max=100.0, advanced=True)
    optimizer: str = _f("auto", help="Optimizer. 'auto' is AdamW, or paged 8-bit AdamW for QLoRA "
                        "(needs bitsandbytes, saves memory).",
                        choices=["auto", "adamw_torch", "adamw_8bit", "paged_adamw_8bit", "sgd"], advanced=True)
    precision: str = _f("auto", help="Number format for training: 'auto' picks bf16 on GPUs that support it "
                        "and fp32 on the CPU.", choices=["auto", "fp32", "fp16", "bf16"], advanced=True)
    gradient_checkpointing: bool = _f(False, help="Recompute activations instead of storing them: less "
                                      "memory, about 30% slower.", advanced=True)
    packing: bool = _f(False, help="Pack several short examples into one sequence: faster on short data.",
                       advanced=True)
    padding_free: bool = _f(True, help="Lay each batch's examples end to end instead of padding them to the "
                            "longest, with attention kept inside each example: the same learning with less "
                            "arithmetic on examples of mixed lengths. Off by itself where it would not be "
                            "correct (the run log says why).", advanced=True)
    token_metrics: bool = _f(False, help="Also log each step's entropy and next-token accuracy on the answers. "
                             "They cost one more pass over the whole vocabulary for every token, every step, "
                             "and no page shows them; the loss is the same either way.", advanced=True)
    seed: int = _f(42, help="Random seed, so the same config gives the same run.", advanced=True)
    logging_steps: int = _f(1, help="Log loss and learning rate every N steps.", min=1, max=10_000,
                           advanced=True)
    eval_steps: int = _f(50, help="Measure validation loss every N steps.", min=1, max=1_000_000,
                        advanced=True)
    save_steps: int = _f(50, help="Save a checkpoint every N steps (a stopped or crashed run resumes "
                         "from the last one).", min=1, max=1_000_000, advanced=True)
    save_total_limit: int = _f(3, help="Keep at most this many checkpoints; older ones are deleted.",
                               min=1, max=1000, advanced=True)


@dataclass
class OutputConfig:
    """Where the run folder goes."""

    output_dir: str | None = _f(None, help="Run folder. Empty means a new folder under the runs directory.")
    run_name: str | None = _f(None, help="A short name for the run (used for the folder name and the Runs "
                              "list).")


@dataclass
class DistributedConfig:
    """How many processes train together, and how they share the work (see ``core/distributed.py``).

    One process is the default; the same ``config.yaml`` runs on N processes or N machines by
    changing these keys (or the matching flags), nothing else.
    """

    nproc_per_node: int = _f(1, help="Training processes on each machine: one per GPU (on a machine without "
                             "GPUs, 2 or more CPU processes for a real data-parallel run over gloo).",
                             min=1, max=1024)
    nnodes: int = _f(1, help="How many machines train together (each runs nproc_per_node processes).",
                     min=1, max=4096, advanced=True)
    node_rank: int = _f(0, help="This machine's number among the nodes, 0 to nnodes-1 (0 is the one that "
                        "writes the run folder).", min=0, max=4095, advanced=True)
    master_addr: str = _f("127.0.0.1", help="Address of node 0, where the processes meet (rendezvous); "
                          "on several machines, an address every node can reach.", advanced=True)
    master_port: int = _f(29500, help="Free TCP port on node 0 for the rendezvous.", min=1, max=65535,
                          advanced=True)
    rdzv_endpoint: str | None = _f(None, help="Elastic rendezvous endpoint 'host:port' (torchrun's c10d "
                                   "rendezvous) instead of master_addr/master_port.", advanced=True)
    launcher: str = _f("auto", help="What starts the processes: 'torchrun', 'accelerate' (accelerate launch), "
                       "or 'auto' (torchrun).", choices=["auto", "torchrun", "accelerate"], advanced=True)
    strategy: str = _f("ddp", help="How the work is shared: 'ddp' (each process holds the whole model), "
                       "'fsdp' or 'zero3' (weights, gradients and optimizer state sharded over the GPUs), "
                       "'zero2' (gradients and optimizer state sharded); '_offload' variants keep the shards "
                       "in CPU memory. FSDP and ZeRO need NVIDIA GPUs; ZeRO needs DeepSpeed.",
                       choices=["ddp", "fsdp", "fsdp_offload", "zero2", "zero2_offload", "zero3",
                                "zero3_offload"])
    config_file: str | None = _f(None, help="Your own DeepSpeed JSON (for the zero strategies) or accelerate "
                                 "FSDP YAML (for fsdp) instead of the shipped preset.", advanced=True)


@dataclass
class RunConfig:
    """Everything one training run needs; ``config.yaml`` in a run folder is this, resolved."""

    model: ModelChoice = field(default_factory=ModelChoice)
    data: DataChoice = field(default_factory=DataChoice)
    method: MethodConfig = field(default_factory=MethodConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    # -- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, *, source: str | Path | None = None) -> RunConfig:
        """Build a config from nested dicts; unknown keys and wrong types are a ``ConfigError``."""
        return _build(cls, data or {}, prefix="", source=source)

    def replace(self, dotted: dict[str, Any], *, source: str | Path | None = None) -> RunConfig:
        """A copy with ``{"training.learning_rate": 1e-4, ...}`` applied (values coerced to field types)."""
        data = self.to_dict()
        known = set(all_dotted_keys())
        for key, value in dotted.items():
            if key not in known:
                raise ConfigError(f"unknown setting '{key}'", path=source, field=key,
                                  hint=_did_you_mean(key, sorted(known)))
            *parents, name = key.split(".")
            target = data
            for part in parents:
                target = target[part]
            target[name] = value
        return RunConfig.from_dict(data, source=source)

    def get(self, dotted: str) -> Any:
        """The value at ``section.name`` (or ``section.sub.name``)."""
        obj: Any = self
        for part in dotted.split("."):
            obj = getattr(obj, part)
        return obj


# -- YAML ---------------------------------------------------------------------------------------

def load_config(path: str | Path) -> RunConfig:
    """Read a ``config.yaml``; errors name the file and the key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError("config file not found", path=path,
                          hint="Check the path, or run without a config file.") from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise ConfigError(f"is not UTF-8 text (byte {exc.start} cannot be decoded)", path=path, line=line,
                          hint="Save the file as UTF-8 in your editor.") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the config file ({exc.strerror})", path=path) from None
    import yaml  # here, not at import: the window's first page needs no YAML

    try:
        # libyaml's parser (in PyYAML's wheels): ~10x the pure-Python one, which took ~25 ms a config
        # and so seconds to list a few hundred runs
        data = yaml.load(text, Loader=yaml.CSafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        yaml_line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"is not valid YAML ({getattr(exc, 'problem', exc)})", path=path,
                          line=yaml_line) from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError("must be a mapping of sections (model, data, method, training, output, distributed)",
                          path=path)
    return RunConfig.from_dict(data, source=path)


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write ``config.yaml`` atomically, with a header saying how to rerun it."""
    import yaml

    header = "# Desktop FT run configuration. Rerun with: desktop-ft train config.yaml\n"
    text = header + yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)
    write_text_atomic(Path(path), text)


#: Windows refuses to replace a file another process has open (a reader of status.json): retry
#: this many times, waiting a little longer each time (about 1.5 s in all), then give up
REPLACE_RETRIES = 10


def _replace_with_retry(tmp: str, path: Path) -> None:
    for attempt in range(REPLACE_RETRIES):
        try:
            os.replace(tmp, path)
            return
        except PermissionError:
            if attempt == REPLACE_RETRIES - 1:
                raise
            time.sleep(0.01 * (attempt + 1) ** 1.5)


def write_text_atomic(path: Path, text: str | Iterable[str]) -> None:
    """Write a file so that readers see the old or the new content, never half of it.

    ``text`` may be pieces (a generator), written as they come: a long file is never one string.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if isinstance(text, str):
                fh.write(text)
            else:
                fh.writelines(text)
            fh.flush()
            os.fsync(fh.fileno())
        _replace_with_retry(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- introspection for the CLI and the wizard ------------------------------------------------------

def section_types() -> dict[str, type]:
    hints = typing.get_type_hints(RunConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(RunConfig)}


def all_dotted_keys() -> list[str]:
    """Every setting as ``section.name`` (``method.dpo.beta`` for a nested one), as ``--set`` and YAML use them."""
    return [key for key, _f in _leaf_fields(RunConfig, "")]


def field_info(dotted: str) -> dataclasses.Field:
    """The dataclass field behind a dotted key (its metadata holds help, choices, min, max)."""
    for key, f in _leaf_fields(RunConfig, ""):
        if key == dotted:
            return f
    raise KeyError(dotted)


def _leaf_fields(typ: type, prefix: str) -> list[tuple[str, dataclasses.Field]]:
    hints = _type_hints(typ)
    out: list[tuple[str, dataclasses.Field]] = []
    for f in dataclasses.fields(typ):
        if dataclasses.is_dataclass(hints[f.name]):
            out += _leaf_fields(hints[f.name], f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", f))
    return out


def parse_cli_value(dotted: str, text: str) -> Any:
    """Turn the text of ``--set key=value`` into the field's type (YAML rules: 1e-4, true, null)."""
    import yaml

    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


# -- internals ---------------------------------------------------------------------------------------

@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a config dataclass: resolving the string annotations costs more
    than the rest of loading a config, and listing runs loads hundreds."""
    return typing.get_type_hints(cls)


def _did_you_mean(name: str, candidates: list[str]) -> str:
    return did_you_mean(name, candidates, what="Valid keys")


def _build(cls: type, data: Any, *, prefix: str, source: str | Path | None) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"must be a mapping, got {type(data).__name__}", path=source,
                          field=prefix.rstrip(".") or None)
    hints = _type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            dotted = f"{prefix}{key}"
            candidates = [f"{prefix}{n}" for n in fields] if prefix else list(fields) + all_dotted_keys()
            raise ConfigError(f"unknown key '{dotted}'", path=source, field=dotted,
                              hint=_did_you_mean(dotted, candidates))
    kwargs = {}
    for name, value in data.items():
        typ = hints[name]
        dotted = f"{prefix}{name}"
        if isinstance(typ, type) and dataclasses.is_dataclass(typ):
            kwargs[name] = _build(typ, value if value is not None else {}, prefix=f"{dotted}.", source=source)
        else:
            kwargs[name] = _coerce(value, typ, dotted, source)
    return cls(**kwargs)


def _coerce(value: Any, typ: Any, dotted: str, source: str | Path | None) -> Any:
    """Check ``value`` against a simple type hint, converting where YAML is loose (1 → 1.0)."""
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, dotted, source)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is dict:
        if not isinstance(value, dict):
            raise _type_error(dotted, value, "a mapping", source)
        return {str(k): str(v) for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise _type_error(dotted, value, "a list", source)
        return list(value)
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise _type_error(dotted, value, "true or false", source)
    if typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _type_error(dotted, value, "a whole number", source)
    if typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise _type_error(dotted, value, "a number", source)
    if typ is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise _type_error(dotted, value, "text", source)
    return value


def _type_error(dotted: str, value: Any, expected: str, source: str | Path | None) -> ConfigError:
    return ConfigError(f"'{dotted}' must be {expected}, got {value!r}", path=source, field=dotted)


def validate(config: RunConfig) -> None:
    """Check choices and ranges from the field metadata; raise ``ConfigError`` on the first problem."""
    for dotted, f in _leaf_fields(RunConfig, ""):
        value = config.get(dotted)
        meta = f.metadata
        if value is None or isinstance(value, (dict, list, bool)):
            continue
        if "choices" in meta and value not in meta["choices"]:
            choices = list(map(str, meta["choices"]))
            hint = did_you_mean(str(value), choices, what="Choose one of")
            if hint.startswith("Did"):
                hint += " Choose one of: " + ", ".join(choices) + "."
            raise ConfigError(f"'{dotted}' is {value!r}, which is not one of its choices", field=dotted, hint=hint)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"'{dotted}' is {value}, which is not a number it can use", field=dotted,
                              hint="Give a finite number.")
        if dotted == "training.max_steps" and value == 0:
            raise ConfigError("'training.max_steps' is 0, which would train nothing", field=dotted,
                              hint="Give -1 to train for 'training.epochs', or a number of steps of 1 or more.")
        if isinstance(value, (int, float)):
            if "min" in meta and value < meta["min"]:
                raise ConfigError(f"'{dotted}' is {value}, below its minimum {meta['min']}", field=dotted)
            if "max" in meta and value > meta["max"]:
                raise ConfigError(f"'{dotted}' is {value}, above its maximum {meta['max']}", field=dotted)
