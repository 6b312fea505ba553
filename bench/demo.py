"""How long does `make demo` take, per notebook, on an idle machine, with a busy neighbour, and on one core?

Run: .venv/bin/python bench/demo.py [--mode idle|busy|one-core|all] [--params params/demo.yaml] [--keep]

Each mode runs the whole pipeline (`nbkit run`) into a fresh run folder with a fresh model cache, so the tiny
model's build and warm start are counted as a new user pays them:
- idle: as `make demo` runs it;
- busy: while another process spins on CPU 0 (a neighbour's job on a shared 2-core machine);
- one-core: the pipeline and everything it starts pinned to CPU 0 (`taskset -c 0`).
It prints the seconds of every notebook, the phases inside the two long ones (03: the tiny model's build and
warm start, then sampling and scoring; 04: the worker's start, the GRPO steps, validation, the final save),
the CPU seconds the whole pipeline used (on a shared machine the figure that does not count the neighbours),
the load average, and the demo's learning result (baseline vs tuned mean reward with the paired 95% interval),
then one JSON line. Nothing here is a pass/fail threshold.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBKIT = str(Path(sys.executable).with_name("nbkit"))


def busy_neighbour() -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    os.sched_setaffinity(proc.pid, {0})
    return proc


def run_mode(mode: str, params: Path, workdir: Path) -> dict:
    run, cache = workdir / f"run-{mode}", workdir / f"cache-{mode}"
    command = [NBKIT, "run", "--params", str(params), "--out", str(run)]
    if mode == "one-core":
        command = ["taskset", "-c", "0", *command]
    env = dict(os.environ, NBKIT_CACHE=str(cache), PYTHONUNBUFFERED="1")
    neighbour = busy_neighbour() if mode == "busy" else None
    started, load = time.monotonic(), os.getloadavg()[0]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    wall = time.monotonic() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    statuses = [json.loads(p.read_text()) for p in sorted(run.glob("[0-9][0-9]_*/status.json"))]
    result = {
        "mode": mode, "exit_code": proc.returncode, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "load_average_before": round(load, 2), "load_average_after": round(os.getloadavg()[0], 2),
        "notebooks": {s["notebook"]: {"status": s["status"], "seconds": s.get("duration_s")} for s in statuses},
        "phases": phases(run),
        "learning": learning(run),
    }
    if proc.returncode != 0:
        result["log_tail"] = (proc.stdout + proc.stderr)[-2000:]
    return result


def phases(run: Path) -> dict:
    """Where the time of notebooks 03 and 04 went, from what the run folder records (seconds)."""
    out: dict = {}
    build = run / "model" / "nbkit_build.json"
    if build.exists():
        info = json.loads(build.read_text())
        out["03_model_build_s"] = info["build_seconds"]
        out["03_warm_start_steps"] = info["warm_start_steps"]
    progress, status = run / "training" / "job" / "progress.jsonl", run / "training" / "job" / "status.json"
    if progress.exists() and status.exists():
        rows = [json.loads(line) for line in progress.read_text().splitlines() if line.strip()]
        train = [r for r in rows if r["kind"] == "train"]
        job = json.loads(status.read_text())
        if train:
            first = train[0]["time"] - train[0].get("step_time", 0.0)
            out["04_worker_s"] = job.get("seconds")
            out["04_worker_cpu_s"] = job.get("cpu_seconds")
            out["04_steps"] = len(train)
            out["04_steps_s"] = round(train[-1]["time"] - first, 1)
            out["04_validation_s"] = round(sum(r.get("val_time_s", 0.0) for r in rows if r["kind"] == "eval"), 1)
            out["04_completion_len_mean"] = round(sum(r.get("completion_len_mean", 0.0) for r in train) / len(train), 2)
    return out


def learning(run: Path) -> dict | None:
    """Baseline and tuned mean reward and the paired difference, from the run's comparison.json."""
    path = run / "tuned" / "comparison.json"
    if not path.exists():
        return None
    reward = json.loads(path.read_text())["reward"]
    return {"base": reward["base"]["estimate"], "tuned": reward["tuned"]["estimate"],
            "diff": reward["diff"]["estimate"], "diff_lo": reward["diff"]["lo"], "diff_hi": reward["diff"]["hi"]}


def show(result: dict) -> None:
    print(f"\n== {result['mode']}: exit {result['exit_code']}, {result['wall_s']:.0f} s wall, {result['cpu_s']:.0f} CPU-s "
          f"(load average {result['load_average_before']:.1f} before, {result['load_average_after']:.1f} after)")
    for name, row in result["notebooks"].items():
        seconds = row["seconds"]
        print(f"  {name:<22} {row['status']:<8} {seconds if seconds is not None else float('nan'):>8.1f} s")
    if result["phases"]:
        print("  phases: " + ", ".join(f"{k} {v}" for k, v in result["phases"].items()))
    if result["learning"]:
        r = result["learning"]
        print(f"  learning: base {r['base']:.3f}, tuned {r['tuned']:.3f}, difference {r['diff']:+.3f} "
              f"(95% CI {r['diff_lo']:+.3f} to {r['diff_hi']:+.3f})")
    if "log_tail" in result:
        print(result["log_tail"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("idle", "busy", "one-core", "all"), default="idle")
    parser.add_argument("--params", type=Path, default=ROOT / "params" / "demo.yaml")
    parser.add_argument("--keep", action="store_true", help="keep the run folders (printed at the end)")
    args = parser.parse_args()
    modes = ["idle", "busy", "one-core"] if args.mode == "all" else [args.mode]
    if (os.cpu_count() or 1) < 2 and set(modes) & {"busy"}:
        print("busy mode needs at least 2 CPUs", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="nbkit-bench-demo-"))
    results = []
    try:
        for mode in modes:
            results.append(run_mode(mode, args.params.resolve(), workdir))
            show(results[-1])
    finally:
        if args.keep:
            print(f"\nrun folders kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({"bench": "demo", "params": str(args.params), "results": results}))
    return 0 if all(r["exit_code"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
