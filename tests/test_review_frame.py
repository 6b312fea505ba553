"""The review frame, its failure buckets, the report tables, the diff and the annotation store."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from nbkit.errors import UserError
from nbkit.review import tables
from nbkit.review.annotations import AnnotationStore, AnnotationWarning, export_flagged
from nbkit.review.diff import diff_spans, side_by_side_html, similarity
from nbkit.review.frame import failure_of, prompt_history, review_frame


def samples(rows: list[tuple]) -> pd.DataFrame:
    """(prompt_id, sample, response, reward, components, finish_reason[, status]) -> a samples frame."""
    out = []
    for r in rows:
        pid, sample, response, reward, comps, finish = r[:6]
        out.append({
            "prompt_id": pid, "sample": sample, "prompt": f"What is {pid}?", "reference": json.dumps({"answer": pid}),
            "response": response, "reward": reward, "status": r[6] if len(r) > 6 else "ok",
            "components": json.dumps(comps), "num_tokens": len(response.split()), "finish_reason": finish,
            "domain": "algebra" if pid in ("p1", "p2") else "geometry", "difficulty_level": "easy",
        })
    return pd.DataFrame(out)


OK = {"format": 1.0, "correct": 1.0}
WRONG = {"format": 1.0, "correct": 0.0}
BADFMT = {"format": 0.0, "correct": 0.0}


def sources() -> dict[str, pd.DataFrame]:
    base = samples([
        ("p1", 0, "the answer is 3", 0.0, WRONG, "stop"), ("p1", 1, "the answer is 4", 1.0, OK, "stop"),
        ("p2", 0, "answer 5", 1.0, OK, "stop"), ("p2", 1, "answer 5", 1.0, OK, "stop"),
        ("p3", 0, "no tags here", 0.0, BADFMT, "stop"), ("p3", 1, "cut off mid", 0.0, BADFMT, "length"),
    ])
    tuned = samples([
        ("p1", 0, "the answer is 4", 1.0, OK, "stop"), ("p1", 1, "the answer is 4", 1.0, OK, "stop"),
        ("p2", 0, "answer 6", 0.0, WRONG, "stop"), ("p2", 1, "answer 5", 1.0, OK, "stop"),
        ("p3", 0, "<a>7</a>", 0.5, {"format": 1.0, "correct": 0.5}, "stop"),
        ("p3", 1, "boom", float("nan"), {}, "stop", "exception"),
    ])
    training = pd.DataFrame({
        "step": [10, 10, 20, 20], "prompt_id": ["t1", "t1", "t1", "t1"], "prompt": ["2+2?"] * 4,
        "completion": ["5", "3", "4", "4"], "reward": [0.0, 0.0, 1.0, 1.0], "status": ["ok"] * 4,
        "components": [json.dumps(WRONG)] * 2 + [json.dumps(OK)] * 2,
    })
    return {"baseline": base, "tuned": tuned, "training": training}


@pytest.fixture
def frame() -> pd.DataFrame:
    return review_frame(sources())


def test_review_frame_keys_buckets_and_partners(frame):
    assert len(frame) == 16 and frame["key"].is_unique
    row = frame.set_index("key")
    assert {"baseline/p1/0", "tuned/p3/1", "training/step10/t1/0", "training/step20/t1/1"} <= set(row.index)
    assert row.loc["tuned/p1/0", "bucket"] == "high" and row.loc["tuned/p3/0", "bucket"] == "medium"
    assert row.loc["baseline/p1/0", "bucket"] == "low" and row.loc["tuned/p3/1", "bucket"] == "error"
    assert row.loc["tuned/p1/0", "partner_reward"] == 0.0
    assert row.loc["tuned/p1/0", "partner_response"] == "the answer is 3"
    assert row.loc["baseline/p1/0", "change"] == "improved" and row.loc["tuned/p1/0", "change"] == "improved"
    assert row.loc["tuned/p2/0", "change"] == "regressed"
    assert row.loc["tuned/p2/1", "change"] == "same"
    assert row.loc["tuned/p1/1", "change"] == "same"
    assert pd.isna(row.loc["training/step10/t1/0", "change"])
    assert row.loc["training/step20/t1/1", "response"] == "4"


def test_failure_kinds_separate_format_logic_truncation_and_errors(frame):
    row = frame.set_index("key")
    assert row.loc["baseline/p1/0", "failure"] == "logic"
    assert row.loc["baseline/p1/0", "failed_components"] == "correct"
    assert row.loc["baseline/p3/0", "failure"] == "format"
    assert row.loc["baseline/p3/0", "failed_components"] == "format, correct"
    assert row.loc["baseline/p3/1", "failure"] == "truncated"
    assert row.loc["tuned/p3/1", "failure"] == "reward error"
    assert row.loc["tuned/p3/0", "failure"] == "unexplained"  # 0.5 < pass, but no component below 0.2
    assert pd.isna(row.loc["tuned/p1/0", "failure"])


def test_failure_of_respects_the_pass_threshold():
    r = pd.DataFrame([{"key": "k", "status": "ok", "reward": 0.6, "components": "{}", "finish_reason": "stop"}])
    row = next(r.itertuples(index=False))
    assert failure_of(row, pass_threshold=0.5, low=0.2) == (None, "")
    assert failure_of(row, pass_threshold=0.8, low=0.2) == ("unexplained", "")


def test_review_frame_errors_are_clear():
    with pytest.raises(UserError, match="no samples to review"):
        review_frame({})
    with pytest.raises(UserError, match="training samples lack column.*completion"):
        review_frame({"training": pd.DataFrame({"step": [1], "prompt_id": ["a"], "reward": [1.0]})})
    bad = sources()["baseline"]
    bad.loc[0, "components"] = "{not json"
    with pytest.raises(UserError, match="components of baseline/p1/0 are not JSON"):
        review_frame({"baseline": bad})
    doubled = pd.concat([sources()["baseline"]] * 2)
    with pytest.raises(UserError, match="repeat the sample 'baseline/p1/0'"):
        review_frame({"baseline": doubled})


def test_prompt_history_follows_one_prompt_across_steps(frame):
    hist = prompt_history(frame, "t1")
    assert hist["key"].tolist() == ["training/step10/t1/0", "training/step10/t1/1",
                                    "training/step20/t1/0", "training/step20/t1/1"]
    assert prompt_history(frame, "p1")["source"].tolist() == ["baseline", "baseline", "tuned", "tuned"]


def test_most_improved_and_regressed_tables(frame):
    improved = tables.most_improved(frame)
    assert improved["prompt_id"].tolist() == ["p1", "p3"]
    assert improved.loc[0, "diff"] == pytest.approx(0.5)
    assert improved.loc[0, "base_response"] == "the answer is 3"  # base's worst vs tuned's best
    assert improved.loc[0, "tuned_response"] == "the answer is 4"
    regressed = tables.most_regressed(frame)
    assert regressed["prompt_id"].tolist() == ["p2"]
    assert regressed.loc[0, "diff"] == pytest.approx(-0.5)
    assert regressed.loc[0, "base_response"] == "answer 5" and regressed.loc[0, "tuned_response"] == "answer 6"


def test_lowest_scoring_and_failure_tables(frame):
    low = tables.lowest_scoring(frame, "tuned", n=2)
    assert low["key"].tolist() == ["tuned/p3/1", "tuned/p2/0"]  # failed scoring (NaN) first
    buckets = tables.failure_buckets(frame).set_index("failure")
    assert buckets.loc["pass", "baseline"] == "3 (50.0%)"
    assert buckets.loc["format", "baseline"] == "1 (16.7%)" and buckets.loc["truncated", "baseline"] == "1 (16.7%)"
    assert buckets.loc["reward error", "tuned"] == "1 (16.7%)"
    assert buckets.loc["logic", "training"] == "2 (50.0%)"
    comps = tables.component_failures(frame).set_index("component")
    assert comps.loc["correct", "total"] == 6 and comps.loc["format", "total"] == 2
    html = tables.report_html(frame)
    for title in ("Most improved", "Most regressed", "Lowest-scoring tuned", "Failure buckets"):
        assert title in html


def test_diff_marks_changed_words_and_escapes_html():
    left, right = diff_spans("x = <b>3</b> done", "x = <b>4</b> done")
    assert "<del" in left and ">3</del>" in left and "<ins" in right and ">4</ins>" in right
    assert "&lt;b&gt;" in left and "<b>" not in left.replace('<del style="', "")
    assert similarity("a b c", "a b c") == 1.0 and similarity("a b c", "x y z") < 0.5
    table = side_by_side_html("same", "same")
    assert "<del" not in table and "<ins" not in table and "same" in table


def test_annotation_store_latest_wins_and_nothing_is_lost(tmp_path):
    store = AnnotationStore(tmp_path / "review" / "annotations.jsonl")
    store.add("tuned/p1/0", "correct", "fine", source="tuned", reward=1.0)
    store.add("tuned/p2/0", "wrong answer", "6 not 5", flagged=True, reward=float("nan"))
    store.add("tuned/p1/0", "reward too high", "looked again")
    lines = store.path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["label"] == "correct"
    latest = AnnotationStore(store.path).latest()
    assert latest["tuned/p1/0"]["label"] == "reward too high" and latest["tuned/p2/0"]["flagged"] is True
    assert latest["tuned/p2/0"]["reward"] is None  # NaN stored as null, the line stays valid JSON
    assert AnnotationStore(store.path).frame()["key"].tolist() == ["tuned/p1/0", "tuned/p2/0"]
    with store.path.open("a") as fh:
        fh.write('{"key": "x", "label": \n')
    with pytest.warns(AnnotationWarning, match=r"annotations.jsonl:4 skipped: it is incomplete"):
        assert set(store.latest()) == {"tuned/p1/0", "tuned/p2/0"}  # a damaged line hides nothing else
    with pytest.raises(UserError, match="needs the sample's key"):
        store.add("", "correct")


def test_export_flagged_writes_nova_records(tmp_path, frame):
    store = AnnotationStore(tmp_path / "annotations.jsonl")
    store.add("tuned/p2/0", "wrong answer", "6 is wrong", flagged=True, prompt_id="p2")
    store.add("tuned/p3/0", "reward too low", "partial credit?", flagged=True, prompt_id="p3")
    store.add("tuned/p1/0", "correct", flagged=True, prompt_id="p1")
    store.add("tuned/p1/0", "correct", flagged=False, prompt_id="p1")  # unflagged later: not exported
    original = {"id": "p2", "messages": [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": "What is p2?"}],
                "reference_answer": {"answer": 5}, "domain": "algebra"}
    out = tmp_path / "flagged.jsonl"
    assert export_flagged(store, frame, out, records=[original]) == 2
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_id = {r["id"]: r for r in rows}
    assert by_id["p2"]["messages"] == original["messages"] and by_id["p2"]["reference_answer"] == {"answer": 5}
    assert by_id["p2"]["review"]["response"] == "answer 6" and by_id["p2"]["review"]["note"] == "6 is wrong"
    assert by_id["p2"]["review"]["found_original_record"] is True
    rebuilt = by_id["p3"]
    assert rebuilt["messages"] == [{"role": "user", "content": "What is p3?"}]
    assert rebuilt["reference_answer"] == {"answer": "p3"} and rebuilt["review"]["found_original_record"] is False
    assert rebuilt["review"]["label"] == "reward too low" and rebuilt["review"]["reward"] == 0.5
    assert rebuilt["review"]["components"] == {"format": 1.0, "correct": 0.5}


def test_headline_text_summarizes_the_review(frame):
    notes = pd.DataFrame([{"key": "tuned/p2/0", "flagged": True}, {"key": "tuned/p1/0", "flagged": False}])
    text = tables.headline_text(frame, notes)
    assert text == ("Reviewed 16 samples (6 baseline, 6 tuned, 4 training); of 3 eval prompts 2 improved and 1 regressed; "
                    "most common tuned failure: logic (17% of its samples); 2 annotated, 1 flagged.")


def test_run_pass_threshold_prefers_override_then_comparison_then_summary(runs_root):
    from nbkit.review.frame import run_pass_threshold

    run = runs_root / "r"
    assert run_pass_threshold(run) == 0.8
    (run / "baseline").mkdir(parents=True)
    (run / "baseline" / "summary.json").write_text(json.dumps({"settings": {"pass_threshold": 0.6}}))
    assert run_pass_threshold(run) == 0.6
    (run / "tuned").mkdir()
    (run / "tuned" / "comparison.json").write_text(json.dumps({"pass_threshold": 0.7}))
    assert run_pass_threshold(run) == 0.7
    assert run_pass_threshold(run, 0.9) == 0.9 and run_pass_threshold(run, 0.0) == 0.7


def test_parse_components_accepts_json_dicts_and_map_pairs():
    from nbkit.review.frame import parse_components

    assert parse_components('{"format": 1, "correct": 0}') == {"format": 1.0, "correct": 0.0}
    assert parse_components({"a": 0.5}) == {"a": 0.5}
    assert parse_components([("a", 1), ("b", 0)]) == {"a": 1.0, "b": 0.0}  # parquet map column
    assert parse_components(None) == {} and parse_components("") == {}
    with pytest.raises(UserError, match="must be a JSON object"):
        parse_components("[1, 2]", "tuned/p1/0")


def test_component_roles_ignore_measurements_and_read_error_flags():
    from nbkit.review.frame import component_role, failed_components

    assert component_role("response_chars", 0.0) == "measure" and component_role("candidates", 0.0) == "measure"
    assert component_role("anything", 3.0) == "measure"  # not a score in [0, 1]
    assert component_role("answer_found", 0.0) == "format" and component_role("format_ok", 1.0) == "format"
    assert component_role("grader_error", 1.0) == "error" and component_role("correct", 0.0) == "content"
    comps = {"correct": 0.0, "answer_found": 0.0, "candidates": 0.0, "response_chars": 0.0, "grader_error": 0.0}
    assert failed_components(comps, low=0.2) == [("correct", "content"), ("answer_found", "format")]
    row = pd.DataFrame([{"key": "k", "status": "ok", "reward": 0.0, "finish_reason": "stop",
                         "components": json.dumps({"grader_error": 1.0})}])
    assert failure_of(next(row.itertuples(index=False)), 0.8, 0.2) == ("reward error", "grader_error")
