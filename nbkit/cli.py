"""The `nbkit` command: the pipeline runner plus one group of subcommands per lifecycle stage.

Each stage's `nbkit/<stage>/cli.py` adds its own subcommands through `register(subparsers)` and keeps its
imports light, so `nbkit --help` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from nbkit.errors import UserError

STAGES = ("data", "rewards", "train", "monitor", "evaluate", "sweep")


def number_arg(kind: type[int] | type[float], low: float | None = None, high: float | None = None,
               low_open: bool = False) -> Any:
    """An argparse `type=` that rejects values outside [low, high] (or (low, high] with `low_open`).

    Why: a CLI that reads 0 as "use the default" hides the user's mistake; the range is in the message.
    """
    import argparse

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
        too_low = low is not None and (value <= low if low_open else value < low)
        if too_low or (high is not None and value > high):
            if high is None:
                allowed = f"{'greater than' if low_open else 'at least'} {low}"
            elif low is None:
                allowed = f"at most {high}"
            else:
                allowed = f"in {'(' if low_open else '['}{low}, {high}]"
            raise argparse.ArgumentTypeError(f"{value} is not allowed: it must be {allowed}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _run(args: argparse.Namespace) -> int:
    from nbkit import runner

    if args.pack:
        from nbkit.pack import pack

        print(pack(args.pack, args.out).describe())
        return 0
    if not args.params:
        raise UserError("nbkit run needs --params FILE (e.g. params/demo.yaml), or --pack RUN to archive a run")
    jobs = runner.run_pipeline(args.params, args.out, args.only, args.start, args.cell_timeout, args.set)
    return runner.exit_code(jobs)


def _mlflow(args: argparse.Namespace) -> int:
    from nbkit.train.mlflow_ui import serve

    return serve(args.run, port=args.port, host=args.host)


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
        "runs/<name>/index.html. A notebook that waits for a training job waits until it ends unless its "
        "timeout_s is set; when that runs out the pipeline stops there with status timeout (the job goes "
        "on; --from 04 re-attaches). Exit 0 when every notebook ran ok, 1 when one failed, 2 on bad params "
        "or a run folder in use, 3 when a wait or a cell ran out of time.",
    )
    run.add_argument("--params", help="params file, e.g. params/demo.yaml")
    run.add_argument("--out", help="run folder (default: runs/<params file name>); with --pack, the archive")
    run.add_argument("--pack", metavar="RUN", help="write RUN.tar.gz to share a run folder instead of running: "
                     "reports, executed notebooks and small artifacts (paths inside are relative to the run)")
    run.add_argument("--only", type=_csv, help="comma-separated notebooks to run, e.g. 01,03")
    run.add_argument("--from", dest="start", help="resume from this notebook, e.g. 04")
    run.add_argument("--cell-timeout", type=number_arg(float, 0, low_open=True), default=None,
                     help="seconds a single cell may run (default: no limit)")
    run.add_argument("--set", action="append", default=[], metavar="SECTION.NAME=VALUE",
                     help="override one value of the params file (repeatable; VALUE is YAML), e.g. "
                     "--set 04_launch_training.max_steps=50 --set seed=1")
    run.set_defaults(func=_run)
    ui = sub.add_parser(
        "mlflow", help="open the MLflow UI on a run folder's training runs",
        description="Serve the MLflow UI on a run folder's own store (training/mlflow.db, artifacts relative to "
        "the run folder, so a copied or unpacked run shows its own data) and print the address of the "
        "experiment's training runs.",
    )
    ui.add_argument("run", help="run folder, e.g. runs/demo")
    ui.add_argument("--port", type=number_arg(int, 1, 65535), default=5000, help="port (default 5000)")
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ui.set_defaults(func=_mlflow)
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
