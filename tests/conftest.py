"""Shared test set-up: offline, quiet, and every run folder or cache in a temporary place."""

from __future__ import annotations

import os

import pytest
from smoke_run import NOTEBOOKS, SMOKE, busy_core, threads  # tests/ is on sys.path (rootdir import mode)

from nbkit import runner
from nbkit.train import job

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    """Point run folders at a temporary directory so tests never touch runs/."""
    root = tmp_path / "runs"
    monkeypatch.setenv("NBKIT_RUNS", str(root))
    return root


# ----------------------------------------------------------------------- the offline AWS account (moto)


@pytest.fixture
def creds(monkeypatch):
    """moto's test credentials (tests/aws_calls.py): no test can reach a real account."""
    import aws_calls

    aws_calls.fake_credentials(monkeypatch)


@pytest.fixture
def train_file(tmp_path):
    """150 sample math records in the Nova RFT format, as the AWS specs' training data."""
    import aws_calls

    return aws_calls.write_train(tmp_path / "train.jsonl")


# ------------------------------------------------------------------------------ the smoke pipeline run


@pytest.fixture(scope="session")
def first_run(tmp_path_factory):
    """The smoke pipeline on a busy machine with a 1 s wait cap, continued from 04 if it stopped there.

    One run for the session: the smoke test checks it, the report and browser tests read its run folder.
    The run and cache folders are set in the environment only while the pipeline runs.
    """
    root = tmp_path_factory.mktemp("smoke")
    run = root / "run"
    mp = pytest.MonkeyPatch()
    mp.setenv("NBKIT_RUNS", str(root))
    mp.setenv("NBKIT_CACHE", str(root / "cache"))
    resumed = None
    try:
        busy = busy_core()
        try:
            first = runner.run_pipeline(SMOKE, run, overrides=threads(1) + ["04_launch_training.timeout_s=1"],
                                        live=False)
        finally:
            busy.kill()
            busy.wait()
        statuses = [j.status for j in first]
        if statuses != ["ok"] * len(NOTEBOOKS):
            assert statuses == ["ok"] * 3 + ["timeout"] + ["pending"] * (len(NOTEBOOKS) - 4), statuses
            job_id = job.read_job(run)["job_id"]
            resumed = runner.run_pipeline(SMOKE, run, start="04", overrides=threads(1), live=False)
            assert job.read_job(run)["job_id"] == job_id, "continuing from 04 must re-attach, not start a new job"
    finally:
        mp.undo()
    return run, first, resumed
