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


def test_the_recorded_estimate_follows_the_data_not_the_max_length_ceiling(make_config, tmp_path: Path) -> None:
    """Batches are padded to their longest row: a higher max_length on short data changes nothing real."""
    estimates = []
    for max_length in (256, 1024):
        config = make_config(out=tmp_path / f"run{max_length}", max_steps=1, max_length=max_length)
        engine.train(config)
        status = json.loads((tmp_path / f"run{max_length}" / "status.json").read_text())
        estimates.append(status["estimated_memory_bytes"])
    ceiling = vram.estimate_for_config(make_config(max_length=1024), device="cpu", suggest=False).total_bytes
    assert estimates[0] == estimates[1]
    assert estimates[1] < ceiling


def test_engine_and_estimate_count_the_data_with_one_rule(make_config, tmp_path: Path) -> None:
    """`desktop-ft estimate --config RUN/config.yaml` gives what the engine recorded for that run."""
    from desktop_ft.cli import main

    config = make_config(out=tmp_path / "same", max_steps=1, max_length=1024).replace(
        {"data.validation_fraction": 0.0})
    engine.train(config)
    recorded = json.loads((tmp_path / "same" / "status.json").read_text())["estimated_memory_bytes"]
    from desktop_ft.core.lengths import sample_lengths

    assert vram.estimate_for_config(config, device="cpu", suggest=False,
                                    lengths=sample_lengths(config)).total_bytes == recorded
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["estimate", "--config", str(tmp_path / "same" / "config.yaml"), "--device", "cpu", "--json"]) == 0
    assert json.loads(out.getvalue())["total_bytes"] == recorded
