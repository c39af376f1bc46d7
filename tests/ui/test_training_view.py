"""The Train step end to end: a real child process on the tiny model, events into the plot, Stop
(checkpoint), Resume, and a killed child that leaves a clear error and a resumable run."""


from desktop_ft.core.events import EvalLogged, StepLogged
from desktop_ft.core.runs import RunFolder
from desktop_ft.ui.main_window import MainWindow

LONG = {"training.max_steps": 30, "training.save_steps": 50, "training.eval_steps": 10,
        "training.logging_steps": 1, "training.batch_size": 4, "training.learning_rate": 5e-3,
        "training.max_length": 128, "data.validation_fraction": 0.2}


def _walk_wizard(qtbot, w, tiny_model, chat_jsonl):
    w.go("model")
    w.model_page.choose(str(tiny_model))
    w._on_next()
    assert w.current_key() == "dataset"
    with qtbot.waitSignal(w.dataset_page.inspected, timeout=60000):
        w.dataset_page.choose(str(chat_jsonl))
    w._on_next()
    assert w.current_key() == "method"
    w.session.update(LONG)
    w._on_next()
    w._on_next()
    assert w.current_key() == "train"


def test_wizard_train_stop_resume(qtbot, qsettings, tiny_model, chat_jsonl):
    w = MainWindow(settings=qsettings)
    qtbot.addWidget(w)
    w.show()
    _walk_wizard(qtbot, w, tiny_model, chat_jsonl)
    view = w.training_view
    with qtbot.waitSignal(view.stepLogged, timeout=180000):
        view.start_button.click()
    assert view.running and view.stop_button.isEnabled() and not view.start_button.isEnabled()
    run_dir = view.run_dir
    # the config the window wrote has the CLI's shape and reruns unchanged
    config = RunFolder(run_dir).read_config()
    assert config.model.name == str(tiny_model) and config.training.max_steps == 30
    qtbot.waitUntil(lambda: view.plots.point_count() >= 2, timeout=60000)
    with qtbot.waitSignal(view.plots.redrawn, timeout=5000) as drawn:
        pass
    assert drawn.args[0] >= 2
    with qtbot.waitSignal(view.runEnded, timeout=120000) as ended:
        view.stop_button.click()
    assert ended.args[0].state == "stopped"
    stopped_at = ended.args[0].step
    assert 0 < stopped_at < 30
    assert RunFolder(run_dir).last_checkpoint() is not None
    assert view.resume_button.isEnabled()
    # the log renders typed events only; the CLI's own prose and library warnings stay in stderr.log
    log = view.log.toPlainText()
    assert f"Stopped at step {stopped_at}" in log
    assert "continue with: desktop-ft train --resume" in (run_dir / "stderr.log").read_text()
    assert "continue with" not in log and "stopping after this step" not in log
    with qtbot.waitSignal(view.runEnded, timeout=240000) as ended:
        view.resume_button.click()
    assert ended.args[0].state == "finished", ended.args[0].error
    assert ended.args[0].step == 30
    steps = [r["step"] for r in RunFolder(run_dir).read_metrics() if r.get("event") == "StepLogged"]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)  # no doubled steps after resume
    assert view.plots.point_count() >= stopped_at
    assert "Finished" in view.state_label.text()


def test_killed_child_shows_error_and_stays_resumable(qtbot, qsettings, make_config):
    w = MainWindow(settings=qsettings)
    qtbot.addWidget(w)
    view = w.training_view
    config = make_config(max_steps=2000, save_steps=5, eval_steps=1000, logging_steps=1)
    with qtbot.waitSignal(view.stepLogged, timeout=180000):
        view.start(config)
    qtbot.waitUntil(lambda: RunFolder(view.run_dir).last_checkpoint() is not None, timeout=120000)
    with qtbot.waitSignal(view.runEnded, timeout=60000) as ended:
        view.process.kill()
    finished = ended.args[0]
    assert finished.state == "failed"
    assert "killed" in finished.error and "Resume" in finished.error
    assert not view.banner.isHidden() and "killed" in view.banner_text.text()
    assert view.resume_button.isEnabled()
    status = RunFolder(view.run_dir).read_status()
    assert status.state == "failed"


def test_reopened_run_shows_its_saved_curves(qtbot, qsettings, tmp_path):
    run = RunFolder(tmp_path / "old-run")
    from desktop_ft.core.config import RunConfig
    from desktop_ft.core.runs import RunStatus

    run.write_config(RunConfig())
    run.write_status(RunStatus(state="finished", step=3, max_steps=3, final_loss=1.5))
    for step, loss in ((1, 3.0), (2, 2.0), (3, 1.5)):
        run.append_event(StepLogged(step=step, max_steps=3, epoch=0.1 * step, loss=loss, learning_rate=1e-4))
    run.append_event(EvalLogged(step=3, epoch=0.3, eval_loss=1.7))
    run.close()
    w = MainWindow(settings=qsettings)
    qtbot.addWidget(w)
    with qtbot.waitSignal(w.training_view.historyShown, timeout=20000):
        w._on_open_run(str(run.path))
    assert w.current_key() == "train"
    assert w.training_view.plots.point_count() == 3
    assert w.training_view.stat_eval.value.text() == "1.7000"
    assert "Finished" in w.training_view.state_label.text()


def test_follow_a_run_started_outside_the_window(qtbot, qsettings, make_config, tmp_path):
    """Re-attach: a run started by the CLI (another process) is followed by tailing its run folder."""
    import subprocess
    import sys

    from desktop_ft.core.config import save_config

    config = make_config(max_steps=40, save_steps=100, eval_steps=100, logging_steps=1)
    path = tmp_path / "cli-config.yaml"
    save_config(config, path)
    child = subprocess.Popen([sys.executable, "-m", "desktop_ft", "train", str(path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run_dir = config.output.output_dir
        qtbot.waitUntil(lambda: RunFolder(run_dir).status_path.exists(), timeout=120000)
        w = MainWindow(settings=qsettings)
        qtbot.addWidget(w)
        view = w.training_view
        with qtbot.waitSignal(view.runEnded, timeout=240000) as ended:
            w._on_follow_run(str(run_dir), child.pid)
            assert view.running and w.current_key() == "train"
        assert ended.args[0].state == "finished"
        assert view.plots.point_count() > 0
    finally:
        child.wait(timeout=120)
