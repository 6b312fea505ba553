"""nbkit.report: the one formatting layer of every notebook's report (numbers, tables, no raw Python)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nbkit import params, report


@pytest.mark.parametrize(("value", "shown"), [
    (1600.0, "1,600"),  # a count stored as a float reads as a count
    (np.int64(12), "12"), (0.046875, "0.0469"), (0.0, "0"), (1.0, "1"), (12.345, "12.3"), (1234.5, "1,234"),
    (-0.015625, "-0.0156"), (0.000123, "1.23e-04"), (float("nan"), ""), (None, ""), (pd.NA, ""),
    (True, "yes"), (np.float64(0.5), "0.5"), (math.inf, "∞"),
])
def test_numbers_read_as_a_person_writes_them(value, shown):
    assert report.number(value) == shown


def test_text_never_shows_python_reprs():
    assert report.text({"system>user": 100}) == "system>user: 100"
    assert report.text({"kinds": {"object": 100}}) == "kinds: (object: 100)"
    assert report.text([1, 2.5]) == "1, 2.5" and report.text({}) == "none" and report.text(np.array([3, 4])) == "3, 4"
    assert "{" not in report.text({"a": {"b": 1}}) and "'" not in report.text({"a": "b"})


def test_tables_drop_row_numbers_and_keep_named_indexes():
    by_domain = pd.DataFrame({"mean_reward": [0.125, 0.0], "prompts": [6.0, 10.0]},
                             index=pd.Index(["algebra", "arithmetic"], name="domain"))
    t = report.table(by_domain)
    assert t.columns == ["domain", "mean_reward", "prompts"] and t.rows[0] == ["algebra", "0.125", "6"]
    assert t.numeric == [False, True, True]
    filtered = pd.DataFrame({"a": [1, 2, 3]}, index=[45, 36, 5])  # a sample's leftover row numbers
    assert report.table(filtered).columns == ["a"]
    html = report.table(by_domain).to_html()
    assert "<th class=''>domain</th>" in html and "<td class='num'>6</td>" in html and "dataframe" not in html


def test_an_empty_table_says_none_with_its_title():
    t = report.table(pd.DataFrame(columns=["source", "line"]), title="First rejected lines", empty="none: no line was rejected")
    assert len(t) == 0 and "<table" not in t.to_html()
    assert "<b>First rejected lines</b>: none: no line was rejected" in t.to_html()


def test_mappings_lists_and_row_limits():
    facts = report.table({"wins": 0, "ties": 15, "p_value": float("nan")})
    assert facts.rows == [["wins", "0"], ["ties", "15"], ["p_value", ""]] and "<thead>" not in facts.to_html()
    rows = report.table([{"a": 1, "b": {"x": 1}}, {"a": 2}], rows=1)
    assert rows.columns == ["a", "b"] and rows.rows == [["1", "x: 1"]] and "First 1 of 2 rows" in rows.note
    assert str(report.table({"n": 3}, title="T")) == "T\nn  3"


def test_long_text_is_kept_whole_and_escaped():
    long = "word " * 200
    html = report.table([{"message": long + "<b>"}]).to_html()
    assert long.strip() in html and "&lt;b&gt;" in html and "..." not in html


def test_params_show_as_values_not_reprs(capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "IPython", None)  # plain Python: the text form
    p = params.validate("07_review_outputs", {"run_dir": "/some/where/runs/demo"})
    report.show_params(p)
    out = capsys.readouterr().out
    assert "demo (this run folder)" in out and "'demo'" not in out and "0.2" in out


def test_files_are_named_inside_the_run_folder(tmp_path):
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "data" / "train.jsonl").write_text("{}\n")
    t = report.files({"train": run / "data" / "train.jsonl", "eval": run / "data" / "eval.jsonl"}, run)
    assert t.rows == [["train", "data/train.jsonl", "3 bytes"], ["eval", "data/eval.jsonl", "not written"]]
