"""CPU benchmark: the memory estimate against the measured peak of real training runs.

Trains the built-in SmolLM2-135M-Instruct through the real engine (``desktop-ft train``), each
configuration in a fresh process for two optimizer steps (the second step has the optimizer
state, so it holds the peak), on conversations long enough that every sequence is cut at
``max_length`` (the estimate's worst case). The engine writes ``estimated_memory_bytes`` and the
measured ``peak_memory_bytes`` (peak RSS since training began) into each run's status.json; this
script prints them side by side:

    python benchmarks/memory_cpu.py            # all configurations (10-15 minutes on a busy 2-core machine)
    python benchmarks/memory_cpu.py --quick    # the first two only
    python benchmarks/memory_cpu.py --json out.json

Target: every ratio estimate/measured within 0.85-1.15. Memory is barely affected by other work
on the machine; the seconds per step printed alongside are.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from desktop_ft import resources  # noqa: E402

SAMPLE = resources.sample_dataset()

#: name → --set overrides; every run: the built-in model, 2 steps, no eval, no checkpoints
CONFIGS: list[tuple[str, dict[str, object]]] = [
    ("lora r16 b1 L256", {"training.batch_size": 1, "training.max_length": 256}),
    ("lora r16 b2 L128", {"training.batch_size": 2, "training.max_length": 128}),
    ("lora r16 b1 L512", {"training.batch_size": 1, "training.max_length": 512}),
    ("lora r64 b1 L256", {"training.batch_size": 1, "training.max_length": 256, "method.lora_rank": 64}),
    ("lora r16 b1 L512 ckpt", {"training.batch_size": 1, "training.max_length": 512,
                               "training.gradient_checkpointing": True}),
    ("lora r8 qv nodrop b1 L256", {"training.batch_size": 1, "training.max_length": 256, "method.lora_rank": 8,
                                   "method.target_modules": "q_proj,v_proj", "method.lora_dropout": 0.0}),
]
FULL = ("full b1 L128", {"training.batch_size": 1, "training.max_length": 128, "method.method": "full"})


def long_conversations(path: Path, rows: int = 24, turns: int = 16) -> Path:
    """Chats of ~1,500 tokens made from the sample data (one question, a long answer made of many
    answers), so every example fills max_length and its answer is never cut away entirely."""
    samples = [json.loads(line)["messages"] for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(rows):
            picked = [samples[(i * turns + j) % len(samples)] for j in range(turns)]
            answer = "\n\n".join(m[-1]["content"] for m in picked)
            messages = [picked[0][0], {"role": "assistant", "content": answer}]
            fh.write(json.dumps({"messages": messages}) + "\n")
    return path


def full_supported() -> bool:
    from desktop_ft.core.config import field_info

    choices = field_info("method.method").metadata.get("choices") or []
    return "full" in choices


def run_one(name: str, overrides: dict[str, object], data: Path, workdir: Path) -> dict[str, object]:
    out = workdir / name.replace(" ", "_")
    cmd = [sys.executable, "-m", "desktop_ft", "train", "--model", "default", "--data", str(data),
           "--output-dir", str(out), "--max-steps", "2", "--set", "data.validation_fraction=0",
           "--set", "training.save_steps=1000", "--set", "training.logging_steps=1", "--json-events"]
    for key, value in overrides.items():
        cmd += ["--set", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.monotonic() - t0
    status_path = out / "status.json"
    if proc.returncode != 0 or not status_path.exists():
        return {"name": name, "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"]}
    status = json.loads(status_path.read_text())
    times = [json.loads(line)["time"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if '"event": "StepLogged"' in line]
    return {"name": name, "estimated": status.get("estimated_memory_bytes"),
            "measured": status.get("peak_memory_bytes"),
            "seconds_per_step": (times[-1] - times[0]) if len(times) >= 2 else None, "wall_s": wall,
            "overrides": overrides}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="run the first two configurations only")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    configs = CONFIGS[:2] if args.quick else list(CONFIGS)
    if full_supported() and not args.quick:
        configs.append(FULL)
    results = []
    with tempfile.TemporaryDirectory(prefix="dft-bench-") as tmp:
        data = long_conversations(Path(tmp) / "long.jsonl")
        print(f"{'config':28s} {'estimate':>10s} {'measured':>10s} {'ratio':>6s} {'s/step':>7s}")
        for name, overrides in configs:
            r = run_one(name, overrides, data, Path(tmp))
            results.append(r)
            if "error" in r:
                print(f"{name:28s} FAILED: {r['error']}")
                continue
            est, meas = r["estimated"], r["measured"]
            ratio = est / meas if est and meas else float("nan")
            r["ratio"] = ratio
            sps = r["seconds_per_step"]
            print(f"{name:28s} {est / 2**20:9.0f}M {meas / 2**20:9.0f}M {ratio:6.2f} "
                  f"{sps if sps is not None else float('nan'):7.1f}", flush=True)
    ok = [r for r in results if "ratio" in r]
    within = sum(1 for r in ok if 0.85 <= r["ratio"] <= 1.15)
    print(f"{within} of {len(ok)} configurations within ±15% (target: all)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if ok and within == len(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
