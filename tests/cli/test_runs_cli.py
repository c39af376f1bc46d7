"""``desktop-ft runs list|show|diff|delete``: the Runs page's twin, on real run folders."""

from __future__ import annotations

import json
import os


from desktop_ft.cli import main
from desktop_ft.core import history
from desktop_ft.core.config import RunConfig
from desktop_ft.core.runs import RunFolder, RunStatus, process_start_time


def _run(root, name, state="finished", lr=2e-4, loss=1.0, pid=None, adapter=True):
    run = RunFolder(root / name)
    run.write_config(RunConfig().replace({"training.learning_rate": lr, "output.run_name": name}))
    # a live run is its pid *and* that process's start time (a bare pid may have been reused)
    run.write_status(RunStatus(state=state, step=3, max_steps=3, final_loss=loss, pid=pid,
                               pid_started=process_start_time(pid) if pid else None,
                               started_at="2026-01-01T10:00:00+00:00", ended_at="2026-01-01T10:02:05+00:00"))
    if adapter:
        (run.adapter_dir).mkdir()
        (run.adapter_dir / "adapter_config.json").write_text("{}")
        (run.adapter_dir / "adapter_model.safetensors").write_bytes(b"x")
    return run.path


def _out(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_json_is_the_runs_page_rows(tmp_path, capsys):
    _run(tmp_path, "run-a")
    _run(tmp_path, "run-b", state="stopped", lr=1e-4, adapter=False)
    code, out, _ = _out(capsys, ["runs", "list", "--root", str(tmp_path), "--json"])
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows == {s.name: s.to_dict() for s in history.list_summaries(tmp_path)}  # the page's source
    assert rows["run-a"]["state"] == "finished" and rows["run-a"]["result"] == "adapter"
    assert rows["run-a"]["duration_seconds"] == 125 and rows["run-b"]["result"] is None
    code, out, _ = _out(capsys, ["runs", "list", "--root", str(tmp_path)])
    assert code == 0 and "run-a" in out and "2 min 05 s" in out


def test_show_by_name_and_diff(tmp_path, capsys):
    a = _run(tmp_path, "run-a")
    _run(tmp_path, "run-b", lr=1e-4, loss=2.0)
    code, out, _ = _out(capsys, ["runs", "show", "run-a", "--root", str(tmp_path), "--json"])
    shown = json.loads(out)
    assert code == 0 and shown["path"] == str(a) and shown["config"]["training.learning_rate"] == 2e-4
    assert shown["result_path"] == str(a / "adapter")
    code, out, _ = _out(capsys, ["runs", "diff", "run-a", str(tmp_path / "run-b"), "--root", str(tmp_path), "--json"])
    diff = json.loads(out)["differences"]
    assert diff["training.learning_rate"] == [2e-4, 1e-4] and diff["outcome.final_loss"] == [1.0, 2.0]
    assert "model.name" not in diff


def test_unknown_run_names_the_closest(tmp_path, capsys):
    _run(tmp_path, "run-alpha")
    code, _, err = _out(capsys, ["runs", "show", "run-alpah", "--root", str(tmp_path)])
    assert code == 2 and "Did you mean 'run-alpha'" in err


def test_delete_refuses_what_is_not_a_run_and_live_runs(tmp_path, capsys):
    done = _run(tmp_path, "done")
    live = _run(tmp_path, "live", state="running", pid=os.getpid())
    lock = RunFolder(live).lock()  # what a training process holds for the run's life
    lookalike = tmp_path / "project"
    lookalike.mkdir()
    (lookalike / "config.yaml").write_text("model:\n  name: default\n")  # a config.yaml, but no run status
    (lookalike / "notes.txt").write_text("mine")
    repo = _run(tmp_path, "repo")
    (repo / ".git").mkdir()
    link = tmp_path / "link"
    link.symlink_to(done)
    for target in (lookalike, live, repo, link):
        code, _, err = _out(capsys, ["runs", "delete", str(target), "--yes"])
        assert code == 2 and ("nothing was deleted" in err or "not a run folder" in err), err
    assert (lookalike / "notes.txt").exists() and live.exists() and repo.exists() and done.exists()
    # one refusal among several deletes none of them
    code, _, err = _out(capsys, ["runs", "delete", str(done), str(live), "--yes"])
    assert code == 2 and "still training" in err and done.exists()
    code, out, _ = _out(capsys, ["runs", "delete", "done", "--root", str(tmp_path), "--yes", "--json"])
    assert code == 0 and json.loads(out) == {"deleted": [str(done)]} and not done.exists()
    lock.release()


def test_delete_without_yes_needs_a_terminal(tmp_path, capsys, monkeypatch):
    done = _run(tmp_path, "done")
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    code, _, err = _out(capsys, ["runs", "delete", str(done)])
    assert code == 2 and "--yes" in err and done.exists()


def test_tuned_choices_offer_a_full_fine_tunes_model(tmp_path):
    run = RunFolder(_run(tmp_path, "full", adapter=False))
    run.model_dir.mkdir()
    (run.model_dir / "config.json").write_text("{}")
    (run.model_dir / "model.safetensors").write_bytes(b"x")
    ckpt = run.checkpoints_dir / "checkpoint-2"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text("{}")
    (ckpt / "model.safetensors").write_bytes(b"x")
    (run.checkpoints_dir / "checkpoint-1").mkdir()  # empty: nothing to load, not offered
    choices = history.tuned_choices(run)
    assert [(c.label, c.checkpoint, c.kind) for c in choices] == [("final model", None, "full"),
                                                                 ("step 2", 2, "full")]
