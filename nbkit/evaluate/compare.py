"""Base vs tuned on the same prompts: paired statistics, breakdowns, regressions and a verdict sentence.

The unit of analysis is the prompt: the k samples of a prompt are averaged first, then prompts are paired by
`prompt_id`, so prompt difficulty (the largest source of variance) cancels out of every difference.
"""

from __future__ import annotations

import html as html_lib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nbkit.errors import UserError
from nbkit.evaluate import stats
from nbkit.layout import SAMPLES
from nbkit.plain import json_safe

if TYPE_CHECKING:
    import pandas as pd

REQUIRED = ("prompt_id", "sample", "reward")
GROUP_COLUMNS = ("domain", "difficulty_level")
_KEEP = ("prompt", "reference") + GROUP_COLUMNS


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval; `significant` means the interval excludes 0."""

    estimate: float
    lo: float
    hi: float

    @property
    def significant(self) -> bool:
        return self.lo > 0 or self.hi < 0

    def to_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "lo": self.lo, "hi": self.hi}


@dataclass
class Comparison:
    """Everything `compare` found; `to_dict()` is what `<run>/tuned/comparison.json` holds."""

    n_prompts: int
    samples_per_prompt: dict[str, int]
    pass_threshold: float
    alpha: float
    n_boot: int
    seed: int
    base_reward: Interval
    tuned_reward: Interval
    reward_diff: Interval
    reward_p_value: float
    base_pass_rate: Interval
    tuned_pass_rate: Interval
    pass_rate_diff: Interval
    pass_test: dict[str, Any]
    solved: stats.McNemar
    win_tie_loss: dict[str, Any]
    pass_at_k: pd.DataFrame
    breakdown: dict[str, pd.DataFrame]
    per_prompt: pd.DataFrame
    regressions: pd.DataFrame
    statuses: dict[str, dict[str, int]]
    failed_samples: dict[str, int]
    unmatched: dict[str, list[str]] = field(default_factory=dict)
    tests: pd.DataFrame = field(default_factory=lambda: _no_tests())  # every test of the table (set by compare)
    mismatches: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)  # how the comparison was made (nbkit.provenance)
    verdict: str = ""

    @property
    def significant(self) -> bool:
        """Whether the mean reward changed significantly after the Holm adjustment over the table's tests."""
        return bool(self._row("mean")["significant"])

    def _row(self, key: str) -> dict[str, Any]:
        return self.tests.set_index("key").loc[key].to_dict()

    @property
    def changes(self) -> pd.DataFrame:
        """The changes significant after the Holm adjustment (either direction), in table order; the pass rate
        is named even when it repeats the mean reward's test (it says it in other words), pass@1 never."""
        t = self.tests
        return t[t["significant"] & (t["counted"] | (t["key"] == "pass_rate"))].reset_index(drop=True)

    def summary_frame(self) -> pd.DataFrame:
        """One row per headline metric: base, tuned, difference, its interval, the test's p-value and the
        Holm-adjusted one (over every test of the comparison, breakdown rows included)."""
        level = f"{1 - self.alpha:.0%}"
        t = self.tests[self.tests["group"] == ""]
        return t.assign(**{f"{level} lo": t["lo"], f"{level} hi": t["hi"]})[
            ["metric", "base", "tuned", "diff", f"{level} lo", f"{level} hi", "p_value", "p_holm", "significant",
             "method"]].reset_index(drop=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (NaN -> null) record of the comparison, frames as lists of rows."""
        out = {
            "verdict": self.verdict,
            "significant": self.significant,
            "n_prompts": self.n_prompts,
            "samples_per_prompt": self.samples_per_prompt,
            "pass_threshold": self.pass_threshold,
            "alpha": self.alpha,
            "n_boot": self.n_boot,
            "seed": self.seed,
            "reward": {
                "base": self.base_reward.to_dict(),
                "tuned": self.tuned_reward.to_dict(),
                "diff": self.reward_diff.to_dict(),
                "p_value": self.reward_p_value,
                "p_holm": self._row("mean")["p_holm"],
                "significant": self.significant,
            },
            "pass_rate": {
                "base": self.base_pass_rate.to_dict(),
                "tuned": self.tuned_pass_rate.to_dict(),
                "diff": self.pass_rate_diff.to_dict(),
                "p_holm": self._row("pass_rate")["p_holm"],
                "significant": bool(self._row("pass_rate")["significant"]),
                **self.pass_test,
            },
            "solved_table": self.solved.to_dict(),
            "win_tie_loss": self.win_tie_loss,
            "pass_at_k": _records(self.pass_at_k),
            "breakdown": {col: _records(frame) for col, frame in self.breakdown.items()},
            "regressions": _records(self.regressions),
            "per_prompt": _records(self.per_prompt),
            "statuses": self.statuses,
            "failed_samples": self.failed_samples,
            "unmatched": self.unmatched,
            "multiple_comparisons": {"method": "Holm", "tests": int(self.tests["counted"].sum()),
                                     "alpha": self.alpha},
            "tests": _records(self.tests),
            "significant_changes": [describe_change(r) for r in self.changes.to_dict(orient="records")],
            "mismatches": self.mismatches,
            "provenance": self.provenance,
        }
        return json_safe(out)

    def save(self, path: str | Path) -> None:
        """Write `to_dict()` as indented JSON (comparison.json)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    def to_html(self, max_regressions: int = 10) -> str:
        """Static report block: verdict, summary table, breakdowns and the worst regressions."""
        parts = [f"<p><b>{html_lib.escape(self.verdict)}</b></p>", _table(self.summary_frame())]
        for col, frame in self.breakdown.items():
            parts.append(f"<p>By {html_lib.escape(col)}</p>{_table(frame)}")
        if len(self.regressions):
            cols = [c for c in ("prompt_id", "prompt", "base_mean", "tuned_mean", "diff") if c in self.regressions]
            parts.append(f"<p>Regressions ({_count(len(self.regressions), 'prompt')}, worst first)</p>")
            parts.append(_table(self.regressions[cols].head(max_regressions)))
        return "\n".join(parts)


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", escape=True, border=0)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [json_safe(row) for row in frame.to_dict(orient="records")]


# --- preparing the frames ---------------------------------------------------------------------------------

def _check_frame(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Required columns present, (prompt_id, sample) unique; prompt ids as strings so int/str ids pair."""
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise UserError(
            f"{name} samples frame lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, df.columns))}); "
            "pass the samples.parquet written by nbkit.evaluate.sample_and_score"
        )
    if len(df) == 0:
        raise UserError(f"{name} samples frame is empty: nothing to compare")
    out = df.copy()
    out["prompt_id"] = out["prompt_id"].astype(str)
    dup = out.duplicated(["prompt_id", "sample"], keep=False)
    if dup.any():
        first = out.loc[dup, ["prompt_id", "sample"]].iloc[0].tolist()
        raise UserError(
            f"{name} samples frame has {int(dup.sum())} rows with a repeated (prompt_id, sample), first {first}; "
            "each sample of a prompt must appear once (were two runs concatenated?)"
        )
    return out


def _fill_failures(df: pd.DataFrame, failed_reward: float | None, name: str) -> tuple[pd.DataFrame, int]:
    """Non-finite rewards (failed scoring) count as `failed_reward`, never dropped, and are counted."""
    reward = df["reward"].astype(float)
    bad = ~np.isfinite(reward.to_numpy())
    if bad.any() and failed_reward is None:
        ids = df.loc[bad, "prompt_id"].head(3).tolist()
        raise UserError(
            f"{name}: {int(bad.sum())} sample(s) have no finite reward (e.g. prompts {ids}); "
            "pass failed_reward=0.0 to count failures as a score of 0, or fix the reward"
        )
    df = df.assign(reward=np.where(bad, failed_reward if failed_reward is not None else 0.0, reward))
    return df, int(bad.sum())


def _per_prompt(df: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per prompt: number of samples, mean reward, passes, pass rate, plus descriptive columns."""
    import pandas as pd

    df = df.assign(passed=df["reward"] >= threshold)
    grouped = df.groupby("prompt_id", sort=True)
    out = pd.DataFrame(
        {
            "n": grouped["reward"].size(),
            "mean": grouped["reward"].mean(),
            "passes": grouped["passed"].sum().astype(int),
        }
    )
    out["pass_rate"] = out["passes"] / out["n"]
    for col in _KEEP:
        if col in df.columns:
            out[col] = grouped[col].first()
    if "response" in df.columns:
        worst = df.sort_values(["prompt_id", "reward", "sample"], ascending=[True, True, True])
        best = df.sort_values(["prompt_id", "reward", "sample"], ascending=[True, False, True])
        out["worst_response"] = worst.groupby("prompt_id")["response"].first()
        out["best_response"] = best.groupby("prompt_id")["response"].first()
    return out


def _align(base: pd.DataFrame, tuned: pd.DataFrame, allow_unmatched: bool) -> tuple[list[str], dict[str, list[str]]]:
    only_base = sorted(set(base.index) - set(tuned.index))
    only_tuned = sorted(set(tuned.index) - set(base.index))
    common = sorted(set(base.index) & set(tuned.index))
    if not common:
        raise UserError(
            "base and tuned samples share no prompt_id: they were not generated on the same eval split "
            f"(base ids e.g. {list(base.index[:3])}, tuned ids e.g. {list(tuned.index[:3])})"
        )
    if (only_base or only_tuned) and not allow_unmatched:
        raise UserError(
            f"base and tuned cover different prompts: {len(only_base)} only in base (e.g. {only_base[:3]}), "
            f"{len(only_tuned)} only in tuned (e.g. {only_tuned[:3]}); evaluate both on the same eval split, "
            "or pass allow_unmatched=True to compare the common prompts (the others are listed in the result)"
        )
    return common, {"base_only": only_base, "tuned_only": only_tuned}


def _statuses(df: pd.DataFrame) -> dict[str, int]:
    if "status" not in df.columns:
        return {}
    return {str(k): int(v) for k, v in df["status"].value_counts().sort_index().items()}


# --- the comparison ---------------------------------------------------------------------------------------

def _pass_at_k_table(base: pd.DataFrame, tuned: pd.DataFrame, n_boot: int, seed: int, alpha: float) -> pd.DataFrame:
    """Mean unbiased pass@k over prompts for k = 1, 2, 4, ... up to the smallest sample count."""
    import pandas as pd

    k_max = int(min(base["n"].min(), tuned["n"].min()))
    ks = sorted({2**i for i in range(int(math.log2(k_max)) + 1)} | {k_max})
    rows = []
    for k in ks:
        b = np.asarray(stats.pass_at_k(base["n"].to_numpy(), base["passes"].to_numpy(), k), dtype=float)
        t = np.asarray(stats.pass_at_k(tuned["n"].to_numpy(), tuned["passes"].to_numpy(), k), dtype=float)
        diff, lo, hi = stats.paired_bootstrap_diff(b, t, n_boot=n_boot, seed=seed, alpha=alpha)
        # pass@k has no exact paired test: a sign-flip permutation test on the per-prompt values
        p = stats.sign_flip_pvalue(b, t, seed=seed)
        rows.append({"k": k, "base": float(b.mean()), "tuned": float(t.mean()), "diff": diff, "lo": lo, "hi": hi,
                     "p_value": p})
    return pd.DataFrame(rows)


def _outcome(diff: np.ndarray, tol: float) -> np.ndarray:
    return np.where(diff > tol, "win", np.where(diff < -tol, "loss", "tie"))


def _breakdown(pp: pd.DataFrame, col: str, n_boot: int, seed: int, alpha: float) -> pd.DataFrame:
    """Per group of `col`: prompts, means, difference with its paired interval, win/tie/loss."""
    import pandas as pd

    rows = []
    for value, g in pp.groupby(col, sort=True, dropna=False):
        diff, lo, hi = stats.paired_bootstrap_diff(g["base_mean"], g["tuned_mean"], n_boot=n_boot, seed=seed, alpha=alpha)
        rows.append(
            {
                col: "(missing)" if pd.isna(value) else value,
                "prompts": len(g),
                "base": float(g["base_mean"].mean()),
                "tuned": float(g["tuned_mean"].mean()),
                "diff": diff,
                "lo": lo,
                "hi": hi,
                "p_value": stats.sign_flip_pvalue(g["base_mean"], g["tuned_mean"], seed=seed),
                "base_pass_rate": float(g["base_pass_rate"].mean()),
                "tuned_pass_rate": float(g["tuned_pass_rate"].mean()),
                "wins": int((g["outcome"] == "win").sum()),
                "ties": int((g["outcome"] == "tie").sum()),
                "losses": int((g["outcome"] == "loss").sum()),
            }
        )
    return pd.DataFrame(rows)


def _paired_frame(base: pd.DataFrame, tuned: pd.DataFrame, common: list[str], tol: float) -> pd.DataFrame:
    import pandas as pd

    b, t = base.loc[common], tuned.loc[common]
    pp = pd.DataFrame(index=pd.Index(common, name="prompt_id"))
    for col in _KEEP:
        if col in b.columns or col in t.columns:
            left = b[col] if col in b.columns else pd.Series(index=b.index, dtype=object)
            pp[col] = left.combine_first(t[col]) if col in t.columns else left
    for side, frame in (("base", b), ("tuned", t)):
        pp[f"{side}_n"] = frame["n"]
        pp[f"{side}_mean"] = frame["mean"]
        pp[f"{side}_pass_rate"] = frame["pass_rate"]
    pp["diff"] = pp["tuned_mean"] - pp["base_mean"]
    pp["outcome"] = _outcome(pp["diff"].to_numpy(), tol)
    if "best_response" in b.columns:
        pp["base_best_response"] = b["best_response"]
    if "worst_response" in t.columns:
        pp["tuned_worst_response"] = t["worst_response"]
    return pp.reset_index()


def compare(
    base_df: pd.DataFrame,
    tuned_df: pd.DataFrame,
    pass_threshold: float = 0.8,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    tie_tolerance: float = 1e-9,
    failed_reward: float | None = 0.0,
    allow_unmatched: bool = False,
    group_by: tuple[str, ...] = GROUP_COLUMNS,
    allow_mismatch: bool = False,
) -> Comparison:
    """Compare tuned against base on the prompts both scored.

    Mean reward: paired bootstrap CI over prompts plus a sign-flip permutation p-value. Pass rate (share of
    samples with reward >= `pass_threshold`, per prompt): paired bootstrap CI plus exact McNemar with one
    sample per prompt, else a sign-flip permutation test on per-prompt pass rates (a sign test would ignore
    how far each prompt moved). pass@k and the per-domain/difficulty rows: paired bootstrap CI plus a
    sign-flip permutation p-value. Every p-value
    is Holm-adjusted over all of them, and the verdict names every change that stays significant.
    `solved` is the 2x2 McNemar table of "solved by at least half of its samples". Win/tie/loss compares
    per-prompt means. Frames sampled from other eval data or with other sampling settings are refused unless
    `allow_mismatch` (then the differences are recorded and stated in the verdict).
    """
    base_s, n_fail_b = _fill_failures(_check_frame(base_df, "base"), failed_reward, "base")
    tuned_s, n_fail_t = _fill_failures(_check_frame(tuned_df, "tuned"), failed_reward, "tuned")
    base, tuned = _per_prompt(base_s, pass_threshold), _per_prompt(tuned_s, pass_threshold)
    common, unmatched = _align(base, tuned, allow_unmatched)
    mismatches = comparability(base_s, tuned_s, common)
    if mismatches and not allow_mismatch:
        raise UserError(
            "base and tuned were not measured the same way, so a difference would not come from the weights "
            f"alone: {'; '.join(mismatches)}. Sample both on the same eval data with the same settings (notebook "
            "06 reuses the baseline's), or pass allow_mismatch=True (nbkit compare --allow-mismatch) to compare "
            "anyway; the differences are then stated in the verdict"
        )
    pp = _paired_frame(base, tuned, common, tie_tolerance)
    kw: dict[str, Any] = {"n_boot": n_boot, "seed": seed, "alpha": alpha}

    reward_diff = Interval(*stats.paired_bootstrap_diff(pp["base_mean"], pp["tuned_mean"], **kw))
    pass_diff = Interval(*stats.paired_bootstrap_diff(pp["base_pass_rate"], pp["tuned_pass_rate"], **kw))
    p_wins, p_ties, p_losses, p_sign = stats.sign_test(pp["base_pass_rate"], pp["tuned_pass_rate"])
    one_sample = bool((pp["base_n"] == 1).all() and (pp["tuned_n"] == 1).all())
    # One sample per prompt: the sign test is exactly McNemar's. With k samples it would ignore by how much
    # each prompt's pass rate moved, and so disagree with the mean reward's test on the same 0/1 values.
    p_pass = p_sign if one_sample else stats.sign_flip_pvalue(pp["base_pass_rate"], pp["tuned_pass_rate"], seed=seed)
    wins, ties, losses = (int((pp["outcome"] == o).sum()) for o in ("win", "tie", "loss"))
    groups = [c for c in group_by if c in pp.columns and pp[c].notna().any()]

    result = Comparison(
        n_prompts=len(pp),
        samples_per_prompt={"base": int(pp["base_n"].max()), "tuned": int(pp["tuned_n"].max())},
        pass_threshold=pass_threshold,
        alpha=alpha,
        n_boot=n_boot,
        seed=seed,
        base_reward=Interval(*stats.bootstrap_ci(pp["base_mean"], **kw)),
        tuned_reward=Interval(*stats.bootstrap_ci(pp["tuned_mean"], **kw)),
        reward_diff=reward_diff,
        reward_p_value=stats.sign_flip_pvalue(pp["base_mean"], pp["tuned_mean"], seed=seed),
        base_pass_rate=Interval(*stats.bootstrap_ci(pp["base_pass_rate"], **kw)),
        tuned_pass_rate=Interval(*stats.bootstrap_ci(pp["tuned_pass_rate"], **kw)),
        pass_rate_diff=pass_diff,
        pass_test={
            "test": "exact McNemar" if one_sample else "sign-flip permutation test on per-prompt pass rates",
            "improved": p_wins, "unchanged": p_ties, "worsened": p_losses, "p_value": p_pass,
        },
        solved=stats.mcnemar_table(pp["base_pass_rate"] >= 0.5, pp["tuned_pass_rate"] >= 0.5),
        win_tie_loss={"wins": wins, "ties": ties, "losses": losses,
                      "p_value": stats.binom_two_sided(wins, wins + losses), "tie_tolerance": tie_tolerance},
        pass_at_k=_pass_at_k_table(base.loc[common], tuned.loc[common], n_boot, seed, alpha),
        breakdown={c: _breakdown(pp, c, n_boot, seed, alpha) for c in groups},
        per_prompt=pp,
        regressions=pp[pp["outcome"] == "loss"].sort_values(["diff", "prompt_id"]).reset_index(drop=True),
        statuses={"base": _statuses(base_s), "tuned": _statuses(tuned_s)},
        failed_samples={"base": n_fail_b, "tuned": n_fail_t},
        unmatched=unmatched,
        mismatches=mismatches,
    )
    result.tests = _tests(result)
    _holm_back(result)
    result.verdict = verdict(result)
    return result


# --- every row a test, Holm over the table ------------------------------------------------------------------

SAMPLING_KEYS = ("k", "max_new_tokens", "temperature", "top_k", "top_p", "seed", "reward", "variant")


def comparability(base: pd.DataFrame, tuned: pd.DataFrame, common: list[str]) -> list[str]:
    """What differs between how the two frames were made: the eval prompts or references behind the same
    prompt ids, and the sampling settings both frames record (`attrs["sampling"]`, see sample_and_score)."""
    out = []
    for col in ("prompt", "reference"):
        if col in base.columns and col in tuned.columns:
            b = base.groupby("prompt_id")[col].first().reindex(common).astype(str)
            t = tuned.groupby("prompt_id")[col].first().reindex(common).astype(str)
            differ = [pid for pid in common if b[pid] != t[pid]]
            if differ:
                pid = differ[0]
                out.append(f"{len(differ)} prompt(s) have another {col} in the tuned samples (e.g. {pid}: "
                           f"{_short(b[pid])!r} vs {_short(t[pid])!r}): the eval data changed")
    sb, st = base.attrs.get("sampling") or {}, tuned.attrs.get("sampling") or {}
    for key in SAMPLING_KEYS:
        if sb.get(key) is not None and st.get(key) is not None and sb[key] != st[key]:
            out.append(f"{key} {sb[key]!r} (base) vs {st[key]!r} (tuned)")
    n_b, n_t = (int(f.groupby("prompt_id").size().max()) for f in (base, tuned))
    if n_b != n_t and not any(line.startswith("k ") for line in out):  # frames without a record show it too
        out.append(f"{n_b} samples per prompt (base) vs {n_t} (tuned)")
    return out


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _tests(c: Comparison) -> pd.DataFrame:
    """One row per test in the comparison: headline metrics, pass@k, and every breakdown row.

    A test that repeats another is not counted twice in the adjustment: pass@1 is the pass rate itself (the
    mean of c/n), and with 0/1 rewards the pass rate is the mean reward, prompt by prompt.
    """
    import pandas as pd

    pp = c.per_prompt
    same = pp["base_mean"].equals(pp["base_pass_rate"]) and pp["tuned_mean"].equals(pp["tuned_pass_rate"])
    rows = [
        _test("mean", "mean reward", "", "", 0, c.base_reward.estimate, c.tuned_reward.estimate, c.reward_diff,
              c.reward_p_value, "paired bootstrap CI; sign-flip permutation p"),
        _test("pass_rate", f"pass rate (reward >= {c.pass_threshold:g})", "", "", 1, c.base_pass_rate.estimate,
              c.tuned_pass_rate.estimate, c.pass_rate_diff, c.reward_p_value if same else c.pass_test["p_value"],
              "the mean reward (0/1 rewards: the same values)" if same
              else f"paired bootstrap CI; {c.pass_test['test']} p"),
    ]
    rows[1]["counted"] = not same
    for r in c.pass_at_k.itertuples():
        k = int(r.k)
        row = _test(f"pass@{k}", f"pass@{k}", "", "", k, r.base, r.tuned, Interval(r.diff, r.lo, r.hi),
                    c.pass_test["p_value"] if k == 1 else r.p_value,
                    "the pass rate (same test)" if k == 1 else "paired bootstrap CI; sign-flip permutation p")
        row["counted"] = k != 1
        rows.append(row)
    for col, frame in c.breakdown.items():
        for r in frame.to_dict(orient="records"):
            value = str(r[col])
            rows.append(_test(f"{col}={value}", f"mean reward, {col} {value}", col, value, 0, r["base"], r["tuned"],
                              Interval(r["diff"], r["lo"], r["hi"]), r["p_value"],
                              f"paired bootstrap CI; sign-flip permutation p ({r['prompts']} prompts)"))
    tests = pd.DataFrame(rows)
    counted = tests["counted"].to_numpy()
    tests["p_holm"] = np.nan
    tests.loc[counted, "p_holm"] = stats.holm(tests.loc[counted, "p_value"].to_numpy())
    if not tests.loc[tests["key"] == "pass_rate", "counted"].iloc[0]:
        tests.loc[tests["key"] == "pass_rate", "p_holm"] = tests.loc[tests["key"] == "mean", "p_holm"].iloc[0]
    tests.loc[tests["key"] == "pass@1", "p_holm"] = tests.loc[tests["key"] == "pass_rate", "p_holm"].iloc[0]
    tests["significant"] = (tests["p_holm"] < c.alpha) & (tests["diff"] != 0)
    return tests


def _test(key: str, metric: str, group: str, value: str, k: int, base: float, tuned: float, d: Interval,
          p: float, method: str) -> dict[str, Any]:
    return {"key": key, "metric": metric, "group": group, "value": value, "k": k, "base": float(base),
            "tuned": float(tuned), "diff": d.estimate, "lo": d.lo, "hi": d.hi, "p_value": float(p),
            "method": method, "counted": True}


def _no_tests() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(columns=["key", "metric", "group", "p_value", "p_holm", "significant", "counted"])


def _holm_back(c: Comparison) -> None:
    """Copy the adjusted p-values and the verdict's significance into the pass@k and breakdown tables."""
    by_key = c.tests.set_index("key")
    c.pass_at_k["p_holm"] = [by_key.loc[f"pass@{int(k)}", "p_holm"] for k in c.pass_at_k["k"]]
    c.pass_at_k["significant"] = [bool(by_key.loc[f"pass@{int(k)}", "significant"]) for k in c.pass_at_k["k"]]
    for col, frame in c.breakdown.items():
        keys = [f"{col}={v}" for v in frame[col].astype(str)]
        frame["p_holm"] = [by_key.loc[k, "p_holm"] for k in keys]
        frame["significant"] = [bool(by_key.loc[k, "significant"]) for k in keys]


# --- the verdict ---------------------------------------------------------------------------------------------

def describe_change(row: dict[str, Any]) -> str:
    """A significant change in plain words, with its numbers: 'less often right in 8 tries (pass@8 0.800 ->
    0.660)'."""
    up = row["diff"] > 0
    k, key = int(row["k"]), row["key"]
    numbers = f"{row['base']:.3f} -> {row['tuned']:.3f}"
    if key == "mean":
        return f"{'higher' if up else 'lower'} mean reward ({numbers})"
    if key == "pass_rate":
        return f"{'more' if up else 'less'} often right on the first try (pass rate {row['base']:.1%} -> " \
               f"{row['tuned']:.1%})"
    if key.startswith("pass@"):
        return f"{'more' if up else 'less'} often right in {k} tries (pass@{k} {numbers})"
    return f"{'higher' if up else 'lower'} mean reward on {row['group']} {row['value']} ({numbers})"


def pattern(changes: pd.DataFrame) -> str:
    """What the directions mean together: one try better and k tries worse is a policy that became surer of
    fewer answers (the known narrowing of RL-tuned models), and the reverse a more varied but less reliable one."""
    single = changes[changes["key"].isin(["mean", "pass_rate"])]
    multi = changes[changes["key"].str.startswith("pass@") & (changes["k"] > 1)]
    if (single["diff"] > 0).any() and (multi["diff"] < 0).any():
        return "less diverse: right more often on one try, but in fewer prompts within several tries"
    if (single["diff"] < 0).any() and (multi["diff"] > 0).any():
        return "more diverse but less reliable: right less often on one try, yet in more prompts within several tries"
    if len(changes) and (changes["diff"] > 0).all():
        return "every significant change is an improvement"
    if len(changes) and (changes["diff"] < 0).all():
        return "every significant change is a loss"
    return "mixed: some metrics improved and others got worse"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def verdict(c: Comparison) -> str:
    """The mean-reward difference with its interval, then every change that is significant after the Holm
    adjustment over the table's tests, in either direction and in plain words, then the pass-rate test."""
    d = c.reward_diff
    level = f"{1 - c.alpha:.0%}"
    mean = c._row("mean")
    if mean["significant"]:
        call = "a significant improvement" if d.estimate > 0 else "a significant regression"
    elif d.significant:
        call = (f"not significant after the Holm adjustment (adjusted p = {mean['p_holm']:.3g}), although the "
                "interval excludes 0")
    else:
        call = "not a significant difference (the interval includes 0)"
    m = int(c.tests["counted"].sum())
    changes = c.changes
    if len(changes):
        named = ", ".join(describe_change(r) for r in changes.to_dict(orient="records"))
        weighed = f"significant changes (Holm-adjusted over {m} tests): {named}; {pattern(changes)}"
    else:
        weighed = f"no metric changed significantly (Holm-adjusted over {m} tests)"
    wtl = c.win_tie_loss
    caution = f" Compared although {'; '.join(c.mismatches)}." if c.mismatches else ""
    return (
        f"On {_count(c.n_prompts, 'eval prompt')} the tuned model's mean reward is {c.tuned_reward.estimate:.3f} vs "
        f"{c.base_reward.estimate:.3f} for the base model, a difference of {d.estimate:+.3f} "
        f"({level} CI {d.lo:+.3f} to {d.hi:+.3f}, paired bootstrap over prompts): {call}; {weighed}; "
        f"pass rate (reward >= {c.pass_threshold:g}) {c.tuned_pass_rate.estimate:.1%} vs "
        f"{c.base_pass_rate.estimate:.1%} ({c.pass_test['test']} p = {c.pass_test['p_value']:.3g}); "
        f"{_count(wtl['wins'], 'prompt')} better, {wtl['ties']} tied, {wtl['losses']} worse.{caution}"
    )


def plot_comparison(c: Comparison):
    """Per-prompt base vs tuned mean reward (points above the diagonal improved) and the win/tie/loss bars."""
    import matplotlib.pyplot as plt

    pp = c.per_prompt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = pp["outcome"].map({"win": "tab:green", "tie": "tab:gray", "loss": "tab:red"})
    jitter = np.random.default_rng(0).uniform(-0.01, 0.01, size=(2, len(pp)))
    ax1.scatter(pp["base_mean"] + jitter[0], pp["tuned_mean"] + jitter[1], c=colors, s=18, alpha=0.7)
    lo = float(min(pp["base_mean"].min(), pp["tuned_mean"].min()))
    hi = float(max(pp["base_mean"].max(), pp["tuned_mean"].max()))
    ax1.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls="--")
    ax1.set(title="Per-prompt mean reward", xlabel="base mean reward (reward units)",
            ylabel="tuned mean reward (reward units)")
    wtl = c.win_tie_loss
    ax2.bar(["better", "tied", "worse"], [wtl["wins"], wtl["ties"], wtl["losses"]],
            color=["tab:green", "tab:gray", "tab:red"])
    d = c.reward_diff
    ax2.set(title=f"Prompts by outcome (mean diff {d.estimate:+.3f}, CI {d.lo:+.3f} to {d.hi:+.3f})",
            xlabel="tuned vs base per-prompt mean reward", ylabel="prompts (count)")
    fig.tight_layout()
    return fig


def samples_path(path: str | Path) -> Path:
    """A samples.parquet file, or the stage folder that holds one (`<run>/baseline`, `<run>/tuned`)."""
    p = Path(path)
    if p.is_dir():
        p = p / SAMPLES
    if not p.is_file():
        raise UserError(
            f"no samples file at {p}; give a samples.parquet file or a stage folder holding one "
            "(run notebook 03 for <run>/baseline, 06 for <run>/tuned)"
        )
    return p


def read_samples(path: str | Path) -> pd.DataFrame:
    """Read a samples frame from a parquet file or stage folder, with a clear error if it is not one."""
    import pandas as pd

    p = samples_path(path)
    try:
        return pd.read_parquet(p)
    except Exception as exc:  # pyarrow raises several types for a file that is not parquet
        raise UserError(f"{p} is not a readable parquet file ({type(exc).__name__}: {exc})") from exc
