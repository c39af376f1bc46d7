"""The window must appear before torch loads: the CLI package and the window's modules import no torch
in the GUI thread (workers may load it in the background, after the window is up)."""

import os
import subprocess
import sys

HEAVY = ("torch", "transformers", "peft", "trl")

HOOK = """
import sys, threading
class _Spy:
    seen = []
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in %r and threading.current_thread() is threading.main_thread():
            _Spy.seen.append(name.split('.')[0])
        return None
sys.meta_path.insert(0, _Spy())
""" % (HEAVY,)


def _main_thread_imports(code: str) -> list[str]:
    probe = HOOK + code + "\nprint(','.join(sorted(set(_Spy.seen))))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}, timeout=300)
    return [m for m in out.stdout.strip().splitlines()[-1].split(",") if m] if out.stdout.strip() else []


def test_cli_imports_no_torch():
    assert _main_thread_imports("import desktop_ft.cli") == []


def test_window_shows_before_torch_loads():
    code = ("from desktop_ft.ui.app import create_app\napp = create_app([])\n"
            "from desktop_ft.ui.main_window import MainWindow\nw = MainWindow()\nw.show()\n"
            "for key in ('model', 'dataset', 'method', 'memory', 'train', 'chat', 'runs'):\n"
            "    w.go(key)\n    app.processEvents()\n"
            "seen = list(_Spy.seen)\n"
            "from PySide6.QtCore import QThreadPool\nQThreadPool.globalInstance().waitForDone(240000)\n"
            "_Spy.seen[:] = seen\n")
    assert _main_thread_imports(code) == []
