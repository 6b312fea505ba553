"""Evaluation: sample and score a model on the eval split (baseline and tuned alike), summarize the baseline
with the RFT/SFT recommendation, and compare base against tuned with paired statistics.

`import nbkit.evaluate` stays cheap: names load on first use.
"""

from __future__ import annotations

from nbkit._lazy import lazy_exports

_EXPORTS = {
    "sample_and_score": "sampling",
    "write_samples": "sampling",
    "prompt_ids": "sampling",
    "summarize": "baseline",
    "recommend": "baseline",
    "BaselineResult": "baseline",
    "TunedResult": "tuned",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
