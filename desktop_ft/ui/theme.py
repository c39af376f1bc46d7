"""Look and feel: Fusion with a light or dark palette that follows the system, icons, spacing.

One place for colours so pages never hard-code them: ``colors()`` returns the palette in use
(light or dark) and ``icon(name)`` a qtawesome icon tinted for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSize, QStandardPaths, Qt
from PySide6.QtGui import QColor, QFont, QGuiApplication, QIcon, QPalette
from PySide6.QtWidgets import QApplication, QLabel

from desktop_ft import resources


@dataclass(frozen=True)
class Colors:
    dark: bool
    window: str
    panel: str
    sidebar: str
    text: str
    muted: str
    border: str
    accent: str
    accent_text: str
    good: str
    warn: str
    bad: str
    # series colours for plots and the memory bar
    series: tuple[str, ...]


LIGHT = Colors(False, "#f6f7f9", "#ffffff", "#eceef2", "#1d2330", "#5d6677", "#d9dde4", "#3b6ef5", "#ffffff",
               "#1f9d55", "#c98a00", "#d64545",
               ("#3b6ef5", "#e8793a", "#1f9d55", "#9b59b6", "#d64545", "#8a94a6", "#14a3b8"))
DARK = Colors(True, "#1b1e24", "#23272f", "#16181d", "#e6e9ef", "#9aa3b2", "#363b46", "#6c93ff", "#0e1117",
              "#46c07a", "#e0b040", "#f06a6a",
              ("#6c93ff", "#f0924f", "#46c07a", "#b784d6", "#f06a6a", "#a3acbd", "#3cc3d6"))

_current: Colors = LIGHT

#: the widget style, given to the QApplication when it is made (``create_app``: ``-style Fusion`` on its
#: command line). ``app.setStyle`` would return the style object, and wrapping that builds PySide's QStyle
#: class, whose 566 enum members cost the first show ~8 ms.
STYLE = "Fusion"


def colors() -> Colors:
    return _current


def system_is_dark() -> bool:
    scheme = QGuiApplication.styleHints().colorScheme()
    if scheme != Qt.ColorScheme.Unknown:
        return scheme == Qt.ColorScheme.Dark
    return QGuiApplication.palette().window().color().lightness() < 128


def apply(app: QApplication, dark: bool | None = None) -> Colors:
    """Colour ``app`` (made with the ``STYLE`` style) for the system's light/dark scheme (or the one asked for)."""
    global _current
    _current = DARK if (system_is_dark() if dark is None else dark) else LIGHT
    c = _current
    pal = QPalette()
    pal.setColor(QPalette.ColorRole.Window, QColor(c.window))
    pal.setColor(QPalette.ColorRole.WindowText, QColor(c.text))
    pal.setColor(QPalette.ColorRole.Base, QColor(c.panel))
    pal.setColor(QPalette.ColorRole.AlternateBase, QColor(c.window))
    pal.setColor(QPalette.ColorRole.Text, QColor(c.text))
    pal.setColor(QPalette.ColorRole.Button, QColor(c.panel))
    pal.setColor(QPalette.ColorRole.ButtonText, QColor(c.text))
    pal.setColor(QPalette.ColorRole.Highlight, QColor(c.accent))
    pal.setColor(QPalette.ColorRole.HighlightedText, QColor(c.accent_text))
    pal.setColor(QPalette.ColorRole.ToolTipBase, QColor(c.panel))
    pal.setColor(QPalette.ColorRole.ToolTipText, QColor(c.text))
    pal.setColor(QPalette.ColorRole.PlaceholderText, QColor(c.muted))
    pal.setColor(QPalette.ColorRole.Link, QColor(c.accent))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText, QPalette.ColorRole.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor(c.muted))
    app.setPalette(pal)
    font = app.font()
    if font.pointSizeF() < 10:
        font.setPointSizeF(10)
    app.setFont(font)
    app.setStyleSheet(stylesheet(c))
    return c


def stylesheet(c: Colors) -> str:
    return f"""
    QWidget#Sidebar {{ background: {c.sidebar}; border-right: 1px solid {c.border}; }}
    QListWidget#Steps {{ background: transparent; border: none; outline: none; font-size: 11pt; }}
    QListWidget#Steps::item {{ padding: 9px 12px; margin: 2px 8px; border-radius: 8px; color: {c.text}; }}
    QListWidget#Steps::item:selected {{ background: {c.accent}; color: {c.accent_text}; }}
    QListWidget#Steps::item:hover:!selected {{ background: {c.border}; }}
    QLabel#AppTitle {{ font-size: 15pt; font-weight: 600; padding: 14px 16px 2px 16px; }}
    QLabel#AppSubtitle {{ color: {c.muted}; padding: 0 16px 12px 16px; }}
    QLabel#PageTitle {{ font-size: 17pt; font-weight: 600; }}
    QLabel#PageIntro {{ color: {c.muted}; font-size: 10.5pt; }}
    QLabel#Muted {{ color: {c.muted}; }}
    QLabel#CardTitle {{ font-size: 11.5pt; font-weight: 600; }}
    QLabel#BigNumber {{ font-size: 16pt; font-weight: 600; }}
    QLabel#Good {{ color: {c.good}; font-weight: 600; }}
    QLabel#Warn {{ color: {c.warn}; font-weight: 600; }}
    QLabel#Bad {{ color: {c.bad}; font-weight: 600; }}
    QFrame#Card {{ background: {c.panel}; border: 1px solid {c.border}; border-radius: 10px; }}
    QFrame#Card[selected="true"] {{ border: 2px solid {c.accent}; }}
    QFrame#Banner {{ background: {c.panel}; border: 1px solid {c.bad}; border-radius: 8px; }}
    QFrame#Note {{ background: {c.panel}; border: 1px dashed {c.border}; border-radius: 8px; }}
    QPushButton {{ padding: 6px 14px; border-radius: 6px; border: 1px solid {c.border}; background: {c.panel}; }}
    QPushButton:hover {{ border-color: {c.accent}; }}
    QPushButton:disabled {{ color: {c.muted}; }}
    QPushButton#Primary {{ background: {c.accent}; color: {c.accent_text}; border: none; font-weight: 600; }}
    QPushButton#Primary:disabled {{ background: {c.border}; color: {c.muted}; }}
    QPushButton#Danger, QToolButton#Danger {{ color: {c.bad}; }}
    QToolBar {{ border: none; spacing: 6px; background: transparent; }}
    QToolBar QToolButton {{ padding: 5px 10px; border-radius: 6px; border: 1px solid {c.border};
        background: {c.panel}; }}
    QToolBar QToolButton:hover {{ border-color: {c.accent}; }}
    QToolBar QToolButton:disabled {{ color: {c.muted}; }}
    QToolBar QToolButton#qt_toolbar_ext_button {{ padding: 0; border: none; background: transparent; }}
    QLineEdit, QPlainTextEdit, QTextEdit {{
        border: 1px solid {c.border}; border-radius: 6px; padding: 4px 6px; background: {c.panel}; }}
    QSpinBox, QDoubleSpinBox, QComboBox {{ min-height: 24px; }}
    QTableView, QTreeView, QListWidget#Plain {{ border: 1px solid {c.border}; border-radius: 8px;
        background: {c.panel}; gridline-color: {c.border}; }}
    QHeaderView::section {{ background: {c.window}; border: none; border-bottom: 1px solid {c.border};
        padding: 5px 6px; font-weight: 600; }}
    QTabWidget::pane {{ border: 1px solid {c.border}; border-radius: 8px; top: -1px; background: {c.panel}; }}
    QTabBar::tab {{ padding: 6px 14px; border: none; }}
    QTabBar::tab:selected {{ border-bottom: 2px solid {c.accent}; font-weight: 600; }}
    QProgressBar {{ border: 1px solid {c.border}; border-radius: 6px; background: {c.panel}; text-align: center;
        height: 16px; }}
    QProgressBar::chunk {{ background: {c.accent}; border-radius: 5px; }}
    QToolTip {{ border: 1px solid {c.border}; padding: 4px; }}
    QScrollArea {{ border: none; background: transparent; }}
    """


#: side of the cached icon images, in pixels (drawn smaller, never larger, in the window)
ICON_CACHE_PX = 64


def icon_cache() -> Path:
    """``icons`` in the app's cache folder: ``DESKTOP_FT_CACHE`` if set, else ``desktop-ft`` in the system's
    cache folder as Qt finds it. On Linux and macOS that is ``embedded.cache_root()``; it is not asked
    here because its platformdirs import costs the first show ~9 ms (on Windows Qt's folder is
    ``AppData/Local/cache``, platformdirs' ``AppData/Local/desktop-ft/Cache``: the icons are only a cache)."""
    env = os.environ.get("DESKTOP_FT_CACHE")
    if env:
        return Path(env).expanduser() / "icons"
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericCacheLocation)
    return Path(base) / "desktop-ft" / "icons"


def icon(name: str, color: str | None = None) -> QIcon:
    """A qtawesome icon ('mdi6.…'), tinted with the theme's text colour unless told otherwise.

    Rendered once to a PNG in the cache folder and read from there afterwards: importing qtawesome
    (and the Qt OpenGL modules qtpy pulls in) is the slowest part of opening the window.
    """
    color = color or _current.text
    path = icon_cache() / f"{name}-{color.lstrip('#')}-{ICON_CACHE_PX}.png"
    if path.exists():
        cached = QIcon(str(path))
        if not cached.isNull():
            return cached
    import qtawesome as qta

    drawn = qta.icon(name, color=color)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.png")
        if drawn.pixmap(ICON_CACHE_PX, ICON_CACHE_PX).save(str(tmp), "PNG"):
            os.replace(tmp, path)
    except OSError:  # a read-only cache only costs the next start its speed
        pass
    return drawn


def app_icon() -> QIcon:
    """The application icon from its PNG renderings (16–512 px; other sizes are scaled from the nearest).

    Each file is added with its size, so Qt reads one only when that size is drawn. The SVG is left to
    the desktop entry: as the icon's source it loads Qt's SVG icon engine, which then decodes every PNG
    at once, about 10 ms of opening the window."""
    app = QIcon()
    for size in resources.ICON_SIZES:
        app.addFile(str(resources.icon_png(size)), QSize(size, size))
    return app


def mono_font() -> QFont:
    font = QFont("DejaVu Sans Mono")
    font.setStyleHint(QFont.StyleHint.Monospace)
    return font


def label(text: str, name: str | None = None, *, wrap: bool = False) -> QLabel:
    """A QLabel with an object name that the stylesheet knows (PageTitle, Muted, CardTitle, …)."""
    lab = QLabel(text)
    if name:
        lab.setObjectName(name)
    lab.setWordWrap(wrap)
    lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return lab


def human_bytes(n: float | int | None) -> str:
    if n is None:
        return "–"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def human_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "–"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h} h {m:02d} min"
    if m:
        return f"{m} min {s:02d} s"
    return f"{s} s"
