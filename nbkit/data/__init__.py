"""The data stage: read, validate, profile, split and write Nova RFT JSONL, plus bundled sample tasks.

Records are plain dicts in the Nova RFT format. Later stages use `read_jsonl` and `load_split`; notebook 01
uses `prepare_data`; `nbkit validate` uses `validate_file`. Heavy libraries (pandas, matplotlib, boto3, RDKit)
are imported inside the functions that need them, so importing this package stays cheap.
"""

from nbkit.data.convert import read_table, records_from_table
from nbkit.data.explore import DataStage, prepare_data, run
from nbkit.data.io import DEFAULT_MAX_LINE_BYTES, UnreadableSource, load_split, read_jsonl, write_jsonl
from nbkit.data.profile import DataProfile, Finding, profile_data, token_counter
from nbkit.data.records import PROFILES, RftRecord, prompt_key, prompt_text
from nbkit.data.schema import json_schema
from nbkit.data.split import split_records
from nbkit.data.validate import (
    CODES,
    ValidationReport,
    check_record,
    parse_record,
    validate_file,
    validate_records,
)

__all__ = [
    "CODES",
    "DEFAULT_MAX_LINE_BYTES",
    "PROFILES",
    "DataProfile",
    "DataStage",
    "Finding",
    "RftRecord",
    "UnreadableSource",
    "ValidationReport",
    "check_record",
    "json_schema",
    "load_split",
    "parse_record",
    "prepare_data",
    "profile_data",
    "prompt_key",
    "prompt_text",
    "read_jsonl",
    "read_table",
    "run",
    "records_from_table",
    "split_records",
    "token_counter",
    "validate_file",
    "validate_records",
    "write_jsonl",
]

