"""MLflow reading against a synthetic run logged to a temporary SQLite store (one store per module: creating
it runs MLflow's migrations, seconds), plus the run-folder paths that use it: job.json, the CLI, notebook 05."""

from __future__ import annotations

import json
import math
import sqlite3
import time

import numpy as np
import pandas as pd
import pytest

from nbkit.errors import UserError
from nbkit.monitor import synthetic
from nbkit.monitor.mlflow_reader import log_frame, read_mlflow
from nbkit.monitor.sources import MlflowRun, load_metrics, resolve

START_MS = 1_750_000_000_000


@pytest.fixture(scope="module", autouse=True)
def snapshot_cache(tmp_path_factory):
    """Snapshots of finished runs go to nbkit's cache: a temporary one here."""
    import os

    before = os.environ.get("NBKIT_CACHE")
    os.environ["NBKIT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield os.environ["NBKIT_CACHE"]
    if before is None:
        os.environ.pop("NBKIT_CACHE")
    else:
        os.environ["NBKIT_CACHE"] = before


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with two runs: the local backend's normalized keys (an overfitting run) and a TRL-only run."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    frame = synthetic.history(120, "overfitting", seed=3, eval_every=10, wide=True)
    run_id = log_frame(frame, uri, run_name="normalized", start_time_ms=START_MS, progress=False)
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("rft-workbench").experiment_id
    trl = client.create_run(exp, start_time=START_MS, run_name="trl-only").info.run_id
    metrics = []
    for step in range(5):
        ts = START_MS + 1000 * (step + 1)
        metrics += [
            Metric("reward", 0.1 * step, ts, step), Metric("reward_std", 0.2, ts, step),
            Metric("frac_reward_zero_std", 0.5, ts, step), Metric("completions/mean_length", 10.0 + step, ts, step),
            Metric("completions/clipped_ratio", 0.25, ts, step), Metric("learning_rate", 1e-3, ts, step),
            Metric("profiling/Time taken: GRPOTrainer._prepare_inputs", 0.01, ts, step),
        ]
    metrics += [Metric("kl", float("nan"), START_MS + 2000, 1), Metric("kl", 0.5, START_MS + 3000, 2),
                Metric("grad_norm", float("inf"), START_MS + 4000, 3),
                Metric("entropy", 1.0, START_MS + 5000, 4), Metric("entropy", 0.7, START_MS + 9000, 4)]
    client.log_batch(trl, metrics=metrics)
    return {"uri": uri, "db": root / "mlflow.db", "run_id": run_id, "trl": trl, "frame": frame}


def test_sql_and_client_paths_read_the_same_frame(store):
    sql = read_mlflow(store["uri"], store["run_id"], use_sql=True)
    client = read_mlflow(store["uri"], store["run_id"], use_sql=False)
    pd.testing.assert_frame_equal(sql, client)
    trl_sql = read_mlflow(store["uri"], store["trl"], use_sql=True)
    pd.testing.assert_frame_equal(trl_sql, read_mlflow(store["uri"], store["trl"], use_sql=False))


def test_values_steps_and_time_round_trip(store):
    frame = read_mlflow(store["uri"], store["run_id"])
    src = store["frame"]
    assert frame["step"].tolist() == src["step"].tolist()
    np.testing.assert_allclose(frame["reward_mean"], src["reward_mean"])
    np.testing.assert_allclose(frame["kl"], src["kl"])
    evals = src["val_reward"].notna()
    np.testing.assert_allclose(frame.loc[evals.to_numpy(), "val_reward"], src.loc[evals, "val_reward"])
    assert frame.loc[~evals.to_numpy(), "val_reward"].isna().all()
    # time: seconds since the run's start, at millisecond resolution
    np.testing.assert_allclose(frame["time"], np.floor(src["time"] * 1000) / 1000, atol=1e-3)
    assert frame.attrs["kind"] == "mlflow"


def test_trl_keys_are_normalized_and_nan_inf_duplicates_handled(store):
    frame = read_mlflow(store["uri"], store["trl"])
    assert frame["reward_mean"].tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert frame["zero_var_group_share"].eq(0.5).all()
    assert frame["completion_len_mean"].tolist() == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert frame["clipped_share"].eq(0.25).all() and frame["lr"].eq(1e-3).all()
    assert not any(c.startswith("profiling/") for c in frame.columns)
    assert math.isnan(frame.loc[1, "kl"]) and frame.loc[2, "kl"] == 0.5
    assert frame.loc[3, "grad_norm"] == math.inf  # MLflow stores inf as max float; read back as inf
    assert frame.loc[4, "entropy"] == 0.7  # the later of two values at one step
    assert frame["time"].tolist() == pytest.approx([1.0, 2.0, 3.0, 4.0, 5.0])


def test_unknown_run_and_missing_store_are_explained(store, tmp_path):
    with pytest.raises(UserError, match="no run 'nope'.*normalized"):
        read_mlflow(store["uri"], "nope")
    with pytest.raises(UserError, match="MLflow store not found"):
        read_mlflow(f"sqlite:///{tmp_path / 'missing.db'}", "x")
    with pytest.raises(UserError, match="holds 2 runs"):
        resolve(store["db"])


def _local_run(root, store, *, in_job_json=True, checkpoints=()):
    """A run folder as the local backend leaves it: job.json written at submit, the worker's status file
    (which carries the MLflow run id once the worker created the run), checkpoints."""
    training = root / "training"
    (training / "job").mkdir(parents=True)
    for name in checkpoints:
        (training / "checkpoints" / name).mkdir(parents=True)
    handle = {"backend": "local", "job_id": "rft-job-1", "training_dir": "training", "tracking_uri": store["uri"],
              "mlflow_run_id": store["run_id"] if in_job_json else None}
    record = {"backend": "local", "job_id": "rft-job-1", "dry_run": False, "handle": handle,
              "spec": {"hyper": {"max_new_tokens": 8, "max_steps": 120}, "local": {"eval_every": 10}}}
    (training / "job.json").write_text(json.dumps(record))
    from nbkit.train.local import LocalJobConfig
    from nbkit.train.spec import JobSpec

    LocalJobConfig(job_id="rft-job-1", run_dir=str(root), training_dir=str(training), spec=JobSpec.local_preset(),
                   tracking_uri=store["uri"], submitted="2026-12-02T00:00:00+00:00").write(training / "job" / "config.json")
    (training / "job" / "status.json").write_text(json.dumps(
        {"status": "completed", "mlflow_run_id": store["run_id"], "step": 120, "max_steps": 120}))
    return root


def test_local_job_resolves_to_the_mlflow_run_its_worker_created(store, tmp_path):
    run = _local_run(tmp_path / "run", store, in_job_json=False,
                     checkpoints=("checkpoint-60", "checkpoint-119", "final"))
    source, context = resolve(run)
    assert source == MlflowRun(store["uri"], store["run_id"])
    assert context.status == "completed" and context.max_new_tokens == 8 and context.total_steps == 120
    assert context.checkpoints == {60: str(run / "training/checkpoints/checkpoint-60"),
                                   119: str(run / "training/checkpoints/checkpoint-119")}
    assert context.final_checkpoint == str(run / "training/checkpoints/final")
    assert len(load_metrics(run)) == 120


def test_local_job_without_metrics_yet_says_to_wait(store, tmp_path):
    run = _local_run(tmp_path / "run", store, in_job_json=False)
    (run / "training" / "job" / "status.json").write_text(json.dumps({"status": "pending"}))
    with pytest.raises(UserError, match="has no MLflow run yet"):
        resolve(run)


def test_cli_prints_health_and_recommendation(store, tmp_path, capsys):
    from nbkit.cli import main

    run = _local_run(tmp_path / "run", store, checkpoints=("checkpoint-60", "checkpoint-100", "final"))
    assert main(["monitor", str(run), "--json", "--write", str(tmp_path / "out")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["recommendation"]["action"] == "completed"  # the job ended: nothing to continue or stop
    assert "Keep the checkpoint of step 60" in data["recommendation"]["reason"]
    assert data["recommendation"]["reasons"][0].startswith("For the next run: validation is degrading")
    assert "overfitting" in [f["name"] for f in data["findings"]]
    rec = data["recommendation"]
    assert rec["best_metric"] == "val_reward"
    assert 50 <= rec["best_step"] <= 70  # validation peaks mid-run in this pattern
    assert rec["checkpoint_step"] == 60 and rec["checkpoint"].endswith("checkpoint-60")
    assert data["job"]["final_checkpoint"].endswith("final") and data["job"]["status"] == "completed"
    written = json.loads((tmp_path / "out" / "health.json").read_text())
    assert written["metrics"]["rows"] == 120
    assert written["recommendation"]["checkpoint"] == "training/checkpoints/checkpoint-60"  # relative to the run
    assert pd.read_parquet(tmp_path / "out" / "metrics.parquet")["step"].tolist() == list(range(120))
    assert main(["monitor", str(run), "--threshold", "overfit_val_drop=0.9"]) == 0
    text = capsys.readouterr().out
    assert "RECOMMENDATION:" in text and "overfitting       ok" in text
    assert main(["monitor", str(run), "--threshold", "nonsense=1"]) == 2
    assert "unknown threshold" in capsys.readouterr().err


def test_log_frame_is_batched(store):
    """log_batch keeps to MLflow's 1000-metric limit; all finite values arrive (counted in the store)."""
    con = sqlite3.connect(store["db"])
    try:
        (count,) = con.execute("SELECT COUNT(*) FROM metrics WHERE run_uuid = ?", (store["run_id"],)).fetchone()
    finally:
        con.close()
    values = store["frame"].drop(columns=["step", "time"])
    assert count == int(values.notna().to_numpy().sum())


@pytest.mark.slow
def test_notebook_05_runs_on_a_local_run_folder(store, tmp_path, runs_root):
    """Notebook 05 end to end (papermill): writes metrics.parquet, health.json and a headline."""
    import papermill

    from nbkit import paths

    run = _local_run(tmp_path / "nbrun", store, checkpoints=("checkpoint-60", "checkpoint-100", "final"))
    started = time.time()
    papermill.execute_notebook(
        str(paths.NOTEBOOKS / "05_monitor_training.ipynb"), str(tmp_path / "out.ipynb"),
        parameters={"run_dir": str(run)}, kernel_name="python3", cwd=str(tmp_path), progress_bar=False,
    )
    assert time.time() - started < 120
    health = json.loads((run / "monitor" / "health.json").read_text())
    assert health["recommendation"]["action"] == "completed"
    assert len(pd.read_parquet(run / "monitor" / "metrics.parquet")) == 120
    headline = json.loads((run / "05_monitor_training" / "headline.json").read_text())["headline"]
    assert headline.startswith("COMPLETED: The job completed 119 of 120 steps. Keep the checkpoint of step 60")
    assert (run / "monitor" / "curves.png").stat().st_size > 10_000


def test_follow_job_refreshes_in_place_until_the_job_ends(store, tmp_path, monkeypatch):
    """The notebook's follow mode: each refresh re-reads, rewrites the files and updates the same slots."""
    from nbkit import params
    from nbkit.monitor import notebook

    run = _local_run(tmp_path / "run", store)
    p = params.validate("05_monitor_training", {"run_dir": str(run), "follow": True, "refresh_s": 0.01})
    states = iter([True, True, True, False])
    monkeypatch.setattr(notebook, "job_running", lambda context: next(states))

    class View:
        def __init__(self):
            self.updates = []

        def update(self, name, obj):
            self.updates.append(name)

    view = View()
    first = notebook.run_once(p, view)
    assert view.updates == ["recommendation", "findings", "figure", "checks"]
    last = notebook.follow_job(p, view, first)
    assert view.updates.count("figure") == 4  # the first pass + three refreshes, all into the same slot
    assert last.recommendation.action == "completed"
    assert (run / "monitor" / "curves.png").exists() and (run / "monitor" / "health.json").exists()
    assert notebook.headline(last).startswith("COMPLETED: The job completed")


def test_a_finished_run_is_read_again_from_its_snapshot_until_the_store_changes(store, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from nbkit.monitor import mlflow_reader

    first = read_mlflow(store["uri"], store["run_id"], use_sql=True)
    any_stamp = mlflow_reader.snapshot_path(store["db"], store["run_id"], None, "x")
    pattern = any_stamp.name.rsplit("-", 1)[0] + "-*.parquet"
    snapshots = list(any_stamp.parent.glob(pattern))
    assert len(snapshots) == 1, "the finished run was snapshotted"

    def no_store(*args):
        raise AssertionError("the store is not read while its snapshot is current")

    with monkeypatch.context() as patch:
        patch.setattr(mlflow_reader, "_history_sql", no_store)
        pd.testing.assert_frame_equal(read_mlflow(store["uri"], store["run_id"], use_sql=True), first)
    client = MlflowClient(store["uri"])
    client.log_batch(store["run_id"], metrics=[Metric("reward_mean", 0.123, START_MS + 10**7, 500)])
    changed = read_mlflow(store["uri"], store["run_id"], use_sql=True)
    assert changed["step"].iloc[-1] == 500 and changed["reward_mean"].iloc[-1] == 0.123
    pd.testing.assert_frame_equal(changed, read_mlflow(store["uri"], store["run_id"], use_sql=False))
    assert len(list(any_stamp.parent.glob(pattern))) == 1, "the stale snapshot was replaced"


def test_a_running_run_is_never_snapshotted_and_a_damaged_snapshot_is_ignored(store, monkeypatch):
    from nbkit.monitor import mlflow_reader

    written = []
    monkeypatch.setattr(mlflow_reader, "_write_snapshot", lambda wide, path: written.append(path))
    read_mlflow(store["uri"], store["trl"], use_sql=True)  # never terminated: RUNNING
    assert written == []
    path = mlflow_reader.snapshot_path(store["db"], store["run_id"], None, mlflow_reader._store_stamp(store["db"]))
    path.write_bytes(b"not parquet")
    monkeypatch.undo()
    frame = read_mlflow(store["uri"], store["run_id"], use_sql=True)
    pd.testing.assert_frame_equal(frame, read_mlflow(store["uri"], store["run_id"], use_sql=False))
    assert pd.read_parquet(path).shape[0] == len(frame), "rewritten from the store"
