"""What notebook 05 calls: one monitoring pass from its parameters, shown and saved; the follow loop.

Kept out of the notebook so tests reach it: the notebook is a parameters cell and three calls.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbkit import paths
from nbkit.errors import UserError
from nbkit.layout import RunLayout
from nbkit.monitor.live import LiveView, follow, job_running
from nbkit.monitor.sources import parse_source
from nbkit.monitor.summary import MonitorResult, monitor, write

if TYPE_CHECKING:
    from nbkit.params import MonitorTrainingParams


def monitor_kwargs(p: Any) -> dict[str, Any]:
    """The `monitor()` arguments a notebook's parameters ask for."""
    overrides = dict(p.thresholds)
    overrides.setdefault("hacking_metric", p.independent_metric)
    return {
        "thresholds": overrides, "target": p.target, "budget_steps": p.budget_steps,
        "budget_time_s": p.budget_time_s, "budget_cost": p.budget_cost, "cost_per_hour": p.cost_per_hour,
        "region": p.region or None,
    }


def source_of(p: Any) -> Any:
    """The `source` parameter, or the run folder (whose training/job.json says where the metrics are).

    A relative file path is taken from the project root, like run_dir: kernels start in different folders.
    """
    if not p.source:
        return paths.run_dir(p.run_dir)
    parsed = parse_source(p.source)
    if isinstance(parsed, Path) and not parsed.is_absolute():
        return paths.ROOT / parsed
    return parsed


def figure_png(result: MonitorResult, smooth_span: int = 0, run_dir: str = "") -> bytes:
    """The dashboard as PNG bytes: shows the same in JupyterLab, papermill output and static HTML; the
    source in its title is named relative to the run folder (the figure travels with the report)."""
    from nbkit.monitor.plots import dashboard

    rec = result.recommendation
    source = RunLayout(run_dir).relative(result.frame.attrs.get("source", result.source))
    fig = dashboard(result.frame, result.health.findings, rec.best_step, smooth_span=smooth_span or None,
                    max_new_tokens=result.health.thresholds.max_new_tokens, thresholds=result.health.thresholds,
                    title=f"Training metrics: {source}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def save_and_show(p: Any, result: MonitorResult, view: LiveView | None) -> None:
    """Write metrics.parquet, health.json and curves.png; show recommendation, findings, plots and checks."""
    layout = RunLayout(p.run_dir)
    write(result, layout.stage("monitor"))
    png = figure_png(result, p.smooth_span, p.run_dir)
    layout.curves.write_bytes(png)
    if view is None:
        return
    from IPython.display import Image, Markdown

    from nbkit.display import table
    from nbkit.monitor.stop import FINISHED

    rec = result.recommendation
    worst = result.health.findings[0].severity if result.health.findings else "none"
    notes = rec.reasons if rec.action in FINISHED else rec.reasons[1:]
    best = "" if rec.best_step is None or rec.action in FINISHED else (
        f"\nBest: {rec.best_text()}" + (f" at `{layout.relative(rec.checkpoint)}`" if rec.checkpoint else "") + "\n")
    view.update("recommendation", Markdown(
        f"### {rec.action.upper()}: {rec.reason}\n\n"
        + "".join(f"- {'' if rec.action in FINISHED else 'also: '}{r}\n" for r in notes)
        + best
        + f"\n{len(result.health.findings)} finding(s), most severe: {worst}. Source: "
        f"`{layout.relative(result.source)}`, {len(result.frame)} logged steps."
    ))
    view.update("findings", table(result.findings_table(), title="Findings", empty="none: every check passed"))
    view.update("figure", Image(png))
    view.update("checks", table(result.checks_table(), title="Every check"))


def require_ended_job(p: Any) -> str | None:
    """Notebook 05 analyses a job that has ended; a running one only when asked (follow or allow_running).

    Why: a pipeline must not judge half a job ("CONTINUE") as if it were the whole. An explicit `source`
    (a CSV, an MLflow run, CloudWatch logs) is read as it is. Returns the job's status (None without a job).
    """
    if p.source:
        return None
    from nbkit.train.job import load_job

    handle = load_job(RunLayout(p.run_dir).root)
    state = handle.status()
    if state == "planned":
        raise UserError(f"the run's training job {handle.job_id} was a dry run: there is nothing to monitor; set "
                        "dry_run: false in 04_launch_training to train")
    if state in ("pending", "running") and not (p.follow or p.allow_running):
        done = handle.progress()
        at = f" at step {done[0]}/{done[1]}" if done else ""
        raise UserError(
            f"training job {handle.job_id} ({handle.backend}) is {state}{at}: notebook 05 analyses a job that has "
            "ended. Wait for it (nbkit run --from 04 re-attaches and waits), set follow: true to watch it live, or "
            "allow_running: true for a snapshot of the steps so far"
        )
    return state


def run_once(p: Any, view: LiveView | None = None) -> MonitorResult:
    """Check the job has ended (or that a live look was asked for), then read, check, recommend, save, show."""
    require_ended_job(p)
    result = monitor(source_of(p), **monitor_kwargs(p))
    save_and_show(p, result, view)
    return result


def run(p: MonitorTrainingParams, view: LiveView | None = None) -> MonitorResult:
    """Notebook 05's stage: one monitoring pass, then (with `follow`) refreshes until the job ends."""
    result = run_once(p, view)
    return follow_job(p, view or LiveView(), result) if p.follow else result


def follow_job(p: Any, view: LiveView, first: MonitorResult) -> MonitorResult:
    """Refresh in place every `refresh_s` seconds while the job runs (at most `follow_timeout_s`)."""
    if not job_running(first.context):
        print(f"job {first.context.job_id or first.source} is not running: nothing to follow")
        return first
    result = follow(
        lambda: monitor(source_of(p), **monitor_kwargs(p)),
        lambda r: save_and_show(p, r, view),
        lambda: job_running(first.context),
        interval_s=p.refresh_s, timeout_s=p.follow_timeout_s,
    )
    return result or first


def headline(result: MonitorResult) -> str:
    """The run index's one line: the recommendation, the best checkpoint and what the checks found."""
    findings = result.health.findings
    found = ", ".join(f"{f.name} ({f.severity})" for f in findings) if findings else "no health findings"
    steps = f"{len(result.frame)} steps" if len(result.frame) else "no steps logged yet"
    estimate = f" {result.estimate.headline()}" if result.estimate is not None else ""
    return f"{result.recommendation.headline()} {steps}; {found}.{estimate}"
