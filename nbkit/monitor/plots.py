"""Training curves from the metrics frame: one dashboard figure, or each panel on its own axes.

Why these panels: they are the documented monitoring metrics (mean reward and its distribution, training
vs validation reward, reward-function errors) plus the quantities the health rules judge (lengths and the
length limit, entropy and KL). Long runs are binned to at most `max_points` points per curve (the mean of
each bin), so a 100,000-step history draws in a fraction of a second; the panel title says when. Figures are
built without pyplot, so a refresh loop does not accumulate open figures.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from nbkit.monitor.rules import Finding

PANEL_OF_RULE = {
    "plateau": "reward", "reward_decline": "reward", "instability": "reward", "reward_hacking": "train_val",
    "overfitting": "train_val", "reward_errors": "errors", "zero_variance": "errors", "policy_stalled": "errors",
    "length_limit": "lengths", "entropy_collapse": "entropy_kl", "kl_blowup": "entropy_kl",
}
_SEVERITY_COLOR = {"info": "#9ecae1", "warning": "#fdae6b", "critical": "#fb6a4a"}


def binned(frame: pd.DataFrame, max_points: int = 2000) -> tuple[pd.DataFrame, int]:
    """(frame averaged over bins of consecutive rows, rows per bin); unchanged when short enough."""
    n = len(frame)
    if n <= max_points:
        return frame, 1
    size = int(np.ceil(n / max_points))
    numeric = frame.select_dtypes("number")
    out = numeric.groupby(np.arange(n) // size).mean()
    out["step"] = frame["step"].to_numpy()[::size][: len(out)]
    return out.reset_index(drop=True), size


def ema(values: pd.Series, span: int) -> pd.Series:
    """Exponential moving average that ignores gaps (NaN) rather than bridging them with zeros."""
    return values.ewm(span=max(span, 1), ignore_na=True).mean().where(values.notna())


def default_span(n: int) -> int:
    """Smoothing span: about 2% of the curve, at least 1 (no smoothing for short runs)."""
    return max(1, round(n / 50))


def _empty(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, f"{what}\nnot logged by this source", ha="center", va="center", transform=ax.transAxes,
            color="0.5")


def _has(frame: pd.DataFrame, column: str) -> bool:
    return column in frame.columns and bool(frame[column].notna().any())


def plot_reward(ax: Any, frame: pd.DataFrame, span: int | None = None) -> None:
    """Mean reward per step, its smoothed trend, and the spread (p10-p90, else mean +/- std) as a band."""
    ax.set(title="Training reward", xlabel="step", ylabel="reward (score)")
    if not _has(frame, "reward_mean"):
        return _empty(ax, "reward_mean")
    x, mean = frame["step"], frame["reward_mean"]
    if _has(frame, "reward_p10") and _has(frame, "reward_p90"):
        ax.fill_between(x, frame["reward_p10"], frame["reward_p90"], alpha=0.2, color="C0", label="p10-p90")
    elif _has(frame, "reward_std"):
        ax.fill_between(x, mean - frame["reward_std"], mean + frame["reward_std"], alpha=0.2, color="C0",
                        label="mean ± std")
    ax.plot(x, mean, color="C0", alpha=0.35, linewidth=0.8, label="mean")
    span = span or default_span(len(frame))
    ax.plot(x, ema(mean, span), color="C0", linewidth=2, label=f"mean, EMA span {span}")
    ax.legend(loc="best", fontsize="small")


def plot_shares(ax: Any, frame: pd.DataFrame) -> None:
    """Stacked shares of low / medium / high rewards over steps (the reward distribution over time)."""
    ax.set(title="Reward distribution (share of completions)", xlabel="step", ylabel="share of completions (%)")
    cols = ["share_low", "share_medium", "share_high"]
    if not all(_has(frame, c) for c in cols):
        return _empty(ax, "share_low/medium/high")
    rows = frame[["step", *cols]].dropna()
    ax.stackplot(rows["step"], *(rows[c] * 100 for c in cols), labels=["low", "medium", "high"],
                 colors=["#d7301f", "#fdcc8a", "#31a354"], alpha=0.85)
    ax.set_ylim(0, 100)
    ax.legend(loc="upper left", fontsize="small")


def plot_train_val(ax: Any, frame: pd.DataFrame, span: int | None = None, best_step: int | None = None) -> None:
    """Smoothed training reward against validation reward, with the best checkpoint marked."""
    ax.set(title="Training vs validation reward", xlabel="step", ylabel="reward (score)")
    if not _has(frame, "reward_mean") and not _has(frame, "val_reward"):
        return _empty(ax, "reward_mean and val_reward")
    if _has(frame, "reward_mean"):
        span = span or default_span(len(frame))
        ax.plot(frame["step"], ema(frame["reward_mean"], span), color="C0", label="training (EMA)")
    if _has(frame, "val_reward"):
        val = frame[["step", "val_reward"]].dropna()
        ax.plot(val["step"], val["val_reward"], "o-" if len(val) <= 60 else "-", color="C1", label="validation")
    if best_step is not None:
        ax.axvline(best_step, color="k", linestyle=":", label=f"best checkpoint (step {best_step})")
    ax.legend(loc="best", fontsize="small")


def _percent_axis(ax: Any, peak: float, *limits: tuple[float | None, str, str]) -> None:
    """A percent axis from 0 that holds the data and the health rules' thresholds (drawn as dotted lines),
    so a spike of 0.8% next to a 20% threshold looks as small as it is."""
    top = peak
    for value, label, color in limits:
        if value is not None:
            ax.axhline(value * 100, color=color, linestyle=":", linewidth=1, label=label)
            top = max(top, value * 100)
    ax.set_ylim(0, max(top * 1.15, 1.0))


def plot_errors(ax: Any, frame: pd.DataFrame, thresholds: Any = None) -> None:
    """Reward-function error rate, failed rollouts, and zero-variance groups, in percent."""
    ax.set(title="Reward errors and learning signal", xlabel="step", ylabel="share (%)")
    drawn = False
    for col, label, color in (
        ("reward_error_rate", "reward errors", "C3"),
        ("zero_var_group_share", "zero-variance groups", "C7"),
    ):
        if _has(frame, col):
            ax.plot(frame["step"], frame[col] * 100, color=color, label=label)
            drawn = True
    if _has(frame, "rollout_completion_rate"):
        ax.plot(frame["step"], (1 - frame["rollout_completion_rate"]) * 100, color="C4", linestyle="--",
                label="rollouts not completed")
        drawn = True
    if not drawn:
        return _empty(ax, "error rates")
    peak = max(float(np.nanmax(line.get_ydata())) for line in ax.get_lines()) if ax.get_lines() else 0.0
    th = thresholds
    _percent_axis(ax, peak, (getattr(th, "max_error_rate", None), "error-rate warning", "C3"),
                  (getattr(th, "max_zero_var_share", None), "zero-variance limit", "C7"))
    ax.legend(loc="best", fontsize="small")


def plot_lengths(ax: Any, frame: pd.DataFrame, max_new_tokens: int | None = None, thresholds: Any = None) -> None:
    """Mean completion length (tokens) and the share cut at the limit (%, right axis)."""
    ax.set(title="Completion length", xlabel="step", ylabel="mean completion length (tokens)")
    if not _has(frame, "completion_len_mean") and not _has(frame, "clipped_share"):
        return _empty(ax, "completion lengths")
    handles = []
    if _has(frame, "completion_len_mean"):
        handles += ax.plot(frame["step"], frame["completion_len_mean"], color="C2", label="mean length")
    if max_new_tokens:
        handles.append(ax.axhline(max_new_tokens, color="C2", linestyle=":", label=f"max_new_tokens {max_new_tokens}"))
    top = ax
    if _has(frame, "clipped_share"):
        top = ax.twinx()
        handles += top.plot(frame["step"], frame["clipped_share"] * 100, color="C5", label="cut at limit")
        top.set_ylabel("completions cut at the limit (%)")
        limit = getattr(thresholds, "max_clipped_share", None)
        _percent_axis(top, float(frame["clipped_share"].max() * 100),
                      (limit, "cut-at-limit warning", "C5"))
        if limit is not None:
            handles.append(top.get_lines()[-1])
    top.legend(handles=handles, loc="best", fontsize="small", framealpha=0.9)  # on the topmost axes


def plot_entropy_kl(ax: Any, frame: pd.DataFrame) -> None:
    """Policy entropy (left axis) and KL to the reference policy (right axis), both in nats per token."""
    ax.set(title="Entropy and KL", xlabel="step", ylabel="entropy (nats/token)")
    if not _has(frame, "entropy") and not _has(frame, "kl"):
        return _empty(ax, "entropy and KL")
    handles = []
    if _has(frame, "entropy"):
        handles += ax.plot(frame["step"], frame["entropy"], color="C8", label="entropy")
    top = ax
    if _has(frame, "kl"):
        top = ax.twinx()
        handles += top.plot(frame["step"], frame["kl"], color="C9", label="KL")
        top.set_ylabel("KL (nats/token)")
    top.legend(handles=handles, loc="best", fontsize="small", framealpha=0.9)  # on the topmost axes


def dashboard(
    frame: pd.DataFrame,
    findings: list[Finding] | None = None,
    best_step: int | None = None,
    *,
    smooth_span: int | None = None,
    max_new_tokens: int | None = None,
    max_points: int = 2000,
    title: str | None = None,
    thresholds: Any = None,
) -> Any:
    """All six panels in one figure; the step windows of findings are shaded on the panel they concern, and
    the percent panels show the health rules' `thresholds` (nbkit.monitor.rules.Thresholds) they judge by."""
    from matplotlib.figure import Figure

    data, per_bin = binned(frame, max_points)
    span = smooth_span if smooth_span else default_span(len(frame))
    span = max(1, round(span / per_bin))
    # a fixed layout: constrained layout measures every tick label once more, which doubles the draw time
    fig = Figure(figsize=(13, 11))
    axes = fig.subplots(3, 2, gridspec_kw={"left": 0.06, "right": 0.93, "top": 0.92, "bottom": 0.05,
                                            "hspace": 0.38, "wspace": 0.32})
    panels = {
        "reward": axes[0, 0], "shares": axes[0, 1], "train_val": axes[1, 0], "errors": axes[1, 1],
        "lengths": axes[2, 0], "entropy_kl": axes[2, 1],
    }
    plot_reward(panels["reward"], data, span)
    plot_shares(panels["shares"], data)
    plot_train_val(panels["train_val"], data, span, best_step)
    plot_errors(panels["errors"], data, thresholds)
    plot_lengths(panels["lengths"], data, max_new_tokens, thresholds)
    plot_entropy_kl(panels["entropy_kl"], data)
    for f in findings or []:
        ax = panels.get(PANEL_OF_RULE.get(f.name, ""))
        if ax is not None:
            ax.axvspan(f.window[0], f.window[1], color=_SEVERITY_COLOR[f.severity], alpha=0.2, zorder=0)
    head = title or f"Training metrics: {frame.attrs.get('source', '')}".strip(": ")
    if per_bin > 1:
        head += f"\n(each point is the mean of {per_bin} steps)"
    fig.suptitle(head, fontsize="medium")
    return fig
