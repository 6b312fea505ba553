"""Streaming JSONL input and output, for local paths and s3:// URIs.

Files are read in binary and split on b"\\n" only, so each line is decoded on its own: one line of invalid
UTF-8 or a stray BOM never stops the rest of the file, and a huge line is skipped in bounded memory.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

from nbkit.errors import UserError
from nbkit.layout import RunLayout, Split

DEFAULT_MAX_LINE_BYTES = 1_000_000  # far above Nova's 32k-token max_length; a longer line is a broken file
_PREVIEW_BYTES = 2_000  # what rejected.jsonl keeps of a line that is too long to keep whole
_CHUNK = 1 << 20


class UnreadableSource(UserError):
    """The input cannot be read at all (missing file, no permission, no such S3 object): `nbkit validate` exits 2."""


class RawLine(NamedTuple):
    """One line as bytes, without its b"\\n". A line over the limit is `too_long`: `data` holds only its first
    bytes (a preview) and `size` its full length."""

    number: int
    data: bytes
    size: int
    too_long: bool = False


def is_s3(source: str | os.PathLike) -> bool:
    return str(source).startswith("s3://")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """("bucket", "key/of/object") from "s3://bucket/key/of/object"."""
    rest = uri[len("s3://"):]
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise UnreadableSource(f"{uri!r} is not a full S3 object URI; write it as s3://bucket/path/to/file.jsonl")
    return bucket, key


class _StreamingRaw(io.RawIOBase):
    """Adapts botocore's StreamingBody to a raw stream so io.BufferedReader gives readline(limit)."""

    def __init__(self, body: Any):
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


def _open_s3(uri: str) -> IO[bytes]:
    import boto3  # lazy: boto3 costs ~0.3 s to import and most runs read local files
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3_uri(uri)
    try:
        body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise UnreadableSource(
            f"cannot read {uri}: {code or exc}. Check the bucket and key exist and that your AWS credentials "
            "(the standard chain: AWS_PROFILE, environment, instance role) may call s3:GetObject on it"
        ) from None
    except BotoCoreError as exc:
        raise UnreadableSource(f"cannot read {uri}: {exc}. Configure AWS credentials and a region") from None
    return io.BufferedReader(_StreamingRaw(body), buffer_size=_CHUNK)


def open_binary(source: str | os.PathLike) -> IO[bytes]:
    """Open a local file or s3:// object for binary reading; UnreadableSource says why it cannot be."""
    if is_s3(source):
        return _open_s3(str(source))
    path = Path(source)
    if path.is_dir():
        raise UnreadableSource(f"{path} is a folder; give the path of a .jsonl file inside it")
    try:
        return open(path, "rb", buffering=_CHUNK)  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        raise UnreadableSource(f"file not found: {path} (resolved to {path.resolve()})") from None
    except OSError as exc:
        raise UnreadableSource(f"cannot open {path}: {exc.strerror}") from None


def iter_lines(stream: IO[bytes], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[RawLine]:
    """Every line of a binary stream, numbered from 1, in memory bounded by `max_line_bytes`.

    The final line counts even without a trailing newline; a line longer than the limit comes back as its
    first bytes with its full size, and reading carries on at the next line. The stream is read in 1 MiB
    chunks split in C: a readline() per line costs more than validating many a line.
    """
    keep = max_line_bytes + 1  # a line of max_line_bytes + b"\r" is still whole
    held = max(keep, _PREVIEW_BYTES)  # what is kept of a line in progress: all of it, or its preview
    number, size, head = 0, 0, bytearray()  # the line in progress across chunks: its length and first bytes
    make = tuple.__new__
    while chunk := stream.read(_CHUNK):
        lines = chunk.split(b"\n")
        tail = lines.pop()
        if size and lines:  # the line in progress ends in this chunk
            first = lines[0]
            lines[0] = bytes(head) + first[:held]
            total = size + len(first)
            size, head = 0, bytearray()
            if total > keep or (total == keep and lines[0][-1:] != b"\r"):
                number += 1
                yield make(RawLine, (number, lines[0][:_PREVIEW_BYTES], total, True))
                del lines[0]
        for data in lines:
            number += 1
            n = len(data)
            if n < keep or (n == keep and data[-1:] == b"\r"):
                yield make(RawLine, (number, data, n, False))
            else:
                yield make(RawLine, (number, data[:_PREVIEW_BYTES], n, True))
        if tail:
            if len(head) < held:
                head += tail[:held - len(head)]
            size += len(tail)
    if size:
        data = bytes(head)
        number += 1
        if size < keep or (size == keep and data[-1:] == b"\r"):
            yield make(RawLine, (number, data, size, False))
        else:
            yield make(RawLine, (number, data[:_PREVIEW_BYTES], size, True))


class NonFiniteNumber(ValueError):
    """NaN, Infinity or -Infinity in a line, or a number so large it overflows to infinity (1e999): Python's
    json accepts them, JSON (and other readers) do not."""


class DuplicateKeys(ValueError):
    """An object of the line names a key twice (raised by the validating decoder; see decode_keeping_last)."""


def _reject_constant(name: str) -> Any:
    raise NonFiniteNumber(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    """A JSON number with a fraction or exponent; one that overflows a double is refused, not read as inf."""
    value = float(text)
    if value in _INFINITIES:
        raise NonFiniteNumber(f"the number {text[:40]} overflows to infinity")
    return value


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's members as a dict, refusing a key named twice (dict() would keep the last silently)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise DuplicateKeys()
    return obj


_INFINITIES = (float("inf"), float("-inf"))
# Decoders built once (json.loads(..., parse_constant=...) would build one per line). STRICT_DECODER reads
# files nbkit wrote or validated; VALIDATING_DECODER also refuses duplicate keys, for `decode` to report.
STRICT_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
VALIDATING_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float,
                                      object_pairs_hook=_unique_pairs)
_SPACE = re.compile(r"[ \t\n\r]*")
_SPACE_CHARS = frozenset(" \t\n\r")


def decode(text: str, decoder: json.JSONDecoder = STRICT_DECODER) -> Any:
    """`decoder.decode(text)`, calling the C scanner directly (the Python wrapper costs a quarter of a line's
    decoding); the same errors, positions and messages."""
    try:
        value, end = decoder.scan_once(text, 0)  # type: ignore[attr-defined]  # set in __init__; typeshed omits it
    except StopIteration as err:
        if text[:1] in _SPACE_CHARS:  # leading whitespace: let the full decoder skip it
            return decoder.decode(text)
        raise json.JSONDecodeError("Expecting value", text, err.value) from None
    if end != len(text):
        end = _SPACE.match(text, end).end()  # type: ignore[union-attr]  # `[ \t\n\r]*` matches everywhere
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
    return value


def decode_keeping_last(text: str) -> tuple[Any, list[str]]:
    """The value as Python's json reads it (a repeated key keeps its last value) and the repeated keys."""
    repeated: list[str] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    repeated.append(key)
                seen.add(key)
        return obj

    decoder = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float,
                               object_pairs_hook=pairs_hook)
    return decode(text, decoder), list(dict.fromkeys(repeated))


def read_jsonl(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Stream the records of a valid JSONL file (local or s3://), one dict per line.

    For files nbkit wrote or validated: the first malformed line raises UserError naming the file and line;
    run `nbkit validate` for a full report of a file you did not make.
    """
    with open_binary(path) as stream:
        for line in iter_lines(stream):
            data = line.data
            if data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
            try:
                record = decode(data.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                raise UserError(
                    f"{path}, line {line.number}: not a JSON record ({exc}); "
                    f"run `nbkit validate {path}` to find every bad line"
                ) from None
            if not isinstance(record, dict):
                raise UserError(
                    f"{path}, line {line.number}: expected a JSON object, got {type(record).__name__}; "
                    f"run `nbkit validate {path}` to find every bad line"
                )
            yield record


def dumps(record: dict[str, Any]) -> str:
    """One record as one JSONL line: UTF-8 text, no NaN (which is not JSON), key order kept."""
    return json.dumps(record, ensure_ascii=False, allow_nan=False)


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> int:
    """Write records atomically (a temporary file renamed into place), so a crash never leaves half a split."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as out:
            for record in records:
                try:
                    line = dumps(record)
                    out.write(line)
                except (TypeError, ValueError) as exc:  # UnicodeEncodeError (a lone surrogate) is a ValueError
                    rid = record.get("id") if isinstance(record, dict) else None
                    raise UserError(f"{path}: record {count + 1} (id {rid!r:.60}) cannot be written as JSON "
                                    f"Lines ({exc}); validate the records first") from None
                out.write("\n")
                count += 1
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # gone after the rename; removed when anything failed
    return count


SPLITS: tuple[Split, ...] = ("train", "eval")


def split_path(run_dir: str | os.PathLike, split: str) -> Path:
    """Where notebook 01 writes a split: <run>/data/<split>.jsonl."""
    for known in SPLITS:
        if split == known:
            return RunLayout(run_dir).split(known)
    raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")


def load_split(run_dir: str | os.PathLike, split: str) -> list[dict[str, Any]]:
    """The clean records notebook 01 wrote for a split ("train" or "eval") of a run."""
    path = split_path(run_dir, split)
    if not path.exists():
        raise UserError(
            f"{path} does not exist: run notebook 01_explore_data for this run first "
            f"(nbkit run --params <file> --only 01 --out {run_dir or 'runs/interactive'})"
        )
    return list(read_jsonl(path))
