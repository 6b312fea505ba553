"""Local time estimates from a calibration on this machine, AWS estimates that say what they assume, and the
estimate set against what the job took (notebook 05, the run index)."""

from __future__ import annotations

import json

import pytest

from nbkit.errors import UserError
from nbkit.train import actual, calibration
from nbkit.train.spec import JobSpec, LocalSettings


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NBKIT_CACHE", str(tmp_path / "cache"))


# progress.jsonl of a 4-step job that validates at steps 0 and 4 (1.5 s each); steps take 2 s, 3 s and 2 s
ROWS = [
    {"kind": "eval", "step": 0, "time": 101.5, "val_time_s": 1.5},
    {"kind": "train", "step": 1, "time": 110.0},
    {"kind": "train", "step": 2, "time": 112.0},
    {"kind": "train", "step": 3, "time": 115.0},
    {"kind": "eval", "step": 4, "time": 118.5, "val_time_s": 1.5},
    {"kind": "train", "step": 4, "time": 118.5},
]


def test_step_durations_leave_validation_out():
    assert calibration.step_durations(ROWS) == [2.0, 3.0, 2.0]
    assert calibration.step_durations([{"kind": "train", "step": 2, "time": 0.0},
                                       {"kind": "train", "step": 6, "time": 8.0}]) == [2.0]  # log_every 4


def test_measure_by_hand():
    cal = calibration.measure(ROWS, started=100.0, ended=121.0, key="k", settings={"threads": 2})
    # steps 3 and 4 took 3 s and 2 s: 2.5 s per step; step 2 took 2 s, 0.5 s less (its one-off part, negative
    # here, goes with the start-up); start-up = to step 1, less validation and one step
    assert cal.step_s == 2.5 and cal.steps == 4
    assert cal.startup_s == pytest.approx(110.0 - 100.0 - 1.5 - 2.5 + (2.0 - 2.5))
    assert cal.validation_s == 1.5 and cal.finish_s == pytest.approx(2.5)
    assert cal.wall_s(total_steps=100, validations=3) == pytest.approx(5.5 + 250 + 4.5 + 2.5)
    assert "2.50 s per step (median of the 2 steps after the second)" in cal.describe()
    # a second step slowed by one-off work (the first completions table) counts as start-up, not per step
    slow = [dict(r, time=r["time"] + (4.0 if r["step"] >= 2 else 0.0)) for r in ROWS]
    cal = calibration.measure(slow, started=100.0, ended=125.0, key="k", settings={})
    assert cal.step_s == 2.5 and cal.startup_s == pytest.approx(110.0 - 100.0 - 1.5 - 2.5 + (6.0 - 2.5))
    with pytest.raises(UserError, match="fewer than 2 steps"):
        calibration.measure(ROWS[:2], 100.0, 111.0, "k", {})


def _spec(tmp_path, **local) -> JobSpec:
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"id": i}) + "\n" for i in range(64)))
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text('{"hidden_size": 64}')
    return JobSpec.local_preset(train_data=str(train), eval_data=str(train), reward="builtin:numeric",
                                model=str(model), local=LocalSettings(eval_every=50, **local))


def test_estimate_comes_from_a_cached_calibration_and_says_so(tmp_path):
    spec = _spec(tmp_path)
    cal, note = calibration.for_spec(spec, tmp_path / "run", measure_now=False)
    assert cal is None and note == "not calibrated on this machine (a dry run measures nothing)"
    d = calibration.for_run(spec, tmp_path / "run")
    assert d.step_time_s is None and "not calibrated on this machine" in " ".join(d.assumptions)

    key = calibration.key_of(calibration.settings_for(spec, tmp_path / "model"))
    stored = calibration.measure(ROWS, 100.0, 121.0, key, {"threads": 2})
    (tmp_path / "cache" / "calibration" / f"{key}.json").write_text(json.dumps(stored.to_dict()))
    d = calibration.for_run(spec, tmp_path / "run", calibrate=True)  # cached: nothing is run
    assert d.total_steps == 200 and d.validations == 5  # steps 0, 50, 100, 150, 200
    assert d.step_time_s == 2.5 and d.wall_time_s == pytest.approx(5.5 + 200 * 2.5 + 5 * 1.5 + 2.5)
    assert d.basis["step_time_source"] == "calibration on this machine"
    assert "estimate: calibration on this machine" in d.table()
    assert any(a.startswith("local time measured on this machine") for a in d.assumptions)
    # other settings (threads) are another key: not this calibration
    other = spec.model_copy(update={"local": spec.local.model_copy(update={"threads": spec.local.threads + 1})})
    assert calibration.for_spec(other, tmp_path / "run", measure_now=False)[0] is None


def test_calibration_is_skipped_when_asked_or_impossible(tmp_path):
    spec = _spec(tmp_path, calibrate_steps=0)
    assert calibration.for_spec(spec, tmp_path / "run", measure_now=True) == (
        None, "not calibrated on this machine (local.calibrate_steps is 0)")
    tiny = spec.model_copy(update={"model": "tiny"})
    cal, note = calibration.for_spec(tiny, tmp_path / "run", measure_now=True)
    assert cal is None and "the model folder does not exist yet" in note
    with pytest.raises(ValueError, match="two logged steps"):
        LocalSettings(calibrate_steps=1)


def test_aws_estimates_say_what_they_assume(tmp_path):
    train = tmp_path / "t.jsonl"
    train.write_text("{}\n" * 300)
    spec = JobSpec(backend="sagemaker", name="j", model="nova-lite-2", train_data=str(train), reward="r.py",
                   hyper={"max_steps": 10, "global_batch_size": 256, "number_generation": 8})
    d = calibration.for_run(spec)
    assert d.basis["lambda_batch_size"] == 128 and d.lambda_invocations == 10 * 2
    assert d.basis["step_time_source"].startswith("workbench assumption of 20000 completion tokens/s per node")
    assert d.basis["prices_as_of"] == "2024-12-01" and d.basis["reward_latency_source"].startswith("assumed")
    assert any(a.startswith("prices as of 2024-12-01 (prices.json, last reviewed 2026-12") for a in d.assumptions)


# --- estimate vs actual ---------------------------------------------------------------------------------------

def _local_run(run, derived_record: dict, status: dict, rows: list[dict]) -> None:
    job = run / "training" / "job"
    job.mkdir(parents=True)
    (run / "training" / "job.json").write_text(json.dumps({
        "backend": "local", "job_id": "j1", "dry_run": False, "derived": derived_record,
        "handle": {"backend": "local", "job_id": "j1", "training_dir": "training"}}))
    (job / "status.json").write_text(json.dumps({"job_id": "j1", **status}))
    (job / "progress.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_estimate_vs_actual_of_a_local_job(runs_root):
    run = runs_root / "r"
    _local_run(run, {"total_steps": 4, "step_time_s": 0.5, "wall_time_s": 20.0,
                     "basis": {"step_time_source": "bundled figure, not measured on this machine"}},
               {"status": "completed", "step": 4, "attempt": 1, "submitted": "2026-01-01T00:00:00+00:00",
                "ended": "2026-01-01T00:02:00+00:00", "seconds": 100.0}, ROWS)
    checked = actual.check(run)
    assert checked.estimated == {"steps": 4.0, "step_s": 0.5, "wall_s": 20.0, "cost_usd": None}
    assert checked.actual == {"steps": 4.0, "step_s": 2.0, "wall_s": 120.0, "cost_usd": None}
    rows = {r["quantity"]: r for r in checked.rows()}
    assert rows["wall time"]["actual / estimate"] == "6x" and rows["time per step"]["actual"] == "2.00 s"
    assert checked.headline() == ("Took 2.0 min for 4 steps, estimated 0.3 min (6x; bundled figure, not measured "
                                  "on this machine).")
    assert "estimate basis: bundled figure" in checked.table()
    assert actual.check(runs_root / "nothing") is None


def test_the_job_outcome_and_the_monitor_headline_carry_it(runs_root):
    from nbkit.monitor.notebook import headline
    from nbkit.train.job import load_job
    from nbkit.train.stage import LaunchResult

    run = runs_root / "r"
    _local_run(run, {"total_steps": 4, "wall_time_s": 60.0, "basis": {"step_time_source": "calibration on this "
                                                                                           "machine"}},
               {"status": "stopped", "step": 3, "attempt": 2, "submitted": "2026-01-01T00:00:00+00:00",
                "ended": "2026-01-01T00:01:00+00:00"}, ROWS[:4])
    checked = actual.check(run)
    assert any("resumed (attempt 2)" in n for n in checked.notes)
    assert any("stopped at step 3 of 4" in n for n in checked.notes)
    assert LaunchResult(load_job(run), "stopped", None).headline().endswith(
        "Took 60.0 s for 3 steps, estimated 60.0 s (1x; calibration on this machine).")

    class Result:  # the parts of a MonitorResult the headline reads
        health = type("H", (), {"findings": []})()
        recommendation = type("R", (), {"headline": lambda self: "CONTINUE."})()
        frame = [1, 2, 3]
        estimate = checked

    assert headline(Result()).endswith("no health findings. Took 60.0 s for 3 steps, estimated 60.0 s (1x; "
                                       "calibration on this machine).")


def test_estimate_vs_actual_of_a_managed_job_once_its_outputs_are_in_the_run(runs_root):
    import pandas as pd

    run = runs_root / "aws"
    (run / "training").mkdir(parents=True)
    (run / "training" / "job.json").write_text(json.dumps({
        "backend": "sagemaker", "job_id": "rft-1", "dry_run": False,
        "derived": {"total_steps": 10, "step_time_s": 60.0, "wall_time_s": 1800.0, "cost_usd": 9.0,
                    "usd_per_instance_hour": 100.0, "instance_count": 2,
                    "basis": {"step_time_source": "workbench assumption of 20000 completion tokens/s per node"}},
        "handle": {"backend": "sagemaker", "job_id": "rft-1", "region": "us-east-1",
                   "output_s3_path": "s3://b/out"}}))
    frame = pd.DataFrame({"step": [1, 2, 3, 10], "time": [90.0, 180.0, 270.0, 900.0]})
    assert actual.check(run, frame) is None  # no outputs fetched: not known to have ended, and AWS is not asked
    (run / "training" / "output").mkdir()
    (run / "training" / "output" / "step_wise_training_metrics.csv").write_text("step_number\n1\n")
    checked = actual.check(run, frame)
    assert checked.actual == {"steps": 10.0, "step_s": 90.0, "wall_s": 900.0, "cost_usd": pytest.approx(50.0)}
    assert checked.basis.startswith("workbench assumption")
    assert any("training time only" in n or "without startup" in n for n in checked.notes)
    assert {r["quantity"]: r["actual / estimate"] for r in checked.rows()}["cost"] == "5.6x"


def test_launches_with_the_same_settings_at_once_measure_once(tmp_path, monkeypatch):
    """Sweep points start together: one times the steps, the others wait for it and read its result."""
    import threading
    import time

    spec = _spec(tmp_path)
    calls = []

    def timed(spec, run_dir, steps, key, settings):  # stands in for the subprocess run: slow, then cached
        calls.append(key)
        time.sleep(0.5)
        result = calibration.measure(ROWS, 100.0, 121.0, key, settings)
        (tmp_path / "cache" / "calibration" / f"{key}.json").write_text(json.dumps(result.to_dict()))
        return result

    monkeypatch.setattr(calibration, "calibrate", timed)
    found = []
    threads = [threading.Thread(target=lambda: found.append(calibration.for_spec(spec, tmp_path / "run", True)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(found) == 3 and all(cal.step_s == 2.5 and note == "" for cal, note in found)
