"""Every run records its estimate next to its measured peak (status.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from desktop_ft.core import engine, vram


def test_run_records_estimate_and_measured_peak(make_config) -> None:
    config = make_config(max_steps=2)
    engine.train(config)
    status = json.loads((Path(config.output.output_dir) / "status.json").read_text())
    assert status["state"] == "finished"
    assert status["estimated_memory_bytes"] > 0
    assert status["peak_memory_bytes"] > 0
    # the tiny model's run is estimated at well under a GiB of RAM beyond the Python runtime
    assert status["estimated_memory_bytes"] < vram.CPU_RUNTIME_BYTES + vram.GiB


def test_an_estimate_that_fails_never_stops_training(monkeypatch: pytest.MonkeyPatch, make_config) -> None:
    def broken(*_a, **_k):
        raise RuntimeError("estimate bug")

    monkeypatch.setattr(vram, "estimate_for_config", broken)
    assert engine._estimated_memory(make_config(), "cpu") is None
