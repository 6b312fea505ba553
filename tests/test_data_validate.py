"""Line-by-line validation: every malformed-line case gets its own code, its line number, and nothing is lost."""

from __future__ import annotations

import hashlib
import json
import random

import jsonschema
import pytest

from nbkit.data import CODES, check_record, json_schema, parse_record, validate_file, validate_records
from nbkit.data.io import iter_lines
from nbkit.data.validate import IdIndex
from nbkit.errors import UserError

GOOD = {"id": "ok-1", "messages": [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "What is 2 + 2?"}],
        "reference_answer": {"solution": "4"}}


def line(record: dict, **changes) -> bytes:
    return json.dumps({**record, **changes}).encode()


def rec(**changes) -> dict:
    return {**json.loads(json.dumps(GOOD)), **changes}


def validate_lines(tmp_path, lines: list[bytes], **kwargs):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return validate_file(path, out_dir=tmp_path / "out", **kwargs)


def codes_at(report, number: int, kind: str = "errors") -> set[str]:
    return {e["code"] for e in getattr(report, kind) if e["line"] == number}


# One case per malformed-line kind: (name, raw line, expected error code).
LINE_ERRORS = [
    ("broken_json", b'{"messages": [{"role": "user", "content": "hi"}', "invalid_json"),
    ("trailing_garbage", line(GOOD) + b" x", "invalid_json"),
    ("array", b"[1, 2]", "not_an_object"),
    ("string", b'"just text"', "not_an_object"),
    ("number", b"42", "not_an_object"),
    ("blank", b"", "blank_line"),
    ("whitespace", b"   \t ", "blank_line"),
    ("invalid_utf8", b'{"messages": [{"role": "user", "content": "caf\xe9"}]}', "invalid_utf8"),
    ("nan", b'{"messages": [{"role": "user", "content": "x"}], "reference_answer": {"v": NaN}}', "non_finite_number"),
    ("infinity", b'{"messages": [{"role": "user", "content": "x"}], "score": Infinity}', "non_finite_number"),
    ("minus_infinity", b'{"messages": [{"role": "user", "content": "x"}], "score": -Infinity}', "non_finite_number"),
    ("overflow", b'{"messages": [{"role": "user", "content": "x"}], "score": 1e999}', "non_finite_number"),
    ("lone_surrogate", b'{"messages": [{"role": "user", "content": "x\\ud800"}]}', "lone_surrogate"),
    ("invalid_escape", b'{"messages": [{"role": "user", "content": "C:\\qux"}]}', "invalid_escape"),
    ("missing_messages", line({"id": "m", "reference_answer": "4"}), "missing_messages"),
    ("null_messages", line(GOOD, messages=None), "missing_messages"),
    ("messages_string", line(GOOD, messages="hi"), "messages_not_list"),
    ("empty_messages", line(GOOD, messages=[]), "empty_messages"),
    ("message_not_object", line(GOOD, messages=["hi", {"role": "user", "content": "x"}]), "message_not_object"),
    ("no_user", line(GOOD, messages=[{"role": "system", "content": "Be brief."}]), "no_user_turn"),
    ("system_not_first", line(GOOD, messages=[{"role": "user", "content": "q"}, {"role": "system", "content": "s"}]),
     "system_not_first"),
    ("bad_role", line(GOOD, messages=[{"role": "bot", "content": "q"}, {"role": "user", "content": "q"}]), "bad_role"),
    ("missing_role", line(GOOD, messages=[{"content": "q"}, {"role": "user", "content": "q"}]), "bad_role"),
    ("empty_content", line(GOOD, messages=[{"role": "user", "content": ""}]), "empty_content"),
    ("blank_content", line(GOOD, messages=[{"role": "user", "content": " \n "}]), "empty_content"),
    ("no_content", line(GOOD, messages=[{"role": "user"}]), "empty_content"),
    ("empty_parts", line(GOOD, messages=[{"role": "user", "content": []}]), "empty_content"),
    ("number_content", line(GOOD, messages=[{"role": "user", "content": 42}]), "bad_content"),
    ("bad_part", line(GOOD, messages=[{"role": "user", "content": [{"type": "image", "url": "x"}]}]),
     "bad_content_part"),
    ("unknown_message_key", line(GOOD, messages=[{"role": "user", "content": "q", "name": "bob"}]),
     "unknown_message_key"),
    ("bad_tool_call", line(GOOD, messages=[{"role": "user", "content": "q"},
                                           {"role": "assistant", "content": "", "tool_calls": [{"x": 1}]},
                                           {"role": "user", "content": "q"}]), "bad_tool_calls"),
    ("tools_not_list", line(GOOD, tools={"name": "x"}), "bad_tools"),
    ("tool_without_description", line(GOOD, tools=[{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "properties": {}}}}]), "bad_tool_schema"),
    ("tool_required_unknown", line(GOOD, tools=[{"type": "function", "function": {
        "name": "f", "description": "d", "parameters": {"type": "object", "properties": {}, "required": ["a"]}}}]),
     "bad_tool_schema"),
    ("tool_wrong_type", line(GOOD, tools=[{"type": "retrieval", "function": {
        "name": "f", "description": "d", "parameters": {"type": "object", "properties": {}}}}]), "bad_tool_schema"),
    ("duplicate_tool_names", line(GOOD, tools=[
        {"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {}}}},
        {"type": "function", "function": {"name": "f", "description": "e", "parameters": {"type": "object", "properties": {}}}},
    ]), "duplicate_tool_name"),
    ("number_reference", line(GOOD, reference_answer=42), "bad_reference_answer"),
    ("int_id", line(GOOD, id=7), "bad_id"),
    ("blank_id", line(GOOD, id="  "), "bad_id"),
]


@pytest.mark.parametrize(("name", "raw", "code"), LINE_ERRORS, ids=[c[0] for c in LINE_ERRORS])
def test_each_malformed_line_is_rejected_with_its_code_and_line_number(tmp_path, name, raw, code):
    report = validate_lines(tmp_path, [line(GOOD, id="a"), raw, line(GOOD, id="c")])
    assert code in CODES and CODES[code][0] == "error"
    assert codes_at(report, 2) >= {code}, report.errors
    assert (report.total, report.valid, report.rejected) == (3, 2, 1)  # the lines around it still count
    rows = [json.loads(x) for x in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rows] == [2]
    assert code in {e["code"] for e in rows[0]["errors"]}


def test_every_error_code_has_a_case():
    covered = {c for _, _, c in LINE_ERRORS} | {"line_too_long", "duplicate_id"}
    errors = {c for c, (severity, _) in CODES.items() if severity == "error"}
    assert errors == covered


def test_bom_is_removed_and_warned(tmp_path):
    report = validate_lines(tmp_path, [b"\xef\xbb\xbf" + line(GOOD), line(GOOD, id="b")])
    assert (report.valid, report.rejected) == (2, 0)
    assert codes_at(report, 1, "warnings") == {"bom"}


def test_crlf_lines_are_read_and_warned(tmp_path):
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(line(GOOD, id="a") + b"\r\n" + line(GOOD, id="b") + b"\r\n")
    report = validate_file(path)
    assert (report.total, report.valid) == (2, 2)
    assert report.warning_counts["crlf"] == 2


def test_huge_line_is_rejected_in_bounded_memory_and_reading_goes_on(tmp_path):
    big = line(GOOD, id="big", messages=[{"role": "user", "content": "x" * 50_000}])
    report = validate_lines(tmp_path, [line(GOOD, id="a"), big, line(GOOD, id="c")], max_line_bytes=1_000)
    assert codes_at(report, 2) == {"line_too_long"}
    assert (report.valid, report.rejected) == (2, 1)
    row = json.loads((tmp_path / "out" / "rejected.jsonl").read_text())
    assert row["raw_truncated"] is True and row["raw_bytes"] == len(big)
    assert len(row["raw"]) < 5_000


def test_iter_lines_keeps_only_a_preview_of_an_over_long_line(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"a" * 3_000_000 + b"\nshort\nlast-no-newline")
    with open(path, "rb") as stream:
        lines = list(iter_lines(stream, max_line_bytes=1_000))
    assert [(x.number, x.size, x.too_long) for x in lines] == [(1, 3_000_000, True), (2, 5, False), (3, 15, False)]
    assert len(lines[0].data) <= 2_000 and lines[2].data == b"last-no-newline"


def test_line_of_exactly_the_limit_is_accepted_even_with_crlf(tmp_path):
    body = line(GOOD)
    report = validate_lines(tmp_path, [body + b"\r"], max_line_bytes=len(body))
    assert report.valid == 1 and codes_at(report, 1, "warnings") == {"crlf"}
    report = validate_lines(tmp_path, [body], max_line_bytes=len(body) - 1)
    assert codes_at(report, 1) == {"line_too_long"}


def test_duplicate_id_rejects_the_later_line_and_names_the_first(tmp_path):
    report = validate_lines(tmp_path, [line(GOOD, id="x"), line(GOOD, id="y"), line(GOOD, id="x")])
    assert codes_at(report, 3) == {"duplicate_id"} and codes_at(report, 1) == set()
    assert "line 1" in report.errors[0]["message"]


def test_id_of_a_rejected_line_does_not_block_a_later_valid_one(tmp_path):
    report = validate_lines(tmp_path, [line(GOOD, id="x", messages=[]), line(GOOD, id="x")])
    assert (report.valid, report.rejected) == (1, 1) and codes_at(report, 2) == set()


class CollidingIndex(IdIndex):
    """Every id hashes alike: only reading the ids back can tell them apart."""

    _hash = staticmethod(lambda rid: 7)


@pytest.mark.parametrize("index_class", [IdIndex, CollidingIndex])
@pytest.mark.parametrize("run_max", [IdIndex.RUN_MAX, 48])
def test_id_index_answers_exactly_like_a_dict_across_runs_and_merges(index_class, run_max, monkeypatch):
    monkeypatch.setattr(IdIndex, "RUN_MAX", run_max)
    index, reference, rng = index_class(chunk=16), {}, random.Random(0)
    for number in range(1, 700):
        rid = f"id-{rng.randrange(400)}" if number % 7 else f"id-\u00e9-{number}"
        assert index.get(rid) == reference.get(rid), rid
        if rid not in reference:
            index.add(rid, number)
            reference[rid] = number
    assert len(index) == len(reference) and len(index.runs) > 1 and index.count > 300
    assert max(map(len, index.runs)) <= run_max
    assert all(list(run) == sorted(run) for run in index.runs)
    index.close()


def test_duplicate_ids_are_found_long_after_they_left_the_exact_dict(tmp_path, monkeypatch):
    monkeypatch.setattr(IdIndex, "CHUNK", 8)
    monkeypatch.setattr(IdIndex, "_hash", staticmethod(lambda rid: len(rid)))  # many collisions, few real repeats
    lines = [line(GOOD, id=f"r{i}") for i in range(100)] + [line(GOOD, id="r3"), line(GOOD, id="r77")]
    report = validate_lines(tmp_path, lines)
    assert (report.valid, report.rejected) == (100, 2)
    assert [(e["line"], e["code"]) for e in report.errors] == [(101, "duplicate_id"), (102, "duplicate_id")]
    assert "line 4" in report.errors[0]["message"] and "line 78" in report.errors[1]["message"]


def test_a_dataset_of_usual_size_keeps_its_ids_in_a_dict():
    index = IdIndex()
    for number in range(1, 30_001):
        index.add(f"id-{number}", number)
    assert index.runs == [] and index._spill is None and index.get("id-7") == 7


def test_parts_list_content_is_accepted_by_sagemaker_and_warned_by_bedrock():
    record = rec(messages=[{"role": "user", "content": [{"type": "text", "text": "What is 2 + 2?"}]}])
    assert check_record(record, "sagemaker") == ([], [])
    errors, warnings = check_record(record, "bedrock")
    assert errors == [] and [w.code for w in warnings] == ["content_not_string"]


def test_bedrock_rejects_tool_and_developer_roles_sagemaker_takes_them():
    record = rec(messages=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "q"}])
    assert check_record(record, "sagemaker")[0] == []
    assert [e.code for e in check_record(record, "bedrock")[0]] == ["bad_role"]


def test_bedrock_warns_on_reserved_markers_only():
    record = rec(messages=[{"role": "user", "content": "User: what is 2+2? [eos]"}])
    assert check_record(record, "sagemaker") == ([], [])
    assert [w.code for w in check_record(record, "bedrock")[1]] == ["reserved_marker"]


@pytest.mark.parametrize(("changes", "code"), [
    ({"reference_answer": ""}, "empty_reference_answer"),
    ({"reference_answer": {}}, "empty_reference_answer"),
    ({"reference_answer": None}, "empty_reference_answer"),
])
def test_empty_reference_answer_is_a_warning_not_a_rejection(changes, code):
    errors, warnings = check_record(rec(**changes))
    assert errors == [] and [w.code for w in warnings] == [code]


def test_absent_reference_answer_is_a_warning():
    record = rec()
    del record["reference_answer"]
    errors, warnings = check_record(record)
    assert errors == [] and [w.code for w in warnings] == ["missing_reference_answer"]


def test_multi_turn_and_last_turn_warnings():
    record = rec(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
    errors, warnings = check_record(record)
    assert errors == [] and {w.code for w in warnings} == {"multi_turn", "last_turn_not_user"}


def test_assistant_turn_with_only_tool_calls_needs_no_content():
    record = rec(messages=[
        {"role": "user", "content": "roll"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                                                               "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "content": "4", "tool_call_id": "c1"},
        {"role": "user", "content": "and again?"},
    ])
    assert check_record(record)[0] == []


def test_one_record_reports_every_broken_rule_at_once():
    record = {"id": 3, "messages": [{"role": "user", "content": ""}, {"role": "system", "content": "s"}],
              "reference_answer": 1, "tools": "none"}
    codes = {e.code for e in check_record(record)[0]}
    assert codes == {"bad_id", "empty_content", "system_not_first", "bad_reference_answer", "bad_tools"}


def test_messages_say_where_and_how_to_fix():
    errors, _ = check_record(rec(messages=[{"role": "usr", "content": "q"}]))
    bad_role = next(e for e in errors if e.code == "bad_role")
    assert bad_role.field == "messages[0].role"
    assert "'usr'" in bad_role.message and "user" in bad_role.message


def test_total_always_equals_valid_plus_rejected_and_input_is_untouched(tmp_path):
    lines = [raw for _, raw, _ in LINE_ERRORS] + [line(GOOD, id=f"g{i}") for i in range(5)]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines))  # no final newline: the last line still counts
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    report = validate_file(path, out_dir=tmp_path / "out", write_valid=True)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert report.total == len(lines) == report.valid + report.rejected
    assert (report.valid, report.rejected) == (5, len(LINE_ERRORS))
    rejected = (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()
    valid = (tmp_path / "out" / "valid.jsonl").read_text().splitlines()
    assert len(rejected) == report.rejected and len(valid) == report.valid
    assert [json.loads(r)["line"] for r in rejected] == list(range(1, len(LINE_ERRORS) + 1))
    assert all(json.loads(r)["message"] for r in rejected)
    json_shape = report.to_dict()
    assert set(json_shape) == {"total", "valid", "invalid", "warnings", "errors"}
    assert {tuple(sorted(e)) for e in json_shape["errors"]} == {("code", "id", "line", "message")}


def test_max_issues_caps_the_lists_but_not_the_counts(tmp_path):
    report = validate_lines(tmp_path, [b"x"] * 30, max_issues=10)
    assert report.rejected == 30 and len(report.errors) == 10 and report.truncated
    assert report.error_counts["invalid_json"] == 30
    assert len((tmp_path / "out" / "rejected.jsonl").read_text().splitlines()) == 30


def test_validate_records_rejects_non_dicts_and_nan_but_keeps_them_in_rejected(tmp_path):
    report = validate_records([rec(id="a"), ["not", "a", "dict"], rec(id="b", score=float("nan"))], out_dir=tmp_path)
    assert (report.valid, report.rejected) == (1, 2)
    assert codes_at(report, 2) == {"not_an_object"} and codes_at(report, 3) == {"non_finite_number"}
    rows = [json.loads(x) for x in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert rows[0]["record"] == ["not", "a", "dict"]
    assert [r["id"] for r in report.records] == ["a"]


def test_unknown_profile_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="bedrock"):
        validate_records([GOOD], profile="openai")


def test_typed_record_view_and_its_errors():
    typed = parse_record(rec(domain="algebra"))
    assert typed.messages[1].text == "What is 2 + 2?" and typed.metadata == {"domain": "algebra"}
    with pytest.raises(UserError, match=r"no_user_turn"):
        parse_record(rec(messages=[{"role": "system", "content": "s"}]))


SCHEMA_CASES = [json.loads(raw) for name, raw, code in LINE_ERRORS
                if code not in ("invalid_json", "not_an_object", "blank_line", "invalid_utf8", "non_finite_number",
                                "lone_surrogate", "invalid_escape")
                and name not in ("duplicate_tool_names", "tool_required_unknown")]  # beyond JSON Schema


@pytest.mark.parametrize("profile", ["sagemaker", "bedrock"])
def test_json_schema_agrees_with_the_validator(profile):
    validator = jsonschema.Draft202012Validator(json_schema(profile))
    jsonschema.Draft202012Validator.check_schema(json_schema(profile))
    good = [GOOD, rec(messages=[{"role": "user", "content": [{"type": "text", "text": "q"}]}]),
            rec(messages=[{"role": "tool", "content": "4"}, {"role": "user", "content": "q"}]),
            rec(reference_answer=""), rec(tools=[])]
    for record in good + SCHEMA_CASES:
        ours = not check_record(record, profile)[0]
        theirs = validator.is_valid(record)
        assert ours == theirs, (profile, record)


def test_unknown_key_is_found_even_without_a_role():
    codes = {e.code for e in check_record(rec(messages=[{"content": "q", "text": "q"}, {"role": "user", "content": "x"}]))[0]}
    assert codes == {"bad_role", "unknown_message_key"}
