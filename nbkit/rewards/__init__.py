"""Reward functions: the Lambda contract, loading, the harness, built-in graders, probes and Lambda packaging.

One interface everywhere: a reward is `lambda_handler(event, context)` taking a list of samples and returning
one result per sample. Names are imported on first use so `import nbkit.rewards` stays cheap (the graders
module, which also runs inside Lambda, must not pull the rest of nbkit).
"""

from __future__ import annotations

from nbkit._lazy import lazy_exports

_EXPORTS = {
    "Reward": "loader",
    "load_reward": "loader",
    "make_sample": "contract",
    "STATUSES": "contract",
    "run_harness": "harness",
    "HarnessReport": "harness",
    "SampleResult": "harness",
    "run_probes": "probes",
    "ProbeReport": "probes",
    "package_reward": "lambda_deploy",
    "deploy_reward": "lambda_deploy",
    "remote_reward": "loader",
    "prototype_reward": "prototype",
    "Prototype": "prototype",
    "run": "prototype",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
