"""Running a sweep: the stages every point shares run once, each point is a normal run folder, and nothing
that is already done runs again.

Reuse is decided by content: each notebook of a point gets a key that hashes its parameters (run folder
aside), the contents of the local files they name, the notebook's own source, the nbkit package's source,
and the key of the notebook before it (its inputs are that notebook's outputs). A notebook whose key matches
what a folder recorded when it last ran ok is not run again; a point starts from its first notebook that is
not done (resuming a failed or interrupted point, re-attaching to its training job); the longest prefix of
notebooks with one key for every point runs once, in `DIR/shared/`, and is copied into every point.

    DIR/sweep.json  index.html  mlflow.db  shared/<key>/  runs/<point>/  (each a normal run folder)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from nbkit import locking, params, paths, runner
from nbkit.errors import UserError
from nbkit.layout import RunLayout
from nbkit.sweep.grid import Point, SweepSpec

KEYS_FILE = "sweep-keys.json"  # in a run folder: the key of every notebook as it last ran there
COMPARE_NOTEBOOK = params.CompareRunsParams.notebook  # compares the points: runs once for the sweep, never inside a point
GIB = 1024**3


@dataclass
class PointRun:
    """One point of a sweep: where it runs, the key of each of its notebooks, and how it went."""

    point: Point
    folder: Path
    keys: dict[str, str]
    notebooks: list[str]
    status: str = "pending"
    ran: list[str] | None = None
    seconds: float = 0.0
    log: Path | None = None


def stage_keys(params_file: Path, overrides: list[str]) -> dict[str, str]:
    """notebook -> content key of what it would compute for these parameters (see the module docstring)."""
    merged = params.load_file(params_file, overrides)
    keys, previous = {}, _code_digest()
    for name in merged:
        values = {k: v for k, v in merged[name].items() if k != "run_dir"}
        digest = hashlib.sha256(previous.encode())
        digest.update(name.encode())
        digest.update(json.dumps(values, sort_keys=True, default=str).encode())
        digest.update(runner.notebook_path(name).read_bytes())
        for value in _strings(values):
            digest.update(_file_digest(value).encode())
        previous = keys[name] = digest.hexdigest()[:16]
    return keys


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _file_digest(value: str) -> str:
    """The content hash of a local file or folder a parameter names ("" for anything else)."""
    if not value or "://" in value or ":" in value.split("/")[0]:
        return ""
    path = Path(value.split(":")[0])  # file.py:function
    path = path if path.is_absolute() else paths.ROOT / path
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    if path.is_dir():
        digest = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(child.relative_to(path).as_posix().encode())
            digest.update(child.read_bytes())
        return digest.hexdigest()
    return ""


@cache
def _code_digest() -> str:
    """The nbkit package's source: results depend on the code that computed them."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".json", ".yaml", ".txt") and "__pycache__" not in path.parts:
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def done_notebooks(folder: Path, keys: dict[str, str]) -> list[str]:
    """The leading notebooks of `keys` that ran ok in `folder` with these very keys (and are not stale)."""
    recorded = _recorded(folder)
    statuses = {s["notebook"]: s for s in runner.read_statuses(folder)} if folder.exists() else {}
    done = []
    for name, key in keys.items():
        row = statuses.get(name)
        if not row or row["status"] != "ok" or row.get("stale") or recorded.get(name) != key:
            break
        done.append(name)
    return done


def _recorded(folder: Path) -> dict[str, str]:
    try:
        return json.loads((folder / KEYS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _record(folder: Path, keys: dict[str, str]) -> None:
    """Record the keys of the notebooks that are now ok in the folder (a failed one keeps no key)."""
    ok = {s["notebook"] for s in runner.read_statuses(folder) if s["status"] == "ok"}
    recorded = _recorded(folder) | {name: key for name, key in keys.items() if name in ok}
    recorded = {name: key for name, key in recorded.items() if name in ok}
    (folder / KEYS_FILE).write_text(json.dumps(recorded, indent=2))


def shared_prefix(points: list[PointRun]) -> list[str]:
    """The leading notebooks whose key is the same for every point: they run once for all."""
    first = points[0]
    prefix = []
    for name in first.notebooks:
        if all(p.keys.get(name) == first.keys[name] for p in points):
            prefix.append(name)
        else:
            break
    return prefix


def default_jobs(threads_per_point: int) -> int:
    """Points that fit at once: a core budget of `threads_per_point` each, and ~1.5 GiB of memory each."""
    import psutil

    cores = max(1, (os.cpu_count() or 1) // max(1, threads_per_point))
    memory = max(1, int(psutil.virtual_memory().available / (1.5 * GIB)))
    return max(1, min(cores, memory))


def plan_points(params_file: Path, spec: SweepSpec, out: Path) -> list[PointRun]:
    """Every point with its keys; each point's parameters are validated here, before anything runs."""
    merged = params.load_file(params_file)
    notebooks = [n for n in merged if n != COMPARE_NOTEBOOK]
    if not notebooks:
        raise UserError(f"{params_file} has no notebook sections to sweep over")
    planned = []
    for point in spec.expand():
        overrides = point.overrides()
        runner.plan(params_file, out / "runs" / point.name, overrides=overrides, only=notebooks)
        keys = stage_keys(params_file, overrides)
        planned.append(PointRun(point, out / "runs" / point.name, {n: keys[n] for n in notebooks}, notebooks))
    return planned


def _nbkit_run(params_file: Path, folder: Path, notebooks: list[str], overrides: list[str], log: Path) -> int:
    """`nbkit run` of some notebooks into a folder, as its own process (its output goes to `log`)."""
    command = [sys.executable, "-m", "nbkit.cli", "run", "--params", str(params_file), "--out", str(folder),
               "--only", ",".join(n[:2] for n in notebooks)]
    for item in overrides:
        command += ["--set", item]
    folder.mkdir(parents=True, exist_ok=True)
    with log.open("a") as fh:
        fh.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n")
        fh.flush()
        return subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT, cwd=paths.ROOT,
                              env=dict(os.environ, PYTHONUNBUFFERED="1")).returncode


def run_shared(params_file: Path, points: list[PointRun], prefix: list[str], out: Path) -> Path | None:
    """Run the shared notebooks once (or reuse them) in DIR/shared/<key>; None when nothing is shared."""
    if not prefix:
        return None
    keys = {name: points[0].keys[name] for name in prefix}
    folder = out / "shared" / keys[prefix[-1]]
    missing = [n for n in prefix if n not in done_notebooks(folder, keys)]
    if missing:
        start = prefix.index(missing[0])
        print(f"shared stages {', '.join(n[:2] for n in prefix[start:])} -> {folder}", flush=True)
        code = _nbkit_run(params_file, folder, prefix[start:], points[0].point.overrides(), folder / "sweep.log")
        _record(folder, keys)
        if code != 0:
            raise UserError(f"the shared stages of the sweep stopped (exit {code}): see {folder / 'index.html'} and "
                            f"{folder / 'sweep.log'}; fix it and run the same sweep again (it resumes)")
    else:
        print(f"shared stages {', '.join(n[:2] for n in prefix)}: reused ({folder})", flush=True)
    return folder


def _seed_point(shared: Path, run: PointRun, prefix: list[str]) -> None:
    """Copy the shared notebooks' outputs into a point's folder (a normal run folder needs them all)."""
    source, target = RunLayout(shared), RunLayout(run.folder)
    for name in prefix:
        for path in source.outputs_of(name):
            if path.exists():
                dest = target.root / path.relative_to(source.root)
                if dest.exists():
                    shutil.rmtree(dest)
                shutil.copytree(path, dest)
    run.folder.mkdir(parents=True, exist_ok=True)
    _record(run.folder, {name: run.keys[name] for name in prefix})


def run_point(params_file: Path, run: PointRun, shared: Path | None, prefix: list[str]) -> PointRun:
    """Run what a point still needs; its notebooks after the shared prefix, from the first not done."""
    run.log = run.folder / "sweep.log"
    done = done_notebooks(run.folder, run.keys)
    if shared is not None and not all(n in done for n in prefix):
        _seed_point(shared, run, prefix)
        done = done_notebooks(run.folder, run.keys)
    todo = [n for n in run.notebooks if n not in done]
    if not todo:
        run.status, run.ran = "reused", []
        return run
    start = run.notebooks.index(todo[0])
    run.ran = run.notebooks[start:]
    began = time.monotonic()
    code = _nbkit_run(params_file, run.folder, run.ran, run.point.overrides(), run.log)
    run.seconds = round(time.monotonic() - began, 1)
    _record(run.folder, run.keys)
    run.status = "ok" if code == 0 else ("timeout" if code == runner.EXIT_TIMEOUT else "failed")
    return run


def run_sweep(params_file: str | Path, spec: SweepSpec, out: str | Path, jobs: int | None = None) -> list[PointRun]:
    """Run (or resume, or reuse) every point of the sweep into `out`; returns the points with their status."""
    params_file, out = Path(params_file).resolve(), Path(out).resolve()
    points = plan_points(params_file, spec, out)
    out.mkdir(parents=True, exist_ok=True)
    with locking.exclusive(out / ".nbkit-sweep.lock", f"sweep folder {out}", params=str(params_file)):
        prefix = shared_prefix(points)
        shared = run_shared(params_file, points, prefix, out)
        threads = max(_threads(params_file, p) for p in points)
        workers = jobs or spec.jobs or default_jobs(threads)
        print(f"{len(points)} point(s), {workers} at a time; each runs "
              f"{', '.join(n[:2] for n in points[0].notebooks if n not in prefix) or 'nothing new'}", flush=True)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(run_point, params_file, p, shared, prefix) for p in points]
            for i, future in enumerate(futures, 1):
                run = future.result()
                took = f" in {run.seconds:.0f} s" if run.ran else ""
                print(f"[{i}/{len(points)}] {run.point.name}: {run.status}{took}"
                      + (f" (log: {run.log})" if run.status not in ("ok", "reused") else ""), flush=True)
    return points


def _threads(params_file: Path, run: PointRun) -> int:
    """Torch threads a point's training uses (what decides how many points fit on this machine)."""
    section = params.load_file(params_file, run.point.overrides()).get("04_launch_training", {})
    from nbkit.train.spec import LocalSettings

    return int((section.get("local") or {}).get("threads", LocalSettings.model_fields["threads"].default))
