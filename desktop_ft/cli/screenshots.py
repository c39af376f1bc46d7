"""``desktop-ft screenshots OUTDIR``: drive the real window offscreen through every page — the built-in
model, the sample dataset, a short real training run and a chat — and save one PNG per page.

The README's images come from here; regenerate them when the UI changes, and look at them.
Waiting is done on the window's own signals inside a Qt event loop (no sleeps).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

PAGES = ("model", "dataset", "method", "memory", "training", "chat", "runs")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("screenshots", help="save a screenshot of every page of the window (offscreen)",
                       description="Open the window offscreen, walk every page with the built-in model and the "
                       "sample data (including a short real training run and a chat) and save "
                       + ", ".join(f"{n}.png" for n in PAGES) + " into OUTDIR.")
    p.add_argument("outdir", help="folder for the PNG files")
    p.add_argument("--steps", type=int, default=30, help="training steps of the real run (default 30)")
    p.add_argument("--dark", action="store_true", help="use the dark theme")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    work = Path(tempfile.mkdtemp(prefix="desktop-ft-shots-"))
    os.environ["DESKTOP_FT_RUNS"] = str(work / "runs")  # a clean Runs page, the user's runs untouched
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)

    from PySide6.QtCore import QEventLoop, QSettings, QTimer

    from desktop_ft.ui import theme
    from desktop_ft.ui.app import create_app

    app = create_app([sys.argv[0]])
    theme.apply(app, dark=args.dark)
    from desktop_ft.ui.main_window import MainWindow

    settings = QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(settings=settings)
    w.resize(1280, 840)
    w.show()

    def wait_for(signal, timeout_s: float, what: str) -> list:
        loop = QEventLoop()
        got: list = []

        def on(*a) -> None:
            got.append(a)
            loop.quit()

        signal.connect(on)
        QTimer.singleShot(int(timeout_s * 1000), loop.quit)
        loop.exec()
        signal.disconnect(on)
        if not got:
            print(f"warning: timed out waiting for {what}", file=sys.stderr)
            return []
        return list(got[0])

    def wait_until(pred, timeout_s: float, what: str) -> None:
        loop = QEventLoop()
        timer = QTimer()
        timer.setInterval(100)
        timer.timeout.connect(lambda: pred() and loop.quit())
        timer.start()
        QTimer.singleShot(int(timeout_s * 1000), loop.quit)
        if not pred():
            loop.exec()
        timer.stop()
        if not pred():
            print(f"warning: timed out waiting for {what}", file=sys.stderr)

    def settle(ms: int = 400) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def shot(name: str) -> None:
        settle()
        path = out / f"{name}.png"
        w.grab().save(str(path))
        print(f"saved {path} ({path.stat().st_size // 1024} KB)", file=sys.stderr)

    # 1 Model
    w.go("model")
    wait_until(lambda: w.model_page.info_form.rowCount() > 0 and w.model_page.hw_form.rowCount() > 0, 180,
               "the model and hardware cards")
    shot("model")
    # 2 Dataset: the sample, shown with the part the model learns highlighted
    w.go("dataset")
    from desktop_ft import resources

    if w.dataset_page.result is None:
        wait_for(w.dataset_page.inspected, 180, "the dataset report")
    w.dataset_page.choose(str(resources.sample_dataset()))
    wait_until(lambda: w.dataset_page.result is not None and "Reading" not in w.dataset_page.summary.text(), 180,
               "the dataset report")
    w.dataset_page.tabs.setCurrentIndex(3)
    shot("dataset")
    # 3 Method: a short run that visibly changes the answers
    w.go("method")
    w.session.update({"training.max_steps": args.steps, "training.batch_size": 4, "training.learning_rate": 1e-3,
                      "training.max_length": 256, "training.eval_steps": max(5, args.steps // 3),
                      "training.save_steps": max(5, args.steps // 3), "output.run_name": "three-step-tutor"})
    shot("method")
    # 4 Memory
    w.go("memory")
    wait_until(lambda: w.memory_page.result is not None, 180, "the memory estimate")
    shot("memory")
    # 5 Train: a real run in a child process
    w.go("train")
    w.training_view.start_button.click()
    ended = wait_for(w.training_view.runEnded, 1800, "the training run")
    if ended and ended[0].state != "finished":
        print(f"warning: the run ended {ended[0].state}: {ended[0].error}", file=sys.stderr)
    shot("training")
    run_dir = str(w.training_view.run_dir)
    # 6 Chat: base vs tuned on one question
    w.go("chat")
    chat = w.chat_view
    if chat.tabs is not None:
        chat.select_run(run_dir)
        wait_until(lambda: chat.model is not None, 300, "the chat model")
        if "max_new_tokens" in chat.settings_widgets:
            chat.settings_widgets["max_new_tokens"].setValue(120)  # enough for a three-step answer
        chat.ask("How do I make a cup of tea?")
        wait_until(lambda: not chat._busy, 600, "both answers")
        for side in ("base", "tuned"):
            answer = next((m["content"] for m in reversed(chat.history[side]) if m["role"] == "assistant"), "")
            print(f"{side}: {answer.strip()[:300]!r}", file=sys.stderr)
    shot("chat")
    # 7 Runs
    w.go("runs")
    wait_for(w.runs_view.refreshed, 60, "the runs list")
    w.runs_view.select([run_dir])
    wait_for(w.runs_view.curvesShown, 60, "the run's curves")
    shot("runs")
    w.close()
    return 0
