"""The normalized metrics frame: one table per training run, whatever backend produced it.

Why: MLflow (local TRL runs, managed MLflow), Nova's step-wise CSV and CloudWatch log lines name the same
quantities differently and cover different subsets. Every reader maps its names onto `COLUMNS` and hands
the wide table to `normalize`, so the health rules, the stop recommendation and the plots never care where
the numbers came from. Columns a source does not have are NaN; columns it has that are not in `COLUMNS` are
kept after them under their source names (a user may pick one as the independent metric).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from nbkit.errors import UserError

# name -> (meaning, unit) for every normalized column, in frame order. The reward-share buckets are the local
# backend's: high >= 0.8, low < 0.2, medium otherwise (docs/CONVENTIONS.md).
COLUMN_INFO: dict[str, tuple[str, str]] = {
    "step": ("optimizer step", "step"),
    "time": ("seconds since the run started", "s"),
    "reward_mean": ("mean training reward of the step's completions", "reward"),
    "reward_std": ("standard deviation of the step's rewards", "reward"),
    "reward_p10": ("10th percentile of the step's rewards", "reward"),
    "reward_p50": ("median of the step's rewards", "reward"),
    "reward_p90": ("90th percentile of the step's rewards", "reward"),
    "share_high": ("share of completions with a high reward", "fraction"),
    "share_medium": ("share of completions with a medium reward", "fraction"),
    "share_low": ("share of completions with a low reward", "fraction"),
    "val_reward": ("mean reward on held-out validation prompts", "reward"),
    "policy_updates": ("successful policy (weight) updates", "count"),
    "rollout_completion_rate": ("share of rollouts scored successfully", "fraction"),
    "reward_error_rate": ("share of reward calls that failed", "fraction"),
    "zero_var_group_share": ("share of prompt groups whose rewards are all equal", "fraction"),
    "entropy": ("mean token entropy of the policy", "nats/token"),
    "kl": ("KL divergence from the reference policy", "nats/token"),
    "completion_len_mean": ("mean completion length", "tokens"),
    "clipped_share": ("share of completions cut at the length limit", "fraction"),
    "lr": ("learning rate", "1/step"),
    "grad_norm": ("gradient norm before clipping", "norm"),
    "loss": ("training loss", "loss"),
}
COLUMNS: tuple[str, ...] = tuple(COLUMN_INFO)
METRIC_COLUMNS: tuple[str, ...] = COLUMNS[2:]


def empty_frame(source: str = "") -> pd.DataFrame:
    """A frame with every normalized column and no rows (a job that has not logged yet)."""
    frame = pd.DataFrame({c: pd.Series(dtype="int64" if c == "step" else "float64") for c in COLUMNS})
    frame.attrs.update(source=source, notes=[])
    return frame


def normalize(
    wide: pd.DataFrame,
    aliases: Mapping[str, str] | None = None,
    *,
    source: str = "",
    notes: list[str] | None = None,
) -> pd.DataFrame:
    """Turn a reader's wide table (one row per logged step, source column names) into the normalized frame.

    `aliases` maps source names to normalized ones; an alias column is renamed. When the normalized name
    exists too (the local backend logs `reward_mean` and TRL logs `reward`), the normalized column wins, the
    alias fills its gaps and stays under its own name, so nothing logged is lost.
    Rows with a repeated step (a resumed job re-logging steps, several nodes logging the same step) are
    collapsed to the last one, and the count is recorded in `frame.attrs["notes"]`.
    """
    notes = list(notes or [])
    aliases = {k: v for k, v in (aliases or {}).items() if k != v}
    direct = set(wide.columns)
    data: dict[str, pd.Series] = {name: wide[name] for name in wide.columns if name not in aliases}
    for name, target in aliases.items():
        if name not in direct:
            continue
        data[target] = data[target].combine_first(wide[name]) if target in data else wide[name]
        if target in direct:
            data[name] = wide[name]
    if "step" not in data:
        raise UserError(
            f"{source or 'metrics'}: no step column (looked for 'step' and "
            f"{sorted(k for k, v in aliases.items() if v == 'step')}); the source must say which step each row is"
        )
    frame = pd.DataFrame(data, index=wide.index)
    frame = _numeric(frame, source)
    frame = frame[frame["step"].notna()]
    frame = frame.sort_values("step", kind="stable")
    dupes = int(frame["step"].duplicated(keep="last").sum())
    if dupes:
        notes.append(f"{dupes} row(s) repeated an earlier step; the last value of each step was kept")
        frame = frame.drop_duplicates("step", keep="last")
    for col in COLUMNS:
        if col not in frame.columns:
            frame[col] = np.nan
    extras = [c for c in frame.columns if c not in COLUMN_INFO]
    frame = frame[list(COLUMNS) + extras].reset_index(drop=True)
    frame["step"] = frame["step"].astype("int64")
    frame.attrs.update(source=source, notes=notes)
    return frame


def _numeric(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Every metric column as float64; a text value in a metric column is an error, never a silent NaN."""
    out = {}
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            out[name] = col.astype("float64")
            continue
        converted = pd.to_numeric(col, errors="coerce")
        bad = converted.isna() & col.notna() & (col.astype(str).str.strip() != "")
        if bad.any():
            first = bad.idxmax()
            raise UserError(
                f"{source or 'metrics'}: column {name!r} holds a non-numeric value {col[first]!r} "
                f"(row {first}); metric values must be numbers: fix or remove that value"
            )
        out[name] = converted.astype("float64")
    return pd.DataFrame(out, index=frame.index)


def validate_frame(frame: Any) -> pd.DataFrame:
    """Check that an object is a normalized frame (e.g. a parquet file someone edited) before analysing it."""
    if not isinstance(frame, pd.DataFrame):
        raise UserError(f"expected a metrics DataFrame, got {type(frame).__name__}; use nbkit.monitor.load_metrics")
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(
            f"metrics frame lacks column(s) {', '.join(missing)}; build it with nbkit.monitor.load_metrics "
            "(or nbkit.monitor.frame.normalize) so every normalized column exists"
        )
    if len(frame) and not frame["step"].is_monotonic_increasing:
        raise UserError("metrics frame steps are not sorted ascending; build it with nbkit.monitor.frame.normalize")
    return frame


def available(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Rows where `column` has a finite value, as (step, value) — the points a rule can use."""
    if column not in frame.columns:
        return pd.DataFrame({"step": pd.Series(dtype="int64"), column: pd.Series(dtype="float64")})
    values = frame[column].to_numpy(dtype="float64")
    keep = np.isfinite(values)
    return pd.DataFrame({"step": frame["step"].to_numpy()[keep], column: values[keep]})


def summary(frame: pd.DataFrame) -> dict[str, Any]:
    """What the frame covers: rows, step range, elapsed time, and which normalized columns have data."""
    present = [c for c in METRIC_COLUMNS if frame[c].notna().any()]
    return {
        "rows": int(len(frame)),
        "first_step": int(frame["step"].iloc[0]) if len(frame) else None,
        "last_step": int(frame["step"].iloc[-1]) if len(frame) else None,
        "elapsed_s": float(frame["time"].max()) if frame["time"].notna().any() else None,
        "columns_with_data": present,
        "columns_missing": [c for c in METRIC_COLUMNS if c not in present],
        "extra_columns": [c for c in frame.columns if c not in COLUMN_INFO],
        "source": frame.attrs.get("source", ""),
        "notes": list(frame.attrs.get("notes", [])),
    }
