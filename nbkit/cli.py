"""The `nbkit` command: the pipeline runner plus one group of subcommands per lifecycle stage.

Each stage's `nbkit/<stage>/cli.py` adds its own subcommands through `register(subparsers)` and keeps its
imports light, so `nbkit --help` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from nbkit.errors import UserError

STAGES = ("data", "rewards", "train", "monitor", "evaluate")


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _run(args: argparse.Namespace) -> int:
    from nbkit import runner

    jobs = runner.run_pipeline(args.params, args.out, args.only, args.start, args.cell_timeout)
    return 0 if jobs and all(j.status == "ok" for j in jobs) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nbkit",
        description="RFT Workbench: validate data, prototype rewards, train, monitor and evaluate RFT runs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run", help="execute the notebook pipeline into a run folder",
        description="Execute the notebooks that have a section in the params file, in order, into "
        "runs/<name>/<notebook>/ (executed notebook, params.yaml, status.json, report.html) and write "
        "runs/<name>/index.html. Exit 0 when every notebook ran ok, 1 when one failed, 2 on bad params.",
    )
    run.add_argument("--params", required=True, help="params file, e.g. params/demo.yaml")
    run.add_argument("--out", help="run folder (default: runs/<params file name>)")
    run.add_argument("--only", type=_csv, help="comma-separated notebooks to run, e.g. 01,03")
    run.add_argument("--from", dest="start", help="resume from this notebook, e.g. 04")
    run.add_argument("--cell-timeout", type=float, default=None, help="seconds a single cell may run (default: no limit)")
    run.set_defaults(func=_run)
    for stage in STAGES:
        importlib.import_module(f"nbkit.{stage}.cli").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
