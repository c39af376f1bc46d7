"""``desktop-ft estimate``: how much memory a run will take, whether it fits, and what would fit.

MODEL is a catalog name (``desktop-ft models list``), a Hugging Face id or a folder (config.json
alone is enough). ``--config RUN_DIR/config.yaml`` estimates exactly the run that file describes;
flags still override it. ``--json`` prints one JSON object (the contract the window and scripts
read): ``{"total_bytes", "breakdown", "device", "available_bytes", "fits", "suggestions", ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from desktop_ft.core import distributed
from desktop_ft.core.config import RunConfig, load_config
from desktop_ft.core.errors import ConfigError

#: flag dest → config key
FLAGS = {
    "method": "method.method",
    "task": "method.task",
    "batch_size": "training.batch_size",
    "max_length": "training.max_length",
    "gradient_checkpointing": "training.gradient_checkpointing",
    "lora_rank": "method.lora_rank",
    "optimizer": "training.optimizer",
    "gradient_accumulation_steps": "training.gradient_accumulation_steps",
    "precision": "training.precision",
    "target_modules": "method.target_modules",
    "num_gpus": "distributed.nproc_per_node",
    "strategy": "distributed.strategy",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("estimate", help="estimate a run's peak memory and whether it fits this machine",
                       description="Estimate the peak memory of a training run from the model's config alone, "
                       "say whether it fits, and suggest the nearest settings that do.")
    p.add_argument("model", nargs="?", help="catalog name, Hugging Face id, or model folder (config.json is enough)")
    p.add_argument("--config", metavar="CONFIG_YAML", help="estimate the run this config.yaml describes")
    p.add_argument("--method", help="full, lora or qlora (or any method name Desktop FT knows)")
    p.add_argument("--task", help="sft or dpo (also orpo, kto, pretrain)")
    p.add_argument("--batch-size", type=int, metavar="B")
    p.add_argument("--max-length", type=int, metavar="L")
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--lora-rank", type=int, metavar="R")
    p.add_argument("--optimizer", metavar="NAME", help="adamw_torch, adamw_8bit, paged_adamw_8bit or sgd")
    p.add_argument("--gradient-accumulation-steps", type=int, metavar="N")
    p.add_argument("--precision", help="auto, fp32, fp16 or bf16")
    p.add_argument("--target-modules", metavar="LIST", help="'all-linear' or e.g. 'q_proj,v_proj'")
    p.add_argument("--device", choices=["cuda", "cpu"], help="estimate for this device (default: this machine's best)")
    p.add_argument("--gpu-memory", type=float, metavar="GB",
                   help="judge the fit against a GPU with this many GiB (implies --device cuda)")
    p.add_argument("--num-gpus", type=int, metavar="N", help="estimate one GPU's share of a run on N GPUs "
                   "(sets distributed.nproc_per_node)")
    p.add_argument("--strategy", choices=list(distributed.STRATEGIES),
                   help="how N GPUs share the run: " + "; ".join(f"{k}: {v.sentence}"
                                                                for k, v in distributed.STRATEGIES.items()))
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> RunConfig:
    """The config file (if any), then MODEL, then the flags."""
    config = load_config(args.config) if args.config else RunConfig()
    overrides: dict[str, Any] = {}
    if args.model:
        overrides["model.name"] = args.model
    elif not args.config:
        raise ConfigError("give a MODEL or --config RUN_DIR/config.yaml",
                          hint="For example: desktop-ft estimate Qwen/Qwen2.5-0.5B-Instruct --method qlora.")
    for dest, key in FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            overrides[key] = value
    if "distributed.nproc_per_node" in overrides:
        overrides["distributed.nnodes"] = 1  # --num-gpus counts every GPU of the run
    for key in ("training.batch_size", "training.max_length", "method.lora_rank",
                "training.gradient_accumulation_steps", "distributed.nproc_per_node"):
        if key in overrides and overrides[key] < 1:
            raise ConfigError(f"'{key}' must be at least 1, got {overrides[key]}", field=key)
    # replace() rejects unknown keys; values are checked loosely here, so that methods this
    # estimate knows (qlora, full, dpo…) work even before the config's choices list them
    return config.replace(overrides, source=args.config)


def run(args: argparse.Namespace) -> int:
    from desktop_ft.core import vram

    config = build_config(args)
    device = args.device
    available = None
    if args.gpu_memory is not None:
        if args.gpu_memory <= 0:
            raise ConfigError("--gpu-memory must be a positive number of GiB", field="gpu-memory")
        if device == "cpu":
            raise ConfigError("--gpu-memory describes a GPU, but --device is cpu", field="gpu-memory",
                              hint="Drop one of the two.")
        device = "cuda"
        available = int(args.gpu_memory * vram.GiB)
    hardware = None
    if available is not None:
        from desktop_ft.core.hardware import gpu

        hardware = gpu(args.gpu_memory)
    result = vram.estimate_for_config(config, hardware=hardware, device=device, available_bytes=available)
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
