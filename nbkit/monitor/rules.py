"""Health rules: turn a metrics frame into the diagnoses of the documented monitoring guidance.

Each rule looks at one pattern (plateau, decline, overfitting, instability, reward-function errors, groups
with no learning signal, entropy collapse, completions at the length limit, KL blow-up, reward hacking,
stalled policy updates) and either returns a `Finding` (severity, the numbers and the step window it rests
on, a plain-language explanation, the documented remedy) or says why it is fine or could not be checked.
Trends are least-squares slopes with a confidence interval widened for the autocorrelation of training
curves (effective sample size from the lag-1 autocorrelation of the residuals), so a noisy flat curve reads
"inconclusive", not "plateau". Every threshold is a field of `Thresholds`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, ValidationError

from nbkit.errors import UserError
from nbkit.monitor.frame import available, validate_frame
from nbkit.validation import StrictModel, user_error

SEVERITIES = ("info", "warning", "critical")
Severity = Literal["info", "warning", "critical"]

# Documented remedies (reference nova-rft.md sections 2 and 7), shared by several rules.
REMEDY_POOR_TRAINING = (
    "verify the reward on known good and bad answers (notebook 02); check the baseline (near-zero reward: "
    "do SFT first); add data diversity; tune the learning rate and batch size; make sure the reward separates "
    "good from bad answers"
)
REMEDY_OVERFITTING = (
    "use an earlier checkpoint (the best by validation reward) and train fewer steps; add more and more "
    "diverse data; regularize with weight_decay or entropy_coeff (ent_coeff)"
)


class Thresholds(StrictModel):
    """Every threshold of the health rules, with defaults for rewards on a 0..1 scale."""

    window_frac: float = Field(0.3, gt=0, le=1, description="share of the latest points a trend rule looks at")
    min_points: int = Field(10, ge=3, description="fewest points a trend rule needs (else it is skipped)")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="confidence level of trend intervals")
    plateau_min_gain: float = Field(0.02, ge=0, description="reward gain over the window worth continuing for")
    decline_min_drop: float = Field(0.05, gt=0, description="reward drop over the window that counts as a decline")
    val_min_points: int = Field(3, ge=2, description="fewest validation points the validation rules need")
    overfit_val_drop: float = Field(0.05, gt=0, description="fall of validation reward below its best that counts")
    instability_ratio: float = Field(2.0, gt=1, description="late/early variance ratio of step-to-step changes")
    instability_p: float = Field(0.01, gt=0, lt=1, description="F-test p-value below which growth is real")
    max_error_rate: float = Field(0.05, ge=0, le=1, description="reward-function error rate that is a warning")
    critical_error_rate: float = Field(0.2, ge=0, le=1, description="reward-function error rate that is critical")
    max_zero_var_share: float = Field(0.5, ge=0, le=1, description="share of zero-variance groups that is too many")
    entropy_collapse_frac: float = Field(0.1, gt=0, lt=1, description="entropy below this share of its start")
    max_clipped_share: float = Field(0.2, ge=0, le=1, description="share of completions cut at the length limit")
    max_new_tokens: int | None = Field(None, ge=1, description="generation limit, to judge lengths without clipped_share")
    length_limit_frac: float = Field(0.95, gt=0, le=1, description="mean length at this share of the limit is at it")
    kl_max: float = Field(1.0, gt=0, description="KL (nats/token) that counts as blown up")
    kl_growth: float = Field(10.0, gt=1, description="KL growth factor within the window that counts as blowing up")
    kl_min: float = Field(0.05, ge=0, description="KL below which growth is not a concern")
    hacking_metric: str = Field("val_reward", description="independent metric that must not fall while reward rises")
    hacking_min_drop: float = Field(0.02, gt=0, description="fall of the independent metric that counts")


def thresholds(overrides: dict[str, Any] | Thresholds | None = None) -> Thresholds:
    """Thresholds from a dict of overrides, with an error that lists the valid names and what was wrong."""
    if isinstance(overrides, Thresholds):
        return overrides
    try:
        return Thresholds(**(overrides or {}))
    except ValidationError as exc:
        raise user_error(exc, "invalid health-rule thresholds", Thresholds, "threshold") from None


@dataclass
class Finding:
    """One diagnosis: what, how bad, the numbers and the steps it rests on, what it means, what to do."""

    name: str
    severity: Severity
    title: str
    evidence: dict[str, Any]
    window: tuple[int, int]
    explanation: str
    remedy: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["window"] = list(self.window)
        return data

    def line(self) -> str:
        """One line for logs and the CLI."""
        return f"[{self.severity}] {self.title} (steps {self.window[0]}-{self.window[1]})"


@dataclass
class Check:
    """The outcome of one rule: fired, ok (with why), or skipped (with what was missing)."""

    name: str
    status: Literal["fired", "ok", "skipped"]
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Skip(Exception):
    """A rule cannot judge this frame (a metric is not logged, too few points)."""


@dataclass
class Trend:
    """Least-squares slope of a metric over steps, with an autocorrelation-aware confidence interval."""

    slope: float
    lo: float
    hi: float
    n: int
    n_eff: float
    span: float  # steps between the first and last point

    @property
    def change(self) -> float:
        return self.slope * self.span

    @property
    def change_lo(self) -> float:
        return self.lo * self.span

    @property
    def change_hi(self) -> float:
        return self.hi * self.span


def trend(steps: np.ndarray, values: np.ndarray, confidence: float = 0.95) -> Trend:
    """OLS slope with a t interval on the effective sample size n(1-r)/(1+r), r = lag-1 residual autocorrelation.

    Why: consecutive training steps share a policy, so their rewards are correlated; the plain OLS interval
    would call a random walk a significant trend.
    """
    from scipy.special import stdtrit  # t quantile; scipy.special imports ~5x faster than scipy.stats

    x = np.asarray(steps, dtype="float64")
    y = np.asarray(values, dtype="float64")
    n = len(x)
    if n < 3:
        raise _Skip(f"{n} point(s); a trend needs at least 3")
    xc = x - x.mean()
    sxx = float(xc @ xc)
    if sxx == 0:
        raise _Skip("all points share one step")
    slope = float(xc @ (y - y.mean()) / sxx)
    resid = y - y.mean() - slope * xc
    r = 0.0
    denom = float(resid @ resid)
    if denom > 0 and n > 3:
        r = float(np.clip(resid[1:] @ resid[:-1] / denom, 0.0, 0.95))
    n_eff = max(3.0, n * (1 - r) / (1 + r))
    sigma2 = denom / max(n - 2, 1)
    se = math.sqrt(sigma2 / sxx * (n / n_eff))
    t = float(stdtrit(max(n_eff - 2, 1), 0.5 + confidence / 2))
    return Trend(slope, slope - t * se, slope + t * se, n, n_eff, float(x[-1] - x[0]))


def _window(frame: pd.DataFrame, column: str, th: Thresholds, *, rule: str) -> pd.DataFrame:
    """The latest `window_frac` of a metric's finite points (at least `min_points`)."""
    if column not in frame.columns or not frame[column].notna().any():
        raise _Skip(f"{column} is not logged by this source")
    points = available(frame, column)
    if len(points) < th.min_points:
        raise _Skip(f"{len(points)} point(s) of {column}; {rule} needs {th.min_points}")
    size = max(th.min_points, math.ceil(th.window_frac * len(points)))
    return points.iloc[-size:]


def _recent(frame: pd.DataFrame, column: str, th: Thresholds) -> pd.DataFrame:
    """The latest `window_frac` of a rate's finite points; rates need no minimum count (one bad step counts)."""
    points = available(frame, column)
    if points.empty:
        raise _Skip(f"{column} is not logged by this source")
    return points.iloc[-max(1, math.ceil(th.window_frac * len(points))):]


def _steps(points: pd.DataFrame) -> tuple[int, int]:
    return int(points["step"].iloc[0]), int(points["step"].iloc[-1])


def _r(value: float, digits: int = 4) -> float | None:
    """Round for reports (significant digits); None for NaN so JSON stays valid."""
    if value is None or not np.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def _ci(value: float, lo: float, hi: float, level: float) -> str:
    return f"{value:+.3g} ({level:.0%} CI {lo:+.3g} to {hi:+.3g})"


# ------------------------------------------------------------------------------------------------ rules


def rule_plateau(frame: pd.DataFrame, th: Thresholds) -> Finding | str:
    """The reward is not gaining what is worth training for: the gain's upper CI is below the minimum useful
    gain, or the gain is both not significant (CI covers 0) and smaller than that minimum."""
    win = _window(frame, "reward_mean", th, rule="plateau")
    tr = trend(win["step"].to_numpy(), win["reward_mean"].to_numpy(), th.confidence)
    declining = tr.hi < 0 and -tr.change >= th.decline_min_drop
    gain = _ci(tr.change, tr.change_lo, tr.change_hi, th.confidence)
    if declining:
        return f"reward is declining (see reward_decline), gain {gain}"
    confident = tr.change_hi < th.plateau_min_gain
    if not (confident or (tr.change_lo <= 0 and tr.change < th.plateau_min_gain)):
        return f"gain over steps {_steps(win)[0]}-{_steps(win)[1]}: {gain}; still improving"
    first, last = _steps(win)
    return Finding(
        name="plateau", severity="warning" if confident else "info",
        title="Reward has plateaued" if confident else "Reward may be plateauing",
        evidence={
            "reward_gain": _r(tr.change), "gain_ci_low": _r(tr.change_lo), "gain_ci_high": _r(tr.change_hi),
            "slope_per_100_steps": _r(tr.slope * 100), "window_mean_reward": _r(win["reward_mean"].mean()),
            "points": tr.n, "effective_points": _r(tr.n_eff, 3), "min_useful_gain": th.plateau_min_gain,
            "evidence_strength": "strong" if confident else "moderate (the interval still allows a useful gain)",
        },
        window=(first, last),
        explanation=(
            f"Over steps {first}-{last} the mean training reward changed by {gain}, averaging "
            f"{win['reward_mean'].mean():.3g}. "
            + (f"Even the top of the interval is below the gain of {th.plateau_min_gain:g} worth training for: "
               "more steps of this run are unlikely to help." if confident else
               f"The rise is not significant and smaller than the {th.plateau_min_gain:g} worth training for; "
               "the interval is wide, so confirm over more steps before acting on it.")
        ),
        remedy=f"If the reward is at your target, stop. Otherwise: {REMEDY_POOR_TRAINING}.",
    )


def rule_reward_decline(frame: pd.DataFrame, th: Thresholds) -> Finding | str:
    """The training reward is falling, with confidence, by more than `decline_min_drop` over the window."""
    win = _window(frame, "reward_mean", th, rule="reward_decline")
    tr = trend(win["step"].to_numpy(), win["reward_mean"].to_numpy(), th.confidence)
    gain = _ci(tr.change, tr.change_lo, tr.change_hi, th.confidence)
    if not (tr.hi < 0 and -tr.change >= th.decline_min_drop):
        return f"no significant decline: change {gain}"
    first, last = _steps(win)
    best = available(frame, "reward_mean")
    peak = best.loc[best["reward_mean"].rolling(5, min_periods=1).mean().idxmax()]
    return Finding(
        name="reward_decline", severity="warning", title="Training reward is falling",
        evidence={
            "reward_change": _r(tr.change), "change_ci_low": _r(tr.change_lo), "change_ci_high": _r(tr.change_hi),
            "slope_per_100_steps": _r(tr.slope * 100), "peak_step": int(peak["step"]),
            "points": tr.n, "effective_points": _r(tr.n_eff, 3),
        },
        window=(first, last),
        explanation=(
            f"Over steps {first}-{last} the mean training reward fell by {-tr.change:.3g} ({gain}). The policy is "
            "getting worse at the task it is trained on: usually too high a learning rate, or an update that "
            "broke the policy (look at KL, entropy and the gradient norm over the same steps)."
        ),
        remedy=(
            f"Lower the learning rate; resume from a checkpoint before step {int(peak['step'])} where the "
            "reward peaked; check KL and entropy for a collapse; verify the reward is deterministic."
        ),
    )


def rule_overfitting(frame: pd.DataFrame, th: Thresholds) -> Finding | str:
    """Validation reward fell below its best by `overfit_val_drop` (while the training reward kept rising)."""
    val = available(frame, "val_reward")
    if len(val) < th.val_min_points:
        raise _Skip(f"{len(val)} validation point(s); needs {th.val_min_points} (log val_reward during training)")
    best_i = int(val["val_reward"].to_numpy().argmax())
    after = val.iloc[best_i + 1:]
    if after.empty:
        return f"validation reward is at its best at the last evaluation (step {int(val['step'].iloc[-1])})"
    best_step, best_val = int(val["step"].iloc[best_i]), float(val["val_reward"].iloc[best_i])
    recent = float(after["val_reward"].iloc[-3:].mean())
    drop = best_val - recent
    if drop < th.overfit_val_drop:
        return f"validation {recent:.3g} vs best {best_val:.3g} at step {best_step}: drop {drop:.3g} < {th.overfit_val_drop:g}"
    last_step = int(val["step"].iloc[-1])
    train = available(frame, "reward_mean")
    train_at_best = _level_at(train, "reward_mean", best_step)
    train_now = _level_at(train, "reward_mean", last_step)
    rising = train_now - train_at_best > 0
    gap_best, gap_now = train_at_best - best_val, train_now - recent
    title = "Overfitting: validation reward falls while training reward rises" if rising else \
        "Validation reward is degrading"
    return Finding(
        name="overfitting", severity="warning", title=title,
        evidence={
            "best_val_reward": _r(best_val), "best_val_step": best_step, "recent_val_reward": _r(recent),
            "val_drop": _r(drop), "train_reward_at_best": _r(train_at_best), "train_reward_now": _r(train_now),
            "train_change": _r(train_now - train_at_best), "gap_at_best": _r(gap_best), "gap_now": _r(gap_now),
            "val_points_after_best": int(len(after)),
        },
        window=(best_step, last_step),
        explanation=(
            f"Validation reward peaked at {best_val:.3g} at step {best_step} and is {recent:.3g} now (-{drop:.3g}), "
            f"while the training reward went from {train_at_best:.3g} to {train_now:.3g}; the train-validation gap "
            f"grew from {gap_best:+.3g} to {gap_now:+.3g}. "
            + ("The model is fitting the training prompts at the expense of unseen ones." if rising else
               "The model is getting worse on unseen prompts.")
        ),
        remedy=f"Take the checkpoint nearest step {best_step}; then {REMEDY_OVERFITTING}.",
    )


def _level_at(points: pd.DataFrame, column: str, step: int, half_width: int = 5) -> float:
    """The metric's level around a step: mean of the nearest points on each side (robust to one noisy step)."""
    if points.empty:
        return float("nan")
    idx = int(np.searchsorted(points["step"].to_numpy(), step))
    lo, hi = max(0, idx - half_width), min(len(points), idx + half_width + 1)
    return float(points[column].iloc[lo:hi].mean())


def rule_reward_hacking(frame: pd.DataFrame, th: Thresholds) -> Finding | str:
    """Training reward rises (significantly) while an independent metric falls over the same steps."""
    metric = th.hacking_metric
    if metric not in frame.columns:
        if metric == "val_reward":
            raise _Skip("no independent metric: log val_reward, or name a column as hacking_metric")
        raise UserError(
            f"hacking_metric {metric!r} is not a column of the metrics frame; columns with data: "
            f"{', '.join(c for c in frame.columns if c != 'step' and frame[c].notna().any())}"
        )
    ind = available(frame, metric)
    if len(ind) < th.val_min_points:
        raise _Skip(f"{len(ind)} point(s) of {metric}; needs {th.val_min_points}")
    first, last = int(ind["step"].iloc[0]), int(ind["step"].iloc[-1])
    train = available(frame, "reward_mean")
    train = train[(train["step"] >= first) & (train["step"] <= last)]
    if len(train) < th.min_points:
        raise _Skip(f"{len(train)} training-reward point(s) between steps {first} and {last}; needs {th.min_points}")
    tr_train = trend(train["step"].to_numpy(), train["reward_mean"].to_numpy(), th.confidence)
    tr_ind = trend(ind["step"].to_numpy(), ind[metric].to_numpy(), th.confidence)
    significant = tr_ind.hi < 0 if len(ind) >= 5 else tr_ind.slope < 0
    falling = significant and -tr_ind.change >= th.hacking_min_drop
    if not (tr_train.lo > 0 and falling):
        return (f"training reward change {tr_train.change:+.3g}, {metric} change {tr_ind.change:+.3g} over steps "
                f"{first}-{last}: no divergence")
    return Finding(
        name="reward_hacking", severity="critical",
        title=f"Possible reward hacking: training reward rises while {metric} falls",
        evidence={
            "metric": metric, "train_reward_change": _r(tr_train.change),
            "train_change_ci_low": _r(tr_train.change_lo), "metric_change": _r(tr_ind.change),
            "metric_change_ci_high": _r(tr_ind.change_hi), "metric_points": tr_ind.n,
            "evidence_strength": "strong" if len(ind) >= 5 else f"weak (only {len(ind)} {metric} points)",
        },
        window=(first, last),
        explanation=(
            f"Between steps {first} and {last} the training reward rose by {tr_train.change:.3g} "
            f"(CI low {tr_train.change_lo:+.3g}) while {metric} fell by {-tr_ind.change:.3g}. The policy is "
            "earning reward in a way the independent measure does not credit: a reward that can be satisfied "
            "without solving the task (format tricks, length, parsing loopholes)."
        ),
        remedy=(
            "Read completions from the latest steps (notebook 07) and look for what earns reward without being "
            "right; run the reward probes of notebook 02 (adversarial cases); tighten the reward so it separates "
            "good from bad answers; meanwhile use the checkpoint where the independent metric was best."
        ),
    )


def rule_instability(frame: pd.DataFrame, th: Thresholds) -> Finding | str:
    """Step-to-step reward swings grow: variance of reward changes, last third vs first third, F-test."""
    from scipy.special import fdtrc  # F-distribution survival function

    points = available(frame, "reward_mean")
    if len(points) < 3 * th.min_points:
        raise _Skip(f"{len(points)} reward point(s); instability needs {3 * th.min_points}")
    diffs = np.diff(points["reward_mean"].to_numpy())
    third = len(diffs) // 3
    early, late = diffs[:third], diffs[-third:]
    v_early, v_late = float(np.var(early, ddof=1)), float(np.var(late, ddof=1))
    ratio = v_late / v_early if v_early > 0 else (math.inf if v_late > 0 else 1.0)
    p = float(fdtrc(len(late) - 1, len(early) - 1, ratio)) if np.isfinite(ratio) else 0.0
    if not (ratio >= th.instability_ratio and p < th.instability_p):
        return f"late/early variance of reward changes {ratio:.3g} (p={p:.2g})"
    steps = points["step"].to_numpy()
    first, last = int(steps[-third - 1]), int(steps[-1])
    evidence = {
        "variance_ratio": _r(ratio), "p_value": _r(p, 3), "early_sd": _r(math.sqrt(v_early)),
        "late_sd": _r(math.sqrt(v_late)), "early_steps": f"{int(steps[0])}-{int(steps[third])}",
    }
    grad = available(frame, "grad_norm")
    if len(grad) >= 2 * th.min_points:
        g3 = len(grad) // 3
        evidence["grad_norm_late_over_early"] = _r(grad["grad_norm"].iloc[-g3:].median() / grad["grad_norm"].iloc[:g3].median())
    return Finding(
        name="instability", severity="warning", title="Training is becoming unstable (reward variance grows)",
        evidence=evidence, window=(first, last),
        explanation=(
            f"Step-to-step changes of the mean reward swing {math.sqrt(ratio):.2g}x as widely in steps {first}-{last} "
            f"as at the start (variance ratio {ratio:.3g}, F-test p={p:.2g}). Growing swings mean updates are too "
            "large for the noise in the reward estimate."
        ),
        remedy=(
            "Lower the learning rate; raise global_batch_size or number_generation so each step averages more "
            "rollouts; raise the KL penalty (kl_coef); make sure the reward is deterministic for the same answer."
        ),
    )


def rule_reward_errors(frame: pd.DataFrame, th: Thresholds) -> Finding | str:
    """The reward function fails on too many rollouts (from reward_error_rate, else rollout completion rate)."""
    column, derived = "reward_error_rate", False
    if not frame[column].notna().any():
        if not frame["rollout_completion_rate"].notna().any():
            raise _Skip("neither reward_error_rate nor rollout_completion_rate is logged")
        column, derived = "rollout_completion_rate", True
    points = available(frame, column)
    rate = 1 - points[column] if derived else points[column]
    size = len(_recent(frame, column, th))
    recent, overall = float(rate.iloc[-size:].mean()), float(rate.mean())
    if max(recent, overall) <= th.max_error_rate:
        return f"error rate {overall:.2%} overall, {recent:.2%} recently (limit {th.max_error_rate:.0%})"
    worst = int(rate.to_numpy().argmax())
    severity: Severity = "critical" if recent > th.critical_error_rate else "warning"
    first, last = int(points["step"].iloc[-size]), int(points["step"].iloc[-1])
    return Finding(
        name="reward_errors", severity=severity, title="The reward function fails on many rollouts",
        evidence={
            "recent_error_rate": _r(recent), "overall_error_rate": _r(overall), "max_error_rate": _r(float(rate.max())),
            "worst_step": int(points["step"].iloc[worst]), "limit": th.max_error_rate,
            "measured_as": "1 - rollout_completion_rate" if derived else "reward_error_rate",
        },
        window=(first, last),
        explanation=(
            f"{recent:.1%} of reward calls failed in steps {first}-{last} ({overall:.1%} over the run, worst "
            f"{float(rate.max()):.1%} at step {int(points['step'].iloc[worst])}). Failed rollouts give no learning "
            "signal, and errors that correlate with the answer bias what the model learns."
        ),
        remedy=(
            "Find the failing samples (training/completions.parquet status column) and run them through the "
            "reward harness (notebook 02). Typical causes: timeouts (optimize; raise the Lambda timeout), "
            "throttling (raise lambda_concurrency_limit or the account quota), an invalid return format (one "
            "result per id, aggregate_reward_score a number), unhandled exceptions (catch, log, score 0), "
            "external API failures (retries and fallbacks)."
        ),
    )


def rule_zero_variance(frame: pd.DataFrame, th: Thresholds) -> Finding | str:
    """Most prompt groups get the same reward for every completion: GRPO's advantage is zero, nothing learns."""
    win = _recent(frame, "zero_var_group_share", th)
    share = float(win["zero_var_group_share"].mean())
    if share <= th.max_zero_var_share:
        return f"{share:.0%} of groups have zero reward variance (limit {th.max_zero_var_share:.0%})"
    first, last = _steps(win)
    reward = frame.loc[frame["step"].between(first, last), "reward_mean"].mean()
    if np.isfinite(reward) and reward < 0.2:
        why = "almost every completion fails, so groups are all-zero"
        fix = ("check the baseline pass rate (notebook 03): near zero means SFT first or easier prompts; give "
               "partial credit in the reward so near-misses score above total failures")
    elif np.isfinite(reward) and reward > 0.8:
        why = "almost every completion succeeds, so groups are all-high"
        fix = ("drop prompts the model already solves and add harder ones; a baseline above 95% means RFT is "
               "probably unnecessary")
    else:
        why = "groups are either all-right or all-wrong"
        fix = "make the reward graded rather than pass/fail, and balance easy and hard prompts"
    return Finding(
        name="zero_variance", severity="critical" if share >= 0.95 else "warning",
        title="Most prompt groups give no learning signal (zero reward variance)",
        evidence={"zero_var_group_share": _r(share), "window_mean_reward": _r(float(reward)), "limit": th.max_zero_var_share},
        window=(first, last),
        explanation=(
            f"In steps {first}-{last}, {share:.0%} of prompt groups got the same reward for every completion "
            f"(mean reward {reward:.3g}: {why}). GRPO learns from differences within a group; a group without "
            "them contributes nothing to the update."
        ),
        remedy=f"{fix[0].upper()}{fix[1:]}; sample more completions per prompt (number_generation) or raise the temperature.",
    )


def rule_entropy_collapse(frame: pd.DataFrame, th: Thresholds) -> Finding | str:
    """Policy entropy fell below `entropy_collapse_frac` of its starting level: exploration has stopped."""
    win = _window(frame, "entropy", th, rule="entropy_collapse")
    points = available(frame, "entropy")
    start = float(points["entropy"].iloc[: len(win)].median())
    end = float(win["entropy"].median())
    if start <= 0:
        return f"starting entropy {start:.3g} is not positive; cannot judge a relative collapse"
    ratio = end / start
    if ratio >= th.entropy_collapse_frac:
        return f"entropy at {ratio:.0%} of its start ({end:.3g} vs {start:.3g})"
    first, last = _steps(win)
    return Finding(
        name="entropy_collapse", severity="warning", title="Policy entropy has collapsed",
        evidence={"start_entropy": _r(start), "recent_entropy": _r(end), "ratio": _r(ratio), "limit": th.entropy_collapse_frac},
        window=(first, last),
        explanation=(
            f"Median token entropy is {end:.3g} in steps {first}-{last}, {ratio:.1%} of its starting {start:.3g}. The "
            "policy samples nearly the same completion every time, so groups stop differing and learning stalls; "
            "it often comes with over-optimization of the reward."
        ),
        remedy="Raise entropy_coef (ent_coeff) or the sampling temperature; lower the learning rate; train fewer steps.",
    )


def rule_length_limit(frame: pd.DataFrame, th: Thresholds) -> Finding | str:
    """Too many completions are cut at max_new_tokens (clipped share, else mean length near the limit)."""
    if frame["clipped_share"].notna().any():
        win = _recent(frame, "clipped_share", th)
        share = float(win["clipped_share"].mean())
        if share <= th.max_clipped_share:
            return f"{share:.0%} of completions hit the length limit (limit {th.max_clipped_share:.0%})"
        evidence = {"clipped_share": _r(share), "limit": th.max_clipped_share}
        what = f"{share:.0%} of completions were cut at the length limit"
    elif th.max_new_tokens and frame["completion_len_mean"].notna().any():
        win = _recent(frame, "completion_len_mean", th)
        length = float(win["completion_len_mean"].mean())
        if length < th.length_limit_frac * th.max_new_tokens:
            return f"mean length {length:.0f} of {th.max_new_tokens} tokens allowed"
        evidence = {"mean_length": _r(length), "max_new_tokens": th.max_new_tokens}
        what = f"the mean completion length is {length:.0f} tokens of the {th.max_new_tokens} allowed"
    else:
        raise _Skip("neither clipped_share nor completion length with a known max_new_tokens")
    first, last = _steps(win)
    return Finding(
        name="length_limit", severity="warning", title="Completions are hitting the length limit",
        evidence=evidence, window=(first, last),
        explanation=(
            f"In steps {first}-{last} {what}. A cut completion usually has no final answer, so it scores low for a "
            "reason unrelated to its reasoning, and the model may learn to ramble."
        ),
        remedy=(
            "Raise max_new_tokens (it multiplies cost); lower reasoning_effort; reward concise answers or "
            "penalize length; make sure the answer format lets the model stop early."
        ),
    )


def rule_kl_blowup(frame: pd.DataFrame, th: Thresholds) -> Finding | str:
    """KL to the reference policy is above `kl_max`, or grew `kl_growth`-fold within the window."""
    win = _window(frame, "kl", th, rule="kl_blowup")
    smooth = win["kl"].rolling(5, min_periods=1).median().to_numpy()
    peak, now, start = float(smooth.max()), float(smooth[-1]), float(smooth[0])
    # growth from (near) zero is how every run starts, not a blow-up: judge growth only from a real level
    growth = now / start if start >= th.kl_min / 10 else float("nan")
    too_high = peak > th.kl_max
    growing = now >= th.kl_min and growth >= th.kl_growth
    if not (too_high or growing):
        return f"KL {now:.3g} (peak {peak:.3g}, limit {th.kl_max:g}); growth {growth:.3g}x in the window"
    first, last = _steps(win)
    severity: Severity = "critical" if now > th.kl_max else "warning"
    if too_high and now <= th.kl_max:
        what = f"KL spiked to {peak:.3g} (limit {th.kl_max:g}) and is {now:.3g} now"
    elif too_high:
        what = f"KL is {now:.3g}, above the limit of {th.kl_max:g}"
    else:
        what = f"KL grew {growth:.3g}-fold within the window, from {start:.3g} to {now:.3g}"
    return Finding(
        name="kl_blowup", severity=severity, title="KL divergence is blowing up",
        evidence={"kl_now": _r(now), "kl_peak": _r(peak), "kl_window_start": _r(start), "growth": _r(growth),
                  "kl_max": th.kl_max},
        window=(first, last),
        explanation=(
            f"In steps {first}-{last} {what} (5-step rolling median). The policy is moving far from the base model "
            "quickly, which precedes collapse or reward hacking."
        ),
        remedy="Lower the learning rate; raise kl_coef; check for reward hacking; resume from an earlier checkpoint.",
    )


def rule_policy_stalled(frame: pd.DataFrame, th: Thresholds) -> Finding | str:
    """No successful policy update in the window (a counter that stopped, or per-step counts of zero)."""
    win = _window(frame, "policy_updates", th, rule="policy_stalled")
    values = available(frame, "policy_updates")["policy_updates"].to_numpy()
    cumulative = bool(np.all(np.diff(values) >= 0)) and values[-1] > values[0]
    w = win["policy_updates"].to_numpy()
    updates = float(w[-1] - w[0]) if cumulative else float(w.sum())
    if updates > 0:
        return f"{updates:.0f} policy update(s) in the latest window"
    first, last = _steps(win)
    return Finding(
        name="policy_stalled", severity="critical", title="No policy updates are happening",
        evidence={"updates_in_window": updates, "counter": "cumulative" if cumulative else "per step"},
        window=(first, last),
        explanation=(
            f"No successful weight update was recorded in steps {first}-{last}: rollouts are generated and scored, "
            "but the model does not change."
        ),
        remedy=(
            "Check the trainer log for skipped steps (non-finite gradients, all-zero advantages when every group "
            "has zero variance, stale rollouts beyond the age tolerance) and the zero-variance finding."
        ),
    )


RULES: dict[str, Callable[[pd.DataFrame, Thresholds], Finding | str]] = {
    "plateau": rule_plateau,
    "reward_decline": rule_reward_decline,
    "overfitting": rule_overfitting,
    "reward_hacking": rule_reward_hacking,
    "instability": rule_instability,
    "reward_errors": rule_reward_errors,
    "zero_variance": rule_zero_variance,
    "entropy_collapse": rule_entropy_collapse,
    "length_limit": rule_length_limit,
    "kl_blowup": rule_kl_blowup,
    "policy_stalled": rule_policy_stalled,
}


@dataclass
class Health:
    """Every rule's outcome on one frame: the findings (most severe first) and what each rule concluded."""

    findings: list[Finding] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    thresholds: Thresholds = field(default_factory=Thresholds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "findings": [f.to_dict() for f in self.findings],
            "checks": [c.to_dict() for c in self.checks],
            "thresholds": self.thresholds.model_dump(),
        }


def check(frame: pd.DataFrame, th: dict[str, Any] | Thresholds | None = None,
          rules: list[str] | None = None) -> Health:
    """Run the rules (all unless named) and keep both the findings and each rule's verdict."""
    frame = validate_frame(frame)
    th = thresholds(th)
    unknown = sorted(set(rules or []) - set(RULES))
    if unknown:
        raise UserError(f"unknown health rule(s) {', '.join(unknown)}; rules are: {', '.join(RULES)}")
    health = Health(thresholds=th)
    for name in rules or list(RULES):
        try:
            outcome = RULES[name](frame, th)
        except _Skip as why:
            health.checks.append(Check(name, "skipped", str(why)))
            continue
        if isinstance(outcome, Finding):
            health.findings.append(outcome)
            health.checks.append(Check(name, "fired", outcome.title))
        else:
            health.checks.append(Check(name, "ok", outcome))
    health.findings.sort(key=lambda f: -SEVERITIES.index(f.severity))
    return health


def analyse(frame: pd.DataFrame, thresholds: dict[str, Any] | Thresholds | None = None) -> list[Finding]:
    """The findings of every health rule on a metrics frame, most severe first."""
    return check(frame, thresholds).findings


def findings_table(findings: list[Finding]) -> pd.DataFrame:
    """Findings as a table for notebooks and reports (one row each, evidence as `key: value` text)."""
    from nbkit.display import text

    rows = [
        {
            "severity": f.severity, "rule": f.name, "finding": f.title, "steps": f"{f.window[0]}-{f.window[1]}",
            "evidence": text(f.evidence), "remedy": f.remedy,
        }
        for f in findings
    ]
    return pd.DataFrame(rows, columns=["severity", "rule", "finding", "steps", "evidence", "remedy"])

