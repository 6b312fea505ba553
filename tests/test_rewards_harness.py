"""The harness gives every sample exactly one status, in input order, whatever the reward does."""

from __future__ import annotations

import json
import math
from collections import UserDict
from pathlib import Path

import pytest

from nbkit.errors import UserError
from nbkit.rewards import load_reward, make_sample, run_harness
from nbkit.rewards.contract import STATUSES

FIXTURES = Path(__file__).parent / "fixtures" / "rewards"
RECORD = {"id": "r1", "messages": [{"role": "user", "content": "What is 2 + 2?"}], "reference_answer": {"solution": "4"}}


def samples_for(*responses: str, variant: str = "sagemaker") -> list[dict]:
    return [make_sample(RECORD, text, variant=variant, sample_id=f"s{i}-{text}") for i, text in enumerate(responses)]


@pytest.fixture(scope="module")
def faulty():
    return load_reward(str(FIXTURES / "faulty.py"))


def test_inline_classifies_each_fault_and_keeps_order(faulty):
    responses = ["ok", "nan", "inf", "string_score", "drop", "wrong_id", "bad_metric", "raise", "exit", "ok"]
    report = run_harness(faulty, samples_for(*responses), batch_size=4, workers=0, timeout=5)
    assert report.ids == [f"s{i}-{r}" for i, r in enumerate(responses)]
    assert report.statuses == ["ok", "non_finite", "non_finite", "invalid_format", "missing_result",
                               "invalid_format", "invalid_format", "exception", "exception", "ok"]
    by_id = {r.id: r for r in report.results}
    assert by_id["s0-ok"].score == 1.0 and by_id["s0-ok"].metrics == {"correct": 1.0, "response_length": 2.0}
    assert "ValueError: the reward raised on purpose" in by_id["s7-raise"].error
    assert "sys.exit(3)" in by_id["s8-exit"].error
    assert "aggregate_reward_score is str" in by_id["s3-string_score"].error
    assert "metrics_list[0] (m).value" in by_id["s6-bad_metric"].error
    assert all(r.score is None for r in report.results if r.status != "ok")
    summary = report.summary
    assert summary == {"total": 10, "ok": 2, "exception": 2, "timeout": 0, "crash": 0, "invalid_format": 3,
                       "missing_result": 1, "non_finite": 2}
    assert sum(summary[s] for s in STATUSES) == summary["total"]
    assert "id matches no sample it was given (ids ['s5-wrong_id-renamed'])" in by_id["s5-wrong_id"].error
    assert any("ids it was not given" in w for w in report.warnings), "the renamed result is reported"


def test_failed_batch_is_split_so_good_samples_keep_their_scores(faulty):
    report = run_harness(faulty, samples_for("ok", "raise", "ok", "ok"), batch_size=4)
    assert report.statuses == ["ok", "exception", "ok", "ok"]
    assert report.scores() == [1.0, 0.0, 1.0, 1.0]
    assert report.scores(default=None)[1] is None
    unsplit = run_harness(faulty, samples_for("ok", "raise", "ok", "ok"), batch_size=4, split_failed=False)
    assert unsplit.statuses == ["exception"] * 4


def test_inline_timeout_interrupts_a_busy_loop():
    def spin(event, context):
        if any(s["messages"][-1]["content"] == "spin" for s in event):
            while True:
                pass
        return [{"id": s["id"], "aggregate_reward_score": 0.5} for s in event]

    report = run_harness(spin, samples_for("a", "spin", "b"), batch_size=1, timeout=0.3)
    assert report.statuses == ["ok", "timeout", "ok"]
    assert "0.3 s timeout" in report.results[1].error


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_survive_hangs_exits_segfaults_and_memory_hogs(faulty, workers):
    responses = ["ok", "hang", "os_exit", "segfault", "memory", "exit", "raise", "nan", "ok", "ok"]
    report = run_harness(faulty, samples_for(*responses), batch_size=1, workers=workers, timeout=1.0,
                         memory_mb=256)
    assert report.statuses == ["ok", "timeout", "crash", "crash", "exception", "exception", "exception",
                               "non_finite", "ok", "ok"]
    errors = [r.error or "" for r in report.results]
    assert "code 7" in errors[2] and "MemoryError" in errors[4]
    assert "SIGSEGV" in errors[3] and "lambda_handler (faulty.py:" in errors[3], "the crash names the reward's frame"
    assert report.settings["workers_replaced"] == 3  # hang, os_exit and segfault each cost a worker


def test_workers_give_the_same_results_as_inline():
    reward = load_reward("builtin:numeric")
    samples = samples_for("4", "x = 4", "5", r"\boxed{4}", "four", "2+2", "4.0", "")
    inline = run_harness(reward, samples, batch_size=3)
    pooled = run_harness(reward, samples, batch_size=3, workers=2)
    assert inline.scores() == pooled.scores() == [1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    assert [r.metrics for r in inline.results] == [r.metrics for r in pooled.results]


def test_bedrock_and_sagemaker_events_score_alike():
    reward = load_reward("builtin:numeric")
    sm = run_harness(reward, samples_for("4", "3", variant="sagemaker"))
    br = run_harness(reward, samples_for("4", "3", variant="bedrock"))
    assert sm.scores() == br.scores() == [1.0, 0.0]


def handler_returning(value):
    return lambda event, context: value(event) if callable(value) else value


@pytest.mark.parametrize("output, status, words", [
    ({"statusCode": 200, "body": "[]"}, "invalid_format", "statusCode"),
    (None, "invalid_format", "returned NoneType"),
    (lambda ev: [{"id": s["id"], "aggregate_reward_score": True} for s in ev], "invalid_format", "bool"),
    (lambda ev: [{"id": s["id"]} for s in ev], "invalid_format", "no aggregate_reward_score"),
    (lambda ev: [{"aggregate_reward_score": 1.0} for s in ev], "invalid_format", "without a string 'id'"),
    (lambda ev: ["1.0" for s in ev], "invalid_format", "is str"),
    (lambda ev: [], "missing_result", "returned 0 result"),
    (lambda ev: [{"id": s["id"], "aggregate_reward_score": 1.0,
                  "metrics_list": [{"name": "m", "value": float("nan"), "type": "Metric"}]} for s in ev],
     "non_finite", "(m).value is nan"),
    (lambda ev: [{"id": s["id"], "aggregate_reward_score": 1.0,
                  "metrics_list": [{"name": "m", "value": 1, "type": "Score"}]} for s in ev],
     "invalid_format", "'Reward' or 'Metric'"),
    (lambda ev: [{"id": s["id"], "aggregate_reward_score": 1.0, "metrics_list": {"m": 1}} for s in ev],
     "invalid_format", "metrics_list is dict"),
    # what the vectorised check must refuse exactly as the per-result checks do (issue 18)
    (lambda ev: [{"id": s["id"], "aggregate_reward_score": 10**400} for s in ev], "non_finite",
     "integer of 1329 bits, beyond the largest float"),
    (lambda ev: [{"id": s["id"], "aggregate_reward_score": 1.0,
                  "metrics_list": [{"name": "m", "value": -10**400, "type": "Metric"}]} for s in ev],
     "non_finite", "(m).value is an integer of 1329 bits"),
    (lambda ev: [{"id": s["id"], "aggregate_reward_score": 1.0,
                  "metrics_list": ({"name": "m", "value": 1.0, "type": "Metric"},)} for s in ev],
     "invalid_format", "metrics_list is tuple"),
    (lambda ev: [{"id": s["id"], "aggregate_reward_score": 1.0,
                  "metrics_list": [UserDict({"name": "m", "value": 1.0, "type": "Metric"})]} for s in ev],
     "invalid_format", "metrics_list[0] is UserDict, expected an object"),
    (lambda ev: [UserDict({"id": s["id"], "aggregate_reward_score": 1.0}) for s in ev], "invalid_format",
     "is UserDict"),
    (lambda ev: [{"id": s["id"], "aggregate_reward_score": 1.0,
                  "metrics_list": [{"name": "m", "value": 1.0, "type": "Metric"}, {"name": "", "value": 1.0,
                                                                                   "type": "Metric"}]} for s in ev],
     "invalid_format", "metrics_list[1].name is ''"),
])
def test_contract_violations(output, status, words):
    report = run_harness(handler_returning(output), samples_for("a", "b"), batch_size=2)
    assert report.statuses == [status, status]
    assert all(words in r.error for r in report.results), report.errors


def test_a_result_twice_for_one_id_breaks_the_call():
    def twice(event, context):
        return [{"id": event[0]["id"], "aggregate_reward_score": 1.0}] * len(event)

    report = run_harness(twice, samples_for("a", "b"), batch_size=2)
    assert report.statuses == ["invalid_format", "invalid_format"]
    assert "no result with id 's1-b'" in report.results[1].error
    assert "(ids ['s0-a'])" in report.results[0].error
    assert any("ids it was not given" in w for w in report.warnings)


def test_ids_returned_with_another_type_get_a_hint():
    samples = [make_sample(RECORD, "4", sample_id="7")]
    report = run_harness(lambda e, c: [{"id": 7, "aggregate_reward_score": 1.0}], samples)
    assert report.statuses == ["invalid_format"]
    assert "id 7 is int: return the sample's id unchanged" in report.results[0].error


def test_results_in_another_order_are_matched_by_id_and_ints_become_floats():
    def reverse(event, context):
        return [{"id": s["id"], "aggregate_reward_score": i} for i, s in reversed(list(enumerate(event)))]

    report = run_harness(reverse, samples_for("a", "b", "c"), batch_size=3)
    assert report.statuses == ["ok"] * 3
    assert report.score_list == [0.0, 1.0, 2.0] and all(type(s) is float for s in report.score_list)
    assert report.out_of_range == ["s2-c"]
    assert any("outside the expected range" in w for w in report.warnings)


def test_fast_and_slow_paths_agree_on_metrics():
    def good(event, context):
        return [{"id": s["id"], "aggregate_reward_score": 0.25,
                 "metrics_list": [{"name": "a", "value": 1, "type": "Reward"}, {"name": "b", "value": 2.5, "type": "Metric"}]}
                for s in event]

    def shuffled(event, context):  # same results, reversed: forces the per-result path
        return list(reversed(good(event, context)))

    fast = run_harness(good, samples_for("a", "b", "c"), batch_size=3)
    slow = run_harness(shuffled, samples_for("a", "b", "c"), batch_size=3)
    assert fast.metric_list == slow.metric_list == [{"a": 1.0, "b": 2.5}] * 3
    assert fast.results[0].metrics == {"a": 1.0, "b": 2.5}


def test_string_subclass_ids_are_ids():
    class Tag(str):
        pass

    samples = [dict(s, id=Tag(s["id"])) for s in samples_for("a", "b")]
    report = run_harness(lambda e, c: [{"id": s["id"], "aggregate_reward_score": 1.0} for s in e], samples)
    assert report.statuses == ["ok", "ok"]


def test_samples_without_ids_are_rejected_with_where_and_how():
    bad = [{"messages": []}, {"id": "", "messages": []}]
    for workers in (0, 1):
        with pytest.raises(UserError, match=r"sample 0 has id None; sample 1 has id ''.*make_sample"):
            run_harness(lambda e, c: [], bad, workers=workers)


def test_duplicate_ids_are_warned_and_matched_in_order():
    def echo(event, context):
        return [{"id": s["id"], "aggregate_reward_score": float(s["messages"][-1]["content"])} for s in event]

    samples = [make_sample(RECORD, str(v), sample_id="same") for v in (0.1, 0.2, 0.3)]
    report = run_harness(echo, samples, batch_size=3)
    assert report.score_list == [0.1, 0.2, 0.3]
    assert report.duplicate_ids == ["same"]
    assert any("duplicate sample id" in w for w in report.warnings)


def test_determinism_check_catches_a_random_reward(faulty):
    report = run_harness(faulty, samples_for("ok", "random", "ok"), batch_size=1, check_determinism=True)
    assert report.determinism["checked"] == 3
    assert report.determinism["mismatched"] == ["s1-random"]
    steady = run_harness(faulty, samples_for("ok", "ok"), check_determinism=True)
    assert steady.determinism == {"checked": 2, "mismatched": [], "max_abs_diff": 0.0, "deterministic": True}


def test_transient_errors_are_retried_with_backoff_and_others_are_not():
    calls = {"n": 0}

    def flaky(event, context):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise ConnectionError("connection reset by peer")
        return [{"id": s["id"], "aggregate_reward_score": 1.0} for s in event]

    report = run_harness(flaky, samples_for("a", "b"), batch_size=2, retries=3, backoff_s=0.001)
    assert report.statuses == ["ok", "ok"] and calls["n"] == 3
    assert any("retried" in w for w in report.warnings)

    calls["n"] = -10  # would succeed on retry, but a ValueError is not transient
    broken = run_harness(lambda e, c: 1 / 0, samples_for("a"), retries=3, backoff_s=0.001)
    assert broken.statuses == ["exception"] and "ZeroDivisionError" in broken.results[0].error

    custom = {"n": 0}

    def custom_flaky(event, context):
        custom["n"] += 1
        if custom["n"] == 1:
            raise RuntimeError("quota hiccup")
        return [{"id": s["id"], "aggregate_reward_score": 1.0} for s in event]

    report = run_harness(custom_flaky, samples_for("a"), retries=1, backoff_s=0.001,
                         retry_on=lambda types, message: "hiccup" in message)
    assert report.statuses == ["ok"]


def test_latency_summary_and_frame():
    reward = load_reward("builtin:numeric")
    report = run_harness(reward, samples_for("4", "5", "x = 4", "nope", "4"), batch_size=2)
    lat = report.latency
    assert lat["calls"] == 3
    assert 0 < lat["per_call_s"]["p50"] <= lat["per_call_s"]["p95"] <= lat["per_call_s"]["p99"] <= lat["per_call_s"]["max"]
    assert lat["per_sample_s"]["max"] <= lat["per_call_s"]["max"]
    assert lat["throughput_per_s"] > 0
    frame = report.to_frame()
    assert list(frame["id"]) == report.ids
    assert list(frame["score"]) == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert "metric.correct" in frame.columns and "metric.answer_found" in frame.columns
    as_json = json.dumps(report.to_dict(), allow_nan=False)
    assert json.loads(as_json)["summary"]["ok"] == 5


def test_report_json_has_no_nan_even_when_scores_were_nan(faulty):
    report = run_harness(faulty, samples_for("nan", "ok"), check_determinism=True)
    text = json.dumps(report.to_dict(), allow_nan=False)
    assert '"non_finite"' in text


def test_empty_input_gives_an_empty_report():
    report = run_harness(load_reward("builtin:exact"), [])
    assert report.summary["total"] == 0 and report.results == [] and report.error_rate == 0.0
    assert math.isnan(report.latency["per_call_s"]["p50"])


def test_bad_arguments_are_user_errors():
    with pytest.raises(UserError, match="batch_size"):
        run_harness(lambda e, c: [], samples_for("a"), batch_size=0)
    with pytest.raises(UserError, match="timeout"):
        run_harness(lambda e, c: [], samples_for("a"), timeout=0)
    with pytest.raises(UserError, match="workers"):
        run_harness(lambda e, c: [], samples_for("a"), workers=-1)


def test_batches_keep_every_sequence_method():
    """The executors take the batches as a Sequence; an attribute once named `count` hid Sequence.count
    (found by mypy: "Cannot assign to a method")."""
    from nbkit.rewards.harness import _Batches

    samples = [{"id": str(i)} for i in range(5)]
    batches = _Batches(samples, 2)
    assert len(batches) == 3 and list(batches) == [samples[0:2], samples[2:4], samples[4:5]]
    assert batches.count(samples[2:4]) == 1 and batches.index(samples[4:5]) == 2


def test_batches_iterate_in_order_and_cover_every_sample():
    """Iterating the lazily sliced batches (once broken: it counted with Sequence.count, a method)."""
    from nbkit.rewards.harness import _Batches

    samples = [{"id": str(i)} for i in range(7)]
    batches = _Batches(samples, 3)
    assert [[s["id"] for s in b] for b in batches] == [["0", "1", "2"], ["3", "4", "5"], ["6"]]
    assert len(batches) == 3 and batches.span(2) == (6, 7)


def test_a_worker_slow_to_start_does_not_spend_the_calls_timeout(monkeypatch):
    """On a busy machine a fresh worker can take longer to start than a call may run: the call's clock
    starts when the worker is ready (once, it started at send and such calls were recorded as timeouts)."""
    import time

    from nbkit.rewards import executors

    real = executors._limit_memory

    def slow_start(memory_mb):  # runs in the forked worker before it is ready
        time.sleep(1.5)
        real(memory_mb)

    monkeypatch.setattr(executors, "_limit_memory", slow_start)
    reward = load_reward("builtin:numeric")
    report = run_harness(reward, samples_for("4", "5", "4"), batch_size=1, workers=2, timeout=0.5,
                         start_method="fork")
    assert report.statuses == ["ok", "ok", "ok"], [r.error for r in report.results]
    assert report.scores() == [1.0, 0.0, 1.0]


def test_a_worker_that_never_starts_is_a_timeout_not_a_stall(monkeypatch):
    import time

    from nbkit.rewards import executors

    monkeypatch.setattr(executors, "_limit_memory", lambda memory_mb: time.sleep(30))
    monkeypatch.setattr(executors, "STARTUP_S", 0.5)
    reward = load_reward("builtin:numeric")
    report = run_harness(reward, samples_for("4"), batch_size=1, workers=1, timeout=0.5, start_method="fork")
    # left alone, the worker would start after 30 s and score the sample "ok"
    assert report.statuses == ["timeout"]
    assert "did not start within 0.5 s" in report.results[0].error
