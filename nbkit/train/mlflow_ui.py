"""`nbkit mlflow RUN` (`make mlflow RUN=demo`): the MLflow UI on a run folder's own store, opened on its
training runs.

Why a command rather than `mlflow ui` alone: the store keeps its artifact locations relative to the run
folder (a copied run folder shows its own artifacts), which MLflow resolves from the folder it runs in, and
MLflow 3's UI opens on its GenAI view (traces, pop-ups) unless the experiment says it holds training runs.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from nbkit.errors import UserError
from nbkit.layout import RunLayout
from nbkit.train.local import LocalPaths, portable_mlflow_store

KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"  # MLflow's "machine learning" view
# The UI picks its workflow (GenAI or model training) from this query parameter before its saved choice
# (mlflow 3.17.2 server/js: the workflow-type context reads `workflowType` from the route's search params).
TRAINING_VIEW = "workflowType=machine_learning"


def store_of(run: str | os.PathLike) -> tuple[RunLayout, Path]:
    """The run folder and its MLflow store (training/mlflow.db), with an error saying how to get one."""
    layout = RunLayout(run)
    db = LocalPaths(layout.training).mlflow_db
    if not db.is_file():
        raise UserError(f"{db} does not exist: the run has no local training job yet; run notebook 04 with "
                        "backend: local and dry_run: false for this run folder first")
    return layout, db


def prepare_store(run: str | os.PathLike) -> tuple[Path, str | None]:
    """Make the store portable and tag its experiments as training experiments; returns (run folder, the id
    of the experiment the run's job logged to, else the newest one with runs)."""
    layout, db = store_of(run)
    portable_mlflow_store(db, layout.root)
    with contextlib.closing(sqlite3.connect(db)) as con, con:
        ids = [row[0] for row in con.execute(
            "SELECT experiment_id FROM runs GROUP BY experiment_id ORDER BY MAX(start_time) DESC")]
        for experiment_id in ids:
            con.execute("DELETE FROM experiment_tags WHERE experiment_id = ? AND key = ?", (experiment_id, KIND_TAG))
            con.execute("INSERT INTO experiment_tags (key, value, experiment_id) VALUES (?, ?, ?)",
                        (KIND_TAG, KIND, experiment_id))
        job_run = _job_run_id(layout)
        row = con.execute("SELECT experiment_id FROM runs WHERE run_uuid = ?", (job_run,)).fetchone() \
            if job_run else None
    return layout.root, str(row[0]) if row else (str(ids[0]) if ids else None)


def _job_run_id(layout: RunLayout) -> str | None:
    """The MLflow run id training/job.json records for the run's job, if any."""
    from nbkit.train.job import read_job

    try:
        return (read_job(layout.root).get("handle") or {}).get("mlflow_run_id")
    except UserError:
        return None


def ui_command(host: str, port: int) -> list[str]:
    """`mlflow ui` on the store, from the run folder (relative artifact locations resolve there); one
    worker process: one reader browsing one run folder (MLflow's default of 4 only slows the start)."""
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", "sqlite:///training/mlflow.db",
            "--host", host, "--port", str(port), "--workers", "1"]


def serve(run: str | os.PathLike, port: int = 5000, host: str = "127.0.0.1") -> int:
    """Run the MLflow UI in the foreground (Ctrl-C stops it); prints the address of the training runs."""
    root, experiment = prepare_store(run)
    page = f"#/experiments/{experiment}/runs?{TRAINING_VIEW}" if experiment else f"#/experiments?{TRAINING_VIEW}"
    print(f"MLflow UI for run folder {root}: open http://{host}:{port}/{page}", flush=True)
    try:
        return subprocess.run(ui_command(host, port), cwd=root, check=False).returncode
    except KeyboardInterrupt:
        return 0
