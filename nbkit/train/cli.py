"""`nbkit train`: plan (and submit) the training job of a params file's 04_launch_training section.

Import-light on purpose (argparse only at import); the spec, backends and trainers load when it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nbkit.cli import number_arg

EXIT_OK, EXIT_FAILED, EXIT_USER, EXIT_TIMEOUT = 0, 1, 2, 3
POLL_S = 2.0  # seconds between status polls while waiting

DESCRIPTION = """\
Build the job spec from the 04_launch_training section of a params file (plus its shared keys), check it
against the chosen surface's allowed ranges, print the spec, the derived quantities (steps, rollouts,
tokens, reward calls, time and cost estimates) and the backend's plan, then submit it unless it is a dry
run, and record <run>/training/job.json. A local job runs in the background; with `wait: true` (the
default) this command waits for it and shows its progress.

Paid jobs are opt-in: a job is submitted only when the section says `dry_run: false` and --dry-run is
not given.

exit codes:
  0  planned (dry run), submitted, or the awaited job ended (completed, or stopped on request)
  1  the awaited job failed
  2  bad params file, invalid spec, or another error you can fix (the message says what and where)
  3  the wait timed out; the job is still running (run the same command again to re-attach)

Launching again into the same run folder never starts over: a running job is re-attached, a completed one
reused, a failed or stopped one resumed from its last checkpoint. --restart trains a new job (the old one's
files are kept under <run>/training/previous/).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="plan (and submit) a training job from a params file",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--params", required=True, help="params file, e.g. params/demo.yaml")
    parser.add_argument("--dry-run", action="store_true", help="plan only, even if the file says dry_run: false")
    parser.add_argument("--out", help="run folder (default: runs/<params file name>); holds data/ and training/")
    wait = parser.add_mutually_exclusive_group()
    wait.add_argument("--wait", dest="wait", action="store_true", default=None, help="wait for the job to end")
    wait.add_argument("--no-wait", dest="wait", action="store_false", help="return once the job is submitted")
    parser.add_argument("--timeout", type=number_arg(float, 0), help="seconds to wait, 0 = no limit "
                        "(default: the section's timeout_s)")
    parser.add_argument("--restart", action="store_true", help="train a new job even if the run has one")
    parser.add_argument("--json", action="store_true", help="print the job record as JSON at the end")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """The handler: UserErrors propagate to nbkit.cli.main, which prints them and exits 2."""
    from nbkit import params, paths
    from nbkit.errors import UserError, WaitTimeout
    from nbkit.train import job
    from nbkit.train.stage import prepare

    section = "04_launch_training"
    sections = params.load_file(args.params)
    if section not in sections:
        raise UserError(
            f"{args.params} has no {section} section: add one (`{section}: {{}}` for the defaults, which plan a "
            "dry run of the local backend)"
        )
    values = dict(sections[section])
    run_dir = Path(args.out) if args.out else paths.runs_root() / Path(args.params).stem
    values["run_dir"] = str(run_dir)
    if args.dry_run:
        values["dry_run"] = True
    P = params.validate(section, values, source=str(args.params))
    assert isinstance(P, params.LaunchTrainingParams)  # the section's params class
    launch = prepare(P)
    if args.restart:
        launch.restart = True
    print(launch.spec.table())
    print()
    print(launch.derived_table())
    for warning in launch.warnings:
        print(f"warning: {warning}")
    print()
    print(launch.plan.describe())
    wait = P.wait if args.wait is None else args.wait
    timeout = args.timeout if args.timeout is not None else P.timeout_s
    code = EXIT_OK
    try:
        result = launch.start(wait=wait, timeout=timeout, poll_s=POLL_S)
        handle, state = result.handle, result.state
    except WaitTimeout as exc:
        print(f"status: running: {exc}", file=sys.stderr)
        handle, state, code = job.load_job(P.run_dir), "running", EXIT_TIMEOUT
    print(f"\n{handle.backend} job {handle.job_id}: {state}; recorded in {job.job_path(paths.run_dir(P.run_dir))}")
    if state == "failed":
        code = EXIT_FAILED
        print(handle.logs(tail=30), file=sys.stderr)
    if args.json:
        print(json.dumps(job.read_job(paths.run_dir(P.run_dir)), indent=2, default=str))
    return code
