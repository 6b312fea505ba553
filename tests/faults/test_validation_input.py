"""Fault family: JSONL lines that are valid to Python's json but not text or not numbers (issue 12, finding 3).

A lone surrogate ("\\ud800") and an overflowing number (1e999) were counted valid without --out and crashed
`nbkit validate --out` and notebook 01 with a traceback naming no line, leaving train.jsonl.tmp behind;
duplicate keys in one object passed silently.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbkit.cli import main
from nbkit.data import prepare_data, validate_file, validate_records, write_jsonl
from nbkit.data.io import read_jsonl
from nbkit.errors import UserError


def good(i: int, **extra) -> str:
    return json.dumps({"id": f"r{i}", "messages": [{"role": "user", "content": f"What is {i} + 1?"}],
                       "reference_answer": {"solution": str(i + 1)}, **extra})


def bad_line(kind: str, i: int) -> str:
    """A line Python's json reads without complaint (or almost), holding what JSON Lines must not."""
    content, extra = {
        "surrogate": ("half a pair \\ud800 here", ""),
        "surrogate_key": ("q", ', "\\udfff": 1'),
        "overflow": ("q", ', "score": 1e999'),
        "negative_overflow": ("q", ', "score": -2.5E+400'),
        "escape": ("C:\\\\path is fine, \\q is not", ""),
        "unicode_escape": ("bad \\u12G4", ""),
    }[kind]
    return (f'{{"id": "r{i}", "messages": [{{"role": "user", "content": "{content}"}}], '
            f'"reference_answer": "{i}"{extra}}}')


CODES = {"surrogate": "lone_surrogate", "surrogate_key": "lone_surrogate", "overflow": "non_finite_number",
         "negative_overflow": "non_finite_number", "escape": "invalid_escape", "unicode_escape": "invalid_escape"}


def _file(tmp_path: Path, kinds: list[str]) -> Path:
    """Good lines 1-3, then one bad line per kind, then good lines again."""
    lines = [good(i) for i in range(3)] + [bad_line(k, 10 + n) for n, k in enumerate(kinds)] + \
        [good(i) for i in range(20, 23)]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", sorted(CODES))
def test_each_line_is_rejected_with_its_own_code_and_line_number(tmp_path, kind):
    report = validate_file(_file(tmp_path, [kind]))  # no --out: these were once counted valid
    assert (report.total, report.valid, report.rejected) == (7, 6, 1)
    [error] = report.errors
    assert error["line"] == 4 and error["code"] == CODES[kind], error
    if kind == "surrogate":
        assert "messages[0].content" in error["message"] and "\\ud800 at character 13" in error["message"]
    if kind == "overflow":
        assert "1e999 overflows to infinity" in error["message"]


def test_validate_out_never_crashes_and_keeps_every_line(tmp_path, capsys):
    kinds = sorted(CODES)
    src = _file(tmp_path, kinds)
    before = src.read_bytes()
    out = tmp_path / "out"
    assert main(["validate", str(src), "--out", str(out), "--json"]) == 1
    body = json.loads(capsys.readouterr().out)
    assert (body["total"], body["valid"], body["invalid"]) == (12, 6, 6)
    assert [(e["line"], e["code"]) for e in body["errors"]] == [(4 + n, CODES[k]) for n, k in enumerate(kinds)]
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in rejected] == list(range(4, 10))
    assert [r["raw"] for r in rejected] == [bad_line(k, 10 + n) for n, k in enumerate(kinds)]  # byte for byte
    assert [r["id"] for r in read_jsonl(out / "valid.jsonl")] == ["r0", "r1", "r2", "r20", "r21", "r22"]
    assert json.loads((out / "report.json").read_text())["rejected"] == 6
    assert sorted(p.name for p in out.iterdir()) == ["rejected.jsonl", "report.json", "valid.jsonl"]
    assert src.read_bytes() == before


def test_notebook_01_stage_survives_and_leaves_no_temporary_file(tmp_path):
    src = _file(tmp_path, sorted(CODES))
    run = tmp_path / "run"
    stage = prepare_data(str(src), run_dir=str(run), eval_fraction=0.34, seed=0)
    assert stage.total == 12 and stage.rejected == 6 and len(stage.train) + len(stage.eval) == 6
    data = run / "data"
    assert sorted(p.name for p in data.iterdir()) == ["eval.jsonl", "rejected.jsonl", "report.json", "train.jsonl"]
    codes = [json.loads(x)["code"] for x in (data / "rejected.jsonl").read_text().splitlines()]
    assert sorted(codes) == sorted(CODES.values())


def test_a_table_with_infinity_is_rejected_by_row_and_bad_bytes_are_a_clear_error(tmp_path):
    # Tables go through pandas: 1e999 became inf, and a byte that is not UTF-8 stopped notebook 01 with a
    # raw UnicodeDecodeError naming no line.
    table = tmp_path / "qa.csv"
    table.write_text("question,answer\nfine?,1\nbig?,1e999\nalso fine?,3\n")
    run = tmp_path / "run"
    stage = prepare_data(str(table), run_dir=str(run), eval_fraction=0.5, seed=0)
    assert stage.total == 3 and stage.rejected == 1 and len(stage.train) + len(stage.eval) == 2
    rows = [json.loads(x) for x in (run / "data" / "rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["line"], r["code"]) for r in rows] == [(2, "non_finite_number")]
    assert sorted(p.name for p in (run / "data").iterdir()) == [
        "eval.jsonl", "rejected.jsonl", "report.json", "train.jsonl"]
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"question,answer\nfine?,1\ncaf\xe9?,2\n")
    with pytest.raises(UserError, match=r"latin.csv: line 3, byte 4 \(b'\\xe9'\) is not UTF-8; re-encode"):
        prepare_data(str(latin), run_dir=str(tmp_path / "run2"))


def test_in_memory_records_with_surrogates_are_rejected_and_written_safely(tmp_path):
    records = [{"id": "\ud800", "messages": [{"role": "user", "content": "q"}]},
               {"id": "ok", "messages": [{"role": "user", "content": "x\udc80y"}]},
               {"id": "fine", "messages": [{"role": "user", "content": "q"}]}]
    report = validate_records(records, out_dir=tmp_path)
    assert (report.valid, report.rejected) == (1, 2)
    assert [e["code"] for e in report.errors] == ["lone_surrogate", "lone_surrogate"]
    assert report.errors[1]["message"].startswith("messages[0].content: unpaired surrogate \\udc80")
    rows = (tmp_path / "rejected.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 2 and "\\\\ud800" in rows[0]  # the record kept as its repr: nothing lost


@pytest.mark.parametrize("profile, valid", [("sagemaker", True), ("bedrock", False)])
def test_duplicate_keys_are_reported(tmp_path, profile, valid):
    dup = ('{"id": "d", "messages": [{"role": "user", "content": "first", "content": "second"}], '
           '"reference_answer": "1", "reference_answer": "2"}')
    path = tmp_path / "in.jsonl"
    path.write_text(good(1) + "\n" + dup + "\n")
    report = validate_file(path, profile, keep_records=True)
    issues = report.warnings if valid else report.errors
    found = [e for e in issues if e["code"] == "duplicate_key"]
    assert [e["line"] for e in found] == [2] and "'content', 'reference_answer'" in found[0]["message"]
    assert report.valid == (2 if valid else 1)
    if valid:  # read as Python's json reads it: the last value wins
        assert report.records[1]["messages"][0]["content"] == "second"
        assert report.records[1]["reference_answer"] == "2"


def test_write_jsonl_never_leaves_a_temporary_file(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(good(0) + "\n")
    for bad in ({"id": "x", "score": float("inf")}, {"id": "\ud800"}):
        with pytest.raises(UserError, match="record 2 .*cannot be written"):
            write_jsonl(path, [json.loads(good(1)), bad])
        assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]
        assert path.read_text() == good(0) + "\n"  # the earlier file is intact


def test_no_mangled_line_crashes_validation_or_reaches_valid_jsonl_unreadable(tmp_path):
    # Byte-level mutations of good lines (cuts, flips, inserted escapes and numbers): whatever a line becomes,
    # it is valid or rejected with a code, and everything written to valid.jsonl reads back clean.
    import random

    rng = random.Random(12)
    inserts = [b"\\ud800", b"\\udc00\\ud800", b"\\", b"\\u00", b"1e400", b"NaN", b'"id": 1, ', b"\xff", b"\x00",
               b'"\\ud83d\\ude00"', b"]", b"{", b'"k": 1, "k": 2, ', b"-0", b"1" * 5000]
    lines = []
    for i in range(1500):
        raw = bytearray(good(i, tools=[]).encode())
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(raw))
            choice = rng.random()
            if choice < 0.5:
                raw[at:at] = rng.choice(inserts)
            elif choice < 0.8:
                raw[at] = rng.randrange(256)
            else:
                del raw[at:]
                break
        lines.append(bytes(raw).replace(b"\n", b" "))
    src = tmp_path / "fuzz.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    for profile in ("sagemaker", "bedrock"):
        out = tmp_path / profile
        report = validate_file(src, profile, out, write_valid=True)
        assert report.total == 1500 == report.valid + report.rejected
        assert report.rejected > 500 and set(report.error_counts) >= {"invalid_json", "lone_surrogate"}
        rewritten = validate_file(out / "valid.jsonl", profile)
        assert rewritten.total == report.valid and rewritten.rejected == 0
        assert len((out / "rejected.jsonl").read_bytes().splitlines()) == report.rejected
