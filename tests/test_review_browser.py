"""The review browser driven like a user: widget `.value`s and `.click()`s, then the files on disk."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from test_review_frame import sources  # tests/ is on sys.path (pytest rootdir import mode)

from nbkit.review.annotations import AnnotationStore
from nbkit.review.browser import ReviewBrowser, apply_filters, open_browser
from nbkit.review.frame import review_frame


@pytest.fixture
def frame() -> pd.DataFrame:
    return review_frame(sources())


def browser(frame, folder) -> ReviewBrowser:
    return ReviewBrowser(frame, AnnotationStore(folder / "annotations.jsonl"))


def test_filters_by_source_bucket_domain_step_change_failure_and_text(frame, tmp_path):
    b = browser(frame, tmp_path)
    assert len(b.filtered) == 16 and b.count.value == "1 of 16 matching (16 samples)"
    b.source.value = "tuned"
    assert len(b.filtered) == 6 and set(b.filtered["source"]) == {"tuned"}
    b.bucket.value = "high"
    assert b.filtered["key"].tolist() == ["tuned/p1/0", "tuned/p1/1", "tuned/p2/1"]
    b.domain.value = "algebra"
    assert len(b.filtered) == 3
    b.change.value = "improved"
    assert b.filtered["key"].tolist() == ["tuned/p1/0"] and b.current["key"] == "tuned/p1/0"
    b.change.value = "changed"
    assert b.filtered["key"].tolist() == ["tuned/p1/0"]
    b.bucket.value = "all"
    b.change.value = "regressed"
    assert b.filtered["key"].tolist() == ["tuned/p2/0"]
    for control, value in ((b.source, "all"), (b.domain, "all"), (b.change, "all")):
        control.value = value
    b.step.value = 20
    assert b.filtered["key"].tolist() == ["training/step20/t1/0", "training/step20/t1/1"]
    b.step.value = -1
    b.failure.value = "format"
    assert b.filtered["key"].tolist() == ["baseline/p3/0"]
    b.failure.value = "all"
    b.text.value = "ANSWER IS 3"
    assert b.filtered["key"].tolist() == ["baseline/p1/0"]
    b.text.value = "nothing like this"
    assert b.current is None and "no sample matches" in b.view.value and b.count.value.startswith("0 of 0")


def test_navigation_and_what_is_shown(frame, tmp_path):
    b = browser(frame, tmp_path)
    b.source.value = "baseline"
    assert b.current["key"] == "baseline/p1/0"
    b.next.click()
    assert b.current["key"] == "baseline/p1/1" and b.index.value == 1
    b.prev.click()
    b.prev.click()  # clamped at the first sample
    assert b.current["key"] == "baseline/p1/0"
    b.index.value = 4
    assert b.current["key"] == "baseline/p3/0"
    assert "What is p3?" in b.view.value and "format" in b.view.value and "components" in b.view.value
    # base vs tuned side by side, the changed words highlighted
    b.index.value = 0
    assert "<del" in b.pair.value and ">3</del>" in b.pair.value and ">4</ins>" in b.pair.value
    assert "base · reward 0" in b.pair.value and "tuned · reward 1" in b.pair.value
    # following a training prompt across steps
    b.source.value = "training"
    assert "across models and steps" in b.history.value
    assert "training" in b.history.value and ">20<" in b.history.value


def test_annotations_are_saved_appended_and_seen_by_a_second_browser(frame, tmp_path):
    b = browser(frame, tmp_path)
    b.source.value = "tuned"
    b.change.value = "regressed"
    b.label.value = "wrong answer"
    b.note.value = "6 is not 5"
    b.flag.value = True
    b.save.click()
    path = tmp_path / "annotations.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 1
    assert {k: lines[0][k] for k in ("key", "label", "note", "flagged", "source", "prompt_id", "sample", "reward")} == {
        "key": "tuned/p2/0", "label": "wrong answer", "note": "6 is not 5", "flagged": True,
        "source": "tuned", "prompt_id": "p2", "sample": 0, "reward": 0.0}
    assert "saved tuned/p2/0" in b.status.value and "annotated <b>wrong answer" in b.view.value

    # a second browser on the same folder (a re-run of the notebook) sees the annotation and keeps the file
    b2 = browser(frame, tmp_path)
    assert path.read_text().count("\n") == 1
    b2.annotation.value = "annotated"
    assert b2.filtered["key"].tolist() == ["tuned/p2/0"]
    assert (b2.label.value, b2.note.value, b2.flag.value) == ("wrong answer", "6 is not 5", True)
    b2.label.value = "bad reference"
    b2.flag.value = False
    b2.save.click()
    assert path.read_text().count("\n") == 2  # appended, never rewritten
    assert AnnotationStore(path).latest()["tuned/p2/0"]["label"] == "bad reference"
    b2.annotation.value = "flagged"
    assert b2.current is None
    # moving to an unannotated sample clears the form
    b2.annotation.value = "not annotated"
    assert b2.current["key"] != "tuned/p2/0" and (b2.label.value, b2.note.value, b2.flag.value) == ("", "", False)


def test_export_button_writes_flagged_jsonl(frame, tmp_path):
    b = browser(frame, tmp_path)
    b.source.value = "baseline"
    b.failure.value = "truncated"
    b.label.value = "format error"
    b.flag.value = True
    b.save.click()
    b.export.click()
    rows = [json.loads(line) for line in (tmp_path / "flagged.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["id"] == "p3"
    assert rows[0]["messages"][-1] == {"role": "user", "content": "What is p3?"}
    assert rows[0]["review"]["failure"] == "truncated" and rows[0]["review"]["response"] == "cut off mid"
    assert "exported 1 flagged" in b.status.value


def test_apply_filters_annotation_states(frame):
    notes = {"tuned/p1/0": {"key": "tuned/p1/0", "flagged": True}, "tuned/p1/1": {"key": "tuned/p1/1"}}
    assert apply_filters(frame, annotation="flagged", annotations=notes)["key"].tolist() == ["tuned/p1/0"]
    assert len(apply_filters(frame, annotation="annotated", annotations=notes)) == 2
    assert len(apply_filters(frame, annotation="not annotated", annotations=notes)) == 14


def test_open_browser_reads_a_run_folder(runs_root, tmp_path):
    run = runs_root / "r1"
    src = sources()
    for name, rel in (("baseline", "baseline/samples.parquet"), ("tuned", "tuned/samples.parquet"),
                      ("training", "training/completions.parquet")):
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        src[name].to_parquet(run / rel)
    (run / "data").mkdir()
    (run / "data" / "eval.jsonl").write_text(json.dumps(
        {"id": "p1", "messages": [{"role": "user", "content": "What is p1?"}], "reference_answer": {"answer": 4}}) + "\n")
    (run / "data" / "train.jsonl").write_text(json.dumps(
        {"id": "t1", "messages": [{"role": "user", "content": "2+2?"}], "reference_answer": {"answer": "4"}}) + "\n")
    b = open_browser(run)
    assert len(b.frame) == 16 and b.store.path == run / "review" / "annotations.jsonl"
    b.source.value = "training"  # training completions carry no reference: the run's data supplies it
    assert json.loads(b.current["reference"]) == {"answer": "4"} and "answer" in b.view.value
    b.source.value = "all"
    b.label.value = "correct"
    b.flag.value = True
    b.save.click()
    assert b.export_flagged() == 1
    row = json.loads((run / "review" / "flagged.jsonl").read_text())
    assert row["reference_answer"] == {"answer": 4} and row["review"]["found_original_record"] is True


def test_export_run_flagged_rewrites_from_annotations(runs_root):
    from nbkit.review import AnnotationStore, export_run_flagged

    run = runs_root / "r2"
    store = AnnotationStore.for_run(run)
    store.add("tuned/p1/0", "bad reference", flagged=True, prompt_id="p1")
    count, path = export_run_flagged(run, review_frame(sources()))
    assert count == 1 and path == run / "review" / "flagged.jsonl"
    assert json.loads(path.read_text())["review"]["label"] == "bad reference"
    store.add("tuned/p1/0", "bad reference", flagged=False, prompt_id="p1")
    assert export_run_flagged(run)[0] == 0 and not path.exists()  # no stale export, and never an empty file


def test_nothing_flagged_writes_no_flagged_file(runs_root):
    """Running notebook 07 used to leave an empty review/flagged.jsonl behind."""
    from nbkit.review import export_run_flagged

    run = runs_root / "r3"
    count, path = export_run_flagged(run, review_frame(sources()))
    assert count == 0 and not path.exists()


def test_verdict_says_why_a_sample_fails_in_words(frame, tmp_path):
    """A failing sample used to read "logic (correct)", which reads like a pass."""
    b = browser(frame, tmp_path)
    b.source.value = "tuned"
    b.change.value = "regressed"
    assert "fails: wrong answer (failed check: correct)" in b.view.value
    b.source.value, b.change.value, b.failure.value = "baseline", "all", "format"
    assert "fails: wrong format (failed check: format, correct)" in b.view.value
    b.failure.value, b.bucket.value = "all", "high"
    assert "<b>passes</b>" in b.view.value


def test_a_regression_colours_the_tuned_answer_red_and_an_improvement_green(frame, tmp_path):
    from nbkit.review.diff import BETTER_STYLE, WORSE_STYLE

    b = browser(frame, tmp_path)
    b.source.value, b.change.value = "tuned", "regressed"  # tuned "answer 6" against base "answer 5"
    assert f'<ins style="{WORSE_STYLE}">6</ins>' in b.pair.value and f'<del style="{BETTER_STYLE}">5</del>' in b.pair.value
    b.change.value = "improved"
    assert f'<ins style="{BETTER_STYLE}">4</ins>' in b.pair.value


def test_steps_are_a_slider_and_history_shows_blanks_not_nan(frame, tmp_path):
    b = browser(frame, tmp_path)
    assert type(b.step).__name__ == "SelectionSlider" and [v for _, v in b.step.options] == [-1, 10, 20]
    b.source.value = "baseline"  # p1 across base and tuned: no step, and passing samples have no failure
    assert "across models and steps" in b.history.value
    for blank in ("NaN", "nan", "None", "&lt;NA&gt;"):
        assert blank not in b.history.value
