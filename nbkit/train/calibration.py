"""Local step time measured on this machine: a few real training steps, timed, cached per model and settings.

Why: a throughput figure measured once elsewhere (0.46 s per step) said 92 s for a run that took 50 minutes on
a busy machine. The local backend's time estimate instead comes from running the job itself for a few steps
(`local.calibrate_steps`, a separate job in the cache folder; the run's own files are not touched): the
seconds to start (imports, model, trainer), per step, per validation pass and to finish. The result is cached
under `<cache>/calibration/<key>.json`, the key made of everything that changes the step time (the model's
architecture, batch shape, lengths, LoRA or full rank, threads, device, reward, training data, torch, CPU),
so a second launch with the same settings measures nothing. What it cannot know is how busy the machine will
be while the job runs; the estimate says so.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import platform
import shutil
import statistics
import time
from datetime import UTC, datetime
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from nbkit import paths
from nbkit.errors import UserError
from nbkit.train import derived
from nbkit.train.derived import Calibration
from nbkit.train.spec import JobSpec

CACHE = "calibration"
TIMEOUT_S = 900.0  # a calibration that takes longer says so instead of holding the launch forever


# ------------------------------------------------------------------------------------------------ the key


def model_folder(spec: JobSpec, run_dir: str | os.PathLike) -> Path | None:
    """The model folder the job will train: the run's copy of the tiny model (notebook 03), or a local folder."""
    from nbkit.layout import RunLayout

    candidates = [RunLayout(run_dir).model] if spec.model == "tiny" else [Path(spec.model)]
    return next((c for c in candidates if (c / "config.json").is_file()), None)


def settings_for(spec: JobSpec, model: Path) -> dict[str, Any]:
    """Everything that changes how long a local step takes (the cache key is its hash)."""
    from nbkit.provenance import file_sha256

    h, loc = spec.hyper, spec.local
    reward_file = spec.reward.split(":", 1)[0]
    return {
        "model_config": file_sha256(model / "config.json"), "rollouts_per_step": h.global_batch_size,
        "number_generation": h.number_generation, "max_new_tokens": h.max_new_tokens, "max_length": h.max_length,
        "lora_rank": h.lora_rank, "reference_model": h.kl_coef > 0, "threads": loc.threads, "device": loc.device,
        "max_prompt_length": loc.max_prompt_length, "eval_prompts": loc.eval_prompts if spec.eval_data else 0,
        "log_completions": loc.log_completions, "reward": spec.reward,
        "reward_file": file_sha256(reward_file) if reward_file.endswith(".py") and Path(reward_file).is_file() else "",
        "train_data": file_sha256(spec.train_data) if Path(spec.train_data).is_file() else spec.train_data,
        **machine(),
    }


@cache  # read once a process: the editor asks on every change of the form
def machine() -> dict[str, Any]:
    """What identifies this machine's speed: CPU model, cores, torch and its math mode."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "torch": metadata.version("torch"),
            "math": os.environ.get("MKL_CBWR", "") + "/" + os.environ.get("ATEN_CPU_CAPABILITY", "")}


def key_of(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]


# ----------------------------------------------------------------------------------------- measuring


def step_durations(rows: list[dict[str, Any]]) -> list[float]:
    """Seconds per step between consecutive logged training steps (progress.jsonl rows), validation excluded."""
    train: dict[int, float] = {}
    validation: dict[int, float] = {}
    for row in rows:
        if row.get("kind") == "train" and isinstance(row.get("time"), int | float):
            train[int(row["step"])] = float(row["time"])
        elif row.get("kind") == "eval" and isinstance(row.get("val_time_s"), int | float):
            validation[int(row["step"])] = float(row["val_time_s"])
    steps = sorted(train)
    return [max(0.0, (train[b] - train[a] - validation.get(b, 0.0)) / (b - a))
            for a, b in itertools.pairwise(steps)]


def validation_times(rows: list[dict[str, Any]]) -> list[float]:
    return [float(r["val_time_s"]) for r in rows if r.get("kind") == "eval" and isinstance(r.get("val_time_s"),
                                                                                             int | float)]


def measure(rows: list[dict[str, Any]], started: float, ended: float, key: str, settings: dict[str, Any]
            ) -> Calibration:
    """A calibration from a finished short job's progress rows and its start and end times (epoch seconds)."""
    durations = step_durations(rows)
    train_times = sorted(float(r["time"]) for r in rows if r.get("kind") == "train")
    if not durations or not train_times:
        raise UserError("the calibration run logged fewer than 2 steps: nothing to time; set local.calibrate_steps "
                        "to 2 or more")
    # The second step carries one-off work of the first (its first completions table, lazy set-up): it counts
    # as start-up, and the steps after it give the steady time per step.
    steady = durations[1:] or durations
    step_s = statistics.median(steady)
    one_off = durations[0] - step_s if len(durations) > 1 else 0.0
    vals = validation_times(rows)
    first_val = next((float(r["val_time_s"]) for r in rows if r.get("kind") == "eval" and r.get("step") == 0), 0.0)
    return Calibration(
        key=key, steps=len(durations) + 1, step_s=step_s,
        startup_s=max(0.0, train_times[0] - started - first_val - step_s + one_off),
        validation_s=statistics.mean(vals) if vals else None, finish_s=max(0.0, ended - train_times[-1]),
        measured=datetime.now(UTC).isoformat(timespec="seconds"), machine=machine(), settings=settings,
    )


def cached(key: str) -> Calibration | None:
    path = paths.cache_dir(CACHE) / f"{key}.json"
    try:
        return Calibration(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def calibrate(spec: JobSpec, run_dir: str | os.PathLike, steps: int, key: str, settings: dict[str, Any]) -> Calibration:
    """Run `steps` steps of the job in the cache folder (the run's training files are not touched), time them,
    cache and return the measurement. A calibration that fails is the job failing: the error says why."""
    from nbkit.progress import Task
    from nbkit.train import local

    folder = paths.cache_dir(CACHE, key)
    shutil.rmtree(folder, ignore_errors=True)
    short = spec.model_copy(update={
        "name": f"{spec.name}-calibration", "output": str(folder / "training"), "dry_run": False,
        "hyper": spec.hyper.model_copy(update={"max_steps": steps, "save_steps": 0}),
        "local": spec.local.model_copy(update={"eval_every": steps, "resume_from": "", "tracking_uri": ""}),
    })
    started = time.time()
    handle = local.submit(local.plan(short), run_dir)
    state = handle.status()
    with Task(f"timing {steps} local training steps on this machine (cached for these settings)", total=steps,
              unit="step") as task:
        while state not in ("completed", "failed", "stopped"):
            if time.time() - started > TIMEOUT_S:
                handle.stop(wait=True, timeout=60)
                raise UserError(f"the calibration run took over {TIMEOUT_S:.0f} s for {steps} steps; set "
                                "local.calibrate_steps 0 to launch without one (the estimate then says so)")
            time.sleep(0.25)
            state = handle.status()
            task.set((handle.progress() or (0, steps))[0])
    ended = time.time()
    if state != "completed":
        raise UserError(f"the calibration run ({steps} steps of this job, in {folder}) {state}, so the job would "
                        f"too: {handle.error()}\n{handle.logs(tail=20)}\nFix that, or set local.calibrate_steps 0 to "
                        "launch without timing it")
    result = measure(local.read_progress(handle.files.progress), started, ended, key, settings)
    (paths.cache_dir(CACHE) / f"{key}.json").write_text(json.dumps(result.to_dict(), indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    return result


def for_spec(spec: JobSpec, run_dir: str | os.PathLike | None, measure_now: bool) -> tuple[Calibration | None, str]:
    """(the calibration of this job's settings, or None and why not). Measures when `measure_now`, the job
    asks for it (local.calibrate_steps) and nothing is cached; never while the run's job is running."""
    if spec.backend != "local" or run_dir is None:
        return None, "no calibration: only the local backend is calibrated"
    model = model_folder(spec, run_dir)
    if model is None:
        return None, ("not calibrated: the model folder does not exist yet (the tiny model is copied into the run by "
                      "notebook 03)")
    settings = settings_for(spec, model)
    key = key_of(settings)
    found = cached(key)
    if found is not None:
        return found, ""
    steps = spec.local.calibrate_steps
    if not measure_now or steps == 0:
        why = "local.calibrate_steps is 0" if steps == 0 else "a dry run measures nothing"
        return None, f"not calibrated on this machine ({why})"
    if _job_running(run_dir):
        return None, "not calibrated: the run's training job is running (timing now would slow it and mislead)"
    from nbkit import locking

    # Points of a sweep launch at once with the same settings: one measures, the others wait and read it.
    with locking.exclusive(paths.cache_dir(CACHE) / f"{key}.lock", f"the calibration {key}", wait=True):
        return cached(key) or calibrate(spec, run_dir, steps, key, settings), ""


def _job_running(run_dir: str | os.PathLike) -> bool:
    from nbkit.train.job import load_job, read_job

    try:
        if read_job(run_dir).get("dry_run"):
            return False
        return load_job(run_dir).status() in ("pending", "running")
    except UserError:
        return False


def for_run(spec: JobSpec, run_dir: str | os.PathLike | None = None,
            prices: str | os.PathLike | dict | None = None, n_train: int | None = None,
            calibrate: bool = False, reward_latency_s: float | None = None) -> derived.Derived | None:
    """Derived quantities with what the run folder knows: the training file's size, the reward's latency
    (unless given) and this machine's calibration of a local job (measured first when `calibrate` and none is
    cached).

    None when the training data size is unknown (an s3:// path and no `n_train`).
    """
    n = n_train if n_train is not None else derived.count_records(spec.train_data)
    if n is None:
        return None
    latency = reward_latency_s
    if latency is None and run_dir is not None:
        latency = derived.reward_latency(run_dir)
    calibration, note = for_spec(spec, run_dir, calibrate) if spec.backend == "local" else (None, "")
    return derived.compute(spec, n, prices, reward_latency_s=latency, calibration=calibration, calibration_note=note)
