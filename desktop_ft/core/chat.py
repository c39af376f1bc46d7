"""Talk to a model: the base, a run's fine-tune, or any checkpoint of it — streaming and stoppable.

``ChatModel.from_run(run_dir)`` loads the run's base model once and its LoRA adapter on top; the
base side of a comparison is the same weights with the adapter switched off (peft's
``disable_adapter()``), so base and tuned cost one model's memory and the base side is *exactly*
the base model. A run folder that holds a full model instead of an adapter gets two models, after a
check that both fit in memory.

``generate`` is a plain function call (no Qt, no threads of its own): tokens are handed to
``on_token`` as they come and a ``threading.Event`` stops generation after the current token, as
the window's worker and the CLI both need. Calls on one ``ChatModel`` are serialised by a lock
(one set of weights, one adapter switch), so two threads asking for base and tuned at once simply
take turns.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

from desktop_ft.core.config import _f
from desktop_ft.core.errors import ModelError, UserError
from desktop_ft.core.hardware import compute_device
from desktop_ft.core.precision import TORCH_NAMES, inference_dtype
from desktop_ft.core.runs import TunedSource, list_checkpoints, read_run_config, tuned_source

Message = dict[str, str]
TokenCallback = Callable[[str], None]

#: end-of-turn markers of common chat templates; generation stops at any that the vocabulary has
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>",
               "<|end_of_text|>", "<|eom_id|>")


class ChatError(UserError):
    """A model, run or checkpoint cannot be used for chat (missing adapter, unknown checkpoint…)."""


@dataclass
class GenerationSettings:
    """How an answer is produced; the window's sampling panel and the CLI flags come from these fields."""

    max_new_tokens: int = _f(256, help="Longest answer, in tokens (about ¾ of a word each).", min=1, max=8192)
    greedy: bool = _f(True, help="Always pick the most likely next token: the same prompt gives the same "
                      "answer, which is what a before/after comparison needs. Off means sampling.")
    temperature: float = _f(0.7, help="Sampling only: higher gives more varied, less predictable answers.",
                            min=0.01, max=2.0)
    top_p: float = _f(0.9, help="Sampling only: pick from the smallest set of tokens whose probabilities add "
                      "up to this share.", min=0.01, max=1.0)
    seed: int = _f(0, help="Sampling only: the same seed with the same settings gives the same answer.")
    repetition_penalty: float = _f(1.0, help="Above 1 discourages repeating the same words; 1 turns it off.",
                                   min=1.0, max=2.0, advanced=True)
    system_prompt: str = _f("", help="Instructions put before the conversation as a system message "
                            "(empty: the model's own default, if its chat template has one).")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationSettings:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class ChatModel:
    """One loaded model (plus, for a run, its fine-tune) that answers chat messages."""

    def __init__(self, model: Any, tokenizer: Any, *, base_path: Path, run_dir: Path | None = None,
                 tuned: TunedSource | None = None, tuned_model: Any = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.base_path = Path(base_path)
        self.run_dir = Path(run_dir) if run_dir else None
        self.tuned = tuned
        self._tuned_model = tuned_model  # a second model, only for full fine-tunes
        self._lock = threading.RLock()
        self._loaded_adapters: dict[str, str] = {}  # adapter folder → its name inside the peft model
        if tuned is not None and tuned.kind == "adapter":
            self._loaded_adapters[str(tuned.path)] = "default"

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_run(cls, run_dir: str | Path, checkpoint: int | None = None,
                 on_progress: Callable[[Any], None] | None = None) -> ChatModel:
        """The run's base model with its adapter (final, or of ``checkpoint-N``) ready to toggle."""
        run_dir = Path(run_dir).expanduser()
        config = read_run_config(run_dir)
        source = tuned_source(run_dir, checkpoint)
        from desktop_ft.core.models import resolve_model

        base_path = resolve_model(config.model.name, revision=config.model.revision, on_progress=on_progress)
        trust = config.model.trust_remote_code
        if source.kind == "full":
            check_memory_for(base_path, source.path)
            base = _load_model(base_path, trust)
            tuned_model = _load_model(source.path, trust)
            tokenizer = _load_tokenizer(source.path, trust)
            return cls(base, tokenizer, base_path=base_path, run_dir=run_dir, tuned=source, tuned_model=tuned_model)
        from peft import PeftModel

        base = _load_model(base_path, trust)
        tokenizer = _load_tokenizer(source.path if _has_tokenizer(source.path) else base_path, trust)
        try:
            model = PeftModel.from_pretrained(base, str(source.path), is_trainable=False)
        except Exception as exc:  # a damaged or foreign adapter folder
            raise ChatError(f"the adapter could not be loaded onto {config.model.name} ({_first_line(exc)})",
                            path=source.path, hint="Was this run trained on a different base model?") from None
        model.eval()
        return cls(model, tokenizer, base_path=base_path, run_dir=run_dir, tuned=source)

    @classmethod
    def from_model(cls, name_or_path: str, on_progress: Callable[[Any], None] | None = None) -> ChatModel:
        """Any model Desktop FT can resolve ('default', a folder, a .gguf file, a Hub id); no tuned side."""
        from desktop_ft.core.models import resolve_model

        path = resolve_model(name_or_path, on_progress=on_progress)
        if (path / "adapter_config.json").exists() and not (path / "config.json").exists():
            raise ChatError("is a LoRA adapter folder, not a model", path=path,
                            hint="Chat with the run folder instead (desktop-ft chat RUN_DIR).")
        return cls(_load_model(path, False), _load_tokenizer(path, False), base_path=path)

    # -- what is loaded -----------------------------------------------------------------------
    @property
    def has_tuned(self) -> bool:
        """True when there is a fine-tuned side to compare with the base."""
        return self.tuned is not None

    def checkpoints(self) -> list[int]:
        """Steps of the run's checkpoints that hold a usable adapter or model, oldest first."""
        return list_checkpoints(self.run_dir) if self.run_dir else []

    def use_checkpoint(self, checkpoint: int | None) -> None:
        """Make ``checkpoint-N`` (or the final adapter, for None) the tuned side, without reloading the base."""
        if self.run_dir is None:
            raise ChatError("this model is not a run, so it has no checkpoints")
        source = tuned_source(self.run_dir, checkpoint)
        with self._lock:
            if source.kind == "full" or (self.tuned and self.tuned.kind == "full"):
                if source.kind != "full":
                    raise ChatError("this run mixes full-model and adapter checkpoints", path=source.path)
                self._tuned_model = _load_model(source.path, False)
                self.tuned = source
                return
            name = self._loaded_adapters.get(str(source.path))
            if name is None:
                name = _adapter_name(source)
                self.model.load_adapter(str(source.path), adapter_name=name, is_trainable=False)
                self._loaded_adapters[str(source.path)] = name
            self.model.set_adapter(name)
            self.model.eval()
            self.tuned = source

    # -- generation ---------------------------------------------------------------------------
    def generate(self, messages: list[Message], *, tuned: bool = True, settings: GenerationSettings | None = None,
                 on_token: TokenCallback | None = None, stop: threading.Event | None = None) -> str:
        """Answer the conversation ``messages`` (dicts with role/content); returns the whole answer.

        ``tuned=False`` answers with the base model (adapter off). ``on_token`` receives the answer
        piece by piece as it is generated; the pieces joined equal the returned text. Setting
        ``stop`` ends generation after the current token and returns what was generated so far.
        """
        import torch

        settings = settings or GenerationSettings()
        with self._lock:
            inputs = self.encode(messages, settings)
            model, context = self._side(tuned)
            streamer = _DeltaStreamer(self.tokenizer, inputs["input_ids"].shape[1], on_token)

            kwargs = self._generate_kwargs(settings, stop, streamer)
            if stop is not None and stop.is_set():
                return ""
            with context, torch.no_grad():
                out = model.generate(**inputs.to(model.device), **kwargs)
            text = self.tokenizer.decode(out[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True)
            streamer.finish(text)
            return text

    def generate_pair(self, messages: list[Message], *, settings: GenerationSettings | None = None,
                      on_token: Callable[[str, str], None] | None = None,
                      stop: threading.Event | None = None) -> tuple[str, str]:
        """Base and tuned answers to the same prompt, generated *together*: ``(base, tuned)``.

        For a LoRA run this is one batched ``generate`` in which row 0 runs with the adapter off
        and row 1 with it on (peft's mixed-adapter batches), so both answers stream at the same
        time and cost one pass; ``on_token(side, piece)`` gets ``'base'`` or ``'tuned'`` pieces.
        Full fine-tunes (two models) answer one after the other. Batched arithmetic can differ
        from a lone run in the last float bits, so on a near-tie a greedy answer may differ from
        ``generate``'s.
        """
        import torch

        settings = settings or GenerationSettings()
        emit = on_token or (lambda _side, _piece: None)
        if self.tuned is None or self._tuned_model is not None or not self._mixed_batches_ok():
            base = self.generate(messages, tuned=False, settings=settings, on_token=lambda p: emit("base", p),
                                 stop=stop)
            tuned = self.generate(messages, tuned=True, settings=settings, on_token=lambda p: emit("tuned", p),
                                  stop=stop)
            return base, tuned
        with self._lock:
            inputs = self.encode(messages, settings)
            n_prompt = inputs["input_ids"].shape[1]
            batch = {k: v.repeat(2, 1).to(self.model.device) for k, v in inputs.items()}
            streamers = [_DeltaStreamer(self.tokenizer, n_prompt, lambda p: emit("base", p)),
                         _DeltaStreamer(self.tokenizer, n_prompt, lambda p: emit("tuned", p))]
            stop_ids = set(self.stop_token_ids())

            class _Both:
                """Routes each row of the batch to its side's streamer, until that row ends."""

                def __init__(self) -> None:
                    self.first, self.done = True, [False, False]

                def put(self, value: Any) -> None:
                    if self.first:
                        self.first = False
                        return
                    for row, token in enumerate(value.reshape(-1).tolist()):
                        if self.done[row]:
                            continue
                        if int(token) in stop_ids:
                            self.done[row] = True
                            continue
                        streamers[row]._skip_prompt = False
                        streamers[row].put(torch.tensor([token]))

                def end(self) -> None:
                    pass

            kwargs = self._generate_kwargs(settings, stop, _Both())
            if stop is not None and stop.is_set():
                return "", ""
            active = self.model.active_adapter
            with torch.no_grad():
                out = self.model.generate(**batch, adapter_names=["__base__", active], **kwargs)
            answers = []
            for row in range(2):
                ids = [t for t in out[row][n_prompt:].tolist()]
                cut = next((i for i, t in enumerate(ids) if t in stop_ids), len(ids))
                text = self.tokenizer.decode(ids[:cut], skip_special_tokens=True)
                streamers[row].finish(text)
                answers.append(text)
            return answers[0], answers[1]

    def _generate_kwargs(self, settings: GenerationSettings, stop: threading.Event | None,
                         streamer: Any) -> dict[str, Any]:
        """``model.generate`` arguments for ``settings``: greedy or seeded sampling, our stop tokens, and a
        stopping criterion that ends every row once ``stop`` is set."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                done = bool(stop is not None and stop.is_set())
                return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

        kwargs: dict[str, Any] = dict(max_new_tokens=settings.max_new_tokens, do_sample=not settings.greedy,
                                      eos_token_id=self.stop_token_ids(), pad_token_id=self._pad_id(),
                                      repetition_penalty=settings.repetition_penalty,
                                      stopping_criteria=StoppingCriteriaList([_Stop()]), streamer=streamer)
        if settings.greedy:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
            torch.manual_seed(settings.seed)
        return kwargs

    def encode(self, messages: list[Message], settings: GenerationSettings | None = None) -> Any:
        """The prompt as the model's chat template renders it, ending with the assistant's turn."""
        messages = with_system_prompt(messages, (settings or GenerationSettings()).system_prompt)
        if not self.tokenizer.chat_template:
            raise ChatError("this model has no chat template, so it cannot hold a conversation",
                            path=self.base_path, hint="Pick an instruct/chat model.")
        try:
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                      return_dict=True)
        except Exception as exc:  # templates raise for role orders they do not support
            raise ChatError(f"the model's chat template rejected this conversation ({_first_line(exc)})",
                            hint="Some templates need user and assistant turns to alternate, or allow no "
                                 "system message.") from None

    def logits(self, input_ids: Any, *, tuned: bool = True) -> Any:
        """Next-token logits for every position of ``input_ids`` (a 2-D tensor), from one side."""
        import torch

        with self._lock:
            model, context = self._side(tuned)
            with context, torch.no_grad():
                return model(input_ids=input_ids.to(model.device)).logits

    def answer_nll(self, messages: list[Message], answer: str, *, tuned: bool = True) -> tuple[float, int]:
        """Summed negative log-likelihood of ``answer`` as the assistant's reply, and its token count."""
        import torch

        prompt = self.encode(messages)["input_ids"]
        answer_ids = self.tokenizer(answer, add_special_tokens=False, return_tensors="pt")["input_ids"]
        if answer_ids.shape[1] == 0:
            return 0.0, 0
        ids = torch.cat([prompt, answer_ids], dim=1)
        logits = self.logits(ids, tuned=tuned).float()
        n = answer_ids.shape[1]
        pred = logits[0, -n - 1:-1]
        nll = torch.nn.functional.cross_entropy(pred, ids[0, -n:].to(pred.device), reduction="sum")
        return float(nll), int(n)

    def stop_token_ids(self) -> list[int]:
        """Token ids that end an answer: the model's end-of-sequence ids and its template's end-of-turn marker."""
        ids: list[int] = []
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for value in (gen_eos, self.tokenizer.eos_token_id):
            if isinstance(value, int):
                ids.append(value)
            elif isinstance(value, (list, tuple)):
                ids += [int(v) for v in value]
        template = self.tokenizer.chat_template or ""
        vocab = self.tokenizer.get_vocab()
        for marker in END_OF_TURN:
            if marker in template and marker in vocab:
                ids.append(vocab[marker])
        return sorted(set(ids))

    def stop_strings(self) -> list[str]:
        """The end-of-turn markers as text (for an Ollama Modelfile's ``PARAMETER stop``)."""
        return [self.tokenizer.convert_ids_to_tokens(i) for i in self.stop_token_ids()]

    def close(self) -> None:
        """Drop the weights (the window calls this when the Chat page switches run)."""
        with self._lock:
            self.model = None
            self._tuned_model = None
        import gc

        gc.collect()

    # -- internals ----------------------------------------------------------------------------
    def _side(self, tuned: bool) -> tuple[Any, Any]:
        """The model to run and a context manager that puts it in the right state."""
        import contextlib

        if self.model is None:
            raise ChatError("this chat model was closed")
        if self._tuned_model is not None:
            return (self._tuned_model if tuned else self.model), contextlib.nullcontext()
        if not tuned and self.tuned is not None:
            return self.model, self.model.disable_adapter()
        return self.model, contextlib.nullcontext()

    def _mixed_batches_ok(self) -> bool:
        """peft runs rows with different adapters in one batch for plain LoRA only (not DoRA, not prompt tuning)."""
        config = getattr(self.model, "peft_config", {}).get(getattr(self.model, "active_adapter", None))
        return config is not None and str(getattr(config, "peft_type", "")).endswith("LORA") and \
            not getattr(config, "use_dora", False)

    def _pad_id(self) -> int | None:
        if self.tokenizer.pad_token_id is not None:
            return self.tokenizer.pad_token_id
        ids = self.stop_token_ids()
        return ids[0] if ids else None


class _DeltaStreamer:
    """A transformers streamer that hands out new text as soon as it decodes cleanly.

    It decodes the whole answer so far and sends the part not sent yet, holding back a trailing
    replacement character (half of a multi-byte character); ``finish`` sends whatever is left, so
    the pieces always add up to the final answer.
    """

    def __init__(self, tokenizer: Any, prompt_len: int, on_token: TokenCallback | None) -> None:
        self.tokenizer, self.prompt_len, self.on_token = tokenizer, prompt_len, on_token
        self.ids: list[int] = []
        self.sent = ""
        self._skip_prompt = True

    def put(self, value: Any) -> None:
        if self._skip_prompt:  # generate() first puts the prompt
            self._skip_prompt = False
            return
        if self.on_token is None:
            return
        self.ids += [int(v) for v in value.reshape(-1).tolist()]
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd") or not text.startswith(self.sent):
            return
        self._send(text)

    def end(self) -> None:
        pass

    def finish(self, text: str) -> None:
        if self.on_token is not None and text.startswith(self.sent):
            self._send(text)

    def _send(self, text: str) -> None:
        delta = text[len(self.sent):]
        if delta:
            self.sent = text
            assert self.on_token is not None
            self.on_token(delta)


def _adapter_name(source: TunedSource) -> str:
    return "final" if source.checkpoint is None else f"checkpoint-{source.checkpoint}"


def check_memory_for(*folders: Path) -> None:
    """Refuse to load models that together would not fit in free memory (full fine-tunes need two)."""
    need = sum(sum(f.stat().st_size for f in Path(folder).glob("*.safetensors")) for folder in folders)
    free = available_memory_bytes()
    if free is not None and need > free * 0.9:
        raise ChatError(f"base and tuned model together need about {need / 2**30:.1f} GiB, but only "
                        f"{free / 2**30:.1f} GiB of memory is free",
                        hint="Close other programs, or compare the base and tuned model one at a time.")


def available_memory_bytes() -> int | None:
    try:
        import torch

        if torch.cuda.is_available():
            free, _total = torch.cuda.mem_get_info()
            return int(free)
    except Exception:  # pragma: no cover - CUDA oddities
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # pragma: no cover
        return None


def with_system_prompt(messages: list[Message], system_prompt: str) -> list[Message]:
    """Messages with ``system_prompt`` as the first system message (replacing one already there)."""
    messages = [dict(m) for m in messages]
    if not system_prompt:
        return messages
    if messages and messages[0].get("role") == "system":
        messages[0]["content"] = system_prompt
        return messages
    return [{"role": "system", "content": system_prompt}, *messages]


def _load_model(path: Path, trust_remote_code: bool) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    device, bf16 = compute_device()
    dtype = getattr(torch, TORCH_NAMES[inference_dtype(device, bf16)])
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise ModelError(f"the model could not be loaded ({_first_line(exc)})", path=path) from None
    model.to(device)
    model.eval()
    return model


def _load_tokenizer(path: Path, trust_remote_code: bool) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    return tokenizer


def _has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer_config.json").exists()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return re.sub(r"\s+", " ", text.splitlines()[0])[:200] if text else type(exc).__name__
