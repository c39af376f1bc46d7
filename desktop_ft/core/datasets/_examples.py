"""Rows → SFT training examples, and which of their tokens the loss falls on: decided here, once.

Training (``desktop_ft.core.trainers``) and inspection (``_inspect``: the window's highlighted
answers, ``desktop-ft data inspect``) both ask ``sft_recipe`` and its ``examples``, so what the
window shows as learned is what the trainer learns.

With assistant-only loss (the default) a conversation is learned on its assistant replies:

- every reply, when the chat template can mark them (``{% generation %}``: the model's own, TRL's
  patched one for templates it knows, or our ChatML one when it renders the rows identically);
- every reply, one prompt/completion example per reply, when no marking template is known;
- the last (only) reply as a prompt/completion pair for single-turn data, which needs no markers.

Without it, and for raw text, every token counts.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

#: ChatML with ``{% generation %}`` markers around each assistant reply (and its end-of-turn token)
CHATML_TRAINING_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

#: how the loss is placed: on every token; on the completion (last reply); on every reply through the
#: template's markers; on every reply, one example per reply
ALL_TOKENS, COMPLETION, EVERY_REPLY_MARKED, EVERY_REPLY_SPLIT = "all", "completion", "every_reply_marked", \
    "every_reply_split"


@dataclass(frozen=True)
class SftRecipe:
    """How one dataset's rows become SFT examples (``examples``) and which tokens are learned (``loss``)."""

    kind: str
    loss: str  # one of ALL_TOKENS, COMPLETION, EVERY_REPLY_MARKED, EVERY_REPLY_SPLIT
    chat_template: str | None = None  # for EVERY_REPLY_MARKED: the marking template the tokenizer must use

    def examples(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """One normalised row → the SFT example(s) TRL's SFTTrainer gets for it.

        The row's own keys win over the dataset's kind, so a validation file of another kind still
        works. Rows a KTO file marks undesirable (``label: false``) give none: SFT would teach them.
        """
        if row.get("label") is False:
            return []
        if self.loss == EVERY_REPLY_MARKED and "messages" in row:
            return [{"messages": row["messages"]}]
        if self.loss == EVERY_REPLY_SPLIT and "messages" in row:
            return per_turn_rows(row)
        if self.loss == EVERY_REPLY_MARKED:
            return [sft_row(self.kind, row, assistant_only_loss=False)]
        return [sft_row(self.kind, row, assistant_only_loss=self.loss != ALL_TOKENS)]

    def examples_of(self, rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The examples of ``rows``, one after another (a stream: rows are read as they are needed)."""
        return (example for row in rows for example in self.examples(row))

    @property
    def trl_flags(self) -> dict[str, bool]:
        """``SFTConfig`` keywords that put the loss where this recipe says."""
        return {"assistant_only_loss": self.loss == EVERY_REPLY_MARKED,
                "completion_only_loss": self.loss in (COMPLETION, EVERY_REPLY_SPLIT)}


def sft_recipe(kind: str, rows: Sequence[dict[str, Any]], tokenizer: Any, *, assistant_only_loss: bool) -> SftRecipe:
    """The recipe for SFT on ``rows`` (of ``kind``) with this tokenizer; see the module docstring."""
    if kind == "text" or not assistant_only_loss:
        return SftRecipe(kind, ALL_TOKENS)
    if kind == "conversation" and any(_replies(r) > 1 for r in rows):
        template = training_chat_template(tokenizer, rows) if tokenizer is not None else None
        if template:
            return SftRecipe(kind, EVERY_REPLY_MARKED, template)
        return SftRecipe(kind, EVERY_REPLY_SPLIT)
    return SftRecipe(kind, COMPLETION)


def training_chat_template(tokenizer: Any, rows: Sequence[dict[str, Any]]) -> str | None:
    """A chat template that marks every assistant reply for the loss, or None when none is known.

    The model's own template if it has ``{% generation %}`` markers; TRL's patched version for the
    templates it knows (Qwen, Llama 3, Gemma, Phi-3, ...); our ChatML one when it renders these
    rows exactly as the model's template does (SmolLM2 and other ChatML models). Never a template
    that would render differently from what the model sees at inference.
    """
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    own = tokenizer.chat_template
    if not isinstance(own, str):
        return None
    if has_generation_markers(own):
        return own
    try:
        patched = get_training_chat_template(tokenizer)
        if patched:
            return patched
    except (ValueError, TypeError):
        pass
    try:
        for row in rows[:8]:
            a = tokenizer.apply_chat_template(row["messages"], tokenize=False)
            b = tokenizer.apply_chat_template(row["messages"], tokenize=False, chat_template=CHATML_TRAINING_TEMPLATE)
            if a != b:
                return None
    except Exception:  # a template that cannot render these rows is not ours to judge
        return None
    return CHATML_TRAINING_TEMPLATE if rows else None


def sft_row(kind: str, row: dict[str, Any], *, assistant_only_loss: bool) -> dict[str, Any]:
    """One normalised row as a single SFT example (``SftRecipe.examples`` decides when this applies).

    - conversation → conversational prompt/completion (loss on the last assistant reply) when
      ``assistant_only_loss``, else ``messages`` as they are (loss on every token);
    - prompt_completion → the same, as a one-turn chat, so the chat template the model is used with
      later also frames what it learns;
    - preference → its prompt and the chosen reply (SFT on the preferred answers);
    - text → ``{"text"}`` as it is (plain language modelling, no chat template).
    """
    kind = row_kind(row) or kind
    if kind == "text":
        return {"text": row["text"]}
    if kind == "prompt_completion":
        row = {"messages": [{"role": "user", "content": row["prompt"]},
                            {"role": "assistant", "content": row["completion"]}]}
    elif kind == "preference":
        prompt = row["prompt"] if isinstance(row["prompt"], list) else [{"role": "user", "content": row["prompt"]}]
        chosen = row["chosen"] if isinstance(row["chosen"], list) else \
            [{"role": "assistant", "content": row["chosen"]}]
        row = {"messages": prompt + chosen}
    if assistant_only_loss:
        return to_prompt_completion(row)
    return {"messages": row["messages"]}


def row_kind(row: dict[str, Any]) -> str | None:
    """The kind a normalised row has, from its keys."""
    if "messages" in row:
        return "conversation"
    if "chosen" in row and "rejected" in row:
        return "preference"
    if "prompt" in row and "completion" in row:
        return "prompt_completion"
    if "text" in row:
        return "text"
    return None


def to_prompt_completion(row: dict[str, Any]) -> dict[str, Any]:
    """Conversation → conversational prompt/completion, so the loss falls on the last assistant reply.

    This works with any chat template (no ``{% generation %}`` markers needed).
    """
    messages = row["messages"]
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return {"prompt": messages[:last], "completion": [messages[last]]}


def per_turn_rows(row: dict[str, Any]) -> list[dict[str, Any]]:
    """A conversation → one conversational prompt/completion per assistant reply (all earlier turns as prompt)."""
    messages = row["messages"]
    return [{"prompt": messages[:i], "completion": [m]} for i, m in enumerate(messages)
            if m["role"] == "assistant" and i > 0]


def _replies(row: dict[str, Any]) -> int:
    return sum(m["role"] == "assistant" for m in row.get("messages", []))


def split_rows(rows: Sequence[dict[str, Any]], fraction: float, seed: int,
               max_validation: int | None = None) -> tuple[Sequence[dict], Sequence[dict]]:
    """A seeded train/validation split (rows keep their order); no validation set when there are too few rows.

    ``max_validation`` caps the held-out rows (``data.max_validation_rows``); the rows held out are
    the first of the same seeded order, so a smaller cap holds out a subset of a larger one.

    A ``RowStore`` is split into two views of itself (index lists, no row copied); a list into lists.
    """
    if fraction <= 0 or len(rows) < 4:
        return rows if hasattr(rows, "select") else list(rows), []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_val = max(1, int(round(len(rows) * fraction)))
    n_val = min(n_val, len(rows) - 1, max_validation or len(rows))
    val_idx = set(order[:n_val])
    train_at = [i for i in range(len(rows)) if i not in val_idx]
    val_at = sorted(val_idx)
    if hasattr(rows, "select"):
        return rows.select(train_at), rows.select(val_at)
    return [rows[i] for i in train_at], [rows[i] for i in val_at]
