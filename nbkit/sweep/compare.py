"""Comparing runs: the headline numbers of each, the tuned-vs-base difference with its interval, and which
configuration is best, stated no stronger than the evidence.

Used by `nbkit sweep` (DIR/sweep.json, DIR/index.html) and by notebook 08 (any set of run folders). Runs
evaluated on the same eval prompts are compared pairwise on their per-prompt mean rewards (paired bootstrap
interval, sign-flip permutation p-value); picking the best of several is a family of tests, so the p-values
of "best vs each other" are Holm-adjusted. With seeds, points that differ only in the seed form one
configuration: its mean and spread across seeds, and prompts averaged over seeds for the tests.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbkit import runner
from nbkit.errors import UserError
from nbkit.layout import RunLayout
from nbkit.params import CompareRunsParams

if TYPE_CHECKING:
    import pandas as pd

ALPHA = 0.05


@dataclass
class RunRecord:
    """One run folder's headline numbers (None where the run has not produced them)."""

    name: str
    folder: Path
    settings: dict[str, Any]
    seed: int | None
    status: str
    metrics: dict[str, float | None]

    @property
    def config(self) -> str:
        """The run's settings without its seed: runs that differ only in the seed are one configuration."""
        shown = {k: v for k, v in self.settings.items() if not k.endswith(".seed")}
        return ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in shown.items()) or self.name

    def to_dict(self, relative_to: Path | None = None) -> dict[str, Any]:
        folder = self.folder
        if relative_to is not None:
            with contextlib.suppress(ValueError):
                folder = folder.relative_to(relative_to)
        return {"name": self.name, "settings": self.settings, "seed": self.seed, "status": self.status,
                "run_folder": str(folder), "metrics": self.metrics}


def read_run(folder: Path, name: str = "", settings: dict[str, Any] | None = None,
             seed: int | None = None) -> RunRecord:
    """The headline numbers of a run folder: training, validation, tuned vs base, time and cost."""
    layout = RunLayout(folder)
    statuses = runner.read_statuses(folder) if folder.exists() else []
    metrics: dict[str, float | None] = {}
    metrics |= _training_metrics(layout)
    metrics |= _comparison_metrics(layout)
    metrics["wall_s"] = round(sum(float(s.get("duration_s") or 0) for s in statuses), 1) or None
    return RunRecord(name or folder.name, folder, settings or {}, seed, _status(statuses), metrics)


def _status(statuses: list[dict[str, Any]]) -> str:
    # the notebook that compares runs reads them: its own state (running, as it reads its own run) is not the run's
    statuses = [s for s in statuses if s["notebook"] != CompareRunsParams.notebook]
    if not statuses:
        return "not run"
    bad = next((s for s in statuses if s["status"] != "ok" or s.get("stale")), None)
    if bad is None:
        return "ok"
    state = "stale" if bad["status"] == "ok" else bad["status"]
    return f"{state} at {bad['notebook'][:2]}"


def _training_metrics(layout: RunLayout) -> dict[str, float | None]:
    """Steps, final training reward, final and best validation reward (05's frame, else the job's log)."""
    frame = _metrics_frame(layout)
    out: dict[str, float | None] = {"steps": None, "final_train_reward": None, "final_val_reward": None,
                                    "best_val_reward": None, "best_val_step": None}
    if frame is None or frame.empty:
        return out | _job_metrics(layout)
    out["steps"] = float(frame["step"].max())
    if "reward_mean" in frame:
        tail = frame["reward_mean"].dropna()
        out["final_train_reward"] = float(tail.iloc[-max(1, len(tail) // 10):].mean()) if len(tail) else None
    if "val_reward" in frame:
        val = frame[["step", "val_reward"]].dropna()
        if len(val):
            best = val.loc[val["val_reward"].idxmax()]
            out |= {"final_val_reward": float(val["val_reward"].iloc[-1]), "best_val_reward": float(best["val_reward"]),
                    "best_val_step": float(best["step"])}
    return out | _job_metrics(layout)


def _metrics_frame(layout: RunLayout) -> pd.DataFrame | None:
    import pandas as pd

    if layout.metrics.is_file():
        return pd.read_parquet(layout.metrics)
    return None


def _job_metrics(layout: RunLayout) -> dict[str, float | None]:
    """Training time and the cost estimate, from the job record."""
    try:
        record = json.loads(layout.job_record.read_text())
    except (OSError, ValueError):
        return {"train_s": None, "cost_usd": None}
    derived = record.get("derived") or {}
    seconds = None
    status = layout.training / "job" / "status.json"
    if status.is_file():
        seconds = json.loads(status.read_text()).get("seconds")
    cost = derived.get("cost_usd")
    return {"train_s": float(seconds) if seconds is not None else None,
            "cost_usd": float(cost) if isinstance(cost, int | float) else None}


def _comparison_metrics(layout: RunLayout) -> dict[str, float | None]:
    if not layout.comparison.is_file():
        return {k: None for k in ("base_reward", "tuned_reward", "diff", "diff_lo", "diff_hi", "p_value",
                                  "base_pass_rate", "tuned_pass_rate")}
    c = layout.read_comparison()
    reward, passes = c.get("reward", {}), c.get("pass_rate", {})
    return {
        "base_reward": reward["base"]["estimate"], "tuned_reward": reward["tuned"]["estimate"],
        "diff": reward["diff"]["estimate"], "diff_lo": reward["diff"]["lo"], "diff_hi": reward["diff"]["hi"],
        "p_value": reward.get("p_value"), "base_pass_rate": passes.get("base", {}).get("estimate"),
        "tuned_pass_rate": passes.get("tuned", {}).get("estimate"),
    }


# ------------------------------------------------------------------------------------------ comparing


@dataclass
class Contest:
    """The best configuration against one other: paired difference of tuned per-prompt means."""

    other: str
    diff: float
    lo: float
    hi: float
    p_value: float
    p_holm: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"other": self.other, "diff": self.diff, "lo": self.lo, "hi": self.hi, "p_value": self.p_value,
                "p_holm": self.p_holm}


@dataclass
class RunsComparison:
    """Every run's numbers, per-configuration mean and spread over seeds, and the best configuration."""

    runs: list[RunRecord]
    configs: list[dict[str, Any]] = field(default_factory=list)
    best: str | None = None
    contests: list[Contest] = field(default_factory=list)
    alpha: float = ALPHA

    def verdict(self) -> str:
        """The best configuration and how sure: the Holm-adjusted tests against every other one."""
        if self.best is None:
            return "No run has a tuned-vs-base comparison yet (notebook 06): nothing to rank."
        best = next(c for c in self.configs if c["config"] == self.best)
        text = f"Best: {self.best} (tuned mean reward {best['tuned_mean']:.3f}"
        if best["seeds"] > 1:
            text += f", {best['seeds']} seeds, spread {best['tuned_sd']:.3f}"
        text += ")."
        if not self.contests:
            return text
        clear = [c for c in self.contests if c.p_holm < self.alpha]
        unclear = [c for c in self.contests if c.p_holm >= self.alpha]
        if clear:
            text += " Significantly better than " + "; ".join(
                f"{c.other} (+{c.diff:.3f}, 95% CI {c.lo:+.3f} to {c.hi:+.3f}, Holm p = {c.p_holm:.3g})" for c in clear
            ) + "."
        if unclear:
            text += " Not distinguishable from " + "; ".join(
                f"{c.other} ({c.diff:+.3f}, 95% CI {c.lo:+.3f} to {c.hi:+.3f}, Holm p = {c.p_holm:.3g})"
                for c in unclear) + ": picking it over them rests on noise."
        tests = f"{len(self.contests)} comparison{'s' if len(self.contests) > 1 else ''}"
        return text + f" {tests}, Holm-adjusted (picking the best of several overstates raw p-values)."

    def headline(self) -> str:
        ok = sum(r.status == "ok" for r in self.runs)
        return f"{len(self.runs)} run(s), {ok} complete. {self.verdict()}"

    def to_dict(self, relative_to: Path | None = None) -> dict[str, Any]:
        return {"runs": [r.to_dict(relative_to) for r in self.runs], "configs": self.configs, "best": self.best,
                "contests": [c.to_dict() for c in self.contests], "alpha": self.alpha, "verdict": self.verdict()}

    def table(self) -> pd.DataFrame:
        """One row per run: its settings, status and headline numbers."""
        import pandas as pd

        rows = []
        for r in self.runs:
            row = {"run": r.name, **{k.rsplit(".", 1)[-1]: v for k, v in r.settings.items()}, "status": r.status}
            row |= {k: r.metrics.get(k) for k in ("steps", "final_train_reward", "best_val_reward", "base_reward",
                                                   "tuned_reward", "diff", "diff_lo", "diff_hi", "tuned_pass_rate",
                                                   "wall_s", "cost_usd")}
            rows.append(row)
        return pd.DataFrame(rows)


def compare_runs(runs: list[RunRecord], n_boot: int = 2000, seed: int = 0, alpha: float = ALPHA) -> RunsComparison:
    """Group runs into configurations, find the best by tuned mean reward, and test it against the rest."""
    import numpy as np

    from nbkit.evaluate.stats import holm, paired_bootstrap_diff, sign_flip_pvalue

    result = RunsComparison(runs, alpha=alpha)
    prompts = {r.name: _prompt_means(r.folder) for r in runs}
    groups: dict[str, list[RunRecord]] = {}
    for r in runs:
        if prompts[r.name] is not None and r.metrics.get("tuned_reward") is not None:
            groups.setdefault(r.config, []).append(r)
    for config, members in groups.items():
        tuned = np.array([m.metrics["tuned_reward"] for m in members], dtype=float)
        diff = np.array([m.metrics["diff"] for m in members], dtype=float)
        result.configs.append({
            "config": config, "runs": [m.name for m in members], "seeds": len(members),
            "tuned_mean": float(tuned.mean()), "tuned_sd": float(tuned.std(ddof=1)) if len(members) > 1 else 0.0,
            "diff_mean": float(diff.mean()), "diff_sd": float(diff.std(ddof=1)) if len(members) > 1 else 0.0,
            "tuned_min": float(tuned.min()), "tuned_max": float(tuned.max()),
        })
    if not result.configs:
        return result
    result.configs.sort(key=lambda c: c["tuned_mean"], reverse=True)
    result.best = result.configs[0]["config"]
    means = {config: _config_means([prompts[m.name] for m in members]) for config, members in groups.items()}
    best = means[result.best]
    for other in result.configs[1:]:
        paired = best.join(means[other["config"]], how="inner", lsuffix="_best", rsuffix="_other").dropna()
        if paired.empty:
            continue
        b, o = paired.iloc[:, 0].to_numpy(), paired.iloc[:, 1].to_numpy()
        estimate, lo, hi = paired_bootstrap_diff(o, b, n_boot=n_boot, seed=seed, alpha=alpha)
        result.contests.append(Contest(other["config"], estimate, lo, hi, sign_flip_pvalue(o, b, seed=seed)))
    for contest, adjusted in zip(result.contests, holm([c.p_value for c in result.contests]), strict=True):
        contest.p_holm = adjusted
    return result


def _prompt_means(folder: Path) -> pd.Series | None:
    """Per-prompt mean reward of the run's tuned model (None before notebook 06 ran)."""
    import pandas as pd

    path = RunLayout(folder).tuned_samples
    if not path.is_file():
        return None
    frame = pd.read_parquet(path, columns=["prompt_id", "reward"])
    return frame.groupby(frame["prompt_id"].astype(str))["reward"].mean()


def _config_means(series: list[pd.Series | None]) -> pd.DataFrame:
    """Per-prompt means averaged over a configuration's seeds (one column)."""
    import pandas as pd

    present = [s for s in series if s is not None]
    return pd.concat(present, axis=1).mean(axis=1).to_frame("mean")


# ------------------------------------------------------------------------------------------- notebook 08


def runs_of(spec: str, run_dir: str | Path) -> list[RunRecord]:
    """The runs a comparison covers: a sweep folder (its sweep.json), comma-separated run folders, or, when
    empty, the sweep this run belongs to (else this run alone)."""
    layout = RunLayout(run_dir)
    if not spec.strip():
        sweep = next((p for p in [layout.root.parent.parent] if (p / "sweep.json").is_file()), None)
        return runs_of(str(sweep), run_dir) if sweep is not None else [read_run(layout.root)]
    folders = [Path(s.strip()) for s in spec.split(",") if s.strip()]
    folders = [f if f.is_absolute() else RunLayout(f).root for f in folders]
    if len(folders) == 1 and (folders[0] / "sweep.json").is_file():
        data = json.loads((folders[0] / "sweep.json").read_text())
        return [read_run(folders[0] / r["run_folder"], r["name"], r["settings"], r.get("seed")) for r in data["runs"]]
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise UserError(f"run folder(s) not found: {', '.join(missing)}; give run folders (runs/<name>) or a sweep "
                        "folder holding sweep.json, separated by commas")
    return [read_run(f) for f in folders]


def run(P: CompareRunsParams) -> RunsComparison:
    """Notebook 08's stage: compare the runs `P.runs` names (see `runs_of`)."""
    return compare_runs(runs_of(P.runs, P.run_dir), n_boot=P.n_boot, seed=P.seed, alpha=P.alpha)
