"""Makefile targets that have no other test: what `make lab`, `make mlflow` and `make test-browser` run."""

from __future__ import annotations

import os
import subprocess

import pytest

from nbkit import paths


def _dry_run(target: str, *args: str) -> str:
    """The commands `make` would run (-n), the environment taken as installed (-o the stamp)."""
    result = subprocess.run(["make", "-n", "-o", ".venv/.installed", target, *args], cwd=paths.ROOT,
                            capture_output=True, text=True, check=True)
    return result.stdout


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="no user ids on this platform")
def test_make_lab_passes_allow_root_only_as_root():
    command = _dry_run("lab")
    assert "jupyter lab" in command and ("--allow-root" in command) == (os.geteuid() == 0)


def test_make_mlflow_serves_the_runs_own_store():
    assert ".venv/bin/nbkit mlflow runs/demo --port 5000" in _dry_run("mlflow")
    assert "nbkit mlflow runs/other" in _dry_run("mlflow", "RUN=other")


def test_make_test_browser_runs_the_browser_test():
    assert "-m browser tests/test_browser.py" in _dry_run("test-browser")
