from desktop_ft.ui.main_window import STEPS, MainWindow


def test_every_step_is_reachable_and_geometry_is_kept(qtbot, qsettings):
    w = MainWindow(settings=qsettings)
    qtbot.addWidget(w)
    w.show()
    assert w.width() >= 1200 and w.height() >= 800
    assert list(w.pages) == ["model"]  # the other pages are built when first visited
    seen = []
    order = [k for k, _l, _i in STEPS][1:] + ["model"]  # it opens on Model
    for key in order:
        with qtbot.waitSignal(w.pageChanged) as blocker:
            w.go(key)
        seen.append(blocker.args[0])
        assert w.stack.currentWidget() is w.pages[key]
        # a page built later takes its placeholder's place
        assert w.stack.count() == len(STEPS) and w.stack.indexOf(w.pages[key]) == [k for k, _l, _i in STEPS].index(key)
    assert seen == order
    w.go("model")
    w._on_next()
    assert w.current_key() == "dataset"
    w._on_back()
    assert w.current_key() == "model"
    w.resize(1300, 900)
    w.close()
    assert qsettings.value("window/geometry") is not None
    assert qsettings.value("window/page") == "model"


def test_recent_choices_come_back(qtbot, qsettings, tiny_model):
    w = MainWindow(settings=qsettings)
    qtbot.addWidget(w)
    w.model_page.choose(str(tiny_model))
    w.session.update({"training.max_steps": 7})
    w.close()
    again = MainWindow(settings=qsettings)
    qtbot.addWidget(again)
    assert again.session.config.model.name == str(tiny_model)
    assert again.session.config.training.max_steps == 7
    assert str(tiny_model) in qsettings.value("recent/models")


def test_choices_saved_by_the_yaml_storing_version_come_back(qtbot, qsettings):
    """Earlier versions kept the wizard's choices as YAML: an upgrade must not reset them."""
    import yaml

    from desktop_ft.core.config import RunConfig

    saved = RunConfig().replace({"training.max_steps": 9, "method.method": "qlora"})
    qsettings.setValue("wizard/config", yaml.safe_dump(saved.to_dict()))
    w = MainWindow(settings=qsettings)
    qtbot.addWidget(w)
    assert (w.session.config.training.max_steps, w.session.config.method.method) == (9, "qlora")
    w.close()
    assert '"max_steps": 9' in qsettings.value("wizard/config")  # written back as JSON


def test_every_page_fits_a_window_half_a_full_hd_screen_wide(qtbot, qsettings):
    """A window tiled to half of a 1920 px screen: no page may force it wider (the Runs page's
    buttons in one row needed 1,250 px, the chat settings 1,280, the method cards 1,000)."""
    w = MainWindow(settings=qsettings)
    qtbot.addWidget(w)
    w.show()
    for key, _label, _icon in STEPS:
        w.go(key)
        qtbot.wait(50)
        assert w.minimumSizeHint().width() <= 960, (key, w.minimumSizeHint().width())
        w.resize(960, 700)
        qtbot.waitUntil(lambda: w.width() == 960, timeout=2000)
