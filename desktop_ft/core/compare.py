"""Before/after, saved with the run: a probe set replayed on the base and on every checkpoint.

::

    RUN_DIR/
      probes.json       the probe set: prompts picked from the validation split, plus the user's own
      compare.jsonl     one line per (prompt, checkpoint): {"prompt", "base", "tuned", "checkpoint"?, ...}
      forgetting.json   the last forgetting check (see ``forgetting_check``)

The probe set is picked once (the same rows the engine held out for validation, so the model never
trained on them) and kept, so every replay — after more training, on another checkpoint, from the
window or the CLI — asks the same questions. Answers are greedy by default, so a difference
between base and tuned is the fine-tune's doing, not the dice's.

The forgetting check asks a small set of everyday questions we wrote
(``desktop_ft/resources/probes/general_prompts.jsonl``), lets the *base* model answer them, and measures how
much less likely the tuned model finds those same answers: the mean increase of the per-token
negative log-likelihood, in nats. Near 0: the fine-tune left general behaviour alone; large: it
pulled the model far from how it answered before (expected in part when teaching a style, a
warning sign when the task was narrow).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from desktop_ft.core.chat import ChatModel, GenerationSettings, Message
from desktop_ft.core.config import write_text_atomic
from desktop_ft.core.errors import UserError
from desktop_ft.core.events import Progress
from desktop_ft.core.runs import iter_jsonl, read_run_config

PROBES_FILE = "probes.json"
COMPARE_FILE = "compare.jsonl"
FORGETTING_FILE = "forgetting.json"
DEFAULT_PROBE_COUNT = 5
FORGETTING_MAX_NEW_TOKENS = 48


class CompareError(UserError):
    """The probe set or a prompts file cannot be used."""


@dataclass(frozen=True)
class Probe:
    """One probe: the user's question, any earlier turns, and where it came from."""

    prompt: str
    source: str = "user"  # validation | training | user
    context: tuple[dict[str, str], ...] = ()  # earlier turns (system, user, assistant) of a conversation
    reference: str | None = None  # the dataset's own answer, when the probe came from the data

    def messages(self) -> list[Message]:
        return [dict(m) for m in self.context] + [{"role": "user", "content": self.prompt}]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"prompt": self.prompt, "source": self.source}
        if self.context:
            data["context"] = [dict(m) for m in self.context]
        if self.reference is not None:
            data["reference"] = self.reference
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Probe:
        return cls(prompt=str(data["prompt"]), source=str(data.get("source", "user")),
                   context=tuple(dict(m) for m in data.get("context") or ()), reference=data.get("reference"))


@dataclass(frozen=True)
class ProbeResult:
    """One row of the comparison table."""

    prompt: str
    base: str
    tuned: str
    checkpoint: int | None = None  # None: the run's final adapter

    @property
    def changed(self) -> bool:
        return self.base.strip() != self.tuned.strip()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"prompt": self.prompt, "base": self.base, "tuned": self.tuned}
        if self.checkpoint is not None:
            data["checkpoint"] = self.checkpoint
        return data


@dataclass(frozen=True)
class ProbeAnswered:
    """Event: one answer is ready (``side`` is 'base' or 'tuned'); the window fills its table from these."""

    index: int
    total: int
    prompt: str
    side: str
    text: str
    checkpoint: int | None = None


@dataclass(frozen=True)
class ForgettingReport:
    """How much less likely the tuned model finds the base model's own answers to everyday questions."""

    nll_base: float  # mean per-token NLL of the base answers under the base model (nats)
    nll_tuned: float  # … under the tuned model
    increase: float  # nll_tuned - nll_base
    prompts: int
    tokens: int
    verdict: str
    checkpoint: int | None = None
    samples: list[dict[str, str]] = field(default_factory=list)  # {"prompt", "base"} the base's answers

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the probe set ----------------------------------------------------------------------------------

def load_probes(run_dir: str | Path) -> list[Probe]:
    """The run's saved probe set (empty when none was saved yet)."""
    path = Path(run_dir) / PROBES_FILE
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [Probe.from_dict(p) for p in data.get("probes", [])]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise CompareError(f"the probe set is damaged ({exc})", path=path,
                           hint="Delete the file; a new probe set is picked on the next comparison.") from None


def save_probes(run_dir: str | Path, probes: list[Probe]) -> None:
    text = json.dumps({"probes": [p.to_dict() for p in probes]}, indent=2, ensure_ascii=False) + "\n"
    write_text_atomic(Path(run_dir) / PROBES_FILE, text)


def ensure_probes(run_dir: str | Path, count: int = DEFAULT_PROBE_COUNT) -> list[Probe]:
    """The saved probe set, or a new one picked from the run's validation split (then saved)."""
    probes = load_probes(run_dir)
    if probes:
        return probes
    probes = pick_probes(run_dir, count)
    if probes:
        save_probes(run_dir, probes)
    return probes


def add_probes(run_dir: str | Path, prompts: list[str]) -> list[Probe]:
    """Add the user's own prompts to the saved probe set (duplicates are ignored); returns the new set."""
    probes = ensure_probes(run_dir)
    known = {p.prompt for p in probes if not p.context}
    for prompt in prompts:
        prompt = prompt.strip()
        if prompt and prompt not in known:
            probes.append(Probe(prompt, source="user"))
            known.add(prompt)
    save_probes(run_dir, probes)
    return probes


def pick_probes(run_dir: str | Path, count: int = DEFAULT_PROBE_COUNT) -> list[Probe]:
    """Prompts of the rows the engine held out for validation (same file, fraction and seed).

    With no validation split (fraction 0, or a tiny dataset), the last training rows stand in and
    the probes say so (``source='training'``).
    """
    from desktop_ft.core import datasets as ds

    config = read_run_config(Path(run_dir))
    try:
        data = ds.load_dataset(config.data.path, columns=config.data.columns or None, max_rows=config.data.max_rows)
    except UserError:
        return []  # the data moved away; the user's own prompts still work
    train_rows, val_rows = ds.split_rows(data.rows, config.data.validation_fraction, config.training.seed,
                                         config.data.max_validation_rows)
    source = "validation"
    if config.data.validation_path:
        try:
            val_rows = ds.load_dataset(config.data.validation_path, columns=config.data.columns or None).rows
        except UserError:
            val_rows = []
    if not val_rows:
        val_rows, source = train_rows[-count:], "training"
    probes = []
    for row in val_rows[:count]:
        probe = _probe_from_row(row, source)
        if probe is not None:
            probes.append(probe)
    return probes


def read_prompts_file(path: str | Path) -> list[str]:
    """Prompts from a file: one per line in a .txt, or JSON lines with 'prompt' or chat 'messages'."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CompareError("prompts file not found", path=path) from None
    except OSError as exc:
        raise CompareError(f"cannot read the prompts file ({exc.strerror})", path=path) from None
    prompts: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if path.suffix.lower() not in (".jsonl", ".json", ".ndjson"):
            prompts.append(line)
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CompareError(f"is not valid JSON ({exc.msg})", path=path, line=lineno) from None
        if isinstance(obj, str):
            prompts.append(obj)
        elif isinstance(obj, dict) and isinstance(obj.get("prompt"), str):
            prompts.append(obj["prompt"])
        elif isinstance(obj, dict) and isinstance(obj.get("messages"), list):
            users = [m.get("content") for m in obj["messages"] if isinstance(m, dict) and m.get("role") == "user"]
            if not users:
                raise CompareError("has no user message", path=path, line=lineno)
            prompts.append(str(users[0]))
        else:
            raise CompareError("needs a 'prompt' text or a 'messages' list", path=path, line=lineno,
                               hint='For example {"prompt": "How do I boil an egg?"}, or use a .txt file '
                                    'with one prompt per line.')
    if not prompts:
        raise CompareError("has no prompts", path=path)
    return prompts


# -- replaying ---------------------------------------------------------------------------------------

def replay(run_dir: str | Path, probes: list[Probe] | None = None, *, checkpoints: bool | list[int] = False,
           settings: GenerationSettings | None = None, chat: ChatModel | None = None,
           on_event: Callable[[Any], None] | None = None, stop: threading.Event | None = None,
           save: bool = True) -> list[ProbeResult]:
    """Answer every probe with the base model and with the tuned model (and each checkpoint).

    ``probes`` defaults to the run's probe set (picked and saved on first use). ``checkpoints``:
    False for the final adapter only, True for the final adapter and every checkpoint, or a list
    of steps (the checkpoint saved at the final adapter's own step is skipped: same weights, same
    answers). Results are merged into ``RUN_DIR/compare.jsonl`` (same prompt and checkpoint:
    replaced). A set ``stop`` ends the replay after the current answer; what is done is kept.
    """
    run_dir = Path(run_dir).expanduser()
    emit = on_event or (lambda _e: None)
    settings = settings or GenerationSettings()
    probes = probes if probes is not None else ensure_probes(run_dir)
    if not probes:
        raise CompareError("there is nothing to compare: the run's data has no rows to probe with", path=run_dir,
                           hint="Give prompts with --prompt or --prompts FILE.")
    if chat is None:
        emit(Progress("compare", "Loading the model…"))
        chat = ChatModel.from_run(run_dir, on_progress=emit)
    if not chat.has_tuned:
        raise CompareError("this model has no fine-tuned side to compare", path=run_dir)
    original = chat.tuned
    assert original is not None
    steps: list[int | None] = [original.checkpoint]
    if checkpoints is True:
        # the final adapter was saved at the run's last step: its checkpoint would repeat the same answers
        final_step = _final_step(run_dir) if original.checkpoint is None else original.checkpoint
        steps += [s for s in chat.checkpoints() if s != final_step]
    elif checkpoints:
        steps += [s for s in checkpoints if s != original.checkpoint]
    total = len(probes) * (1 + len(steps))
    done = 0
    results: list[ProbeResult] = []

    def stopped() -> bool:
        return stop is not None and stop.is_set()

    def progress(text: str) -> None:
        emit(Progress("compare", text, done / total))

    base_answers: list[str] = []
    for i, probe in enumerate(probes):
        if stopped():
            break
        progress(f"Base model, prompt {i + 1} of {len(probes)}…")
        answer = chat.generate(probe.messages(), tuned=False, settings=settings, stop=stop)
        base_answers.append(answer)
        done += 1
        emit(ProbeAnswered(i, len(probes), probe.prompt, "base", answer))
    try:
        for step in steps:
            if stopped():
                break
            if step != chat.tuned.checkpoint:  # type: ignore[union-attr]
                chat.use_checkpoint(step)
            label = f"checkpoint {step}" if step is not None else "fine-tuned model"
            for i, probe in enumerate(probes[:len(base_answers)]):
                if stopped():
                    break
                progress(f"{label[0].upper() + label[1:]}, prompt {i + 1} of {len(probes)}…")
                answer = chat.generate(probe.messages(), tuned=True, settings=settings, stop=stop)
                done += 1
                emit(ProbeAnswered(i, len(probes), probe.prompt, "tuned", answer, step))
                results.append(ProbeResult(probe.prompt, base_answers[i], answer, step))
    finally:
        if chat.tuned != original:
            chat.use_checkpoint(original.checkpoint)
    if save and results:
        save_results(run_dir, results, settings)
    emit(Progress("compare", f"Compared {len(results)} answer(s).", 1.0))
    return results


def save_results(run_dir: Path, results: list[ProbeResult], settings: GenerationSettings) -> None:
    """Merge results into ``compare.jsonl``: one line per (prompt, checkpoint), newest wins."""
    path = Path(run_dir) / COMPARE_FILE
    stamp = time.time()
    new = {(r.prompt, r.checkpoint): {**r.to_dict(), "changed": r.changed, "settings": settings.to_dict(),
                                      "time": stamp} for r in results}
    rows: list[dict[str, Any]] = []
    for old in iter_jsonl(path):
        key = (old.get("prompt"), old.get("checkpoint"))
        rows.append(new.pop(key) if key in new else old)
    rows += list(new.values())
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_table(run_dir: str | Path) -> list[dict[str, Any]]:
    """The saved comparison table (what the window's probe-set tab shows)."""
    return list(iter_jsonl(Path(run_dir) / COMPARE_FILE))


# -- forgetting --------------------------------------------------------------------------------------

def general_prompts_path() -> Path:
    from desktop_ft import resources

    return resources.general_prompts()


def general_prompts() -> list[str]:
    return [str(r["prompt"]) for r in iter_jsonl(general_prompts_path()) if r.get("prompt")]


def forgetting_check(chat: ChatModel, *, prompts: list[str] | None = None,
                     max_new_tokens: int = FORGETTING_MAX_NEW_TOKENS, on_event: Callable[[Any], None] | None = None,
                     stop: threading.Event | None = None, run_dir: str | Path | None = None) -> ForgettingReport:
    """Mean per-token NLL increase, tuned vs base, of the base model's own greedy answers.

    Saved to ``RUN_DIR/forgetting.json`` when ``run_dir`` is given.
    """
    emit = on_event or (lambda _e: None)
    prompts = prompts if prompts is not None else general_prompts()
    if not chat.has_tuned:
        raise CompareError("the forgetting check needs a fine-tuned model to compare with its base")
    settings = GenerationSettings(max_new_tokens=max_new_tokens, greedy=True)
    sum_base = sum_tuned = 0.0
    tokens = used = 0
    samples = []
    for i, prompt in enumerate(prompts):
        if stop is not None and stop.is_set():
            break
        emit(Progress("forgetting", f"General question {i + 1} of {len(prompts)}…", i / max(len(prompts), 1)))
        messages = [{"role": "user", "content": prompt}]
        answer = chat.generate(messages, tuned=False, settings=settings, stop=stop)
        nll_b, n = chat.answer_nll(messages, answer, tuned=False)
        if n == 0:
            continue
        nll_t, _ = chat.answer_nll(messages, answer, tuned=True)
        sum_base, sum_tuned, tokens, used = sum_base + nll_b, sum_tuned + nll_t, tokens + n, used + 1
        samples.append({"prompt": prompt, "base": answer})
    if tokens == 0:
        raise CompareError("the base model gave no answers to the general questions, so nothing was measured")
    base, tuned = sum_base / tokens, sum_tuned / tokens
    report = ForgettingReport(nll_base=round(base, 4), nll_tuned=round(tuned, 4), increase=round(tuned - base, 4),
                              prompts=used, tokens=tokens, verdict=forgetting_verdict(tuned - base),
                              checkpoint=chat.tuned.checkpoint if chat.tuned else None, samples=samples)
    if run_dir is not None:
        write_text_atomic(Path(run_dir) / FORGETTING_FILE,
                          json.dumps({**report.to_dict(), "time": time.time()}, indent=2, ensure_ascii=False) + "\n")
    emit(Progress("forgetting", f"Forgetting check: {report.verdict}", 1.0))
    return report


def forgetting_verdict(increase: float) -> str:
    """A plain sentence for a per-token NLL increase in nats."""
    if increase <= 0.1:
        return f"+{max(increase, 0):.2f} nats/token: general answers are as likely as before"
    if increase <= 0.5:
        return (f"+{increase:.2f} nats/token: the model drifted a little from its general answers "
                f"(normal when teaching a style)")
    return (f"+{increase:.2f} nats/token: large drift from the base model's general answers; check a few, "
            f"and consider a lower learning rate or fewer steps")


# -- internals ---------------------------------------------------------------------------------------

def _final_step(run_dir: Path) -> int | None:
    """The step the final adapter was saved at (None while the run is still going)."""
    from desktop_ft.core.runs import FINISHED, STOPPED, RunFolder

    status = RunFolder(run_dir).read_status()
    return status.step if status.state in (FINISHED, STOPPED) else None


def _probe_from_row(row: dict[str, Any], source: str) -> Probe | None:
    """A conversation row → the last user turn before the last assistant reply, earlier turns as context."""
    messages = row.get("messages")
    if isinstance(messages, list) and messages:
        last_assistant = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
        head = messages[:last_assistant] if last_assistant is not None else messages
        users = [i for i, m in enumerate(head) if m.get("role") == "user"]
        if not users:
            return None
        u = users[-1]
        reference = messages[last_assistant]["content"] if last_assistant is not None else None
        context = tuple({"role": m["role"], "content": m["content"]} for m in head[:u])
        return Probe(str(head[u]["content"]), source=source, context=context, reference=reference)
    prompt = row.get("prompt")
    answer = row.get("completion", row.get("chosen"))  # prompt/completion, or a preference pair's good answer
    if isinstance(prompt, str) and prompt.strip():
        return Probe(prompt, source=source, reference=answer if isinstance(answer, str) else None)
    if isinstance(prompt, list):  # conversational prompt/completion or preference
        return _probe_from_row({"messages": [*prompt, *(answer if isinstance(answer, list) else [])]}, source)
    return None  # raw text rows have no question to ask
