"""``desktop-ft screenshots``: the real window, offscreen, every page saved at ≥ 1200×800."""

import os
import subprocess
import sys

import pytest

from desktop_ft.cli.screenshots import PAGES


@pytest.mark.slow
def test_screenshots_of_every_page(tmp_path):
    out = tmp_path / "shots"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    subprocess.run([sys.executable, "-m", "desktop_ft", "screenshots", str(out), "--steps", "2"], check=True,
                   env=env, timeout=1800)
    from PySide6.QtGui import QImage

    for page in PAGES:
        image = QImage(str(out / f"{page}.png"))
        assert not image.isNull(), page
        assert image.width() >= 1200 and image.height() >= 800, page


def test_screenshots_is_a_cli_command():
    from desktop_ft.cli import build_parser

    args = build_parser().parse_args(["screenshots", "out"])
    assert args.outdir == "out" and args.steps == 30
