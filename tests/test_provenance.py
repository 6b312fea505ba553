"""Provenance of report figures: hashes of files and model folders (cached), versions, math mode, threads."""

from __future__ import annotations

import hashlib
import os

import pytest

from nbkit import params, provenance


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NBKIT_CACHE", str(tmp_path / "cache"))


def test_file_hash_is_sha256_and_follows_changes(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"id": 1}\n')
    assert provenance.file_sha256(path) == hashlib.sha256(b'{"id": 1}\n').hexdigest()
    path.write_text('{"id": 2}\n')
    os.utime(path, ns=(1, 1))  # a new size or time: the cached hash is not reused
    assert provenance.file_sha256(path) == hashlib.sha256(b'{"id": 2}\n').hexdigest()


def test_folder_hash_covers_the_model_not_nbkits_notes(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    first = provenance.folder_sha256(model)
    (model / ".source").write_text("/cache/somewhere")
    (model / "nbkit_tuned.json").write_text('{"job_id": "a"}')
    assert provenance.folder_sha256(model) == first
    (model / "model.safetensors").write_bytes(b"other weights")
    assert provenance.folder_sha256(model) != first


def test_collect_names_seed_threads_versions_math_models_and_data(runs_root):
    run = runs_root / "p"
    (run / "data").mkdir(parents=True)
    (run / "data" / "train.jsonl").write_text("{}\n")
    (run / "model").mkdir()
    (run / "model" / "config.json").write_text("{}")
    p = params.validate("03", {"run_dir": str(run), "seed": 7, "threads": 1})
    prov = provenance.collect(p)
    assert prov["seed"] == 7 and prov["torch_threads"] == "1 (threads parameter)"
    assert set(prov["versions"]) == {"torch", "transformers", "trl", "peft"}
    assert prov["math"]["torch_cpu_capability"] != "torch not loaded"  # 03 runs torch: it was loaded to ask
    assert prov["models"]["base"]["sha256"] == provenance.folder_sha256(run / "model")
    assert set(prov["data"]) == {"train"}
    text = "\n".join(provenance.lines(prov))
    assert "seed 7; torch threads 1" in text and "train train.jsonl sha256 " in text and "torch 2.13.0" in text
    launch = params.validate("04", {"run_dir": str(run), "local": {"threads": 3}})
    assert provenance.torch_threads(launch) == "3 (training worker, local.threads)"
    assert provenance.torch_threads(params.validate("01", {"run_dir": str(run)})) == "no model runs in this notebook"
