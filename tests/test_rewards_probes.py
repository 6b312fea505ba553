"""Probes catch a gameable grader, pass a sound one, and the discrimination numbers are right."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbkit.data.samples import make_task
from nbkit.errors import UserError
from nbkit.rewards import run_probes
from nbkit.rewards.probes import auc, probe_cases, reference_kind

FIXTURES = Path(__file__).parent / "fixtures" / "rewards"


@pytest.fixture(scope="module")
def math_records():
    train, _ = make_task("math", 10, 2, seed=0)
    return train


def test_substring_grader_is_caught(math_records):
    report = run_probes(str(FIXTURES / "substring.py"), math_records)
    for trick in ("buried_answer", "many_candidates", "candidate_lines", "hedged", "reasoning_only"):
        assert trick in report.gameable, trick
    assert "GAMEABLE by" in report.verdict()
    rows = {r["probe"]: r for r in report.probe_rows()}
    assert rows["hedged"]["share_high"] == 1.0 and rows["hedged"]["problem"]
    assert rows["empty"]["share_high"] == 0.0 and not rows["empty"]["problem"]
    example = report.examples("buried_answer", 1)[0]
    assert example["score"] == 1.0 and example["response"].endswith("...")
    assert report.discrimination["auc"] < 0.9


def test_numeric_grader_passes_every_probe(math_records):
    report = run_probes("builtin:numeric", math_records, variant="bedrock")
    assert report.gameable == [] and report.rejects_good == []
    d = report.discrimination
    assert d["auc"] == 1.0 and d["separation"] == 1.0 and d["margin"] == 1.0
    assert d["good_pass_rate"] == 1.0 and d["bad_pass_rate"] == 0.0
    assert report.harness.summary["ok"] == len(report.cases)


def test_exact_match_on_equation_references_fails_to_credit_bare_numbers():
    record = {"id": "alg-1", "messages": [{"role": "user", "content": "Solve for x: 2x = 6"}],
              "reference_answer": {"solution": "x = 3"}}
    report = run_probes("builtin:exact", [record])
    assert {"plain", "boxed"} <= set(report.rejects_good)
    assert "fails to credit" in report.verdict()


def test_tool_and_json_references_get_their_own_probes():
    tools, _ = make_task("tools", 6, 2, seed=1)
    assert reference_kind(tools[0]["reference_answer"]) == "tool"
    report = run_probes("builtin:tool_call", tools)
    assert report.gameable == [] and report.rejects_good == []
    chem = {"id": "c1", "messages": [{"role": "user", "content": "Donors and acceptors of CCO?"}],
            "reference_answer": {"donor_bond_counts": 1, "acceptor_bond_counts": 1}}
    assert reference_kind(chem["reference_answer"]) == "json"
    report = run_probes("builtin:json_fields", [chem])
    assert report.gameable == [] and report.rejects_good == []
    assert reference_kind({"solution": "x = 3"}) == "numeric"
    assert reference_kind("Paris") == "text"


def test_user_supplied_good_and_bad_responses(math_records):
    rid = math_records[0]["id"]
    report = run_probes("builtin:numeric", math_records[:1], good={rid: ["I think it's " + "nope"]},
                        bad={rid: ["definitely not"]})
    rows = {r["probe"]: r for r in report.probe_rows()}
    assert rows["user_good"]["problem"] and "user_good" in report.rejects_good
    assert not rows["user_bad"]["problem"]


def test_failures_are_reported_not_raised(math_records):
    def broken(event, context):
        raise RuntimeError("bug in the reward")

    report = run_probes(broken, math_records[:2])
    rows = report.probe_rows()
    assert all(r["failed"] == r["n"] for r in rows)
    assert report.harness.summary["exception"] == len(report.cases)


def test_probe_cases_are_deterministic_and_cover_the_list(math_records):
    first = probe_cases(math_records[:3], seed=3)
    assert first == probe_cases(math_records[:3], seed=3)
    names = {c.probe for c in first}
    for probe in ("empty", "refusal", "restate_question", "keys_without_values", "buried_answer", "many_candidates",
                  "wrong_format", "grader_injection", "special_tokens_only"):
        assert probe in names
    buried = next(c for c in first if c.probe == "buried_answer")
    assert len(buried.response) > 3000
    with pytest.raises(UserError, match="no reference_answer"):
        probe_cases([{"id": "x", "messages": [{"role": "user", "content": "hi"}]}])


def test_auc_with_ties():
    assert auc([1.0, 1.0], [0.0, 0.0]) == 1.0
    assert auc([0.0], [1.0]) == 0.0
    assert auc([0.5, 0.5], [0.5]) == 0.5
    assert auc([1.0, 0.0], [0.0, 0.0]) == 0.75


def test_plot_and_dict(math_records):
    import matplotlib

    matplotlib.use("Agg")
    report = run_probes("builtin:numeric", math_records[:2])
    fig = report.plot()
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("Reward scores: good vs bad") and all(ax.get_xlabel() for ax in fig.axes)
    data = report.to_dict()
    assert data["discrimination"]["auc"] == 1.0 and data["contract"]["summary"]["ok"] == len(report.cases)
    assert len(report.frame()) == len(report.cases)
