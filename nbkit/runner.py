"""The notebook pipeline: papermill runs each notebook into the run folder, this module records the truth.

Papermill marks every cell "completed" after a timeout or a dead kernel, so a notebook's status comes from
the exception papermill raised (or did not), never from the executed notebook's metadata. A notebook that
waited for work going on elsewhere (the training job) and ran out of time raises `WaitTimeout`, and its
status is `timeout`, never `ok`: the pipeline stops there instead of analysing half a job.

One pipeline at a time writes a run folder (a lock names the holder), every notebook's status.json says
when it started and ended, and the index is rebuilt from those files each time, so it marks a notebook
whose inputs were re-made after it ran as stale, and a run that was killed mid-notebook as interrupted.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shlex
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO, get_args

import yaml

from nbkit import locking, params, paths, progress
from nbkit.errors import UserError
from nbkit.layout import RunLayout

NotebookStatus = Literal["pending", "running", "ok", "failed", "timeout", "dead_kernel", "interrupted"]
STATUSES: tuple[NotebookStatus, ...] = get_args(NotebookStatus)
# Exceptions a notebook raises to say "a wait ran out" (the work it waited for goes on): status timeout.
TIMEOUT_ERRORS = ("WaitTimeout",)
EXIT_OK, EXIT_FAILED, EXIT_USER, EXIT_TIMEOUT = 0, 1, 2, 3


@dataclass
class NotebookRun:
    """One notebook of a pipeline: what it was given and how it ended."""

    notebook: str
    values: dict[str, Any]
    status: NotebookStatus = "pending"
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
         start: str | None = None, overrides: list[str] | None = None) -> list[NotebookRun]:
    """Validate every selected notebook's parameters before anything runs, so a typo in section 06 does not
    surface after ten minutes of training."""
    merged = params.load_file(params_file, overrides)
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


def _classify(exc: BaseException) -> tuple[NotebookStatus, str, int | None]:
    """Map papermill/nbclient exceptions to (status, message, failing cell index)."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        status: NotebookStatus = "timeout" if exc.ename in TIMEOUT_ERRORS else "failed"
        return status, f"{exc.ename}: {exc.evalue}", exc.cell_index
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


# --------------------------------------------------------------------------------------------- engine


def _register_engine() -> str:
    """Papermill's nbclient engine with two changes: the kernel talks over IPC sockets, not TCP (no
    "running over TCP without encryption" warning, and no open port), and each cell's start is reported
    to the live status line."""
    from jupyter_client import AsyncKernelManager
    from papermill.engines import NBClientEngine, papermill_engines
    from traitlets import CaselessStrEnum

    class IpcKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

    class NbkitEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, on_cell: Any = None,
                                     **kwargs: Any) -> Any:
            if on_cell is not None:
                code = [i for i, c in enumerate(nb_man.nb.cells) if c.cell_type == "code"]
                original = nb_man.cell_start

                def cell_start(cell: Any, cell_index: int | None = None, **kw: Any) -> Any:
                    if cell_index in code:
                        on_cell(code.index(cell_index) + 1, len(code))
                    return original(cell, cell_index, **kw)

                nb_man.cell_start = cell_start
            kwargs.setdefault("kernel_manager_class", IpcKernelManager)
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register("nbkit", NbkitEngine)
    return "nbkit"


class LiveStatus:
    """One status line for the running notebook: its cell and the progress its long steps report.

    On a terminal the line is redrawn in place every second; in a log (CI) a line is printed when a new
    step starts, and every 30 s while one runs, so a long cell is never silent.
    """

    def __init__(self, label: str, progress_file: Path, stream: TextIO | None = None,
                 log_every_s: float = 30.0) -> None:
        self.label, self.progress_file = label, progress_file
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_every_s = log_every_s
        self.started = time.monotonic()
        self.cells = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"status-{label}")
        self._printed = ("", 0.0)
        self._width = 0

    def cell(self, number: int, total: int) -> None:
        self.cells = f"cell {number}/{total}"

    def line(self, steps: list[dict[str, Any]]) -> str:
        parts = [self.label, self.cells, progress.duration(time.monotonic() - self.started)]
        text = " · ".join(p for p in parts if p)
        return text + (f" · {progress.describe(steps)}" if steps else "")

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self._show()

    def _show(self) -> None:
        steps = progress.read(self.progress_file)
        text = self.line(steps)
        if self.tty:
            self._width = max(self._width, len(text))
            self.stream.write("\r" + text.ljust(self._width))
            self.stream.flush()
            return
        key = f"{self.cells}|{steps[0]['what'] if steps else ''}"
        last_key, last = self._printed
        now = time.monotonic()
        if (key != last_key and now - last >= 2.0) or now - last >= self.log_every_s:
            print(f"  {text}", file=self.stream, flush=True)
            self._printed = (key, now)

    def __enter__(self) -> LiveStatus:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()


# -------------------------------------------------------------------------------------------- execute


def _now() -> tuple[str, float]:
    return datetime.now(UTC).isoformat(timespec="seconds"), time.time()


def execute(job: NotebookRun, run: Path, cell_timeout: float | None = None, live: bool = False) -> NotebookRun:
    """Run one notebook into `<run>/<notebook>/` and write its status.json, params.yaml and report.html.

    status.json says `running` (with this process's pid) while it runs, so an index written meanwhile, or
    after this process was killed, tells a running notebook from an interrupted one.
    """
    import papermill

    layout = RunLayout(run)
    folder = layout.notebook(job.notebook)
    folder.mkdir(parents=True, exist_ok=True)
    executed = layout.executed(job.notebook)
    layout.notebook_params(job.notebook).write_text(yaml.safe_dump(job.values, sort_keys=False))
    layout.headline(job.notebook).unlink(missing_ok=True)
    progress_file = layout.progress(job.notebook)
    progress_file.unlink(missing_ok=True)
    started_iso, started_ts = _now()
    base = {"notebook": job.notebook, "executed_notebook": executed.relative_to(layout.root).as_posix(),
            "started": started_iso,
            "started_ts": started_ts}
    _write_status(layout.status(job.notebook), base | {"status": "running", "pid": os.getpid(),
                                  "pid_create_time": locking.start_time(os.getpid())})
    status_line = LiveStatus(job.notebook, progress_file) if live else None
    os.environ[progress.ENV] = str(progress_file)
    started = time.monotonic()
    try:
        with status_line or contextlib.nullcontext():
            papermill.execute_notebook(
                str(notebook_path(job.notebook)), str(executed), parameters=job.values,
                kernel_name="python3", cwd=str(folder), progress_bar=False, engine_name=_register_engine(),
                execution_timeout=cell_timeout, on_cell=status_line.cell if status_line else None,
            )
        job.status = "ok"
    except Exception as exc:  # every failure is classified and recorded, never swallowed
        job.status, job.error, job.cell = _classify(exc)
        if job.cell is None and job.status != "failed":
            job.cell = _timed_out_cell(executed)
    finally:
        os.environ.pop(progress.ENV, None)
        progress_file.unlink(missing_ok=True)
    job.duration_s = round(time.monotonic() - started, 2)
    ended_iso, ended_ts = _now()
    _write_status(layout.status(job.notebook), base | {"status": job.status, "duration_s": job.duration_s, "error": job.error,
                                  "cell": job.cell, "ended": ended_iso, "ended_ts": ended_ts})
    if executed.exists():
        write_report(executed, layout.report(job.notebook))
    return job


def _write_status(path: Path, status: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(status, indent=2))
    os.replace(tmp, path)


# Exceptions whose message is the whole story (what is wrong, where, how to fix): the report shows the
# message, never a traceback first.
USER_ERRORS = ("UserError", "WaitTimeout")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def write_report(executed: Path, dest: Path, resume: str | None = None) -> None:
    """A shareable HTML report of the notebook's outputs, without code.

    Made for a reader: nbkit's table style; widgets left out (static HTML shows them blank, or a progress
    bar stuck at 0%); library log output folded; and for a notebook that failed, papermill's banner
    replaced by the error message and how to continue (`resume`, the command that picks up from here),
    with the traceback folded under it.
    """
    import nbformat
    from nbconvert import HTMLExporter

    from nbkit.report import CSS

    nb = nbformat.read(executed, as_version=4)
    summary = _report_cells(nb, resume)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb)
    body = body.replace("</head>", f"<style>{CSS}{_REPORT_CSS}</style>\n</head>", 1)
    if summary:
        body = re.sub(r"(<main[^>]*>|<body[^>]*>)", lambda m: m.group(0) + summary, body, count=1)
    dest.write_text(body, encoding="utf-8")


_REPORT_CSS = """
body{overflow-wrap:break-word}
.jp-OutputArea-output{max-width:100%;overflow-x:auto}
.nbkit-log summary,.nbkit-error summary{cursor:pointer;color:#57606a}
"""


def _report_cells(nb: Any, resume: str | None) -> str:
    """Rewrite the executed notebook's outputs for the report; returns the failure summary for its top."""
    import nbformat

    nb.cells = [c for c in nb.cells if "papermill-error-cell-tag" not in c.get("metadata", {}).get("tags", [])]
    nb.metadata.pop("widgets", None)  # the widgets' saved state: the report shows no widget
    summary = ""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            if _WIDGET_VIEW in out.get("data", {}):
                continue
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                body = html.escape(_ANSI.sub("", "".join(out.get("text", ""))))
                outputs.append(nbformat.v4.new_output("display_data", data={"text/html": (
                    f"<details class='nbkit-log'><summary>log output</summary><pre>{body}</pre></details>")}))
                continue
            if out.get("output_type") == "error":
                block, summary = _error_html(out, resume)
                outputs.append(nbformat.v4.new_output("display_data", data={"text/html": block}))
                continue
            outputs.append(out)
        cell.outputs = outputs
    return summary


def _error_html(out: Any, resume: str | None) -> tuple[str, str]:
    """(the error block where the cell failed, the summary for the top of the report)."""
    name, message = out.get("ename", "Error"), out.get("evalue", "")
    trace = html.escape(_ANSI.sub("", "\n".join(out.get("traceback", []))))
    user = name in USER_ERRORS
    head = "The notebook stopped here" + ("" if user else f" with an unexpected {html.escape(name)}")
    fix = ("Fix what the message says, then continue" if user else
           "This is not an input problem the notebook knows about: the traceback says where it happened. "
           "Once fixed, continue")
    fix += f" with: <code>{html.escape(resume)}</code>" if resume else " by running the notebook again."
    block = (f"<div class='nbkit-error' id='nbkit-error'><b>{head}:</b><pre class='msg'>{html.escape(message)}</pre>"
             f"<p>{fix}</p><details><summary>traceback</summary><pre>{trace}</pre></details></div>")
    summary = (f"<div class='nbkit-error'><b>This notebook did not finish.</b> "
               f"<a href='#nbkit-error'>{html.escape(message.splitlines()[0] if message else name)}</a></div>")
    return block, summary


# ---------------------------------------------------------------------------------------------- index


def read_statuses(run: Path) -> list[dict[str, Any]]:
    """Every notebook folder's latest status and headline, in pipeline order (also those of earlier runs).

    Derived on every read, never stored: `running` whose process is gone reads `interrupted`, and a
    notebook that started before an earlier notebook last ended is `stale` (its inputs were re-made).
    """
    layout = RunLayout(run)
    rows = []
    for status_file in sorted(layout.root.glob(f"[0-9][0-9]_*/{layout.status('x').name}")):
        try:
            row = json.loads(status_file.read_text())
        except (OSError, ValueError):
            row = {"notebook": status_file.parent.name, "status": "interrupted",
                   "error": f"{status_file} is unreadable"}
        headline = layout.headline(status_file.parent.name)
        row |= json.loads(headline.read_text()) if headline.exists() else {"headline": None, "html": None}
        if row.get("status") == "running" and not locking.alive(row.get("pid"), row.get("pid_create_time")):
            row |= {"status": "interrupted", "error": "the pipeline process ended while this notebook ran"}
        rows.append(row)
    newest_upstream = 0.0
    for row in rows:
        started = row.get("started_ts") or 0.0
        row["stale"] = bool(started and started < newest_upstream)
        newest_upstream = max(newest_upstream, row.get("ended_ts") or row.get("started_ts") or 0.0)
    return rows


_COLORS = {"ok": "#1a7f37", "failed": "#cf222e", "timeout": "#bf8700", "dead_kernel": "#8250df",
           "running": "#0969da", "interrupted": "#cf222e"}
_INDEX_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em;color:#1f2328;line-height:1.45}
h1{font-size:1.6em;margin:0 0 .3em}
table.runs{border-collapse:collapse;width:100%;table-layout:fixed}
table.runs>thead>tr>th,table.runs>tbody>tr>td{border-bottom:1px solid #d0d7de;padding:.6em;vertical-align:top;
text-align:left;overflow-wrap:break-word}
table.runs col.nb{width:15em}table.runs col.st{width:7em}table.runs col.du{width:7em}
table.runs>thead>tr>th{white-space:nowrap}
.err{color:#cf222e;white-space:pre-wrap;overflow-wrap:anywhere;font-family:ui-monospace,monospace;font-size:90%}
.stale{color:#9a6700}.headline{font-weight:600}
.detail{max-width:100%;overflow-x:auto;margin-top:.4em}
.detail table{border-collapse:collapse}.detail td,.detail th{padding:.2em .5em;font-size:90%;text-align:left;
border-bottom:1px solid #eaeef2;vertical-align:top}
"""


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def _detail(detail: str, headline: str) -> str:
    """A notebook's detail HTML without a repeat of its headline (the row shows it once, above)."""
    for wrapper in ("<p><b>{}</b></p>", "<p>{}</p>", "<b>{}</b>"):
        detail = detail.replace(wrapper.format(html.escape(headline)), "")
    return f"<div class='detail'>{detail}</div>" if detail.strip() else ""


def write_index(run: Path, params_file: str | Path) -> Path:
    """runs/<name>/index.html: one row per notebook with status, duration, headline and links; it fits the
    window (long words wrap, wide tables scroll inside their cell)."""
    from nbkit.report import CSS

    layout = RunLayout(run)
    rows = []
    for r in read_statuses(run):
        name = r["notebook"]
        links = " · ".join(
            f'<a href="{path.relative_to(layout.root).as_posix()}">{label}</a>'
            for path, label in ((layout.report(name), "report"), (layout.executed(name), "notebook"),
                                (layout.notebook_params(name), "params"))
            if path.exists()
        )
        error = f'<div class="err">{html.escape(r["error"])}</div>' if r.get("error") else ""
        stale = ('<div class="stale">stale: an earlier notebook ran again after this one; re-run from here to '
                 "bring it up to date</div>") if r.get("stale") else ""
        headline = f'<div class="headline">{html.escape(r["headline"])}</div>' if r.get("headline") else ""
        detail = _detail(r.get("html") or "", r.get("headline") or "")
        color = _COLORS.get(r["status"], "#57606a")
        rows.append(
            f'<tr><td><b>{html.escape(name)}</b><br>{links}</td>'
            f'<td style="color:{color}"><b>{r["status"]}</b></td><td>{_duration(r.get("duration_s"))}</td>'
            f"<td>{stale}{headline}{error}{detail}</td></tr>"
        )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>RFT Workbench run {html.escape(run.name)}</title>
<style>{_INDEX_CSS}{CSS}</style>
</head><body><h1>RFT Workbench run <code>{html.escape(run.name)}</code></h1>
<p>Params file <code>{html.escape(str(params_file))}</code> · written {stamp}</p>
<table class="runs"><colgroup><col class="nb"><col class="st"><col class="du"><col></colgroup>
<thead><tr><th>notebook</th><th>status</th><th>duration</th><th>result</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table></body></html>"""
    layout.index.write_text(page, encoding="utf-8")
    return layout.index


# ------------------------------------------------------------------------------------------- pipeline


def resume_command(params_file: Path, run: Path, notebook: str, overrides: list[str], status: str) -> str:
    """The command that continues this pipeline from `notebook` with the same settings.

    After a wait that ran out, the wait cap given on the command line is dropped and the cap is lifted:
    continuing means waiting for the job to end.
    """
    sets = list(overrides)
    if status == "timeout" and notebook.startswith("04"):
        sets = [o for o in sets if not o.startswith("04_launch_training.timeout_s=")]
        sets.append("04_launch_training.timeout_s=0")
    words = ["nbkit", "run", "--params", str(params_file), "--out", str(run), "--from", notebook[:2]]
    for item in sets:
        words += ["--set", item]
    return shlex.join(words)


def _stop_message(job: NotebookRun, run: Path, command: str) -> str:
    where = f" in cell {job.cell}" if job.cell is not None else ""
    head = f"\nPipeline stopped: {job.notebook} {job.status}{where}: {job.error}\n"
    executed = f"Executed notebook: {RunLayout(run).executed(job.notebook)}\n"
    if job.status == "timeout":
        return (head + executed + "Nothing was lost: work the notebook waited for (a training job) goes on by "
                f"itself. Continue (re-attaches, never starts over) with:\n  {command}")
    return head + executed + f"Fix it, then resume with:\n  {command}"


def run_pipeline(params_file: str | Path, out: str | Path | None = None, only: list[str] | None = None,
                 start: str | None = None, cell_timeout: float | None = None,
                 overrides: list[str] | None = None, live: bool = True) -> list[NotebookRun]:
    """Run the selected notebooks in order; stop at the first notebook that is not ok, saying where and how
    to continue. One pipeline at a time per run folder."""
    params_file = Path(params_file)
    overrides = list(overrides or [])
    run = Path(out) if out else paths.runs_root() / params_file.stem
    run = run if run.is_absolute() else Path.cwd() / run
    jobs = plan(params_file, run, only, start, overrides)
    run.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    command = shlex.join(["nbkit", "run", "--params", str(params_file)] + sum((["--set", o] for o in overrides), []))
    layout = RunLayout(run)
    with locking.exclusive(layout.lock, f"run folder {run}", command=command):
        write_index(run, params_file)
        total = time.monotonic()
        for i, job in enumerate(jobs, 1):
            print(f"[{i}/{len(jobs)}] {job.notebook} ...", flush=True)
            execute(job, run, cell_timeout, live=live)
            write_index(run, params_file)
            print(f"[{i}/{len(jobs)}] {job.notebook}: {job.status} in {job.duration_s:.1f} s "
                  f"(pipeline {time.monotonic() - total:.0f} s)", flush=True)
            if job.status != "ok":
                resume = resume_command(params_file, run, job.notebook, overrides, job.status)
                if layout.executed(job.notebook).exists():  # the report says how to continue, too
                    write_report(layout.executed(job.notebook), layout.report(job.notebook), resume)
                print(_stop_message(job, run, resume), file=sys.stderr, flush=True)
                break
        layout.run_record.write_text(json.dumps(
            {"params_file": str(params_file), "overrides": overrides, "notebooks": [asdict(j) for j in jobs]},
            indent=2, default=str))
    print(f"Index: {layout.index}", flush=True)
    return jobs


def exit_code(jobs: list[NotebookRun]) -> int:
    """0 every notebook ok, 3 stopped by a timeout (the awaited work goes on), 1 any other failure."""
    if jobs and all(j.status == "ok" for j in jobs):
        return EXIT_OK
    return EXIT_TIMEOUT if any(j.status == "timeout" for j in jobs) else EXIT_FAILED
