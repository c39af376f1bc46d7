import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_importing_every_core_module_loads_no_qt_and_no_torch() -> None:
    code = (
        "import pkgutil, importlib, sys, desktop_ft.core as c\n"
        "for m in pkgutil.iter_modules(c.__path__): importlib.import_module('desktop_ft.core.' + m.name)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'superqt', 'qtawesome')]\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'trl', 'peft')]\n"
        "print(bad, heavy); assert not bad and not heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_import_linter_contract_holds() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
