"""Plots (every panel titled and labelled with units, long runs binned, missing metrics said so) and the
refresh loop of a running job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nbkit.errors import UserError
from nbkit.monitor import plots, rules, synthetic
from nbkit.monitor.live import LiveView, follow
from nbkit.monitor.nova_csv import read_nova_csv

CSV = Path(__file__).parent / "fixtures" / "monitor" / "step_wise_training_metrics.csv"


def _texts(ax):
    return [t.get_text() for t in ax.texts]


def test_dashboard_has_six_titled_panels_with_units_and_shaded_findings():
    frame = synthetic.history(300, "overfitting", seed=0)
    findings = rules.analyse(frame)
    fig = plots.dashboard(frame, findings, best_step=160)
    main = [ax for ax in fig.axes if ax.get_title()]
    titles = [ax.get_title() for ax in main]
    assert titles == ["Training reward", "Reward distribution (share of completions)", "Training vs validation reward",
                      "Reward errors and learning signal", "Completion length", "Entropy and KL"]
    for ax in main:
        assert ax.get_xlabel() == "step" and "(" in ax.get_ylabel()  # a unit in parentheses
    train_val = main[2]
    assert any(line.get_label() == "best checkpoint (step 160)" for line in train_val.get_lines())
    assert len(train_val.patches) >= 1  # the overfitting window is shaded
    assert "synthetic overfitting run" in fig._suptitle.get_text()
    assert not _texts(main[0])  # nothing missing on a full frame


def test_percent_axes_hold_the_rule_thresholds_so_small_spikes_look_small():
    """A 0.8% cut-at-limit spike used to fill the panel while the rule (20%) reported nothing."""
    frame = synthetic.history(100, None, seed=0)
    frame["clipped_share"] = 0.0
    frame.loc[50, "clipped_share"] = 0.0078
    frame["reward_error_rate"] = 0.0
    th = rules.thresholds({})
    fig = plots.dashboard(frame, [], thresholds=th)
    lengths = next(ax for ax in fig.axes if ax.get_ylabel() == "completions cut at the limit (%)")
    assert lengths.get_ylim()[1] >= th.max_clipped_share * 100  # 0.78% is a blip under the 20% line
    errors = next(ax for ax in fig.axes if ax.get_title() == "Reward errors and learning signal")
    assert errors.get_ylim()[1] >= th.max_zero_var_share * 100
    assert any(line.get_label() == "cut-at-limit warning" for line in lengths.get_lines())
    spike = plots.dashboard(frame.assign(clipped_share=frame["clipped_share"] * 60), [], thresholds=th)
    high = next(ax for ax in spike.axes if ax.get_ylabel() == "completions cut at the limit (%)")
    assert high.get_ylim()[1] >= 0.0078 * 60 * 100  # data above the threshold still fits


def test_missing_metrics_say_so_on_their_panel():
    frame = read_nova_csv(CSV)  # Nova's CSV: reward, length, entropy, gradient norm only
    fig = plots.dashboard(frame)
    main = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert "not logged by this source" in _texts(main["Reward distribution (share of completions)"])[0]
    assert "not logged by this source" in _texts(main["Reward errors and learning signal"])[0]
    assert not _texts(main["Training reward"]) and not _texts(main["Entropy and KL"])


def test_long_runs_are_binned_and_the_title_says_so():
    frame = synthetic.history(10_000, None, seed=0, eval_every=100)
    data, per_bin = plots.binned(frame, 2000)
    assert per_bin == 5 and len(data) == 2000
    assert data["reward_mean"].iloc[0] == pytest.approx(frame["reward_mean"].iloc[:5].mean())
    assert data["step"].iloc[1] == 5
    fig = plots.dashboard(frame, max_points=2000)
    assert "mean of 5 steps" in fig._suptitle.get_text()
    reward_line = next(line for line in fig.axes[0].get_lines() if line.get_label() == "mean")
    assert len(reward_line.get_xdata()) == 2000


def test_ema_ignores_gaps():
    import pandas as pd

    out = plots.ema(pd.Series([1.0, np.nan, 3.0]), 2)
    assert np.isnan(out.iloc[1]) and out.iloc[2] > 1.0


def test_follow_refreshes_until_the_job_ends_and_waits_for_first_metrics():
    states = iter([True, True, True, False])
    calls, rendered, waits = [], [], []

    def refresh():
        calls.append(1)
        if len(calls) == 1:
            raise UserError("MLflow store not found")
        return len(calls)

    result = follow(refresh, rendered.append, lambda: next(states), interval_s=5, on_wait=waits.append,
                    sleep=lambda s: None)
    assert result == 4 and rendered == [2, 3, 4]
    assert waits == ["waiting for metrics: MLflow store not found"]


def test_follow_stops_at_its_timeout_and_raises_once_the_job_ended():
    clock = iter(range(0, 1000, 10))
    result = follow(lambda: "r", lambda r: None, lambda: True, interval_s=10, timeout_s=25,
                    sleep=lambda s: None, clock=lambda: next(clock))
    assert result == "r"

    def broken():
        raise UserError("bad source")

    with pytest.raises(UserError, match="bad source"):
        follow(broken, lambda r: None, lambda: False, sleep=lambda s: None)


def test_live_view_updates_in_place(monkeypatch):
    shown = []

    class Handle:
        def __init__(self, obj):
            self.obj = obj

        def update(self, obj):
            shown.append(("update", obj))

    def display(obj, display_id=False):
        shown.append(("display", obj))
        return Handle(obj)

    import IPython.display

    monkeypatch.setattr(IPython.display, "display", display)
    view = LiveView()
    view.update("table", 1)
    view.update("table", 2)
    view.update("figure", 3)
    assert shown == [("display", 1), ("update", 2), ("display", 3)]
