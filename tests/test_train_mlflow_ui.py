"""`nbkit mlflow RUN`: the run's own MLflow store, portable, opened on its training runs."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3

import pytest

from nbkit.errors import UserError
from nbkit.train import mlflow_ui
from nbkit.train.local import portable_mlflow_store


@pytest.fixture
def run_with_store(tmp_path):
    """A run folder whose store was written the way MLflow writes it: absolute file:// locations."""
    from mlflow.tracking import MlflowClient

    run = tmp_path / "run"
    db = run / "training" / "mlflow.db"
    db.parent.mkdir(parents=True)
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.create_experiment("rft-workbench", artifact_location=(run / "training" / "mlartifacts").as_uri())
    run_id = client.create_run(exp).info.run_id
    (run / "training" / "job.json").write_text(json.dumps({"backend": "local", "handle": {"mlflow_run_id": run_id}}))
    return run, db, exp, run_id


def _rows(db, sql):
    with contextlib.closing(sqlite3.connect(db)) as con:
        return con.execute(sql).fetchall()


def test_the_store_is_made_portable_and_opens_on_the_training_runs(run_with_store, tmp_path):
    run, db, exp, run_id = run_with_store
    root, experiment = mlflow_ui.prepare_store(run)
    assert root == run and experiment == exp
    locations = dict(_rows(db, "SELECT name, artifact_location FROM experiments"))
    assert locations["rft-workbench"] == "training/mlartifacts"
    assert _rows(db, "SELECT artifact_uri FROM runs") == [(f"training/mlartifacts/{run_id}/artifacts",)]
    assert (mlflow_ui.KIND_TAG, mlflow_ui.KIND) in _rows(db, "SELECT key, value FROM experiment_tags")
    assert portable_mlflow_store(db, run) == 0  # already portable: nothing to change
    command = mlflow_ui.ui_command("127.0.0.1", 5001)
    assert command[3:] == ["ui", "--backend-store-uri", "sqlite:///training/mlflow.db", "--host", "127.0.0.1",
                           "--port", "5001", "--workers", "1"]


def test_a_copied_store_reads_its_own_artifacts(run_with_store, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    run, db, _, run_id = run_with_store
    mlflow_ui.prepare_store(run)
    copy = tmp_path / "elsewhere" / "run"
    shutil.copytree(run, copy)
    monkeypatch.chdir(copy)  # where `nbkit mlflow` runs the UI
    client = MlflowClient(f"sqlite:///{copy / 'training' / 'mlflow.db'}")
    client.log_dict(run_id, {"from": "the copy"}, "note.json")
    assert (copy / "training" / "mlartifacts" / run_id / "artifacts" / "note.json").exists()
    assert not (run / "training" / "mlartifacts").exists()  # the original is untouched


def test_a_run_without_a_store_says_how_to_get_one(tmp_path, capsys):
    from nbkit.cli import main

    with pytest.raises(UserError, match="run notebook 04"):
        mlflow_ui.prepare_store(tmp_path / "empty")
    assert main(["mlflow", str(tmp_path / "empty")]) == 2 and "mlflow.db does not exist" in capsys.readouterr().err


def test_serve_runs_the_ui_from_the_run_folder_and_prints_the_training_view(run_with_store, monkeypatch, capsys):
    import subprocess

    run, _, exp, _ = run_with_store
    calls = []
    monkeypatch.setattr(mlflow_ui.subprocess, "run",
                        lambda cmd, cwd, check: calls.append((cmd, cwd)) or subprocess.CompletedProcess(cmd, 0))
    assert mlflow_ui.serve(run, port=5002) == 0
    assert calls == [(mlflow_ui.ui_command("127.0.0.1", 5002), run)]  # relative artifact paths resolve there
    assert f"http://127.0.0.1:5002/#/experiments/{exp}/runs?workflowType=machine_learning" in capsys.readouterr().out
