"""How long a run's examples are in tokens, and how long its batches will be.

One rule for the memory estimate, the wizard's Memory page and the engine: rows are tokenised and
sampled exactly as ``desktop-ft data inspect`` does it (``datasets.inspect_dataset``: the training
example through the chat template, a seeded sample on large files), and a batch is padded to the
longest row in it, never to ``training.max_length`` (TRL's collators pad per batch). The peak is
the batch that holds the longest row: ``padded_length``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from desktop_ft.core.config import RunConfig


@dataclass(frozen=True)
class LengthSample:
    """Token lengths of a dataset's counted rows (all rows, or ``inspect_dataset``'s seeded sample)."""

    path: str
    lengths: tuple[int, ...]
    rows: int  # usable rows in the file
    kind: str = "conversation"  # the dataset's kind (it settles 'task: auto')

    @property
    def longest(self) -> int:
        return max(self.lengths) if self.lengths else 0

    @property
    def counted(self) -> int:
        return len(self.lengths)


def padded_length(lengths: Sequence[int] | LengthSample | None, max_length: int, *, packing: bool = False) -> int:
    """Tokens per row of the longest batch: packing fills every row to ``max_length``; otherwise a
    batch is padded to its longest row, cut at ``max_length``. Without lengths: ``max_length``."""
    if isinstance(lengths, LengthSample):
        lengths = lengths.lengths
    if packing or not lengths:
        return max_length
    return max(1, min(max(lengths), max_length))


def local_tokenizer(model_name: str) -> Any:
    """The model's tokenizer from this machine (a folder, the built-in model, a converted GGUF, or a
    Hub id already in the cache); never a download. Raises ``ModelError`` when there is none here."""
    from desktop_ft.core import embedded, models
    from desktop_ft.core.errors import ModelError

    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    name = model_name or "default"
    entry = models.catalog_entry(name)
    path = Path(name).expanduser()
    try:
        if embedded.is_embedded(name) or path.suffix.lower() == ".gguf":
            gguf = embedded.embedded_gguf_path() if embedded.is_embedded(name) else path
            folder = embedded.conversion_target(gguf)
            if embedded.is_converted(folder):
                return AutoTokenizer.from_pretrained(folder)
            # not converted yet: the tokenizer alone comes from the GGUF header; the weights stay put
            return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        if path.is_dir():
            return AutoTokenizer.from_pretrained(path)
        return AutoTokenizer.from_pretrained(entry.id if entry else name, local_files_only=True)
    except (OSError, ValueError):  # transformers' "not in the cache and no connection" / "cannot load"
        raise ModelError(f"the tokenizer of {name} is not on this machine",
                         hint="Download the model once (or pick a model folder) to count the data's tokens.") from None


def sample_lengths(config: RunConfig) -> LengthSample:
    """Token lengths of ``config``'s dataset with its model's tokenizer, counted as ``data inspect``
    counts them. Cached per model, file (and its size and time) and the settings that change them."""
    path = config.data.path
    stamp = None
    if path and Path(path).expanduser().exists():
        st = Path(path).expanduser().stat()
        stamp = (st.st_size, st.st_mtime_ns)
    columns = tuple(sorted((config.data.columns or {}).items()))
    return _sample_lengths(config.model.name, path, stamp, columns, config.data.max_rows,
                           config.method.assistant_only_loss, config.training.seed)


def run_lengths(config: RunConfig) -> tuple[LengthSample | None, str | None]:
    """The data's token lengths for an estimate, or None and a sentence saying why not.

    A dataset that cannot be read raises (the user's error); a tokenizer that is not on this
    machine only makes the estimate the max_length worst case, and the sentence says so.
    """
    from desktop_ft.core.errors import ModelError

    try:
        return sample_lengths(config), None
    except ModelError as exc:
        return None, f"Every row assumed {config.training.max_length} tokens long: {exc}"


@functools.lru_cache(maxsize=16)
def _sample_lengths(model: str, path: str, _stamp: Any, columns: tuple[tuple[str, str], ...], max_rows: int | None,
                    assistant_only_loss: bool, seed: int) -> LengthSample:
    from desktop_ft.core import datasets as ds

    data = ds.load_dataset(path, columns=dict(columns) or None, max_rows=max_rows)
    tokenizer = local_tokenizer(model)
    report = ds.inspect_dataset(data, tokenizer, seed=seed, assistant_only_loss=assistant_only_loss)
    return LengthSample(path=data.path, lengths=tuple(n for n in report.lengths if n is not None),
                        rows=len(data.rows), kind=data.kind)


__all__ = ["LengthSample", "local_tokenizer", "padded_length", "run_lengths", "sample_lengths"]
