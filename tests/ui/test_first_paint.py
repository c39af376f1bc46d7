"""The window shows before it looks at the machine: scans start after the first paint."""

from desktop_ft.ui.session import Session
from desktop_ft.ui.wizard.model_page import ModelPage


def test_model_page_scans_the_machine_only_once_it_is_drawn(qtbot, qsettings):
    page = ModelPage(Session(), qsettings)
    qtbot.addWidget(page)
    before = len(page._workers)
    qtbot.wait(50)
    assert len(page._workers) == before  # no scan started while the page is not on the screen
    with qtbot.waitSignal(page.hardwareReady, timeout=120000) as blocker:
        page.show()
    assert blocker.args[0]["cpu_cores"] >= 1
    assert len(page._workers) == before + 2  # the cache scan and the hardware look, once
    page.repaint()
    assert len(page._workers) == before + 2
