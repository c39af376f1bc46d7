"""Small frozen events that a training run emits.

The same objects feed the live plot, the CLI progress bar, the JSON-lines stream that the window
reads from the training child process, and ``metrics.jsonl``. ``to_dict`` / ``event_from_dict``
make that round trip lossless.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Union


@dataclass(frozen=True)
class RunStarted:
    run_dir: str
    max_steps: int
    resumed_from_step: int = 0


@dataclass(frozen=True)
class Progress:
    """Work before training proper (model conversion, tokenising); fraction is None when unknown."""

    stage: str
    message: str
    fraction: float | None = None


@dataclass(frozen=True)
class StepLogged:
    step: int
    max_steps: int
    epoch: float
    loss: float
    learning_rate: float | None = None
    grad_norm: float | None = None
    tokens_per_second: float | None = None
    eta_seconds: float | None = None
    extras: dict[str, float] | None = None  # task metrics, e.g. DPO's {"rewards/margins": 0.4}


@dataclass(frozen=True)
class EvalLogged:
    step: int
    epoch: float
    eval_loss: float
    extras: dict[str, float] | None = None


@dataclass(frozen=True)
class CheckpointSaved:
    step: int
    path: str


@dataclass(frozen=True)
class RunFinished:
    state: str  # finished | stopped | failed
    step: int
    error: str | None = None
    adapter_dir: str | None = None
    run_dir: str | None = None
    model_dir: str | None = None  # set instead of adapter_dir after full fine-tuning
    rank: int = 0  # the process that reports it, under a launcher (only failures come from ranks > 0)


Event = Union[RunStarted, Progress, StepLogged, EvalLogged, CheckpointSaved, RunFinished]
EventCallback = Callable[[Event], None]

_TYPES: dict[str, type] = {cls.__name__: cls for cls in
                           (RunStarted, Progress, StepLogged, EvalLogged, CheckpointSaved, RunFinished)}
#: each event's field names, looked up once: a reopened run turns tens of thousands of lines into events
_FIELDS: dict[str, frozenset[str]] = {name: frozenset(f.name for f in dataclasses.fields(cls))
                                      for name, cls in _TYPES.items()}


def to_dict(event: Event) -> dict[str, Any]:
    """``{"event": "StepLogged", "step": 3, ...}`` — one JSON line in the event stream."""
    return {"event": type(event).__name__, **dataclasses.asdict(event)}


def event_from_dict(data: dict[str, Any]) -> Event:
    """The event a line of the log holds; keys it does not know (``time``, or one a newer version
    added) are left out, a missing required one raises ``TypeError``, an unknown kind ``KeyError``."""
    kind = data["event"]
    names = _FIELDS[kind]
    return _TYPES[kind](**{k: v for k, v in data.items() if k in names})
