"""pytest-qt set-up for the window: offscreen Qt, a throwaway QSettings file per test."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture()
def qsettings(tmp_path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture(autouse=True)
def _themed(qapp):
    from desktop_ft.ui import theme

    theme.apply(qapp, dark=False)
    yield
    from PySide6.QtCore import QThreadPool

    QThreadPool.globalInstance().waitForDone(60000)  # let worker threads of this test finish
