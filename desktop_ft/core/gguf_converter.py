"""llama.cpp's own Hugging Face → GGUF converter, fetched once at set-up and run in a subprocess.

We do not write a GGUF converter of our own: llama.cpp maintains ``convert_hf_to_gguf.py`` for
every architecture it runs. PyPI does not ship it as a package, but the ``llama-cpp-python``
source distribution carries llama.cpp in ``vendor/llama.cpp``; set-up downloads that sdist
(``pip download``, no compiling) and extracts only the converter, its ``conversion`` package and
the matching ``gguf-py`` (the converter prefers that copy over PyPI's ``gguf``; the two are
released together, so they always agree). Its other needs — torch, numpy, sentencepiece,
transformers — are already ours.

    python -m desktop_ft.core.gguf_converter --install [DEST]     # what scripts/setup.sh runs
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from desktop_ft.core.errors import UserError

#: the llama-cpp-python release whose vendored llama.cpp converter we use (also in constraints.txt)
CONVERTER_PACKAGE = "llama-cpp-python"
CONVERTER_VERSION = "0.3.36"
SCRIPT = "convert_hf_to_gguf.py"
#: what is extracted from vendor/llama.cpp/ of the sdist
MEMBERS = (SCRIPT, "conversion/", "gguf-py/gguf/", "gguf-py/pyproject.toml", "LICENSE")
#: sha256 of llama_cpp_python-0.3.36.tar.gz as PyPI serves it (``pip download … --no-binary :all:``)
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
#: sha256 of ``manifest()`` of the files extracted from that sdist: the converter is run only when the
#: files on disk still hash to exactly this (nothing changed, added or removed since the install)
MANIFEST_SHA256 = "c64fb4569dbe4103273275f880c2ff3cc88400ae8e615d65791e75f29219cd1b"


class ConverterError(UserError):
    """The converter could not be installed, or its files are not the ones that were pinned."""


def candidate_dirs() -> list[Path]:
    """Where the converter is looked for, in order."""
    dirs = []
    env = os.environ.get("DESKTOP_FT_LLAMA_CPP")
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(Path(sys.prefix) / "share" / "desktop-ft" / "llama.cpp")
    from desktop_ft.core.embedded import cache_root

    dirs.append(cache_root() / "llama.cpp")
    return dirs


def find_converter() -> Path | None:
    """The installed ``convert_hf_to_gguf.py``, or None; a ``ConverterError`` when its files changed.

    A folder named by ``DESKTOP_FT_LLAMA_CPP`` is the user's own llama.cpp (any version) and is used
    as it is; the folders we install into are verified against ``MANIFEST_SHA256`` every time.
    """
    env = os.environ.get("DESKTOP_FT_LLAMA_CPP")
    for folder in candidate_dirs():
        script = folder / SCRIPT
        if script.is_file() and (folder / "conversion").is_dir():
            if not (env and folder == Path(env).expanduser()):
                verify_converter(folder)
            return script
    return None


def manifest(folder: Path) -> str:
    """``sha256  path`` of every file under ``folder`` (VERSION aside), sorted: what the pin covers."""
    lines = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel == "VERSION" or "__pycache__" in rel:
            continue
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {rel}\n")
    return "".join(lines)


def verify_converter(folder: Path) -> None:
    """Raise ``ConverterError`` unless ``folder`` holds exactly the pinned converter files."""
    if hashlib.sha256(manifest(folder).encode()).hexdigest() != MANIFEST_SHA256:
        raise ConverterError("the GGUF converter's files are not the ones that were installed (changed, added or "
                             "removed)", path=folder,
                             hint="Reinstall it with: python -m desktop_ft.core.gguf_converter --install")


def default_install_dir() -> Path:
    return Path(sys.prefix) / "share" / "desktop-ft" / "llama.cpp"


def install_converter(dest: Path | None = None, version: str = CONVERTER_VERSION) -> Path:
    """Download the llama-cpp-python sdist (no build) and extract the converter into ``dest``."""
    dest = Path(dest or default_install_dir())
    if (dest / SCRIPT).is_file() and (dest / "VERSION").is_file() and \
            (dest / "VERSION").read_text().strip() == version:
        return dest / SCRIPT
    with tempfile.TemporaryDirectory(prefix="desktop-ft-llama-cpp-") as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q", "--no-deps",
                        "--no-binary", CONVERTER_PACKAGE, f"{CONVERTER_PACKAGE}=={version}", "-d", tmp], check=True)
        sdist = next(Path(tmp).glob("*.tar.gz"))
        digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
        if version == CONVERTER_VERSION and digest != SDIST_SHA256:
            raise ConverterError(f"the downloaded {sdist.name} does not match its pinned sha256 (got {digest})",
                                 hint="Check the package index you install from; nothing was installed.")
        staging = Path(tmp) / "extract"
        prefix = f"{sdist.name[:-len('.tar.gz')]}/vendor/llama.cpp/"
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix) and
                       any(m.name[len(prefix):] == w or (w.endswith("/") and m.name[len(prefix):].startswith(w))
                           for w in MEMBERS) and (m.isfile() or m.isdir())]
            for member in members:
                member.name = member.name[len(prefix):]
            tar.extractall(staging, members=members, filter="data")
        if not (staging / SCRIPT).is_file():
            raise RuntimeError(f"{sdist.name} has no vendor/llama.cpp/{SCRIPT}")
        if version == CONVERTER_VERSION and \
                hashlib.sha256(manifest(staging).encode()).hexdigest() != MANIFEST_SHA256:
            raise ConverterError(f"the files extracted from {sdist.name} are not the pinned ones",
                                 hint="Nothing was installed; report this.")
        (staging / "VERSION").write_text(version + "\n")
        dest.parent.mkdir(parents=True, exist_ok=True)
        old = dest.with_name(dest.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if dest.exists():
            os.replace(dest, old)
        shutil.move(str(staging), str(dest))
        shutil.rmtree(old, ignore_errors=True)
    return dest / SCRIPT


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m desktop_ft.core.gguf_converter",
                                     description="Install or locate llama.cpp's GGUF converter.")
    parser.add_argument("--install", nargs="?", const="", metavar="DEST",
                        help=f"download and extract it (default {default_install_dir()})")
    args = parser.parse_args(argv)
    if args.install is not None:
        script = install_converter(Path(args.install) if args.install else None)
        print(script)
        return 0
    found = find_converter()
    print(found or "not installed")
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main())
