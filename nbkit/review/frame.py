"""One long table of every sample worth reading: baseline, tuned, and training completions by step.

Each row gets a stable `key` (what annotations refer to), a reward bucket, a failure kind (which reward
component failed; format vs logic), and for baseline/tuned rows the paired sample from the other model, so the
browser and the report tables are plain filters over one frame.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbkit.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

SOURCES = ("baseline", "tuned", "training")
BUCKETS = ("high", "medium", "low", "error")
CHANGES = ("improved", "regressed", "text changed", "same")
FAILURE_KINDS = ("reward error", "truncated", "format", "logic", "unexplained")
# Reward components come as name -> value without their Nova type, so their role is read from the name:
# - measurements (sizes, counts) are never "failed": their value is not a score;
# - error flags (grader_error, error) fail when > 0, and mean the reward itself failed;
# - scores measuring form rather than content (format_ok, parsed, answer_found) fail as format errors;
# - any other score in [0, 1] below the low bucket is a content (logic) failure.
MEASURE_WORDS = ("chars", "tokens", "num_", "count", "candidates", "size", "latency", "seconds")
ERROR_WORDS = ("error",)
FORMAT_WORDS = ("format", "pars", "syntax", "schema", "valid", "json", "tag", "structure", "found", "extract",
                "length")
COLUMNS = ("key", "source", "step", "prompt_id", "sample", "prompt", "reference", "response", "reward", "status",
           "components", "finish_reason", "num_tokens", "domain", "difficulty_level")


def load_sources(run_dir: str | Path) -> dict[str, pd.DataFrame]:
    """The sample frames a run has so far (03, 06, 04 outputs); absent stages are simply not in the dict."""
    import pandas as pd

    from nbkit.layout import RunLayout

    layout = RunLayout(run_dir)
    files = {"baseline": layout.baseline_samples, "tuned": layout.tuned_samples,
             "training": layout.training_completions}
    found = {}
    for source, path in files.items():
        if path.is_file():
            try:
                found[source] = pd.read_parquet(path)
            except Exception as exc:  # pyarrow raises several types for a damaged file
                raise UserError(f"cannot read {path} ({type(exc).__name__}: {exc}); re-run the stage that wrote it") from exc
    return found


def parse_components(value: Any, where: str = "") -> dict[str, float]:
    """Components as a dict: a JSON string (samples.parquet), a dict (some writers), or empty/None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return {}
    if isinstance(value, dict):
        return {str(k): float(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple) or hasattr(value, "tolist"):  # a parquet map column reads as (key, value) pairs
        pairs = value.tolist() if hasattr(value, "tolist") else value
        try:
            return {str(k): float(v) for k, v in pairs if v is not None}
        except (TypeError, ValueError):
            raise UserError(f"components of {where or 'a sample'} must be name -> value pairs, got {pairs!r:.80}") from None
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise UserError(f"components of {where or 'a sample'} are not JSON ({exc}): {value[:80]!r}") from None
        if not isinstance(parsed, dict):
            raise UserError(f"components of {where or 'a sample'} must be a JSON object name -> value, got {value[:80]!r}")
        return {str(k): float(v) for k, v in parsed.items() if v is not None}
    raise UserError(f"components of {where or 'a sample'} have an unexpected type {type(value).__name__}")


def _require(df: pd.DataFrame, source: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise UserError(
            f"{source} samples lack column(s) {', '.join(missing)} (have: {', '.join(map(str, df.columns))}); "
            "re-run the notebook that wrote them"
        )


def _normalize(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Bring one source to the common columns; training's `completion` becomes `response`, its sample index is
    the order of completions of a prompt within a step."""
    import pandas as pd

    out = df.copy()
    if source == "training":
        _require(out, source, ("step", "prompt_id", "completion", "reward"))
        out = out.rename(columns={"completion": "response"})
        if "sample" not in out.columns:
            out["sample"] = out.groupby(["step", "prompt_id"], sort=False).cumcount()
        out["step"] = out["step"].astype("Int64")
    else:
        _require(out, source, ("prompt_id", "sample", "response", "reward"))
        out["step"] = pd.array([pd.NA] * len(out), dtype="Int64")
    out["prompt_id"] = out["prompt_id"].astype(str)
    out["sample"] = out["sample"].astype(int)
    out["source"] = source
    for col in COLUMNS:
        if col not in out.columns:
            out[col] = None
    out["key"] = [sample_key(source, s, p, i) for s, p, i in zip(out["step"], out["prompt_id"], out["sample"], strict=True)]
    dup = out["key"].duplicated(keep=False)
    if dup.any():
        raise UserError(
            f"{source} samples repeat the sample {out.loc[dup, 'key'].iloc[0]!r} ({int(dup.sum())} rows); "
            "each (step, prompt_id, sample) must appear once"
        )
    return out[list(COLUMNS)]


def sample_key(source: str, step: Any, prompt_id: str, sample: int) -> str:
    """Stable id of a sample across re-runs: `baseline/<prompt_id>/<sample>`, `training/step<N>/<prompt_id>/<sample>`."""
    import pandas as pd

    middle = "" if step is None or pd.isna(step) else f"step{int(step)}/"
    return f"{source}/{middle}{prompt_id}/{int(sample)}"


def bucket_of(reward: float, status: Any, high: float, low: float) -> str:
    """Reward bucket of the project's convention (high >= 0.8, low < 0.2); failed scoring is `error`."""
    if (status is not None and status == status and str(status) != "ok") or not math.isfinite(reward):
        return "error"
    return "high" if reward >= high else "low" if reward < low else "medium"


def component_role(name: str, value: float) -> str:
    """measure, error, format or content: how a component's value bears on a failure (see MEASURE_WORDS)."""
    lowered = name.lower()
    if any(w in lowered for w in ERROR_WORDS):
        return "error"
    if any(w in lowered for w in MEASURE_WORDS) or not 0.0 <= value <= 1.0:
        return "measure"
    return "format" if any(w in lowered for w in FORMAT_WORDS) else "content"


def failed_components(comps: dict[str, float], low: float) -> list[tuple[str, str]]:
    """(name, role) of each component that failed: error flags above 0, scores below `low`."""
    out = []
    for name, value in comps.items():
        role = component_role(name, value)
        if (role == "error" and value > 0) or (role in ("format", "content") and value < low):
            out.append((name, role))
    return out


def failure_of(row: Any, pass_threshold: float, low: float) -> tuple[str | None, str]:
    """(failure kind, failed component names) for a sample below the pass threshold; (None, "") for a pass.

    Precedence follows cause: scoring failed (status or an error flag) > output truncated > a format
    component failed > a content component failed > nothing in the components explains the low reward
    (`unexplained`: a reward worth checking).
    """
    status = row.status
    if status is not None and status == status and str(status) != "ok":
        return "reward error", ""
    if math.isfinite(row.reward) and row.reward >= pass_threshold:
        return None, ""
    failed = failed_components(parse_components(row.components, row.key), low)
    names = ", ".join(name for name, _ in failed)
    roles = {role for _, role in failed}
    if "error" in roles:
        return "reward error", names
    if row.finish_reason == "length":
        return "truncated", names
    if "format" in roles:
        return "format", names
    if "content" in roles:
        return "logic", names
    return "unexplained", names


def _pair(frame: pd.DataFrame, tol: float) -> pd.DataFrame:
    """For baseline and tuned rows: the other model's reward/response for the same (prompt_id, sample)."""
    import numpy as np

    frame["partner_reward"] = np.nan
    frame["partner_response"] = None
    frame["change"] = None
    base = frame[frame["source"] == "baseline"].set_index(["prompt_id", "sample"])
    tuned = frame[frame["source"] == "tuned"].set_index(["prompt_id", "sample"])
    if base.empty or tuned.empty:
        return frame
    for side, other in (("baseline", tuned), ("tuned", base)):
        mask = frame["source"] == side
        idx = list(zip(frame.loc[mask, "prompt_id"], frame.loc[mask, "sample"], strict=True))
        partner = other.reindex(idx)
        frame.loc[mask, "partner_reward"] = partner["reward"].to_numpy(dtype=float)
        frame.loc[mask, "partner_response"] = partner["response"].to_numpy(dtype=object)
    t_reward = np.where(frame["source"] == "tuned", frame["reward"], frame["partner_reward"])
    b_reward = np.where(frame["source"] == "tuned", frame["partner_reward"], frame["reward"])
    diff = t_reward - b_reward
    has = (frame["source"] != "training") & np.isfinite(diff)
    text_changed = frame["response"].astype(str) != frame["partner_response"].astype(str)
    change = np.where(diff > tol, "improved", np.where(diff < -tol, "regressed",
                      np.where(text_changed, "text changed", "same")))
    frame.loc[has, "change"] = change[has.to_numpy()]
    return frame


def review_frame(
    sources: dict[str, pd.DataFrame],
    high: float = 0.8,
    low: float = 0.2,
    pass_threshold: float | None = None,
    tol: float = 1e-9,
    records: list[dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """Combine the sources into one frame with key, bucket, failure kind, failed components and change.

    `pass_threshold` (default `high`) decides which samples count as failures for the failure buckets.
    `records` (the run's data) give training samples their reference answer, which the training
    completions do not carry.
    """
    import pandas as pd

    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise UserError(f"unknown sample source(s) {sorted(unknown)}; sources are {', '.join(SOURCES)}")
    parts = [_normalize(df, name) for name, df in sources.items() if df is not None and len(df)]
    if not parts:
        raise UserError("no samples to review: run notebook 03 (baseline), 04 (training) or 06 (tuned) first")
    frame = pd.concat(parts, ignore_index=True)
    frame["reward"] = frame["reward"].astype(float)
    threshold = high if pass_threshold is None else pass_threshold
    rows = list(frame.itertuples(index=False))
    frame["bucket"] = [bucket_of(r.reward, r.status, high, low) for r in rows]
    failures = [failure_of(r, threshold, low) for r in rows]
    frame["failure"] = [f[0] for f in failures]
    frame["failed_components"] = [f[1] for f in failures]
    if records:
        _fill_references(frame, records)
    return _pair(frame, tol)


def _fill_references(frame: pd.DataFrame, records: list[dict[str, Any]]) -> None:
    """Training samples' reference answers from their data records (by record id), as JSON text like the
    baseline's and tuned samples' `reference` column."""
    from nbkit.rewards.contract import record_id

    references = {record_id(r): json.dumps(r.get("reference_answer"), sort_keys=True, ensure_ascii=False, default=str)
                  for r in records if r.get("reference_answer") is not None}
    missing = frame["reference"].isna() | (frame["reference"].astype(str) == "")
    frame.loc[missing, "reference"] = frame.loc[missing, "prompt_id"].map(references)


def run_pass_threshold(run_dir: str | Path, override: float | None = None, default: float = 0.8) -> float:
    """The pass threshold the run used: the override (0/None: none), else 06's comparison.json, else 03's
    summary.json, else `default`."""
    if override:
        return float(override)
    from nbkit.layout import RunLayout

    return RunLayout(run_dir).pass_threshold(default) or default


def run_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """The run's train and eval records (whichever exist), to export flagged samples with their full prompt."""
    from nbkit.data import io

    records = []
    for split in io.SPLITS:
        if io.split_path(run_dir, split).exists():
            records.extend(io.load_split(run_dir, split))
    return records


def load_review_frame(run_dir: str | Path, high: float = 0.8, low: float = 0.2,
                      pass_threshold: float | None = None) -> pd.DataFrame:
    """`review_frame` over everything the run folder holds (its data records give the references)."""
    return review_frame(load_sources(run_dir), high=high, low=low, pass_threshold=pass_threshold,
                        records=run_records(run_dir))


def prompt_history(frame: pd.DataFrame, prompt_id: str) -> pd.DataFrame:
    """One prompt followed across models and training steps: baseline, each logged step, tuned, in order."""
    rows = frame[frame["prompt_id"] == str(prompt_id)].copy()
    order = {"baseline": 0, "training": 1, "tuned": 2}
    rows["_order"] = rows["source"].map(order)
    rows["_step"] = rows["step"].fillna(-1).astype(int)
    rows = rows.sort_values(["_order", "_step", "sample"]).drop(columns=["_order", "_step"])
    return rows[["key", "source", "step", "sample", "reward", "bucket", "failure", "response"]].reset_index(drop=True)


def history_summary(frame: pd.DataFrame, prompt_id: str) -> pd.DataFrame:
    """Mean reward and sample count of one prompt per (source, step): the prompt's learning curve."""
    hist = prompt_history(frame, prompt_id)
    if hist.empty:
        return hist
    hist["step"] = hist["step"].astype(object).where(hist["step"].notna(), "")
    grouped = hist.groupby(["source", "step"], sort=False)
    return grouped.agg(samples=("reward", "size"), mean_reward=("reward", "mean"),
                       best=("reward", "max"), worst=("reward", "min")).reset_index()
