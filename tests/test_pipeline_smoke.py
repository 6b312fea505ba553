"""Every notebook, end to end, through the runner with CI-sized parameters (params/smoke.yaml)."""

from __future__ import annotations

import json

import pytest

from nbkit import params, paths, runner

pytestmark = pytest.mark.slow


def test_smoke_pipeline_runs_every_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv("NBKIT_RUNS", str(tmp_path))
    run = tmp_path / "smoke"
    jobs = runner.run_pipeline(paths.PARAMS / "smoke.yaml", run)
    failed = {j.notebook: j.error for j in jobs if j.status != "ok"}
    assert not failed, f"notebooks failed: {failed} (see {run})"
    assert [j.notebook for j in jobs] == list(params.NOTEBOOKS), "smoke.yaml must cover every notebook"
    statuses = runner.read_statuses(run)
    assert all(s["status"] == "ok" and s["headline"] for s in statuses), "every notebook records a headline"
    for artifact in ("data/train.jsonl", "data/eval.jsonl", "data/report.json"):
        assert (run / artifact).exists(), artifact
    assert json.loads((run / "data" / "report.json").read_text())
    assert (run / "index.html").stat().st_size > 0
