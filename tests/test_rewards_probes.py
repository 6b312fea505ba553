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


# --- probes that know the task's answer format -------------------------------------------------------------------

def gsm8k_records(n: int = 6, stated: bool = False) -> list[dict]:
    """GSM8K-style records: an object reference with final_answer; the prompt states the format when asked."""
    ask = " Output the final answer after ####." if stated else ""
    return [{"id": f"g{i}", "messages": [{"role": "user", "content": f"Tom has {i + 10} apples and buys "
                                                                      f"{i + 20} more. How many now?{ask}"}],
             "reference_answer": {"final_answer": str(2 * i + 30)}} for i in range(n)]


STRICT = str(FIXTURES / "strict_hash.py")


def test_good_template_credits_every_good_probe_of_a_strict_hash_reward():
    records = gsm8k_records()
    default = run_probes(STRICT, records, good_template="none")
    # the report: every default good format is one the task forbids
    assert set(default.rejects_good) == {"reference", "pretty_json", "fenced", "sentence", "special_tokens"}
    assert default.discrimination["auc"] == 0.5 and default.template is None

    report = run_probes(STRICT, records, good_template="#### {final_answer}")
    assert report.rejects_good == [] and report.gameable == []
    rows = {r["probe"]: r for r in report.probe_rows()}
    for name in ("template", "template_worked", "template_spaced"):
        assert rows[name]["expect"] == "high" and rows[name]["share_high"] == 1.0, name
    assert rows["sentence"]["expect"] == "info"  # a format the task does not ask for
    assert report.discrimination["auc"] == 1.0
    assert "good answers written as '#### {final_answer}' (given" in report.verdict()
    assert report.to_dict()["template"] == {"template": "#### {final_answer}", "origin": "given"}
    template_case = next(c for c in report.cases if c.probe == "template" and c.record_id == "g0")
    assert template_case.response == "#### 30"


def test_the_template_is_inferred_from_prompts_that_state_it_and_reported():
    report = run_probes(STRICT, gsm8k_records(stated=True))
    assert report.template is not None and report.template.text == "#### {final_answer}"
    assert report.template.origin.startswith("inferred from the prompts (") and "6 of 6 records" in report.template.origin
    assert report.rejects_good == [] and "inferred from the prompts" in report.verdict()
    # prompts that state nothing leave the default formats
    assert run_probes(STRICT, gsm8k_records()).template is None


def test_adversarial_probes_in_the_format_are_sharper():
    import re

    def first_mark(event, context):  # lenient: the first `####` line wins, wherever it is
        out = []
        for sample in event:
            found = re.search(r"####\s*(\S+)", sample["messages"][-1].get("content") or "")
            want = sample["reference_answer"]["final_answer"]
            out.append({"id": sample["id"], "aggregate_reward_score": float(bool(found) and found[1] == want)})
        return out

    records = gsm8k_records()
    assert "buried_answer" not in run_probes(first_mark, records, good_template="none").gameable
    sharp = run_probes(first_mark, records, good_template="#### {final_answer}")
    assert {"buried_answer", "hedged", "reasoning_only"} <= set(sharp.gameable)
    buried = next(c for c in sharp.cases if c.probe == "buried_answer")
    assert "\n#### 30\n" in buried.response and buried.response.endswith("#### 31")


def test_bad_templates_get_clear_errors():
    from nbkit.rewards.templates import AnswerTemplate

    with pytest.raises(UserError, match=r"names \{answer\}.*has the keys 'final_answer'"):
        run_probes(STRICT, gsm8k_records(1), good_template="ANSWER: {answer}")
    with pytest.raises(UserError, match="no placeholder"):
        AnswerTemplate("#### answer")
    with pytest.raises(UserError, match="not valid format text"):
        AnswerTemplate("\\boxed{answer")
    assert AnswerTemplate("\\boxed{{{solution}}}").render({"solution": "x = 3"}) == "\\boxed{x = 3}"
    assert AnswerTemplate("ANSWER: {answer}").render("Paris", "Lyon") == "ANSWER: Lyon"


# --- verdicts lead with the cause ---------------------------------------------------------------------------------

def _line_of(path: Path, marker: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if marker in line)


def test_a_reward_failing_on_every_call_gets_a_verdict_that_starts_with_the_exception_and_where():
    source = FIXTURES / "object_reference.py"
    records = [{**r, "reference_answer": r["reference_answer"]["final_answer"]} for r in gsm8k_records(3)]
    report = run_probes(str(source), records)
    n = len(report.cases)
    line = _line_of(source, "the line the verdict must name")
    verdict = report.verdict()
    assert verdict.startswith(f"{n} of {n} probe responses failed: AttributeError: 'str' object has no attribute "
                              f"'get' at object_reference.py:{line} in lambda_handler")
    assert '(`expected = reference.get("final_answer")' in verdict
    assert "likely cause: the data's reference_answer is a string in" in verdict and "as an object (.get)" in verdict
    assert verdict.index("likely cause") < verdict.index("AUC")
    assert report.to_dict()["failure"]["where"] == f"object_reference.py:{line} in lambda_handler"


def test_a_missing_key_names_the_keys_the_reference_has():
    def reads_solution(event, context):
        return [{"id": s["id"], "aggregate_reward_score": float(s["reference_answer"]["solution"] == "1")}
                for s in event]

    report = run_probes(reads_solution, gsm8k_records(2))
    assert report.verdict().startswith(f"{len(report.cases)} of {len(report.cases)} probe responses failed: "
                                       "KeyError: 'solution'")
    assert "the data's reference_answer has 'final_answer'" in report.verdict()


def test_a_few_failures_are_reported_after_the_numbers():
    def flaky(event, context):
        if any("refus" in (s["messages"][-1].get("content") or "").lower() or "sorry" in
               (s["messages"][-1].get("content") or "") for s in event):
            raise ValueError("cannot score a refusal")
        return [{"id": s["id"], "aggregate_reward_score": 0.0} for s in event]

    report = run_probes(flaky, gsm8k_records(2), batch_size=1)
    assert report.failure is not None and not report.failure.most
    assert report.verdict().startswith("AUC") and "2 of" in report.verdict()
