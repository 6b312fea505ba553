"""Every notebook, end to end, through the runner with CI-sized parameters (params/smoke.yaml).

The first run is the slow-machine test: one core is kept busy and 04 may wait only a second for training,
so the pipeline must stop at 04 with `timeout` (or, on a very fast machine, finish), never report 04 `ok`
and fail downstream; continuing with --from 04 re-attaches to the same job. The second run repeats the
pipeline with other thread counts and must give the same numbers.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest
from smoke_run import NOTEBOOKS, SMOKE, threads  # tests/ is on sys.path (pytest rootdir import mode)

from nbkit import runner
from nbkit.train import job

pytestmark = pytest.mark.slow


def test_busy_machine_stops_at_the_wait_cap_or_finishes_never_ok_then_failed(first_run):
    run, first, resumed = first_run
    if resumed is not None:
        assert first[3].error.startswith("WaitTimeout: local job") and "still" in first[3].error
        assert [j.status for j in resumed] == ["ok"] * (len(NOTEBOOKS) - 3), {j.notebook: j.error for j in resumed}
    statuses = runner.read_statuses(run)
    assert [s["notebook"] for s in statuses] == NOTEBOOKS, "smoke.yaml must cover every notebook"
    assert all(s["status"] == "ok" and s["headline"] and not s["stale"] for s in statuses)
    assert "running" not in statuses[3]["headline"]  # the index never keeps a stale "job is running" line
    for artifact in ("data/train.jsonl", "data/eval.jsonl", "data/report.json", "training/output/output.tar.gz"):
        assert (run / artifact).exists(), artifact
    assert json.loads((run / "data" / "report.json").read_text())
    # 04 timed the job's steps on this machine before launching; 05 sets that estimate against the run
    derived = job.read_job(run)["derived"]
    assert derived["basis"]["step_time_source"] == "calibration on this machine", derived["assumptions"]
    health = json.loads((run / "monitor" / "health.json").read_text())
    assert health["estimate_vs_actual"]["actual"]["steps"] == 10
    assert health["estimate_vs_actual"]["estimated"]["wall_s"] > 0
    assert "estimated" in statuses[4]["headline"] and "calibration on this machine" in statuses[4]["headline"]
    assert "Holm-adjusted over" in statuses[5]["headline"]  # the verdict weighs every metric
    index = (run / "index.html").read_text()
    assert "stale:" not in index and index.count("><b>ok</b><") == len(NOTEBOOKS)


def _numbers(run):
    """Every headline figure of a run, and the hash of the model it built."""
    summary = json.loads((run / "baseline" / "summary.json").read_text())
    comparison = json.loads((run / "tuned" / "comparison.json").read_text())
    training = [json.loads(line)["reward_mean"] for line in (run / "training" / "job" / "progress.jsonl")
                .read_text().splitlines() if json.loads(line)["kind"] == "train"]
    return {
        "model": hashlib.sha256((run / "model" / "model.safetensors").read_bytes()).hexdigest(),
        "baseline": summary["reward"], "pass_rate": summary["pass_rate"], "training": training,
        "comparison": {k: comparison[k] for k in ("verdict", "reward", "pass_rate", "win_tie_loss")},
    }


def test_the_same_params_give_the_same_numbers_with_other_thread_counts(first_run, tmp_path, monkeypatch):
    run, _, _ = first_run
    monkeypatch.setenv("NBKIT_RUNS", str(tmp_path))
    monkeypatch.setenv("NBKIT_CACHE", str(tmp_path / "cache"))  # the tiny model is built again, on 2 threads
    # the first run timed its steps before launching; this one launches on the bundled figure (CI time)
    second = runner.run_pipeline(SMOKE, tmp_path / "run", overrides=threads(2) + [
        "04_launch_training.local.calibrate_steps=0"], live=False)
    assert [j.status for j in second] == ["ok"] * len(NOTEBOOKS), {j.notebook: j.error for j in second}
    a, b = _numbers(run), _numbers(tmp_path / "run")
    for key in a:
        assert a[key] == b[key], key


# ---------------------------------------------------------------------- what a reader of the run gets


def _visible(page: str):
    """(parsed page, its visible text): scripts and styles left out."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(page, "html.parser")
    for tag in soup(["script", "style"]):
        tag.decompose()
    return soup, soup.get_text(" ")


def test_reports_have_no_raw_dicts_index_columns_empty_tables_or_tracebacks(first_run):
    run, _, _ = first_run
    pages = [run / "index.html", *sorted(run.glob("[0-9][0-9]_*/report.html"))]
    assert len(pages) == 1 + len(NOTEBOOKS)
    for page in pages:
        soup, text = _visible(page.read_text())
        where = page.relative_to(run)
        assert not re.search(r"\{'[^']*': ", text), f"{where}: a Python dict printed as text"
        assert "Traceback (most recent call last)" not in text and "An Exception was encountered" not in text, where
        cells = [td.get_text(" ").strip() for td in soup.find_all("td")]
        assert not [c for c in cells if re.search(r"\b(NaN|nan|<NA>)\b", c)], f"{where}: NaN where a blank belongs"
        assert not soup.select("table.dataframe"), f"{where}: a pandas table (with its index column)"
        for table in soup.find_all("table"):
            body_rows = [tr for tr in table.find_all("tr") if tr.find("td")]
            assert body_rows, f"{where}: a table with a header and no rows: {table.get_text(' ')[:80]}"
        assert not re.search(r"\d\.0\b(?! ?[a-z%])", " ".join(td.get_text() for td in soup.select("td.num"))), \
            f"{where}: a count shown as a float"
    headlines = [json.loads(p.read_text())["headline"] for p in run.glob("*/headline.json")]
    index = (run / "index.html").read_text()
    for headline in headlines:  # each notebook's headline once in the index
        assert index.count(html.escape(headline)) == 1, headline


def test_a_copied_run_folder_reads_its_own_data(first_run, tmp_path):
    """Copy the run, move the original away: the copy still monitors, compares and reviews, and its MLflow
    store shows its own metrics and artifacts."""
    from mlflow.tracking import MlflowClient

    from nbkit import review
    from nbkit.evaluate.tuned import resolve_tuned_model
    from nbkit.monitor.summary import monitor
    from nbkit.train import load_job

    run, _, _ = first_run
    copy = tmp_path / "shared" / "run-copy"
    shutil.copytree(run, copy)
    away = run.with_name(run.name + "-away")
    run.rename(away)
    try:
        handle = load_job(copy)
        assert handle.tracking_uri == f"sqlite:///{copy / 'training' / 'mlflow.db'}"
        result = monitor(copy)
        assert len(result.frame) and str(copy) in result.source and str(run) not in result.source
        model, _ = resolve_tuned_model(copy)
        assert model == str(copy / "training" / "checkpoints" / "final")
        assert len(review.load_review_frame(copy)) > 0
        client = MlflowClient(handle.tracking_uri)
        mlflow_run = client.get_run(handle.mlflow_run_id)
        assert not mlflow_run.info.artifact_uri.startswith(("/", "file:"))  # relative to the run folder
        with contextlib.chdir(copy):  # where `nbkit mlflow` serves the store from
            artifacts = {a.path for a in client.list_artifacts(handle.mlflow_run_id)}
            assert {"spec.json", "plan.json", "completions", "output"} <= artifacts
            spec = json.loads(Path(client.download_artifacts(handle.mlflow_run_id, "spec.json", str(tmp_path))).read_text())
        assert spec["train_data"] == "data/train.jsonl"
    finally:
        away.rename(run)


def test_pack_writes_one_archive_that_opens_elsewhere(first_run, tmp_path, capsys):
    from nbkit.cli import main
    from nbkit.monitor.summary import monitor

    run, _, _ = first_run
    archive = tmp_path / "shared.tar.gz"
    assert main(["run", "--pack", str(run), "--out", str(archive)]) == 0
    assert "left out model/: model weights" in capsys.readouterr().out
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert f"{run.name}/index.html" in names and f"{run.name}/PACKED.txt" in names
    assert all(f"{run.name}/{nb}/report.html" in names and f"{run.name}/{nb}/{nb}.ipynb" in names for nb in NOTEBOOKS)
    assert not [n for n in names if "/checkpoints/" in n or n.startswith(f"{run.name}/model/")]
    unpacked = tmp_path / "unpacked" / run.name
    assert len(monitor(unpacked).frame)  # the shared copy monitors on its own MLflow data
