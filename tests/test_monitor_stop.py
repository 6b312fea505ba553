"""The stop recommendation: each documented criterion stops a run, a healthy rising run continues, and the
best checkpoint is chosen by validation reward among the saved checkpoints."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nbkit.errors import UserError
from nbkit.monitor import rules, synthetic
from nbkit.monitor.frame import empty_frame, normalize
from nbkit.monitor.stop import best_checkpoint, finished, recommend_stop


def _rec(frame, **kw):
    return recommend_stop(frame, rules.analyse(frame), **kw)


def test_healthy_rising_run_continues_with_its_trend_and_an_eta():
    frame = synthetic.history(300, None, seed=0)
    rec = _rec(frame, target=0.9, target_metric="reward_mean")
    assert rec.action == "continue" and rec.reasons == []
    assert "per 100 steps" in rec.reason and "more steps" in rec.reason
    assert rec.best_metric == "val_reward" and rec.best_step == 299


def test_target_reached_stops():
    frame = synthetic.history(300, None, seed=0)
    rec = _rec(frame, target=0.5)
    assert rec.action == "stop" and rec.reason.startswith("Target reached: val_reward")


def test_plateau_and_overfitting_stop_with_their_reasons():
    assert _rec(synthetic.history(300, "plateau", seed=0)).reason.startswith("Reward has plateaued")
    rec = _rec(synthetic.history(300, "overfitting", seed=0))
    assert rec.action == "stop" and rec.reason.startswith("Validation is degrading")
    assert rec.best_step in (140, 160)


def test_critical_findings_stop_first():
    rec = _rec(synthetic.history(300, "kl_blowup", seed=0), target=0.1)
    assert rec.reason.startswith("KL divergence is blowing up") and len(rec.reasons) == 2


def test_budgets_in_steps_time_and_cost():
    frame = synthetic.history(300, None, seed=0)
    assert _rec(frame, budget_steps=299).reason == "Step budget reached: step 299 of 299."
    assert _rec(frame, budget_steps=1000).action == "continue"
    elapsed = float(frame["time"].max())
    assert _rec(frame, budget_time_s=elapsed - 1).reason.startswith("Time budget reached")
    rec = _rec(frame, budget_cost=1.0, cost_per_hour=3600 / elapsed * 2)  # $2 spent so far
    assert rec.reason == "Cost budget reached: $2.00 of $1.00."
    assert rec.progress["cost_so_far"] == pytest.approx(2.0)
    with pytest.raises(UserError, match="cost_per_hour"):
        _rec(frame, budget_cost=1.0)


def test_budget_without_time_stamps_is_noted_not_guessed():
    frame = synthetic.history(100, None, seed=0).assign(time=np.nan)
    rec = _rec(frame, budget_time_s=1.0)
    assert rec.action == "continue" and "no time stamps" in rec.progress["note"]


def test_best_checkpoint_uses_latest_validation_at_or_before_each_checkpoint():
    frame = normalize(pd.DataFrame({
        "step": np.arange(0, 101),
        "reward_mean": np.linspace(0.2, 0.8, 101),
        "val_reward": [{20: 0.4, 40: 0.7, 60: 0.5, 80: 0.45, 100: 0.3}.get(s, np.nan) for s in range(101)],
    }))
    assert best_checkpoint(frame)["best_step"] == 40 and best_checkpoint(frame)["checkpoint"] is None
    # saved checkpoints at 50 and 100: checkpoint 50 carries the evaluation of step 40 (0.7)
    best = best_checkpoint(frame, {50: "ckpt-50", 100: "ckpt-100"})
    assert best == {"best_step": 40, "best_metric": "val_reward", "best_value": 0.7,
                    "checkpoint_step": 50, "checkpoint_value": 0.7, "checkpoint": "ckpt-50"}
    # only later checkpoints kept (save_total_limit): the best saved one is judged by its own evaluation
    assert best_checkpoint(frame, [60, 100])["checkpoint_step"] == 60


def test_best_checkpoint_without_validation_uses_smoothed_training_reward():
    frame = synthetic.history(200, "reward_decline", seed=0).assign(val_reward=np.nan)
    best = best_checkpoint(frame)
    assert best["best_metric"].startswith("training reward") and 100 <= best["best_step"] <= 150


def test_empty_frame_waits():
    rec = recommend_stop(empty_frame(), [])
    assert rec.action == "continue" and "No reward logged yet" in rec.reason and rec.best_step is None


def test_headline_is_one_sentence_with_the_checkpoint():
    rec = _rec(synthetic.history(300, "overfitting", seed=0))
    assert rec.headline().startswith("STOP: Validation is degrading") and "Best evaluated step 1" in rec.headline()
    rec = recommend_stop(synthetic.history(300, "overfitting", seed=0), [], checkpoints={150: "c150", 299: "final"})
    assert "best saved checkpoint: step 150" in rec.headline() or "saved as a checkpoint" in rec.headline()


def test_a_finished_job_says_how_it_ended_and_which_checkpoint_to_keep():
    """05 used to say "CONTINUE: No stop criterion is met" for a job that had completed all its steps."""
    frame = synthetic.history(300, "overfitting", seed=0)
    rec = _rec(frame, checkpoints={100: "c100", 140: "c140", 299: "final"})
    assert rec.action == "stop"
    done = finished(rec, "completed", frame, 300, "training/checkpoints/checkpoint-140")
    assert done.action == "completed" and done.headline().startswith("COMPLETED: The job completed 299 of 300 steps.")
    assert "Keep the checkpoint of step 140 (training/checkpoints/checkpoint-140)" in done.reason
    assert done.reasons[0].startswith("For the next run: validation is degrading")
    healthy = synthetic.history(300, None, seed=0)
    stopped = finished(_rec(healthy, checkpoints={299: "final"}), "stopped", healthy)
    assert stopped.headline().startswith("STOPPED: The job was stopped at step 299.") and "CONTINUE" not in \
        stopped.headline()
    failed = finished(_rec(healthy), "failed", healthy)
    assert failed.action == "failed" and "saved no checkpoint" in failed.reason
