"""Baseline statistics against hand-computed values, the recommendation at its thresholds, sample_and_score."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest

from nbkit.errors import UserError
from nbkit.evaluate import recommend, sample_and_score, stats, summarize
from nbkit.policy import Completion
from nbkit.policy.base import Generator


def frame(rows: list[tuple[str, float, str, int, str]]) -> pd.DataFrame:
    """(prompt_id, reward, status, num_tokens, finish_reason) rows; samples numbered per prompt."""
    df = pd.DataFrame(rows, columns=["prompt_id", "reward", "status", "num_tokens", "finish_reason"])
    df["sample"] = df.groupby("prompt_id").cumcount()
    return df


# A: always solved, B: never, C: mixed with one failed scoring (NaN reward, status exception).
HAND = frame([
    ("A", 1.0, "ok", 2, "stop"), ("A", 1.0, "ok", 2, "stop"), ("A", 1.0, "ok", 2, "stop"), ("A", 1.0, "ok", 2, "stop"),
    ("B", 0.0, "ok", 8, "stop"), ("B", 0.0, "ok", 8, "stop"), ("B", 0.0, "ok", 8, "stop"), ("B", 0.0, "ok", 8, "stop"),
    ("C", 1.0, "ok", 3, "stop"), ("C", 0.0, "ok", 4, "stop"), ("C", 0.5, "ok", 5, "stop"),
    ("C", math.nan, "exception", 16, "length"),
])


def test_summary_matches_hand_computed_values():
    s = summarize(HAND, max_new_tokens=16, pass_threshold=0.8, high=0.8, low=0.2, n_boot=500, seed=1)
    # per-prompt means 1, 0, (1 + 0 + 0.5 + 0) / 4 = 0.375 -> mean 1.375 / 3
    assert s["reward"]["mean"] == pytest.approx(1.375 / 3)
    assert s["reward"]["sample_mean"] == pytest.approx(5.5 / 12)
    assert s["positive_share"] == pytest.approx(6 / 12)
    assert s["prompts_with_any_positive"] == pytest.approx(2 / 3)
    assert s["buckets"] == pytest.approx({"high": 5 / 12, "medium": 1 / 12, "low": 6 / 12})
    p = s["pass_rate"]
    assert (p["always"], p["never"], p["mixed"]) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert p["zero_variance_share"] == pytest.approx(2 / 3)
    assert p["histogram"] == {"0": 1, "0.25": 1, "1": 1}
    assert p["mean"] == pytest.approx((1 + 0 + 0.25) / 3)
    assert s["errors"]["by_status"] == {"exception": 1, "ok": 11}
    assert s["errors"]["reward_error_rate"] == pytest.approx(1 / 12)
    assert s["errors"]["non_finite_rewards"] == 1
    assert s["lengths"]["mean"] == pytest.approx(68 / 12)
    assert s["lengths"]["max"] == 16 and s["lengths"]["truncated_share"] == pytest.approx(1 / 12)
    assert s["n_prompts"] == 3 and s["n_samples"] == 12
    assert s["samples_per_prompt"] == {"min": 4, "max": 4}


def test_ci_is_the_bootstrap_over_per_prompt_means():
    s = summarize(HAND, n_boot=400, seed=7, alpha=0.1)
    expected = stats.bootstrap_ci(np.array([1.0, 0.0, 0.375]), n_boot=400, seed=7, alpha=0.1)
    assert (s["reward"]["mean"], s["reward"]["ci_low"], s["reward"]["ci_high"]) == pytest.approx(expected)
    assert s["reward"]["ci_low"] <= s["reward"]["mean"] <= s["reward"]["ci_high"]
    assert s["reward"]["ci_level"] == pytest.approx(0.9)


def test_each_prompt_weighs_the_same_whatever_its_sample_count():
    df = frame([("A", 1.0, "ok", 1, "stop"), ("B", 0.0, "ok", 1, "stop"), ("B", 0.0, "ok", 1, "stop"),
                ("B", 0.0, "ok", 1, "stop")])
    s = summarize(df, n_boot=50)
    assert s["reward"]["mean"] == pytest.approx(0.5)
    assert s["reward"]["sample_mean"] == pytest.approx(0.25)
    assert s["pass_rate"]["single_sample_prompts"] == 1


def test_failed_reward_value_is_a_parameter():
    s = summarize(HAND, failed_reward=-1.0, n_boot=50)
    assert s["reward"]["mean"] == pytest.approx((1 + 0 + (1 + 0 + 0.5 - 1) / 4) / 3)


def test_summary_carries_the_settings_notebook_06_reuses():
    s = summarize(HAND, n_boot=50, settings={"k": 4, "max_new_tokens": 16, "temperature": 1.0, "seed": 0,
                                             "reward": "builtin:numeric", "model": "tiny"})
    assert {"k", "max_new_tokens", "temperature", "seed", "reward", "model", "pass_threshold"} <= set(s["settings"])
    json.dumps(s)  # JSON-serializable as written to summary.json


def test_warnings_flag_errors_truncation_and_zero_variance():
    s = summarize(HAND, n_boot=50)
    text = " ".join(s["warnings"])
    assert "not scored cleanly" in text and "only 3 prompts" in text
    flat = frame([(f"p{i}", 0.0, "ok", 16, "length") for i in range(40) for _ in range(2)])
    text = " ".join(summarize(flat, max_new_tokens=16, n_boot=50)["warnings"])
    assert "100% of completions hit max_new_tokens" in text
    assert "100% of prompts give zero-variance groups" in text


def test_by_group_breakdown():
    df = HAND.assign(domain=["x"] * 4 + ["y"] * 8)
    groups = summarize(df, n_boot=50)["by_group"]["domain"]
    assert groups["x"] == {"mean_reward": 1.0, "prompts": 1, "samples": 4}
    assert groups["y"]["mean_reward"] == pytest.approx(1.5 / 8)


@pytest.mark.parametrize(
    ("mean", "positive", "verdict"),
    [
        (0.96, 1.0, "skip_rft"),
        (0.95, 1.0, "rft"),  # the boundary belongs to RFT: "above 95%" skips
        (0.9500001, 1.0, "skip_rft"),
        (0.0, 0.0, "sft_first"),
        (0.04, 0.0499, "sft_first"),
        (0.05, 0.05, "rft"),  # exactly 5% of examples rewarded is not "fewer than 5%"
        (0.3, 0.3, "rft"),
    ],
)
def test_recommendation_thresholds(mean, positive, verdict):
    rec = recommend(mean, positive)
    assert rec["verdict"] == verdict
    assert rec["label"] and len(rec["reason"]) > 40


def test_recommendation_reasons_are_plain_words():
    assert "No sampled answer" in recommend(0.0, 0.0)["reason"]
    assert "fewer than 5%" in recommend(0.01, 0.02)["reason"]
    assert "above the 95% ceiling" in recommend(0.99, 1.0)["reason"]
    assert "95% CI 0.200 to 0.400" in recommend(0.3, 0.3, ci=(0.2, 0.4))["reason"]
    with pytest.raises(UserError, match="mean_reward must be a finite number"):
        recommend(math.nan, 0.1)


def test_summarize_end_to_end_verdicts():
    zero = frame([(f"p{i}", 0.0, "ok", 2, "stop") for i in range(10) for _ in range(2)])
    assert summarize(zero, n_boot=50)["recommendation"]["verdict"] == "sft_first"
    solved = frame([(f"p{i}", 1.0, "ok", 2, "stop") for i in range(10) for _ in range(2)])
    assert summarize(solved, n_boot=50)["recommendation"]["verdict"] == "skip_rft"
    assert summarize(HAND, n_boot=50)["recommendation"]["verdict"] == "rft"


def test_summarize_rejects_frames_that_are_not_samples():
    with pytest.raises(UserError, match="lacks column"):
        summarize(pd.DataFrame({"x": [1]}))
    with pytest.raises(UserError, match="empty"):
        summarize(HAND.iloc[:0])


# ------------------------------------------------------------------------------------------ sample_and_score


class Scripted(Generator):
    """A generator that answers from a table: the evaluation code under test, not a model."""

    name = "scripted"

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[tuple] = []

    def _generate(self, prompts, n, max_new_tokens, temperature, seed):
        self.calls.append((len(prompts), n, max_new_tokens, temperature, seed))
        return [[Completion(a, len(a), "stop") for a in self.answers[p[-1]["content"]][:n]] for p in prompts]


RECORDS = [
    {"id": "m1", "messages": [{"role": "system", "content": "Reply with the final answer only."},
                              {"role": "user", "content": "What is 2 + 2?"}],
     "reference_answer": {"solution": "4"}, "domain": "arithmetic", "difficulty_level": "easy"},
    {"id": "m2", "messages": [{"role": "user", "content": "Solve for x: 2x = 6"},
                              {"role": "assistant", "content": "x = 3"}],  # a trailing answer is not the prompt
     "reference_answer": {"solution": "x = 3"}, "domain": "algebra", "difficulty_level": "medium"},
]


def test_sample_and_score_columns_and_values():
    gen = Scripted({"What is 2 + 2?": ["4", "5"], "Solve for x: 2x = 6": ["x = 3", "boom"]})
    df = sample_and_score(gen, "builtin:numeric", RECORDS, k=2, max_new_tokens=8, temperature=0.7, seed=3)
    assert gen.calls == [(2, 2, 8, 0.7, 3)]
    assert list(df.columns[:10]) == ["prompt_id", "sample", "prompt", "reference", "response", "reward", "status",
                                     "components", "num_tokens", "finish_reason"]
    assert {"domain", "difficulty_level"} <= set(df.columns)
    assert list(df["prompt_id"]) == ["m1", "m1", "m2", "m2"]
    assert list(df["sample"]) == [0, 1, 0, 1]
    assert list(df["reward"]) == [1.0, 0.0, 1.0, 0.0]
    assert list(df["prompt"]) == ["What is 2 + 2?"] * 2 + ["Solve for x: 2x = 6"] * 2
    assert json.loads(df["reference"][2]) == {"solution": "x = 3"}
    assert json.loads(df["components"][0])["correct"] == 1.0
    assert list(df["status"]) == ["ok"] * 4
    sampling = df.attrs["sampling"]  # kept in samples.parquet: compare refuses frames sampled otherwise
    assert {k: sampling[k] for k in ("k", "max_new_tokens", "temperature", "seed", "reward", "variant")} == {
        "k": 2, "max_new_tokens": 8, "temperature": 0.7, "seed": 3, "reward": "builtin:numeric", "variant": "sagemaker"}


def test_reward_failures_are_kept_with_their_status(tmp_path):
    source = tmp_path / "flaky.py"
    source.write_text(
        "def lambda_handler(event, context):\n"
        "    out = []\n"
        "    for s in event:\n"
        "        if s['messages'][-1]['content'] == 'boom':\n"
        "            raise RuntimeError('cannot parse boom')\n"
        "        out.append({'id': s['id'], 'aggregate_reward_score': 1.0})\n"
        "    return out\n"
    )
    gen = Scripted({"What is 2 + 2?": ["4", "boom"], "Solve for x: 2x = 6": ["x = 3", "x = 1"]})
    df = sample_and_score(gen, str(source), RECORDS, k=2, max_new_tokens=8, temperature=1.0, seed=0)
    assert len(df) == 4
    failed = df[df["status"] != "ok"]
    assert list(failed["response"]) == ["boom"] and failed["status"].iloc[0] == "exception"
    assert math.isnan(failed["reward"].iloc[0]) and "cannot parse boom" in failed["error"].iloc[0]
    assert df.loc[df["status"] == "ok", "reward"].tolist() == [1.0, 1.0, 1.0]


def test_sample_and_score_rejects_bad_records():
    gen = Scripted({})
    with pytest.raises(UserError, match="no records"):
        sample_and_score(gen, "builtin:numeric", [], k=1)
    with pytest.raises(UserError, match="record 0 .* has no 'messages'"):
        sample_and_score(gen, "builtin:numeric", [{"id": "x"}], k=1)
    with pytest.raises(UserError, match="repeat"):
        sample_and_score(gen, "builtin:numeric", [RECORDS[0], RECORDS[0]], k=1)


# ------------------------------------------------------------------------------------------ the stage


def write_eval(run, records):
    data = run / "data"
    data.mkdir(parents=True)
    (data / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_the_baseline_stage_writes_what_notebook_06_reads(runs_root, tmp_path):
    from nbkit import params
    from nbkit.evaluate import baseline, tuned

    run = runs_root / "r1"
    write_eval(run, RECORDS)
    replay = tmp_path / "outputs.jsonl"
    replay.write_text("".join(json.dumps({"messages": r["messages"][:2], "response": a}) + "\n"
                              for r in RECORDS for a in ("4", "x = 3")))
    P = params.validate("03", {"run_dir": str(run), "model": f"replay:{replay}", "k": 2, "max_new_tokens": 8,
                               "n_boot": 100, "seed": 5})
    result = baseline.run(P)
    samples, summary = result.samples, result.summary
    assert (run / "baseline" / "samples.parquet").exists()
    on_disk = json.loads((run / "baseline" / "summary.json").read_text())
    assert on_disk["reward"]["mean"] == pytest.approx(0.5)  # each prompt: one right answer out of two
    assert on_disk["recommendation"]["verdict"] == "rft"
    settings = tuned.baseline_settings(run)
    assert (settings.k, settings.max_new_tokens, settings.temperature, settings.seed, settings.reward) == (
        2, 8, 1.0, 5, "builtin:numeric")
    assert pd.read_parquet(run / "baseline" / "samples.parquet")["response"].tolist() == ["4", "x = 3"] * 2
    assert pd.read_parquet(run / "baseline" / "samples.parquet").attrs["sampling"]["seed"] == 5
    prov = on_disk["settings"]["provenance"]  # how the figures were produced
    assert prov["seed"] == 5 and prov["versions"]["torch"] and prov["math"]["MKL_CBWR"]
    eval_file = run / "data" / "eval.jsonl"
    assert prov["data"]["eval"]["sha256"] == hashlib.sha256(eval_file.read_bytes()).hexdigest()
    assert "RFT fits: mean reward 0.500" in baseline.describe(summary)
    assert "RFT fits" in baseline.report_html(summary)
    table = baseline.summary_table(summary)
    assert table.set_index("quantity").loc["mean reward", "value"] == "0.500"
    assert len(baseline.examples(samples, per_outcome=1)) == 2


@pytest.mark.slow
def test_the_baseline_stage_with_the_tiny_model_copies_it_into_the_run(runs_root, tmp_path, monkeypatch):
    from nbkit import params
    from nbkit.data.samples import make_task
    from nbkit.evaluate import baseline

    monkeypatch.setenv("NBKIT_CACHE", str(tmp_path / "cache"))
    train, eval_ = make_task("math", n_train=80, n_eval=6, seed=0)
    run = runs_root / "r2"
    write_eval(run, eval_)
    (run / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    from nbkit.policy import tiny

    monkeypatch.setitem(tiny.RECIPES, "quick", tiny.resolve_recipe({"base": "smoke", "target_accuracy": 0.0,
                                                                     "eval_every": 5, "max_steps": 5}))
    P = params.validate("03", {"run_dir": str(run), "tiny_recipe": "quick", "k": 2, "n_boot": 50, "threads": 1})
    result = baseline.run(P)
    samples, summary = result.samples, result.summary
    assert (run / "model" / "config.json").exists() and (run / "model" / "nbkit_build.json").exists()
    assert summary["settings"]["model_path"] == str(run / "model")
    from nbkit.provenance import folder_sha256

    assert summary["settings"]["provenance"]["models"]["base"]["sha256"] == folder_sha256(run / "model")
    assert summary["settings"]["tiny_build"]["warm_start_steps"] == 5
    assert len(samples) == 12 and set(samples["status"]) == {"ok"}
    assert summary["n_prompts"] == 6
