"""Scale-out: the one place that says what a strategy means and how N processes are launched.

Desktop FT never distributes work itself. ``desktop-ft train`` re-executes itself under torchrun
(``python -m torch.distributed.run``) or ``accelerate launch``; inside each process the HF Trainer
(through accelerate) does the data parallelism: DDP over NCCL on GPUs or over gloo on the CPU, FSDP
from an accelerate FSDP config, DeepSpeed ZeRO from a ZeRO JSON. The shipped presets live in
``distributed_presets/`` beside this module; ``distributed.config_file`` points at the user's own.

The engine, the CLI (launch, ``--dry-run``, ``--slurm``), the memory estimate (what is sharded) and
the window all ask this module; none restates it.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop_ft.core.config import RunConfig
from desktop_ft.core.errors import ConfigError
from desktop_ft.core.methods import method_spec

#: set by the launching ``desktop-ft train`` in its workers' environment: which launcher started them
LAUNCHER_ENV = "DESKTOP_FT_LAUNCHER"

PRESETS_DIR = Path(__file__).resolve().parent / "distributed_presets"

WEIGHTS, GRADIENTS, OPTIMIZER = "weights", "gradients", "optimizer"


@dataclass(frozen=True)
class Strategy:
    """What one ``distributed.strategy`` means."""

    name: str
    title: str
    sentence: str
    engine: str  # "ddp" | "fsdp" | "deepspeed"
    shards: frozenset[str]  # which of weights / gradients / optimizer state are split over the processes
    offload: bool  # shards kept in CPU memory
    preset: str | None  # file under distributed_presets/


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("ddp", "DDP", "every process holds the whole model and trains on its own share of each batch; "
             "gradients are averaged", "ddp", frozenset(), False, None),
    Strategy("zero2", "DeepSpeed ZeRO-2", "gradients and optimizer state are split over the GPUs",
             "deepspeed", frozenset({GRADIENTS, OPTIMIZER}), False, "zero2.json"),
    Strategy("zero2_offload", "DeepSpeed ZeRO-2 + CPU offload", "gradients and optimizer state are split "
             "over the GPUs, the optimizer state kept in CPU memory", "deepspeed",
             frozenset({GRADIENTS, OPTIMIZER}), True, "zero2_offload.json"),
    Strategy("zero3", "DeepSpeed ZeRO-3", "weights, gradients and optimizer state are split over the GPUs",
             "deepspeed", frozenset({WEIGHTS, GRADIENTS, OPTIMIZER}), False, "zero3.json"),
    Strategy("zero3_offload", "DeepSpeed ZeRO-3 + CPU offload", "weights, gradients and optimizer state are "
             "split over the GPUs and kept in CPU memory", "deepspeed", frozenset({WEIGHTS, GRADIENTS, OPTIMIZER}),
             True, "zero3_offload.json"),
    Strategy("fsdp", "FSDP", "weights, gradients and optimizer state are split over the GPUs (PyTorch FSDP2)",
             "fsdp", frozenset({WEIGHTS, GRADIENTS, OPTIMIZER}), False, "fsdp.yaml"),
    Strategy("fsdp_offload", "FSDP + CPU offload", "weights, gradients and optimizer state are split over "
             "the GPUs and kept in CPU memory (PyTorch FSDP2)", "fsdp", frozenset({WEIGHTS, GRADIENTS, OPTIMIZER}),
             True, "fsdp_offload.yaml"),
)}


def world_size(config: RunConfig) -> int:
    """Processes in the whole run: per node × nodes."""
    return config.distributed.nproc_per_node * config.distributed.nnodes


def needs_launcher(config: RunConfig) -> bool:
    """More than one process, or a sharding engine (ZeRO/FSDP want a launched process even alone)."""
    return world_size(config) > 1 or STRATEGIES[config.distributed.strategy].engine != "ddp"


def launcher(config: RunConfig) -> str:
    """'torchrun' or 'accelerate' ('auto' is torchrun: it ships with torch)."""
    return "torchrun" if config.distributed.launcher == "auto" else config.distributed.launcher


# -- inside a launched process --------------------------------------------------------------------

def in_launched_process() -> bool:
    """True in a worker that torchrun / accelerate launch started (they set RANK and WORLD_SIZE)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def process_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def process_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_by() -> str | None:
    """The launcher that started this process ('torchrun', 'accelerate'), None for a plain process."""
    if not in_launched_process():
        return None
    return os.environ.get(LAUNCHER_ENV) or "torchrun"


def any_rank(flag: bool, device: Any = None) -> bool:
    """True on every process when ``flag`` is true on any one (an all-reduce MAX; plain ``flag`` alone).

    Stop uses it so that all ranks end after the same step: one rank leaving early would leave the
    others waiting in the next step's gradient all-reduce.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    import torch

    if device is None or dist.get_backend() == "gloo":
        device = "cpu"
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


# -- checks before anything loads -------------------------------------------------------------------

def strategy_file(config: RunConfig) -> Path | None:
    """The DeepSpeed JSON / accelerate FSDP YAML this run uses: the user's file or the shipped preset."""
    d = config.distributed
    strategy = STRATEGIES[d.strategy]
    if d.config_file:
        return Path(d.config_file).expanduser()
    return PRESETS_DIR / strategy.preset if strategy.preset else None


def check_config(config: RunConfig, *, launching: bool = True) -> None:
    """What is wrong with the distributed section whatever machine runs it (ConfigError, one sentence).

    ``launching=False`` where the processes already met (in a rank) or SLURM names the first node:
    then master_addr is not ours to check."""
    d = config.distributed
    strategy = STRATEGIES[d.strategy]
    if d.node_rank >= d.nnodes:
        raise ConfigError(f"'distributed.node_rank' is {d.node_rank}, but there are only {d.nnodes} node(s)",
                          field="distributed.node_rank", hint=f"Use 0 to {d.nnodes - 1}.")
    if d.nnodes > 1 and not config.output.output_dir:
        raise ConfigError("a run on several machines needs 'output.output_dir' on storage every node shares",
                          field="output.output_dir", hint="Pass --output-dir /shared/path/run-name.")
    if launching and d.nnodes > 1 and not d.rdzv_endpoint and d.master_addr in ("127.0.0.1", "localhost"):
        raise ConfigError("on several machines 'distributed.master_addr' must be node 0's address, not "
                          f"{d.master_addr}", field="distributed.master_addr",
                          hint="Pass --master-addr with the first node's host name or IP.")
    if d.rdzv_endpoint and ":" not in d.rdzv_endpoint:
        raise ConfigError(f"'distributed.rdzv_endpoint' is {d.rdzv_endpoint!r}; it needs host:port",
                          field="distributed.rdzv_endpoint", hint="For example node01:29400.")
    if d.config_file:
        path = Path(d.config_file).expanduser()
        want = (".json",) if strategy.engine == "deepspeed" else (".yaml", ".yml")
        if strategy.engine == "ddp":
            raise ConfigError("'distributed.config_file' is set, but strategy 'ddp' reads no config file",
                              field="distributed.config_file",
                              hint="Choose a zero* strategy for a DeepSpeed JSON, fsdp for an accelerate YAML.")
        if not path.is_file():
            raise ConfigError("file not found", path=path, field="distributed.config_file",
                              hint="Give an existing file, or leave it empty for the shipped preset.")
        if path.suffix.lower() not in want:
            kind = "a DeepSpeed JSON" if strategy.engine == "deepspeed" else "an accelerate FSDP YAML"
            raise ConfigError(f"strategy '{d.strategy}' needs {kind}", path=path, field="distributed.config_file")
    method = config.method.method
    if method_spec(method).quantized_bits and WEIGHTS in strategy.shards:
        raise ConfigError(f"'distributed.strategy' {d.strategy} shards the weights, which a quantised "
                          f"model ({method}) cannot be", field="distributed.strategy",
                          hint="Use --strategy ddp or zero2 with QLoRA, or --method lora.")


def check_machine(config: RunConfig, *, cuda_devices: int, deepspeed_installed: bool | None = None) -> None:
    """What keeps this strategy from running on this machine, said before anything loads."""
    d = config.distributed
    strategy = STRATEGIES[d.strategy]
    if deepspeed_installed is None:
        deepspeed_installed = importlib.util.find_spec("deepspeed") is not None
    if strategy.engine != "ddp" and cuda_devices == 0:
        raise ConfigError(f"'distributed.strategy' is {d.strategy}, and {strategy.title} needs NVIDIA GPUs, "
                          "but none was found", field="distributed.strategy",
                          hint="Use --strategy ddp here (gloo on the CPU), or run on a CUDA machine.")
    if strategy.engine == "deepspeed" and not deepspeed_installed:
        raise ConfigError(f"'distributed.strategy' is {d.strategy}, which needs DeepSpeed, and it is not "
                          "installed", field="distributed.strategy",
                          hint="Install it with: pip install deepspeed, or use --strategy fsdp.")
    if cuda_devices and d.nproc_per_node > cuda_devices:
        raise ConfigError(f"'distributed.nproc_per_node' is {d.nproc_per_node}, but this machine has "
                          f"{cuda_devices} GPU(s)", field="distributed.nproc_per_node",
                          hint=f"Use --nproc-per-node {cuda_devices} (one process per GPU).")
    if d.launcher == "accelerate" and importlib.util.find_spec("accelerate") is None:  # pragma: no cover
        raise ConfigError("'distributed.launcher' is accelerate, which is not installed",
                          field="distributed.launcher", hint="pip install accelerate, or use --launcher torchrun.")


# -- what the Trainer gets ---------------------------------------------------------------------------

def trainer_args(config: RunConfig, device: str) -> dict[str, Any]:
    """TrainingArguments keywords for this strategy (empty for one plain process)."""
    out: dict[str, Any] = {}
    strategy = STRATEGIES[config.distributed.strategy]
    if device == "cpu" and process_world_size() > 1:
        out["ddp_backend"] = "gloo"  # NCCL needs GPUs; gloo runs DDP over the CPU
    if strategy.engine == "deepspeed":
        out["deepspeed"] = str(strategy_file(config))
    elif strategy.engine == "fsdp":
        out["fsdp"] = True
        out["fsdp_config"] = fsdp_trainer_config(strategy_file(config))  # type: ignore[arg-type]
    return out


def fsdp_trainer_config(path: Path) -> dict[str, Any]:
    """An accelerate FSDP YAML's ``fsdp_config`` as the Trainer's ``fsdp_config`` (it strips ``fsdp_``)."""
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not isinstance(data.get("fsdp_config"), dict):
        raise ConfigError("has no 'fsdp_config' mapping (an accelerate FSDP config is expected)", path=path,
                          field="distributed.config_file")
    fsdp = dict(data["fsdp_config"])
    # accelerate calls it fsdp_offload_params; the Trainer's FSDP settings call it cpu_offload
    for key in ("fsdp_offload_params", "offload_params"):
        if key in fsdp:
            fsdp["cpu_offload"] = bool(fsdp.pop(key))
    return fsdp


# -- launch commands -----------------------------------------------------------------------------

def launch_command(config: RunConfig, train_args: list[str], *, node_rank: int | None = None,
                   python: str | None = None, cpu: bool = False) -> list[str]:
    """The command one node runs: the launcher, then ``-m desktop_ft`` with ``train_args``."""
    d = config.distributed
    py = python or sys.executable
    rank = d.node_rank if node_rank is None else node_rank
    if launcher(config) == "accelerate":
        cmd = [py, "-m", "accelerate.commands.launch", "--num_processes", str(world_size(config)),
               "--num_machines", str(d.nnodes), "--machine_rank", str(rank)]
        if d.nnodes > 1 or not _default_endpoint(config):
            host, port = _endpoint(config)
            cmd += ["--main_process_ip", host, "--main_process_port", str(port)]
        if world_size(config) > 1:
            # accelerate's multi-process path is torchrun's (its --cpu path is single-process or
            # MPI); on a CPU the Trainer then picks gloo itself (use_cpu, ddp_backend)
            cmd += ["--multi_gpu"]
        elif cpu:
            cmd += ["--cpu"]
        cmd += ["--dynamo_backend", "no", "--mixed_precision", "no"]
    else:
        cmd = [py, "-m", "torch.distributed.run", "--nproc-per-node", str(d.nproc_per_node)]
        if d.rdzv_endpoint:
            cmd += ["--nnodes", str(d.nnodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", d.rdzv_endpoint,
                    "--rdzv-id", _rdzv_id(config)]
        elif d.nnodes == 1 and _default_endpoint(config):
            cmd += ["--standalone"]  # one machine: a free local port, so two runs never collide
        else:
            cmd += ["--nnodes", str(d.nnodes), "--node-rank", str(rank), "--master-addr", d.master_addr,
                    "--master-port", str(d.master_port)]
    return cmd + ["-m", "desktop_ft", *train_args]


def launch_commands(config: RunConfig, train_args: list[str], *, cpu: bool = False) -> list[list[str]]:
    """One command per node (node 0 first): what ``--dry-run`` prints."""
    return [launch_command(config, train_args, node_rank=r, cpu=cpu) for r in range(config.distributed.nnodes)]


def shell_line(cmd: list[str]) -> str:
    return " ".join(shlex.quote(c) for c in cmd)


def _default_endpoint(config: RunConfig) -> bool:
    d = config.distributed
    return d.master_addr in ("127.0.0.1", "localhost") and d.master_port == 29500 and not d.rdzv_endpoint


def _endpoint(config: RunConfig) -> tuple[str, int]:
    d = config.distributed
    if d.rdzv_endpoint:
        host, _, port = d.rdzv_endpoint.rpartition(":")
        return host, int(port)
    return d.master_addr, d.master_port


def _rdzv_id(config: RunConfig) -> str:
    name = Path(config.output.output_dir or "desktop-ft").name
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:60] or "desktop-ft"


# -- SLURM --------------------------------------------------------------------------------------------

def slurm_script(config: RunConfig, train_args: list[str], *, job_name: str = "desktop-ft",
                 python: str | None = None) -> str:
    """An sbatch script: one task per node (``srun``), each running torchrun for its GPUs; the
    rendezvous is on the first node of the allocation; the run folder must be on shared storage."""
    d = config.distributed
    py = python or sys.executable
    port = d.master_port
    out_dir = config.output.output_dir
    torchrun = [py, "-m", "torch.distributed.run", "--nnodes", str(d.nnodes), "--nproc-per-node",
                str(d.nproc_per_node), "--rdzv-backend", "c10d", "--rdzv-endpoint", "$MASTER_ADDR:$MASTER_PORT",
                "--rdzv-id", "$SLURM_JOB_ID"]
    line = " ".join(shlex.quote(c) if "$" not in c else f'"{c}"' for c in torchrun)
    line += " -m desktop_ft " + " ".join(shlex.quote(a) for a in train_args)
    gpus = f"#SBATCH --gpus-per-node={d.nproc_per_node}\n" if d.strategy != "ddp" or d.nproc_per_node > 1 else ""
    return f"""#!/bin/bash
# Desktop FT: {d.nnodes} node(s) x {d.nproc_per_node} process(es), strategy {d.strategy}.
# Written by 'desktop-ft train --slurm'. Submit with: sbatch {job_name}.sbatch
# The run folder must be on storage every node sees: {out_dir}
# Each node runs one srun task, which starts torchrun for that node's GPUs; torchrun's c10d
# rendezvous meets on the first node of the allocation. Stop with: scancel --signal=INT <jobid>
# (the run saves a checkpoint; continue it with desktop-ft train --resume {out_dir}).
#SBATCH --job-name={job_name}
#SBATCH --nodes={d.nnodes}
#SBATCH --ntasks-per-node=1
{gpus}#SBATCH --cpus-per-task={max(2, 4 * d.nproc_per_node)}
#SBATCH --output={job_name}-%j.out
#SBATCH --signal=INT@120

set -euo pipefail
export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_PORT={port}
export {LAUNCHER_ENV}=torchrun
export OMP_NUM_THREADS=${{OMP_NUM_THREADS:-4}}
mkdir -p {shlex.quote(str(out_dir))}

srun --kill-on-bad-exit=1 bash -c {shlex.quote(line)}
"""


# -- memory: what sharding divides ------------------------------------------------------------------

#: breakdown parts each kind of state lives in (names as core.vram's breakdown uses them)
_PARTS = {WEIGHTS: ("weights", "reference"), GRADIENTS: ("gradients", "optimizer_step"), OPTIMIZER: ("optimizer",)}


def shard_breakdown(breakdown: dict[str, int], strategy: str, num_gpus: int, *,
                    num_layers: int | None = None) -> dict[str, int]:
    """One GPU's share of a single-GPU memory breakdown when ``strategy`` runs on ``num_gpus``.

    DDP divides nothing (every GPU holds the whole run). ZeRO-2 divides gradients and optimizer
    state by N; ZeRO-3 and FSDP divide the weights as well, but each GPU gathers the full weights of
    the layer it computes, and the next one (prefetch): two layers' worth stays whole. The offload
    variants keep the divided state in CPU memory, so it leaves the GPU. Activations and logits
    are per GPU whatever the strategy. The allocator's share follows what is left.
    """
    spec = STRATEGIES[strategy]
    if num_gpus <= 1 and not spec.offload:
        return dict(breakdown)
    n = max(num_gpus, 1)
    out = dict(breakdown)
    for kind in spec.shards:
        for part in _PARTS[kind]:
            if part in out:
                out[part] = 0 if spec.offload and (kind != GRADIENTS) else out[part] // n
    if WEIGHTS in spec.shards and num_layers:
        out["gathered_layers"] = breakdown.get("weights", 0) * min(2, num_layers) // num_layers
    before = sum(v for k, v in breakdown.items() if k not in ("allocator", "runtime"))
    after = sum(v for k, v in out.items() if k not in ("allocator", "runtime"))
    if "allocator" in out and before:
        out["allocator"] = int(breakdown["allocator"] * after / before)
    return out


def shard_suggestion(config: RunConfig, gpus: int) -> tuple[str, dict[str, Any]] | None:
    """'Shard over N GPUs' for a machine with more GPUs than the run uses: FSDP (ships with torch), or
    ZeRO-2 for a quantised model (its weights cannot be sharded) where DeepSpeed is installed."""
    if gpus <= max(world_size(config), 1) and STRATEGIES[config.distributed.strategy].shards:
        return None
    if gpus < 2:
        return None
    strategy = "fsdp"
    if method_spec(config.method.method).quantized_bits:
        if importlib.util.find_spec("deepspeed") is None:
            return None
        strategy = "zero2"
    return (f"Shard over {gpus} GPUs ({STRATEGIES[strategy].title})",
            {"distributed.nproc_per_node": gpus, "distributed.strategy": strategy})
