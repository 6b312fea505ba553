"""Fault family: rewards that try to rewrite the truth or drown the report (issue 12, finding 5).

In-process (`--workers 0`, how local training scores) a reward once got `ok` by renaming its samples' ids and
changed the caller's samples; extra result ids passed with exit 0; a reward printing 100 MB made
`nbkit reward check --json` unparseable.
"""

from __future__ import annotations

import copy
import json
import textwrap

import pytest

from nbkit.cli import main
from nbkit.rewards import load_reward, make_sample, run_harness

RECORD = {"id": "r", "messages": [{"role": "user", "content": "2+2?"}], "reference_answer": {"solution": "4"}}


def _samples(n: int = 3) -> list[dict]:
    return [make_sample(RECORD, "5", sample_id=f"s{i}") for i in range(n)]


def renamer(event, context):
    """Renames every sample's id in place and answers for the new ids: they all match, if ids are read late."""
    for sample in event:
        sample["id"] = sample["id"] + "-mine"
    return [{"id": s["id"], "aggregate_reward_score": 1.0} for s in event]


def rewriter(event, context):
    """Makes its own answer right by editing the reference (shared with the caller's record) and the samples."""
    for sample in event:
        sample["reference_answer"]["solution"] = sample["messages"][-1]["content"]
        sample["messages"].append({"role": "user", "content": "injected"})
        sample["extra"] = "added"
    return [{"id": s["id"], "aggregate_reward_score": 1.0} for s in event]


@pytest.mark.parametrize("workers", [0, 1])
def test_renaming_ids_cannot_earn_ok(workers):
    samples = _samples()
    before = copy.deepcopy(samples)
    report = run_harness(renamer, samples, batch_size=3, workers=workers)
    assert report.ids == ["s0", "s1", "s2"]
    assert report.statuses == ["invalid_format"] * 3
    assert "ids ['s0-mine', 's1-mine', 's2-mine']" in report.results[0].error
    assert samples == before


@pytest.mark.parametrize("workers", [0, 1])
def test_a_reward_cannot_change_the_callers_samples_or_records(workers):
    record = copy.deepcopy(RECORD)
    samples = [make_sample(record, "5", sample_id=f"s{i}") for i in range(2)]
    before = copy.deepcopy(samples)
    report = run_harness(rewriter, samples, batch_size=2, workers=workers)
    assert report.ok  # the reward may score as it likes; it cannot change what it was given
    assert samples == before
    assert record == RECORD, "the record's reference answer, shared with the samples, is untouched"


def test_builtin_graders_never_change_a_sample():
    # In-process calls skip the copy for nbkit's own graders (Reward.pure): only right if none edits a sample.
    # The judge needs a model to be built; it only reads the sample to build a new prompt (LLMJudge.prompt).
    from nbkit.rewards import graders as G

    checked = []
    for name in sorted(set(G.GRADERS) - {"judge"}):
        reward = load_reward("builtin:composite?numeric=0.5&format=0.5" if name == "composite" else f"builtin:{name}")
        tool_record = {**RECORD, "reference_answer": {"tool_called": "f", "tool_parameters": {"a": 1}}}
        call = {"content": "", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]}
        samples = _samples(2) + [make_sample(tool_record, call, sample_id="t")]
        before = copy.deepcopy(samples)
        assert reward.pure
        run_harness(reward, samples, workers=0)
        assert samples == before, name
        checked.append(name)
    assert len(checked) == len(G.GRADERS) - 1


def test_extra_result_ids_break_the_call_and_exit_1(tmp_path, capsys):
    reward = tmp_path / "extra.py"
    reward.write_text(textwrap.dedent('''
        def lambda_handler(event, context):
            out = [{"id": s["id"], "aggregate_reward_score": 1.0} for s in event]
            return out + [{"id": "bonus", "aggregate_reward_score": 1.0}]
    '''))
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(s) + "\n" for s in _samples(3)))
    for workers in ("0", "1"):
        code = main(["reward", "check", str(reward), "--events", str(events), "--workers", workers, "--json"])
        out = json.loads(capsys.readouterr().out)
        assert code == 1
        assert [r["status"] for r in out["results"]] == ["invalid_format"] * 3
        assert "(ids ['bonus'])" in out["results"][0]["error"]


LOUD = textwrap.dedent('''
    import os, subprocess, sys

    print("loud at import")

    def lambda_handler(event, context):
        chunk = "x" * (1 << 20)
        for _ in range({mib}):
            print(chunk)
        print("to stderr", file=sys.stderr)
        os.write(1, b"native write\\n")
        subprocess.run(["echo", "from a child"])
        return [{{"id": s["id"], "aggregate_reward_score": 1.0}} for s in event]
''')


@pytest.mark.parametrize("workers, mib", [("1", 100), ("0", 100)])
def test_a_reward_printing_100_mb_leaves_check_json_parseable(tmp_path, capfd, workers, mib):
    reward = tmp_path / "loud.py"
    reward.write_text(LOUD.format(mib=mib))
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(_samples(1)[0]) + "\n")
    code = main(["reward", "check", str(reward), "--events", str(events), "--workers", workers, "--json"])
    captured = capfd.readouterr()
    out = json.loads(captured.out)  # stdout holds the report and nothing else
    assert code == 0 and out["summary"]["ok"] == 1
    assert len(captured.out) < 200_000, "the output kept in the report is truncated"
    assert "more bytes not kept" in out["output"] and out["output"].startswith(("x", "loud"))
    assert len(captured.err) < 10_000 and "bytes to stdout/stderr" in captured.err
    assert "xxxxxxxxxx" not in captured.err


def test_the_harness_report_keeps_the_output_in_process_and_in_workers():
    def chatty(event, context):
        print("scoring", len(event), "samples")
        return [{"id": s["id"], "aggregate_reward_score": 1.0} for s in event]

    for workers in (0, 1):
        report = run_harness(chatty, _samples(2), batch_size=2, workers=workers)
        assert report.output.strip() == "scoring 2 samples" and report.output_bytes == len("scoring 2 samples\n")
        assert report.to_dict()["output"] == report.output
        assert any("wrote 18 bytes to stdout/stderr" in w for w in report.warnings)


