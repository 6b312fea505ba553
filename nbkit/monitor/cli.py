"""`nbkit monitor JOB_OR_RUN [--json]`: the health summary and the stop recommendation of a training run.

Kept import-light: pandas, scipy and the readers load only when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys

from nbkit.cli import number_arg
from nbkit.errors import UserError

SOURCE_HELP = (
    "a run folder (runs/<name>) or its training/job.json; an MLflow store (.db with one run) or "
    "mlflow:<run_id>@<tracking_uri>; a step_wise_training_metrics.csv, output.tar.gz or a folder holding one; "
    "or cloudwatch:<smtj|smhp>:<log group>[:<stream prefix>]"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `monitor` subcommand."""
    p = subparsers.add_parser(
        "monitor", help="health checks and a continue/stop recommendation for a training run",
        description="Read a training run's metrics (MLflow, Nova CSV or CloudWatch), run the health rules "
        "(plateau, overfitting, instability, reward errors, zero-variance groups, entropy collapse, length "
        "limit, KL blow-up, reward hacking, stalled updates) and print the findings and whether to stop. "
        "Exit 0 on success, 2 on a bad source or parameter.",
    )
    p.add_argument("source", metavar="JOB_OR_RUN", help=SOURCE_HELP)
    p.add_argument("--json", action="store_true", help="print health.json's content instead of text")
    p.add_argument("--target", type=float, help="stop when the validation (else training) reward reaches this")
    p.add_argument("--budget-steps", type=number_arg(int, 1), help="stop at this many steps")
    p.add_argument("--budget-time-s", type=number_arg(float, 0, low_open=True), help="stop after this many seconds of training")
    p.add_argument("--budget-cost", type=number_arg(float, 0, low_open=True), help="stop at this spend in dollars (needs a price: --cost-per-hour)")
    p.add_argument("--cost-per-hour", type=number_arg(float, 0, low_open=True), help="dollars per hour of the whole job (default: from job.json)")
    p.add_argument("--region", help="AWS region for CloudWatch sources (default: job.json or AWS config)")
    p.add_argument("--threshold", action="append", default=[], metavar="NAME=VALUE",
                   help="override a health-rule threshold, e.g. --threshold max_error_rate=0.1 (repeatable)")
    p.add_argument("--write", metavar="DIR", help="also write metrics.parquet and health.json into DIR")
    p.set_defaults(func=run)


def _overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--threshold {item!r} must read NAME=VALUE, e.g. --threshold max_error_rate=0.1")
        out[name.strip()] = value.strip()
    return out


def run(args: argparse.Namespace) -> int:
    """Handler of `nbkit monitor`."""
    from nbkit.monitor.summary import monitor, write

    result = monitor(
        args.source, thresholds=_overrides(args.threshold), target=args.target, budget_steps=args.budget_steps,
        budget_time_s=args.budget_time_s, budget_cost=args.budget_cost, cost_per_hour=args.cost_per_hour,
        region=args.region,
    )
    if args.write:
        write(result, args.write)
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(result.text())
    return 0
