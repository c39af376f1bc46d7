"""The window shows before it looks at the machine: scans start after the first paint."""

from desktop_ft.ui.session import Session
from desktop_ft.ui.wizard.model_page import ModelPage


def test_model_page_scans_the_machine_only_once_it_is_drawn(qtbot, qsettings):
    page = ModelPage(Session(), qsettings)
    qtbot.addWidget(page)
    qtbot.wait(50)
    assert page._workers == []  # nothing started while the page is not on the screen
    with qtbot.waitSignal(page.hardwareReady, timeout=120000) as blocker:
        page.show()
    assert blocker.args[0]["cpu_cores"] >= 1
    assert len(page._workers) == 3  # the model's description, the cache scan and the hardware look, once
    page.repaint()
    assert len(page._workers) == 3


def test_icons_are_drawn_once_then_read_from_the_cache(qapp, tmp_path, monkeypatch):
    from desktop_ft.ui import theme

    monkeypatch.setenv("DESKTOP_FT_CACHE", str(tmp_path))
    first = theme.icon("mdi6.chart-line", color="#123456")
    cached = tmp_path / "icons" / f"mdi6.chart-line-123456-{theme.ICON_CACHE_PX}.png"
    assert cached.exists() and not first.isNull()
    import qtawesome

    monkeypatch.setattr(qtawesome, "icon", lambda *a, **k: (_ for _ in ()).throw(AssertionError("drawn again")))
    again = theme.icon("mdi6.chart-line", color="#123456")
    image = again.pixmap(20, 20).toImage()
    assert image.width() == 20
    assert any(image.pixelColor(x, y).name() == "#123456" for x in range(20) for y in range(20))
