"""A run's saved curves as columns: what the Train page and the Runs page plot of a run on disk.

``metrics.jsonl`` grows with the run (a 50,000-step run is 11 MB), and the window reads it in a
worker thread while its GUI thread keeps drawing. Turning it into events a line at a time in Python
holds the GIL for half a second, and every Python call the GUI thread makes meanwhile (pyqtgraph's
paint and resize handlers, hundreds per redraw) waits for it: the window froze for a second on
every reopen. So the log is parsed by Arrow's JSON reader, in C++ threads that do not hold the GIL
(60 ms for 50,000 lines), taking only the fields the curves use. What a line *means* is still
``events``: the field names come from its event classes, and a log Arrow cannot parse (a damaged
line, a value of the wrong type) is read through ``RunFolder.iter_events``, line by line, skipping
what is broken, exactly as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from desktop_ft.core.events import EvalLogged, StepLogged
from desktop_ft.core.runs import RunFolder

if TYPE_CHECKING:
    import numpy as np

#: column name → the event field it holds, for train steps and evaluations
STEP_COLUMNS = {"step": "step", "loss": "loss", "lr": "learning_rate", "grad": "grad_norm",
                "speed": "tokens_per_second"}
EVAL_COLUMNS = {"eval_step": "step", "eval": "eval_loss"}
#: bytes read from the end of the log to find its last complete line
_TAIL = 1 << 16


def read_curves(run: RunFolder | Path | str) -> dict[str, np.ndarray]:
    """The run's curves, in the order logged: ``step, loss, lr, grad, speed`` from its train steps,
    ``eval_step, eval`` from its evaluations; a value a line lacks (or wrote as null) is NaN.

    A line still being written (a live run) or cut off by a kill is left out. No log: empty columns.
    """
    run = run if isinstance(run, RunFolder) else RunFolder(Path(run))
    import pyarrow as pa

    try:
        return _read_columnar(run.metrics_path)
    except FileNotFoundError:
        return _columns([], [])
    except pa.ArrowInvalid:  # a damaged or unexpected line: the exact reader skips it and keeps the rest
        return _read_by_event(run)


def _read_columnar(path: Path) -> dict[str, np.ndarray]:
    import pyarrow as pa
    import pyarrow.json as pj

    fields = sorted({*STEP_COLUMNS.values(), *EVAL_COLUMNS.values()})
    schema = pa.schema([("event", pa.string()), *((name, pa.float64()) for name in fields)])
    end = _complete_size(path)
    if end == 0:
        return _columns([], [])
    with pa.memory_map(str(path)) as mapped:
        table = pj.read_json(pa.BufferReader(mapped.read_buffer(end)),
                             parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"))
    import numpy as np

    kinds = table.column("event").combine_chunks().dictionary_encode()
    kind = _values(kinds.indices, np.int32, missing=-1)  # dictionary_encode gives int32 indices
    has_step = ~np.isnan(_values(table.column("step").combine_chunks(), np.float64, missing=np.nan))
    names = kinds.dictionary.to_pylist()

    def pick(name: str, columns: dict[str, str]) -> dict[str, np.ndarray]:
        rows = (kind == names.index(name)) & has_step if name in names else np.zeros(len(kind), dtype=bool)
        return {column: _values(table.column(field).combine_chunks(), np.float64, missing=np.nan)[rows]
                for column, field in columns.items()}

    return {**pick(StepLogged.__name__, STEP_COLUMNS), **pick(EvalLogged.__name__, EVAL_COLUMNS)}


def _values(array: Any, dtype: Any, missing: float) -> np.ndarray:
    """A primitive Arrow array as numpy, nulls as ``missing``. Read off its buffers (validity bits,
    values) because pyarrow's own conversions with nulls import pandas, half a second of holding
    the GIL the first time."""
    import numpy as np

    start, n = array.offset, len(array)
    validity, data = array.buffers()[:2]
    values = np.frombuffer(data, dtype=dtype, count=start + n)[start:].astype(dtype, copy=True)
    if array.null_count:
        bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")[start:start + n]
        values[bits == 0] = missing
    return values


def _complete_size(path: Path) -> int:
    """Bytes of the log up to and including its last newline."""
    with open(path, "rb") as fh:
        end = fh.seek(0, 2)
        while end > 0:  # back from the end, one piece at a time (a long last line is read once)
            start = max(end - _TAIL, 0)
            fh.seek(start)
            cut = fh.read(end - start).rfind(b"\n")
            if cut >= 0:
                return start + cut + 1
            end = start
        return 0


def _read_by_event(run: RunFolder) -> dict[str, np.ndarray]:
    steps: list[tuple[float, ...]] = []
    evals: list[tuple[float, ...]] = []
    for ev in run.iter_events():
        if isinstance(ev, StepLogged):
            steps.append(tuple(_num(getattr(ev, field)) for field in STEP_COLUMNS.values()))
        elif isinstance(ev, EvalLogged):
            evals.append(tuple(_num(getattr(ev, field)) for field in EVAL_COLUMNS.values()))
    return _columns(steps, evals)


def _columns(steps: list[tuple[float, ...]], evals: list[tuple[float, ...]]) -> dict[str, np.ndarray]:
    import numpy as np

    t = np.array(steps, dtype=float).reshape(-1, len(STEP_COLUMNS))
    e = np.array(evals, dtype=float).reshape(-1, len(EVAL_COLUMNS))
    return {**{name: t[:, i] for i, name in enumerate(STEP_COLUMNS)},
            **{name: e[:, i] for i, name in enumerate(EVAL_COLUMNS)}}


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


__all__ = ["EVAL_COLUMNS", "STEP_COLUMNS", "read_curves"]
