"""The tray icon: shown while a run trains, it carries the run's progress in its tooltip, brings the
window back when the window was closed with the run kept in the background, and says when a run
finished or failed (a desktop notification; Qt sends it through org.freedesktop.Notifications on
Linux, Notification Center on macOS, a balloon on Windows)."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QApplication, QMenu, QSystemTrayIcon

from desktop_ft.ui.theme import app_icon


class RunTray(QObject):
    """One tray icon per window; ``available`` is False where the desktop has no tray."""

    showRequested = Signal()
    quitRequested = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.icon = QSystemTrayIcon(app_icon(), self)
        self.icon.setToolTip("Desktop FT")
        menu = QMenu()
        self.status_action = QAction("No run", menu)
        self.status_action.setEnabled(False)
        menu.addAction(self.status_action)
        menu.addSeparator()
        menu.addAction("Show Desktop FT", self.showRequested.emit)
        menu.addAction("Quit (runs keep training)", self.quitRequested.emit)
        self._menu = menu
        self.icon.setContextMenu(menu)
        self.icon.activated.connect(self._on_activated)
        self.status = ""

    @staticmethod
    def available() -> bool:
        return QSystemTrayIcon.isSystemTrayAvailable()

    def set_status(self, text: str) -> None:
        """What the tooltip and the menu's first line say, e.g. 'my-run: step 12/100 (12%)'."""
        self.status = text
        self.status_action.setText(text)
        self.icon.setToolTip(f"Desktop FT — {text}")

    def show(self) -> None:
        if self.available():
            self.icon.show()

    def hide(self) -> None:
        self.icon.hide()

    def notify(self, title: str, body: str, ok: bool, window=None) -> str:
        """Tell the user; returns how ('tray' message, or 'alert' where there is no tray to speak through)."""
        if self.available() and QSystemTrayIcon.supportsMessages():
            self.icon.show()  # a message needs a visible icon
            kind = QSystemTrayIcon.MessageIcon.Information if ok else QSystemTrayIcon.MessageIcon.Warning
            self.icon.showMessage(title, body, kind, 15000)
            return "tray"
        if window is not None:
            QApplication.alert(window)  # the taskbar entry asks for attention
        return "alert"

    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (QSystemTrayIcon.ActivationReason.Trigger, QSystemTrayIcon.ActivationReason.DoubleClick):
            self.showRequested.emit()
