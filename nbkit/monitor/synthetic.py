"""Synthetic training histories: a healthy GRPO-like run, and the same run with one known problem.

Why in the package: the rule tests, the benchmark (bench/monitor.py) and anyone learning what a rule looks
for need curves with a known diagnosis. Nothing here is used to analyse a real run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nbkit.errors import UserError
from nbkit.monitor.frame import normalize

PATTERNS = (
    "plateau", "reward_decline", "overfitting", "reward_hacking", "instability", "reward_errors",
    "zero_variance", "entropy_collapse", "length_limit", "kl_blowup", "policy_stalled",
)


def _ar1(rng: np.random.Generator, n: int, sd: float, phi: float = 0.3) -> np.ndarray:
    """Autocorrelated noise, like consecutive steps of one policy."""
    eps = rng.normal(0, sd * np.sqrt(1 - phi**2), n)
    out = np.empty(n)
    out[0] = rng.normal(0, sd)
    for i in range(1, n):
        out[i] = phi * out[i - 1] + eps[i]
    return out


def history(n: int = 300, pattern: str | None = None, *, seed: int = 0, eval_every: int = 20,
            wide: bool = False) -> pd.DataFrame:
    """A normalized frame of `n` steps: healthy, or showing `pattern` (one of PATTERNS) in its later part.

    `wide=True` returns the raw wide table (normalized column names, no NaN-filled columns) instead, which
    is what a reader would hand to `normalize` (used to write synthetic MLflow runs and CSVs).
    """
    if pattern is not None and pattern not in PATTERNS:
        raise UserError(f"unknown pattern {pattern!r}; patterns: {', '.join(PATTERNS)}")
    rng = np.random.default_rng(seed)
    step = np.arange(n)
    t = step / max(n - 1, 1)
    level = 0.3 + 0.4 * (1 - np.exp(-t * 2.0))
    noise_sd = np.full(n, 0.015)
    val = None
    entropy = 1.0 - 0.4 * t
    kl = 0.05 * (1 - np.exp(-t * 3))
    errors = np.full(n, 0.005)
    zero_var = np.full(n, 0.2)
    clipped = np.full(n, 0.02)
    updates = step + 1.0
    late = t > 0.6
    if pattern == "plateau":
        level = np.where(t < 0.4, 0.3 + 0.3 * t / 0.4, 0.6)
    elif pattern == "reward_decline":
        level = np.where(t < 0.65, level, level[int(0.65 * n)] - 0.5 * (t - 0.65))
    elif pattern == "overfitting":
        val = np.where(t < 0.5, 0.3 + 0.6 * t, 0.6 - 0.5 * (t - 0.5))
    elif pattern == "reward_hacking":
        val = 0.5 - 0.15 * t
    elif pattern == "instability":
        noise_sd = 0.01 + 0.08 * t**2
    elif pattern == "reward_errors":
        errors = np.where(late, 0.15, 0.01)
    elif pattern == "zero_variance":
        zero_var = np.full(n, 0.8)
    elif pattern == "entropy_collapse":
        entropy = 1.0 * np.exp(-t * 6)
    elif pattern == "length_limit":
        clipped = np.where(late, 0.4, 0.05)
    elif pattern == "kl_blowup":
        kl = 0.02 * np.exp(t * 6)
    elif pattern == "policy_stalled":
        updates = np.minimum(step + 1.0, int(0.6 * n))
    if val is None:  # validation follows the training level, a little lower
        val = level - 0.03
    reward = np.clip(level + _ar1(rng, n, 1.0) * noise_sd, 0, 1)
    spread = 0.3
    data = {
        "step": step,
        "time": step * 2.0 + rng.uniform(0, 0.2, n).cumsum(),
        "reward_mean": reward,
        "reward_std": np.full(n, spread) + rng.normal(0, 0.01, n),
        "reward_p10": np.clip(reward - 1.28 * spread, 0, 1),
        "reward_p50": reward,
        "reward_p90": np.clip(reward + 1.28 * spread, 0, 1),
        "share_high": np.clip(reward - 0.2, 0, 1),
        "share_low": np.clip(0.8 - reward, 0, 1),
        "reward_error_rate": np.clip(errors + rng.normal(0, 0.002, n), 0, 1),
        "rollout_completion_rate": np.clip(1 - errors, 0, 1),
        "zero_var_group_share": np.clip(zero_var + rng.normal(0, 0.02, n), 0, 1),
        "entropy": np.clip(entropy + rng.normal(0, 0.01, n), 1e-4, None),
        "kl": np.clip(kl + np.abs(rng.normal(0, 0.002, n)), 0, None),
        "completion_len_mean": 40 + 10 * t + rng.normal(0, 1, n),
        "clipped_share": np.clip(clipped + rng.normal(0, 0.005, n), 0, 1),
        "lr": np.full(n, 1e-3),
        "grad_norm": np.abs(1 + rng.normal(0, 0.1, n)),
        "policy_updates": updates,
        "loss": rng.normal(0, 0.01, n),
    }
    data["share_medium"] = np.clip(1 - data["share_high"] - data["share_low"], 0, 1)
    frame = pd.DataFrame(data)
    evals = step % eval_every == 0 if eval_every else np.zeros(n, bool)
    frame["val_reward"] = np.where(evals | (step == n - 1), np.clip(val + rng.normal(0, 0.01, n), 0, 1), np.nan)
    if wide:
        return frame
    out = normalize(frame, source=f"synthetic {pattern or 'healthy'} run ({n} steps, seed {seed})")
    out.attrs["kind"] = "synthetic"
    return out
