"""The notebook pipeline: papermill runs each notebook into the run folder, this module records the truth.

Papermill marks every cell "completed" after a timeout or a dead kernel, so a notebook's status comes from
the exception papermill raised (or did not), never from the executed notebook's metadata.
"""

from __future__ import annotations

import html
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from nbkit import params, paths
from nbkit.errors import UserError

STATUSES = ("ok", "failed", "timeout", "dead_kernel")


@dataclass
class NotebookRun:
    """One notebook of a pipeline: what it was given and how it ended."""

    notebook: str
    values: dict[str, Any]
    status: str = "pending"
    duration_s: float = 0.0
    error: str | None = None
    cell: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def notebook_path(name: str) -> Path:
    return paths.NOTEBOOKS / f"{name}.ipynb"


def declared_parameters(name: str) -> dict[str, dict[str, Any]]:
    """The names a notebook's `parameters` cell declares (papermill's own reading of the cell)."""
    import papermill

    return papermill.inspect_notebook(str(notebook_path(name)))


def _select(names: list[str], only: list[str] | None, start: str | None) -> list[str]:
    """Apply --only and --from, both given as full names or two-digit numbers."""
    def match(wanted: str) -> str:
        hits = [n for n in names if wanted in (n, n[:2])]
        if not hits:
            raise UserError(f"notebook {wanted!r} is not in this params file; it has: {', '.join(names)}")
        return hits[0]

    selected = names
    if only:
        keep = {match(w) for w in only}
        selected = [n for n in selected if n in keep]
    if start:
        first = match(start)
        selected = [n for n in selected if n >= first]
    return selected


def plan(params_file: str | Path, run: str | Path, only: list[str] | None = None,
         start: str | None = None) -> list[NotebookRun]:
    """Validate every selected notebook's parameters before anything runs, so a typo in section 06 does not
    surface after ten minutes of training."""
    merged = params.load_file(params_file)
    runs = []
    problems = []
    for name in _select(list(merged), only, start):
        if not notebook_path(name).exists():
            problems.append(f"{name}: notebook file {notebook_path(name)} does not exist")
            continue
        values = merged[name] | {"run_dir": str(run)}
        try:
            checked = params.validate(name, values, source=str(params_file))
        except UserError as exc:
            problems.append(str(exc))
            continue
        undeclared = sorted(set(values) - set(declared_parameters(name)))
        if undeclared:
            problems.append(f"{name}: the notebook's parameters cell does not declare {', '.join(undeclared)}")
            continue
        runs.append(NotebookRun(name, checked.model_dump(mode="json")))
    if problems:
        raise UserError("the pipeline did not start:\n" + "\n".join(problems))
    return runs


def _classify(exc: BaseException) -> tuple[str, str, int | None]:
    """Map papermill/nbclient exceptions to (status, message, failing cell index)."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        return "failed", f"{exc.ename}: {exc.evalue}", exc.cell_index
    if isinstance(exc, CellTimeoutError):
        return "timeout", f"a cell ran past its time limit: {exc}", None
    if isinstance(exc, DeadKernelError):
        return "dead_kernel", f"the kernel died (out of memory or a crash): {exc}", None
    return "failed", f"{type(exc).__name__}: {exc}", None


def _timed_out_cell(executed: Path) -> int | None:
    """The cell that was running when papermill gave up: the first code cell without an end time."""
    import nbformat

    try:
        nb = nbformat.read(executed, as_version=4)
    except Exception:  # a notebook papermill could not even write: no cell to name
        return None
    for index, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("papermill", {})
        if cell.cell_type == "code" and meta.get("start_time") and not meta.get("end_time"):
            return index
    return None


def execute(job: NotebookRun, run: Path, cell_timeout: float | None = None) -> NotebookRun:
    """Run one notebook into `<run>/<notebook>/` and write its status.json, params.yaml and report.html."""
    import papermill

    folder = run / job.notebook
    folder.mkdir(parents=True, exist_ok=True)
    executed = folder / f"{job.notebook}.ipynb"
    (folder / "params.yaml").write_text(yaml.safe_dump(job.values, sort_keys=False))
    (folder / "status.json").unlink(missing_ok=True)
    (folder / "headline.json").unlink(missing_ok=True)
    started = time.monotonic()
    try:
        papermill.execute_notebook(
            str(notebook_path(job.notebook)), str(executed), parameters=job.values,
            kernel_name="python3", cwd=str(folder), progress_bar={"desc": job.notebook, "leave": False},
            execution_timeout=cell_timeout,
        )
        job.status = "ok"
    except Exception as exc:  # every failure is classified and recorded, never swallowed
        job.status, job.error, job.cell = _classify(exc)
        if job.cell is None and job.status != "failed":
            job.cell = _timed_out_cell(executed)
    job.duration_s = round(time.monotonic() - started, 2)
    status = {"status": job.status, "notebook": job.notebook, "duration_s": job.duration_s,
              "error": job.error, "cell": job.cell, "executed_notebook": str(executed)}
    (folder / "status.json").write_text(json.dumps(status, indent=2))
    if executed.exists():
        write_report(executed, folder / "report.html")
    return job


def write_report(executed: Path, dest: Path) -> None:
    """A shareable HTML report without code (the notebook prints its own parameters table)."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    dest.write_text(body, encoding="utf-8")


def read_statuses(run: Path) -> list[dict[str, Any]]:
    """Every notebook folder's status and headline, in pipeline order (also those of earlier --from runs)."""
    rows = []
    for status_file in sorted(run.glob("[0-9][0-9]_*/status.json")):
        row = json.loads(status_file.read_text())
        headline = status_file.with_name("headline.json")
        row |= json.loads(headline.read_text()) if headline.exists() else {"headline": None, "html": None}
        rows.append(row)
    return rows


_COLORS = {"ok": "#1a7f37", "failed": "#cf222e", "timeout": "#bf8700", "dead_kernel": "#8250df"}


def write_index(run: Path, params_file: str | Path) -> Path:
    """runs/<name>/index.html: one row per notebook with status, duration, headline and links."""
    rows = []
    for r in read_statuses(run):
        name = r["notebook"]
        links = " · ".join(
            f'<a href="{name}/{target}">{label}</a>'
            for target, label in (("report.html", "report"), (f"{name}.ipynb", "notebook"), ("params.yaml", "params"))
            if (run / name / target).exists()
        )
        error = f'<div class="err">{html.escape(r["error"])}</div>' if r.get("error") else ""
        headline = html.escape(r["headline"]) if r.get("headline") else ""
        detail = r.get("html") or ""
        color = _COLORS.get(r["status"], "#57606a")
        rows.append(
            f'<tr><td><b>{html.escape(name)}</b><br>{links}</td>'
            f'<td style="color:{color}"><b>{r["status"]}</b></td><td>{r["duration_s"]:.1f} s</td>'
            f"<td>{headline}{error}{detail}</td></tr>"
        )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>RFT Workbench run {html.escape(run.name)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #d0d7de;padding:.6em;vertical-align:top;text-align:left}}
.err{{color:#cf222e;font-family:monospace;white-space:pre-wrap}}td table td,td table th{{padding:.2em .5em;font-size:90%}}</style>
</head><body><h1>RFT Workbench run <code>{html.escape(run.name)}</code></h1>
<p>Params file <code>{html.escape(str(params_file))}</code> · written {stamp}</p>
<table><tr><th>notebook</th><th>status</th><th>duration</th><th>result</th></tr>{''.join(rows)}</table></body></html>"""
    index = run / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def run_pipeline(params_file: str | Path, out: str | Path | None = None, only: list[str] | None = None,
                 start: str | None = None, cell_timeout: float | None = None) -> list[NotebookRun]:
    """Run the selected notebooks in order; stop at the first failure with a message that says where."""
    params_file = Path(params_file)
    run = Path(out) if out else paths.runs_root() / params_file.stem
    run = run if run.is_absolute() else Path.cwd() / run
    jobs = plan(params_file, run, only, start)
    run.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    total = time.monotonic()
    for i, job in enumerate(jobs, 1):
        print(f"[{i}/{len(jobs)}] {job.notebook} ...", flush=True)
        execute(job, run, cell_timeout)
        write_index(run, params_file)
        print(f"[{i}/{len(jobs)}] {job.notebook}: {job.status} in {job.duration_s:.1f} s "
              f"(pipeline {time.monotonic() - total:.0f} s)", flush=True)
        if job.status != "ok":
            where = f" in cell {job.cell}" if job.cell is not None else ""
            print(f"\nPipeline stopped: {job.notebook} {job.status}{where}: {job.error}\n"
                  f"Executed notebook: {run / job.notebook / (job.notebook + '.ipynb')}\n"
                  f"Fix it, then resume with: nbkit run --params {params_file} --out {run} --from {job.notebook[:2]}",
                  file=sys.stderr, flush=True)
            break
    (run / "run.json").write_text(json.dumps(
        {"params_file": str(params_file), "notebooks": [asdict(j) for j in jobs]}, indent=2, default=str))
    print(f"Index: {run / 'index.html'}", flush=True)
    return jobs
