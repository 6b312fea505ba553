"""Seeded, leak-free, optionally stratified splits; question/answer tables into RFT records."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest

from nbkit.data import check_record, prompt_key, read_table, records_from_table, split_records
from nbkit.errors import UserError


def make(i: int, question: str | None = None, **extra) -> dict:
    return {"id": f"r{i}", "messages": [{"role": "user", "content": question or f"What is {i} + 1?"}],
            "reference_answer": {"solution": str(i + 1)}, **extra}


def ids(records):
    return [r["id"] for r in records]


def test_split_is_seeded_complete_and_disjoint():
    records = [make(i) for i in range(100)]
    train, eval_ = split_records(records, 0.2, seed=7)
    assert (len(train), len(eval_)) == (80, 20)
    assert sorted(ids(train) + ids(eval_)) == sorted(ids(records))
    assert split_records(records, 0.2, seed=7) == (train, eval_)
    assert ids(split_records(records, 0.2, seed=8)[1]) != ids(eval_)


def test_copies_of_a_prompt_stay_together_so_nothing_leaks():
    records = [make(i, question=f"question {i % 10}") for i in range(60)]  # 10 prompts, 6 copies each
    for seed in range(5):
        train, eval_ = split_records(records, 0.3, seed=seed)
        assert not {prompt_key(r) for r in train} & {prompt_key(r) for r in eval_}
        assert len(train) + len(eval_) == 60


def test_stratified_split_keeps_the_mix():
    records = [make(i, level="easy") for i in range(80)] + [make(i, level="hard") for i in range(80, 100)]
    train, eval_ = split_records(records, 0.25, seed=0, stratify_by="level")
    assert Counter(r["level"] for r in eval_) == {"easy": 20, "hard": 5}
    assert Counter(r["level"] for r in train) == {"easy": 60, "hard": 15}


def test_stratify_by_a_nested_field_and_missing_values():
    records = [make(i) for i in range(40)]
    for r in records[:20]:
        r["reference_answer"]["kind"] = "a"
    train, eval_ = split_records(records, 0.5, seed=1, stratify_by="reference_answer.kind")
    assert sum(1 for r in eval_ if "kind" in r["reference_answer"]) == 10
    assert len(eval_) == 20


def test_split_errors_are_explained():
    with pytest.raises(UserError, match="between 0 and 1"):
        split_records([make(1), make(2)], 1.0)
    with pytest.raises(UserError, match="at least 2"):
        split_records([make(1)], 0.5)
    with pytest.raises(UserError, match="no record has the field"):
        split_records([make(1), make(2)], 0.5, stratify_by="nope")
    with pytest.raises(UserError, match="same prompt"):
        split_records([make(1, question="q"), make(2, question="q")], 0.5)


def test_tiny_inputs_still_get_a_non_empty_eval():
    train, eval_ = split_records([make(1), make(2), make(3)], 0.1, seed=0)
    assert len(train) == 2 and len(eval_) == 1


def test_table_to_records():
    table = pd.DataFrame({"question": ["What is 2 + 2?", "Solve for x: 2x = 6"], "answer": [4, "x = 3"],
                          "domain": ["arithmetic", "algebra"]})
    records = records_from_table(table, system_prompt="Reply with the final answer only.")
    assert records[0] == {
        "id": "row-000001",
        "messages": [{"role": "system", "content": "Reply with the final answer only."},
                     {"role": "user", "content": "What is 2 + 2?"}],
        "reference_answer": {"solution": 4}, "domain": "arithmetic",
    }
    assert all(check_record(r) == ([], []) for r in records)


def test_table_options_bare_answers_ids_and_metadata():
    rows = [{"q": "Capital of France?", "a": "Paris", "key": 17, "src": "atlas", "note": None}]
    records = records_from_table(rows, "q", "a", answer_key="", id_column="key", metadata=["src"])
    assert records == [{"id": "17", "messages": [{"role": "user", "content": "Capital of France?"}],
                        "reference_answer": "Paris", "src": "atlas"}]
    numeric = records_from_table([{"question": "2+2?", "answer": 4.0}], answer_key="")
    assert numeric[0]["reference_answer"] == "4"  # a bare answer must be a string


def test_table_problems_name_columns_and_rows():
    with pytest.raises(UserError, match="columns are: q, a"):
        records_from_table([{"q": "x", "a": "y"}])
    with pytest.raises(UserError, match=r"rows 2, 3"):
        records_from_table(pd.DataFrame({"question": ["a", "", None], "answer": ["1", "2", "3"]}))
    with pytest.raises(UserError, match="overwrite"):
        records_from_table([{"question": "a", "answer": "b", "tools": "x"}])


def test_read_csv_table(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("question,answer,difficulty_level\nWhat is 1 + 1?,2,easy\nWhat is NA?,NA,easy\n")
    records = records_from_table(read_table(path))
    assert [r["reference_answer"]["solution"] for r in records] == ["2", "NA"]  # "NA" is text, not a missing value
    with pytest.raises(UserError, match=r"\.csv, \.tsv"):
        read_table(tmp_path / "qa.xlsx")
