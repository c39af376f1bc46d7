"""The whole point, on the real built-in model: a short run on the sample data changes how it answers.

Slow (a few minutes on a CPU): trains SmolLM2-135M-Instruct on the "three-step tutor" sample and
asks held-out questions (the run's own validation split) of the base and the tuned model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

STEPS = int(os.environ.get("DESKTOP_FT_STYLE_STEPS", "30"))


def test_short_run_answers_in_three_steps_and_the_base_does_not(tmp_path: Path) -> None:
    from desktop_ft.cli import main
    from desktop_ft.core.config import RunConfig
    from desktop_ft.core.engine import train

    config = RunConfig().replace({"training.max_steps": STEPS, "training.batch_size": 4,
                                  "training.learning_rate": 1e-3, "training.max_length": 256,
                                  "training.save_steps": 1000, "training.eval_steps": 1000,
                                  "output.output_dir": str(tmp_path / "run")})
    assert train(config).state == "finished"

    out_path = tmp_path / "compare.json"
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["compare", str(tmp_path / "run"), "--max-new-tokens", "40", "--json", "--no-forgetting"])
    assert code == 0
    out = json.loads(buffer.getvalue())
    out_path.write_text(json.dumps(out, indent=2))
    results = out["results"]
    probes = json.loads((tmp_path / "run" / "probes.json").read_text())["probes"]
    assert len(results) == len(probes) >= 5 and all(p["source"] == "validation" for p in probes)
    tuned_style = [r for r in results if r["tuned"].lstrip().startswith("Step 1:") and "Step 2:" in r["tuned"]]
    base_style = [r for r in results if "Step 1:" in r["base"]]
    assert len(tuned_style) >= len(results) - 1, results
    assert not base_style, results
