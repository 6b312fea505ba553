"""The smoke pipeline's settings, shared by the session's smoke run (conftest.py) and the tests that read it.

A plain module, not conftest.py: tests/conformance has its own conftest, so `from conftest import` is
ambiguous in a whole-suite run.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

from nbkit import params, paths

SMOKE = paths.PARAMS / "smoke.yaml"
NOTEBOOKS = list(params.NOTEBOOKS)


def threads(n: int) -> list[str]:
    return [f"03_evaluate_baseline.threads={n}", f"06_evaluate_tuned.threads={n}",
            f"04_launch_training.local.threads={n}"]


def busy_core() -> subprocess.Popen:
    """A process spinning on CPU 0 (where the machine has more than one), as a neighbour's job would."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or one CPU: it still competes for the core
        os.sched_setaffinity(proc.pid, {0})
    return proc
