"""The distributed section: strategies, checks, launch commands, SLURM script, presets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from desktop_ft.core import distributed
from desktop_ft.core.config import RunConfig, load_config, save_config
from desktop_ft.core.errors import ConfigError


def cfg(**dotted) -> RunConfig:
    return RunConfig().replace({f"distributed.{k}" if "." not in k else k: v for k, v in dotted.items()})


def test_the_same_config_yaml_runs_on_one_or_many_processes(tmp_path: Path) -> None:
    one = RunConfig()
    assert distributed.world_size(one) == 1 and not distributed.needs_launcher(one)
    save_config(one.replace({"distributed.nproc_per_node": 4, "distributed.nnodes": 2}), tmp_path / "c.yaml")
    many = load_config(tmp_path / "c.yaml")
    assert distributed.world_size(many) == 8 and distributed.needs_launcher(many)
    assert many.replace({"distributed.nproc_per_node": 1, "distributed.nnodes": 1}).to_dict() == one.to_dict()


def test_every_strategy_has_its_preset_shipped_and_readable() -> None:
    for name, strategy in distributed.STRATEGIES.items():
        path = distributed.strategy_file(cfg(strategy=name))
        if strategy.engine == "ddp":
            assert path is None
            continue
        assert path.is_file() and path.parent == distributed.PRESETS_DIR
        if strategy.engine == "deepspeed":
            zero = json.loads(path.read_text())["zero_optimization"]
            assert zero["stage"] == (3 if distributed.WEIGHTS in strategy.shards else 2)
            assert ("offload_optimizer" in zero) == strategy.offload
        else:
            accel = yaml.safe_load(path.read_text())
            assert accel["distributed_type"] == "FSDP"  # a valid accelerate config as well
            fsdp = distributed.fsdp_trainer_config(path)
            assert fsdp["cpu_offload"] == strategy.offload and "offload_params" not in fsdp


def test_presets_are_package_data() -> None:
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"desktop_ft.core" = ["distributed_presets/*.json", "distributed_presets/*.yaml"]' in text
    assert str(distributed.PRESETS_DIR).startswith(str(Path(distributed.__file__).parent))


def test_trainer_args_follow_the_strategy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert distributed.trainer_args(cfg(nproc_per_node=2), "cpu") == {"ddp_backend": "gloo"}
    assert distributed.trainer_args(cfg(nproc_per_node=2), "cuda") == {}
    z3 = distributed.trainer_args(cfg(nproc_per_node=2, strategy="zero3"), "cuda")
    assert z3 == {"deepspeed": str(distributed.PRESETS_DIR / "zero3.json")}
    fsdp = distributed.trainer_args(cfg(nproc_per_node=2, strategy="fsdp_offload"), "cuda")
    assert fsdp["fsdp"] is True and fsdp["fsdp_config"]["cpu_offload"] is True


def test_strategies_that_cannot_run_here_are_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match="needs NVIDIA GPUs.*--strategy ddp"):
        distributed.check_machine(cfg(strategy="fsdp"), cuda_devices=0)
    with pytest.raises(ConfigError, match="needs DeepSpeed.*pip install deepspeed"):
        distributed.check_machine(cfg(strategy="zero3"), cuda_devices=8, deepspeed_installed=False)
    with pytest.raises(ConfigError, match="has 2 GPU.*--nproc-per-node 2"):
        distributed.check_machine(cfg(nproc_per_node=4), cuda_devices=2)
    distributed.check_machine(cfg(nproc_per_node=2), cuda_devices=0)  # gloo on the CPU
    distributed.check_machine(cfg(nproc_per_node=8, strategy="zero3"), cuda_devices=8, deepspeed_installed=True)


def test_topology_mistakes_are_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="node_rank.*only 2 node"):
        distributed.check_config(cfg(nnodes=2, node_rank=2, master_addr="n0", **{"output.output_dir": "/s/r"}))
    with pytest.raises(ConfigError, match="shares"):
        distributed.check_config(cfg(nnodes=2, master_addr="n0"))
    with pytest.raises(ConfigError, match="node 0's address"):
        distributed.check_config(cfg(nnodes=2, **{"output.output_dir": "/s/r"}))
    with pytest.raises(ConfigError, match="file not found"):
        distributed.check_config(cfg(strategy="zero2", config_file=str(tmp_path / "nope.json")))
    (tmp_path / "mine.yaml").write_text("fsdp_config: {}\n")
    with pytest.raises(ConfigError, match="DeepSpeed JSON"):
        distributed.check_config(cfg(strategy="zero2", config_file=str(tmp_path / "mine.yaml")))
    with pytest.raises(ConfigError, match="quantised"):
        distributed.check_config(cfg(strategy="fsdp", **{"method.method": "qlora"}))
    distributed.check_config(cfg(strategy="zero2", **{"method.method": "qlora"}))


def test_user_strategy_file_replaces_the_preset(tmp_path: Path) -> None:
    mine = tmp_path / "ds.json"
    mine.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    config = cfg(strategy="zero3", config_file=str(mine))
    distributed.check_config(config)
    assert distributed.strategy_file(config) == mine


def test_single_node_command_uses_a_free_port_and_multi_node_commands_meet_on_node_0() -> None:
    one = distributed.launch_command(cfg(nproc_per_node=2), ["train", "c.yaml"], python="py")
    assert one == ["py", "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
                   "-m", "desktop_ft", "train", "c.yaml"]
    multi = cfg(nproc_per_node=8, nnodes=2, master_addr="node0", master_port=29600,
                **{"output.output_dir": "/shared/run"})
    cmds = distributed.launch_commands(multi, ["train", "c.yaml"])
    assert len(cmds) == 2
    for rank, cmd in enumerate(cmds):
        line = distributed.shell_line(cmd)
        assert (f"--nnodes 2 --node-rank {rank} --master-addr node0 --master-port 29600 -m desktop_ft train c.yaml"
                in line)
    rdzv = distributed.launch_command(cfg(nnodes=2, rdzv_endpoint="head:29400", **{"output.output_dir": "/s/x"}),
                                      ["train"], python="py")
    assert "--rdzv-backend c10d --rdzv-endpoint head:29400 --rdzv-id x" in " ".join(rdzv)


def test_accelerate_command() -> None:
    cmd = distributed.launch_command(cfg(nproc_per_node=2, launcher="accelerate"), ["train"], python="py", cpu=True)
    assert cmd[:3] == ["py", "-m", "accelerate.commands.launch"]
    line = " ".join(cmd)
    # several processes go through accelerate's torchrun path even on a CPU (its --cpu path is one process)
    assert "--num_processes 2 --num_machines 1 --machine_rank 0" in line and "--multi_gpu" in line
    assert "--cpu" not in line
    assert line.endswith("-m desktop_ft train")
    multi = distributed.launch_command(cfg(nproc_per_node=4, nnodes=2, node_rank=1, master_addr="n0",
                                           launcher="accelerate", **{"output.output_dir": "/s/r"}), ["train"])
    assert "--num_processes 8 --num_machines 2 --machine_rank 1 --main_process_ip n0 --main_process_port 29500" \
        in " ".join(multi)


def test_slurm_script_is_valid_bash_with_one_srun_per_node(tmp_path: Path) -> None:
    config = cfg(nproc_per_node=4, nnodes=3, strategy="zero3", **{"output.output_dir": "/shared/runs/big"})
    text = distributed.slurm_script(config, ["train", "config.yaml", "--nnodes", "3"], job_name="big", python="py")
    path = tmp_path / "big.sbatch"
    path.write_text(text)
    subprocess.run(["bash", "-n", str(path)], check=True)
    assert "#SBATCH --nodes=3" in text and "#SBATCH --ntasks-per-node=1" in text
    assert "#SBATCH --gpus-per-node=4" in text
    assert len([ln for ln in text.splitlines() if ln.startswith("srun ")]) == 1
    assert "head -n 1" in text  # rendezvous on the first node of the allocation
    assert "--nnodes 3 --nproc-per-node 4 --rdzv-backend c10d" in text
    assert "$MASTER_ADDR:$MASTER_PORT" in text and "/shared/runs/big" in text


def test_any_rank_is_the_flag_itself_without_a_process_group() -> None:
    assert distributed.any_rank(True) is True and distributed.any_rank(False) is False


def test_in_launched_process_reads_the_launchers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert not distributed.in_launched_process() and distributed.launched_by() is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv(distributed.LAUNCHER_ENV, "accelerate")
    assert distributed.in_launched_process() and distributed.process_rank() == 1
    assert distributed.launched_by() == "accelerate"
    assert sys.modules["desktop_ft.core.distributed"] is distributed


# -- the estimate knows the strategy ------------------------------------------------------------------

def _estimate(strategy: str, gpus: int, **dotted):
    from desktop_ft.core import vram
    from desktop_ft.core.hardware import gpu

    config = RunConfig().replace({"model.name": "Qwen/Qwen2.5-7B-Instruct", "method.method": "full",
                                  "distributed.nproc_per_node": gpus, "distributed.strategy": strategy, **dotted})
    return vram.estimate_for_config(config, hardware=gpu(80), device="cuda", suggest=False)


def test_sharding_divides_what_each_strategy_shards() -> None:
    one = _estimate("ddp", 1).breakdown
    ddp = _estimate("ddp", 8).breakdown
    zero2 = _estimate("zero2", 8).breakdown
    zero3 = _estimate("zero3", 8).breakdown
    fsdp = _estimate("fsdp", 8).breakdown
    assert ddp == one  # DDP: every GPU holds everything
    assert zero2["weights"] == one["weights"]
    assert zero2["optimizer"] == one["optimizer"] // 8 and zero2["gradients"] == one["gradients"] // 8
    assert zero3["weights"] == one["weights"] // 8 and zero3["optimizer"] == one["optimizer"] // 8
    assert 0 < zero3["gathered_layers"] < one["weights"] / 8  # the two layers being gathered stay whole
    assert fsdp == zero3
    for b in (zero2, zero3):
        assert b["activations"] == one["activations"] and b["logits"] == one["logits"]  # per GPU anyway
    assert sum(one.values()) > sum(zero2.values()) > sum(zero3.values())


def test_offload_moves_the_shards_off_the_gpu() -> None:
    z3 = _estimate("zero3", 4).breakdown
    off = _estimate("zero3_offload", 4).breakdown
    assert off["weights"] == 0 and off["optimizer"] == 0 and off["gradients"] == z3["gradients"]
    assert _estimate("zero2_offload", 4).breakdown["optimizer"] == 0


def test_cli_estimate_num_gpus_and_strategy() -> None:
    from desktop_ft.cli import main

    import contextlib
    import io

    def total(*flags: str) -> int:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main(["estimate", "Qwen/Qwen2.5-7B-Instruct", "--method", "full", "--gpu-memory", "80",
                         "--json", *flags]) == 0
        return json.loads(buf.getvalue())["total_bytes"]

    single = total()
    assert total("--num-gpus", "8", "--strategy", "ddp") == single
    assert total("--num-gpus", "8", "--strategy", "zero3") < total("--num-gpus", "2", "--strategy", "zero3") < single


def test_suggestions_offer_sharding_when_more_gpus_are_present() -> None:
    from desktop_ft.core import vram
    from desktop_ft.core.hardware import Gpu, Hardware

    card = Gpu("GPU", 80 * vram.GiB, 80 * vram.GiB, (8, 0))
    four = Hardware(gpus=[card] * 4, bf16=True, bitsandbytes=True)
    config = RunConfig().replace({"model.name": "Qwen/Qwen2.5-7B-Instruct", "method.method": "full",
                                  "training.gradient_checkpointing": True})
    result = vram.estimate_for_config(config, hardware=four, device="cuda")
    assert result.verdict == "does_not_fit"
    shard = [s for s in result.suggestions if "distributed.strategy" in s.overrides]
    assert shard and shard[0].title.startswith("Shard over 4 GPUs")
    assert shard[0].overrides == {"distributed.nproc_per_node": 4, "distributed.strategy": "fsdp"}
    assert shard[0].total_bytes <= 0.9 * 80 * vram.GiB
    one = Hardware(gpus=[card], bf16=True, bitsandbytes=True)
    assert not [s for s in vram.estimate_for_config(config, hardware=one, device="cuda").suggestions
                if "distributed.strategy" in s.overrides]
