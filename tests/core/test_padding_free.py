"""Padding-free batches learn exactly what padded batches learn, and are switched off where they would not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from desktop_ft.core import speed, trainers
from desktop_ft.core.config import RunConfig

#: chats from a few words to a few hundred tokens, so the padded batch is mostly padding
MIXED = [
    {"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]},
    {"messages": [{"role": "user", "content": "Explain fractions step by step. " * 12},
                  {"role": "assistant", "content": "First, a fraction is a part of a whole. " * 15}]},
    {"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "Four."}]},
    {"messages": [{"role": "user", "content": "Name a colour."},
                  {"role": "assistant", "content": "Blue, like the sky on a clear day. " * 4}]},
]


def _trainer(tiny_model: Path, tmp_path: Path, *, padding_free: bool, attn: str, method: str = "lora"):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = RunConfig().replace({"model.name": str(tiny_model), "method.method": method,
                                  "method.lora_dropout": 0.0, "training.batch_size": 4,
                                  "training.max_length": 512})
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32,
                                                 attn_implementation="sdpa" if attn == "varlen" else attn)
    model.config.use_cache = False
    if attn == "varlen":
        assert speed.use_varlen_attention(model)
    torch.manual_seed(0)
    args = dict(output_dir=str(tmp_path / ("pf" if padding_free else "pad")), report_to="none", use_cpu=True,
                per_device_train_batch_size=4, max_steps=1, disable_tqdm=True, seed=0)
    parts = trainers.TrainerParts(config=config, model=model, tokenizer=tokenizer,
                                  peft_config=trainers.peft_config(config, model), train_rows=MIXED, eval_rows=[],
                                  args=args, callbacks=[], data_kind="conversation", padding_free=padding_free)
    trainer = trainers.build_trainer("sft", parts)
    for p in trainer.model.parameters():  # LoRA's B starts at zero, which would hide a wrong gradient for A
        if p.requires_grad:
            with torch.no_grad():
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(p.numel()))
    return trainer


def _loss_and_grads(trainer):
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    trainer.model.train()
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, dict(batch))
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    return batch, loss.detach(), grads


@pytest.mark.parametrize("attn", ["sdpa", "eager", "varlen"])
def test_padding_free_batch_gives_the_padded_loss_and_gradients(tiny_model: Path, tmp_path: Path, attn: str) -> None:
    """Padded batches on plain sdpa are the reference; padding-free on sdpa's block mask, eager, and our
    per-example sdpa must all match them."""
    import torch

    padded_batch, padded_loss, padded_grads = _loss_and_grads(_trainer(tiny_model, tmp_path, padding_free=False,
                                                                       attn="sdpa"))
    flat_batch, flat_loss, flat_grads = _loss_and_grads(_trainer(tiny_model, tmp_path, padding_free=True, attn=attn))

    # the padded batch is mostly padding; the flat one holds only the examples' tokens, in one row
    real = int(padded_batch["attention_mask"].sum())
    assert padded_batch["input_ids"].numel() > 2 * real
    assert flat_batch["input_ids"].shape == (1, real)
    assert "attention_mask" not in flat_batch
    assert (flat_batch["position_ids"][0] == 0).sum() == len(MIXED)  # positions restart for each example

    torch.testing.assert_close(flat_loss, padded_loss, rtol=1e-5, atol=1e-6)
    assert flat_grads.keys() == padded_grads.keys() and flat_grads
    for name in padded_grads:
        torch.testing.assert_close(flat_grads[name], padded_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_attention_crossing_examples_would_be_caught(tiny_model: Path, tmp_path: Path) -> None:
    """The same flat row with positions that do not restart (one long causal sequence) gives another loss,
    so the equality above really shows attention kept inside each example."""
    import torch

    _, padded_loss, _ = _loss_and_grads(_trainer(tiny_model, tmp_path, padding_free=False, attn="sdpa"))
    trainer = _trainer(tiny_model, tmp_path, padding_free=True, attn="sdpa")
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    crossing = {"input_ids": batch["input_ids"], "labels": batch["labels"],
                "position_ids": torch.arange(batch["input_ids"].shape[1])[None]}
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, crossing)
    assert abs(float(loss) - float(padded_loss)) > 1e-3


def test_padding_free_is_on_by_default_for_lora_sft_and_off_where_it_is_not_correct() -> None:
    base = RunConfig()
    assert speed.padding_free(base, "sft") == (True, "examples laid end to end, attention kept inside each one")
    assert speed.padding_free(base, "pretrain")[0]

    off = {
        "dpo": (base, "dpo"),
        "prompt tuning": (base.replace({"method.method": "prompt_tuning"}), "sft"),
        "prefix tuning": (base.replace({"method.method": "prefix_tuning"}), "sft"),
        "remote code": (base.replace({"model.trust_remote_code": True}), "sft"),
        "batch of one": (base.replace({"training.batch_size": 1}), "sft"),
        "asked": (base.replace({"training.padding_free": False}), "sft"),
    }
    for what, (config, task) in off.items():
        on, reason = speed.padding_free(config, task)
        assert not on and reason, what


def test_models_outside_the_attention_interface_keep_padding() -> None:
    class OwnAttention:  # a model class that builds its own masks
        _supports_attention_backend = False

    on, reason = speed.padding_free(RunConfig(), "sft", OwnAttention())
    assert not on and "OwnAttention" in reason


def test_run_log_says_what_was_switched_on(make_config) -> None:
    from desktop_ft.core.engine import train

    config = make_config(max_steps=1)
    finished = train(config)
    log = (Path(finished.run_dir) / "train.log").read_text(encoding="utf-8")
    assert "padding-free batches: on (examples laid end to end" in log
    assert "Liger kernels: off (its Triton kernels need a GPU)" in log
    assert "attention: torch sdpa on each example" in log
    assert f"threads: {speed.physical_cores()}" in log
    assert "loss head: labelled positions only" in log and "not computed (training.token_metrics is off)" in log
    dpo = speed.plan(RunConfig(), "dpo", "cpu").log_lines()  # its trainer keeps TRL's own head
    assert not any(line.startswith("loss head") for line in dpo)
    assert json.loads((Path(finished.run_dir) / "status.json").read_text())["state"] == "finished"


def test_varlen_attention_attends_example_by_example_without_the_row_mask(tiny_model: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """In a padding-free row it never falls back to sdpa over the whole row; with padded batches it does."""
    import transformers.integrations.sdpa_attention as sdpa

    calls = []
    real = sdpa.sdpa_attention_forward
    monkeypatch.setattr(sdpa, "sdpa_attention_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    _loss_and_grads(_trainer(tiny_model, tmp_path, padding_free=True, attn="varlen"))
    assert calls == []
    _loss_and_grads(_trainer(tiny_model, tmp_path, padding_free=False, attn="varlen"))
    assert calls


def test_chunked_vocabulary_loss_equals_the_full_logits_loss(tiny_model: Path, tmp_path: Path) -> None:
    """The trainer's loss (TRL's fused LM head: the vocabulary in chunks, never the full fp32 logits) is the
    cross-entropy of the full logits over the answer tokens, in padded and padding-free batches alike."""
    import torch

    for padding_free in (False, True):
        trainer = _trainer(tiny_model, tmp_path, padding_free=padding_free, attn="varlen")
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
        with torch.no_grad():
            loss = trainer.compute_loss(trainer.model, dict(batch))
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            logits = trainer.model(**inputs).logits[:, :-1]
        labels = batch["labels"][:, 1:]
        full = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                 ignore_index=-100)
        torch.testing.assert_close(loss, full, rtol=1e-5, atol=1e-6)


def test_liger_kernels_only_on_cuda_and_only_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    assert speed.liger("cpu") == (False, "its Triton kernels need a GPU")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "liger_kernel" else real(name, *a))
    on, reason = speed.liger("cuda")
    assert not on and "pip install liger-kernel" in reason
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "liger_kernel" else real(name, *a))
    assert speed.liger("cuda")[0]


def _trainer_with(tiny_model: Path, tmp_path: Path, *, token_metrics: bool):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = RunConfig().replace({"model.name": str(tiny_model), "method.lora_dropout": 0.0,
                                  "training.token_metrics": token_metrics})
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    args = dict(output_dir=str(tmp_path / f"tm{token_metrics}"), report_to="none", use_cpu=True,
                per_device_train_batch_size=4, max_steps=1, disable_tqdm=True, seed=0)
    parts = trainers.TrainerParts(config=config, model=model, tokenizer=tokenizer,
                                  peft_config=trainers.peft_config(config, model), train_rows=MIXED, eval_rows=[],
                                  args=args, callbacks=[], data_kind="conversation", padding_free=True)
    trainer = trainers.build_trainer("sft", parts)
    for p in trainer.model.parameters():
        if p.requires_grad:
            with torch.no_grad():
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(p.numel()))
    return trainer


def test_loss_head_scores_only_labelled_positions_and_skips_unread_metrics(
        tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With token metrics off the head computes log-probs only, for the answer tokens only, and the loss and
    gradients are those of TRL's full head; the log then holds no entropy or accuracy, and with them on it does."""
    import torch
    import trl.trainer.utils as trl_utils

    seen: list[tuple[int, tuple[str, ...]]] = []
    real = trl_utils._ChunkedLogProbFunction.apply

    def spy(hidden, *args):
        seen.append((hidden.shape[0], args[-1]))
        return real(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", spy)
    full_batch, full_loss, full_grads = _loss_and_grads(_trainer_with(tiny_model, tmp_path, token_metrics=True))
    lean = _trainer_with(tiny_model, tmp_path, token_metrics=False)
    lean_batch, lean_loss, lean_grads = _loss_and_grads(lean)

    labelled = int((full_batch["labels"][:, 1:] != -100).sum())
    assert labelled < 0.7 * full_batch["input_ids"].numel()  # prompts and template tokens carry no label
    assert seen == [(labelled, ("log_probs", "entropy", "is_top1")), (labelled, ("log_probs",))]
    torch.testing.assert_close(lean_loss, full_loss, rtol=1e-6, atol=1e-7)
    for name in full_grads:
        torch.testing.assert_close(lean_grads[name], full_grads[name], rtol=1e-5, atol=1e-7, msg=name)

    logged: list[dict] = []
    monkeypatch.setattr(type(lean).__mro__[1], "log", lambda self, logs, *a, **k: logged.append(dict(logs)),
                        raising=True)
    lean.log({"loss": 1.0})
    assert logged and not {"entropy", "mean_token_accuracy"} & set(logged[-1])
    shown = _trainer_with(tiny_model, tmp_path, token_metrics=True)
    _loss_and_grads(shown)
    shown.log({"loss": 1.0})
    assert {"entropy", "mean_token_accuracy"} <= set(logged[-1])


def test_a_big_dataset_is_tokenised_by_several_processes_and_learns_the_same(make_config, tmp_path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """TRL tokenises every row before the first step; with enough rows the physical cores share that.
    The rows, their order and so the losses are those of one process."""
    from desktop_ft.core.engine import train

    assert speed.tokenising_processes(10) == 1
    assert speed.tokenising_processes(10 ** 9) == speed.physical_cores()
    losses = {}
    for procs, per_process in ((1, 10 ** 9), (2, 5)):
        monkeypatch.setattr(speed, "ROWS_PER_TOKENISING_PROCESS", per_process)
        monkeypatch.setattr(speed, "physical_cores", lambda: 2)
        events = []
        finished = train(make_config(out=tmp_path / f"run-{procs}", max_steps=2), on_event=events.append)
        log = (Path(finished.run_dir) / "train.log").read_text(encoding="utf-8")
        assert f"tokenising: {procs} process(es)" in log
        losses[procs] = [ev.loss for ev in events if type(ev).__name__ == "StepLogged"]
    assert losses[1] and losses[2] == pytest.approx(losses[1], rel=1e-5)
