"""The start-up self-check: a Qt binding that leaks references is reported in a dialog, with the fix,
before the window opens (instead of the window aborting minutes later)."""

import sys

from desktop_ft.ui import app as app_module
from desktop_ft.ui import selfcheck


def test_this_binding_is_sound(qapp):
    # the pinned PySide6 (6.11.3) loses no reference per call on every Python we claim
    assert selfcheck.none_refs_lost_per_call() == 0.0
    assert selfcheck.qt_problem() is None


def test_a_leaking_binding_is_detected(monkeypatch):
    monkeypatch.setattr(selfcheck, "none_refs_lost_per_call", lambda: 1.0)
    problem = selfcheck.qt_problem()
    assert problem is not None and "6.11.3" in problem and sys.version.split()[0] in problem


def test_a_leaking_binding_shows_a_dialog_and_no_window(qapp, monkeypatch):
    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(selfcheck, "none_refs_lost_per_call", lambda: 1.0)
    from PySide6.QtWidgets import QMessageBox

    monkeypatch.setattr(QMessageBox, "critical",
                        staticmethod(lambda parent, title, text, *a: shown.append((title, text))))
    import desktop_ft.ui.main_window as main_window

    monkeypatch.setattr(main_window, "MainWindow",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("window built")))
    assert app_module.main([]) == 2
    assert len(shown) == 1 and "leaks a reference" in shown[0][1] and "pip install" in shown[0][1]


def test_a_sound_binding_shows_no_dialog(qapp, monkeypatch):
    monkeypatch.setattr(selfcheck, "none_refs_lost_per_call", lambda: 0.0)
    from PySide6.QtWidgets import QMessageBox

    monkeypatch.setattr(QMessageBox, "critical",
                        staticmethod(lambda *a: (_ for _ in ()).throw(AssertionError("dialog"))))
    assert app_module.qt_is_sound() is True
