"""`nbkit compare BASE TUNED [--json]`: the base-vs-tuned statistics from the shell (imports stay lazy)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nbkit.cli import number_arg


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the evaluate stage's subcommands to the `nbkit` parser."""
    p = subparsers.add_parser(
        "compare",
        help="compare tuned against base samples with paired statistics",
        description="Pair two samples frames by prompt_id and report the mean reward difference with a paired "
        "bootstrap confidence interval, the pass-rate difference with a paired test, win/tie/loss, "
        "pass@k, per-domain/difficulty breakdowns and the regressions; every row has a p-value, Holm-adjusted over "
        "the table, and the verdict names every change that stays significant. Samples from other eval data or "
        "sampled with other settings are refused unless --allow-mismatch. BASE and TUNED are samples.parquet "
        "files or stage folders holding one (runs/<name>/baseline, runs/<name>/tuned). Exit 0 on success, "
        "2 on bad input.",
    )
    p.add_argument("base", help="base samples: samples.parquet or a stage folder (e.g. runs/demo/baseline)")
    p.add_argument("tuned", help="tuned samples: samples.parquet or a stage folder (e.g. runs/demo/tuned)")
    p.add_argument("--json", action="store_true", help="print the full comparison as JSON (comparison.json format)")
    p.add_argument("--threshold", type=float, default=None,
                   help="reward counted as a pass (default: the baseline's summary.json setting, else 0.8)")
    p.add_argument("--n-boot", type=number_arg(int, 100), default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--alpha", type=number_arg(float, 0, 0.5, low_open=True), default=0.05, help="1 - confidence level (default 0.05 for 95%%)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--allow-unmatched", action="store_true",
                   help="compare the common prompts when the two sets differ (default: error)")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="compare even when the two were sampled from other eval data or with other sampling "
                        "settings (default: error naming the differences)")
    p.add_argument("--regressions", type=number_arg(int, 0), default=10, help="regressions to list in text output (default 10)")
    p.set_defaults(func=_compare)


def pass_threshold_from(base: str | Path, default: float = 0.8) -> float:
    """The pass threshold the run of these samples used (`<run>/baseline` or `<run>/tuned`), if it recorded one."""
    from nbkit.layout import RunLayout

    folder = Path(base) if Path(base).is_dir() else Path(base).parent
    return RunLayout(folder.parent).pass_threshold(default) or default


def _compare(args: argparse.Namespace) -> int:
    from nbkit.evaluate.compare import compare, read_samples

    threshold = args.threshold if args.threshold is not None else pass_threshold_from(args.base)
    result = compare(
        read_samples(args.base),
        read_samples(args.tuned),
        pass_threshold=threshold,
        n_boot=args.n_boot,
        seed=args.seed,
        alpha=args.alpha,
        allow_unmatched=args.allow_unmatched,
        allow_mismatch=args.allow_mismatch,
    )
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2)
        print()
        return 0
    print(result.verdict)
    print()
    print(result.summary_frame().drop(columns=["method"]).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for col, frame in result.breakdown.items():
        print(f"\nby {col}:")
        print(frame.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if len(result.regressions):
        print(f"\nregressions ({len(result.regressions)} prompt(s), worst first):")
        cols = [c for c in ("prompt_id", "base_mean", "tuned_mean", "diff", "prompt") if c in result.regressions]
        top = result.regressions[cols].head(args.regressions).copy()
        if "prompt" in top:
            top["prompt"] = top["prompt"].astype(str).str.slice(0, 60)
        print(top.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0
