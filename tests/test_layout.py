"""Portable records: a run folder stores its own paths relative to itself and reads them back anywhere."""

from __future__ import annotations

from nbkit.layout import RunLayout, portable, resolve


def test_paths_inside_the_run_become_relative_and_others_stay(tmp_path):
    run = tmp_path / "runs" / "demo"
    record = {"train": str(run / "data" / "train.jsonl"), "uri": f"sqlite:///{run}/training/mlflow.db",
              "artifacts": (run / "training" / "mlartifacts").as_uri(), "self": str(run),
              "elsewhere": str(tmp_path / "runs" / "demo2" / "x"), "s3": "s3://bucket/key", "n": 3,
              "note": f"mlflow run r at sqlite:///{run}/training/mlflow.db", "list": [str(run / "model")]}
    stored = portable(record, run)
    assert stored == {"train": "data/train.jsonl", "uri": "sqlite:///training/mlflow.db",
                      "artifacts": "training/mlartifacts", "self": ".", "elsewhere": record["elsewhere"],
                      "s3": "s3://bucket/key", "n": 3, "note": "mlflow run r at sqlite:///training/mlflow.db",
                      "list": ["model"]}
    moved = tmp_path / "shared" / "demo"
    assert resolve(stored["train"], moved) == str(moved / "data" / "train.jsonl")
    assert resolve(stored["uri"], moved) == f"sqlite:///{moved}/training/mlflow.db"
    assert resolve(stored["elsewhere"], moved) == record["elsewhere"] and resolve("s3://b/k", moved) == "s3://b/k"
    assert resolve("", moved) == "" and resolve("sqlite:////abs/x.db", moved) == "sqlite:////abs/x.db"


def test_a_layout_names_files_relative_to_its_run(tmp_path):
    layout = RunLayout(tmp_path / "run")
    assert layout.relative(layout.job_record) == "training/job.json"
    assert layout.resolve("training/job.json") == str(layout.job_record)
