"""One monitoring pass: read the metrics, run the health rules, decide continue/stop, write the results.

The notebook, the CLI and the refresh loop all call `monitor(...)`, so they agree by construction.
`<run>/monitor/metrics.parquet` holds the frame and `<run>/monitor/health.json` the findings, every rule's
verdict, the thresholds, the recommendation and what was read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from nbkit.layout import HEALTH, METRICS, portable
from nbkit.monitor import rules
from nbkit.monitor.frame import summary
from nbkit.monitor.rules import Health, check, findings_table
from nbkit.monitor.sources import JobContext, read, resolve
from nbkit.monitor.stop import FINISHED, Recommendation, finished, recommend_stop
from nbkit.train.actual import EstimateCheck
from nbkit.train.actual import check as check_estimate


@dataclass
class MonitorResult:
    """The frame, the health check, the recommendation and the job context of one monitoring pass."""

    frame: pd.DataFrame
    health: Health
    recommendation: Recommendation
    context: JobContext
    source: str
    estimate: EstimateCheck | None = None  # what 04 estimated against what the ended job took

    def to_dict(self) -> dict[str, Any]:
        """The content of health.json (plain JSON types)."""
        return {
            "generated": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": self.source,
            "kind": self.frame.attrs.get("kind", ""),
            "job": self.context.to_dict(),
            "metrics": summary(self.frame),
            "recommendation": self.recommendation.to_dict(),
            "estimate_vs_actual": self.estimate.to_dict() if self.estimate else None,
            **self.health.to_dict(),
        }

    def estimate_text(self) -> str:
        """Estimate vs actual as plain text, or why there is nothing to check yet."""
        if self.estimate is not None:
            return self.estimate.table()
        return ("no estimate to check: the job has not ended, was a dry run, or this source has no training/job.json "
                "(notebook 04 records the estimate there)")

    def findings_table(self) -> pd.DataFrame:
        return findings_table(self.health.findings)

    def checks_table(self) -> pd.DataFrame:
        return pd.DataFrame([c.to_dict() for c in self.health.checks], columns=["name", "status", "detail"])

    def text(self) -> str:
        """The health summary and the recommendation as plain text (CLI and static reports)."""
        info = summary(self.frame)
        rec = self.recommendation
        lines = [
            f"source: {self.source}",
            f"steps: {info['first_step']}-{info['last_step']} ({info['rows']} logged)" if info["rows"] else
            "steps: none logged yet",
            "",
            f"RECOMMENDATION: {rec.action.upper()}: {rec.reason}",
        ]
        lines += [f"  also: {r}" for r in (rec.reasons if rec.action in FINISHED else rec.reasons[1:])]
        if rec.best_step is not None and rec.action not in FINISHED:
            lines.append(f"  {rec.best_text()}" + (f" -> {rec.checkpoint}" if rec.checkpoint else ""))
        lines += ["", f"findings: {len(self.health.findings)}"]
        for f in self.health.findings:
            lines.append(f"  {f.line()}")
            lines.append(f"      {f.explanation}")
            lines.append(f"      remedy: {f.remedy}")
        lines += ["", "checks:"]
        lines += [f"  {c.name:<17} {c.status:<8} {c.detail}" for c in self.health.checks]
        if self.estimate is not None:
            lines += ["", "estimate vs actual:"] + [f"  {line}" for line in self.estimate.table().splitlines()]
        notes = info["notes"]
        if notes:
            lines += ["", "notes on the source:"] + [f"  {n}" for n in notes]
        return "\n".join(lines)


def monitor(
    source: Any,
    *,
    thresholds: dict[str, Any] | None = None,
    target: float | None = None,
    budget_steps: int | None = None,
    budget_time_s: float | None = None,
    budget_cost: float | None = None,
    cost_per_hour: float | None = None,
    region: str | None = None,
    client: Any = None,
) -> MonitorResult:
    """Read, check and recommend. What job.json knows (max_new_tokens, checkpoints, price) fills the gaps."""
    concrete, context = resolve(source)
    frame = read(concrete, region=region, client=client)
    overrides = dict(thresholds or {})
    if context.max_new_tokens and "max_new_tokens" not in overrides:
        overrides["max_new_tokens"] = context.max_new_tokens
    th = rules.thresholds(overrides)
    health = check(frame, th)
    checkpoints = dict(context.checkpoints)
    if context.final_checkpoint and len(frame):  # the merged weights written at the end of the run
        checkpoints.setdefault(int(frame["step"].iloc[-1]), context.final_checkpoint)
    rec = recommend_stop(
        frame, health.findings, target, budget_steps, budget_time_s, budget_cost,
        cost_per_hour=cost_per_hour or context.cost_per_hour, checkpoints=checkpoints or None,
        confidence=th.confidence,
    )
    if context.status in FINISHED:
        name = portable(rec.checkpoint, context.run_dir) if rec.checkpoint and context.run_dir else rec.checkpoint
        rec = finished(rec, context.status, frame, context.total_steps, name)
    estimate = check_estimate(context.run_dir, frame) if context.run_dir is not None else None
    return MonitorResult(frame, health, rec, context, concrete.describe(), estimate)


def write(result: MonitorResult, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write metrics.parquet and health.json into a folder (the run's monitor/ stage folder)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame = result.frame.copy()
    frame.attrs = {k: v for k, v in frame.attrs.items() if isinstance(v, str | int | float | list)}
    parquet = out / METRICS
    frame.to_parquet(parquet, index=False)
    health = out / HEALTH
    tmp = health.with_suffix(".json.tmp")
    record = result.to_dict()
    if result.context.run_dir:  # paths in the run folder relative to it, so the folder travels
        record = portable(record, result.context.run_dir)
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(tmp, health)
    return parquet, health
