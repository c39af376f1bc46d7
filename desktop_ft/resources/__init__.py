"""Everything Desktop FT ships besides code: files in this package's folder.

The files live in this package, so a wheel, a ``pip install`` from any folder and the PyInstaller
bundle all carry them. This module is the one place that knows where each file is; everything
else asks it.

    sample_data/three_step_tutor.jsonl       the built-in sample dataset
    probes/general_prompts.jsonl             everyday questions for the forgetting check
    icons/io.github.desktopft.DesktopFT.svg  the application icon (PNG sizes in icons/png/NN.png)
    io.github.desktopft.DesktopFT.desktop     the freedesktop desktop entry (Exec rewritten on install)
    io.github.desktopft.DesktopFT.metainfo.xml  the AppStream metainfo
"""

from __future__ import annotations

from pathlib import Path

#: the reverse-DNS application id: desktop entry, metainfo, icon name, Wayland app id
APP_ID = "io.github.desktopft.DesktopFT"
#: PNG icon sizes shipped next to the SVG
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def root() -> Path:
    """The folder holding the resources (a real folder: installs and the bundle unpack the package).

    Found from ``__file__``, not :mod:`importlib.resources` (importing it is ~5 ms of the window's
    start-up, and it gives a plain folder only for an unpacked package anyway)."""
    path = Path(__file__).resolve().parent
    if not path.is_dir():
        raise RuntimeError(f"Desktop FT's resources are inside an archive ({path}); install it unzipped.")
    return path


def sample_dataset() -> Path:
    """The built-in sample: a tutor who answers in exactly three steps (see README for its licence)."""
    return root() / "sample_data" / "three_step_tutor.jsonl"


def general_prompts() -> Path:
    """Everyday questions the forgetting check asks the base and the tuned model."""
    return root() / "probes" / "general_prompts.jsonl"


def icon_svg() -> Path:
    return root() / "icons" / f"{APP_ID}.svg"


def icon_png(size: int) -> Path:
    """The icon rendered at ``size`` pixels (one of ``ICON_SIZES``)."""
    if size not in ICON_SIZES:
        raise ValueError(f"no {size}px icon; sizes are {ICON_SIZES}")
    return root() / "icons" / "png" / f"{size}.png"


def desktop_entry() -> Path:
    return root() / f"{APP_ID}.desktop"


def metainfo() -> Path:
    return root() / f"{APP_ID}.metainfo.xml"
