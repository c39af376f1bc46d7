"""What a model will see and learn from a dataset: token lengths, a preview, duplicates, loss segments.

Everything here renders rows through the same ``SftRecipe`` the trainer uses (``_examples``) and
tokenises them the way TRL's SFTTrainer does, so the numbers and the highlighted answer are the ones
training will use. A tokenizer is optional: without one, counts, duplicates and a plain preview still work.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from desktop_ft.core.datasets._examples import (EVERY_REPLY_MARKED, EVERY_REPLY_SPLIT, SftRecipe, sft_recipe, sft_row,
                                                split_rows)
from desktop_ft.core.datasets._store import RowStore

PREVIEW_ROWS = 3


@dataclass
class DatasetReport:
    """What ``inspect_dataset`` found; ``to_dict()`` is what ``desktop-ft data inspect --json`` adds."""

    path: str
    format: str
    kind: str
    counts: dict[str, int]                              # rows, errors, duplicates, train, validation
    columns: list[str] = field(default_factory=list)
    token_lengths: dict[str, Any] | None = None         # min, median, p95, max, truncated, answer_cut_off, ...
    preview: list[str] = field(default_factory=list)    # first rows, rendered through the chat template
    duplicates: int = 0                                 # rows identical to an earlier row
    duplicate_lines: list[int] = field(default_factory=list)  # the first few of them
    template_errors: list[dict[str, Any]] = field(default_factory=list)  # rows the chat template rejects
    lengths: list[int | None] = field(default_factory=list)  # tokens per row (None: not counted), for a histogram
    recipe: SftRecipe | None = field(default=None, repr=False, compare=False)  # how rows became examples

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("recipe")
        return out


def inspect_dataset(data: Any, tokenizer: Any = None, max_length: int = 512, *,
                    validation_fraction: float = 0.0, seed: int = 42, validation: Any = None,
                    assistant_only_loss: bool = True, token_sample: int | None = 20000,
                    max_validation_rows: int | None = None) -> DatasetReport:
    """Counts, duplicates, a preview and (with a tokenizer) token-length statistics for ``data``.

    Token lengths are those of the full training example (prompt and answer through the chat
    template; raw text plus end-of-text for the ``text`` kind). ``truncated`` counts the rows longer
    than ``max_length``, which training would cut; ``answer_cut_off`` those whose prompt alone fills
    it (with assistant-only loss training drops them: no answer token is left to learn).
    ``validation`` (a separate ``LoadedDataset``) replaces the held-out fraction, as
    ``data.validation_path`` does in a run. Datasets larger than ``token_sample`` rows have token
    lengths counted on a seeded sample of that many rows (about 0.7 ms a row goes into the chat
    template); ``token_lengths["counted"]`` says how many.
    """
    dup_at = _duplicates(data.rows)
    lines = data.lines
    if validation is not None:
        train, val = data.rows, validation.rows
    else:
        train, val = split_rows(data.rows, validation_fraction, seed, max_validation_rows)
    counts = {"rows": len(data.rows), "errors": len(data.errors), "duplicates": len(dup_at),
              "train": len(train), "validation": len(val)}
    report = DatasetReport(path=data.path, format=data.format, kind=data.kind, counts=counts,
                           columns=list(data.columns), duplicates=len(dup_at),
                           duplicate_lines=[lines[i] for i in dup_at[:20]])
    recipe = report.recipe = sft_recipe(data.kind, data.rows, tokenizer, assistant_only_loss=assistant_only_loss)

    def example(row: dict[str, Any]) -> dict[str, Any]:
        """A row's longest example: its last one (the whole conversation, in every recipe)."""
        return (recipe.examples(row) or [sft_row(data.kind, row, assistant_only_loss=False)])[-1]

    n = len(data.rows)
    preview = [example(row) for row in data.rows[:PREVIEW_ROWS]]
    if tokenizer is None:
        report.preview = [render_plain(e) for e in preview]
        return report

    texts: list[str] = []
    counted: list[int] = []
    counted_examples: list[dict[str, Any]] = []
    chosen: list[int] | range = range(n)
    if token_sample and n > token_sample:
        import random

        chosen = sorted(random.Random(seed).sample(range(n), token_sample))
    # the sample is read in one pass in file order (a store's view streams it), not row by row at random
    for i, row in zip(chosen, data.rows.select(chosen)):
        ex = example(row)
        try:
            texts.append(_training_text(ex, tokenizer))
            counted.append(i)
            counted_examples.append(ex)
        except Exception as exc:  # a template that rejects this conversation (roles must alternate, ...)
            line = lines[i]
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            report.template_errors.append({"line": line, "message": "the model's chat template cannot render "
                                           f"this row ({reason})."})
    # Rendered text tokenised in batches gives the same ids as apply_chat_template(tokenize=True), faster.
    lengths: list[int] = []
    for start in range(0, len(texts), 1000):
        batch = tokenizer(texts[start:start + 1000], add_special_tokens=data.kind == "text")["input_ids"]
        lengths.extend(len(ids) for ids in batch)
    report.lengths = [None] * n
    for i, length in zip(counted, lengths):
        report.lengths[i] = length
    report.preview = [_render(e, tokenizer) for e in preview]
    if lengths:
        ordered = sorted(lengths)
        report.token_lengths = {
            "min": ordered[0], "median": statistics.median_low(ordered),
            "p95": ordered[min(len(ordered) - 1, max(0, int(round(0.95 * len(ordered))) - 1))],
            "max": ordered[-1], "truncated": sum(1 for n in ordered if n > max_length), "max_length": max_length,
            "counted": len(ordered),
            "answer_cut_off": _answers_cut_off(counted_examples, lengths, tokenizer, max_length),
        }
    return report


def _duplicates(rows: RowStore) -> list[int]:
    """Positions of rows identical to an earlier row; 16 bytes a row are remembered, not the rows."""
    import hashlib

    seen: set[bytes] = set()
    out: list[int] = []
    for i, text in enumerate(rows.texts()):
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
        if digest in seen:
            out.append(i)
        else:
            seen.add(digest)
    return out


def _answers_cut_off(examples: list[dict[str, Any]], lengths: list[int], tokenizer: Any,
                     max_length: int) -> int:
    """Rows whose prompt alone fills ``max_length``: training drops them, as nothing is left to learn."""
    cut = 0
    for example, n in zip(examples, lengths):
        if n is None or n <= max_length or "prompt" not in example:
            continue
        try:
            if len(_chat_ids(tokenizer, example["prompt"], add_generation_prompt=True)) >= max_length:
                cut += 1
        except Exception:
            continue
    return cut


def loss_segments(row: dict[str, Any], tokenizer: Any, kind: str, *, assistant_only_loss: bool = True,
                  max_length: int | None = None, recipe: SftRecipe | None = None) -> list[tuple[str, bool]]:
    """One normalised row as the model sees it, in pieces flagged True where they count toward the loss.

    Mirrors TRL's SFTTrainer tokenisation of the example(s) the recipe makes of the row (the
    dataset's ``sft_recipe``, or one for this row alone when ``recipe`` is None): every assistant
    reply by the template's ``{% generation %}`` markers, or each reply as the completion of the
    turns before it, or the last reply (the completion starts where the tokenised prompt and
    prompt+reply first differ, as in TRL); without assistant-only loss, and for raw text,
    everything counts. With ``max_length``, tokens past it are cut by training, so they are
    flagged False too. Joined together, the pieces are the full training text.
    """
    recipe = recipe or sft_recipe(kind, [row], tokenizer, assistant_only_loss=assistant_only_loss)
    examples = recipe.examples(row)
    if recipe.loss == EVERY_REPLY_MARKED and "messages" in row:
        out = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True, chat_template=recipe.chat_template)
        ids, mask = list(out["input_ids"]), [bool(m) for m in out["assistant_masks"]]
    elif recipe.loss == EVERY_REPLY_SPLIT and "messages" in row:
        ids, mask = _every_reply_mask(row["messages"], tokenizer)
    elif examples and "prompt" in examples[0]:
        example = examples[0]
        prompt_ids = _chat_ids(tokenizer, example["prompt"], add_generation_prompt=True)
        full_ids = _chat_ids(tokenizer, example["prompt"] + example["completion"])
        n = _common_prefix(prompt_ids, full_ids)
        mask = [False] * n + [True] * (len(full_ids) - n)
        ids = full_ids
    else:  # every token; or none, for a row the recipe does not train on
        ids = _example_ids(examples[0] if examples else sft_row(kind, row, assistant_only_loss=False), tokenizer)
        mask = [bool(examples)] * len(ids)
    if max_length is not None:
        mask = [m and i < max_length for i, m in enumerate(mask)]
    segments: list[tuple[str, bool]] = []
    start = 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or mask[i] != mask[start]:
            segments.append((tokenizer.decode(ids[start:i], skip_special_tokens=False), mask[start]))
            start = i
    return segments


def render_plain(example: dict[str, Any]) -> str:
    """A row as readable text without a tokenizer: 'user: …' lines, or the text itself."""
    if "text" in example:
        return example["text"]
    messages = example.get("messages") or (example.get("prompt", []) + example.get("completion", []))
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


# -- internals ---------------------------------------------------------------------------------------

def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _every_reply_mask(messages: list[dict[str, str]], tokenizer: Any) -> tuple[list[int], list[bool]]:
    """Each assistant reply learned as the completion of the turns before it (one example per reply)."""
    full = _chat_ids(tokenizer, messages)
    mask = [False] * len(full)
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or i == 0:
            continue
        upto = _chat_ids(tokenizer, messages[:i + 1])
        if full[:len(upto)] != upto:  # the template renders earlier turns differently later on
            continue
        start = _common_prefix(_chat_ids(tokenizer, messages[:i], add_generation_prompt=True), upto)
        for j in range(start, len(upto)):
            mask[j] = True
    return full, mask


def _chat_ids(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                        add_generation_prompt=add_generation_prompt)
    return list(out["input_ids"])


def _example_ids(example: dict[str, Any], tokenizer: Any) -> list[int]:
    """Token ids of the full training example, as TRL's SFTTrainer builds them."""
    if "text" in example:
        text = example["text"]
        eos = tokenizer.eos_token or ""
        if eos and not text.endswith(eos):
            text += eos
        return list(tokenizer(text=text)["input_ids"])
    if "prompt" in example:
        return _chat_ids(tokenizer, example["prompt"] + example["completion"])
    return _chat_ids(tokenizer, example["messages"])


def _training_text(example: dict[str, Any], tokenizer: Any) -> str:
    """The full training example as text: through the chat template, or raw text plus end-of-text."""
    if "text" in example:
        eos = tokenizer.eos_token or ""
        return example["text"] if not eos or example["text"].endswith(eos) else example["text"] + eos
    messages = example.get("messages") or example["prompt"] + example["completion"]
    return tokenizer.apply_chat_template(messages, tokenize=False)


def _render(example: dict[str, Any], tokenizer: Any) -> str:
    if "text" in example:
        return example["text"]
    messages = example.get("messages") or example["prompt"] + example["completion"]
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception:
        return render_plain(example)

