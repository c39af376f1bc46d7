"""What a run switches on to go faster, decided in one place.

The engine asks here which of these it turns on, and writes the reason to the run log; the memory
estimate asks here too, so it counts the activations of what will really run:

- **padding-free batches**: the examples of a batch are laid end to end in one row, with position
  ids restarting at 0 for each example (TRL's ``DataCollatorForLanguageModeling(padding_free=True)``).
  transformers builds a block-diagonal causal mask from those position ids (sdpa and eager) or
  hands the boundaries to the varlen kernels (flash attention), so no token attends across an
  example's edge: the same loss and gradients as a padded batch, without the arithmetic spent on
  padding. Batches, their order and the number of steps are unchanged, so what is learned is too.
- **Liger kernels** on CUDA when the package is installed (Triton kernels; nothing on the CPU).
- **the loss head** (SFT): TRL computes the loss through the vocabulary in chunks, so the full
  fp32 logits and their gradient are never held at once. ``fit_loss_head`` makes it score only the
  positions that carry a label on the CPU too (TRL scores every position off Triton devices so that
  Neuron's tile shapes never change; a CPU compiles nothing, and prompts and padding are most of a
  chat's positions), and drops the per-step entropy and token accuracy unless
  ``training.token_metrics`` asks for them. The loss and its gradients are the same.
- **threads**: the physical cores, for the training process.
- **tokenising processes**: TRL's dataset map on a big dataset uses the physical cores too.

No torch, transformers or TRL at import time.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from desktop_ft.core.config import RunConfig

#: methods whose adapter adds virtual tokens in front of every row: one row holding several
#: examples would get one set of virtual tokens for all of them
_VIRTUAL_TOKEN_METHODS = ("prompt_tuning", "prefix_tuning")


@dataclass(frozen=True)
class SpeedPlan:
    """What the engine switches on, each with the sentence the run log shows."""

    padding_free: bool
    padding_free_reason: str
    liger: bool
    liger_reason: str
    threads: int
    loss_head: bool = False       # SFT and pretraining: ``fit_loss_head`` fits TRL's fused head
    token_metrics: bool = False
    tokenising_processes: int = 1  # TRL's dataset map (``dataset_num_proc``)

    def log_lines(self) -> list[str]:
        return [f"padding-free batches: {'on' if self.padding_free else 'off'} ({self.padding_free_reason})",
                f"Liger kernels: {'on' if self.liger else 'off'} ({self.liger_reason})",
                f"threads: {self.threads}",
                f"tokenising: {self.tokenising_processes} process(es)" + (
                    "" if self.tokenising_processes > 1 else
                    f" (one per {ROWS_PER_TOKENISING_PROCESS:,} training rows, up to the physical cores)")] + ([
                "loss head: labelled positions only, in vocabulary chunks; entropy and token accuracy "
                + ("logged (training.token_metrics)" if self.token_metrics else
                   "not computed (training.token_metrics is off)")] if self.loss_head else [])


def padding_free(config: RunConfig, task: str, model: Any = None) -> tuple[bool, str]:
    """Whether this run's SFT batches are laid end to end without padding, and why (one phrase).

    ``task`` is the resolved task; ``model`` (optional, the loaded transformers model) lets the
    attention code be checked; without it the answer is what the config alone allows (the estimate).
    """
    t, m = config.training, config.method
    if not t.padding_free:
        return False, "turned off in training.padding_free"
    if task not in ("sft", "pretrain"):
        return False, f"the {task} trainer pads its own chosen/rejected batches"
    if t.packing:
        return True, "packing lays examples end to end already"
    if m.method in _VIRTUAL_TOKEN_METHODS:
        return False, f"{m.method.replace('_', ' ')} puts virtual tokens in front of each row, so examples " \
                      "sharing a row would share them"
    if config.model.trust_remote_code:
        return False, "remote-code models may build their own attention mask and ignore per-example positions"
    if t.batch_size < 2:
        return False, "one example per batch has no padding to remove"
    if model is not None and not getattr(type(model), "_supports_attention_backend", False):
        return False, f"{type(model).__name__} does not use transformers' attention interface, which keeps " \
                      "attention inside each example"
    return True, "examples laid end to end, attention kept inside each one"


#: the attention implementation padding-free runs use in place of sdpa (registered with transformers)
VARLEN_SDPA = "desktop_ft_varlen_sdpa"


def use_varlen_attention(model: Any) -> bool:
    """Make a model that runs sdpa attend example by example in padding-free batches; True if it now does.

    transformers' sdpa keeps packed examples apart with a block-diagonal mask over the whole row,
    so the attention arithmetic grows with the square of the row (all the examples of a batch,
    mostly masked out). This runs torch's causal sdpa on each example's slice instead, using the
    example boundaries TRL's padding-free collator passes (``cu_seq_lens_q``): the same result, at
    the cost of the examples alone. Without those boundaries, or where a sliding window is shorter
    than an example, it is transformers' sdpa with its mask, unchanged.
    """
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(VARLEN_SDPA, _varlen_sdpa)
    ALL_MASK_ATTENTION_FUNCTIONS.register(VARLEN_SDPA, sdpa_mask)
    model.set_attn_implementation(VARLEN_SDPA)
    return True


def _varlen_sdpa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
                 scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds = kwargs.get("cu_seq_lens_q")
    window = getattr(module, "sliding_window", None)
    longest = kwargs.get("max_length_q") or 0
    if (bounds is None or query.shape[0] != 1 or query.shape[2] != key.shape[2] or kwargs.get("softcap") is not None
            or (window is not None and longest > window)):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    gqa = query.shape[1] != key.shape[1]
    edges = bounds.tolist()
    parts = [torch.nn.functional.scaled_dot_product_attention(
        query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], dropout_p=dropout, scale=scaling, is_causal=True,
        enable_gqa=gqa) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def liger(device: str) -> tuple[bool, str]:
    """Liger kernels: CUDA only (Triton), and only when the liger-kernel package is installed."""
    if device != "cuda":
        return False, "its Triton kernels need a GPU"
    if importlib.util.find_spec("liger_kernel") is None:
        return False, "liger-kernel is not installed (pip install liger-kernel)"
    return True, "fused RMSNorm, RoPE and SwiGLU kernels"


def physical_cores() -> int:
    """Cores one training process should use: the physical ones (hyper-threads share a core's FPU),
    shared out among the processes a launcher started on this machine (torchrun sets
    LOCAL_WORLD_SIZE), so two ranks on two cores do not each run two threads."""
    import os

    import psutil

    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


#: training rows each tokenising process should get at least: for fewer, starting the processes
#: costs more than they save
ROWS_PER_TOKENISING_PROCESS = 25_000


def tokenising_processes(rows: int) -> int:
    """Processes TRL tokenises the dataset with, before the first step: one per
    ``ROWS_PER_TOKENISING_PROCESS`` rows, up to the physical cores. TRL tokenises every row first,
    so on a big file this is what the user waits for (250,000 chats took most of 40 minutes in
    one process on a 2-core box); a small file keeps one process."""
    return max(1, min(physical_cores(), rows // ROWS_PER_TOKENISING_PROCESS))


def plan(config: RunConfig, task: str, device: str, model: Any = None, rows: int = 0) -> SpeedPlan:
    """What this run switches on; ``rows``: how many training rows it reads (0: not known yet)."""
    pf, pf_reason = padding_free(config, task, model)
    lg, lg_reason = liger(device)
    return SpeedPlan(pf, pf_reason, lg, lg_reason, physical_cores(), loss_head=task in ("sft", "pretrain"),
                     token_metrics=config.training.token_metrics, tokenising_processes=tokenising_processes(rows))


#: what TRL's SFT trainer logs from the extra outputs of its fused loss head
TOKEN_METRICS = ("entropy", "mean_token_accuracy")


def fit_loss_head(trainer: Any, *, token_metrics: bool) -> None:
    """Fit an SFT trainer's fused loss head to what this run reads (see the module docstring).

    TRL (>= 1.x) patches the base model's ``forward`` with a head that computes log-probabilities
    in vocabulary chunks; it is put back here with only the outputs the run logs, and on the CPU it
    scores the labelled positions only, as it already does on CUDA.
    """
    import functools

    import torch
    import trl.trainer.utils as trl_utils

    if not getattr(trl_utils, "_desktop_ft_compact_cpu", False):
        on_triton = trl_utils._use_triton  # decides compact scoring in the fused head, nothing else in this module
        trl_utils._use_triton = lambda device: device.type == "cpu" or on_triton(device)
        trl_utils._desktop_ft_compact_cpu = True
    if token_metrics:
        return
    model = trainer.model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.__dict__.pop("forward", None)  # TRL's head, an attribute of the instance; the class's forward is back
    trl_utils.add_fused_lm_head(base, outputs=("log_probs",))
    fused = base.forward

    @functools.wraps(fused)
    def forward(*args: Any, **kwargs: Any) -> Any:
        out = fused(*args, **kwargs)
        if kwargs.get("fused_lm_head") and out.entropy is None:  # the trainer reads them; the log drops them
            out.entropy = torch.zeros_like(out.log_probs, requires_grad=False)
            out.is_top1 = torch.zeros_like(out.log_probs, dtype=torch.bool)
        return out

    base.forward = forward
    log = trainer.log

    def log_without_token_metrics(logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        for metrics in trainer._metrics.values():
            for key in TOKEN_METRICS:
                metrics.pop(key, None)
        for key in TOKEN_METRICS:
            logs.pop(key, None)
        return log(logs, *args, **kwargs)

    trainer.log = log_without_token_metrics
