"""``desktop-ft demo``: the offline tour — a short LoRA run on the built-in model and sample data,
then the same question answered before and after. Until the window exists, the README's run
command lands here."""

from __future__ import annotations

import argparse
import sys

from desktop_ft.core.config import RunConfig

DEMO_QUESTION = "How do I make a cup of tea?"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train the built-in model on the sample data and show before/after")
    p.add_argument("--max-steps", type=int, default=40, help="training steps (default 40, a few minutes on a CPU)")
    p.add_argument("--output-dir", default=None, help="run folder (default: a new folder under the runs root)")
    p.set_defaults(func=run)


def demo_config(max_steps: int, output_dir: str | None) -> RunConfig:
    return RunConfig().replace({"training.max_steps": max_steps, "training.batch_size": 8,
                                "training.learning_rate": 1e-3, "training.max_length": 256,
                                "training.save_steps": 20, "training.eval_steps": 20,
                                "output.output_dir": output_dir, "output.run_name": "demo"})


def run(args: argparse.Namespace) -> int:
    from desktop_ft.cli.train import train_with_progress
    from desktop_ft.core.runs import list_runs

    print("Desktop FT demo: fine-tuning the built-in SmolLM2-135M-Instruct on the sample 'three-step "
          "tutor' data.", file=sys.stderr)
    config = demo_config(args.max_steps, args.output_dir)
    code = train_with_progress(config)
    if code:
        return code
    run_dir = args.output_dir or str(list_runs()[0].path)
    _before_after(run_dir)
    return 0


def _before_after(run_dir: str) -> None:
    """Answer one question with the adapter off (base) and on (tuned)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from desktop_ft.core.models import resolve_model

    base_path = resolve_model("default")
    tokenizer = AutoTokenizer.from_pretrained(f"{run_dir}/adapter")
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path), f"{run_dir}/adapter")
    model.eval()
    ids = tokenizer.apply_chat_template([{"role": "user", "content": DEMO_QUESTION}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)

    def answer() -> str:
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=80, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        return tokenizer.decode(out[0][ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    with model.disable_adapter():
        before = answer()
    after = answer()
    print(f"\nQ: {DEMO_QUESTION}\n\n--- base model ---\n{before}\n\n--- fine-tuned ---\n{after}\n")
    print(f"Run folder: {run_dir}")
