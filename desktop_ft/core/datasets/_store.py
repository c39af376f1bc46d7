"""Rows on disk: an Arrow file, memory-mapped, instead of a list of dicts in RAM.

A dataset of a few GB read into Python dicts takes about six times its size in memory, and the
training process would hold it twice (the rows, then the examples made of them). Here both go
through ``datasets``' own machinery instead: ``ArrowWriter`` writes them in batches to a file in
the cache, and ``Dataset.from_file`` maps it, so memory stays bounded by a batch whatever the size.

- ``RowStore`` holds the normalised rows of one loaded file, each as its exact JSON (rows of one
  file may differ in shape, which Arrow's one schema per column would refuse or change), with the
  source line of each. It is a read-only ``Sequence`` of dicts: ``len``, indexing, slicing (a
  list), iteration in batches, ``select`` (a view through an index list, nothing copied).
- ``arrow_examples`` writes what a TRL trainer is given (the examples of a recipe, preference
  rows...) with real columns, so the trainer's own tokenising ``map`` writes its cache to disk too;
  ``examples_of_this_run`` removes them when the run ends.

A store built for a file is kept in the cache under a key of the file's path, size and
modification time (and the options it was read with), so the window's preview and the training
process read the file once between them; the oldest stores are pruned.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast, overload

#: bump when what a store holds changes, so stores of an older layout are not reused
STORE_VERSION = 1
#: rows per Arrow record batch, written and read
BATCH_ROWS = 1000
#: row stores kept in the cache; older ones are removed
KEEP = 12
#: trainers' example files kept (the newest, and any written in the last hour: a run may be using it)
KEEP_EXAMPLES = 4
IN_USE_S = 3600


#: example folders this process wrote and has not removed (``examples_of_this_run``)
_WRITTEN: list[Path] = []

#: stores this process still holds (a row store or a view of one is alive): never pruned by it, as
#: their scans read the file again
_OPENED: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


def store_root() -> Path:
    """The cache's dataset folder: ``rows/`` (one store per file read), ``examples/`` (trainers' inputs)."""
    from desktop_ft.core.embedded import cache_root

    return cache_root() / "datasets"


def rows_root() -> Path:
    return store_root() / "rows"


def source_key(path: Path, **options: Any) -> str | None:
    """The cache key of a plain file read with ``options``, or None (folders, hub ids: not reused)."""
    try:
        st = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return None
    what = [STORE_VERSION, str(path.resolve()), st.st_size, st.st_mtime_ns, sorted(options.items())]
    return hashlib.sha256(json.dumps(what, default=str).encode()).hexdigest()[:32]


class _ComparesAsList:
    """Equal to a list (or another of its kind) holding the same items in the same order, as a list is."""

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (type(self), list)):
            mine, theirs = cast(Sequence[Any], self), cast(Sequence[Any], other)
            return len(mine) == len(theirs) and all(a == b for a, b in zip(mine, theirs))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


class RowStore(_ComparesAsList, Sequence[dict[str, Any]]):
    """The rows of one dataset, read from a memory-mapped Arrow file (see the module docstring)."""

    def __init__(self, table: Any, indices: Sequence[int] | None = None) -> None:
        self._table = table            # datasets.Dataset with columns 'row' (JSON text) and 'line'
        self._indices = indices        # a view: positions in the table, in order
        self._ascending = indices is None or all(a < b for a, b in zip(indices, indices[1:]))

    @classmethod
    def open(cls, folder: Path) -> RowStore:
        from datasets import Dataset

        table = Dataset.from_file(str(folder / "rows.arrow"), in_memory=False)
        _OPENED[folder.name] = table
        return cls(table)

    def __len__(self) -> int:
        return len(self._indices) if self._indices is not None else self._table.num_rows

    def _position(self, i: int) -> int:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("row index out of range")
        return self._indices[i] if self._indices is not None else i

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return [json.loads(t) for t in self.column_at("row", range(len(self))[i])]
        return json.loads(self.value_at("row", i))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self._batches("row"):
            yield from (json.loads(t) for t in batch)

    def value_at(self, column: str, i: int) -> Any:
        """``column`` of row ``i`` ('row': its JSON text; 'line': its source line)."""
        return self._table[self._position(i)][column]

    def column_at(self, column: str, picked: range) -> list[Any]:
        """``column`` of the rows at ``picked`` (positions), in one read where they are contiguous."""
        if self._indices is None and picked.step == 1:
            return list(self._table[picked.start:picked.stop][column]) if picked else []
        return [self.value_at(column, j) for j in picked]

    def __repr__(self) -> str:
        return f"RowStore({len(self)} rows)"

    def _batches(self, column: str) -> Iterator[list[Any]]:
        """``column`` of the rows in order, a batch at a time.

        Read from the file as a stream, not through the memory map: a pass over a mapped file
        leaves every page of it resident in this process (reclaimable, but counted in its RSS), a
        stream holds one batch. Views in ascending order (``split_rows`` makes those) pick their
        rows from the stream; others go through the mapped table.
        """
        if not self._ascending:
            table = self._table.select_columns([column]).select(self._indices)
            for batch in table.iter(batch_size=BATCH_ROWS):
                yield batch[column]
            return
        import numpy as np
        import pyarrow as pa

        wanted = None if self._indices is None else np.asarray(self._indices, dtype=np.int64)
        start = 0
        with pa.OSFile(self.arrow_file) as f:
            for record in pa.ipc.open_stream(f):
                end = start + record.num_rows
                values = record.column(record.schema.get_field_index(column))
                if wanted is None:
                    yield values.to_pylist()
                else:
                    lo = int(np.searchsorted(wanted, start))
                    hi = int(np.searchsorted(wanted, end))
                    if hi > lo:
                        yield values.take(pa.array(wanted[lo:hi] - start)).to_pylist()
                start = end

    @property
    def lines(self) -> Lines:
        """The source line (or row number) of each row, read from the store as they are asked for."""
        return Lines(self)

    def texts(self) -> Iterator[str]:
        """Each row's stored JSON, without parsing it (to compare rows, e.g. for duplicates)."""
        for batch in self._batches("row"):
            yield from batch

    def select(self, indices: Sequence[int]) -> RowStore:
        """A view of these rows (positions in this store), nothing copied."""
        base = list(indices) if self._indices is None else [self._indices[i] for i in indices]
        return RowStore(self._table, base)

    @property
    def arrow_file(self) -> str:
        return self._table.cache_files[0]["filename"]


class Lines(_ComparesAsList, Sequence[int]):
    """The ``line`` column of a store, as a read-only sequence of ints."""

    def __init__(self, store: RowStore) -> None:
        self._store = store

    def __len__(self) -> int:
        return len(self._store)

    @overload
    def __getitem__(self, i: int) -> int: ...

    @overload
    def __getitem__(self, i: slice) -> list[int]: ...

    def __getitem__(self, i: int | slice) -> int | list[int]:
        if isinstance(i, slice):
            return self._store.column_at("line", range(len(self))[i])
        return self._store.value_at("line", i)

    def __iter__(self) -> Iterator[int]:
        for batch in self._store._batches("line"):
            yield from batch

    def __repr__(self) -> str:
        return repr(list(self)) if len(self) <= 20 else f"Lines({len(self)} rows)"


class StoreWriter:
    """Writes normalised rows to a new store folder, batch by batch; ``finish`` makes it visible."""

    def __init__(self, key: str | None) -> None:
        from datasets import Features, Value
        from datasets.arrow_writer import ArrowWriter

        root = rows_root()
        root.mkdir(parents=True, exist_ok=True)
        self.key = key
        self.final = root / (key or f"once-{uuid.uuid4().hex}")
        self.folder = root / f".tmp-{uuid.uuid4().hex}"
        self.folder.mkdir()
        features = Features({"row": Value("large_string"), "line": Value("int64")})
        self._writer = ArrowWriter(features=features, path=str(self.folder / "rows.arrow"),
                                   writer_batch_size=BATCH_ROWS)
        self.count = 0

    def add(self, row: dict[str, Any], line: int) -> None:
        self._writer.write({"row": json.dumps(row, ensure_ascii=False), "line": int(line)})
        self.count += 1

    def finish(self, meta: dict[str, Any]) -> RowStore:
        self._writer.finalize()
        self._writer.close()
        (self.folder / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        try:
            os.rename(self.folder, self.final)
        except OSError:  # another process stored the same file first: theirs is as good
            shutil.rmtree(self.folder, ignore_errors=True)
        prune()
        return RowStore.open(self.final)

    def abandon(self) -> None:
        try:
            self._writer.close()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def cached(key: str | None) -> tuple[RowStore, dict[str, Any]] | None:
    """A finished store for ``key`` and its metadata, or None."""
    if key is None:
        return None
    folder = rows_root() / key
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        store = RowStore.open(folder)
    except Exception:  # half-removed, or written by another version: read the file again
        return None
    try:
        os.utime(folder)  # recently used: pruned last
    except OSError:
        pass
    return store, meta


def prune(root: Path | None = None, keep: int = KEEP, *, in_use_s: float = 0.0) -> None:
    """Remove all but the ``keep`` most recently used entries of ``root`` (and stale temp folders).

    A store removed while a window still reads it stays readable (a memory-mapped file lives until
    it is unmapped); ``in_use_s`` spares entries younger than that, for files a run writes next to
    (TRL's tokenised cache beside the examples).
    """
    root = root or rows_root()
    try:
        entries = list(root.iterdir())
    except OSError:
        return
    now = time.time()
    for p in entries:
        if p.name.startswith(".tmp-") and now - _mtime(p) > 24 * 3600:
            shutil.rmtree(p, ignore_errors=True)
    done = sorted((p for p in entries if not p.name.startswith(".tmp-") and p.is_dir()), key=_mtime, reverse=True)
    for p in done[keep:]:
        if now - _mtime(p) > in_use_s and p.name not in _OPENED:
            shutil.rmtree(p, ignore_errors=True)


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


# -- what a trainer is given -------------------------------------------------------------------------

def _features_of(example: dict[str, Any]) -> Any:
    """Arrow columns for examples shaped like ``example``: text, booleans, numbers or message lists."""
    from datasets import Features, List, Value

    message = {"role": Value("string"), "content": Value("string")}
    out: dict[str, Any] = {}
    for key, value in example.items():
        if isinstance(value, bool):
            out[key] = Value("bool")
        elif isinstance(value, int):
            out[key] = Value("int64")
        elif isinstance(value, float):
            out[key] = Value("float64")
        elif isinstance(value, list):
            out[key] = List(message)
        else:
            out[key] = Value("large_string")
    return Features(out)


def arrow_examples(examples: Iterable[dict[str, Any]], *, name: str = "examples") -> Any:
    """A memory-mapped ``datasets.Dataset`` of ``examples`` (None when there are none).

    Columns come from the first example; an example missing one gets None there, as
    ``Dataset.from_list`` would give. Written under the cache, so TRL's tokenising ``map`` writes
    its result next to it rather than into memory.
    """
    from datasets import Dataset
    from datasets.arrow_writer import ArrowWriter

    it = iter(examples)
    first = next(it, None)
    if first is None:
        return None
    root = store_root() / "examples"
    root.mkdir(parents=True, exist_ok=True)
    folder = root / f"{name}-{uuid.uuid4().hex[:12]}"
    folder.mkdir()
    _WRITTEN.append(folder)
    features = _features_of(first)
    keys = list(features)
    path = folder / "data.arrow"
    with ArrowWriter(features=features, path=str(path), writer_batch_size=BATCH_ROWS) as writer:
        for example in _chain(first, it):
            writer.write({k: example.get(k) for k in keys})
        writer.finalize()
    prune(root, KEEP_EXAMPLES, in_use_s=IN_USE_S)
    return Dataset.from_file(str(path), in_memory=False)


@contextlib.contextmanager
def examples_of_this_run() -> Iterator[None]:
    """Remove the example folders written inside this block when it ends, however it ends.

    Each holds what one run's trainer was given and, beside it, TRL's tokenised passes: about ten
    times the dataset for SFT (20 GB after a run on a 2 GB file), of no use once the run is over
    (a rerun writes its own). Where an open file cannot be removed (Windows), ``prune`` removes
    it later."""
    start = len(_WRITTEN)
    try:
        yield
    finally:
        for folder in _WRITTEN[start:]:
            shutil.rmtree(folder, ignore_errors=True)
        del _WRITTEN[start:]


def _chain(first: dict[str, Any], rest: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield first
    yield from rest
