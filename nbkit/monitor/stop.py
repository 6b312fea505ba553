"""When to stop: the documented criteria (target reached, plateau, validation degrading, budget reached)
turned into one continue/stop decision with its reason and the checkpoint to keep.

Critical findings (the reward function failing, KL blowing up, no policy updates, likely reward hacking)
also stop a run: more steps of a broken run cost money and teach the wrong thing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from nbkit.errors import UserError
from nbkit.monitor.frame import available, validate_frame
from nbkit.monitor.rules import Finding, _Skip, trend

FINISHED = ("completed", "stopped", "failed")  # job statuses after which there is nothing to continue or stop


@dataclass
class Recommendation:
    """Continue or stop, why (every criterion that holds), the best evaluated step, and the best saved
    checkpoint (which can differ: checkpoints exist only every save_steps, and old ones get deleted).

    For a job that has ended, `action` says how it ended (completed, stopped, failed), `reason` says so
    and which checkpoint to keep, and the criteria that held become notes for the next run.
    """

    action: Literal["continue", "stop", "completed", "stopped", "failed"]
    reason: str
    reasons: list[str] = field(default_factory=list)
    best_step: int | None = None
    best_metric: str | None = None
    best_value: float | None = None
    checkpoint_step: int | None = None
    checkpoint_value: float | None = None
    checkpoint: str | None = None
    progress: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def best_text(self) -> str:
        """Where the best model is, in words ('' when nothing was evaluated)."""
        if self.best_step is None:
            return ""
        text = f"best evaluated step {self.best_step} ({self.best_metric} {self.best_value:.3g})"
        if self.checkpoint_step is not None:
            if self.checkpoint_step == self.best_step:
                text += ", saved as a checkpoint"
            else:
                text += f"; best saved checkpoint: step {self.checkpoint_step} ({self.checkpoint_value:.3g})"
        return text

    def headline(self) -> str:
        """One sentence for the run index."""
        if self.action in FINISHED:
            return f"{self.action.upper()}: {self.reason}"
        best = self.best_text()
        return f"{self.action.upper()}: {self.reason}" + (f" {best[0].upper()}{best[1:]}." if best else "")


def finished(rec: Recommendation, status: str, frame: pd.DataFrame, total_steps: int | None = None,
             checkpoint_name: str | None = None) -> Recommendation:
    """The recommendation for a job that has ended: how it ended (not "continue" for a job that cannot),
    the checkpoint to keep, and the stop criteria that held as notes for the next run.

    `checkpoint_name` names the kept checkpoint as a reader finds it (e.g. relative to the run folder).
    """
    last = int(frame["step"].max()) if len(frame) else 0
    of = f" of {total_steps:,}" if total_steps else ""
    ended = {"completed": f"The job completed {last:,}{of} steps.",
             "stopped": f"The job was stopped at step {last:,}{of}.",
             "failed": f"The job failed at step {last:,}{of}."}[status]
    keep = ""
    if rec.checkpoint_step is not None:
        where = f" ({checkpoint_name})" if checkpoint_name else ""
        judged = f" by {rec.best_metric} ({rec.checkpoint_value:.3g})" if rec.checkpoint_value is not None else ""
        keep = f" Keep the checkpoint of step {rec.checkpoint_step:,}{where}: the best saved one{judged}."
    elif status == "failed":
        keep = " It saved no checkpoint to keep."
    notes = [f"For the next run: {r[0].lower()}{r[1:]}" for r in rec.reasons]
    return Recommendation(status, ended + keep, notes, rec.best_step, rec.best_metric, rec.best_value,  # type: ignore[arg-type]
                          rec.checkpoint_step, rec.checkpoint_value, rec.checkpoint, rec.progress)


def recommend_stop(
    frame: pd.DataFrame,
    findings: list[Finding],
    target: float | None = None,
    budget_steps: int | None = None,
    budget_time_s: float | None = None,
    budget_cost: float | None = None,
    *,
    cost_per_hour: float | None = None,
    checkpoints: dict[int, str] | list[int] | None = None,
    target_metric: str | None = None,
    confidence: float = 0.95,
) -> Recommendation:
    """Decide continue/stop from the frame, the health findings, an optional target and budgets.

    `target` applies to `target_metric` (default: validation reward when logged, else training reward
    averaged over the last 10% of steps). `budget_cost` needs `cost_per_hour` (instances x price), cost so
    far being elapsed time x that rate. `checkpoints` (steps, or step -> path) restricts the best step to
    steps that have a saved checkpoint.
    """
    frame = validate_frame(frame)
    if budget_cost is not None and not cost_per_hour:
        raise UserError("budget_cost needs cost_per_hour (instance count x price per instance-hour) to measure spend")
    best = best_checkpoint(frame, checkpoints)
    if frame.empty or not frame["reward_mean"].notna().any():
        return Recommendation("continue", "No reward logged yet: wait for the first steps.", **best)
    reasons: list[str] = []
    reasons += [f"{f.title} (steps {f.window[0]}-{f.window[1]})." for f in findings if f.severity == "critical"]
    metric, level = _target_level(frame, target_metric)
    if target is not None and level >= target:
        reasons.append(f"Target reached: {metric} is {level:.3g} (target {target:g}).")
    names = {f.name: f for f in findings}
    if "overfitting" in names:
        ev = names["overfitting"].evidence
        rising = " while the training reward rises" if (ev.get("train_change") or 0) > 0 else ""
        reasons.append(f"Validation is degrading: {ev['recent_val_reward']:.3g} now against {ev['best_val_reward']:.3g} "
                       f"at step {ev['best_val_step']}{rising}.")
    if "plateau" in names and names["plateau"].severity != "info":
        reasons.append(f"Reward has plateaued (gain over the window {names['plateau'].evidence['reward_gain']:+.3g}).")
    progress = _progress(frame, budget_steps, budget_time_s, budget_cost, cost_per_hour)
    reasons += progress.pop("_reasons")
    if reasons:
        return Recommendation("stop", reasons[0], reasons, progress=progress, **best)
    return Recommendation("continue", _why_continue(frame, target, metric, level, confidence), [],
                          progress=progress, **best)


def _target_level(frame: pd.DataFrame, metric: str | None) -> tuple[str, float]:
    """The current level of the target metric: latest validation reward, else recent mean training reward."""
    if metric is None:
        metric = "val_reward" if frame["val_reward"].notna().any() else "reward_mean"
    if metric not in frame.columns:
        raise UserError(f"target_metric {metric!r} is not a column of the metrics frame")
    points = available(frame, metric)
    if points.empty:
        return metric, float("nan")
    if metric == "val_reward":
        return metric, float(points[metric].iloc[-1])
    size = max(1, math.ceil(0.1 * len(points)))
    return metric, float(points[metric].iloc[-size:].mean())


def _progress(frame: pd.DataFrame, steps: int | None, time_s: float | None, cost: float | None,
              cost_per_hour: float | None) -> dict[str, Any]:
    """Budget use so far, and a stop reason for each budget reached."""
    last_step = int(frame["step"].iloc[-1])
    elapsed = float(frame["time"].max()) if frame["time"].notna().any() else None
    spent = elapsed / 3600 * cost_per_hour if elapsed is not None and cost_per_hour else None
    out: dict[str, Any] = {"step": last_step, "elapsed_s": elapsed, "cost_so_far": spent, "_reasons": []}
    if steps is not None:
        out["budget_steps"] = steps
        if last_step >= steps:
            out["_reasons"].append(f"Step budget reached: step {last_step} of {steps}.")
    if time_s is not None:
        out["budget_time_s"] = time_s
        if elapsed is None:
            out["note"] = "this source logs no time stamps: the time and cost budgets cannot be checked"
        elif elapsed >= time_s:
            out["_reasons"].append(f"Time budget reached: {elapsed / 3600:.2f} h of {time_s / 3600:.2f} h.")
    if cost is not None:
        out["budget_cost"] = cost
        if spent is not None and spent >= cost:
            out["_reasons"].append(f"Cost budget reached: ${spent:,.2f} of ${cost:,.2f}.")
    return out


def _why_continue(frame: pd.DataFrame, target: float | None, metric: str, level: float, confidence: float) -> str:
    """The reason to go on: the reward is still rising (with its interval), and when the target may be hit."""
    points = available(frame, "reward_mean")
    size = max(10, math.ceil(0.3 * len(points)))
    win = points.iloc[-size:]
    try:
        tr = trend(win["step"].to_numpy(), win["reward_mean"].to_numpy(), confidence)
    except _Skip:
        return "Too few steps to judge a trend yet; no stop criterion is met."
    text = (f"No stop criterion is met; the training reward moves {tr.slope * 100:+.3g} per 100 steps "
            f"({confidence:.0%} CI {tr.lo * 100:+.3g} to {tr.hi * 100:+.3g}).")
    if target is not None and np.isfinite(level) and tr.slope > 0 and metric == "reward_mean":
        text += f" At that rate {metric} reaches {target:g} in about {(target - level) / tr.slope:,.0f} more steps."
    return text


def best_checkpoint(frame: pd.DataFrame, checkpoints: dict[int, str] | list[int] | None = None) -> dict[str, Any]:
    """The best step by validation reward (else by smoothed training reward), and the best saved checkpoint.

    Each checkpoint is judged by the latest evaluation at or before its step, so a checkpoint is never
    credited with an evaluation of a later model.
    """
    out: dict[str, Any] = {"best_step": None, "best_metric": None, "best_value": None,
                           "checkpoint_step": None, "checkpoint_value": None, "checkpoint": None}
    paths = dict(checkpoints) if isinstance(checkpoints, dict) else {int(s): None for s in checkpoints or []}
    metric = "val_reward" if frame["val_reward"].notna().any() else "reward_mean"
    points = available(frame, metric)
    if points.empty:
        return out
    if metric == "reward_mean":
        span = max(1, len(points) // 20)
        points = points.assign(reward_mean=points["reward_mean"].rolling(span, min_periods=1).mean())
        label = f"training reward ({span}-step mean; no validation logged)" if span > 1 else \
            "training reward (no validation logged)"
    else:
        label = "val_reward"
    steps, values = points["step"].to_numpy(), points[metric].to_numpy()
    i = int(values.argmax())
    out.update(best_step=int(steps[i]), best_metric=label, best_value=float(values[i]))
    candidates = []
    for step in sorted(paths):
        idx = int(np.searchsorted(steps, step, side="right")) - 1
        if idx >= 0:
            candidates.append((values[idx], step))
    if candidates:
        value, step = max(candidates, key=lambda c: (c[0], -c[1]))
        out.update(checkpoint_step=int(step), checkpoint_value=float(value), checkpoint=paths[step])
    return out
