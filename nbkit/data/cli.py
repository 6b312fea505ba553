"""`nbkit validate PATH [--profile sagemaker|bedrock] [--json] [--out DIR]`.

Exit codes: 0 every line is valid, 1 some line is rejected (or the file holds no lines), 2 the input cannot be
read at all. Imports stay inside the handler so `nbkit --help` answers at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nbkit.cli import number_arg

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_UNREADABLE = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `validate` to the `nbkit` command."""
    parser = subparsers.add_parser(
        "validate",
        help="check a Nova RFT JSONL file line by line",
        description="Validate every line of a Nova RFT JSONL file (local path or s3:// URI) and report each "
        "rejected line with its number (from 1), id, error code and a fix. The input is never modified. "
        "Exit 0 if every line is valid, 1 if any line is rejected or the file is empty, 2 if it cannot be read.",
    )
    parser.add_argument("path", help="the JSONL file: a local path or s3://bucket/key")
    parser.add_argument("--profile", choices=("sagemaker", "bedrock"), default="sagemaker",
                        help="rules to apply: sagemaker (default) or the stricter bedrock")
    parser.add_argument("--json", action="store_true",
                        help='print {"total", "valid", "invalid", "warnings", "errors"} as JSON on stdout')
    parser.add_argument("--out", metavar="DIR",
                        help="write rejected.jsonl, valid.jsonl and report.json into DIR")
    parser.add_argument("--max-line-bytes", type=number_arg(int, 1), default=None,
                        help="reject lines longer than this many bytes, at least 1 (default 1,000,000)")
    parser.set_defaults(func=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    """Handler of `nbkit validate`: returns the exit code."""
    from nbkit.data.io import DEFAULT_MAX_LINE_BYTES, UnreadableSource
    from nbkit.data.validate import validate_file

    limit = DEFAULT_MAX_LINE_BYTES if args.max_line_bytes is None else args.max_line_bytes
    try:
        report = validate_file(args.path, args.profile, args.out, max_line_bytes=limit, write_valid=bool(args.out))
    except UnreadableSource as exc:
        if args.json:
            print(json.dumps({"error": str(exc)}))
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    if args.out:
        (Path(args.out) / "report.json").write_text(
            json.dumps(report.summary() | report.to_dict(), indent=2, ensure_ascii=False)
        )
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
        if report.truncated:
            print("note: the error/warning lists were cut at 100,000 entries; counts and rejected.jsonl are complete",
                  file=sys.stderr)
    else:
        print(report.describe())
        for item in report.errors[:20]:
            print(f"  line {item['line']}: [{item['code']}] {item['message']}")
        if len(report.errors) > 20:
            print(f"  ... {len(report.errors) - 20:,} more errors" + ("" if args.out else " (use --out DIR or --json)"))
    return EXIT_OK if report.ok else EXIT_REJECTED
