"""Baseline evaluation: how the base model does under the reward, and whether RFT is the right method.

The documented evaluation-first rule (reference/nova-rft.md section 1): mean reward above 95% -> RFT is
probably unnecessary; 0%, or fewer than 5% of examples with a positive reward -> do SFT first; in between
-> RFT fits. Beyond the verdict, a scientist needs to know which prompts carry signal: prompts the model
always or never solves give GRPO groups with zero reward variance, which teach nothing.

Definitions used throughout (all computed from the samples frame of `sample_and_score`):
- mean reward: mean over prompts of the per-prompt mean (each prompt weighs the same), failed scoring
  counted as `failed_reward` (0); its CI is a percentile bootstrap over prompts (cluster bootstrap).
- positive share: share of samples with reward > 0, i.e. the expected share of examples rewarded when one
  answer is drawn per prompt (the "examples with a positive reward" of the rule).
- pass: reward >= pass_threshold; pass-rate profile per prompt: always (all k pass), never (none), mixed.
- zero-variance share: prompts whose k rewards are all equal (GRPO advantage 0 for the whole group).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbkit.errors import UserError
from nbkit.layout import RunLayout, portable

if TYPE_CHECKING:
    from nbkit.params import EvaluateBaselineParams

SKIP_ABOVE = 0.95  # mean reward above this: RFT is probably unnecessary
MIN_POSITIVE = 0.05  # fewer examples than this with a positive reward: SFT first
LABELS = {"skip_rft": "RFT is probably unnecessary", "sft_first": "Do SFT first", "rft": "RFT fits"}


def recommend(
    mean_reward: float,
    positive_share: float,
    *,
    skip_above: float = SKIP_ABOVE,
    min_positive: float = MIN_POSITIVE,
    ci: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """The documented evaluation-first verdict with its reason in plain words.

    skip_rft when mean > skip_above; sft_first when no example, or fewer than min_positive of them, earns a
    positive reward; rft otherwise. Boundaries belong to rft (mean == 0.95 or positive share == 5% -> rft).
    """
    for name, value in (("mean_reward", mean_reward), ("positive_share", positive_share)):
        if value is None or not math.isfinite(value):
            raise UserError(f"{name} must be a finite number, got {value!r}")
    ci_text = f" (95% CI {ci[0]:.3f} to {ci[1]:.3f})" if ci else ""
    mean_text = f"mean reward {mean_reward:.3f}{ci_text}"
    pos_text = f"{positive_share:.1%} of sampled answers earn a positive reward"
    if mean_reward > skip_above:
        verdict = "skip_rft"
        reason = (f"The base model already scores a {mean_text}, above the {skip_above:.0%} ceiling: there is little "
                  "left for RFT to gain. Check that the reward is not too lenient, or use harder prompts.")
    elif positive_share <= 0.0:
        verdict = "sft_first"
        reason = (f"No sampled answer earns a positive reward ({mean_text}): every GRPO group would have zero "
                  "variance and RFT could not learn. Teach the task with supervised fine-tuning (SFT) first, "
                  "or check that the reward can be earned at all (notebook 02).")
    elif positive_share < min_positive:
        verdict = "sft_first"
        reason = (f"Only {pos_text}, fewer than {min_positive:.0%} ({mean_text}): the reward signal is too rare for "
                  "RFT to learn from. Do supervised fine-tuning (SFT) first, then RFT.")
    else:
        verdict = "rft"
        reason = (f"The base model solves part of the task: {mean_text}, and {pos_text}. That is between the "
                  f"{min_positive:.0%} floor and the {skip_above:.0%} ceiling, so RFT has signal to reinforce "
                  "and room to improve.")
    return {"verdict": verdict, "label": LABELS[verdict], "reason": reason,
            "thresholds": {"skip_above": skip_above, "min_positive": min_positive}}


def summarize(
    samples: Any,
    *,
    max_new_tokens: int | None = None,
    pass_threshold: float = 0.8,
    high: float = 0.8,
    low: float = 0.2,
    failed_reward: float = 0.0,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything summary.json records about a baseline (see the module docstring for definitions)."""
    import numpy as np

    from nbkit.evaluate import stats

    frame = _checked(samples)
    if not low <= high:
        raise UserError(f"bucket thresholds must satisfy low <= high, got low={low}, high={high}")
    status = frame["status"].astype(str) if "status" in frame.columns else None
    raw = frame["reward"].astype(float).to_numpy()
    failed = ~np.isfinite(raw)
    reward = np.where(failed, failed_reward, raw)
    frame = frame.assign(reward_filled=reward)
    groups = frame.groupby("prompt_id", sort=True)["reward_filled"]
    per_prompt = groups.mean()
    estimate, lo, hi = stats.cluster_bootstrap_ci(reward, frame["prompt_id"].astype(str).to_numpy(),
                                                  n_boot=n_boot, seed=seed, alpha=alpha)
    positive_share = float(np.mean(reward > 0))
    profile = pass_profile(frame, pass_threshold)
    summary: dict[str, Any] = {
        "settings": {**(dict(settings) if settings else {}), "pass_threshold": pass_threshold,
                     "high": high, "low": low, "failed_reward": failed_reward, "n_boot": n_boot, "alpha": alpha},
        "n_prompts": int(per_prompt.size),
        "n_samples": int(len(frame)),
        "samples_per_prompt": {"min": int(groups.size().min()), "max": int(groups.size().max())},
        "reward": {
            "mean": estimate, "ci_low": lo, "ci_high": hi, "ci_level": 1 - alpha,
            "ci_method": "percentile bootstrap over prompts (per-prompt means)",
            "sample_mean": float(np.mean(reward)), "std": float(np.std(reward)),
            "p10": float(np.quantile(reward, 0.1)), "p50": float(np.quantile(reward, 0.5)),
            "p90": float(np.quantile(reward, 0.9)), "min": float(np.min(reward)), "max": float(np.max(reward)),
        },
        "positive_share": positive_share,
        "prompts_with_any_positive": float(np.mean(groups.max() > 0)),
        "buckets": {
            "high": float(np.mean(reward >= high)),
            "medium": float(np.mean((reward >= low) & (reward < high))),
            "low": float(np.mean(reward < low)),
        },
        "pass_rate": profile,
        "lengths": lengths(frame, max_new_tokens),
        "errors": errors(frame, status, failed),
        "by_group": by_group(frame),
    }
    summary["recommendation"] = recommend(estimate, positive_share, ci=(lo, hi))
    summary["warnings"] = warnings(summary)
    return summary


def pass_profile(frame: Any, pass_threshold: float) -> dict[str, Any]:
    """Per-prompt pass rates: always / never / mixed shares, zero-variance share and the histogram."""
    import numpy as np

    passed = frame.assign(passed=frame["reward_filled"] >= pass_threshold).groupby("prompt_id", sort=True)
    rate = passed["passed"].mean()
    spread = passed["reward_filled"].agg(lambda v: float(np.ptp(v.to_numpy())))
    k = passed.size()
    histogram = {f"{r:.4g}": int(c) for r, c in sorted(rate.round(6).value_counts().items())}
    return {
        "threshold": pass_threshold,
        "mean": float(rate.mean()),
        "always": float(np.mean(rate == 1.0)),
        "never": float(np.mean(rate == 0.0)),
        "mixed": float(np.mean((rate > 0.0) & (rate < 1.0))),
        "zero_variance_share": float(np.mean(spread <= 1e-12)),
        "single_sample_prompts": int((k < 2).sum()),
        "histogram": histogram,
    }


def lengths(frame: Any, max_new_tokens: int | None) -> dict[str, Any]:
    """Completion lengths against the budget: a high truncated share means answers are being cut off."""
    import numpy as np

    tokens = frame["num_tokens"].astype(float).to_numpy() if "num_tokens" in frame.columns else np.array([])
    finish = frame["finish_reason"].astype(str) if "finish_reason" in frame.columns else None
    out: dict[str, Any] = {"max_new_tokens": max_new_tokens}
    if tokens.size:
        out |= {"mean": float(tokens.mean()), "p50": float(np.quantile(tokens, 0.5)),
                "p90": float(np.quantile(tokens, 0.9)), "max": int(tokens.max())}
    out["truncated_share"] = float((finish == "length").mean()) if finish is not None else None
    out["at_cap_share"] = float(np.mean(tokens >= max_new_tokens)) if max_new_tokens and tokens.size else None
    return out


def errors(frame: Any, status: Any, failed: Any) -> dict[str, Any]:
    """Reward failures by status and generation failures: any of them means the scores are not all real."""
    import numpy as np

    by_status = {str(k): int(v) for k, v in status.value_counts().sort_index().items()} if status is not None else {}
    not_ok = int((status != "ok").sum()) if status is not None else int(failed.sum())
    gen_errors = int((frame["finish_reason"].astype(str) == "error").sum()) if "finish_reason" in frame.columns else 0
    return {
        "by_status": by_status,
        "reward_error_rate": not_ok / max(1, len(frame)),
        "non_finite_rewards": int(np.sum(failed)),
        "generation_errors": gen_errors,
    }


def by_group(frame: Any) -> dict[str, dict[str, dict[str, float]]]:
    """Mean reward and counts per domain and per difficulty level, when the records have them."""
    out = {}
    for column in ("domain", "difficulty_level"):
        if column in frame.columns and frame[column].notna().any():
            grouped = frame.groupby(frame[column].fillna("(none)").astype(str), sort=True)
            out[column] = {
                str(name): {"mean_reward": float(g["reward_filled"].mean()), "prompts": int(g["prompt_id"].nunique()),
                            "samples": int(len(g))}
                for name, g in grouped
            }
    return out


def warnings(summary: Mapping[str, Any]) -> list[str]:
    """Caveats that change how far the verdict can be trusted."""
    out = []
    err = summary["errors"]
    if err["reward_error_rate"] > 0:
        out.append(f"{err['reward_error_rate']:.1%} of samples were not scored cleanly ({err['by_status']}); "
                   f"they count as reward {summary['settings']['failed_reward']}: fix the reward (notebook 02)")
    if err["generation_errors"]:
        out.append(f"{err['generation_errors']} generation(s) failed (finish_reason=error) and scored as empty answers")
    truncated = summary["lengths"].get("truncated_share") or 0.0
    if truncated > 0.1:
        out.append(f"{truncated:.0%} of completions hit max_new_tokens: answers are cut off, raise max_new_tokens")
    profile = summary["pass_rate"]
    if profile["single_sample_prompts"] == summary["n_prompts"]:
        out.append("one sample per prompt: the pass-rate profile cannot show mixed prompts; use k >= 2")
    elif profile["zero_variance_share"] > 0.8:
        out.append(f"{profile['zero_variance_share']:.0%} of prompts give zero-variance groups (always or never "
                   "solved): GRPO gets signal from few prompts; raise the temperature or rebalance difficulty")
    if summary["n_prompts"] < 30:
        out.append(f"only {summary['n_prompts']} prompts: the confidence interval is wide; use more for a decision")
    return out


def describe(summary: Mapping[str, Any]) -> str:
    """One sentence for the run index: the verdict, mean and CI, and the pass-rate profile."""
    r, rec, p = summary["reward"], summary["recommendation"], summary["pass_rate"]
    return (f"{rec['label']}: mean reward {r['mean']:.3f} (95% CI {r['ci_low']:.3f} to {r['ci_high']:.3f}) over "
            f"{summary['n_prompts']} prompts x {summary['samples_per_prompt']['max']} samples; prompts always/mixed/"
            f"never solved {p['always']:.0%}/{p['mixed']:.0%}/{p['never']:.0%}")


def summary_table(summary: Mapping[str, Any]) -> Any:
    """The key numbers as a two-column table (prints in static reports, unlike widgets)."""
    import pandas as pd

    r, p, n, e = summary["reward"], summary["pass_rate"], summary["lengths"], summary["errors"]
    level = f"{r['ci_level']:.0%}"
    rows = [
        ("recommendation", summary["recommendation"]["label"]),
        ("prompts x samples", f"{summary['n_prompts']} x {summary['samples_per_prompt']['max']}"),
        ("mean reward", f"{r['mean']:.3f}"),
        (f"{level} CI (bootstrap over prompts)", f"{r['ci_low']:.3f} to {r['ci_high']:.3f}"),
        ("reward p10 / p50 / p90", f"{r['p10']:.3f} / {r['p50']:.3f} / {r['p90']:.3f}"),
        ("samples with positive reward", f"{summary['positive_share']:.1%}"),
        ("prompts with any positive sample", f"{summary['prompts_with_any_positive']:.1%}"),
        ("high / medium / low rewards", " / ".join(f"{summary['buckets'][b]:.1%}" for b in ("high", "medium", "low"))),
        (f"prompts always / mixed / never passing (reward >= {p['threshold']})",
         f"{p['always']:.1%} / {p['mixed']:.1%} / {p['never']:.1%}"),
        ("zero-variance groups (no GRPO signal)", f"{p['zero_variance_share']:.1%}"),
        ("completion tokens mean / p90 / max", f"{n.get('mean', 0):.1f} / {n.get('p90', 0):.0f} / {n.get('max', 0)}"),
        (f"truncated at max_new_tokens={n['max_new_tokens']}", f"{(n['truncated_share'] or 0):.1%}"),
        ("reward statuses", ", ".join(f"{k}: {v}" for k, v in e["by_status"].items()) or "(none recorded)"),
    ]
    return pd.DataFrame(rows, columns=["quantity", "value"])


def examples(samples: Any, per_outcome: int = 5, seed: int = 0) -> Any:
    """A few passed and failed samples, to read what the model actually says (seeded choice)."""
    import pandas as pd

    best = samples[samples["reward"] > 0]
    worst = samples[~(samples["reward"] > 0)]  # failed scoring (NaN) included
    picked = [part.sample(min(per_outcome, len(part)), random_state=seed) for part in (best, worst) if len(part)]
    columns = [c for c in ("prompt_id", "prompt", "reference", "response", "reward", "status", "finish_reason")
               if c in samples.columns]
    out = pd.concat(picked)[columns] if picked else samples.iloc[:0][columns]
    if "reference" in out:  # the reference answer as data (shown as its fields), not its JSON text
        out = out.assign(reference=out["reference"].map(_reference_value))
    return out


def _reference_value(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text


def report_html(summary: Mapping[str, Any]) -> str:
    """The verdict block shown at the top of the notebook's report."""
    import html

    rec, r, p = summary["recommendation"], summary["reward"], summary["pass_rate"]
    color = {"rft": "#1a7f37", "sft_first": "#b35900", "skip_rft": "#6e40c9"}[rec["verdict"]]
    items = "".join(f"<li>{html.escape(w)}</li>" for w in summary.get("warnings", []))
    return (
        f"<div style='border-left:6px solid {color};padding:8px 12px'>"
        f"<div style='font-size:1.3em;font-weight:bold;color:{color}'>{html.escape(rec['label'])}</div>"
        f"<p>{html.escape(rec['reason'])}</p>"
        f"<p>Mean reward <b>{r['mean']:.3f}</b> (95% CI {r['ci_low']:.3f} to {r['ci_high']:.3f}); "
        f"positive share {summary['positive_share']:.1%}; prompts always / mixed / never solved: "
        f"{p['always']:.0%} / {p['mixed']:.0%} / {p['never']:.0%}; zero-variance groups "
        f"{p['zero_variance_share']:.0%}.</p>"
        + (f"<ul>{items}</ul>" if items else "") + "</div>"
    )


def _checked(samples: Any) -> Any:
    """A samples frame with the columns the summary needs, non-empty."""
    missing = [c for c in ("prompt_id", "sample", "reward") if c not in samples.columns]
    if missing:
        raise UserError(f"samples frame lacks column(s) {', '.join(missing)}; pass the frame from "
                        "nbkit.evaluate.sample_and_score (or baseline/samples.parquet)")
    if len(samples) == 0:
        raise UserError("samples frame is empty: nothing was sampled (no eval prompts?)")
    return samples.assign(prompt_id=samples["prompt_id"].astype(str))


# ------------------------------------------------------------------------------------------- the stage


@dataclass
class BaselineResult:
    """What notebook 03 found: every sampled completion and the summary with the RFT/SFT recommendation."""

    samples: Any
    summary: dict[str, Any]

    def headline(self) -> str:
        return describe(self.summary)

    def to_html(self) -> str:
        return report_html(self.summary)


def run(P: EvaluateBaselineParams) -> BaselineResult:
    """Notebook 03 end to end: eval prompts, generator, reward -> baseline/samples.parquet + summary.json."""
    from nbkit import provenance
    from nbkit.data import load_split
    from nbkit.evaluate.sampling import sample_and_score, write_samples
    from nbkit.policy import ModelRef, load_generator, resolve_local_model
    from nbkit.rewards import load_reward

    layout = RunLayout(P.run_dir)
    records = load_split(P.run_dir, "eval")
    if P.num_prompts:
        records = records[: P.num_prompts]
    settings: dict[str, Any] = {"model": P.model, "reward": P.reward, "k": P.k, "max_new_tokens": P.max_new_tokens,
                                "temperature": P.temperature, "seed": P.seed, "num_prompts": len(records)}
    kw: dict[str, Any] = {}
    if ModelRef.parse(P.model).remote:
        generator = load_generator(P.model, run_dir=P.run_dir)
    else:
        folder = resolve_local_model(P.model, run_dir=P.run_dir, recipe=P.tiny_recipe, threads=P.threads or None)
        if P.model == "tiny":
            from nbkit.policy.tiny import build_info

            info = build_info(folder)
            folder = materialize(folder, layout.model)
            settings["tiny_recipe"] = P.tiny_recipe
            settings["tiny_build"] = {k: info[k] for k in ("parameters", "warm_start_steps", "gate_accuracy",
                                                          "build_seconds", "train_records")}
        settings["model_path"] = str(folder)
        kw = {"device": P.device, "batch_size": P.batch_size, "threads": P.threads or None}
        generator = load_generator(str(folder), **kw)
    reward = load_reward(P.reward)
    frame = sample_and_score(generator, reward, records, k=P.k, max_new_tokens=P.max_new_tokens,
                             temperature=P.temperature, seed=P.seed, workers=P.reward_workers)
    settings["generator"] = generator.describe()
    settings["provenance"] = provenance.collect(P)  # seed, threads, versions, math mode, model and data hashes
    summary = summarize(frame, max_new_tokens=P.max_new_tokens, pass_threshold=P.pass_threshold, high=P.high,
                        low=P.low, n_boot=P.n_boot, alpha=P.alpha, seed=P.seed, settings=settings)
    write_samples(frame, layout.stage("baseline"))
    write_summary(summary, layout.baseline_summary)
    return BaselineResult(frame, summary)


def materialize(folder: Path, dest: Path) -> Path:
    """Copy the cached tiny model into the run (<run>/model), so the run records the exact model it used."""
    marker = dest / ".source"
    if marker.exists() and marker.read_text() == str(folder):
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(folder, dest)
    marker.write_text(str(folder))
    return dest


def write_summary(summary: Mapping[str, Any], path: Path) -> Path:
    """The one writer of baseline/summary.json (its one reader: RunLayout.read_baseline_summary)."""
    path.write_text(json.dumps(portable(dict(summary), path.parent.parent), indent=2, sort_keys=False, default=str))
    return path


# ------------------------------------------------------------------------------------------------ plots


def plot_rewards(frame: Any, summary: Mapping[str, Any]) -> Any:
    """Histogram of sample rewards with the mean and its CI."""
    import matplotlib.pyplot as plt
    import numpy as np

    reward = np.nan_to_num(frame["reward"].astype(float).to_numpy(), nan=summary["settings"]["failed_reward"])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(reward, bins=np.linspace(min(0.0, reward.min()), max(1.0, reward.max()), 21).tolist(), color="#4c72b0")
    r = summary["reward"]
    ax.axvline(r["mean"], color="black", label=f"mean {r['mean']:.3f}")
    ax.axvspan(r["ci_low"], r["ci_high"], color="black", alpha=0.15, label="95% CI")
    ax.set(title=f"Baseline reward per sample ({len(reward)} samples)", xlabel="reward (score)",
           ylabel="samples (count)")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_pass_rates(frame: Any, summary: Mapping[str, Any]) -> Any:
    """Prompts by pass rate: the bars at 0 and 1 are the zero-variance groups GRPO cannot learn from."""
    import matplotlib.pyplot as plt
    import numpy as np

    p = summary["pass_rate"]
    filled = np.nan_to_num(frame["reward"].astype(float).to_numpy(), nan=summary["settings"]["failed_reward"])
    rate = frame.assign(passed=filled >= p["threshold"]).groupby(frame["prompt_id"].astype(str))["passed"].mean()
    values, counts = np.unique(rate.round(6).to_numpy(), return_counts=True)
    colors = ["#c44e52" if v == 0 else "#55a868" if v == 1 else "#4c72b0" for v in values]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(values, counts, width=0.8 / max(2, summary["samples_per_prompt"]["max"]), color=colors)
    ax.set(title=f"Pass-rate profile: never {p['never']:.0%} / mixed {p['mixed']:.0%} / always {p['always']:.0%}",
           xlabel=f"share of samples with reward >= {p['threshold']} (per prompt)", ylabel="prompts (count)")
    ax.set_xlim(-0.08, 1.08)
    fig.tight_layout()
    return fig


def plot_lengths(frame: Any, summary: Mapping[str, Any]) -> Any:
    """Completion lengths against max_new_tokens: mass at the cap means truncated answers."""
    import matplotlib.pyplot as plt
    import numpy as np

    tokens = frame["num_tokens"].astype(int).to_numpy()
    cap = summary["lengths"]["max_new_tokens"] or int(tokens.max())
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(tokens, bins=(np.arange(0, max(cap, int(tokens.max())) + 2) - 0.5).tolist(), color="#8172b2")
    ax.axvline(cap, color="#c44e52", linestyle="--", label=f"max_new_tokens = {cap}")
    truncated = summary["lengths"].get("truncated_share") or 0.0
    ax.set(title=f"Completion length ({truncated:.0%} truncated)", xlabel="completion length (tokens)",
           ylabel="samples (count)")
    ax.legend()
    fig.tight_layout()
    return fig
