"""One epoch of LoRA SFT: ``desktop-ft train`` against the plain TRL script a user would write.

Both sides train the same model on the same rows with the same settings (LoRA r=16 on all linear
layers, batch 4, max length 512, fp32, one epoch, same learning rate and schedule), each in a
fresh child process, on

  (a) even-length chats: every answer about the same size, and
  (b) mixed-length chats: answers from a few words to a few hundred tokens (most real datasets).

Printed per run and as ratios (desktop-ft / plain TRL) for each pair, ran back to back and in
alternating order (ABBA) because this machine's cores are shared:

- epoch time: from the Trainer's ``on_train_begin`` to the last step's log (model loading,
  tokenising and saving are left out on both sides);
- non-pad tokens/s: tokens of the epoch's examples (after truncation to max length) / epoch time;
- peak RSS of the child process (``wait4``'s ``ru_maxrss``);
- answer NLL: mean negative log-likelihood of the last assistant reply's tokens of held-out rows
  (the same rows, the same code, for both adapters and for the untrained model), so speed is
  never bought by learning less;
- useful FLOP/s, and its share of this machine's fp32 matmul peak measured in the same run
  (``torch.mm`` of 2048×2048 fp32 matrices on the same threads).

How FLOPs are counted (per non-pad token, the arithmetic the result needs, none for padding):
``P`` is the weights of every linear layer including the output head, ``A`` the LoRA
adapters' weights, ``att`` the forward attention (4 · layers · heads · head_dim · the token's
mean causal context, (l+1)/2 for an example of l tokens).

- LoRA:  4·P + 6·A + 3·att   (forward 2·P + 2·A; backward 2·P for the activations' gradient
  only, as the frozen weights need no gradient of their own, + 4·A for the adapters')
- full:  6·P + 3·att         (the usual 6·N: forward 2, backward 4)

Run:  python benchmarks/bench_train_cpu.py                    # SmolLM2-135M, 64 rows
      python benchmarks/bench_train_cpu.py --model tiny --rows 32   # a quick check (tiny Llama)
      python benchmarks/bench_train_cpu.py --datasets '' --data my_chats.jsonl  # on your own data
      python benchmarks/bench_train_cpu.py --device cuda --rows 512  # the GPU variant
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent

WORDS = ("apple river stone cloud lamp paper garden window music silver orange bridge candle forest pencil "
         "rocket tiger violet winter yellow").split()


# -- data ------------------------------------------------------------------------------------------

def make_rows(n: int, *, mixed: bool, seed: int) -> list[dict[str, Any]]:
    """Learnable chats: counting, repeating and reversing, with answers of a fixed or a mixed size.

    Mixed sizes are drawn log-uniformly from 1 to 150 items (a few words to a few hundred tokens);
    even ones all hold 12 items.
    """
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        size = int(round(math.exp(rng.uniform(0, math.log(150))))) if mixed else 12
        kind = i % 3
        if kind == 0:
            a = rng.randint(1, 500)
            q, ans = f"Count from {a} to {a + size - 1}.", ", ".join(str(x) for x in range(a, a + size)) + "."
        elif kind == 1:
            w = rng.choice(WORDS)
            q, ans = f"Repeat the word '{w}' {size} times.", " ".join([w] * size)
        else:
            ws = [rng.choice(WORDS) for _ in range(size)]
            q, ans = "Reverse these words: " + " ".join(ws), " ".join(reversed(ws))
        rows.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": ans}]})
    return rows


def _bad(sentence: str) -> NoReturn:
    """Bad input: the sentence on stderr, exit 2."""
    print(sentence, file=sys.stderr)
    sys.exit(2)


def rows_from_file(path: str, n: int, heldout: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``n`` training chats and ``heldout`` others from a file of one's own: any file and format the app
    reads (``load_dataset``), chats or prompt/completion pairs (written as a user and an assistant
    message, which is what both sides then train on), drawn at random with ``seed``."""
    from desktop_ft.core.datasets import load_dataset
    from desktop_ft.core.errors import UserError

    try:
        loaded = load_dataset(path)
    except UserError as exc:
        _bad(f"--data: {exc}")
    if loaded.kind not in ("conversation", "prompt_completion"):
        _bad(f"--data: {path} holds {loaded.kind} rows; this benchmark compares SFT, so give it chats or "
                 "prompt/completion pairs.")
    if len(loaded.rows) < n + heldout:
        _bad(f"--data: {path} has {len(loaded.rows)} valid rows; --rows {n} and --heldout {heldout} need "
                 f"{n + heldout} (lower them, or give a bigger file).")
    picked = random.Random(seed).sample(range(len(loaded.rows)), n + heldout)
    rows = []
    for i in picked:
        row = loaded.rows[i]
        messages = row["messages"] if loaded.kind == "conversation" else [
            {"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["completion"]}]
        last = max(k for k, m in enumerate(messages) if m["role"] == "assistant")  # the reply scored for NLL
        rows.append({"messages": [{"role": m["role"], "content": m["content"]} for m in messages[:last + 1]]})
    return rows[:n], rows[n:]


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# -- the two children ------------------------------------------------------------------------------

def child_desktop_ft(spec: dict[str, Any]) -> dict[str, Any]:
    """``desktop-ft train`` through the real engine, with its defaults for everything not set here."""
    from desktop_ft.core.config import RunConfig
    from desktop_ft.core.engine import train
    from desktop_ft.core.events import RunStarted, StepLogged

    config = RunConfig().replace({
        "model.name": spec["model"], "data.path": spec["train"], "output.output_dir": spec["out"],
        "data.validation_fraction": 0.0, "training.epochs": 1.0, "training.max_steps": -1,
        "training.batch_size": spec["batch"], "training.max_length": spec["max_length"],
        "training.gradient_accumulation_steps": 1, "training.learning_rate": spec["lr"],
        "training.warmup_ratio": spec["warmup"], "training.lr_scheduler": spec["scheduler"],
        "training.save_steps": 1_000_000, "training.logging_steps": 1, "training.seed": spec["seed"],
        "method.lora_rank": spec["rank"], "method.lora_alpha": spec["alpha"],
        "method.lora_dropout": spec["dropout"], "method.target_modules": "all-linear",
    })
    times: dict[str, float] = {}

    def on_event(event: Any) -> None:
        if isinstance(event, RunStarted):
            times["begin"] = time.perf_counter()
        elif isinstance(event, StepLogged):
            times["end"], times["steps"] = time.perf_counter(), event.step

    finished = train(config, on_event=on_event)
    log = (Path(finished.run_dir) / "train.log").read_text(encoding="utf-8")
    notes = [line.split("] ", 1)[-1] for line in log.splitlines() if "padding-free" in line or "threads:" in line]
    return {"epoch_s": times["end"] - times["begin"], "steps": times["steps"], "adapter": finished.adapter_dir,
            "notes": notes}


def child_plain_trl(spec: dict[str, Any]) -> dict[str, Any]:
    """The script a user would write from TRL's docs: SFTTrainer + LoraConfig, TRL's defaults otherwise."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    times: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            times["begin"] = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if logs and "loss" in logs:
                times["end"], times["steps"] = time.perf_counter(), state.global_step

    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    dataset = load_dataset("json", data_files=spec["train"], split="train")
    args = SFTConfig(output_dir=spec["out"], per_device_train_batch_size=spec["batch"], max_length=spec["max_length"],
                     num_train_epochs=1, learning_rate=spec["lr"], warmup_steps=spec["warmup"],
                     lr_scheduler_type=spec["scheduler"], logging_steps=1, save_strategy="no", report_to="none",
                     use_cpu=spec["device"] == "cpu", seed=spec["seed"], disable_tqdm=True,
                     # the same number format on both sides: TRL's SFTConfig turns bf16 on by default, which on
                     # the CPU is autocast to bf16 (far slower here than fp32, and not what desktop-ft trains in)
                     bf16=spec["device"] != "cpu",
                     # SFTConfig's default is True (recompute activations: less memory, ~1/3 more arithmetic);
                     # desktop-ft's default is off, so --trl-no-checkpointing shows the gain without it
                     gradient_checkpointing=spec["trl_checkpointing"])
    peft_config = LoraConfig(r=spec["rank"], lora_alpha=spec["alpha"], lora_dropout=spec["dropout"],
                             target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config, callbacks=[Clock()])
    trainer.train()
    adapter = str(Path(spec["out"]) / "adapter")
    trainer.save_model(adapter)
    return {"epoch_s": times["end"] - times["begin"], "steps": times["steps"], "adapter": adapter, "notes": []}


def run_child(which: str, spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run one side in a fresh process; its peak RSS comes from wait4."""
    spec_path = work / f"{which}-{time.monotonic_ns()}.json"
    spec_path.write_text(json.dumps(spec))
    result_path = spec_path.with_suffix(".result.json")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1")
    load_before = os.getloadavg()[0]
    proc = subprocess.Popen([sys.executable, __file__, "--child", which, str(spec_path), str(result_path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0 or not result_path.exists():
        sys.exit(f"{which} failed:\n{err[-4000:]}")
    result = json.loads(result_path.read_text())
    result["peak_rss"] = usage.ru_maxrss * 1024
    result["load"] = (load_before, os.getloadavg()[0])
    return result


# -- measurements in the parent --------------------------------------------------------------------

def token_lengths(model: str, rows: list[dict[str, Any]], max_length: int) -> list[int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    return [min(len(tok.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"]), max_length)
            for r in rows]


def answer_nll(model: str, adapters: dict[str, str | None], rows: list[dict[str, Any]],
               device: str) -> dict[str, float]:
    """Mean NLL per token of each held-out row's last assistant reply, for each adapter (None: the base)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    encoded = []
    for r in rows:
        full = tok.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"]
        prompt = tok.apply_chat_template(r["messages"][:-1], tokenize=True, add_generation_prompt=True,
                                         return_dict=True)["input_ids"]
        encoded.append((torch.tensor([full]), len(prompt)))
    out = {}
    for name, adapter in adapters.items():
        base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).to(device)
        net = PeftModel.from_pretrained(base, adapter).to(device) if adapter else base
        net.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for ids, start in encoded:
                ids = ids.to(device)
                logits = net(input_ids=ids).logits[0, start - 1:-1].float()
                total += float(torch.nn.functional.cross_entropy(logits, ids[0, start:], reduction="sum"))
                count += ids.shape[1] - start
        out[name] = total / count
    return out


def matmul_peak(device: str, n: int = 2048, reps: int = 8) -> float:
    """Best fp32 FLOP/s of an n×n matmul on this device, with the threads the children use."""
    import torch

    if device == "cpu":
        from desktop_ft.core.speed import physical_cores

        torch.set_num_threads(physical_cores())
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = math.inf
    for _ in range(reps):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch.mm(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def useful_flops(model: str, lengths: list[int], rank: int, full: bool = False) -> float:
    """FLOPs of one epoch on these examples, counted as the module docstring says (Llama-shaped models)."""
    c = json.loads((Path(model) / "config.json").read_text())
    h, inter, layers, vocab = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    heads = c["num_attention_heads"]
    head_dim = c.get("head_dim") or h // heads
    kv = c.get("num_key_value_heads", heads) * head_dim
    q = heads * head_dim
    shapes = [(h, q), (h, kv), (h, kv), (q, h), (h, inter), (h, inter), (inter, h)]  # per layer (in, out)
    p = layers * sum(i * o for i, o in shapes) + vocab * h
    a = layers * sum(rank * (i + o) for i, o in shapes)
    total = 0.0
    for n in lengths:
        att = 4 * layers * heads * head_dim * (n + 1) / 2
        per_token = (6 * p if full else 4 * p + 6 * a) + 3 * att
        total += n * per_token
    return total


# -- the benchmark ---------------------------------------------------------------------------------

def resolve_model_path(name: str, work: Path) -> str:
    if name == "tiny":
        sys.path.insert(0, str(ROOT))
        from tests.conftest import build_tiny_model

        return str(build_tiny_model(work / "tiny-llama"))
    from desktop_ft.core.models import resolve_model

    return str(resolve_model(name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="'default' (built-in SmolLM2-135M), 'tiny', or a folder")
    parser.add_argument("--rows", type=int, default=64, help="training rows per dataset (one epoch)")
    parser.add_argument("--heldout", type=int, default=24, help="held-out rows for the answer NLL")
    parser.add_argument("--repeats", type=int, default=1, help="ABBA pairs per dataset")
    parser.add_argument("--datasets", default="even,mixed",
                        help="the generated datasets to run, comma-separated (even, mixed); '' for none")
    parser.add_argument("--data", action="append", default=[],
                        help="also run on rows drawn from this file (any format the app reads: chats or "
                             "prompt/completion pairs); may be given more than once")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--trl-no-checkpointing", action="store_true",
                        help="turn TRL's gradient checkpointing off (SFTConfig's default is on, desktop-ft's "
                             "is off): the same memory trade-off on both sides")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    os.environ["DESKTOP_FT_RUNS"] = str(work / "runs")
    model = resolve_model_path(args.model, work)
    base = {"model": model, "batch": args.batch, "max_length": args.max_length, "lr": args.lr, "warmup": 0.03,
            "scheduler": "cosine", "seed": 42, "rank": 16, "alpha": 32, "dropout": 0.05, "device": args.device,
            "trl_checkpointing": not args.trl_no_checkpointing}
    peak = matmul_peak(args.device)
    print(f"model {model}; {args.rows} rows/epoch, batch {args.batch}, max length {args.max_length}, LoRA r=16 "
          f"all-linear, fp32, {args.device}; fp32 matmul peak {peak / 1e9:.1f} GFLOP/s; "
          f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.2f}; plain TRL's gradient checkpointing "
          f"{'on (SFTConfig default)' if base['trl_checkpointing'] else 'off (--trl-no-checkpointing)'}, "
          "desktop-ft's off (its default)", flush=True)
    report: dict[str, Any] = {"model": model, "rows": args.rows, "peak_flops": peak, "datasets": {}}
    datasets = [n for n in args.datasets.split(",") if n] + [f"file:{p}" for p in args.data]
    for d_i, name in enumerate(datasets):
        if name.startswith("file:"):
            rows, heldout = rows_from_file(name[5:], args.rows, args.heldout, seed=1 + d_i)
            name = Path(name[5:]).stem
        else:
            mixed = name == "mixed"
            rows = make_rows(args.rows, mixed=mixed, seed=1 + d_i)
            heldout = make_rows(args.heldout, mixed=mixed, seed=100 + d_i)
        train_path = write_jsonl(rows, work / f"{name}.jsonl")
        lengths = token_lengths(model, rows, args.max_length)
        tokens = sum(lengths)
        padded = sum(args.batch * max(lengths[i:i + args.batch]) for i in range(0, len(lengths), args.batch))
        flops = useful_flops(model, lengths, rank=16)
        print(f"\n({name}) {len(rows)} chats, {min(lengths)}-{max(lengths)} tokens (median "
              f"{statistics.median(lengths):.0f}), {tokens} tokens; padded batches would hold {padded} "
              f"({padded / tokens:.2f}x)", flush=True)
        results: dict[str, list[dict[str, Any]]] = {"desktop-ft": [], "plain TRL": []}
        for r in range(args.repeats):
            order = ["desktop-ft", "plain TRL"] if (r + d_i) % 2 == 0 else ["plain TRL", "desktop-ft"]
            for side in order:
                spec = {**base, "train": str(train_path), "out": str(work / f"{name}-{side.replace(' ', '_')}-{r}")}
                res = run_child("ours" if side == "desktop-ft" else "trl", spec, work)
                res["tokens_per_s"] = tokens / res["epoch_s"]
                res["flops_share"] = flops / res["epoch_s"] / peak
                results[side].append(res)
                print(f"  {side:10s} epoch {res['epoch_s']:7.1f} s  {res['steps']} steps  "
                      f"{res['tokens_per_s']:7.0f} tok/s  peak RSS {res['peak_rss'] / 2**20:6.0f} MiB  "
                      f"useful {flops / res['epoch_s'] / 1e9:5.1f} GFLOP/s ({res['flops_share']:.0%} of peak)  "
                      f"load {res['load'][0]:.1f}->{res['load'][1]:.1f}", flush=True)
                for note in res["notes"]:
                    print(f"             {note}")
        nll = answer_nll(model, {"untrained": None, "desktop-ft": results["desktop-ft"][-1]["adapter"],
                                 "plain TRL": results["plain TRL"][-1]["adapter"]}, heldout, args.device)
        ratios = [o["epoch_s"] / t["epoch_s"] for o, t in zip(results["desktop-ft"], results["plain TRL"])]
        ours, trl = results["desktop-ft"], results["plain TRL"]
        speedup = 1 / statistics.median(ratios)
        rss = statistics.median(o["peak_rss"] for o in ours) / statistics.median(t["peak_rss"] for t in trl)
        print(f"  answer NLL on {len(heldout)} held-out rows: untrained {nll['untrained']:.3f}, desktop-ft "
              f"{nll['desktop-ft']:.3f}, plain TRL {nll['plain TRL']:.3f} "
              f"(ratio {nll['desktop-ft'] / nll['plain TRL']:.3f})")
        print(f"  => ({name}) desktop-ft epoch time / plain TRL: {statistics.median(ratios):.2f}x "
              f"(per pair: {', '.join(f'{x:.2f}' for x in ratios)}) -> {speedup:.2f}x faster; "
              f"peak RSS {rss:.2f}x; answer NLL {nll['desktop-ft'] / nll['plain TRL']:.3f}x", flush=True)
        report["datasets"][name] = {"tokens": tokens, "padded_tokens": padded, "useful_flops": flops,
                                    "results": results, "nll": nll, "time_ratios": ratios, "speedup": speedup,
                                    "rss_ratio": rss}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        which, spec_file, result_file = sys.argv[2:]
        child = child_desktop_ft if which == "ours" else child_plain_trl
        result = child(json.loads(Path(spec_file).read_text()))
        Path(result_file).write_text(json.dumps(result))
    else:
        main()
