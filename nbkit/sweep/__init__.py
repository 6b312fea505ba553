"""Sweeps: the pipeline over a grid of parameter values (and seeds), and one page that compares the runs.

`nbkit sweep --params BASE.yaml --grid SECTION.NAME=V1,V2 [--seeds N] [--out DIR] [--jobs K]` runs every
point as a normal run folder (shared stages once, nothing done twice; see `execute`), then writes
`DIR/sweep.json` (every run with its settings, status and headline numbers, and the comparison),
`DIR/index.html` (see `page`) and an MLflow parent run with one child per point (`DIR/mlflow.db`), so
MLflow's own compare view works too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbkit.sweep.compare import RunsComparison, compare_runs, read_run
from nbkit.sweep.execute import PointRun, run_sweep
from nbkit.sweep.grid import SweepSpec, add_point, combine, from_file, parse_grid

__all__ = ["SweepResult", "SweepSpec", "add_point", "combine", "from_file", "parse_grid", "sweep"]

SWEEP_FILE = "sweep.json"


@dataclass
class SweepResult:
    folder: Path
    points: list[PointRun]
    comparison: RunsComparison

    @property
    def ok(self) -> bool:
        return all(p.status in ("ok", "reused") for p in self.points)

    @property
    def executed(self) -> int:
        """Points that ran anything in this invocation."""
        return sum(bool(p.ran) for p in self.points)


def sweep(params_file: str | Path, spec: SweepSpec, out: str | Path, jobs: int | None = None,
          n_boot: int = 2000) -> SweepResult:
    """Run the sweep and write its record, page and MLflow runs."""
    from nbkit.sweep import page

    out = Path(out).resolve()
    points = run_sweep(params_file, spec, out, jobs)
    records = [read_run(p.folder, p.point.name, dict(p.point.values), p.point.seed) for p in points]
    comparison = compare_runs(records, n_boot=n_boot)
    record: dict[str, Any] = {"params_file": str(params_file), "grid": spec.grid, "points": spec.points,
                              "seeds": spec.seeds, **comparison.to_dict(relative_to=out)}
    for entry, point in zip(record["runs"], points, strict=True):
        entry["executed"] = point.ran or []
        entry["keys"] = point.keys
    (out / SWEEP_FILE).write_text(json.dumps(record, indent=2, default=str))
    links = {p.point.name: f"{p.folder.relative_to(out).as_posix()}/index.html" for p in points}
    intro = f"<p>Params file <code>{params_file}</code>; grid {', '.join(spec.grid) or 'none'}" + (
        f"; {spec.seeds} seeds per point" if spec.seeds else "") + "</p>"
    page.write(comparison, out / "index.html", f"RFT Workbench sweep {out.name}", links, intro)
    log_to_mlflow(out, comparison)
    return SweepResult(out, points, comparison)


def log_to_mlflow(out: Path, comparison: RunsComparison) -> str:
    """A parent run for the sweep and one child per point (settings as params, headline numbers as metrics,
    the run folder as a tag), in `DIR/mlflow.db`; an earlier sweep record is replaced, not duplicated."""
    import logging

    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its table-creation notes are not the user's news

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    name = f"sweep-{out.name}"
    experiment = client.get_experiment_by_name(name)
    experiment_id = (experiment.experiment_id if experiment is not None else
                     client.create_experiment(name, artifact_location=(out / "mlartifacts").as_uri()))
    for old in client.search_runs([experiment_id]):
        client.delete_run(old.info.run_id)
    parent = client.create_run(experiment_id, run_name=name, tags={
        "mlflow.note.content": comparison.verdict(), "nbkit.sweep_folder": str(out)}).info.run_id
    for run in comparison.runs:
        child = client.create_run(experiment_id, run_name=run.name, tags={
            "mlflow.parentRunId": parent, "nbkit.run_folder": str(run.folder), "nbkit.status": run.status}).info.run_id
        values = {k: v for k, v in run.metrics.items() if isinstance(v, int | float)}
        client.log_batch(child, metrics=[Metric(k, float(v), 0, 0) for k, v in values.items()],
                         params=[Param(k, str(v)) for k, v in run.settings.items()]
                         + ([Param("seed", str(run.seed))] if run.seed is not None else []),
                         tags=[RunTag("nbkit.config", run.config)])
        client.set_terminated(child, "FINISHED" if run.status == "ok" else "FAILED")
    client.set_terminated(parent, "FINISHED")
    return parent
