"""A run keeps the computer awake and says when it is done.

A private D-Bus daemon stands in for the system bus, and a fake logind on it
(``fake_inhibit_service.py``) records each ``Inhibit`` call and the moment its file descriptor is
closed — which is how the real logind learns that an inhibitor is released.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from desktop_ft.ui.main_window import MainWindow

FAKE = Path(__file__).with_name("fake_inhibit_service.py")

pytestmark = pytest.mark.skipif(shutil.which("dbus-daemon") is None or sys.platform != "linux",
                                reason="needs dbus-daemon (Debian: apt install dbus)")


def _records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def fake_logind(tmp_path_factory):
    """A private bus with the fake logind on it, set as this process's system bus (KeepAwake opens a
    fresh connection to it for each Inhibit call)."""
    pytest.importorskip("jeepney")
    folder = tmp_path_factory.mktemp("dbus")
    daemon = subprocess.run(["dbus-daemon", "--session", "--fork", "--print-address=1", "--print-pid=1",
                             f"--address=unix:path={folder / 'bus'}"], capture_output=True, text=True, check=True)
    address, pid = daemon.stdout.split()[:2]
    record = folder / "calls.jsonl"
    service = subprocess.Popen([sys.executable, str(FAKE), address, str(record)])
    old = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = address
    try:
        for _ in range(200):  # the fake writes its first line once it owns its bus names
            if _records(record) or service.poll() is not None:
                break
            time.sleep(0.05)
        assert _records(record), "the fake logind did not start"
        yield record
    finally:
        service.terminate()
        service.wait(10)
        os.kill(int(pid), signal.SIGTERM)
        if old is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = old


def _calls(record: Path) -> list[dict]:
    return [r for r in _records(record) if r.get("call") == "login1.Inhibit"]


def _releases(record: Path) -> list[int]:
    return [r["id"] for r in _records(record) if r.get("release") == "login1"]


def test_keep_awake_holds_one_inhibitor_and_closing_it_releases(qtbot, qsettings, fake_logind):
    from desktop_ft.ui.keep_awake import KeepAwake

    awake = KeepAwake(qsettings)
    before = len(_calls(fake_logind))
    assert awake.hold("run-a", "Training run-a") and awake.held
    assert awake.hold("run-b", "Training run-b")  # a second run shares the one inhibitor
    calls = _calls(fake_logind)[before:]
    assert len(calls) == 1
    assert calls[0]["args"] == ["sleep:idle", "Desktop FT", "Training run-a", "block"]
    awake.release("run-a")
    assert awake.held and calls[0]["id"] not in _releases(fake_logind)  # run-b still trains
    awake.release("run-b")
    assert not awake.held
    qtbot.waitUntil(lambda: calls[0]["id"] in _releases(fake_logind), timeout=5000)


def test_turned_off_it_asks_for_nothing(qtbot, qsettings, fake_logind):
    from desktop_ft.ui import keep_awake

    qsettings.setValue(keep_awake.SETTING, False)
    before = len(_calls(fake_logind))
    assert not keep_awake.KeepAwake(qsettings).hold("run", "Training run")
    assert len(_calls(fake_logind)) == before


def test_a_run_holds_the_inhibitor_until_it_finishes_and_notifies_when_not_in_front(qtbot, qsettings, make_config,
                                                                                    fake_logind, monkeypatch):
    from desktop_ft.ui.tray import RunTray

    sent: list[tuple[str, str, bool]] = []
    monkeypatch.setattr(RunTray, "available", staticmethod(lambda: True))
    monkeypatch.setattr("PySide6.QtWidgets.QSystemTrayIcon.supportsMessages", staticmethod(lambda: True))
    monkeypatch.setattr("PySide6.QtWidgets.QSystemTrayIcon.showMessage",
                        lambda self, title, body, icon, ms: sent.append((title, body, icon)))
    w = MainWindow(settings=qsettings)
    qtbot.addWidget(w)  # never shown: the window is "not in front"
    view = w.training_view
    before = len(_calls(fake_logind))
    with qtbot.waitSignal(view.stepLogged, timeout=180000):
        view.start(make_config(max_steps=6, save_steps=100, eval_steps=100, logging_steps=1))
    calls = _calls(fake_logind)[before:]
    assert len(calls) == 1 and calls[0]["args"][2] == f"Training {view.run_dir.name}"
    assert calls[0]["id"] not in _releases(fake_logind)  # held while it trains
    assert view.run_dir.name in w.tray.status and "step" in w.tray.status
    with qtbot.waitSignal(view.runEnded, timeout=180000) as ended:
        pass
    assert ended.args[0].state == "finished", ended.args[0].error
    qtbot.waitUntil(lambda: calls[0]["id"] in _releases(fake_logind), timeout=5000)
    assert not w.keep_awake.held
    assert len(sent) == 1
    title, body, _icon = sent[0]
    assert title == f"Run finished: {view.run_dir.name}" and "6 steps" in body
    assert w.last_notification[0] == "tray"


def test_a_killed_run_releases_the_inhibitor_and_says_it_failed(qtbot, qsettings, make_config, fake_logind,
                                                              monkeypatch):
    from desktop_ft.ui.tray import RunTray

    monkeypatch.setattr(RunTray, "available", staticmethod(lambda: False))  # no tray: the taskbar is alerted
    w = MainWindow(settings=qsettings)
    qtbot.addWidget(w)
    view = w.training_view
    before = len(_calls(fake_logind))
    with qtbot.waitSignal(view.stepLogged, timeout=180000):
        view.start(make_config(max_steps=2000, save_steps=1000, eval_steps=1000, logging_steps=1))
    call = _calls(fake_logind)[before]
    with qtbot.waitSignal(view.runEnded, timeout=60000) as ended:
        view.process.kill()
    assert ended.args[0].state == "failed"
    qtbot.waitUntil(lambda: call["id"] in _releases(fake_logind), timeout=5000)
    how, title, body = w.last_notification
    assert how == "alert" and title == f"Run failed: {view.run_dir.name}" and "killed" in body


def test_window_in_front_is_not_interrupted(qtbot, qsettings, monkeypatch):
    """A run that ends while the user is looking at the window gets no notification."""
    from desktop_ft.core.events import RunFinished

    w = MainWindow(settings=qsettings)
    qtbot.addWidget(w)
    w.show()
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow, timeout=5000)
    w._on_run_ended(RunFinished("finished", 3, run_dir="/tmp/some-run"))
    assert w.last_notification is None
    w.hide()
    w._on_run_ended(RunFinished("stopped", 2, run_dir="/tmp/some-run"))
    assert w.last_notification[1] == "Run stopped: some-run"


def test_closing_with_the_run_kept_in_the_background_leaves_a_tray_with_its_progress(qtbot, qsettings, make_config,
                                                                                   monkeypatch):
    from PySide6.QtWidgets import QApplication, QMessageBox

    from desktop_ft.ui.tray import RunTray

    sent: list[str] = []
    monkeypatch.setattr(RunTray, "available", staticmethod(lambda: True))
    monkeypatch.setattr("PySide6.QtWidgets.QSystemTrayIcon.supportsMessages", staticmethod(lambda: True))
    monkeypatch.setattr("PySide6.QtWidgets.QSystemTrayIcon.showMessage",
                        lambda self, title, body, icon, ms: sent.append(title))
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes))
    w = MainWindow(settings=qsettings)
    qtbot.addWidget(w)
    w.show()
    view = w.training_view
    with qtbot.waitSignal(view.stepLogged, timeout=180000):
        view.start(make_config(max_steps=8, save_steps=100, eval_steps=100, logging_steps=1))
    w.close()
    assert not w.isVisible() and view.running  # hidden, still following the run
    assert w.tray.icon.isVisible()
    qtbot.waitUntil(lambda: "step" in w.tray.status and w.tray.status.endswith("%)"), timeout=60000)
    assert w.tray.icon.toolTip() == f"Desktop FT — {w.tray.status}"
    with qtbot.waitSignal(view.runEnded, timeout=180000) as ended:
        pass
    assert ended.args[0].state == "finished"
    assert sent == [f"Run finished: {view.run_dir.name}"] and w.tray.icon.isVisible()
    w.tray.showRequested.emit()  # clicking the tray icon brings the window back
    assert w.isVisible() and not w.tray.icon.isVisible()
    assert QApplication.instance().quitOnLastWindowClosed()  # closing it now quits as usual
