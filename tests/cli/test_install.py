"""Installed like an app: the wheel carries every resource, the desktop entry and the metainfo pass
the freedesktop validators, ``desktop-ft desktop-entry`` installs an entry that starts this install
and removes exactly what it wrote, and ``desktop-ft doctor`` reports and fails when something is wrong."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from desktop_ft import __version__, desktop_entry, resources
from desktop_ft.core import selfcmd

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "desktop_ft", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, env=env, timeout=600)


def _entry(text: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(text)
    return parser["Desktop Entry"]


def test_every_resource_is_in_the_wheel(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("desktop_ft-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    on_disk = {p.relative_to(REPO).as_posix() for p in resources.root().rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert on_disk - names == set()
    for needed in (resources.sample_dataset(), resources.general_prompts(), resources.icon_svg(),
                   resources.desktop_entry(), resources.metainfo(), resources.icon_png(256)):
        assert needed.relative_to(REPO).as_posix() in names


def test_desktop_entry_and_metainfo_agree_on_one_app_id():
    from desktop_ft.ui.app import APP_NAME

    entry = _entry(resources.desktop_entry().read_text(encoding="utf-8"))
    assert resources.desktop_entry().name == f"{resources.APP_ID}.desktop"
    assert entry["Icon"] == resources.APP_ID
    assert entry["StartupWMClass"] == APP_NAME  # Qt's X11 WM_CLASS is the application name
    assert "Science" in entry["Categories"] and entry["Keywords"].endswith(";")
    root = ET.parse(resources.metainfo()).getroot()
    assert root.findtext("id") == resources.APP_ID
    assert root.findtext("launchable") == f"{resources.APP_ID}.desktop"
    assert root.find("content_rating").get("type").startswith("oars-")
    assert root.find("developer/name").text
    assert root.find("releases/release").get("version") == __version__  # the newest release is this one
    shots = [s.findtext("image") for s in root.iter("screenshot")]
    assert shots and all((REPO / "docs" / "screenshots" / Path(url).name).is_file() for url in shots)


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="needs desktop-file-utils")
def test_desktop_entries_pass_desktop_file_validate(tmp_path):
    shipped = subprocess.run(["desktop-file-validate", str(resources.desktop_entry())], capture_output=True, text=True)
    assert shipped.returncode == 0 and "error" not in shipped.stdout, shipped.stdout
    # the installed one too, with an Exec that needs quoting
    odd = tmp_path / f"{resources.APP_ID}.desktop"
    odd.write_text(desktop_entry.rendered_entry(["/opt/My Apps/desk$top-ft", "--flag"]), encoding="utf-8")
    out = subprocess.run(["desktop-file-validate", str(odd)], capture_output=True, text=True)
    assert out.returncode == 0 and "error" not in out.stdout, out.stdout
    assert _entry(odd.read_text())["Exec"] == '"/opt/My Apps/desk\\\\$top-ft" --flag'


@pytest.mark.skipif(shutil.which("appstreamcli") is None, reason="needs appstream")
def test_metainfo_passes_appstreamcli():
    out = subprocess.run(["appstreamcli", "validate", "--no-net", "--explain", str(resources.metainfo())],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_desktop_entry_install_starts_this_install_and_uninstall_removes_only_ours(tmp_path):
    home = tmp_path / "share"
    foreign = home / "applications" / "other.desktop"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("[Desktop Entry]\nType=Application\nName=Other\nExec=other\n")
    env = dict(os.environ, XDG_DATA_HOME=str(home))
    done = _cli("desktop-entry", "install", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    app = resources.APP_ID
    installed = home / "applications" / f"{app}.desktop"
    for path in (installed, home / "metainfo" / f"{app}.metainfo.xml",
                 home / "icons" / "hicolor" / "scalable" / "apps" / f"{app}.svg",
                 *(home / "icons" / "hicolor" / f"{s}x{s}" / "apps" / f"{app}.png" for s in resources.ICON_SIZES)):
        assert path.is_file(), path
    entry = _entry(installed.read_text(encoding="utf-8"))
    argv = shlex.split(entry["Exec"].replace("\\\\", "\\"))
    assert argv == desktop_entry.launch_command()
    assert Path(argv[0]).is_absolute() and entry["TryExec"] == argv[0]
    # the menu's command really is this install: it answers with this version from any folder
    version = subprocess.run([*argv, "--version"], capture_output=True, text=True, cwd=tmp_path,
                             env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    assert version.stdout.strip() == f"desktop-ft {__version__}"
    removed = _cli("desktop-entry", "uninstall", env=env, cwd=tmp_path)
    assert removed.returncode == 0 and removed.stdout.count("Removed") == 3 + len(resources.ICON_SIZES)
    assert not installed.exists() and foreign.is_file()
    again = _cli("desktop-entry", "uninstall", env=env, cwd=tmp_path)
    assert again.returncode == 0 and "Nothing to remove" in again.stdout


def test_child_commands_start_this_install_or_the_bundle(monkeypatch):
    assert selfcmd.desktop_ft_command("train", "x.yaml") == [sys.executable, "-m", "desktop_ft", "train", "x.yaml"]
    assert selfcmd.python_script_command("conv.py", "--a") == [sys.executable, "conv.py", "--a"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert selfcmd.desktop_ft_command("train", "x.yaml") == [sys.executable, "train", "x.yaml"]
    assert selfcmd.python_script_command("conv.py", "--a") == [sys.executable, "run-script", "conv.py", "--a"]
    from desktop_ft.ui.workers import train_command

    assert train_command(resume_dir=Path("/r")) == [sys.executable, "train", "--resume", "/r", "--json-events"]


def test_run_script_runs_a_script_with_its_arguments_and_exit_code(tmp_path):
    script = tmp_path / "hello.py"
    script.write_text("import sys\nprint('args', sys.argv[1:])\nsys.exit(3 if '--fail' in sys.argv else 0)\n")
    ok = _cli("run-script", str(script), "a", "--b")
    assert ok.returncode == 0 and "args ['a', '--b']" in ok.stdout
    assert _cli("run-script", str(script), "--fail").returncode == 3
    missing = _cli("run-script", str(tmp_path / "nope.py"))
    assert missing.returncode == 2 and "no such script" in missing.stderr


def test_doctor_reports_everything_and_opens_the_window(tmp_path):
    out = _cli("doctor", "--json", "--window", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    for name in ("python", "torch", "transformers", "trl", "peft", "PySide6"):
        assert report["versions"][name]
    assert report["hardware"]["cpu_cores"] >= 1 and report["hardware"]["ram_total_bytes"] > 0
    assert set(report["disk"]) == {"cache", "runs"} and report["disk"]["cache"]["free_bytes"] > 0
    by_name = {c["name"]: c for c in report["checks"]}
    for name in ("Qt binding", "built-in model", "window"):
        assert by_name[name]["status"] == "ok", by_name[name]
    text = _cli("doctor", cwd=tmp_path)
    assert text.returncode == 0 and "built-in model" in text.stdout and "torch" in text.stdout


def test_doctor_fails_with_a_fix_when_the_built_in_model_cannot_be_prepared(tmp_path):
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("not a folder")
    out = _cli("doctor", "--json", env=dict(os.environ, DESKTOP_FT_CACHE=str(blocker)), cwd=tmp_path)
    assert out.returncode == 1
    check = {c["name"]: c for c in json.loads(out.stdout)["checks"]}["built-in model"]
    assert check["status"] == "fail" and str(blocker) in check["detail"] and "DESKTOP_FT_CACHE" in check["fix"]
