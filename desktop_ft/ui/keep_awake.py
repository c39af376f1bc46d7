"""Keep the computer awake while a run trains (the screen may still blank and lock).

* Linux: systemd-logind's ``Inhibit("sleep:idle", …, "block")`` on the system bus, over QtDBus. It
  hands back a file descriptor; the inhibitor holds while that descriptor is open, so closing it
  releases it, and so does this process ending for any reason (logind watches the descriptor).
* macOS: ``caffeinate -i -w PID``, which also ends by itself when this process does.
* Windows: ``SetThreadExecutionState(ES_CONTINUOUS | ES_SYSTEM_REQUIRED)`` from the GUI thread,
  undone with ``ES_CONTINUOUS`` (Windows also drops it when the process ends).

One ``KeepAwake`` per window; ``hold(key)`` for each run that starts, ``release(key)`` when it
ends, is stopped or dies. The machine is kept awake while any key is held. Nothing here ever raises
into the window: where no mechanism exists (no logind, a container) ``hold`` says so and returns
False, and training goes on as before.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QSettings, Signal

if TYPE_CHECKING:
    import subprocess

#: QSettings key of the "keep the computer awake while training" setting (default on)
SETTING = "training/keep_awake"
WHO = "Desktop FT"


def enabled(settings: QSettings) -> bool:
    value = settings.value(SETTING, True)
    return value not in (False, "false", "0", 0)


class _Login1:
    name = "logind"

    def __init__(self) -> None:
        self.fd: int | None = None

    def acquire(self, why: str) -> str | None:
        from PySide6.QtDBus import QDBusConnection, QDBusMessage

        # a connection of our own for this one call (the inhibitor lives in the file descriptor, not in
        # the connection), opened afresh each time so it always reaches the system bus of this moment
        name = "desktop-ft-keep-awake"
        bus = QDBusConnection.connectToBus(QDBusConnection.BusType.SystemBus, name)
        try:
            if not bus.isConnected():
                return "no system D-Bus"
            msg = QDBusMessage.createMethodCall("org.freedesktop.login1", "/org/freedesktop/login1",
                                                "org.freedesktop.login1.Manager", "Inhibit")
            msg.setArguments(["sleep:idle", WHO, why, "block"])
            reply = bus.call(msg, timeout=5000)
        finally:
            QDBusConnection.disconnectFromBus(name)
        if reply.type() != QDBusMessage.MessageType.ReplyMessage or not reply.arguments():
            return reply.errorMessage() or "logind did not answer"
        handle = reply.arguments()[0]
        if not hasattr(handle, "fileDescriptor") or not handle.isValid():
            return "logind sent no file descriptor"
        # our own copy: Qt closes its one when the reply goes away, the inhibitor lives while ours is open
        self.fd = os.dup(handle.fileDescriptor())
        return None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class _Caffeinate:
    name = "caffeinate"

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def acquire(self, why: str) -> str | None:
        import subprocess  # here: only macOS needs it, and the window imports this module while it opens

        try:
            self.proc = subprocess.Popen(["caffeinate", "-i", "-w", str(os.getpid())])
        except OSError as exc:
            return str(exc)
        return None

    def release(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None


class _ExecutionState:
    name = "SetThreadExecutionState"
    ES_CONTINUOUS, ES_SYSTEM_REQUIRED = 0x80000000, 0x00000001

    def acquire(self, why: str) -> str | None:
        import ctypes

        if not ctypes.windll.kernel32.SetThreadExecutionState(self.ES_CONTINUOUS | self.ES_SYSTEM_REQUIRED):
            return "SetThreadExecutionState failed"
        return None

    def release(self) -> None:
        import ctypes

        ctypes.windll.kernel32.SetThreadExecutionState(self.ES_CONTINUOUS)


def _backend():
    if sys.platform == "darwin":
        return _Caffeinate()
    if sys.platform == "win32":
        return _ExecutionState()
    return _Login1()


class KeepAwake(QObject):
    """Holds one sleep inhibitor while at least one run is held."""

    changed = Signal(bool, str)  # held now?, a sentence for the log ("…kept awake (logind)" / why not)

    def __init__(self, settings: QSettings, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self._keys: set[str] = set()
        self._backend = None

    @property
    def held(self) -> bool:
        return self._backend is not None

    def hold(self, key: str, why: str) -> bool:
        """Keep the machine awake for ``key`` (a run folder); True when an inhibitor is held."""
        if not enabled(self.settings):
            return False
        self._keys.add(key)
        if self._backend is not None:
            return True
        backend = _backend()
        problem = backend.acquire(why)
        if problem is not None:
            self._keys.discard(key)
            self.changed.emit(False, f"Could not keep the computer awake ({problem}); it may sleep during the run.")
            return False
        self._backend = backend
        self.changed.emit(True, f"The computer is kept awake while this run trains ({backend.name}).")
        return True

    def release(self, key: str) -> None:
        self._keys.discard(key)
        if not self._keys:
            self._drop()

    def release_all(self) -> None:
        self._keys.clear()
        self._drop()

    def _drop(self) -> None:
        if self._backend is not None:
            self._backend.release()
            self._backend = None
            self.changed.emit(False, "The computer may sleep again.")
