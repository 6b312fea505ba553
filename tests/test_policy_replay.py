"""Replay: stored completions from JSONL, a samples.parquet and Nova RFT eval details parquet files."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from nbkit.errors import UserError
from nbkit.policy import Completion, load_generator
from nbkit.policy.replay import ReplayGenerator, read_nova_details

SYSTEM = {"role": "system", "content": "Reply with the final answer only."}


def record(rid: str, question: str, solution: str) -> dict:
    return {"id": rid, "messages": [SYSTEM, {"role": "user", "content": question}],
            "reference_answer": {"solution": solution}, "domain": "arithmetic"}


R1, R2 = record("math-1", "What is 2 + 2?", "4"), record("math-2", "Solve for x: 2x = 6", "x = 3")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def details_frame(python_repr: bool) -> pd.DataFrame:
    """The shape of eval-result/details/model/<ts>/details_*.parquet (reference section 4)."""
    rows = []
    for rec, prediction, score, correct in ((R1, "4", 1.0, 1.0), (R2, "x = 5", 0.0, 0.0)):
        metrics = {"rft_eval_lambda_metric": {"lambda_reward_score": score, "lambda_correct": correct}}
        specifics = {"sample_id": rec["id"].replace("math", "s"), "original_line": json.dumps(rec)}
        rows.append({
            "predictions": str([prediction]) if python_repr else [prediction],
            "metrics": str(metrics) if python_repr else json.dumps(metrics),
            "specifics": str(specifics) if python_repr else specifics,
        })
    return pd.DataFrame(rows)


def test_jsonl_with_messages_and_trailing_assistant_turn(tmp_path):
    path = write_jsonl(tmp_path / "out.jsonl", [
        {"messages": R1["messages"] + [{"role": "assistant", "content": "4"}], "num_tokens": 2},
        {"messages": R1["messages"], "response": "5", "finish_reason": "length", "num_tokens": 8},
        {"messages": R2["messages"], "completion": "x = 3"},
    ])
    gen = load_generator(f"replay:{path}")
    assert isinstance(gen, ReplayGenerator)
    out = gen.generate([R2["messages"], R1["messages"]], n=1, max_new_tokens=8, temperature=1.0, seed=0)
    # no num_tokens in the file: words and punctuation are counted (x, =, 3)
    assert out == [[Completion("x = 3", 3, "stop")], [Completion("4", 2, "stop")]]
    both = gen.generate([R1["messages"]], n=2, max_new_tokens=8, temperature=1.0, seed=0)
    assert both == [[Completion("4", 2, "stop"), Completion("5", 8, "length")]]


def test_jsonl_matches_by_prompt_text_when_no_conversation_is_stored(tmp_path):
    path = write_jsonl(tmp_path / "out.jsonl", [
        {"prompt": "what is 2 +  2?", "response": "4", "sample": 1},
        {"prompt": "What is 2 + 2?", "response": "four", "sample": 0},
    ])
    out = ReplayGenerator(path).generate([R1["messages"]], n=2, max_new_tokens=8, temperature=0, seed=0)
    assert [c.text for c in out[0]] == ["four", "4"]  # ordered by the stored sample index


def test_missing_prompt_or_too_few_samples_is_an_error_naming_it(tmp_path):
    path = write_jsonl(tmp_path / "out.jsonl", [{"messages": R1["messages"], "response": "4"}])
    gen = ReplayGenerator(path)
    with pytest.raises(UserError, match=r"1 prompt\(s\) have no stored completion.*Solve for x"):
        gen.generate([R1["messages"], R2["messages"]], n=1, max_new_tokens=8, temperature=1.0, seed=0)
    with pytest.raises(UserError, match=r"fewer than n=2 stored completions.*has 1"):
        gen.generate([R1["messages"]], n=2, max_new_tokens=8, temperature=1.0, seed=0)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"out.jsonl:2: not valid JSON"),
        ('{"messages": [{"role": "user", "content": "hi"}]}', r"out.jsonl:2: no response"),
        ('{"response": "4"}', r"out.jsonl:2: no prompt"),
        ('{"prompt": "hi", "response": "4", "finish_reason": "eos"}', r"out.jsonl:2: finish_reason 'eos'"),
    ],
)
def test_bad_jsonl_lines_are_errors_with_line_numbers(tmp_path, line, message):
    path = tmp_path / "out.jsonl"
    path.write_text(json.dumps({"prompt": "ok", "response": "1"}) + "\n" + line + "\n")
    with pytest.raises(UserError, match=message):
        ReplayGenerator(path)


@pytest.mark.parametrize("python_repr", [True, False])
def test_read_nova_details(tmp_path, python_repr):
    path = tmp_path / "details_custom_rft_eval_#_2025.parquet"
    details_frame(python_repr).to_parquet(path)
    frame = read_nova_details(path)
    assert list(frame["prompt_id"]) == ["math-1", "math-2"]
    assert list(frame["sample_id"]) == ["s-1", "s-2"]
    assert list(frame["prompt"]) == ["What is 2 + 2?", "Solve for x: 2x = 6"]
    assert list(frame["response"]) == ["4", "x = 5"]
    assert list(frame["reward"]) == [1.0, 0.0]
    assert json.loads(frame["components"][0]) == {"correct": 1.0}
    assert json.loads(frame["reference"][1]) == {"solution": "x = 3"}
    assert frame["record"][0]["domain"] == "arithmetic"


def test_details_folder_is_searched_recursively_and_replayed(tmp_path):
    folder = tmp_path / "eval-result" / "details" / "model" / "2025-01-01T00-00"
    folder.mkdir(parents=True)
    details_frame(True).to_parquet(folder / "details_custom_rft_eval_#_2025.parquet")
    gen = load_generator(f"replay:{tmp_path / 'eval-result'}")
    out = gen.generate([R2["messages"], R1["messages"]], n=1, max_new_tokens=8, temperature=0, seed=0)
    assert [row[0].text for row in out] == ["x = 5", "4"]
    assert read_nova_details(tmp_path)["source"].nunique() == 1


def test_details_without_reward_give_nan_and_bad_cells_are_errors(tmp_path):
    frame = details_frame(True)
    frame.loc[0, "metrics"] = "{}"
    frame.to_parquet(tmp_path / "details_a.parquet")
    assert math.isnan(read_nova_details(tmp_path / "details_a.parquet")["reward"][0])
    frame.loc[1, "specifics"] = "{'original_line': 'not a record'"
    frame.to_parquet(tmp_path / "details_b.parquet")
    with pytest.raises(UserError, match=r"details_b.parquet row 1: specifics is neither JSON nor a Python literal"):
        read_nova_details(tmp_path / "details_b.parquet")


def test_samples_parquet_from_an_earlier_evaluation_is_replayed(tmp_path):
    frame = pd.DataFrame({"prompt_id": ["math-1", "math-1"], "sample": [0, 1], "prompt": ["What is 2 + 2?"] * 2,
                          "response": ["4", "3"], "num_tokens": [2, 2], "finish_reason": ["stop", "stop"]})
    (tmp_path / "baseline").mkdir()
    frame.to_parquet(tmp_path / "baseline" / "samples.parquet")
    gen = load_generator(f"replay:{tmp_path / 'baseline' / 'samples.parquet'}")
    assert [c.text for c in gen.generate([R1["messages"]], n=2, max_new_tokens=4, temperature=1, seed=0)[0]] == ["4", "3"]


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_generator(f"replay:{tmp_path / 'nope.jsonl'}")
