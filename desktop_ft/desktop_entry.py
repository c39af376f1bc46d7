"""Put Desktop FT in the desktop's application menu: the freedesktop desktop entry, the AppStream
metainfo and the icons, written under ``$XDG_DATA_HOME`` (``~/.local/share``) for this user.

The shipped entry says ``Exec=desktop-ft``; the installed one points at *this* install (the
``desktop-ft`` script of this environment, or the bundle's executable), so the menu starts the
copy that installed it even when it is not on ``PATH``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from desktop_ft import resources
from desktop_ft.core.selfcmd import frozen


def data_home() -> Path:
    """``$XDG_DATA_HOME``, or ``~/.local/share`` when it is unset or not absolute (as the spec says)."""
    env = os.environ.get("XDG_DATA_HOME", "")
    return Path(env) if env and os.path.isabs(env) else Path.home() / ".local" / "share"


def launch_command() -> list[str]:
    """The command that opens the window with this install."""
    if frozen():
        return [sys.executable]
    script = Path(sys.executable).parent / ("desktop-ft.exe" if sys.platform == "win32" else "desktop-ft")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "desktop_ft"]


_PLAIN = re.compile(r"[A-Za-z0-9_./+=:@,%-]+")


def exec_value(argv: list[str]) -> str:
    """``argv`` as a desktop entry ``Exec`` value: arguments with reserved characters are double-quoted
    with ``"`\\$`` backslash-escaped, then backslashes are doubled once more for the string value."""
    parts = []
    for arg in argv:
        if _PLAIN.fullmatch(arg):
            parts.append(arg)
        else:
            parts.append('"' + re.sub(r'(["`$\\])', r"\\\1", arg) + '"')
    return " ".join(parts).replace("\\", "\\\\")


def rendered_entry(argv: list[str] | None = None) -> str:
    """The shipped desktop entry with ``Exec`` and ``TryExec`` pointing at this install."""
    argv = argv or launch_command()
    lines = []
    for line in resources.desktop_entry().read_text(encoding="utf-8").splitlines():
        if line.startswith("Exec="):
            line = "Exec=" + exec_value(argv)
        elif line.startswith("TryExec="):
            line = "TryExec=" + argv[0].replace("\\", "\\\\")
        lines.append(line)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Installed:
    """What ``install`` wrote (or ``uninstall`` removed)."""

    files: list[Path]
    exec_line: str = ""


def _targets(home: Path) -> list[tuple[Path | None, Path]]:
    """(source file or None for the rendered entry, destination) pairs."""
    app = resources.APP_ID
    icons = home / "icons" / "hicolor"
    pairs: list[tuple[Path | None, Path]] = [
        (None, home / "applications" / f"{app}.desktop"),
        (resources.metainfo(), home / "metainfo" / f"{app}.metainfo.xml"),
        (resources.icon_svg(), icons / "scalable" / "apps" / f"{app}.svg"),
    ]
    pairs += [(resources.icon_png(s), icons / f"{s}x{s}" / "apps" / f"{app}.png") for s in resources.ICON_SIZES]
    return pairs


def _write_atomic(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dest)


def install(home: Path | None = None, argv: list[str] | None = None) -> Installed:
    """Write the entry, the metainfo and the icons under ``home`` (default ``data_home()``)."""
    home = Path(home or data_home())
    entry = rendered_entry(argv)
    written = []
    for source, dest in _targets(home):
        _write_atomic(dest, entry.encode("utf-8") if source is None else source.read_bytes())
        written.append(dest)
    _refresh_caches(home)
    exec_line = next(line for line in entry.splitlines() if line.startswith("Exec="))
    return Installed(written, exec_line)


def uninstall(home: Path | None = None) -> Installed:
    """Remove exactly the files ``install`` writes; folders and other apps' files are left alone."""
    home = Path(home or data_home())
    removed = []
    for _source, dest in _targets(home):
        if dest.is_file():
            dest.unlink()
            removed.append(dest)
    _refresh_caches(home)
    return Installed(removed)


def _refresh_caches(home: Path) -> None:
    """Tell the menu and the icon theme, where their tools exist; the files work without them."""
    for cmd in (["update-desktop-database", "-q", str(home / "applications")],
                ["gtk-update-icon-cache", "-q", "-t", "-f", str(home / "icons" / "hicolor")]):
        if shutil.which(cmd[0]) and Path(cmd[-1]).is_dir():
            subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
