"""`nbkit reward check` and `nbkit reward probe`: JSON shape, statuses, exit codes 0/1/2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbkit.cli import main
from nbkit.data import write_jsonl
from nbkit.data.samples import make_task
from nbkit.rewards import make_sample

FIXTURES = Path(__file__).parent / "fixtures" / "rewards"
EXPECTED = {
    "s00-ok": "ok", "s01-raise": "exception", "s02-hang": "timeout", "s03-exit": "exception", "s04-os_exit": "crash",
    "s05-segfault": "crash", "s06-memory": "exception", "s07-drop": "missing_result", "s08-nan": "non_finite",
    "s09-inf": "non_finite", "s10-string_score": "invalid_format", "s11-wrong_id": "invalid_format",
    "s12-bad_metric": "invalid_format", "s13-out_of_range": "ok", "s14-random": "ok", "s15-ok": "ok",
}


def test_check_reports_every_fault_of_the_faulty_reward(capsys):
    code = main(["reward", "check", str(FIXTURES / "faulty.py"), "--events", str(FIXTURES / "faulty_events.jsonl"),
                 "--workers", "2", "--timeout", "1", "--memory-mb", "256", "--batch-size", "1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert set(out) == {"verdict", "summary", "results", "latency", "output"}
    assert out["verdict"].startswith("12 of 16 samples failed") and out["verdict"].endswith("; 8 more with other errors")
    assert out["summary"] == {"total": 16, "ok": 4, "exception": 3, "timeout": 1, "crash": 2, "invalid_format": 3,
                              "missing_result": 1, "non_finite": 2}
    assert "Fatal Python error: Segmentation fault" in out["output"]  # the crash's stack, captured
    assert [r["id"] for r in out["results"]] == list(EXPECTED), "every sample, in file order"
    assert {r["id"]: r["status"] for r in out["results"]} == EXPECTED
    assert all(set(r) == {"id", "status", "score", "error"} for r in out["results"])
    assert next(r for r in out["results"] if r["id"] == "s13-out_of_range")["score"] == 7.5
    assert {"per_call_s", "per_sample_s", "throughput_per_s", "calls"} <= set(out["latency"])


def test_check_exit_0_and_warnings_on_stderr(tmp_path, capsys):
    train, _ = make_task("math", 6, 2, seed=0)
    events = tmp_path / "events.jsonl"
    write_jsonl(events, [make_sample(r, r["reference_answer"]["solution"], variant="bedrock") for r in train])
    assert main(["reward", "check", "builtin:numeric", "--events", str(events), "--workers", "0"]) == 0
    captured = capsys.readouterr()
    assert "6/6 ok" in captured.out and captured.err == ""


def test_check_exit_2_when_the_reward_cannot_be_loaded(tmp_path, capsys):
    events = FIXTURES / "faulty_events.jsonl"
    assert main(["reward", "check", str(tmp_path / "missing.py"), "--events", str(events)]) == 2
    assert "cannot load reward" in capsys.readouterr().err
    broken = tmp_path / "broken.py"
    broken.write_text("def lambda_handler(event, context)\n")
    assert main(["reward", "check", str(broken), "--events", str(events)]) == 2
    assert "syntax error" in capsys.readouterr().err


@pytest.mark.parametrize("line, words", [
    ("not json", "line 2: not valid JSON"),
    ("[1, 2]", "line 2: expected a JSON object"),
    ('{"messages": []}', "line 2: the sample needs a non-empty string 'id'"),
])
def test_check_exit_2_on_unusable_events(tmp_path, capsys, line, words):
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(make_sample({"id": "a", "messages": [{"role": "user", "content": "q"}]}, "x"))
                      + "\n" + line + "\n")
    assert main(["reward", "check", "builtin:exact", "--events", str(events)]) == 2
    assert words in capsys.readouterr().err


def test_check_warns_on_samples_that_break_the_event_model(tmp_path, capsys):
    events = tmp_path / "events.jsonl"
    sample = {"id": "a", "messages": [{"role": "user", "content": "What is 2 + 2?"}], "reference_answer": "4"}
    write_jsonl(events, [sample])
    assert main(["reward", "check", "builtin:numeric", "--events", str(events), "--workers", "0"]) == 0
    assert "line 1 (id 'a')" in capsys.readouterr().err


def test_probe_exit_codes_and_json(tmp_path, capsys):
    train, _ = make_task("math", 6, 2, seed=0)
    data = tmp_path / "train.jsonl"
    write_jsonl(data, train)
    assert main(["reward", "probe", str(FIXTURES / "substring.py"), "--data", str(data), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert "many_candidates" in report["gameable"]
    assert main(["reward", "probe", "builtin:numeric", "--data", str(data), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "AUC 1.00" in out and "buried_answer" in out
    assert main(["reward", "probe", "builtin:nope", "--data", str(data)]) == 2


def gsm8k(tmp_path: Path, reference_as_string: bool = False) -> Path:
    records = [{"id": f"g{i}", "messages": [{"role": "user", "content": f"What is {i} + 30?"}],
                "reference_answer": str(i + 30) if reference_as_string else {"final_answer": str(i + 30)}}
               for i in range(4)]
    data = tmp_path / "gsm8k.jsonl"
    write_jsonl(data, records)
    return data


def test_probe_with_a_good_template_credits_a_strict_hash_reward(tmp_path, capsys):
    data = gsm8k(tmp_path)
    strict = str(FIXTURES / "strict_hash.py")
    assert main(["reward", "probe", strict, "--data", str(data), "--workers", "0"]) == 1
    assert "fails to credit correct answers written as: reference" in capsys.readouterr().out
    assert main(["reward", "probe", strict, "--data", str(data), "--workers", "0",
                 "--good-template", "#### {final_answer}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rejects_good"] == [] and report["gameable"] == []
    assert report["template"] == {"template": "#### {final_answer}", "origin": "given"}


def test_check_verdict_leads_with_the_exception_and_the_mismatch(tmp_path, capsys):
    from nbkit.data import read_jsonl

    events = tmp_path / "events.jsonl"
    write_jsonl(events, [make_sample(r, "#### 30", sample_id=f"e{i}")
                         for i, r in enumerate(read_jsonl(gsm8k(tmp_path, reference_as_string=True)))])
    assert main(["reward", "check", str(FIXTURES / "object_reference.py"), "--events", str(events),
                 "--workers", "0"]) == 1
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("4 of 4 samples failed: AttributeError: 'str' object has no attribute 'get' at "
                            "object_reference.py:")
    assert "likely cause: the data's reference_answer is a string in 4 of 4 failing samples (e.g. '30')" in first
