"""compare() on small synthetic samples frames, checked against hand-computed values; `nbkit compare`."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from nbkit.errors import UserError
from nbkit.evaluate import cli as evaluate_cli
from nbkit.evaluate import stats
from nbkit.evaluate.compare import compare


def frame(rewards: dict[str, list[float]], **extra_per_prompt: dict[str, str]) -> pd.DataFrame:
    """A samples frame with the columns sample_and_score writes, one row per (prompt, sample)."""
    rows = []
    for pid, values in rewards.items():
        for i, r in enumerate(values):
            row = {
                "prompt_id": pid, "sample": i, "prompt": f"question {pid}", "reference": json.dumps({"answer": 1}),
                "response": f"{pid}-{i}-{r}", "reward": r, "status": "ok",
                "components": json.dumps({"correct": r}), "num_tokens": 4, "finish_reason": "stop",
            }
            for col, mapping in extra_per_prompt.items():
                row[col] = mapping[pid]
            rows.append(row)
    return pd.DataFrame(rows)


BASE = {"p1": [0.0, 1.0], "p2": [1.0, 1.0], "p3": [0.0, 0.0]}
TUNED = {"p1": [1.0, 1.0], "p2": [1.0, 0.0], "p3": [0.0, 1.0]}


def test_hand_computed_small_case():
    c = compare(frame(BASE), frame(TUNED), pass_threshold=0.8, n_boot=500)
    # per-prompt means: base .5, 1, 0; tuned 1, .5, .5 -> diffs +.5, -.5, +.5
    assert c.n_prompts == 3
    assert c.base_reward.estimate == pytest.approx(0.5)
    assert c.tuned_reward.estimate == pytest.approx(2 / 3)
    assert c.reward_diff.estimate == pytest.approx(1 / 6)
    assert c.win_tie_loss["wins"] == 2 and c.win_tie_loss["ties"] == 0 and c.win_tie_loss["losses"] == 1
    assert c.win_tie_loss["p_value"] == pytest.approx(1.0)
    # pass rates: base .5, 1, 0; tuned 1, .5, .5 -> 2 improved, 1 worsened; a sign-flip permutation test on
    # the three differences (+.5, -.5, +.5): |sum| >= .5 under all 8 sign patterns -> p = 1
    assert c.pass_test["test"] == "sign-flip permutation test on per-prompt pass rates"
    assert (c.pass_test["improved"], c.pass_test["worsened"]) == (2, 1)
    assert c.pass_test["p_value"] == 1.0
    # solved (pass rate >= 0.5): base T, T, F; tuned T, T, T
    assert (c.solved.both_pass, c.solved.base_only, c.solved.tuned_only, c.solved.both_fail) == (2, 0, 1, 0)
    # pass@1 = mean pass rate; pass@2: base 1, 1, 0 -> 2/3; tuned 1, 1, 1 -> 1
    table = c.pass_at_k.set_index("k")
    assert list(table.index) == [1, 2]
    assert table.loc[1, "base"] == pytest.approx(0.5) and table.loc[1, "tuned"] == pytest.approx(2 / 3)
    assert table.loc[2, "base"] == pytest.approx(2 / 3) and table.loc[2, "tuned"] == pytest.approx(1.0)
    assert c.regressions["prompt_id"].tolist() == ["p2"]
    assert c.regressions.loc[0, "diff"] == pytest.approx(-0.5)
    assert c.regressions.loc[0, "base_best_response"] == "p2-0-1.0"
    assert c.regressions.loc[0, "tuned_worst_response"] == "p2-1-0.0"


def test_identical_frames_give_zero_difference_and_say_so():
    c = compare(frame(BASE), frame(BASE), n_boot=200)
    assert c.reward_diff.to_dict() == {"estimate": 0.0, "lo": 0.0, "hi": 0.0}
    assert not c.significant
    assert c.win_tie_loss["ties"] == 3 and c.regressions.empty
    assert "not a significant difference" in c.verdict


def test_no_real_difference_interval_covers_zero():
    rng = np.random.default_rng(0)
    base = {f"p{i}": list(rng.uniform(size=4)) for i in range(40)}
    ids = list(base)
    # swap prompts in pairs: every prompt changes, the mean does not
    tuned = {ids[i]: base[ids[i + 1 if i % 2 == 0 else i - 1]] for i in range(40)}
    c = compare(frame(base), frame(tuned))
    assert c.reward_diff.estimate == pytest.approx(0.0, abs=1e-12)
    assert c.reward_diff.lo < 0 < c.reward_diff.hi
    assert not c.significant and c.win_tie_loss["ties"] == 0
    assert "not a significant difference (the interval includes 0)" in c.verdict


def test_strong_improvement_is_significant_and_verdict_carries_the_interval():
    rng = np.random.default_rng(1)
    base = {f"p{i}": list((rng.uniform(size=4) < 0.2).astype(float)) for i in range(60)}
    tuned = {pid: list((rng.uniform(size=4) < 0.8).astype(float)) for pid in base}
    c = compare(frame(base), frame(tuned))
    d = c.reward_diff
    assert 0 < d.lo < d.estimate < d.hi and c.significant
    assert c.reward_p_value < 0.001 and c.pass_test["p_value"] < 0.001
    assert "a significant improvement" in c.verdict
    assert f"{d.estimate:+.3f}" in c.verdict and f"{d.lo:+.3f} to {d.hi:+.3f}" in c.verdict
    assert c.verdict.count(".") >= 1 and c.verdict.endswith("worse.")


def test_significant_regression_is_called_a_regression():
    base = {f"p{i}": [1.0, 1.0, 0.0, 1.0] for i in range(30)}
    tuned = {f"p{i}": [0.0, 0.0, 0.0, 1.0] for i in range(30)}
    c = compare(frame(base), frame(tuned), n_boot=300)
    assert c.reward_diff.hi < 0 and "a significant regression" in c.verdict
    assert len(c.regressions) == 30


def test_one_sample_per_prompt_uses_exact_mcnemar():
    base = {f"p{i}": [float(i < 5)] for i in range(20)}  # 5 pass
    tuned = {f"p{i}": [float(i < 4 or 10 <= i < 19)] for i in range(20)}  # p4 lost, p10..p18 gained
    c = compare(frame(base), frame(tuned), n_boot=300)
    assert c.pass_test["test"] == "exact McNemar"
    assert (c.pass_test["improved"], c.pass_test["worsened"]) == (9, 1)
    assert c.pass_test["p_value"] == pytest.approx(stats.mcnemar_exact(1, 9)) == pytest.approx(22 / 1024)
    assert list(c.pass_at_k["k"]) == [1]


def test_breakdown_by_domain_and_difficulty():
    base = {"a1": [0.0], "a2": [0.0], "g1": [1.0], "g2": [0.5]}
    tuned = {"a1": [1.0], "a2": [1.0], "g1": [1.0], "g2": [0.0]}
    domain = {"a1": "algebra", "a2": "algebra", "g1": "geometry", "g2": "geometry"}
    level = {"a1": "easy", "a2": "hard", "g1": "easy", "g2": "hard"}
    c = compare(frame(base, domain=domain, difficulty_level=level), frame(tuned), n_boot=200)
    assert set(c.breakdown) == {"domain", "difficulty_level"}
    by_domain = c.breakdown["domain"].set_index("domain")
    assert by_domain.loc["algebra", "prompts"] == 2 and by_domain.loc["algebra", "diff"] == pytest.approx(1.0)
    assert by_domain.loc["geometry", "diff"] == pytest.approx(-0.25)
    assert (by_domain.loc["geometry", "wins"], by_domain.loc["geometry", "losses"]) == (0, 1)
    assert c.breakdown["difficulty_level"].set_index("difficulty_level").loc["hard", "diff"] == pytest.approx(0.25)
    assert not compare(frame(base), frame(tuned), n_boot=50).breakdown


def test_failed_scores_count_as_failed_reward_and_are_reported():
    base = frame({"p1": [1.0, float("nan")], "p2": [0.0, 0.0]})
    base.loc[1, "status"] = "timeout"
    c = compare(base, frame({"p1": [1.0, 1.0], "p2": [0.0, 1.0]}), n_boot=100)
    assert c.failed_samples == {"base": 1, "tuned": 0}
    assert c.statuses["base"] == {"ok": 3, "timeout": 1}
    assert c.base_reward.estimate == pytest.approx(0.25)  # the NaN counted as 0, not dropped
    with pytest.raises(UserError, match="no finite reward.*failed_reward=0.0"):
        compare(base, frame({"p1": [1.0, 1.0], "p2": [0.0, 1.0]}), failed_reward=None)


def test_unmatched_prompts_are_an_error_unless_allowed():
    with pytest.raises(UserError, match="1 only in base.*p3.*allow_unmatched"):
        compare(frame(BASE), frame({k: v for k, v in TUNED.items() if k != "p3"}))
    c = compare(frame(BASE), frame({k: v for k, v in TUNED.items() if k != "p3"}), allow_unmatched=True, n_boot=50)
    assert c.n_prompts == 2 and c.unmatched == {"base_only": ["p3"], "tuned_only": []}
    with pytest.raises(UserError, match="share no prompt_id"):
        compare(frame({"x": [1.0]}), frame({"y": [1.0]}))


def test_integer_and_string_prompt_ids_pair_up():
    base = frame({"1": [0.0], "2": [1.0]})
    base["prompt_id"] = base["prompt_id"].astype(int)
    c = compare(base, frame({"1": [1.0], "2": [1.0]}), n_boot=50)
    assert c.n_prompts == 2 and c.win_tie_loss["wins"] == 1


def test_bad_frames_get_clear_errors():
    with pytest.raises(UserError, match="lacks column.*reward"):
        compare(frame(BASE).drop(columns=["reward"]), frame(TUNED))
    doubled = pd.concat([frame(BASE), frame(BASE)])
    with pytest.raises(UserError, match="repeated \\(prompt_id, sample\\)"):
        compare(doubled, frame(TUNED))
    with pytest.raises(UserError, match="empty"):
        compare(frame(BASE).iloc[:0], frame(TUNED))


def test_to_dict_is_strict_json_and_save_round_trips(tmp_path):
    c = compare(frame(BASE), frame(TUNED), n_boot=100)
    path = tmp_path / "comparison.json"
    c.save(path)
    data = json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"non-JSON constant {name}"))
    assert data["verdict"] == c.verdict
    assert data["reward"]["diff"]["estimate"] == pytest.approx(1 / 6)
    assert data["win_tie_loss"]["losses"] == 1 and data["regressions"][0]["prompt_id"] == "p2"
    assert len(data["per_prompt"]) == 3 and data["pass_at_k"][1]["k"] == 2
    html = c.to_html()
    assert "<table" in html and "Regressions (1 prompt," in html


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    evaluate_cli.register(parser.add_subparsers())
    return parser.parse_args(argv)


def test_cli_compare_json_and_text(tmp_path, capsys):
    (tmp_path / "baseline").mkdir()
    (tmp_path / "tuned").mkdir()
    frame(BASE).to_parquet(tmp_path / "baseline" / "samples.parquet")
    frame(TUNED).to_parquet(tmp_path / "tuned" / "samples.parquet")
    (tmp_path / "baseline" / "summary.json").write_text(json.dumps({"pass_threshold": 0.4}))

    args = _cli(["compare", str(tmp_path / "baseline"), str(tmp_path / "tuned" / "samples.parquet"), "--json",
                 "--n-boot", "100"])
    assert args.func(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["pass_threshold"] == 0.4 and data["n_boot"] == 100
    assert data["reward"]["diff"]["estimate"] == pytest.approx(1 / 6)

    args = _cli(["compare", str(tmp_path / "baseline"), str(tmp_path / "tuned"), "--threshold", "0.9"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("On 3 eval prompts") and "pass rate (reward >= 0.9)" in out and "regressions (1" in out


def test_cli_compare_missing_file_is_a_user_error(tmp_path):
    args = _cli(["compare", str(tmp_path), str(tmp_path)])
    with pytest.raises(UserError, match="no samples file"):
        args.func(args)


# --- every row tested, Holm over the table, the verdict names every significant change --------------------------

def sharper_but_narrower() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Base: every prompt right on 2 of 8 tries (pass@8 = 1). Tuned: 60% of prompts right every time, the rest
    never (pass@8 = 0.6). Mean reward and pass rate rise, pass@4 and pass@8 fall: the RL narrowing."""
    base = {f"p{i:02d}": [1.0, 1.0] + [0.0] * 6 for i in range(60)}
    tuned = {f"p{i:02d}": [1.0] * 8 if i % 5 < 3 else [0.0] * 8 for i in range(60)}
    domain = {pid: "algebra" if i % 2 else "arithmetic" for i, pid in enumerate(base)}
    return frame(base, domain=domain), frame(tuned)


def test_verdict_names_a_rising_mean_and_a_falling_pass_at_k():
    base, tuned = sharper_but_narrower()
    c = compare(base, tuned, n_boot=300)
    assert c.significant and "a significant improvement" in c.verdict
    table = c.summary_frame().set_index("metric")
    assert table.loc["pass@8", "diff"] == pytest.approx(-0.4) and table.loc["pass@8", "significant"]
    assert "higher mean reward (0.250 -> 0.600)" in c.verdict
    assert "more often right on the first try (pass rate 25.0% -> 60.0%)" in c.verdict
    assert "less often right in 8 tries (pass@8 1.000 -> 0.600)" in c.verdict
    assert "less often right in 4 tries" in c.verdict
    assert "less diverse" in c.verdict
    # the per-domain rows are tests too, and named when significant
    assert "higher mean reward on domain algebra" in c.verdict
    data = c.to_dict()
    assert any(s.startswith("less often right in 8 tries") for s in data["significant_changes"])
    # mean reward, pass@2, pass@4, pass@8 and the two domains; with 0/1 rewards the pass rate is the mean
    # reward prompt by prompt (one test, named in both words), and pass@1 is the pass rate
    assert data["multiple_comparisons"] == {"method": "Holm", "tests": 6, "alpha": 0.05}


def test_every_row_has_a_p_value_and_a_holm_adjusted_one():
    base, tuned = sharper_but_narrower()
    c = compare(base, tuned, n_boot=200)
    summary = c.summary_frame()
    assert summary["p_value"].notna().all() and summary["p_holm"].notna().all()
    assert (summary["p_holm"] >= summary["p_value"]).all()
    assert c.breakdown["domain"]["p_value"].notna().all() and c.breakdown["domain"]["p_holm"].notna().all()
    # pass@1 is the pass rate: the same test, counted once in the adjustment
    rows = c.tests.set_index("key")
    assert rows.loc["pass@1", "p_value"] == rows.loc["pass_rate", "p_value"] and not rows.loc["pass@1", "counted"]
    counted = rows[rows["counted"]]
    np.testing.assert_allclose(counted["p_holm"], stats.holm(counted["p_value"].to_numpy()))
    # 0/1 rewards: the pass rate is the mean reward, one test; graded rewards make them two
    assert not rows.loc["pass_rate", "counted"] and rows.loc["pass_rate", "p_holm"] == rows.loc["mean", "p_holm"]
    graded = compare(frame({k: [0.5 * x for x in v] for k, v in BASE.items()}),
                     frame({k: [0.9 * x for x in v] for k, v in TUNED.items()}), pass_threshold=0.8, n_boot=100)
    assert graded.tests.set_index("key").loc["pass_rate", "counted"]


def test_holm_keeps_a_lone_small_p_from_being_called_significant():
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    assert stats.holm([]) == []
    with pytest.raises(UserError, match="p-values must lie in"):
        stats.holm([0.5, float("nan")])
    # a modest gain: each test alone has p < 0.05, none survives the adjustment over the table's three tests
    rng = np.random.default_rng(4)
    base = {f"p{i:02d}": list((rng.uniform(size=4) < 0.4).astype(float)) for i in range(40)}
    tuned = {pid: list((rng.uniform(size=4) < 0.55).astype(float)) for pid in base}
    c = compare(frame(base), frame(tuned), n_boot=200)
    row = c.tests.set_index("key").loc["mean"]
    assert row["p_value"] < 0.05 <= row["p_holm"] and not row["significant"] and not c.significant
    assert "no metric changed significantly (Holm-adjusted over 3 tests)" in c.verdict
    assert "significant improvement" not in c.verdict and "although the interval excludes 0" in c.verdict


def test_no_significant_change_says_so_with_the_number_of_tests():
    c = compare(frame(BASE), frame(TUNED), n_boot=200)
    assert "no metric changed significantly (Holm-adjusted over 2 tests)" in c.verdict


def test_other_eval_data_or_sampling_settings_are_refused_unless_allowed():
    base, tuned = frame(BASE), frame(TUNED)
    base.attrs["sampling"] = {"k": 2, "max_new_tokens": 16, "temperature": 1.0, "seed": 0, "reward": "builtin:numeric"}
    tuned.attrs["sampling"] = dict(base.attrs["sampling"], temperature=0.7)
    changed = tuned.copy()
    changed.loc[changed["prompt_id"] == "p2", "reference"] = json.dumps({"answer": 2})
    with pytest.raises(UserError, match=r"temperature 1\.0 \(base\) vs 0\.7 \(tuned\).*allow_mismatch"):
        compare(base, tuned)
    with pytest.raises(UserError, match=r"1 prompt\(s\) have another reference.*p2.*eval data changed"):
        compare(base, changed, allow_mismatch=False)
    c = compare(base, changed, allow_mismatch=True, n_boot=50)
    assert c.mismatches and "Compared although" in c.verdict and "temperature" in c.verdict
    assert c.to_dict()["mismatches"] == c.mismatches
    # frames that do not record their settings still show a different number of samples per prompt
    with pytest.raises(UserError, match="2 samples per prompt \\(base\\) vs 1 \\(tuned\\)"):
        compare(frame(BASE), frame({k: v[:1] for k, v in TUNED.items()}))


def test_sampling_settings_travel_in_the_parquet_file(tmp_path):
    from nbkit.evaluate.sampling import write_samples

    base = frame(BASE)
    base.attrs["sampling"] = {"k": 2, "temperature": 1.0}
    tuned = frame(TUNED)
    tuned.attrs["sampling"] = {"k": 2, "temperature": 0.5}
    write_samples(base, tmp_path / "baseline")
    write_samples(tuned, tmp_path / "tuned")
    args = _cli(["compare", str(tmp_path / "baseline"), str(tmp_path / "tuned")])
    with pytest.raises(UserError, match="temperature 1.0 \\(base\\) vs 0.5 \\(tuned\\)"):
        args.func(args)
    args = _cli(["compare", str(tmp_path / "baseline"), str(tmp_path / "tuned"), "--allow-mismatch"])
    assert args.func(args) == 0
