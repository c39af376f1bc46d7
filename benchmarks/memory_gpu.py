"""GPU benchmark: Desktop FT's memory estimate against ``torch.cuda.max_memory_allocated``.

Self-contained: needs torch, transformers and peft (bitsandbytes for QLoRA and 8-bit AdamW, TRL's
tiled log-prob head when TRL is installed); no network, no datasets. Each configuration builds a
random-initialised model from the catalog's config numbers directly on the GPU, runs three real
optimizer steps on random token ids at batch × length, and measures the peak. SFT uses the same
loss head as Desktop FT's trainers (TRL's tiled log-probs; without TRL, a token-chunked cross
entropy whose size the estimate is told about). DPO runs chosen + rejected in one batch and the
reference pass under ``no_grad`` with the adapter switched off (full: a frozen copy).

    python benchmarks/memory_gpu.py                 # all configurations, < 6 minutes on an H100
    python benchmarks/memory_gpu.py --only qwen2.5-0.5b
    python benchmarks/memory_gpu.py --dry-run       # tiny models on the CPU: checks the script only

One line per configuration: estimate (allocated part: total minus CUDA context and allocator
slack), measured max allocated, ratio; and the full estimate against max reserved + context.
Results go to $OUT/memory_gpu.json (or ./memory_gpu.json).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import os
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from desktop_ft.core import architecture, models, vram  # noqa: E402  (pure Python: no torch at import)

# (catalog name, method, task, batch, length, gradient checkpointing, optimizer)
CONFIGS = [
    ("qwen2.5-0.5b", "lora", "sft", 4, 1024, False, "adamw_torch"),
    ("qwen2.5-0.5b", "lora", "sft", 8, 2048, True, "adamw_torch"),
    ("qwen2.5-0.5b", "full", "sft", 4, 1024, False, "adamw_torch"),
    ("qwen2.5-0.5b", "lora", "dpo", 2, 1024, False, "adamw_torch"),
    ("llama-3.2-1b", "lora", "sft", 4, 2048, False, "adamw_torch"),
    ("llama-3.2-1b", "lora", "sft", 8, 2048, True, "adamw_torch"),
    ("llama-3.2-1b", "qlora", "sft", 8, 2048, True, "paged_adamw_8bit"),
    ("llama-3.2-1b", "full", "sft", 4, 2048, True, "adamw_torch"),
    ("llama-3.2-1b", "lora", "dpo", 2, 1024, True, "adamw_torch"),
    ("llama-3.2-1b", "full", "dpo", 1, 1024, True, "adamw_torch"),
    ("qwen2.5-1.5b", "lora", "sft", 4, 2048, False, "adamw_torch"),
    ("qwen2.5-1.5b", "qlora", "sft", 4, 2048, True, "paged_adamw_8bit"),
    ("qwen2.5-3b", "qlora", "sft", 4, 2048, True, "paged_adamw_8bit"),
    ("llama-3.1-8b", "qlora", "sft", 2, 2048, True, "paged_adamw_8bit"),
    ("llama-3.1-8b", "lora", "sft", 2, 2048, True, "adamw_torch"),
]
DRY_ARCH = architecture.architecture_from_config({
    "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 1000, "tie_word_embeddings": True,
    "max_position_embeddings": 512})
CHUNK_TOKENS = 1024  # token chunk of the fallback loss head (without TRL)


def hf_config(arch: architecture.Architecture):
    from transformers import AutoConfig

    return AutoConfig.for_model(arch.model_type, hidden_size=arch.hidden_size, num_hidden_layers=arch.num_layers,
                                num_attention_heads=arch.num_heads, num_key_value_heads=arch.num_kv_heads,
                                head_dim=arch.head_dim, intermediate_size=arch.intermediate_size,
                                vocab_size=arch.vocab_size, tie_word_embeddings=arch.tie_embeddings,
                                max_position_embeddings=arch.max_context, use_cache=False)


def quantize_4bit(model, dtype) -> None:
    """Swap the decoder layers' nn.Linear for bitsandbytes NF4 + double quantisation (as from_pretrained
    with BitsAndBytesConfig does; embeddings and the output layer stay in ``dtype``)."""
    import bitsandbytes as bnb
    import torch

    for _name, module in list(model.model.layers.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=dtype, compress_statistics=True, quant_type="nf4",
                                      quant_storage=dtype, device="meta")
                q.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, quant_type="nf4",
                                             compress_statistics=True, quant_storage=dtype).to(child.weight.device)
                if child.bias is not None:
                    q.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
                setattr(module, child_name, q)
                del child
    model.is_loaded_in_4bit = True
    # what peft's prepare_model_for_kbit_training (run by the engine) does: non-4-bit params to fp32
    for param in model.parameters():
        if param.dtype in (torch.float16, torch.bfloat16) and param.__class__.__name__ != "Params4bit":
            param.data = param.data.to(torch.float32)
    gc.collect()
    torch.cuda.empty_cache()


def loss_head(model, use_trl: bool):
    """Per-sequence summed log-probs of the next tokens, the way the trainers compute them."""
    import torch
    import torch.nn.functional as F

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if use_trl:
        from trl.trainer.utils import add_fused_lm_head

        add_fused_lm_head(base, outputs=("log_probs",))

        def logps(ids):
            out = model(input_ids=ids, labels=ids, fused_lm_head=True)
            return out.log_probs.sum(-1)
        return logps

    from torch.utils.checkpoint import checkpoint

    def chunk_logp(h, w, y):
        return -F.cross_entropy((h @ w.t()).float(), y, reduction="none")

    def logps(ids):
        hidden = base.model(input_ids=ids).last_hidden_state[:, :-1]
        targets = ids[:, 1:]
        w = base.lm_head.weight
        flat_h, flat_y = hidden.reshape(-1, hidden.size(-1)), targets.reshape(-1)
        parts = [checkpoint(chunk_logp, h, w, y, use_reentrant=False)
                 for h, y in zip(flat_h.split(CHUNK_TOKENS), flat_y.split(CHUNK_TOKENS))]
        return torch.cat(parts).view(targets.shape).sum(-1)
    return logps


def make_optimizer(params, name: str):
    import torch

    if "8bit" in name:
        import bitsandbytes as bnb

        return (bnb.optim.PagedAdamW8bit if name.startswith("paged") else bnb.optim.AdamW8bit)(params, lr=1e-5)
    if name == "sgd":
        return torch.optim.SGD(params, lr=1e-5)
    return torch.optim.AdamW(params, lr=1e-5)


def run_config(arch, method, task, batch, length, ckpt, optimizer, *, device, use_trl, steps=3):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    cuda = device == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(hf_config(arch), dtype=dtype, attn_implementation="sdpa")
    if method == "qlora":
        quantize_4bit(model, dtype)
    reference = None
    if task == "dpo" and method == "full":
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    if ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if method != "full":
            model.enable_input_require_grads()
    if method != "full":
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
    model.train()
    logps = loss_head(model, use_trl)
    ref_logps = loss_head(reference, use_trl) if reference is not None else None
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], optimizer)
    rows = batch * (2 if task == "dpo" else 1)
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    autocast = torch.autocast("cuda", dtype=dtype) if cuda else contextlib.nullcontext()
    t0 = time.monotonic()
    for _ in range(steps):
        ids = torch.randint(0, arch.vocab_size, (rows, length), device=device)
        with autocast:
            if task == "dpo":
                with torch.no_grad():
                    if reference is not None:
                        ref = ref_logps(ids)
                    else:
                        with model.disable_adapter():
                            ref = logps(ids)
                pol = logps(ids)
                margin = (pol[:batch] - ref[:batch]) - (pol[batch:] - ref[batch:])
                loss = -torch.nn.functional.logsigmoid(0.1 * margin).mean()
            else:
                loss = -logps(ids).sum() / ids.numel()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.monotonic() - t0) / steps
    allocated = torch.cuda.max_memory_allocated() if cuda else None
    reserved = torch.cuda.max_memory_reserved() if cuda else None
    del model, reference, opt, loss
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return allocated, reserved, seconds


def estimate_for(arch, method, task, batch, length, ckpt, optimizer, device, use_trl):
    s = vram.Settings(method=method, task=task, batch_size=batch, max_length=length, gradient_checkpointing=ckpt,
                      lora_rank=16, optimizer=optimizer, padded=False)
    est = vram.estimate(arch, s, device=device)
    if not use_trl:  # the fallback head keeps one chunk's logits (bf16, fp32 copy, log-softmax, grad)
        chunk = min(vram.tokens_per_batch(s), CHUNK_TOKENS) * arch.vocab_size * (2 + 4 + 4 + 4)
        est.breakdown["logits"] = est.breakdown["logits"] - min(vram.tokens_per_batch(s), vram.TRL_TOKEN_TILE) * min(
            arch.vocab_size, vram.TRL_VOCAB_TILE) * 2 + chunk
        est.total_bytes = sum(est.breakdown.values())
    return est


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny models on the CPU (checks the script)")
    parser.add_argument("--only", help="run only configurations whose model name contains this")
    parser.add_argument("--no-trl", action="store_true", help="use the chunked cross-entropy head even if TRL is here")
    parser.add_argument("--budget-s", type=float, default=330, help="skip remaining configs after this many seconds")
    args = parser.parse_args()
    import torch

    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU here; use --dry-run to check the script on the CPU")
        return 2
    try:
        import bitsandbytes  # noqa: F401
        has_bnb = device == "cuda"
    except Exception:
        has_bnb = False
    try:
        from trl.trainer.utils import add_fused_lm_head  # noqa: F401
        use_trl = not args.no_trl
    except Exception:
        use_trl = False
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "cpu (dry run)"
    print(f"device: {gpu}; torch {torch.__version__}; bitsandbytes: {has_bnb}; loss head: "
          f"{'TRL tiled log-probs' if use_trl else f'chunked cross-entropy ({CHUNK_TOKENS} tokens)'}")
    configs = CONFIGS if not args.dry_run else [
        ("dry", "lora", "sft", 2, 64, False, "adamw_torch"), ("dry", "full", "sft", 2, 64, True, "adamw_torch"),
        ("dry", "lora", "dpo", 1, 64, False, "adamw_torch"), ("dry", "full", "dpo", 1, 64, False, "adamw_torch")]
    if args.only:
        configs = [c for c in configs if args.only.lower() in c[0].lower()]
    results = []
    start = time.monotonic()
    print(f"{'model':14s} {'method':6s} {'task':4s} {'b':>2s} {'L':>5s} {'ckpt':4s} {'optim':16s} "
          f"{'est_alloc':>9s} {'max_alloc':>9s} {'ratio':>5s} {'est_total':>9s} {'resv+ctx':>9s} {'ratio':>5s} "
          f"{'s/step':>6s}")
    for name, method, task, batch, length, ckpt, optimizer in configs:
        label = (f"{name:14s} {method:6s} {task:4s} {batch:2d} {length:5d} {'on' if ckpt else 'off':4s} "
                 f"{optimizer:16s}")
        if time.monotonic() - start > args.budget_s:
            print(label + " skipped: time budget used up")
            continue
        if (method == "qlora" or "8bit" in optimizer) and not has_bnb:
            print(label + " skipped: needs bitsandbytes on CUDA")
            continue
        arch = DRY_ARCH if name == "dry" else models.catalog_entry(name).arch
        est = estimate_for(arch, method, task, batch, length, ckpt, optimizer, device, use_trl)
        est_alloc = est.total_bytes - est.breakdown.get("runtime", 0) - est.breakdown.get("allocator", 0)
        try:
            allocated, reserved, seconds = run_config(arch, method, task, batch, length, ckpt, optimizer,
                                                      device=device, use_trl=use_trl)
        except Exception as exc:  # an OOM or a missing feature: report and go on
            if device == "cuda":
                torch.cuda.empty_cache()
            print(label + f" failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
            results.append({"config": label, "error": f"{type(exc).__name__}: {exc}"[:500],
                            "estimate_total": est.total_bytes})
            if os.environ.get("BENCH_DEBUG"):
                traceback.print_exc()
            continue
        gib = 2**30
        if allocated is not None:
            total_measured = reserved + vram.CUDA_CONTEXT_BYTES
            print(label + f" {est_alloc / gib:8.2f}G {allocated / gib:8.2f}G {est_alloc / allocated:5.2f} "
                  f"{est.total_bytes / gib:8.2f}G {total_measured / gib:8.2f}G {est.total_bytes / total_measured:5.2f} "
                  f"{seconds:6.2f}", flush=True)
        else:
            print(label + f" {est_alloc / gib:8.3f}G {'n/a':>9s} {'':5s} {est.total_bytes / gib:8.2f}G "
                  f"{'':9s} {'':5s} {seconds:6.2f}", flush=True)
        results.append({"config": label, "model": name, "method": method, "task": task, "batch": batch,
                        "length": length, "gradient_checkpointing": ckpt, "optimizer": optimizer,
                        "estimate_allocated": est_alloc, "estimate_total": est.total_bytes,
                        "breakdown": est.breakdown, "max_allocated": allocated, "max_reserved": reserved,
                        "ratio_allocated": est_alloc / allocated if allocated else None,
                        "seconds_per_step": seconds})
    out_dir = Path(os.environ.get("OUT") or ".")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "memory_gpu.json"
    path.write_text(json.dumps({"device": gpu, "torch": torch.__version__, "bitsandbytes": has_bnb,
                                "loss_head": "trl" if use_trl else "chunked", "results": results}, indent=2))
    print(f"wrote {path} in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
