"""Evaluation: sample and score a model on the eval split (baseline and tuned alike), summarize the baseline
with the RFT/SFT recommendation, and compare base against tuned with paired statistics.

`import nbkit.evaluate` stays cheap: names load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "sample_and_score": "nbkit.evaluate.sampling",
    "write_samples": "nbkit.evaluate.sampling",
    "prompt_ids": "nbkit.evaluate.sampling",
    "summarize": "nbkit.evaluate.baseline",
    "recommend": "nbkit.evaluate.baseline",
    "run_baseline": "nbkit.evaluate.baseline",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nbkit.evaluate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
