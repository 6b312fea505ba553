"""Static tables for reports (widgets render blank in HTML): most improved, most regressed, lowest-scoring
samples, and failure buckets by reward component."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nbkit.plain import clip_words
from nbkit.review.frame import FAILURE_KINDS

if TYPE_CHECKING:
    import pandas as pd

TEXT_WIDTH = 300  # characters of a prompt or response in a report table (cut between words, the rest counted)


def _short(text: object, width: int = TEXT_WIDTH) -> str:
    return clip_words(text, width)


def per_prompt_changes(frame: pd.DataFrame) -> pd.DataFrame:
    """Per prompt in both baseline and tuned: mean rewards, difference, and the best and worst response of each
    side (a regression is best read as base-best vs tuned-worst; an improvement as base-worst vs tuned-best)."""
    import pandas as pd

    both = frame[frame["source"].isin(["baseline", "tuned"])]
    if both.empty or both["source"].nunique() < 2:
        return pd.DataFrame(columns=["prompt_id", "prompt", "base_mean", "tuned_mean", "diff"])
    ordered = both.sort_values(["reward", "sample"], ascending=[False, True])
    g = ordered.groupby(["prompt_id", "source"], sort=False)
    stats = g.agg(mean=("reward", "mean"), best=("response", "first"), worst=("response", "last"),
                  prompt=("prompt", "first"), samples=("reward", "size")).unstack("source")
    stats = stats.dropna(subset=[("mean", "baseline"), ("mean", "tuned")])
    out = pd.DataFrame({
        "prompt_id": stats.index,
        "prompt": stats[("prompt", "baseline")].to_numpy(),
        "samples": stats[("samples", "baseline")].astype(int).to_numpy(),
        "base_mean": stats[("mean", "baseline")].to_numpy(dtype=float),
        "tuned_mean": stats[("mean", "tuned")].to_numpy(dtype=float),
        "base_best": stats[("best", "baseline")].to_numpy(),
        "base_worst": stats[("worst", "baseline")].to_numpy(),
        "tuned_best": stats[("best", "tuned")].to_numpy(),
        "tuned_worst": stats[("worst", "tuned")].to_numpy(),
    })
    out["diff"] = out["tuned_mean"] - out["base_mean"]
    return out.reset_index(drop=True)


def most_improved(frame: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """Prompts whose mean reward rose most, with the base's worst and the tuned model's best response."""
    changes = per_prompt_changes(frame)
    top = changes[changes["diff"] > 0].sort_values(["diff", "prompt_id"], ascending=[False, True]).head(n)
    return _view(top, "base_worst", "tuned_best")


def most_regressed(frame: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """Prompts whose mean reward fell most, with the base's best and the tuned model's worst response."""
    changes = per_prompt_changes(frame)
    top = changes[changes["diff"] < 0].sort_values(["diff", "prompt_id"]).head(n)
    return _view(top, "base_best", "tuned_worst")


def _view(top: pd.DataFrame, base_col: str, tuned_col: str) -> pd.DataFrame:
    out = top[["prompt_id", "prompt", "samples", "base_mean", "tuned_mean", "diff"]].copy()
    out["prompt"] = out["prompt"].map(_short)
    out["base_response"] = top[base_col].map(_short)
    out["tuned_response"] = top[tuned_col].map(_short)
    return out.reset_index(drop=True)


def lowest_scoring(frame: pd.DataFrame, source: str = "tuned", n: int = 10) -> pd.DataFrame:
    """The n lowest-reward samples of one source, with why they failed (failure kind, failed components)."""
    rows = frame[frame["source"] == source].sort_values(["reward", "key"], na_position="first").head(n)
    out = rows[["key", "prompt_id", "prompt", "response", "reward", "bucket", "failure", "failed_components"]].copy()
    out["prompt"] = out["prompt"].map(_short)
    out["response"] = out["response"].map(_short)
    return out.reset_index(drop=True)


def failure_buckets(frame: pd.DataFrame) -> pd.DataFrame:
    """Count and share of samples per failure kind for each source (passes included, as `pass`)."""
    import pandas as pd

    kinds = frame["failure"].fillna("pass")
    table = pd.crosstab(kinds, frame["source"]).reindex(["pass", *FAILURE_KINDS], fill_value=0)
    table = table[[s for s in ("baseline", "training", "tuned") if s in table.columns]]
    shares = table / table.sum()
    out = table.astype(int).astype(str) + " (" + (shares * 100).round(1).astype(str) + "%)"
    out.index.name = "failure"
    out.columns.name = None
    return out.reset_index()


def component_failures(frame: pd.DataFrame) -> pd.DataFrame:
    """How often each reward component failed (below the low bucket) per source: which check is the problem."""
    import pandas as pd

    failed = frame[frame["failed_components"].astype(str) != ""]
    if failed.empty:
        return pd.DataFrame(columns=["component"])
    exploded = failed.assign(component=failed["failed_components"].str.split(", ")).explode("component")
    table = pd.crosstab(exploded["component"], exploded["source"])
    table["total"] = table.sum(axis=1)
    table.columns.name = None
    return table.sort_values(["total"], ascending=False, kind="stable").reset_index()


def _html_table(title: str, frame: pd.DataFrame) -> str:
    from nbkit.display import table

    return table(frame, title=title).to_html()


def report_tables(frame: pd.DataFrame, n: int = 10) -> dict[str, pd.DataFrame]:
    """The report's tables by title, only those the available sources can fill."""
    sources = set(frame["source"])
    tables = {}
    if {"baseline", "tuned"} <= sources:
        tables["Most improved prompts (tuned vs base)"] = most_improved(frame, n)
        tables["Most regressed prompts (tuned vs base)"] = most_regressed(frame, n)
    for source in ("tuned", "baseline", "training"):
        if source in sources:
            tables[f"Lowest-scoring {source} samples"] = lowest_scoring(frame, source, n)
            break
    tables["Failure buckets (which check failed; format vs logic)"] = failure_buckets(frame)
    tables["Failed reward components"] = component_failures(frame)
    return tables


def report_html(frame: pd.DataFrame, n: int = 10) -> str:
    """All report tables as one HTML block for the run index."""
    return "\n".join(_html_table(title, table) for title, table in report_tables(frame, n).items())


def headline_text(frame: pd.DataFrame, annotations: pd.DataFrame | None = None) -> str:
    """One sentence for the run index: what was reviewed, how many prompts moved, the main failure kind."""
    counts = frame["source"].value_counts()
    parts = [f"{counts.get(s, 0)} {s}" for s in ("baseline", "tuned", "training") if counts.get(s, 0)]
    text = f"Reviewed {len(frame)} samples ({', '.join(parts)})"
    changes = per_prompt_changes(frame)
    if len(changes):
        up, down = int((changes["diff"] > 0).sum()), int((changes["diff"] < 0).sum())
        text += f"; of {len(changes)} eval prompts {up} improved and {down} regressed"
    for source in ("tuned", "baseline", "training"):
        failures = frame.loc[frame["source"] == source, "failure"].dropna()
        if len(failures):
            top = failures.value_counts().sort_index().sort_values(ascending=False, kind="stable")  # ties by name
            share = top.iloc[0] / (frame["source"] == source).sum()
            text += f"; most common {source} failure: {top.index[0]} ({share:.0%} of its samples)"
            break
    if annotations is not None:
        flagged = int(annotations["flagged"].fillna(False).astype(bool).sum()) if len(annotations) else 0
        text += f"; {len(annotations)} annotated, {flagged} flagged"
    return text + "."
