"""``desktop-ft`` with no arguments: the QApplication and the main window.

Only Qt is imported here; torch and friends load later, inside workers and the training child
process, so the window shows before any of them.
"""

from __future__ import annotations

import sys

#: QCoreApplication.applicationName (also QSettings' file name, and X11's WM_CLASS)
APP_NAME = "Desktop FT"


def create_app(argv: list[str] | None = None):
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from desktop_ft import __version__, resources
    from desktop_ft.ui import theme

    QCoreApplication.setOrganizationName("desktop-ft")
    # Qt on X11 sets the window's WM_CLASS class to the application name: the desktop entry's
    # StartupWMClass says the same, so the dock groups the window under the entry's icon
    QCoreApplication.setApplicationName(APP_NAME)
    QCoreApplication.setApplicationVersion(__version__)
    # Wayland: the app id is the desktop file's name, which is the reverse-DNS id
    QGuiApplication.setDesktopFileName(resources.APP_ID)
    app = QApplication.instance()
    if app is None:
        app = QApplication([*(argv if argv is not None else sys.argv), "-style", theme.STYLE])
    else:  # made by someone else (a test's QApplication)
        app.setStyle(theme.STYLE)
    app.setWindowIcon(theme.app_icon())
    from PySide6.QtGui import QFontDatabase

    if not QFontDatabase.families():  # e.g. a bare container: text would render as empty boxes
        print("desktop-ft: no fonts found; install a font package (Debian/Ubuntu: apt install fonts-dejavu-core) "
              "or point QT_QPA_FONTDIR at a folder of .ttf files.", file=sys.stderr)
    theme.apply(app)
    app.styleHints().colorSchemeChanged.connect(lambda _s: theme.apply(app))
    return app


def qt_is_sound(parent=None) -> bool:
    """The start-up self-check: a Qt binding that leaks a reference per call would abort the window a
    few minutes in (``none_dealloc``); say so in a dialog now, with the fix, instead."""
    from desktop_ft.ui.selfcheck import qt_problem

    problem = qt_problem()
    if problem is None:
        return True
    print(f"desktop-ft: {problem}", file=sys.stderr)
    from PySide6.QtWidgets import QMessageBox

    QMessageBox.critical(parent, "Desktop FT cannot run safely", problem)
    return False


def open_window(argv: list[str] | None = None):
    """What ``desktop-ft`` does before its event loop: the application, the Qt self-check, the main
    window shown. Returns ``(app, window)``, or ``None`` when the self-check failed (a dialog said why).
    ``benchmarks/bench_window.py`` times this very function."""
    app = create_app(argv)
    if not qt_is_sound():
        return None
    from desktop_ft.ui.main_window import MainWindow

    window = MainWindow()
    window.show()
    return app, window


def main(argv: list[str] | None = None) -> int:
    opened = open_window(argv)
    if opened is None:
        return 2
    app, _window = opened
    code = app.exec()
    from PySide6.QtCore import QThreadPool

    QThreadPool.globalInstance().waitForDone(15000)  # let short background reads finish before Qt goes away
    return code


if __name__ == "__main__":
    sys.exit(main())
