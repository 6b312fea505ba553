"""Reward functions: the Lambda contract, loading, the harness, built-in graders, probes and Lambda packaging.

One interface everywhere: a reward is `lambda_handler(event, context)` taking a list of samples and returning
one result per sample. Names are imported on first use so `import nbkit.rewards` stays cheap (the graders
module, which also runs inside Lambda, must not pull the rest of nbkit).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Reward": "nbkit.rewards.loader",
    "load_reward": "nbkit.rewards.loader",
    "make_sample": "nbkit.rewards.contract",
    "STATUSES": "nbkit.rewards.contract",
    "run_harness": "nbkit.rewards.harness",
    "HarnessReport": "nbkit.rewards.harness",
    "SampleResult": "nbkit.rewards.harness",
    "run_probes": "nbkit.rewards.probes",
    "ProbeReport": "nbkit.rewards.probes",
    "package_reward": "nbkit.rewards.lambda_deploy",
    "deploy_reward": "nbkit.rewards.lambda_deploy",
    "remote_reward": "nbkit.rewards.lambda_deploy",
    "prototype_reward": "nbkit.rewards.prototype",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nbkit.rewards' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
