"""Take the fine-tune away: as an adapter, a merged model, a GGUF file, or an Ollama model.

``export(run_dir, format, out_dir)`` is a plain function with an ``on_event`` callback (Progress
events) and a stop flag. Every format ends with a quick check: the exported files are loaded back
the way a user would load them and answer one probe prompt, so a broken export is caught here and
not after it has been shipped.

- ``adapter``: the peft folder (``PeftModel.from_pretrained(base, OUT)``) with the tokenizer.
- ``merged``: the adapter folded into the base weights (peft's ``merge_and_unload``), saved as
  safetensors with the tokenizer and chat template: ``AutoModelForCausalLM.from_pretrained(OUT)``.
- ``gguf``: the merged model converted by llama.cpp's own ``convert_hf_to_gguf.py`` (see
  ``gguf_converter``), ``f16`` or ``q8_0`` (also ``bf16``, ``f32``); checked with llama.cpp's
  runtime when ``llama_cpp`` is installed, else by loading it with transformers (``gguf_file=``).
- ``ollama``: the GGUF plus a ``Modelfile`` (FROM, TEMPLATE, SYSTEM, stop tokens, sampling).
  TEMPLATE is translated for ChatML (``<|im_start|>``: SmolLM, Qwen, many others), Llama 3
  (``<|start_header_id|>``) and Gemma (``<start_of_turn>``) templates; for any other template no
  TEMPLATE line is written and the Modelfile says so — Ollama then uses the template it
  recognises from the chat template stored in the GGUF file, if it does.

Exports never mix or overwrite: the target must be new, empty, or hold only a previous export of
the same format (its ``desktop-ft-export.json`` says so), which is then replaced whole; the run
folder, the base model's folder and the Hugging Face cache are refused. Files are written into a
hidden staging folder beside ``out_dir`` and swapped into place at the end, so an interrupted export
leaves no half-written model under the final name. The check then compares the logits of what a
user would load (``PeftModel`` on the base, or ``AutoModelForCausalLM`` on the merged folder) with
the run's own model, so an adapter applied twice, or not at all, cannot pass. A full disk or a
folder that cannot be written is a ``ExportError`` with one sentence, never a traceback.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from desktop_ft.core.chat import ChatModel, GenerationSettings
from desktop_ft.core.errors import UserError
from desktop_ft.core.events import Progress
from desktop_ft.core.runs import TunedSource, read_run_config, tuned_source

FORMATS = ("adapter", "merged", "gguf", "ollama")
QUANTIZATIONS = ("f16", "q8_0", "bf16", "f32")
DEFAULT_QUANTIZATION = "q8_0"
CHECK_PROMPT = "Hello! What can you help me with?"
CHECK_MAX_NEW_TOKENS = 24


class ExportError(UserError):
    """An export cannot be done or did not work (no adapter, no converter, disk full, bad result)."""


class ExportStopped(ExportError):
    """The user stopped the export; nothing was left under the final names."""


@dataclass(frozen=True)
class ExportResult:
    format: str
    path: str  # the main artefact: a folder (adapter, merged) or the .gguf / Modelfile
    out_dir: str
    files: list[str]
    size_bytes: int
    quantization: str | None = None
    check_prompt: str | None = None
    check_answer: str | None = None
    checked_with: str | None = None  # peft | transformers | llama.cpp
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def export(run_dir: str | Path, format: str, out_dir: str | Path, quantization: str | None = None,
           on_event: Callable[[Any], None] | None = None, *, checkpoint: int | None = None,
           stop: threading.Event | None = None, settings: GenerationSettings | None = None,
           check: bool = True) -> ExportResult:
    """Export a run's fine-tune (final adapter, or ``checkpoint``) in ``format`` into ``out_dir``."""
    emit = on_event or (lambda _e: None)
    format = (format or "").lower()
    if format not in FORMATS:
        raise ExportError(f"unknown export format '{format}'", field="format",
                          hint="Choose one of: " + ", ".join(FORMATS) + ".")
    if quantization is not None and format in ("adapter", "merged"):
        raise ExportError(f"--quantization applies to gguf and ollama exports, not to '{format}'",
                          field="quantization")
    quant = (quantization or DEFAULT_QUANTIZATION).lower() if format in ("gguf", "ollama") else None
    if quant is not None and quant not in QUANTIZATIONS:
        raise ExportError(f"unknown quantization '{quant}'", field="quantization",
                          hint="Choose one of: " + ", ".join(QUANTIZATIONS) + ".")
    run_dir = Path(run_dir).expanduser().resolve()
    out_dir = Path(out_dir).expanduser().resolve()
    config = read_run_config(run_dir)
    source = tuned_source(run_dir, checkpoint)
    if format != "adapter" and source.kind == "adapter" and _is_prompt_learning(source.path):
        raise ExportError(f"a {config.method.method.replace('_', ' ')} run adds virtual tokens instead of changing "
                          f"weights, so it cannot be merged into a model or converted to {format.upper()}",
                          path=source.path, hint="Export it as 'adapter' (load it with peft on the base model).")
    converter = None
    if format in ("gguf", "ollama"):
        from desktop_ft.core.gguf_converter import find_converter

        converter = find_converter()
        if converter is None:
            raise ExportError("llama.cpp's GGUF converter is not installed",
                              hint="Install it once with: python -m desktop_ft.core.gguf_converter --install "
                                   "(scripts/setup.sh does this).")
    from desktop_ft.core.models import resolve_model

    base_path = resolve_model(config.model.name, revision=config.model.revision, on_progress=emit)
    name = _artefact_name(config, run_dir, source)
    check_target(out_dir, format, run_dir=run_dir, base_path=base_path)
    _prepare_out_dir(out_dir, _space_needed(format, quant, base_path, source))
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.desktop-ft-export-", dir=out_dir.parent))
    except OSError as exc:
        raise _disk_error(exc, out_dir) from None
    settings = settings or GenerationSettings(greedy=False)
    try:
        with _plain_disk_errors(out_dir):
            if format == "adapter":
                files = _export_adapter(source, staging, emit)
            else:
                merged = staging / ("merged" if format != "merged" else "")
                _export_merged(base_path, source, merged, config.model.trust_remote_code, emit, stop)
                files = [p.name for p in sorted(merged.iterdir())]
                if format in ("gguf", "ollama"):
                    assert converter is not None and quant is not None
                    gguf_name = f"{name}-{quant}.gguf"
                    _convert_to_gguf(converter, merged, staging / gguf_name, quant, emit, stop)
                    shutil.rmtree(merged)
                    files = [gguf_name]
                    if format == "ollama":
                        modelfile = modelfile_text(gguf_name, _load_tokenizer(source, base_path), settings,
                                                   title=name)
                        (staging / "Modelfile").write_text(modelfile, encoding="utf-8")
                        files.append("Modelfile")
            _raise_if_stopped(stop)
            (staging / EXPORT_MARKER).write_text(json.dumps({"format": format, "files": files}) + "\n",
                                                 encoding="utf-8")
            final = _swap_into_place(staging, out_dir, files)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    main = {"adapter": out_dir, "merged": out_dir, "gguf": out_dir / files[0],
            "ollama": out_dir / "Modelfile"}[format]
    size = sum(p.stat().st_size for p in final if p.is_file())
    result = ExportResult(format=format, path=str(main), out_dir=str(out_dir), files=files, size_bytes=size,
                          quantization=quant)
    if check:
        prompt = _check_prompt(run_dir)
        emit(Progress("check", "Loading the export back to check it answers…", 0.95))
        answer, checked_with = check_export(result, base_path=base_path, prompt=prompt,
                                            trust_remote_code=config.model.trust_remote_code)
        if format in ("adapter", "merged"):
            emit(Progress("check", "Comparing the export's logits with the run's own model…", 0.97))
            compare_logits(result, source, base_path=base_path, prompt=prompt,
                           trust_remote_code=config.model.trust_remote_code)
        result = ExportResult(**{**result.to_dict(), "check_prompt": prompt, "check_answer": answer,
                                 "checked_with": checked_with})
    emit(Progress("done", f"Exported {format} to {main} ({size / 2**20:.1f} MiB).", 1.0))
    return result


# -- the formats -------------------------------------------------------------------------------------

def _export_adapter(source: TunedSource, staging: Path, emit: Callable[[Any], None]) -> list[str]:
    if source.kind != "adapter":
        raise ExportError("this run holds a full model, not an adapter", path=source.path,
                          hint="Export it as 'merged' (it already is one) or as 'gguf'.")
    emit(Progress("adapter", "Copying the adapter…", 0.2))
    files = []
    for item in sorted(source.path.iterdir()):
        if item.is_file() and not _is_training_state(item.name):
            shutil.copy2(item, staging / item.name)
            files.append(item.name)
    return files


def _export_merged(base_path: Path, source: TunedSource, dest: Path, trust_remote_code: bool,
                   emit: Callable[[Any], None], stop: threading.Event | None) -> None:
    """Base + adapter folded into one model, saved as safetensors with tokenizer and chat template."""
    import torch
    from transformers import AutoModelForCausalLM

    dest.mkdir(parents=True, exist_ok=True)
    tokenizer = _load_tokenizer(source, base_path)
    if source.kind == "full":
        emit(Progress("merge", "Copying the fine-tuned model…", 0.2))
        for item in sorted(source.path.iterdir()):
            if item.is_file() and not _is_training_state(item.name):
                shutil.copy2(item, dest / item.name)
        tokenizer.save_pretrained(dest)
        return
    from peft import PeftModel

    emit(Progress("merge", "Loading the base model and the adapter…", 0.1))
    base = AutoModelForCausalLM.from_pretrained(str(base_path), dtype="auto", trust_remote_code=trust_remote_code)
    _raise_if_stopped(stop)
    model = PeftModel.from_pretrained(base, str(source.path))
    emit(Progress("merge", "Merging the adapter into the weights…", 0.3))
    merged = model.merge_and_unload()
    _raise_if_stopped(stop)
    emit(Progress("merge", "Writing safetensors…", 0.4))
    with torch.no_grad():
        merged.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    if tokenizer.chat_template and not (dest / "chat_template.jinja").exists():
        (dest / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")


def _convert_to_gguf(converter: Path, model_dir: Path, outfile: Path, quant: str, emit: Callable[[Any], None],
                     stop: threading.Event | None) -> None:
    """Run llama.cpp's converter in a child process (it may be stopped: the process is terminated)."""
    emit(Progress("gguf", f"Converting to GGUF ({quant}) with llama.cpp's converter…", 0.5))
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}
    log = outfile.with_suffix(".log")
    from desktop_ft.core.selfcmd import python_script_command

    cmd = python_script_command(converter, str(model_dir), "--outtype", quant, "--outfile", str(outfile))
    with open(log, "w", encoding="utf-8", errors="replace") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=converter.parent)
        while proc.poll() is None:
            if stop is not None and stop.is_set():
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                raise ExportStopped("export stopped")
            time.sleep(0.2)
    text = log.read_text(encoding="utf-8", errors="replace")
    log.unlink(missing_ok=True)
    if proc.returncode != 0 or not outfile.exists():
        raise _converter_error(text)


def _converter_error(log: str) -> ExportError:
    """The converter's failure in one sentence (its log is long and technical)."""
    if "No space left on device" in log:
        return ExportError("the disk is full", hint="Free some space or export to another folder.")
    if "pre-tokenizer was not recognized" in log:
        return ExportError("llama.cpp's converter does not recognise this model's tokenizer, so it cannot write a "
                           "GGUF file that tokenizes correctly",
                           hint="Export 'merged' instead, and convert it with a newer llama.cpp when it supports "
                                "this model.")
    match = re.search(r"Model (\S+) is not supported", log)
    if match:
        return ExportError(f"llama.cpp cannot convert models of type {match.group(1)} yet",
                           hint="Export 'merged' instead.")
    lines = [ln for ln in log.strip().splitlines() if ln.strip()]
    last = lines[-1][:300] if lines else "no output"
    return ExportError(f"the GGUF conversion failed ({last})", hint="Export 'merged' instead.")


# -- Ollama ------------------------------------------------------------------------------------------

OLLAMA_TEMPLATES = {
    "chatml": (
        '{{- range $i, $_ := .Messages }}\n'
        '{{- $last := eq (len (slice $.Messages $i)) 1 -}}\n'
        '<|im_start|>{{ .Role }}\n'
        '{{ .Content }}<|im_end|>\n'
        '{{ if and $last (ne .Role "assistant") }}<|im_start|>assistant\n'
        '{{ end }}\n'
        '{{- end }}'
    ),
    "llama3": (
        '{{- range $i, $_ := .Messages }}\n'
        '{{- $last := eq (len (slice $.Messages $i)) 1 -}}\n'
        '<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n'
        '{{ .Content }}<|eot_id|>\n'
        '{{- if and $last (ne .Role "assistant") }}<|start_header_id|>assistant<|end_header_id|>\n\n'
        '{{ end }}\n'
        '{{- end }}'
    ),
    "gemma": (
        '{{- range $i, $_ := .Messages }}\n'
        '{{- $last := eq (len (slice $.Messages $i)) 1 }}\n'
        '{{- if eq .Role "assistant" }}<start_of_turn>model\n'
        '{{ .Content }}<end_of_turn>\n'
        '{{ else }}<start_of_turn>user\n'
        '{{ .Content }}<end_of_turn>\n'
        '{{ if $last }}<start_of_turn>model\n'
        '{{ end }}\n'
        '{{- end }}\n'
        '{{- end }}'
    ),
}
_MARKERS = {"chatml": "<|im_start|>", "llama3": "<|start_header_id|>", "gemma": "<start_of_turn>"}
_DEFAULT_SYSTEM = {"chatml": r"<\|im_start\|>system\n(.*?)<\|im_end\|>",
                   "llama3": r"<\|start_header_id\|>system<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>"}


def template_family(tokenizer: Any) -> str | None:
    """'chatml', 'llama3' or 'gemma' when the chat template renders in that format, else None."""
    rendered = _render(tokenizer, [{"role": "user", "content": "X"}])
    if rendered is None:
        return None
    for family, marker in _MARKERS.items():
        if marker in rendered:
            return family
    return None


def default_system_prompt(tokenizer: Any, family: str | None) -> str | None:
    """The system message the template adds by itself when a conversation has none (SmolLM2 does)."""
    pattern = _DEFAULT_SYSTEM.get(family or "")
    rendered = _render(tokenizer, [{"role": "user", "content": "X"}])
    if not pattern or rendered is None:
        return None
    match = re.search(pattern, rendered, flags=re.S)
    return match.group(1) if match else None


def modelfile_text(gguf_name: str, tokenizer: Any, settings: GenerationSettings, *, title: str = "model") -> str:
    """An Ollama Modelfile for ``gguf_name`` (in the same folder) with template, system and sampling."""
    family = template_family(tokenizer)
    tag = re.sub(r"[^a-z0-9._-]+", "-", title.lower()).strip("-") or "model"
    lines = ["# Ollama Modelfile written by Desktop FT. Create and run the model with:",
             f"#   ollama create {tag} -f Modelfile && ollama run {tag}",
             f"FROM ./{gguf_name}", ""]
    if family is not None:
        lines += [f'TEMPLATE """{OLLAMA_TEMPLATES[family]}"""', ""]
    else:
        lines += ["# TEMPLATE not written: Desktop FT translates ChatML, Llama 3 and Gemma chat templates only.",
                  "# Ollama uses the chat template it recognises in the GGUF file; check the answers look right.",
                  ""]
    system = settings.system_prompt or default_system_prompt(tokenizer, family)
    if system:
        lines += [f'SYSTEM """{system}"""', ""]
    chat = ChatModel(None, tokenizer, base_path=Path("."))
    for marker in sorted(t for t in {_token_text(tokenizer, i) for i in chat.stop_token_ids()} if t is not None):
        lines.append(f'PARAMETER stop "{marker}"')
    temperature = 0.0 if settings.greedy else settings.temperature
    lines += [f"PARAMETER temperature {temperature:g}", f"PARAMETER top_p {settings.top_p:g}",
              f"PARAMETER seed {settings.seed}"]
    if settings.repetition_penalty != 1.0:
        lines.append(f"PARAMETER repeat_penalty {settings.repetition_penalty:g}")
    return "\n".join(lines) + "\n"


# -- checking an export ------------------------------------------------------------------------------

def check_export(result: ExportResult, *, base_path: Path, prompt: str = CHECK_PROMPT,
                 trust_remote_code: bool = False) -> tuple[str, str]:
    """Load the exported files as a user would and answer ``prompt``; returns (answer, how it was loaded)."""
    settings = GenerationSettings(max_new_tokens=CHECK_MAX_NEW_TOKENS)
    messages = [{"role": "user", "content": prompt}]
    out = Path(result.out_dir)
    try:
        if result.format == "adapter":
            from peft import PeftModel
            from transformers import AutoModelForCausalLM, AutoTokenizer

            base = AutoModelForCausalLM.from_pretrained(str(base_path), trust_remote_code=trust_remote_code)
            model = PeftModel.from_pretrained(base, str(out)).eval()
            chat = ChatModel(model, AutoTokenizer.from_pretrained(str(out)), base_path=base_path)
            return chat.generate(messages, settings=settings), "peft"
        if result.format == "merged":
            chat = ChatModel.from_model(str(out))
            return chat.generate(messages, settings=settings), "transformers"
        gguf = out / next(f for f in result.files if f.endswith(".gguf"))
        if result.format == "ollama":
            _check_modelfile(out / "Modelfile", gguf)
        runtime = _answer_with_llama_cpp(gguf, messages)
        if runtime is not None:
            return runtime, "llama.cpp"
        return answer_with_transformers_gguf(gguf, messages, settings), "transformers"
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"the exported {result.format} did not load back ({_first_line(exc)})", path=result.path,
                          hint="Do not ship this export; report the problem with the log.") from None


def load_gguf_with_transformers(gguf: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    return model.eval(), tokenizer


def answer_with_transformers_gguf(gguf: Path, messages: list[dict[str, str]], settings: GenerationSettings) -> str:
    model, tokenizer = load_gguf_with_transformers(gguf)
    return ChatModel(model, tokenizer, base_path=gguf).generate(messages, settings=settings)


def _answer_with_llama_cpp(gguf: Path, messages: list[dict[str, str]]) -> str | None:
    """llama.cpp's own runtime, when the optional ``llama_cpp`` package is installed; None otherwise."""
    try:
        from llama_cpp import Llama  # optional: compiling it takes long, so set-up does not install it
    except ImportError:
        return None
    llm = Llama(model_path=str(gguf), n_ctx=512, verbose=False, seed=0)
    out = llm.create_chat_completion(messages=messages, max_tokens=CHECK_MAX_NEW_TOKENS, temperature=0.0)
    return str(out["choices"][0]["message"]["content"] or "")


def _check_modelfile(modelfile: Path, gguf: Path) -> None:
    text = modelfile.read_text(encoding="utf-8")
    match = re.search(r"^FROM\s+(\S+)", text, flags=re.M)
    if not match or (modelfile.parent / match.group(1)).resolve() != gguf.resolve():
        raise ExportError("the Modelfile does not point at the exported GGUF file", path=modelfile)


# -- internals ---------------------------------------------------------------------------------------

def _load_tokenizer(source: TunedSource, base_path: Path) -> Any:
    from transformers import AutoTokenizer

    folder = source.path if (source.path / "tokenizer_config.json").exists() else base_path
    return AutoTokenizer.from_pretrained(str(folder))


def _render(tokenizer: Any, messages: list[dict[str, str]]) -> str | None:
    if not tokenizer.chat_template:
        return None
    try:
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    except Exception:
        return None


def _token_text(tokenizer: Any, token_id: int) -> str | None:
    text = tokenizer.convert_ids_to_tokens(token_id)
    return text if isinstance(text, str) and text and '"' not in text else None


def _artefact_name(config: Any, run_dir: Path, source: TunedSource) -> str:
    name = config.output.run_name or run_dir.name
    if source.checkpoint is not None:
        name += f"-checkpoint-{source.checkpoint}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"


def _check_prompt(run_dir: Path) -> str:
    try:
        from desktop_ft.core.compare import load_probes

        probes = load_probes(run_dir)
    except UserError:
        probes = []
    return probes[0].prompt if probes else CHECK_PROMPT


def _is_prompt_learning(adapter: Path) -> bool:
    try:
        peft_type = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8")).get("peft_type")
    except (OSError, json.JSONDecodeError):
        return False
    return str(peft_type).upper() in ("PROMPT_TUNING", "PREFIX_TUNING", "P_TUNING", "MULTITASK_PROMPT_TUNING")


def _is_training_state(name: str) -> bool:
    """Files of a Trainer checkpoint that are not part of the model (optimizer, RNG, scheduler…)."""
    return name in ("optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin", "scaler.pt") \
        or name.startswith("rng_state")


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def _space_needed(format: str, quant: str | None, base_path: Path, source: TunedSource) -> int:
    """A rough upper bound of the bytes an export writes (staging included)."""
    if format == "adapter":
        return _folder_size(source.path)
    model_bytes = _folder_size(source.path if source.kind == "full" else base_path)
    if format == "merged":
        return model_bytes
    ratio = {"f32": 1.0, "f16": 0.5, "bf16": 0.5, "q8_0": 0.27}.get(quant or "", 1.0)
    return int(model_bytes * (1 + ratio))  # the merged model in staging, then the GGUF beside it


def _prepare_out_dir(out_dir: Path, needed: int) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".desktop-ft-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise _disk_error(exc, out_dir) from None
    free = shutil.disk_usage(out_dir).free
    if needed > free:
        raise ExportError(f"not enough disk space: this export needs about {needed / 2**30:.2f} GiB and "
                          f"{free / 2**30:.2f} GiB is free", path=out_dir,
                          hint="Free some space or choose another --out folder.")


class _plain_disk_errors:
    """Turn OSErrors of writing (disk full, no permission) into one-sentence ``ExportError``s."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is not None and isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
            raise _disk_error(exc, self.out_dir) from None
        if exc is not None and isinstance(exc, RuntimeError) and "No space left on device" in str(exc):
            raise ExportError("the disk is full", path=self.out_dir,
                              hint="Free some space or export to another folder.") from None


_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


def _disk_error(exc: OSError, out_dir: Path) -> ExportError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ExportError("the disk is full", path=out_dir, hint="Free some space or export to another folder.")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ExportError("cannot write here (no permission or a read-only disk)", path=out_dir,
                           hint="Choose a folder you can write to.")
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return ExportError("is a file, not a folder", path=out_dir, hint="Choose a folder for --out.")
    return ExportError(f"cannot write here ({exc.strerror or exc})", path=out_dir)


#: written into every export folder: its format and files, so a later export may replace it whole
EXPORT_MARKER = "desktop-ft-export.json"


def check_target(out_dir: Path, format: str, *, run_dir: Path, base_path: Path) -> None:
    """Refuse an export target that would mix or overwrite something: see the module's docstring."""
    out_dir = Path(out_dir).resolve()
    run_dir, base_path = Path(run_dir).resolve(), Path(base_path).resolve()

    def inside(path: Path, folder: Path) -> bool:
        return path == folder or folder in path.parents

    if out_dir == run_dir or any(inside(out_dir, run_dir / n) for n in ("adapter", "model", "checkpoints")):
        raise ExportError("is the run folder itself (or its adapter, model or checkpoints)", path=out_dir,
                          hint="Export into a new folder, e.g. beside the run.")
    if inside(out_dir, base_path) or (base_path.is_dir() and inside(base_path, out_dir)):
        raise ExportError("is the base model's folder", path=out_dir,
                          hint="Export into a new folder; the base model must stay as it is.")
    from huggingface_hub import constants

    cache = Path(constants.HF_HUB_CACHE).expanduser().resolve()
    if inside(out_dir, cache) or inside(cache, out_dir):
        raise ExportError("is inside the Hugging Face cache", path=out_dir,
                          hint="Export into a folder of your own; the cache is managed by huggingface_hub.")
    if not out_dir.is_dir():
        return
    present = sorted(p.name for p in out_dir.iterdir())
    if not present:
        return
    try:
        previous = json.loads((out_dir / EXPORT_MARKER).read_text(encoding="utf-8"))
        kind, listed = previous["format"], set(previous["files"]) | {EXPORT_MARKER}
    except (OSError, ValueError, KeyError, TypeError):
        kind, listed = None, set()
    if kind != format or not set(present) <= listed:
        what = f"a {kind} export" if kind and set(present) <= listed else f"other files ({', '.join(present[:3])}" \
            + (", …" if len(present) > 3 else "") + ")"
        raise ExportError(f"already holds {what}; a {format} export only replaces a previous {format} export",
                          path=out_dir, hint="Choose a new or empty folder.")


def _swap_into_place(staging: Path, out_dir: Path, files: list[str]) -> list[Path]:
    """Put the staged export under ``out_dir``'s name, replacing a previous export there whole."""
    old = None
    if out_dir.exists():
        if any(out_dir.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.replaced-", dir=out_dir.parent))
            os.replace(out_dir, old / out_dir.name)
        else:
            out_dir.rmdir()
    os.replace(staging, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return [out_dir / name for name in files]


def compare_logits(result: ExportResult, source: TunedSource, *, base_path: Path, prompt: str,
                   trust_remote_code: bool = False) -> float:
    """Largest logit difference (relative to the largest logit) between what a user loads from the
    export and the run's own model on ``prompt``; an ``ExportError`` when they disagree."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def base() -> Any:
        return AutoModelForCausalLM.from_pretrained(str(base_path), trust_remote_code=trust_remote_code,
                                                    dtype=torch.float32)

    out = Path(result.out_dir)
    if source.kind == "adapter":
        from peft import PeftModel

        reference = PeftModel.from_pretrained(base(), str(source.path))
    else:
        reference = AutoModelForCausalLM.from_pretrained(str(source.path), dtype=torch.float32)
    if result.format == "adapter":
        from peft import PeftModel

        exported = PeftModel.from_pretrained(base(), str(out))
    else:
        exported = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32,
                                                        trust_remote_code=trust_remote_code)
    saved_dtype = next(exported.parameters()).dtype
    tokenizer = AutoTokenizer.from_pretrained(str(out if result.format == "merged" else base_path))
    ids = tokenizer(prompt, return_tensors="pt").input_ids[:, :64]
    with torch.no_grad():
        a = reference.eval()(ids).logits.float()
        b = exported.eval()(ids).logits.float()
    diff = float((a - b).abs().max() / a.abs().max().clamp_min(1e-6))
    # the merged weights were saved in the base's dtype: a bf16/fp16 round trip moves logits ~1e-2
    tolerance = 1e-3 if _stored_dtype(out) in ("float32", None) and saved_dtype == torch.float32 else 3e-2
    if diff > tolerance:
        raise ExportError(f"the exported {result.format} does not compute what the run's model computes (logits "
                          f"differ by {diff:.1%})", path=out,
                          hint="Do not ship this export; export into a new, empty folder and report it if it "
                               "happens again.")
    return diff


def _stored_dtype(folder: Path) -> str | None:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("dtype") or \
            json.loads((folder / "config.json").read_text(encoding="utf-8")).get("torch_dtype")
    except (OSError, ValueError):
        return None


def _raise_if_stopped(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise ExportStopped("export stopped")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return re.sub(r"\s+", " ", text.splitlines()[0])[:200] if text else type(exc).__name__


def result_json(result: ExportResult) -> str:
    return json.dumps(result.to_dict(), ensure_ascii=False)
