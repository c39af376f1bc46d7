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

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

#: the llama-cpp-python release whose vendored llama.cpp converter we use (also in constraints.txt)
CONVERTER_PACKAGE = "llama-cpp-python"
CONVERTER_VERSION = "0.3.36"
SCRIPT = "convert_hf_to_gguf.py"
#: what is extracted from vendor/llama.cpp/ of the sdist
MEMBERS = (SCRIPT, "conversion/", "gguf-py/gguf/", "gguf-py/pyproject.toml", "LICENSE")


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
    """The installed ``convert_hf_to_gguf.py``, or None."""
    for folder in candidate_dirs():
        script = folder / SCRIPT
        if script.is_file() and (folder / "conversion").is_dir():
            return script
    return None


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
