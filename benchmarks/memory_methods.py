"""Benchmark: the memory estimate against the measured peak of every method, run through the engine.

Each configuration is a real ``desktop-ft train`` in a fresh process, two optimizer steps (the
second holds the optimizer state), on rows long enough that every sequence fills ``max_length``.
The models are random-init and saved in fp32, exactly as the engine loads them (its precision plan
decides the dtypes: fp32 master weights for full fine-tuning; on a GPU a bf16 frozen base under
fp32 adapters) — never pre-cast to bf16, which would measure the estimate's assumption instead of
the engine. Four shapes, so the estimate has to read each family's config.json right:

- ``llama``: gated MLP, GQA, tied embeddings;
- ``gpt_neox``: fused query_key_value with biases, plain GELU MLP with biases, LayerNorms with
  biases, parallel residual, untied ``embed_out``;
- ``phi``: q/k/v/dense with biases, fc1/fc2 MLP, one LayerNorm per layer, untied head with a bias;
- ``gemma``: gated GELU MLP, ``head_dim`` larger than hidden/heads, multi-query attention, tied.

The engine writes ``estimated_memory_bytes`` (the estimate, from the rows as tokenised) and
``peak_memory_bytes`` (CPU: peak RSS since training began; CUDA: ``max_memory_allocated``) to
status.json; this prints ``estimated / peak`` for each. On CUDA the estimate's allocated part
(without the allocator slack and the CUDA context, which ``max_memory_allocated`` does not see)
is compared, and QLoRA / 8-bit LoRA are added.

    python benchmarks/memory_methods.py                 # every method on llama, lora + full on the others
    python benchmarks/memory_methods.py --quick         # lora and full on llama only
    python benchmarks/memory_methods.py --all-shapes    # every method on every shape (slow on a CPU)
    python benchmarks/memory_methods.py --json out.json

Target: every ratio within 0.85-1.15 on the CPU, 0.90-1.10 on a GPU.
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

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

#: shape → transformers config class and its arguments (~40M parameters each, vocab 32000)
SHAPES: dict[str, tuple[str, dict[str, object]]] = {
    "llama": ("LlamaConfig", dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=8,
                                  num_key_value_heads=2, tie_word_embeddings=True)),
    "gpt_neox": ("GPTNeoXConfig", dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=6,
                                       num_attention_heads=8, rotary_pct=0.25, use_parallel_residual=True,
                                       tie_word_embeddings=False)),
    "phi": ("PhiConfig", dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=6, num_attention_heads=8,
                              partial_rotary_factor=0.5, tie_word_embeddings=False)),
    "gemma": ("GemmaConfig", dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=4,
                                  num_key_value_heads=1, head_dim=192, tie_word_embeddings=True)),
}
VOCAB = 32000

#: name → (method, task, --set overrides); every run: batch 2, max_length 256, 2 steps, no eval/checkpoints
METHODS: list[tuple[str, str, str, dict[str, object]]] = [
    ("lora", "lora", "sft", {}),
    ("lora ckpt", "lora", "sft", {"training.gradient_checkpointing": True}),
    ("dora", "dora", "sft", {}),
    ("full", "full", "sft", {"training.learning_rate": 2e-5}),
    ("prompt_tuning", "prompt_tuning", "sft", {"training.learning_rate": 3e-2}),
    ("prefix_tuning", "prefix_tuning", "sft", {"training.learning_rate": 1e-2}),
    ("lora dpo", "lora", "dpo", {"training.learning_rate": 5e-5}),
    ("full dpo", "full", "dpo", {"training.learning_rate": 5e-7}),
]
GPU_ONLY = [("qlora", "qlora", "sft", {}), ("lora_8bit", "lora_8bit", "sft", {})]


def build_tokenizer(folder: Path) -> None:
    """A 512-token byte-level BPE with a ChatML template, trained on the sample data."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [m["content"] for line in SAMPLE.read_text(encoding="utf-8").splitlines()
             for m in json.loads(line)["messages"]]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=512, special_tokens=["<|endoftext|>", "<|im_start|>",
                                                                                       "<|im_end|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")
    fast.chat_template = CHATML
    fast.save_pretrained(folder)


def build_model(shape: str, folder: Path) -> Path:
    """A random-init model of ``shape``, saved in fp32 beside a copy of the tokenizer."""
    import shutil

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tok_dir = folder.parent / "tokenizer"
    if not tok_dir.exists():
        build_tokenizer(tok_dir)
    for f in tok_dir.iterdir():
        shutil.copy(f, folder / f.name)
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    cls_name, kwargs = SHAPES[shape]
    config = getattr(transformers, cls_name)(vocab_size=VOCAB, max_position_embeddings=2048,
                                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                             pad_token_id=tokenizer.pad_token_id, **kwargs)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(folder)
    return folder


def long_rows(path: Path, *, preference: bool, rows: int = 16, turns: int = 12) -> Path:
    """Chats (or preference pairs) long enough that every sequence is cut at max_length."""
    samples = [json.loads(line)["messages"] for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(rows):
            picked = [samples[(i * turns + j) % len(samples)] for j in range(turns)]
            answer = "\n\n".join(m[-1]["content"] for m in picked)
            question = picked[0][0]["content"]
            if preference:
                worse = "\n\n".join(m[-1]["content"] for m in reversed(picked))
                row = {"prompt": question, "chosen": answer, "rejected": worse}
            else:
                row = {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
            fh.write(json.dumps(row) + "\n")
    return path


def run_one(label: str, model: Path, method: str, task: str, overrides: dict[str, object], data: Path,
            out: Path) -> dict[str, object]:
    cmd = [sys.executable, "-m", "desktop_ft", "train", "--model", str(model), "--data", str(data),
           "--output-dir", str(out), "--method", method, "--task", task, "--max-steps", "2",
           "--set", "training.batch_size=2", "--set", "training.max_length=256", "--set", "data.validation_fraction=0",
           "--set", "training.save_steps=1000", "--set", "training.logging_steps=1", "--json-events"]
    for key, value in overrides.items():
        cmd += ["--set", f"{key}={json.dumps(value)}"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.monotonic() - t0
    status_path = out / "status.json"
    status = json.loads(status_path.read_text()) if status_path.exists() else {}
    if proc.returncode != 0 or status.get("state") != "finished":
        tail = (status.get("error") or proc.stderr.strip().splitlines()[-1:] or ["failed"])
        return {"name": label, "error": tail if isinstance(tail, str) else tail[-1]}
    return {"name": label, "estimated": status.get("estimated_memory_bytes"),
            "measured": status.get("peak_memory_bytes"), "device": status.get("device"), "wall_s": round(wall, 1)}


def allocated_part(config_path: Path, device: str) -> int:
    """On CUDA, the estimate without allocator slack and the CUDA context (what max_memory_allocated sees)."""
    from desktop_ft.core import vram
    from desktop_ft.core.config import load_config
    from desktop_ft.core.lengths import padded_length

    config = load_config(config_path)
    est = vram.estimate_for_config(config, device=device, suggest=False,
                                   lengths=[padded_length(None, config.training.max_length)])
    return est.total_bytes - est.breakdown.get("allocator", 0) - est.breakdown.get("runtime", 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="lora and full on the llama shape only")
    parser.add_argument("--all-shapes", action="store_true", help="every method on every shape")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    import torch

    gpu = torch.cuda.is_available()
    methods = METHODS + (GPU_ONLY if gpu else [])
    plan: list[tuple[str, tuple[str, str, str, dict[str, object]]]] = []
    for shape in SHAPES:
        for m in methods:
            if args.quick and (shape != "llama" or m[0] not in ("lora", "full")):
                continue
            if shape != "llama" and not args.all_shapes and m[0] not in ("lora", "full"):
                continue
            plan.append((shape, m))
    # the runs that say most first (each method, each shape), so a run cut short still covers them
    order = [("llama", "full"), ("llama", "prompt_tuning"), ("llama", "prefix_tuning"), ("gpt_neox", "full"),
             ("phi", "full"), ("gemma", "full"), ("llama", "lora"), ("gpt_neox", "lora"), ("phi", "lora"),
             ("gemma", "lora"), ("llama", "dora"), ("llama", "lora dpo"), ("llama", "full dpo")]
    plan.sort(key=lambda item: order.index((item[0], item[1][0])) if (item[0], item[1][0]) in order else len(order))
    results = []
    lo, hi = (0.90, 1.10) if gpu else (0.85, 1.15)
    with tempfile.TemporaryDirectory(prefix="dft-bench-methods-") as tmp:
        root = Path(tmp)
        chats = long_rows(root / "chats.jsonl", preference=False)
        pairs = long_rows(root / "pairs.jsonl", preference=True)
        models: dict[str, Path] = {}
        print(f"device: {'cuda ' + torch.cuda.get_device_name(0) if gpu else 'cpu'}; batch 2 × 256 tokens, 2 steps")
        print(f"{'shape':9s} {'method':15s} {'estimate':>10s} {'peak':>10s} {'est/peak':>8s}")
        for shape, (label, method, task, overrides) in plan:
            if shape not in models:
                models[shape] = build_model(shape, root / "models" / shape)
            out = root / "runs" / f"{shape}-{label.replace(' ', '_')}"
            r = run_one(label, models[shape], method, task, overrides, pairs if task == "dpo" else chats, out)
            r["shape"] = shape
            results.append(r)
            if "error" in r:
                print(f"{shape:9s} {label:15s} FAILED: {r['error']}", flush=True)
                continue
            est = int(r["estimated"])
            if r["device"] == "cuda":
                est = allocated_part(out / "config.yaml", "cuda")
                r["estimated_allocated"] = est
            r["ratio"] = est / int(r["measured"])
            print(f"{shape:9s} {label:15s} {est / 2**20:9.0f}M {int(r['measured']) / 2**20:9.0f}M "
                  f"{r['ratio']:8.2f}", flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=2))
    ok = [r for r in results if "ratio" in r]
    within = sum(1 for r in ok if lo <= r["ratio"] <= hi)
    print(f"{within} of {len(ok)} within ±{round((hi - 1) * 100)}% ({len(results) - len(ok)} failed)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if ok and within == len(ok) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
