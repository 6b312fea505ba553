"""Reading and writing JSONL: local files, s3:// URIs (moto), the splits of a run."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from nbkit.data import UnreadableSource, load_split, read_jsonl, validate_file, write_jsonl
from nbkit.data.io import split_s3_uri
from nbkit.errors import UserError

RECORDS = [{"id": f"r{i}", "messages": [{"role": "user", "content": f"What is {i} + 1?"}],
            "reference_answer": {"solution": str(i + 1)}} for i in range(5)]


def test_write_then_read_round_trips_unicode_and_order(tmp_path):
    records = [*RECORDS, {"id": "ü", "messages": [{"role": "user", "content": "Grüße, 你好"}], "reference_answer": "ok"}]
    path = tmp_path / "sub" / "x.jsonl"
    assert write_jsonl(path, records) == len(records)
    assert list(read_jsonl(path)) == records
    assert "你好" in path.read_text(encoding="utf-8")  # written as UTF-8, not \\u escapes
    assert not (tmp_path / "sub" / "x.jsonl.tmp").exists()


def test_write_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        write_jsonl(tmp_path / "x.jsonl", [{"v": float("nan")}])


def test_read_jsonl_names_the_bad_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n{oops\n")
    reader = read_jsonl(path)
    assert next(reader) == RECORDS[0]
    with pytest.raises(UserError, match=r"line 2.*nbkit validate"):
        next(reader)


def test_read_jsonl_rejects_non_objects_and_nan(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text("[1]\n")
    with pytest.raises(UserError, match="expected a JSON object"):
        list(read_jsonl(path))
    path.write_text('{"v": NaN}\n')
    with pytest.raises(UserError, match="NaN"):
        list(read_jsonl(path))


@pytest.mark.parametrize("where", ["missing", "folder"])
def test_unreadable_local_sources(tmp_path, where):
    target = tmp_path / "nope.jsonl" if where == "missing" else tmp_path
    with pytest.raises(UnreadableSource):
        validate_file(target)


def test_load_split_reads_the_run_folder_and_explains_a_missing_one(tmp_path):
    write_jsonl(tmp_path / "run" / "data" / "train.jsonl", RECORDS)
    assert load_split(tmp_path / "run", "train") == RECORDS
    with pytest.raises(UserError, match="01_explore_data"):
        load_split(tmp_path / "run", "eval")
    with pytest.raises(UserError, match="unknown split"):
        load_split(tmp_path / "run", "test")


@pytest.fixture
def s3(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="rft-data")
        yield client


def test_validate_and_read_from_s3(s3, tmp_path):
    body = b"\n".join(json.dumps(r).encode() for r in RECORDS) + b"\n\xff\xfe\n"
    s3.put_object(Bucket="rft-data", Key="sets/train.jsonl", Body=body)
    report = validate_file("s3://rft-data/sets/train.jsonl", out_dir=tmp_path)
    assert (report.total, report.valid, report.rejected) == (6, 5, 1)
    assert report.errors[0]["line"] == 6 and report.errors[0]["code"] == "invalid_utf8"
    s3.put_object(Bucket="rft-data", Key="sets/clean.jsonl", Body=body.rsplit(b"\n", 2)[0])
    assert list(read_jsonl("s3://rft-data/sets/clean.jsonl")) == RECORDS


def test_missing_s3_object_is_unreadable_with_a_hint(s3):
    with pytest.raises(UnreadableSource, match=r"NoSuchKey.*credentials"):
        validate_file("s3://rft-data/none.jsonl")


def test_s3_uri_needs_bucket_and_key():
    assert split_s3_uri("s3://b/k/x.jsonl") == ("b", "k/x.jsonl")
    with pytest.raises(UnreadableSource, match="s3://bucket/path"):
        split_s3_uri("s3://just-a-bucket")


@pytest.mark.parametrize("chunk", [1, 2, 7, 64])
def test_iter_lines_is_the_same_whatever_the_chunk_size(monkeypatch, chunk):
    # Lines cross chunk boundaries anywhere: their numbers, bytes, sizes and the over-long flag must not change.
    import io
    import random

    from nbkit.data import io as nio

    rng = random.Random(chunk)
    pieces = [b"", b"\r", b"ab", b"x" * 9, b"y" * 10, b"z" * 11, b"w" * 10 + b"\r", b"v" * 11 + b"\r", b"u" * 40]
    text = b"\n".join(rng.choice(pieces) for _ in range(300)) + rng.choice([b"", b"\n", b"tail", b"q" * 30])
    limit = 10

    def expected():
        parts = text.split(b"\n")
        if parts[-1] == b"":
            parts.pop()
        for number, data in enumerate(parts, 1):
            whole = len(data) <= limit or (len(data) == limit + 1 and data.endswith(b"\r"))
            yield (number, data if whole else data[:nio._PREVIEW_BYTES], len(data), not whole)

    monkeypatch.setattr(nio, "_CHUNK", chunk)
    got = [tuple(line) for line in nio.iter_lines(io.BytesIO(text), max_line_bytes=limit)]
    assert got == list(expected())
