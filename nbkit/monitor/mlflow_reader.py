"""Read a training run's metric history from MLflow into the normalized frame.

Two paths, same result (a test holds them equal):
- a local SQLite store (`sqlite:///.../mlflow.db`, what the local backend writes) is read with one indexed
  SQL query per metric key straight from MLflow's `metrics` table. The MLflow client builds a Python object
  per point, which for a 100,000-step run with 20 keys is seconds; the query is a fraction of that
  (bench/monitor.py prints both). The table layout is MLflow's, pinned by the pinned mlflow version.
- any other tracking URI (an MLflow server, Databricks, SageMaker managed MLflow) goes through
  `MlflowClient.get_metric_history`, imported lazily because `import mlflow` costs seconds.

A finished run's history never changes, so the SQLite path keeps what it read as a parquet snapshot in
nbkit's cache, keyed by the store's size and modification time (and its write-ahead log's): opening the run
again, in a new notebook or after a reboot, reads a few MB instead of the store's scattered index pages
(a 200 MB store cold on disk: seconds; bench/monitor.py measures both). The first read of a store that is not
in memory reads the file front to back first: one sequential pass costs less than the index's random reads.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nbkit.errors import UserError
from nbkit.monitor.frame import normalize
from nbkit.paths import sqlite_path

# TRL's own keys -> normalized names; the local backend's normalized keys win where both exist.
TRL_ALIASES: dict[str, str] = {
    "reward": "reward_mean",
    "frac_reward_zero_std": "zero_var_group_share",
    "completions/mean_length": "completion_len_mean",
    "completions/clipped_ratio": "clipped_share",
    "learning_rate": "lr",
    "train/reward": "reward_mean",
    "train/reward_std": "reward_std",
    "train/kl": "kl",
    "train/entropy": "entropy",
    "train/learning_rate": "lr",
    "train/grad_norm": "grad_norm",
    "train/loss": "loss",
}
# Keys whose time stamp dates a step, most trusted first.
_CLOCK_KEYS = ("reward_mean", "reward", "loss", "lr", "learning_rate")
SKIPPED_PREFIXES = ("profiling/",)  # TRL's per-call timers: dozens of keys no health rule reads
_SQL_MAX_FLOAT = 1.7976931348623157e308  # MLflow stores +/-inf as +/-max float (SQL has no inf)


def is_sagemaker_mlflow(uri: str) -> bool:
    """A SageMaker managed MLflow tracking server (or app) ARN, which needs the `sagemaker-mlflow` plugin."""
    return uri.startswith("arn:aws") and ":sagemaker:" in uri and "mlflow" in uri


def require_sagemaker_mlflow(uri: str) -> None:
    """Fail with the fix when the plugin that signs requests to managed MLflow is not installed."""
    if importlib.util.find_spec("sagemaker_mlflow") is None:
        raise UserError(
            f"tracking URI {uri} is a SageMaker managed MLflow server; reading it needs the `sagemaker-mlflow` "
            "plugin, which is not installed in this environment. Install it (pip install sagemaker-mlflow==0.5.0, "
            "then pin it in pyproject.toml and constraints.txt), make AWS credentials available, and retry. "
            "Without it, read the job's step_wise_training_metrics.csv or its CloudWatch logs instead. Note "
            "that managed MLflow may show a job's metrics only after the job ends."
        )


def read_mlflow(tracking_uri: str, run_id: str, keys: Iterable[str] | None = None,
                *, use_sql: bool | None = None) -> pd.DataFrame:
    """The normalized frame of one MLflow run: every metric key (but TRL's `profiling/*` timers) unless
    `keys` names some.

    `use_sql=None` picks the SQL path for local SQLite stores and the client elsewhere; True/False force it
    (the benchmark compares both).
    """
    if not tracking_uri:
        raise UserError("no MLflow tracking URI given; pass the run's tracking_uri (e.g. sqlite:///runs/x/training/mlflow.db)")
    if not run_id:
        raise UserError(f"no MLflow run id given for {tracking_uri}; pass the run id (see the MLflow UI or job.json)")
    db = sqlite_path(tracking_uri)
    sql = db is not None if use_sql is None else use_sql
    if sql:
        if db is None:
            raise UserError(f"the SQL fast path reads only sqlite:/// stores, not {tracking_uri}")
        keys = None if keys is None else list(keys)
        wide = _read_sql_cached(db, run_id, keys)
    else:
        wide = assemble(*_history_client(tracking_uri, run_id, keys))
    frame = normalize(wide, TRL_ALIASES, source=f"mlflow run {run_id} at {tracking_uri}")
    frame.attrs["kind"] = "mlflow"
    return frame


SNAPSHOT_FORMAT = 1  # bump when the snapshot's content changes meaning
_ENDED = ("FINISHED", "FAILED", "KILLED")


def _store_stamp(db: Path) -> str:
    """Size and modification time of the store and its write-ahead log: a new metric changes one of them."""
    parts = []
    for path in (db, db.with_name(db.name + "-wal")):
        try:
            stat = path.stat()
            parts.append(f"{stat.st_size}:{stat.st_mtime_ns}")
        except FileNotFoundError:
            parts.append("-")
    return "|".join(parts)


def snapshot_path(db: Path, run_id: str, keys: list[str] | None, stamp: str) -> Path:
    """Where the snapshot of (store, run, keys) at this stamp lives in nbkit's cache."""
    from nbkit import paths

    ident = json.dumps([str(db.resolve()), run_id, keys, SNAPSHOT_FORMAT])
    name = hashlib.sha256(ident.encode()).hexdigest()[:20]
    return paths.cache_dir("monitor", "mlflow") / f"{name}-{hashlib.sha256(stamp.encode()).hexdigest()[:12]}.parquet"


def _read_sql_cached(db: Path, run_id: str, keys: list[str] | None) -> pd.DataFrame:
    """The wide frame of a run: from its snapshot when the store has not changed since it was taken, else
    from the store (then snapshot it if the run has ended and nothing was written meanwhile)."""
    stamp = _store_stamp(db)
    snapshot = snapshot_path(db, run_id, keys, stamp)
    if snapshot.is_file():
        try:
            return pd.read_parquet(snapshot)
        except (OSError, ValueError):  # a damaged snapshot (disk full, killed writer): read the store again
            snapshot.unlink(missing_ok=True)
    _prefetch(db)
    per_key, start_ms, status = _history_sql(db, run_id, keys)
    wide = assemble(per_key, start_ms)
    if status in _ENDED and _store_stamp(db) == stamp:
        _write_snapshot(wide, snapshot)
    return wide


def _write_snapshot(wide: pd.DataFrame, path: Path) -> None:
    """Written under a temporary name and moved in place; older stamps of the same run are removed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        wide.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except OSError:  # a cache that cannot be written only costs speed
        tmp.unlink(missing_ok=True)
        return
    prefix = path.name.rsplit("-", 1)[0]
    for old in path.parent.glob(f"{prefix}-*.parquet"):
        if old != path:
            old.unlink(missing_ok=True)


PREFETCH_MAX_BYTES = 2 << 30


def _prefetch(db: Path) -> None:
    """Read the store front to back (up to 2 GiB): pages already in memory cost a copy, pages on disk come in
    one sequential pass instead of the index's random reads."""
    try:
        with open(db, "rb", buffering=0) as fh:
            buffer, left = bytearray(1 << 20), PREFETCH_MAX_BYTES
            while left > 0 and (n := fh.readinto(buffer)):
                left -= n
    except OSError:  # the query will say what is wrong with the file
        pass


def _wanted(names: Iterable[str]) -> list[str]:
    return [k for k in names if not k.startswith(SKIPPED_PREFIXES)]


def _history_sql(db: Path, run_id: str, keys: Iterable[str] | None) -> tuple[dict, int | None, str | None]:
    """(steps, time stamps or None, values) per key, read from the store's `metrics` table, the run's start
    time and its status.

    Rows of a key come in the primary-key order (time stamp, step), so the last row of a step is the
    latest value; only the clock key's time stamps are fetched.
    """
    if not db.is_file():
        raise UserError(
            f"MLflow store not found: {db}; has the training job started? (the local backend creates it at "
            "<run>/training/mlflow.db)"
        )
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT start_time, status FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
        if row is None:
            raise UserError(f"no run {run_id!r} in the MLflow store {db}; {_known_runs(con)}")
        names = list(keys) if keys is not None else _wanted(
            k for (k,) in con.execute("SELECT key FROM latest_metrics WHERE run_uuid = ? ORDER BY key", (run_id,))
        )
        clock = next((k for k in _CLOCK_KEYS if k in names), names[0] if names else None)
        per_key = {}
        where = "FROM metrics WHERE key = ? AND run_uuid = ? ORDER BY timestamp, step"  # the primary-key order
        for key in names:
            # MLflow stores NaN as (0, is_nan=1) and +/-inf as +/-max float, so a real inf never occurs in
            # the table: it marks NaN here, in one pass over the index.
            cur = con.execute(f"SELECT step, CASE WHEN is_nan THEN 9e999 ELSE value END {where}", (key, run_id))
            pairs = np.fromiter(itertools.chain.from_iterable(cur), "float64").reshape(-1, 2)
            if not len(pairs):
                continue
            values = np.where(np.isposinf(pairs[:, 1]), np.nan, pairs[:, 1])
            stamps = None
            if key == clock:
                stamps = np.fromiter((t for (t,) in con.execute(f"SELECT timestamp {where}", (key, run_id))), "float64")
            per_key[key] = (pairs[:, 0], stamps, values)
        return per_key, row[0], row[1]
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{db} is not a readable MLflow SQLite store ({exc})") from None
    finally:
        con.close()


def _known_runs(con: sqlite3.Connection) -> str:
    rows = con.execute("SELECT run_uuid, name FROM runs ORDER BY start_time DESC LIMIT 5").fetchall()
    if not rows:
        return "the store holds no runs"
    return "latest runs there: " + ", ".join(f"{rid} ({name})" for rid, name in rows)


def _history_client(tracking_uri: str, run_id: str, keys: Iterable[str] | None) -> tuple[dict, int | None]:
    """(step, timestamp, value) arrays per key through the MLflow client (any tracking server)."""
    if is_sagemaker_mlflow(tracking_uri):
        require_sagemaker_mlflow(tracking_uri)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        run = client.get_run(run_id)
        names = list(keys) if keys is not None else _wanted(sorted(run.data.metrics))
        per_key = {}
        for key in names:
            history = client.get_metric_history(run_id, key)
            if history:
                per_key[key] = (
                    np.fromiter((m.step for m in history), "float64", len(history)),
                    np.fromiter((m.timestamp for m in history), "float64", len(history)),
                    np.fromiter((m.value for m in history), "float64", len(history)),
                )
    except MlflowException as exc:
        raise UserError(f"could not read MLflow run {run_id!r} at {tracking_uri}: {exc.message}") from None
    return per_key, run.info.start_time


def assemble(per_key: dict[str, tuple[np.ndarray, np.ndarray | None, np.ndarray]], start_ms: int | None) -> pd.DataFrame:
    """One row per step, one column per key (the last value logged for a step wins), plus `time`.

    Each key gives (steps, time stamps, values); without time stamps the rows are in logging order. `time`
    is seconds from the run's start (or the first point) to when the step's clock key was logged.
    """
    if not per_key:
        return pd.DataFrame({"step": pd.Series(dtype="int64"), "time": pd.Series(dtype="float64")})
    deduped = {}
    for key, (steps, stamps, values) in per_key.items():
        order = np.lexsort((stamps, steps)) if stamps is not None else np.argsort(steps, kind="stable")
        steps, values = steps[order], values[order]
        stamps = stamps[order] if stamps is not None else None
        last = np.r_[steps[1:] != steps[:-1], True]
        big = np.abs(values) >= _SQL_MAX_FLOAT
        if big.any():
            values = values.copy()
            values[big] = np.copysign(np.inf, values[big])
        deduped[key] = (steps[last], None if stamps is None else stamps[last], values[last])
    all_steps = np.unique(np.concatenate([s for s, _, _ in deduped.values()]))
    columns: dict[str, np.ndarray] = {"step": all_steps.astype("int64")}
    for key, (steps, _, values) in deduped.items():
        column = np.full(len(all_steps), np.nan)
        column[np.searchsorted(all_steps, steps)] = values
        columns[f"metric:{key}" if key in ("step", "time") else key] = column
    time_s = np.full(len(all_steps), np.nan)
    timed = [k for k in _CLOCK_KEYS if k in deduped and deduped[k][1] is not None]
    timed += [k for k, v in deduped.items() if v[1] is not None and k not in timed]
    if timed:
        steps, stamps, _ = deduped[timed[0]]
        assert stamps is not None  # `timed` holds only keys with stamps
        origin = start_ms if start_ms else float(stamps.min())
        time_s[np.searchsorted(all_steps, steps)] = (stamps - origin) / 1000.0
    columns["time"] = time_s
    return pd.DataFrame(columns)


def log_frame(frame: pd.DataFrame, tracking_uri: str, *, experiment: str = "rft-workbench",
              run_name: str = "imported-metrics", start_time_ms: int | None = None,
              artifact_location: str | None = None, progress: bool = True) -> str:
    """Log a metrics frame as a new MLflow run (every finite value, batched) and return its run id.

    Why: a run read from Nova's CSV or CloudWatch can then sit beside local runs in the MLflow UI; tests and
    the benchmark build their stores the same way. `log_batch` takes up to 1000 metrics per call, which is
    ~50x faster than one `log_metric` call per point. `time` becomes each step's time stamp.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    from tqdm.auto import tqdm

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        db = sqlite_path(tracking_uri)
        location = artifact_location or (str(db.parent / "mlartifacts") if db is not None else None)
        experiment_id = client.create_experiment(experiment, artifact_location=location)
    else:
        experiment_id = found.experiment_id
    start = int(start_time_ms if start_time_ms is not None else time.time() * 1000)
    run = client.create_run(experiment_id, start_time=start, run_name=run_name)
    steps = frame["step"].to_numpy()
    times = frame["time"].to_numpy() if "time" in frame.columns else np.full(len(frame), np.nan)
    stamps = np.where(np.isfinite(times), start + times * 1000, start + steps).astype("int64")
    batch: list[Any] = []
    keys = [c for c in frame.columns if c not in ("step", "time")]
    values = frame[keys].to_numpy(dtype="float64")
    with tqdm(total=len(frame), desc=f"logging {run_name}", unit="step", disable=not progress) as bar:
        for i in range(len(frame)):
            stamp, step = int(stamps[i]), int(steps[i])
            batch += [Metric(k, float(v), stamp, step) for k, v in zip(keys, values[i], strict=True) if v == v]
            if len(batch) >= 1000 - len(keys):
                client.log_batch(run.info.run_id, metrics=batch)
                batch = []
                bar.update(i + 1 - bar.n)
        if batch:
            client.log_batch(run.info.run_id, metrics=batch)
        bar.update(len(frame) - bar.n)
    client.set_terminated(run.info.run_id)
    return run.info.run_id
