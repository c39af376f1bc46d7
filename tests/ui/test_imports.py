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


FIRST_WINDOW = """
import json, sys
from PySide6.QtCore import QSettings
from desktop_ft.ui.app import create_app
app = create_app([])
from desktop_ft.ui.main_window import MainWindow
w = MainWindow(settings=QSettings(sys.argv[1], QSettings.Format.IniFormat))
w.show()
app.processEvents()
print(json.dumps({"modules": sorted(sys.modules), "pages": sorted(w.pages), "tray": w._tray is not None}))
w.close()
"""


def test_first_window_loads_only_what_its_first_page_needs(tmp_path):
    """Opening the window (choices saved by an earlier start, icons cached) builds the Model page alone and
    loads no plotting, YAML, icon-font, numeric or process modules: those come with the pages that use them."""
    import json

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "DESKTOP_FT_CACHE": str(tmp_path / "cache")}
    settings = str(tmp_path / "settings.ini")
    runs = [subprocess.run([sys.executable, "-c", FIRST_WINDOW, settings], capture_output=True, text=True,
                           check=True, env=env, timeout=300) for _ in range(2)]  # the first fills the caches
    seen = json.loads(runs[1].stdout.strip().splitlines()[-1])
    assert seen["pages"] == ["model"] and not seen["tray"]
    loaded = set(seen["modules"])
    assert not loaded & {"pyqtgraph", "numpy", "yaml", "qtawesome", "qtpy", "superqt", "psutil", "subprocess",
                         "importlib.resources", *HEAVY}
