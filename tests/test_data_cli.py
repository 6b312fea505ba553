"""`nbkit validate`: exit codes 0/1/2, the exact --json shape, --out files."""

from __future__ import annotations

import argparse
import json

import pytest

from nbkit.data.cli import register

GOOD = '{"id": "a", "messages": [{"role": "user", "content": "What is 2 + 2?"}], "reference_answer": "4"}'


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nbkit")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def files(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(GOOD + "\n" + GOOD.replace('"a"', '"b"') + "\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(GOOD.encode() + b"\n\n{broken\n" + GOOD.replace('"a"', '"c"').replace("user", "bot").encode())
    return good, bad


def test_all_valid_exits_0(files, capsys):
    assert run(["validate", str(files[0])]) == 0
    assert "2 valid, 0 rejected" in capsys.readouterr().out


def test_rejected_lines_exit_1_with_exact_json_shape(files, capsys):
    assert run(["validate", str(files[1]), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["total", "valid", "invalid", "warnings", "errors"]
    assert (out["total"], out["valid"], out["invalid"]) == (4, 1, 3)
    assert [(e["line"], e["id"], e["code"]) for e in out["errors"]] == [
        (2, None, "blank_line"), (3, None, "invalid_json"), (4, "c", "bad_role"), (4, "c", "no_user_turn")]
    assert all(set(e) == {"line", "id", "code", "message"} for e in out["errors"] + out["warnings"])


def test_unreadable_input_exits_2(tmp_path, capsys):
    assert run(["validate", str(tmp_path / "missing.jsonl"), "--json"]) == 2
    captured = capsys.readouterr()
    assert "file not found" in captured.err and "error" in json.loads(captured.out)


def test_empty_file_exits_1(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert run(["validate", str(empty)]) == 1
    assert "no lines" in capsys.readouterr().out


def test_out_dir_gets_rejected_valid_and_report(files, tmp_path):
    out = tmp_path / "report"
    assert run(["validate", str(files[1]), "--out", str(out), "--profile", "bedrock"]) == 1
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejected] == [2, 3, 4]
    assert [json.loads(x)["id"] for x in (out / "valid.jsonl").read_text().splitlines()] == ["a"]
    report = json.loads((out / "report.json").read_text())
    assert report["profile"] == "bedrock" and report["error_counts"] == {
        "blank_line": 1, "invalid_json": 1, "bad_role": 1, "no_user_turn": 1}


def test_max_line_bytes_option(files, capsys):
    assert run(["validate", str(files[0]), "--json", "--max-line-bytes", "20"]) == 1
    assert {e["code"] for e in json.loads(capsys.readouterr().out)["errors"]} == {"line_too_long"}


def test_registered_in_the_nbkit_command(files, capsys):
    from nbkit.cli import main

    assert main(["validate", str(files[0]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] == 2


def test_a_zero_byte_limit_is_refused_not_taken_as_the_default(files, capsys):
    with pytest.raises(SystemExit) as exit_:
        run(["validate", str(files[0]), "--max-line-bytes", "0"])
    assert exit_.value.code == 2
    assert "--max-line-bytes: 0 is not allowed: it must be at least 1" in capsys.readouterr().err
