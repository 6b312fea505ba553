"""`nbkit reward check` and `nbkit reward probe`: the harness and the probes from the shell.

Exit codes: 0 every sample ok (check) / nothing gameable and every good format credited (probe); 1 otherwise;
2 when the reward cannot be loaded or the input file is unusable (the reason is printed).
Stdout carries the report alone: while a reward is loaded and run, whatever else writes to this process's
stdout (a reward run in-process, a process it starts, native code) is captured instead, so `--json` output
always parses. Imports stay inside the handlers so `nbkit --help` is instant.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nbkit.cli import number_arg

REWARD_HELP = ("reward: file.py (uses lambda_handler), file.py:func, package.module:func, builtin:<grader> "
               "(exact, numeric, json_fields, tool_call, format, length, composite), grader.yaml, or "
               "lambda:<function> for a deployed one")


def register(subparsers: argparse._SubParsersAction) -> None:
    reward = subparsers.add_parser(
        "reward", help="check a reward against the Lambda contract, probe it for hackability",
        description="Run a reward function (the Nova RFT Lambda contract) through the harness or the probes.",
    )
    actions = reward.add_subparsers(dest="reward_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check", help="score reward-event samples and report each sample's status",
        description="Score every sample of an events file and give each one a status: ok, exception, timeout, "
        "crash, invalid_format (a call that also answers for ids it was not given breaks the contract), "
        "missing_result or non_finite. What the reward prints is kept in the report (--json: \"output\", "
        "truncated), never on stdout. Exit 0 when all are ok, 1 otherwise, 2 when the reward cannot be loaded.",
    )
    check.add_argument("reward", metavar="REWARD", help=REWARD_HELP)
    check.add_argument("--events", required=True, metavar="PATH",
                       help="JSONL, one sample per line: messages ending with the assistant response, plus "
                            "reference_answer at the top level or under metadata")
    check.add_argument("--workers", type=number_arg(int, 0), default=1,
                       help="isolated worker processes (default 1; 0 = in this process, which a crashing "
                            "reward can take down)")
    check.add_argument("--timeout", type=number_arg(float, 0, low_open=True), default=30.0, help="seconds per call (default 30)")
    check.add_argument("--batch-size", type=number_arg(int, 1), default=8, help="samples per call (default 8)")
    check.add_argument("--retries", type=number_arg(int, 0), default=0, help="retries of calls failing with transient errors")
    check.add_argument("--memory-mb", type=number_arg(int, 64), default=2048, help="memory limit of each worker in MiB (default 2048)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(func=run_check)

    probe = actions.add_parser(
        "probe", help="score good, bad and adversarial responses derived from each record's reference",
        description="Derive good responses (the reference in several formats) and bad or adversarial ones "
        "(empty, refusal, restated question, buried answer, many candidates, grader injection, ...) from each "
        "record, score them all, and report which bad probes score high and how well good separates from bad. "
        "Exit 0 when no bad probe scores high and every good format does, 1 otherwise, 2 on load errors.",
    )
    probe.add_argument("reward", metavar="REWARD", help=REWARD_HELP)
    probe.add_argument("--data", required=True, metavar="PATH", help="JSONL data records (Nova RFT format)")
    probe.add_argument("--limit", type=number_arg(int, 0), default=50, help="records to probe (default 50; 0 = all)")
    probe.add_argument("--threshold", type=float, default=0.5, help="a score >= this counts as high (default 0.5)")
    probe.add_argument("--variant", choices=("sagemaker", "bedrock"), default="sagemaker",
                       help="event shape to send (default sagemaker)")
    probe.add_argument("--kind", choices=("numeric", "text", "json", "tool"), default=None,
                       help="force the answer shape instead of guessing it from each reference")
    probe.add_argument("--good-template", default="", metavar="TEMPLATE",
                       help="the task's answer format, placeholders naming keys of the reference answer, e.g. "
                            "'#### {final_answer}', 'ANSWER: {answer}' or '\\boxed{{{solution}}}': good probes are "
                            "written in it and adversarial ones use it (default: inferred from the prompts when "
                            "they state one; 'none' keeps the default formats)")
    probe.add_argument("--workers", type=number_arg(int, 0), default=1, help="isolated worker processes (default 1)")
    probe.add_argument("--timeout", type=number_arg(float, 0, low_open=True), default=30.0, help="seconds per call (default 30)")
    probe.add_argument("--json", action="store_true", help="print the report as JSON")
    probe.set_defaults(func=run_probe)


def _load(spec: str) -> Any:
    from nbkit.errors import UserError
    from nbkit.rewards.loader import load_reward

    try:
        return load_reward(spec)
    except UserError as exc:
        print(f"error: cannot load reward {spec!r}: {exc}", file=sys.stderr)
        return None


def read_events(path: str | Path) -> tuple[list[dict], list[str]]:
    """Samples from a JSONL events file, and warnings (line-numbered) for samples that break the event model.

    Lines that are not JSON objects, or lack an id, are errors: they cannot be scored or matched.
    """
    from pydantic import ValidationError

    from nbkit.errors import UserError
    from nbkit.rewards.models import sample_model
    from nbkit.validation import user_error

    path = Path(path)
    if not path.is_file():
        raise UserError(f"events file {path} not found")
    samples, warnings = [], []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                sample = json.loads(line)
            except ValueError as exc:
                raise UserError(f"{path}, line {number}: not valid JSON ({exc})") from None
            if not isinstance(sample, dict):
                raise UserError(f"{path}, line {number}: expected a JSON object (one sample), got "
                                f"{type(sample).__name__}")
            if not isinstance(sample.get("id"), str) or not sample["id"]:
                raise UserError(f"{path}, line {number}: the sample needs a non-empty string 'id' (results are "
                                "matched to samples by id)")
            try:
                sample_model(sample).model_validate(sample)
            except ValidationError as exc:
                problems = "; ".join(user_error(exc, "sample").lines)
                warnings.append(f"{path}, line {number} (id {sample['id']!r}): {problems}")
            samples.append(sample)
    if not samples:
        raise UserError(f"events file {path} holds no samples")
    return samples, warnings


@contextlib.contextmanager
def stdout_kept_for_the_report() -> Iterator[Any]:
    """Point fd 1 at a pipe drained (bounded) into a `Captured` for the duration, and sys.stdout straight at
    it, then put both back."""
    from nbkit.rewards.executors import Captured, Sink

    caught = Captured()
    sys.stdout.flush()
    python_stdout, sys.stdout = sys.stdout, Sink(caught)
    saved = os.dup(1)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 1)
    os.close(write_end)

    def drain() -> None:
        while data := os.read(read_end, 1 << 16):
            caught.add(data)

    reader = threading.Thread(target=drain, name="nbkit-stdout-guard", daemon=True)
    reader.start()
    try:
        yield caught
    finally:
        sys.stdout = python_stdout
        os.dup2(saved, 1)  # closes our last copy of the pipe's write end: the reader sees end-of-file
        os.close(saved)
        reader.join(timeout=2.0)
        if not reader.is_alive():
            os.close(read_end)


def run_check(args: argparse.Namespace) -> int:
    from nbkit.rewards.harness import run_harness

    with stdout_kept_for_the_report() as stray:
        reward = _load(args.reward)
        if reward is None:
            return 2
        samples, warnings = read_events(args.events)
        report = run_harness(reward, samples, batch_size=args.batch_size, workers=args.workers,
                             timeout=args.timeout, retries=args.retries, memory_mb=args.memory_mb,
                             check_determinism=True, progress=not args.json and sys.stderr.isatty())
    verdict = check_verdict(report, samples, reward)
    output = report.output
    if stray.total:
        warnings.append(f"{stray.total:,} bytes were written to stdout outside the harness (when the reward was "
                        "loaded, or by native code or a process it started); they are in the report's output")
        output = f"{output}\n{stray.text()}" if output else stray.text()
    for line in warnings + report.warnings:
        print(f"warning: {line}", file=sys.stderr)
    if args.json:
        body = {"verdict": verdict, "summary": report.summary,
                "results": [{"id": r.id, "status": r.status, "score": r.score, "error": r.error}
                            for r in report.results],
                "latency": report.to_dict(results=False)["latency"], "output": output}
        print(json.dumps(body, indent=2))
    else:
        print(verdict)
        print(_check_table(report))
        print(report.describe().splitlines()[0] + "; " + report.describe().splitlines()[1])
    return 0 if report.ok else 1


def check_verdict(report: Any, samples: list[dict], reward: Any) -> str:
    """One line that leads with the failure (count, exception, file:line, likely cause) when there is one."""
    from nbkit.rewards.diagnose import diagnose

    if report.ok:
        return f"all {len(report)} samples ok"
    failure = diagnose(report.statuses, report.errors, samples, reward.source)
    assert failure is not None  # a report that is not ok has a failing sample to diagnose
    return failure.sentence("samples")


def _check_table(report: Any) -> str:
    width = max([len(r.id) for r in report.results] + [2])
    lines = [f"{'id':<{width}}  {'status':<15} {'score':>8}  error"]
    for r in report.results:
        score = f"{r.score:.4g}" if r.score is not None else "-"
        lines.append(f"{r.id:<{width}}  {r.status:<15} {score:>8}  {(r.error or '')[:120]}")
    return "\n".join(lines)


def run_probe(args: argparse.Namespace) -> int:
    from nbkit.data import read_jsonl
    from nbkit.rewards.probes import run_probes

    with stdout_kept_for_the_report() as stray:
        reward = _load(args.reward)
        if reward is None:
            return 2
        records = list(read_jsonl(args.data))
        if args.limit:
            records = records[: args.limit]
        report = run_probes(reward, records, threshold=args.threshold, variant=args.variant,
                            workers=args.workers, timeout=args.timeout, kind=args.kind,
                            good_template=args.good_template)
    if stray.total:
        print(f"warning: the reward wrote {stray.total:,} bytes to stdout; they were kept out of the report",
              file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        table = report.table()[["probe", "expect", "n", "failed", "mean_score", "share_high", "problem"]]
        print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
        print(report.verdict())
        for probe in report.gameable:
            example = report.examples(probe, 1)[0]
            print(f"  e.g. {probe} scored {example['score']}: {example['response'][:160]!r}")
    return 0 if not report.gameable and not report.rejects_good else 1
