"""``desktop-ft estimate``: how much memory a run will take, whether it fits, and what would fit.

MODEL is a catalog name (``desktop-ft models list``), a Hugging Face id or a folder (config.json
alone is enough). ``--config RUN_DIR/config.yaml`` estimates exactly the run that file describes;
flags still override it. ``--json`` prints one JSON object (the contract the window and scripts
read): ``{"total_bytes", "breakdown", "device", "available_bytes", "fits", "suggestions", ...}``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from desktop_ft.core import distributed
from desktop_ft.core.config import RunConfig, field_info, load_config, parse_cli_value, validate
from desktop_ft.core.errors import ConfigError

#: the settings the estimate depends on, as flags; type, help and choices come from the config fields
#: (``--set KEY=VALUE`` reaches every other key). Where the run happens (``--device``, ``--gpu-memory``)
#: is a separate group below: the place for scale-out flags (GPU count, sharding strategy).
ESTIMATE_KEYS = ("method.method", "method.task", "training.batch_size", "training.max_length",
                 "training.gradient_checkpointing", "method.lora_rank", "method.lora_dropout",
                 "method.target_modules", "training.optimizer", "training.gradient_accumulation_steps",
                 "training.precision", "training.packing")


def _flag(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("estimate", help="estimate a run's peak memory and whether it fits this machine",
                       description="Estimate the peak memory of a training run from the model's config alone, "
                       "say whether it fits, and suggest the nearest settings that do. With a dataset "
                       "(--data, or the one --config names) batches are as long as its longest row, "
                       "counted as 'desktop-ft data inspect' counts them.")
    p.add_argument("model", nargs="?", help="catalog name, Hugging Face id, or model folder (config.json is enough)")
    p.add_argument("--config", metavar="CONFIG_YAML", help="estimate the run this config.yaml describes (and its data)")
    p.add_argument("--data", metavar="FILE", help=field_info("data.path").metadata["help"]
                   + " The estimate then uses its token lengths.")
    run_settings = p.add_argument_group("the run's settings (as in config.yaml; they override --config)")
    for key in ESTIMATE_KEYS:
        info = field_info(key)
        text = info.metadata["help"]
        if info.metadata.get("choices"):
            text += " One of: " + ", ".join(map(str, info.metadata["choices"])) + "."
        flag = "--" + _flag(key).replace("_", "-")
        if info.type in (bool, "bool"):
            run_settings.add_argument(flag, dest=key, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            run_settings.add_argument(flag, dest=key, default=None, metavar=_flag(key).split("_")[-1].upper(),
                                      help=text)
    run_settings.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                              help="set any other config key, as 'desktop-ft train --set' does")
    where = p.add_argument_group("where it runs")
    where.add_argument("--device", choices=["cuda", "cpu"], help="estimate for this device (default: this "
                       "machine's best)")
    where.add_argument("--gpu-memory", metavar="GiB",
                       help="judge the fit against a GPU with this many GiB (implies --device cuda)")
    where.add_argument("--num-gpus", metavar="N", help="estimate one GPU's share of a run on N GPUs "
                       "(sets distributed.nproc_per_node, one node)")
    where.add_argument("--strategy", choices=list(distributed.STRATEGIES),
                       help="how N GPUs share the run: " + "; ".join(f"{k}: {v.sentence}"
                                                                    for k, v in distributed.STRATEGIES.items()))
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> RunConfig:
    """The config file (if any), then MODEL and --data, then the flags; checked as ``train`` checks it."""
    from desktop_ft.cli.train import collect_set_overrides

    config = load_config(args.config) if args.config else RunConfig()
    overrides: dict[str, Any] = {}
    if args.model:
        overrides["model.name"] = args.model
    elif not args.config:
        raise ConfigError("give a MODEL or --config RUN_DIR/config.yaml",
                          hint="For example: desktop-ft estimate Qwen/Qwen2.5-0.5B-Instruct --method qlora.")
    if args.data:
        overrides["data.path"] = str(args.data)
    for key in ESTIMATE_KEYS:
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value if isinstance(value, bool) else parse_cli_value(key, value)
    overrides.update(collect_set_overrides(args.overrides))
    if args.num_gpus is not None:  # every GPU of the run, on one node
        overrides.update({"distributed.nproc_per_node": parse_cli_value("distributed.nproc_per_node", args.num_gpus),
                          "distributed.nnodes": 1})
    if args.strategy is not None:
        overrides["distributed.strategy"] = args.strategy
    config = config.replace(overrides, source=args.config)
    validate(config)
    return config


def gpu_memory_bytes(text: str | None) -> int | None:
    """``--gpu-memory`` in GiB → bytes; anything but a positive finite number is a ``ConfigError``."""
    if text is None:
        return None
    try:
        gib = float(text)
    except ValueError:
        gib = math.nan
    if not math.isfinite(gib) or gib <= 0:
        raise ConfigError(f"--gpu-memory must be a positive number of GiB, got {text!r}", field="gpu-memory",
                          hint="For example --gpu-memory 24 for a 24 GiB GPU.")
    return int(gib * 1024**3)


def run(args: argparse.Namespace) -> int:
    from desktop_ft.core import vram

    config = build_config(args)
    device = args.device
    available = gpu_memory_bytes(args.gpu_memory)
    hardware = None
    if available is not None:
        if device == "cpu":
            raise ConfigError("--gpu-memory describes a GPU, but --device is cpu", field="gpu-memory",
                              hint="Drop one of the two.")
        device = "cuda"
        from desktop_ft.core.hardware import gpu

        hardware = gpu(available / vram.GiB)
    lengths, data_note = None, None
    if args.data or args.config:
        from desktop_ft.core.lengths import run_lengths

        lengths, data_note = run_lengths(config)
    result = vram.estimate_for_config(config, hardware=hardware, device=device, available_bytes=available,
                                      lengths=lengths)
    if data_note:
        result.notes.insert(0, data_note)
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
        return 0
    print(render(result, config))
    return 0


def render(result: Any, config: RunConfig) -> str:
    from desktop_ft.core.vram import human_bytes

    lines = [f"{config.model.name}: {config.method.method} {config.method.task} on {result.device} "
             f"({result.dtype}), {result.tokens_per_batch} tokens per batch",
             f"  peak memory  {human_bytes(result.total_bytes)}"]
    for name, value in result.breakdown.items():
        if value:
            lines.append(f"    {name:<15s}{human_bytes(value):>12s}")
    if result.available_bytes is None:
        lines.append(f"  no {result.device} device here to compare with (try --gpu-memory GB)")
    else:
        words = {"fits": "fits", "tight": "fits, but tightly", "does_not_fit": "does NOT fit"}[result.verdict]
        lines.append(f"  {words}: {human_bytes(result.available_bytes)} available")
    for note in result.notes:
        lines.append(f"  note: {note}")
    if result.suggestions:
        lines.append("  settings that fit:")
        for s in result.suggestions:
            flags = " ".join(f"--set {k}={v}" for k, v in s.overrides.items())
            lines.append(f"    {s.title}: {human_bytes(s.total_bytes)}   ({flags})")
    elif result.verdict == "does_not_fit":
        lines.append("  nothing nearby fits; pick a smaller model")
    return "\n".join(lines)
