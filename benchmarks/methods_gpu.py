"""LoRA, QLoRA, full fine-tuning and DPO (+ full DPO, 8-bit LoRA, DoRA) through the engine, ~10 steps each.

For a GPU machine with no network: the model is a local Hugging Face folder (``--model``), the
built-in SmolLM2 when it is installed, or else a random-init Llama of SmolLM2-135M's shape with a
small tokenizer trained here on the sample data (the loss still falls on the toy data, which is
all this checks). Prints, per method, the loss first → last, peak memory and tokens/s, with the
LoRA run as the baseline for the ratios; writes ``methods_gpu.json`` to ``$OUT`` when it is set.

    python benchmarks/methods_gpu.py                      # GPU: lora, qlora, full, dpo (< 4 min on an H100)
    python benchmarks/methods_gpu.py --model /path/SmolLM2-135M-Instruct
    python benchmarks/methods_gpu.py --cpu-smoke          # CPU: tiny model, 3 steps, QLoRA/8-bit skipped
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from desktop_ft import resources  # noqa: E402
from desktop_ft.core.config import RunConfig  # noqa: E402

SAMPLE = resources.sample_dataset()

#: name → (method, task, learning rate); DPO runs on LoRA, its reference the adapter-disabled base
RUNS = {
    "lora": ("lora", "sft", 2e-4),
    "qlora": ("qlora", "sft", 2e-4),
    "full": ("full", "sft", 2e-5),
    "dpo": ("lora", "dpo", 5e-5),
    "dpo_full": ("full", "dpo", 5e-6),
    "lora_8bit": ("lora_8bit", "sft", 2e-4),
    "dora": ("dora", "sft", 2e-4),
}


def build_model(folder: Path, *, tiny: bool) -> Path:
    """A random-init Llama (SmolLM2-135M's shape, or 2 tiny layers) and a BPE tokenizer with a chat template."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = [m["content"] for line in SAMPLE.read_text(encoding="utf-8").splitlines()
             for m in json.loads(line)["messages"]]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=512 if tiny else 4096, special_tokens=specials,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")
    fast.chat_template = (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
        "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    fast.save_pretrained(folder)
    shape = (dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2) if tiny else
             dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                  num_key_value_heads=3))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), max_position_embeddings=2048, tie_word_embeddings=True,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id, **shape)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def write_data(folder: Path, n: int) -> tuple[Path, Path]:
    """The sample chats, and preference pairs made from them: a format preference.

    chosen: the tutor's answer ("Step 1: … Done in three steps!"); rejected: the same advice as
    one paragraph, without the steps or the closing line. (Rejecting another row's answer, as an
    earlier version did, is not learnable by a random-init model in 10 steps: both answers are
    equally likely to it, and the margin only wanders around 0.)
    """
    import re

    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()[:n]]
    chat = folder / "chat.jsonl"
    chat.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    def plain(answer: str) -> str:
        text = re.sub(r"Step \d+:\s*", "", answer).replace("Done in three steps!", "")
        return " ".join(text.split())

    pref = folder / "pref.jsonl"
    pref.write_text("".join(json.dumps({"prompt": r["messages"][0]["content"],
                                        "chosen": r["messages"][-1]["content"],
                                        "rejected": plain(r["messages"][-1]["content"])}) + "\n"
                            for r in rows), encoding="utf-8")
    return chat, pref


def run_one(name: str, model: str, data: Path, out: Path, *, steps: int, batch: int, max_length: int,
            lr_scale: float) -> dict:
    from desktop_ft.core.engine import train
    from desktop_ft.core.events import Progress, StepLogged

    method, task, lr = RUNS[name]
    config = RunConfig().replace({
        "model.name": model, "data.path": str(data), "output.output_dir": str(out), "method.method": method,
        "method.task": task, "training.max_steps": steps, "training.batch_size": batch,
        "training.max_length": max_length, "training.learning_rate": lr * lr_scale, "training.warmup_ratio": 0.0,
        "training.lr_scheduler": "constant", "training.save_steps": 1000, "data.validation_fraction": 0.0,
    })
    _reset_peak()
    events: list = []
    t0 = time.perf_counter()
    try:
        outcome = train(config, on_event=events.append)
    except Exception as exc:  # noqa: BLE001 - one method failing must not hide the others' numbers
        return {"name": name, "method": method, "task": task, "ok": False,
                "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
    wall = time.perf_counter() - t0
    steps_logged = [e for e in events if isinstance(e, StepLogged)]
    tps = [e.tokens_per_second for e in steps_logged[1:] if e.tokens_per_second]
    status = json.loads((out / "status.json").read_text())
    result = {
        "name": name, "method": method, "task": task, "ok": outcome.state == "finished",
        "steps": outcome.step, "loss_first": steps_logged[0].loss if steps_logged else None,
        "loss_last": steps_logged[-1].loss if steps_logged else None,
        "losses": [round(e.loss, 4) for e in steps_logged],
        "tokens_per_second": statistics.median(tps) if tps else None,
        "peak_memory_bytes": status.get("peak_memory_bytes"), "device": status.get("device"),
        "seconds": round(wall, 1),
        "warnings": [e.message for e in events if isinstance(e, Progress) and e.stage == "warning"],
    }
    extras = [e.extras for e in steps_logged if e.extras and "rewards/margins" in e.extras]
    if extras:
        result["margin_first"], result["margin_last"] = extras[0]["rewards/margins"], extras[-1]["rewards/margins"]
    return result


def _reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a local HF model folder (default: built-in SmolLM2 if "
                        "installed, else a random-init model of its shape)")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny model, 3 steps, no QLoRA: checks the "
                        "script itself on a CPU")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--lr-scale", type=float, default=None, help="multiply the learning rates (default 1 "
                        "for a real model, 20 for the random-init one, so 10 steps show the loss falling)")
    parser.add_argument("--only", default=None, help="comma-separated subset of " + ",".join(RUNS))
    args = parser.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.cpu_smoke:
        print("No CUDA GPU here; use --cpu-smoke to check the script on the CPU.", file=sys.stderr)
        return 2
    names = args.only.split(",") if args.only else list(RUNS)
    if args.cpu_smoke:
        names = [n for n in names if RUNS[n][0] not in ("qlora", "lora_8bit")]  # bitsandbytes needs CUDA
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    steps = args.steps or (3 if args.cpu_smoke else 10)
    batch, max_length = (2, 128) if args.cpu_smoke else (8, 512)

    work = Path(tempfile.mkdtemp(prefix="methods-gpu-"))
    model = args.model
    built = False
    if model is None:
        from desktop_ft.core.errors import UserError
        from desktop_ft.core.models import resolve_model

        try:
            model = "default" if not args.cpu_smoke else None
            if model:
                resolve_model(model)
        except UserError:
            model = None
        if model is None:
            model = str(build_model(work / "model", tiny=args.cpu_smoke))
            built = True
    lr_scale = args.lr_scale if args.lr_scale is not None else (20.0 if built else 1.0)
    chat, pref = write_data(work, 64 if args.cpu_smoke else 220)
    device = torch.cuda.get_device_name(0) if cuda and not args.cpu_smoke else "cpu"
    print(f"device: {device}; model: {model}; {steps} steps, batch {batch}, max length {max_length}, "
          f"learning rates ×{lr_scale:g}", flush=True)

    results = []
    for name in names:
        data = pref if RUNS[name][1] == "dpo" else chat
        t0 = time.perf_counter()
        r = run_one(name, model, data, work / f"run-{name}", steps=steps, batch=batch, max_length=max_length,
                    lr_scale=lr_scale)
        results.append(r)
        print(_line(r, results[0]), flush=True)
        if not r["ok"]:
            print(r.get("traceback", ""), file=sys.stderr)
        print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)

    report = {"device": device, "model": model, "steps": steps, "batch_size": batch, "max_length": max_length,
              "lr_scale": lr_scale, "torch": torch.__version__, "results": results}
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "methods_gpu.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        print(f"wrote {Path(out) / 'methods_gpu.json'}")
    return 0 if all(r["ok"] for r in results) else 1


def _line(r: dict, base: dict) -> str:
    if not r["ok"]:
        return f"{r['name']:9} FAILED: {r['error'][:300]}"
    mem = (r["peak_memory_bytes"] or 0) / 2**20
    ratio = ""
    if base.get("ok") and base is not r and base.get("peak_memory_bytes") and r.get("tokens_per_second") \
            and base.get("tokens_per_second"):
        ratio = (f"  [vs {base['name']}: memory ×{r['peak_memory_bytes'] / base['peak_memory_bytes']:.2f}, "
                 f"speed ×{r['tokens_per_second'] / base['tokens_per_second']:.2f}]")
    margin = f", margin {r['margin_first']:.3f} → {r['margin_last']:.3f}" if "margin_last" in r else ""
    tps = f"{r['tokens_per_second']:.0f}" if r.get("tokens_per_second") else "?"
    return (f"{r['name']:9} {r['method']}/{r['task']}: loss {r['loss_first']:.3f} → {r['loss_last']:.3f}{margin}; "
            f"peak {mem:.0f} MiB; {tps} tokens/s; {r['seconds']} s{ratio}")


if __name__ == "__main__":
    sys.exit(main())
