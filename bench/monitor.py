"""Benchmark: load and analyse a 100,000-step training history from an MLflow SQLite store and from Nova's CSV.

Prints load, analysis and plot times; the baseline is the MLflow client (`get_metric_history` per key) reading
the same run in the same process, so the SQL fast path's gain is a ratio, not a guess. Target: load + analysis
+ plot under 3 s. The store is written once with `MlflowClient.log_batch` (minutes for ~2M points) and cached
under .cache/bench/monitor/ (NBKIT_CACHE moves it); `--rebuild` writes it again. Last line: JSON.

Cold loads (target: under 2 s for 100,000 steps) start with the files evicted from the page cache
(posix_fadvise DONTNEED), as after a reboot: once with no snapshot (the first time a run is opened: the store is
read front to back, then queried) and once from the finished run's parquet snapshot (every later time).

    .venv/bin/python bench/monitor.py [--steps 100000] [--no-baseline] [--rebuild]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from nbkit import paths  # noqa: E402
from nbkit.monitor import rules, synthetic  # noqa: E402
from nbkit.monitor.mlflow_reader import log_frame, read_mlflow, snapshot_path  # noqa: E402
from nbkit.monitor.nova_csv import read_nova_csv  # noqa: E402
from nbkit.monitor.plots import dashboard  # noqa: E402
from nbkit.monitor.stop import recommend_stop  # noqa: E402

NOVA = {"step": "step_number", "reward_mean": "train_reward_mean", "completion_len_mean": "train_episode_length_mean",
        "entropy": "policy_entropy", "grad_norm": "gradient_norm"}


def timed(fn, *args, **kw):
    start = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - start


def build_store(folder: Path, frame, rebuild: bool) -> tuple[str, str, float | None]:
    """(tracking URI, run id, seconds spent writing or None when cached)."""
    db, meta = folder / "mlflow.db", folder / "store.json"
    uri = f"sqlite:///{db}"
    fingerprint = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()
    want = {"steps": len(frame), "columns": list(frame.columns), "sha256": fingerprint[:16], "format": 1}
    if not rebuild and db.exists() and meta.exists():
        info = json.loads(meta.read_text())
        if info.get("want") == want:
            return uri, info["run_id"], None
    db.unlink(missing_ok=True)
    print(f"writing {len(frame):,} steps x {len(frame.columns) - 2} keys to {db} with log_batch (once; cached)")
    run_id, seconds = timed(log_frame, frame, uri, run_name="bench-100k", start_time_ms=1_750_000_000_000)
    meta.write_text(json.dumps({"want": want, "run_id": run_id, "write_s": seconds}))
    return uri, run_id, seconds


def write_csv(folder: Path, frame) -> Path:
    """Nova's nine columns, as SageMaker writes them."""
    path = folder / "step_wise_training_metrics.csv"
    out = frame[list(NOVA)].rename(columns=NOVA)
    out.insert(1, "epoch_number", 0)
    for col in ("mean_advantage", "min_advantage", "max_advantage"):
        out[col] = 0.0
    out.to_csv(path, index=False)
    return path


def evict(path: Path) -> None:
    """Drop a file's pages from the page cache, so the next read comes from the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def snapshots(db: Path, run_id: str) -> list[Path]:
    any_stamp = snapshot_path(db, run_id, None, "")
    return sorted(any_stamp.parent.glob(any_stamp.name.rsplit("-", 1)[0] + "-*.parquet"))


def cold_loads(uri: str, db: Path, run_id: str) -> tuple[float, float, float]:
    """(seconds to load with no snapshot and the store on disk, CPU seconds of it, seconds from the snapshot
    with both on disk)."""
    for path in snapshots(db, run_id):
        path.unlink()
    evict(db)
    cpu = time.process_time()
    _, first = timed(read_mlflow, uri, run_id, use_sql=True)
    cpu = time.process_time() - cpu
    written = snapshots(db, run_id)
    assert len(written) == 1, "a finished run is snapshotted"
    evict(db)
    evict(written[0])
    _, again = timed(read_mlflow, uri, run_id, use_sql=True)
    return first, cpu, again


def analyse(frame):
    health = rules.check(frame)
    return health, recommend_stop(frame, health.findings)


def plot(frame, health, rec) -> int:
    fig = dashboard(frame, health.findings, rec.best_step)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return len(buf.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--no-baseline", action="store_true", help="skip the MLflow client baseline (slow)")
    parser.add_argument("--rebuild", action="store_true", help="write the MLflow store again")
    args = parser.parse_args()

    folder = paths.cache_dir("bench", "monitor", f"{args.steps}")
    frame = synthetic.history(args.steps, "plateau", seed=0, eval_every=100, wide=True)
    uri, run_id, write_s = build_store(folder, frame, args.rebuild)
    csv = write_csv(folder, frame)
    with sqlite3.connect(folder / "mlflow.db") as con:
        (points,) = con.execute("SELECT COUNT(*) FROM metrics WHERE run_uuid = ?", (run_id,)).fetchone()

    db = folder / "mlflow.db"
    cold_store, cold_store_cpu, cold_snapshot = cold_loads(uri, db, run_id)
    # First calls are "cold" (a fresh notebook: lazy imports of scipy.special and matplotlib, font cache);
    # the repeats are "warm" (a refresh while following a job). The target applies to the cold total. The
    # warm SQL loads go to the store itself (its snapshot removed first), as while a job is running.
    for path in snapshots(db, run_id):
        path.unlink()
    from_sql, load_sql = timed(read_mlflow, uri, run_id, use_sql=True)
    from_csv, load_csv = timed(read_nova_csv, csv)
    (health, rec), analysis_s = timed(analyse, from_sql)
    png_bytes, plot_s = timed(plot, from_sql, health, rec)
    csv_analysis, analysis_csv_s = timed(analyse, from_csv)
    _, plot_csv_s = timed(plot, from_csv, *csv_analysis)
    _, load_snapshot_warm = timed(read_mlflow, uri, run_id, use_sql=True)
    for path in snapshots(db, run_id):
        path.unlink()
    _, load_warm = timed(read_mlflow, uri, run_id, use_sql=True)
    _, analysis_warm = timed(analyse, from_sql)
    _, plot_warm = timed(plot, from_sql, health, rec)
    for path in snapshots(db, run_id):
        path.unlink()
    cpu_start = time.process_time()
    timed(read_mlflow, uri, run_id, use_sql=True)
    cpu_load = time.process_time() - cpu_start
    total = load_sql + analysis_s + plot_s
    total_warm = load_warm + analysis_warm + plot_warm
    total_csv = load_csv + analysis_csv_s + plot_csv_s

    result = {
        "steps": args.steps, "mlflow_points": points, "store_write_s": None if write_s is None else round(write_s, 1),
        "load_mlflow_sql_s": round(load_sql, 3), "analysis_s": round(analysis_s, 3), "plot_s": round(plot_s, 3),
        "total_mlflow_s": round(total, 3), "total_mlflow_warm_s": round(total_warm, 3),
        "load_csv_s": round(load_csv, 3), "analysis_csv_s": round(analysis_csv_s, 3), "plot_csv_s": round(plot_csv_s, 3),
        "total_csv_s": round(total_csv, 3), "target_s": 3.0, "load_mlflow_cpu_s": round(cpu_load, 3),
        "load_avg_1min": round(os.getloadavg()[0], 2), "load_cold_store_s": round(cold_store, 3),
        "load_cold_store_cpu_s": round(cold_store_cpu, 3), "load_cold_snapshot_s": round(cold_snapshot, 3),
        "load_warm_snapshot_s": round(load_snapshot_warm, 3), "cold_target_s": 2.0,
        "findings": [f.name for f in health.findings], "recommendation": rec.action,
    }
    print(f"{points:,} MLflow points over {args.steps:,} steps ({len(from_sql.columns)} columns), png {png_bytes:,} bytes")
    print("                               MLflow cold   MLflow warm   Nova CSV")
    print(f"load                           {load_sql:9.3f} s   {load_warm:9.3f} s   {load_csv:6.3f} s")
    print(f"analysis (11 rules + stop)     {analysis_s:9.3f} s   {analysis_warm:9.3f} s   {analysis_csv_s:6.3f} s")
    print(f"plot (6 panels, png)           {plot_s:9.3f} s   {plot_warm:9.3f} s   {plot_csv_s:6.3f} s")
    print(f"total                          {total:9.3f} s   {total_warm:9.3f} s   {total_csv:6.3f} s   "
          f"(target < 3 s cold: {'met' if total < 3 else 'NOT met'})")
    print(f"cold load, files evicted from the page cache: {cold_store:.3f} s the first time (no snapshot: store read "
          f"front to back, then queried; {cold_store_cpu:.3f} CPU-s), {cold_snapshot:.3f} s from the run's parquet "
          f"snapshot (warm: {load_snapshot_warm:.3f} s); target < 2 s: "
          f"{'met' if max(cold_store, cold_snapshot) < 2 else 'NOT met'}")
    print(f"CPU seconds of this process for one MLflow load: {cpu_load:.3f} s; load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (wall times above include waiting for the CPU)")
    if not args.no_baseline:
        _, import_s = timed(__import__, "mlflow")  # the SQL path never imports mlflow; the client needs it
        from_client, load_client = timed(read_mlflow, uri, run_id, use_sql=False)
        same = from_client.equals(from_sql)
        print(f"baseline MLflow client get_metric_history: {load_client:.3f} s (+ {import_s:.2f} s import mlflow); "
              f"the SQL path is {load_client / load_sql:.1f}x faster; identical frame: {same}")
        result.update(load_mlflow_client_s=round(load_client, 3), import_mlflow_s=round(import_s, 3),
                      sql_speedup=round(load_client / load_sql, 1), same_frame=same)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
