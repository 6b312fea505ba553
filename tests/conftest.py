"""Shared test set-up: offline, quiet, and every run folder or cache in a temporary place."""

from __future__ import annotations

import os

import pytest

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
