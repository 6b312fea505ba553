"""`nbkit sweep` (the pipeline over a grid, and its comparison page) and `nbkit runs` (every run, newest first).

Import-light: the sweep machinery loads when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys

from nbkit.cli import number_arg

SWEEP_HELP = """\
Run the notebook pipeline of a params file for every point of a grid (and N training seeds per point),
each point a normal run folder under DIR/runs/. Stages whose parameters and inputs are the same for every
point (usually 01-03) run once, in DIR/shared/, and every point starts from their outputs. What ran before
with the same parameters, inputs and code is reused, so running the same command again executes nothing
new and resumes what failed or is missing. Writes DIR/sweep.json, DIR/index.html (sortable table, curves,
tuned-vs-base intervals, the best configuration with Holm-adjusted tests) and an MLflow parent run with a
child run per point (DIR/mlflow.db).

The grid can also live in the params file:
  sweep:
    grid: {04_launch_training.learning_rate: [1.0e-3, 3.0e-3]}
    seeds: 2

exit codes: 0 every point ran ok, 1 some point failed or timed out, 2 bad parameters or folder in use
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sweep", help="run the pipeline over a grid of parameters and compare the runs",
                              description=SWEEP_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", required=True, help="base params file, e.g. params/demo.yaml")
    p.add_argument("--grid", action="append", default=[], metavar="SECTION.NAME=V1,V2",
                   help="one axis of the grid (repeatable; values are YAML)")
    p.add_argument("--seeds", type=number_arg(int, 1), default=None,
                   help="training seeds per point (04_launch_training.seed = 0..N-1)")
    p.add_argument("--out", help="sweep folder (default: runs/sweep-<params file name>)")
    p.add_argument("--jobs", type=number_arg(int, 1), default=None,
                   help="points run at once (default: what fits the cores and memory)")
    p.add_argument("--n-boot", type=number_arg(int, 100), default=2000, help="bootstrap resamples (default 2000)")
    p.set_defaults(func=run_sweep_command)
    r = subparsers.add_parser("runs", help="every run and sweep under runs/, newest first",
                              description="List every run folder and sweep folder under runs/ (NBKIT_RUNS moves "
                              "it) with its date, params file, status and headline numbers, newest first, and "
                              "write runs/index.html.")
    r.add_argument("--json", action="store_true", help="print the list as JSON")
    r.set_defaults(func=run_runs_command)


def run_sweep_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nbkit import paths
    from nbkit.sweep import combine, from_file, parse_grid, sweep

    spec = combine(from_file(args.params), parse_grid(args.grid), args.seeds, args.jobs)
    out = Path(args.out) if args.out else paths.runs_root() / f"sweep-{Path(args.params).stem}"
    result = sweep(args.params, spec, out, n_boot=args.n_boot)
    print(f"\n{result.executed} of {len(result.points)} point(s) executed something; "
          f"{result.comparison.verdict()}\nSweep page: {out / 'index.html'}", flush=True)
    return 0 if result.ok else 1


def run_runs_command(args: argparse.Namespace) -> int:
    from nbkit.sweep.runs import list_runs, write_index

    entries = list_runs()
    index = write_index(entries)
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    for e in entries:
        print(f"{e['date']}  {e['kind']:<5}  {e['name']:<32}  {e['status']:<14}  {e.get('headline') or ''}")
    print(f"\n{len(entries)} entries; page: {index}", file=sys.stderr)
    return 0
