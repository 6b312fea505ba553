"""Each health rule fires on a synthetic series that shows its pattern and stays silent on a healthy run;
evidence carries the numbers and the window; thresholds change the verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nbkit.errors import UserError
from nbkit.monitor import rules, synthetic
from nbkit.monitor.frame import empty_frame, normalize


@pytest.fixture(scope="module")
def healthy():
    return synthetic.history(300, None, seed=0)


def test_a_healthy_run_has_no_findings_and_every_rule_ran(healthy):
    health = rules.check(healthy)
    assert health.findings == []
    assert {c.name for c in health.checks} == set(rules.RULES)
    assert all(c.status == "ok" for c in health.checks), [c for c in health.checks if c.status != "ok"]


@pytest.mark.parametrize("pattern", synthetic.PATTERNS)
def test_each_rule_fires_on_its_pattern(pattern, healthy):
    frame = synthetic.history(300, pattern, seed=0)
    fired = {f.name: f for f in rules.analyse(frame)}
    assert pattern in fired
    finding = fired[pattern]
    assert finding.severity in rules.SEVERITIES
    assert finding.explanation and finding.remedy and finding.evidence
    first, last = finding.window
    assert 0 <= first <= last <= 299
    # the same rule alone is silent on the healthy run
    assert rules.RULES[pattern](healthy, rules.Thresholds()) is not None
    assert not isinstance(rules.RULES[pattern](healthy, rules.Thresholds()), rules.Finding)


def test_plateau_evidence_is_the_gain_interval_over_the_latest_window():
    frame = synthetic.history(300, "plateau", seed=0)
    finding = next(f for f in rules.analyse(frame) if f.name == "plateau")
    ev = finding.evidence
    assert finding.window == (210, 299)  # the latest 30% of points
    assert ev["gain_ci_low"] <= ev["reward_gain"] <= ev["gain_ci_high"] < 0.02
    assert ev["window_mean_reward"] == pytest.approx(0.6, abs=0.02)
    assert finding.severity == "warning" and "plateaued" in finding.title


def test_plateau_respects_its_threshold_and_noise():
    frame = synthetic.history(300, "plateau", seed=0)
    # over the whole run (window_frac 1) the early rise counts: not a plateau
    assert "plateau" not in {f.name for f in rules.analyse(frame, {"window_frac": 1.0})}
    # demanding a larger gain turns the healthy run's slow late rise into a plateau
    healthy = synthetic.history(300, None, seed=0)
    assert "plateau" in {f.name for f in rules.analyse(healthy, {"plateau_min_gain": 0.2})}
    # a short noisy flat series is not called a confident plateau: the interval is wide
    rng = np.random.default_rng(1)
    noisy = normalize(pd.DataFrame({"step": np.arange(12), "reward_mean": 0.5 + rng.normal(0, 0.2, 12)}))
    verdict = rules.rule_plateau(noisy, rules.Thresholds())
    assert not (isinstance(verdict, rules.Finding) and verdict.severity == "warning")


def test_trend_interval_widens_for_autocorrelated_noise():
    rng = np.random.default_rng(0)
    x = np.arange(200)
    walk = np.cumsum(rng.normal(0, 0.01, 200))  # a random walk has no trend, only drift-like runs
    tr = rules.trend(x, walk)
    assert tr.n_eff < 50  # strongly autocorrelated: far fewer effective points than 200
    white = rules.trend(x, rng.normal(0, 0.01, 200))
    assert white.n_eff > 150 and white.lo < 0 < white.hi


def test_overfitting_points_at_the_best_validation_step():
    frame = synthetic.history(300, "overfitting", seed=0, eval_every=20)
    finding = next(f for f in rules.analyse(frame) if f.name == "overfitting")
    assert finding.evidence["best_val_step"] in (140, 160)
    assert finding.evidence["val_drop"] >= 0.05
    assert finding.evidence["train_change"] > 0 and "while training reward rises" in finding.title
    assert finding.evidence["gap_now"] > finding.evidence["gap_at_best"]


def test_reward_hacking_on_a_user_chosen_column_and_unknown_column():
    frame = synthetic.history(300, None, seed=0)
    frame["exact_match"] = np.where(frame["step"] % 20 == 0, 0.6 - 0.001 * frame["step"], np.nan)
    assert "reward_hacking" not in {f.name for f in rules.analyse(frame)}
    fired = {f.name: f for f in rules.analyse(frame, {"hacking_metric": "exact_match"})}
    assert fired["reward_hacking"].evidence["metric"] == "exact_match"
    assert fired["reward_hacking"].evidence["metric_change"] < -0.2
    with pytest.raises(UserError, match="hacking_metric 'nope'.*exact_match"):
        rules.analyse(frame, {"hacking_metric": "nope"})


def test_reward_errors_escalate_to_critical_and_fall_back_to_completion_rate():
    frame = synthetic.history(300, "reward_errors", seed=0)
    finding = next(f for f in rules.analyse(frame) if f.name == "reward_errors")
    assert finding.severity == "warning" and finding.evidence["recent_error_rate"] == pytest.approx(0.15, abs=0.01)
    assert next(f for f in rules.analyse(frame, {"critical_error_rate": 0.1}) if f.name == "reward_errors").severity == "critical"
    only_rate = frame.assign(reward_error_rate=np.nan)
    finding = next(f for f in rules.analyse(only_rate) if f.name == "reward_errors")
    assert finding.evidence["measured_as"] == "1 - rollout_completion_rate"


def test_zero_variance_says_whether_groups_all_fail():
    frame = synthetic.history(300, "zero_variance", seed=0)
    frame["reward_mean"] = 0.05
    finding = next(f for f in rules.analyse(frame) if f.name == "zero_variance")
    assert "fails" in finding.explanation and "SFT" in finding.remedy


def test_length_limit_from_mean_length_and_max_new_tokens():
    frame = synthetic.history(300, None, seed=0).assign(clipped_share=np.nan)
    assert rules.check(frame).checks[[c.name for c in rules.check(frame).checks].index("length_limit")].status == "skipped"
    fired = {f.name for f in rules.analyse(frame, {"max_new_tokens": 50})}
    assert "length_limit" in fired
    assert "length_limit" not in {f.name for f in rules.analyse(frame, {"max_new_tokens": 512})}


def test_kl_blowup_is_critical_while_kl_stays_above_the_limit():
    frame = synthetic.history(300, "kl_blowup", seed=0)
    finding = next(f for f in rules.analyse(frame) if f.name == "kl_blowup")
    assert finding.severity == "critical" and finding.evidence["kl_now"] > 1.0


def test_rules_skip_with_a_reason_when_metrics_are_missing():
    frame = normalize(pd.DataFrame({"step": np.arange(40), "reward_mean": np.linspace(0.2, 0.6, 40)}))
    checks = {c.name: c for c in rules.check(frame).checks}
    assert checks["kl_blowup"].status == "skipped" and "kl is not logged" in checks["kl_blowup"].detail
    assert checks["overfitting"].status == "skipped" and "val_reward" in checks["overfitting"].detail
    assert checks["plateau"].status == "ok"
    assert rules.check(empty_frame()).findings == []


def test_thresholds_are_validated_with_names():
    with pytest.raises(UserError, match="unknown threshold; valid names are: window_frac"):
        rules.thresholds({"windowfrac": 0.2})
    with pytest.raises(UserError, match="max_error_rate = 2"):
        rules.thresholds({"max_error_rate": 2})
    assert rules.thresholds({"max_error_rate": "0.1"}).max_error_rate == 0.1  # params arrive as strings
    with pytest.raises(UserError, match="unknown health rule"):
        rules.check(synthetic.history(50), rules=["nope"])


def test_findings_table_and_json_are_plain():
    frame = synthetic.history(300, "entropy_collapse", seed=0)
    health = rules.check(frame)
    table = rules.findings_table(health.findings)
    assert list(table.columns) == ["severity", "rule", "finding", "steps", "evidence", "remedy"]
    assert table.loc[0, "rule"] == "entropy_collapse" and "ratio: " in table.loc[0, "evidence"]
    import json

    data = json.loads(json.dumps(health.to_dict()))
    assert data["findings"][0]["window"] == list(health.findings[0].window)
    assert data["thresholds"]["entropy_collapse_frac"] == 0.1


def test_kl_rising_from_zero_in_a_short_run_is_not_a_blowup():
    frame = normalize(pd.DataFrame({"step": np.arange(12), "kl": np.r_[0.0, np.linspace(0.001, 0.08, 11)]}))
    verdict = rules.rule_kl_blowup(frame, rules.Thresholds(min_points=5))
    assert isinstance(verdict, str)
    assert isinstance(rules.rule_kl_blowup(frame.assign(kl=frame["kl"] * 20), rules.Thresholds(min_points=5)),
                      rules.Finding)  # above kl_max is a blow-up whatever the start
