"""Question/answer tables (CSV, TSV, Parquet, JSONL, a DataFrame) into Nova RFT records."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nbkit.data.records import KNOWN_FIELDS
from nbkit.errors import UserError


def read_table(path: str | os.PathLike) -> Any:
    """A pandas DataFrame from .csv, .tsv, .parquet, .jsonl or .json (chosen by the file's suffix)."""
    import pandas as pd

    path = Path(path)
    readers = {
        ".csv": lambda p: pd.read_csv(p, keep_default_na=False, na_values=[""]),
        ".tsv": lambda p: pd.read_csv(p, sep="\t", keep_default_na=False, na_values=[""]),
        ".parquet": pd.read_parquet,
        ".jsonl": lambda p: pd.read_json(p, lines=True),
        ".json": pd.read_json,
    }
    if path.suffix.lower() not in readers:
        raise UserError(f"cannot read {path}: use a .csv, .tsv, .parquet, .jsonl or .json table")
    if not path.exists():
        raise UserError(f"table not found: {path}")
    try:
        return readers[path.suffix.lower()](path)
    except UnicodeDecodeError:
        raise UserError(f"{path}: {_first_bad_byte(path)} is not UTF-8; re-encode the file as UTF-8 "
                        "(e.g. iconv -f latin1 -t utf-8)") from None
    except (ValueError, pd.errors.ParserError) as exc:  # malformed CSV/JSON, a parquet that is not one
        raise UserError(f"cannot read {path} as a table: {exc}") from None


def _first_bad_byte(path: Path) -> str:
    """'line L, byte B (b'\\xNN')' of the first byte of a file that is not UTF-8, read in bounded memory."""
    import codecs

    decoder, line = codecs.getincrementaldecoder("utf-8")(), 1
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                before = chunk[:max(exc.start, 0)]
                line += before.count(b"\n")
                column = len(before) - before.rfind(b"\n")
                return f"line {line}, byte {column} ({chunk[exc.start:exc.start + 1]!r})"
            line += chunk.count(b"\n")
    return "a byte"


def _rows(table: Any) -> list[Mapping[str, Any]]:
    if hasattr(table, "to_dict") and hasattr(table, "columns"):
        return table.to_dict(orient="records")
    if isinstance(table, (str, os.PathLike)):
        return read_table(table).to_dict(orient="records")
    if isinstance(table, Iterable):
        return list(table)
    raise UserError(f"expected a DataFrame, a list of rows or a table file, got {type(table).__name__}")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip()
    )


def _plain(value: Any) -> Any:
    """numpy scalars to Python, integral floats (pandas turns int columns with gaps into floats) to int."""
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def records_from_table(
    table: Any,
    question: str = "question",
    answer: str = "answer",
    *,
    system_prompt: str = "",
    answer_key: str = "solution",
    id_column: str = "",
    id_prefix: str = "row",
    metadata: list[str] | None = None,
) -> list[dict[str, Any]]:
    """One RFT record per row: the `question` column becomes the user turn, `answer` the reference answer.

    `answer_key` wraps the answer as {answer_key: answer} (the shape `builtin:` graders read); "" keeps the bare
    value. `metadata` columns (default: every other column) become top-level fields that reach the reward
    function. Ids come from `id_column` or "<id_prefix>-<row number>". A row with an empty question or answer
    is an error naming the rows, never a silently dropped record.
    """
    rows = _rows(table)
    if not rows:
        raise UserError("the table has no rows")
    columns = list(rows[0].keys())
    for name in (question, answer, id_column):
        if name and name not in columns:
            raise UserError(f"column {name!r} not in the table; its columns are: {', '.join(map(str, columns))}")
    extra = [c for c in columns if c not in (question, answer, id_column)] if metadata is None else metadata
    clash = sorted(set(extra) & KNOWN_FIELDS)
    if clash:
        raise UserError(f"metadata column(s) {clash} would overwrite RFT record fields; rename them")
    bad = [i + 1 for i, row in enumerate(rows) if _missing(row.get(question)) or _missing(row.get(answer))]
    if bad:
        shown = ", ".join(map(str, bad[:20])) + (" ..." if len(bad) > 20 else "")
        raise UserError(
            f"{len(bad)} row(s) have an empty {question!r} or {answer!r} (rows {shown}, counted from 1); "
            "fill them in or remove them from the table"
        )
    records = []
    for i, row in enumerate(rows, start=1):
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        messages.append({"role": "user", "content": str(row[question]).strip()})
        value = _plain(row[answer])
        value = value.strip() if isinstance(value, str) else value
        if not answer_key and not isinstance(value, (str, dict)):
            value = str(value)  # a bare reference answer must be a string or an object
        record: dict[str, Any] = {
            "id": str(_plain(row[id_column])) if id_column else f"{id_prefix}-{i:06d}",
            "messages": messages,
            "reference_answer": {answer_key: value} if answer_key else value,
        }
        for name in extra:
            if name not in row:
                raise UserError(f"metadata column {name!r} not in the table; columns are: {', '.join(columns)}")
            if not _missing(row[name]):
                record[name] = _plain(row[name])
        records.append(record)
    return records
