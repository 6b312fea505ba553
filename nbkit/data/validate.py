"""Line-by-line validation of Nova RFT JSONL: every line is accounted for, nothing is dropped silently.

Each line ends up valid (possibly with warnings) or rejected with one or more coded errors; rejected lines go
to `rejected.jsonl` with their line number, id, codes, messages and raw text, so `valid + rejected == total`
always holds and a user can fix the input file they still have untouched.

The checks are hand-written on plain dicts: they report every broken rule of a record at once with a field
path and a fix, and run several times faster than a generic schema validator (see bench/validate.py).
"""

from __future__ import annotations

import json
import operator
import os
import re
import struct
import tempfile
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeGuard

from nbkit.data.io import (
    DEFAULT_MAX_LINE_BYTES,
    VALIDATING_DECODER,
    DuplicateKeys,
    NonFiniteNumber,
    RawLine,
    decode,
    decode_keeping_last,
    dumps,
    iter_lines,
    open_binary,
)
from nbkit.data.records import MESSAGE_KEYS, PROFILES, RESERVED_RE, ROLES, SYSTEM_ROLES, Profile, RftRecord
from nbkit.errors import UserError
from nbkit.layout import REJECTED

ERROR = "error"
WARNING = "warning"

# Every code a line can get: severity and what it means. Errors reject the line; warnings keep it.
CODES: dict[str, tuple[str, str]] = {
    # the line itself
    "blank_line": (ERROR, "the line is empty or only whitespace"),
    "bom": (WARNING, "the line starts with a UTF-8 byte order mark, which was removed"),
    "crlf": (WARNING, "the line ends with \\r\\n (Windows line ending), which was read as \\n"),
    "invalid_utf8": (ERROR, "the line is not valid UTF-8"),
    "line_too_long": (ERROR, "the line is longer than the maximum line size"),
    "invalid_json": (ERROR, "the line is not valid JSON"),
    "invalid_escape": (ERROR, "a string holds a backslash escape JSON does not define (\\x, \\u12, ...)"),
    "lone_surrogate": (ERROR, "a string holds an unpaired \\ud800-\\udfff escape, which is not text"),
    "non_finite_number": (ERROR, "the line holds NaN, Infinity or a number that overflows to infinity"),
    "duplicate_key": (WARNING, "an object names a key twice; the last value is kept (an error under bedrock)"),
    "not_an_object": (ERROR, "the line is JSON but not an object"),
    # the record
    "bad_id": (ERROR, "id is present but not a non-blank string"),
    "duplicate_id": (ERROR, "id is used by an earlier valid line"),
    "missing_messages": (ERROR, "no messages key"),
    "messages_not_list": (ERROR, "messages is not a list"),
    "empty_messages": (ERROR, "messages is an empty list"),
    "message_not_object": (ERROR, "a message is not an object"),
    "bad_role": (ERROR, "a message's role is missing or not allowed by the profile"),
    "empty_content": (ERROR, "a message's content is missing, blank or an empty list"),
    "bad_content": (ERROR, "a message's content is neither a string nor a list of text parts"),
    "bad_content_part": (ERROR, "a content part is not {\"type\": \"text\", \"text\": \"...\"}"),
    "content_not_string": (WARNING, "content is a list of parts; Bedrock's validator takes strings only"),
    "reserved_marker": (WARNING, "content holds a marker Bedrock's validator refuses (User:, [EOS], <image>, ...)"),
    "unknown_message_key": (ERROR, "a message has a key other than role, content, tool_calls, tool_call_id"),
    "bad_tool_calls": (ERROR, "a message's tool_calls or tool_call_id is malformed"),
    "no_user_turn": (ERROR, "no message has role user"),
    "system_not_first": (ERROR, "a system message is not the first message"),
    "multi_turn": (WARNING, "the prompt has assistant or tool turns; managed Nova RFT takes single-turn prompts"),
    "last_turn_not_user": (WARNING, "the last message is not a user turn, so the model does not answer a question"),
    "missing_reference_answer": (WARNING, "no reference_answer: the reward function gets nothing to compare with"),
    "empty_reference_answer": (WARNING, "reference_answer is empty"),
    "bad_reference_answer": (ERROR, "reference_answer is neither a string nor an object"),
    "bad_tools": (ERROR, "tools is not a list"),
    "bad_tool_schema": (ERROR, "a tool does not follow the function-tool schema"),
    "duplicate_tool_name": (ERROR, "two tools of a record share a name"),
}


class Problem(NamedTuple):
    """One broken rule: its code (see CODES), the field it concerns ("" = the line) and a message with the fix."""

    code: str
    field: str
    message: str


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _nonblank(value: Any) -> TypeGuard[str]:
    return type(value) is str and bool(value.strip())


def check_record(record: dict[str, Any], profile: str = "sagemaker") -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings) of one parsed record under `profile`; an empty error list means it is valid."""
    errors: list[Problem] = []
    warnings: list[Problem] = []
    if "id" in record and not _nonblank(record["id"]):
        errors.append(Problem(
            "bad_id", "id",
            f"id is {_show(record['id'])}; make it a non-blank string such as \"ex-0001\" or remove the key",
        ))
    messages = record.get("messages")
    if messages is None:
        errors.append(Problem(
            "missing_messages", "messages",
            'no "messages" list; add e.g. "messages": [{"role": "user", "content": "..."}]',
        ))
    elif type(messages) is not list:
        errors.append(Problem(
            "messages_not_list", "messages",
            f"messages is a {type(messages).__name__}; it must be a list of {{role, content}} objects",
        ))
    elif not messages:
        errors.append(Problem("empty_messages", "messages", "messages is empty; add at least one user message"))
    else:
        _check_messages(messages, profile, errors, warnings)
    _check_reference(record, errors, warnings)
    if "tools" in record:
        _check_tools(record["tools"], errors)
    return errors, warnings


def _check_messages(messages: list[Any], profile: str, errors: list[Problem], warnings: list[Problem]) -> None:
    allowed = ROLES[profile]
    bedrock = profile == "bedrock"
    has_user = False
    has_turns = False
    for i, message in enumerate(messages):
        if type(message) is not dict:
            errors.append(Problem(
                "message_not_object", f"messages[{i}]",
                f"messages[{i}] is {_show(message)}; each message must be an object with role and content",
            ))
            continue
        role = message.get("role")
        if type(role) is not str or role not in allowed:
            hint = (
                " (Bedrock takes only system, user and assistant)" if bedrock and role in ROLES["sagemaker"] else ""
            )
            errors.append(Problem(
                "bad_role", f"messages[{i}].role",
                f"role is {_show(role)}{hint}; use one of: {', '.join(sorted(allowed))}",
            ))
        elif role == "user":
            has_user = True
        elif role in SYSTEM_ROLES:
            if i > 0:
                errors.append(Problem(
                    "system_not_first", f"messages[{i}].role",
                    f"a {role} message sits at position {i}; move it to the start (only one system message, first)",
                ))
        else:
            has_turns = True
        if len(message) != 2 or "role" not in message or "content" not in message:  # else: exactly role, content
            _check_message_keys(message, i, errors)
        content = message.get("content")
        if type(content) is not str or bedrock or not content or content.isspace():  # else: plain text, fine
            _check_content(message, role, f"messages[{i}]", bedrock, errors, warnings)
    if not has_user:
        errors.append(Problem(
            "no_user_turn", "messages", 'no message has role "user"; add the question the model must answer',
        ))
    if has_turns:
        warnings.append(Problem(
            "multi_turn", "messages",
            "the prompt has assistant/tool turns; SageMaker and Bedrock RFT take single-turn prompts "
            "(multi-turn needs Nova Forge)",
        ))
    last = messages[-1]
    if has_user and type(last) is dict and last.get("role") != "user":
        warnings.append(Problem(
            "last_turn_not_user", f"messages[{len(messages) - 1}]",
            f"the last message has role {last.get('role')!r}; end the prompt with the user turn to be answered",
        ))


def _check_message_keys(message: dict[str, Any], i: int, errors: list[Problem]) -> None:
    for key in message:
        if key not in MESSAGE_KEYS:
            errors.append(Problem(
                "unknown_message_key", f"messages[{i}].{key}",
                f"unknown message key {key!r}; messages take only role, content, tool_calls, tool_call_id "
                "(put record-level data at the top level of the record instead)",
            ))
    if "tool_calls" in message or "tool_call_id" in message:
        _check_tool_calls(message, f"messages[{i}]", errors)


def _check_content(
    message: dict[str, Any], role: Any, where: str, bedrock: bool, errors: list[Problem], warnings: list[Problem]
) -> None:
    content = message.get("content")
    if type(content) is str:
        if not content or content.isspace():
            if not (role == "assistant" and message.get("tool_calls")):
                errors.append(Problem("empty_content", f"{where}.content", "content is blank; write the message text"))
        elif bedrock and (found := RESERVED_RE.search(content)):
            marker = found.group(0)
            warnings.append(Problem(
                "reserved_marker", f"{where}.content",
                f"content contains {marker!r}, which Bedrock's validator refuses; rephrase or remove it",
            ))
        return
    if content is None:
        if not (role == "assistant" and message.get("tool_calls")):
            errors.append(Problem(
                "empty_content", f"{where}.content", "no content; add the message text as a string",
            ))
        return
    if type(content) is not list:
        errors.append(Problem(
            "bad_content", f"{where}.content",
            f"content is a {type(content).__name__}; use a string (or a list of {{type: text, text}} parts)",
        ))
        return
    if not content:
        errors.append(Problem("empty_content", f"{where}.content", "content is an empty list; write the message text"))
        return
    for j, part in enumerate(content):
        if not (type(part) is dict and part.get("type") == "text" and _nonblank(part.get("text"))
                and len(part) == 2):
            errors.append(Problem(
                "bad_content_part", f"{where}.content[{j}]",
                f"content part is {_show(part)}; each part must be {{\"type\": \"text\", \"text\": \"non-blank\"}}",
            ))
    if bedrock:
        warnings.append(Problem(
            "content_not_string", f"{where}.content",
            "content is a list of parts; Bedrock's validator takes strings only: join the parts' text",
        ))


def _check_tool_calls(message: dict[str, Any], where: str, errors: list[Problem]) -> None:
    if "tool_call_id" in message and not _nonblank(message["tool_call_id"]):
        errors.append(Problem(
            "bad_tool_calls", f"{where}.tool_call_id",
            f"tool_call_id is {_show(message['tool_call_id'])}; it must be the string id of the call it answers",
        ))
    if "tool_calls" not in message:
        return
    calls = message["tool_calls"]
    if type(calls) is not list:
        errors.append(Problem(
            "bad_tool_calls", f"{where}.tool_calls", f"tool_calls is {_show(calls)}; it must be a list of calls",
        ))
        return
    for j, call in enumerate(calls):
        fn = call.get("function") if type(call) is dict else None
        if type(fn) is not dict or not _nonblank(fn.get("name")):
            errors.append(Problem(
                "bad_tool_calls", f"{where}.tool_calls[{j}]",
                f"tool call is {_show(call)}; write {{\"type\": \"function\", \"function\": "
                "{\"name\": ..., \"arguments\": ...}}",
            ))


def _check_reference(record: dict[str, Any], errors: list[Problem], warnings: list[Problem]) -> None:
    if "reference_answer" not in record:
        warnings.append(Problem(
            "missing_reference_answer", "reference_answer",
            "no reference_answer; add one unless your reward function needs none (e.g. a rubric or a verifier)",
        ))
        return
    ref = record["reference_answer"]
    if ref is None or (type(ref) is str and not ref.strip()) or (type(ref) in (dict, list) and not ref):
        warnings.append(Problem(
            "empty_reference_answer", "reference_answer",
            f"reference_answer is {_show(ref)}; fill it in or remove records the reward cannot score",
        ))
    elif type(ref) not in (str, dict):
        errors.append(Problem(
            "bad_reference_answer", "reference_answer",
            f"reference_answer is a {type(ref).__name__} ({_show(ref)}); use a string or an object, "
            f'e.g. {{"solution": {_show(ref, 30)}}}',
        ))


def _check_tools(tools: Any, errors: list[Problem]) -> None:
    if type(tools) is not list:
        errors.append(Problem(
            "bad_tools", "tools", f"tools is {_show(tools)}; use a list of function tools, or [] for none",
        ))
        return
    seen: dict[str, int] = {}
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        problems = _tool_schema_problems(tool)
        for path, text in problems:
            errors.append(Problem("bad_tool_schema", f"{where}{path}", f"{text}; expected {{\"type\": \"function\", "
                                  "\"function\": {\"name\", \"description\", \"parameters\": {\"type\": \"object\", "
                                  "\"properties\": {...}, \"required\": [...]}}}"))
        name = tool.get("function", {}).get("name") if type(tool) is dict and type(tool.get("function")) is dict else None
        if _nonblank(name):
            if name in seen:
                errors.append(Problem(
                    "duplicate_tool_name", f"{where}.function.name",
                    f"tool name {name!r} is also used by tools[{seen[name]}]; tool names must be unique",
                ))
            else:
                seen[name] = i


def _tool_schema_problems(tool: Any) -> list[tuple[str, str]]:
    """(sub-path, what is wrong) for one tool; empty when it is well formed."""
    if type(tool) is not dict:
        return [("", f"tool is {_show(tool)}, not an object")]
    out = []
    if tool.get("type") != "function":
        out.append((".type", f"type is {_show(tool.get('type'))}, must be \"function\""))
    fn = tool.get("function")
    if type(fn) is not dict:
        return [*out, (".function", f"function is {_show(fn)}, must be an object")]
    for key in ("name", "description"):
        if not _nonblank(fn.get(key)):
            out.append((f".function.{key}", f"{key} is {_show(fn.get(key))}, must be a non-blank string"))
    params = fn.get("parameters")
    if type(params) is not dict:
        return [*out, (".function.parameters", f"parameters is {_show(params)}, must be a JSON-schema object")]
    if params.get("type") != "object":
        out.append((".function.parameters.type", f"type is {_show(params.get('type'))}, must be \"object\""))
    props = params.get("properties")
    if type(props) is not dict or not all(type(v) is dict for v in props.values()):
        out.append((".function.parameters.properties", f"properties is {_show(props)}, must map names to schemas"))
        props = {}
    required = params.get("required", [])
    if type(required) is not list or not all(type(r) is str for r in required):
        out.append((".function.parameters.required", f"required is {_show(required)}, must be a list of names"))
    else:
        missing = [r for r in required if r not in props]
        if missing:
            out.append((".function.parameters.required", f"required names {missing} are not in properties"))
    return out


def decode_line(raw: RawLine, max_line_bytes: int,
                profile: str = "sagemaker") -> tuple[Any, list[Problem], list[Problem]]:
    """Parse one raw line: (the JSON value or None, line-level errors, line-level warnings).

    Never raises for what a line holds: every way a line can be unreadable has its own code.
    """
    if raw.too_long:
        return None, [Problem(
            "line_too_long", "",
            f"the line is {raw.size:,} bytes, over the {max_line_bytes:,}-byte limit; shorten the record or "
            "raise the limit (--max-line-bytes)",
        )], []
    warnings: list[Problem] = []
    data = raw.data
    if data[-1:] == b"\r":
        data = data[:-1]
        warnings.append(Problem("crlf", "", "Windows line ending (\\r\\n); save the file with \\n line endings"))
    if data[:3] == b"\xef\xbb\xbf":
        data = data[3:]
        warnings.append(Problem("bom", "", "UTF-8 byte order mark removed; save the file as UTF-8 without BOM"))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [Problem(
            "invalid_utf8", "",
            f"invalid UTF-8 at byte {exc.start + 1} of the line ({data[exc.start:exc.start + 4]!r}); "
            "re-encode the file as UTF-8",
        )], warnings
    if not text or text.isspace():
        return None, [Problem("blank_line", "", "blank line; delete it (JSONL has one record per line)")], warnings
    repeated: Sequence[str] = ()
    try:
        try:
            value, end = _SCAN(text, 0)  # the C scanner itself: decode() minus a Python call, on the hot path
            if end != len(text):
                value = decode(text, VALIDATING_DECODER)  # trailing whitespace or data: the full rules
        except StopIteration:
            value = decode(text, VALIDATING_DECODER)  # leading whitespace, or nothing valid: the full rules
        except DuplicateKeys:  # rare: read it again the way Python's json does, noting every repeated key
            value, repeated = decode_keeping_last(text)
    except NonFiniteNumber as exc:
        return None, [Problem(
            "non_finite_number", "", f"{exc}; write null or a finite number, or quote it as a string",
        )], warnings
    except json.JSONDecodeError as exc:
        if exc.msg.startswith("Invalid \\"):  # "Invalid \escape", "Invalid \uXXXX escape"
            return None, [Problem(
                "invalid_escape", "", f"{exc.msg} at character {exc.pos + 1} ({text[exc.pos:exc.pos + 6]!r}); "
                "JSON allows only \\\" \\\\ \\/ \\b \\f \\n \\r \\t and \\uXXXX: escape the backslash as \\\\",
            )], warnings
        return None, [Problem(
            "invalid_json", "", f"invalid JSON at character {exc.pos + 1}: {exc.msg}; fix the syntax of this line",
        )], warnings
    except ValueError as exc:  # e.g. an integer literal beyond Python's 4300-digit limit
        return None, [Problem("invalid_json", "", f"unreadable JSON value: {exc}")], warnings
    except RecursionError:
        return None, [Problem("invalid_json", "", "JSON nested too deeply to read; flatten the record")], warnings
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):  # only an escape can make a lone surrogate
        where = lone_surrogate(value)
        if where:
            return None, [Problem("lone_surrogate", where[0], where[1])], warnings
    if type(value) is not dict:
        return None, [Problem(
            "not_an_object", "", f"the line is a JSON {type(value).__name__}, not an object {{...}} holding one record",
        )], warnings
    if repeated:
        problem = Problem(
            "duplicate_key", "",
            f"key(s) {', '.join(map(repr, repeated[:5]))} appear twice in one object; Python's json keeps the "
            "last value, other readers may keep the first or refuse the line: keep one",
        )
        if profile == "bedrock":  # AWS's Bedrock checker refuses it; the record's other checks still run
            return value, [problem], warnings
        warnings.append(problem)
    return value, [], warnings


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SCAN = VALIDATING_DECODER.scan_once  # type: ignore[attr-defined]  # set in __init__; typeshed omits it


def lone_surrogate(value: Any, path: str = "") -> tuple[str, str] | None:
    """(field path, message) of the first string (key or value) holding an unpaired surrogate, or None.

    The JSON decoder joins a proper pair (an escaped emoji) into one character, so what is left cannot be
    encoded as UTF-8, and writing the record anywhere would fail.
    """
    if type(value) is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return path, (f"unpaired surrogate \\u{ord(value[exc.start]):04x} at character {exc.start + 1} of "
                          "the string: it is half of a UTF-16 pair, not text; fix or remove the escape")
        return None
    if type(value) is dict:
        for key, item in value.items():
            where = lone_surrogate(key, f"{path}.<key>" if path else "<key>") or lone_surrogate(
                item, f"{path}.{key}" if path else str(key))
            if where:
                return where
    elif type(value) is list:
        for i, item in enumerate(value):
            where = lone_surrogate(item, f"{path}[{i}]")
            if where:
                return where
    return None


@dataclass
class ValidationReport:
    """What validating one source found. `valid + rejected == total` always.

    `errors`/`warnings` list one entry per problem ({line, id, code, message}), at most `max_issues` of each
    (`truncated` says when more were counted than kept; the counts are always complete and every rejected
    line is in rejected.jsonl).
    """

    source: str
    profile: str
    total: int = 0
    valid: int = 0
    rejected: int = 0
    error_counts: Counter = field(default_factory=Counter)
    warning_counts: Counter = field(default_factory=Counter)
    errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False
    records: list[dict[str, Any]] | None = None
    rejected_path: str | None = None
    valid_path: str | None = None
    duration_s: float = 0.0

    @property
    def invalid(self) -> int:
        return self.rejected

    @property
    def ok(self) -> bool:
        return self.rejected == 0 and self.total > 0

    def to_dict(self) -> dict[str, Any]:
        """The `nbkit validate --json` object."""
        return {"total": self.total, "valid": self.valid, "invalid": self.rejected,
                "warnings": self.warnings, "errors": self.errors}

    def summary(self) -> dict[str, Any]:
        """Counts without the per-line lists: what report.json keeps."""
        return {
            "source": self.source, "profile": self.profile, "total": self.total, "valid": self.valid,
            "rejected": self.rejected, "error_counts": dict(self.error_counts.most_common()),
            "warning_counts": dict(self.warning_counts.most_common()), "truncated": self.truncated,
            "rejected_path": self.rejected_path, "valid_path": self.valid_path,
            "duration_s": round(self.duration_s, 3),
        }

    def describe(self) -> str:
        """A few plain lines for a terminal or a report."""
        lines = [f"{self.source}: {self.total:,} lines, {self.valid:,} valid, {self.rejected:,} rejected "
                 f"({self.profile} profile)"]
        if self.total == 0:
            lines.append("  the file holds no lines")
        for code, n in self.error_counts.most_common():
            lines.append(f"  error   {code:<26} {n:>8,}  {CODES[code][1]}")
        for code, n in self.warning_counts.most_common():
            lines.append(f"  warning {code:<26} {n:>8,}  {CODES[code][1]}")
        if self.rejected_path and self.rejected:
            lines.append(f"  rejected lines with reasons: {self.rejected_path}")
        return "\n".join(lines)

    def counts_frame(self) -> Any:
        """One row per code (severity, code, lines, meaning) for a notebook table."""
        import pandas as pd

        rows = [{"severity": ERROR, "code": c, "count": n, "meaning": CODES[c][1]}
                for c, n in self.error_counts.most_common()]
        rows += [{"severity": WARNING, "code": c, "count": n, "meaning": CODES[c][1]}
                 for c, n in self.warning_counts.most_common()]
        return pd.DataFrame(rows, columns=["severity", "code", "count", "meaning"])


_LOW32 = (1 << 32) - 1


class IdIndex:
    """The ids of the valid lines so far and the line that used each, in ~12 bytes an id past the newest
    CHUNK, exactly.

    The newest ids (up to CHUNK, ~4 MB: most datasets never leave it) sit in a dict. Older ones are kept as
    sorted runs of 64-bit keys (a 32-bit hash of the id above the id's entry number) in `array`s, merged like a
    binary counter up to RUN_MAX keys, behind a bit filter of 16 to 64 bits an id, so an id not seen before
    usually costs one bit test. The ids themselves and their line numbers go to a temporary spill file, one
    block per chunk: a hash match is confirmed by reading the earlier id back, so ids that share a hash are
    never reported as duplicates. Past the first chunk an id costs ~1-2 us more than in a dict (sorting in
    Python), and 720,000 ids (a 200 MB file) take ~12 MB instead of ~80 (bench/validate.py). Up to 2**32 ids.
    """

    CHUNK = 32768  # ids kept in the dict before they move to a run, a block at a time
    RUN_MAX = 1 << 17  # keys in the largest run: a merge never copies more than ~1 MB of keys
    _hash = staticmethod(hash)  # any hash will do: matches are checked against the id itself

    def __init__(self, chunk: int | None = None) -> None:
        self.chunk = chunk or self.CHUNK
        self.recent: dict[str, int] = {}
        self.runs: list[array] = []  # sorted keys: hash << 32 | entry number
        self.count = 0  # ids in the runs (entry numbers 0..count-1)
        self.filter = bytearray(8)
        self.filter_mask = 63
        self._spill: IO[bytes] | None = None
        self._blocks: list[tuple[int, int, int]] = []  # (first entry number, ids, where it starts) per block

    def __len__(self) -> int:
        return self.count + len(self.recent)

    def get(self, rid: str) -> int | None:
        """The line that used `rid` first, or None."""
        line = self.recent.get(rid)
        if line is not None or not self.count:
            return line
        h = self._hash(rid) & _LOW32
        bit = h & self.filter_mask
        if not self.filter[bit >> 3] >> (bit & 7) & 1:
            return None
        return self._lookup(rid, h)

    def add(self, rid: str, line: int) -> None:
        self.recent[rid] = line
        if len(self.recent) >= self.chunk:
            self._freeze()

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    def _lookup(self, rid: str, h: int) -> int | None:
        low = h << 32
        for run in self.runs:
            i = bisect_left(run, low)
            while i < len(run) and run[i] >> 32 == h:
                line, stored = self._read(run[i] & _LOW32)
                if stored == rid:
                    return line
                i += 1
        return None

    def _read(self, number: int) -> tuple[int, str]:
        """(line, id) of an entry: its block holds the chunk's line numbers, the ends of its ids, the ids."""
        spill = self._spill
        assert spill is not None
        spill.flush()
        fd = spill.fileno()
        first, n, base = self._blocks[bisect_right(self._blocks, (number, _LOW32, 0)) - 1]
        k = number - first
        (line,) = _INT64.unpack(os.pread(fd, 8, base + 8 * k))
        start, end = _INT64X2.unpack(os.pread(fd, 16, base + 8 * n + 8 * k))
        return line, os.pread(fd, end - start, base + 16 * n + 8 + start).decode("utf-8", "surrogatepass")

    def _freeze(self) -> None:
        """Move the dict's ids to a block of the spill file and a new sorted run; merge runs of similar size."""
        if self._spill is None:
            self._spill = tempfile.TemporaryFile(prefix="nbkit-ids-")  # noqa: SIM115 (closed by close())
        data = [rid.encode("utf-8", "surrogatepass") for rid in self.recent]
        self._blocks.append((self.count, len(data), self._spill.seek(0, os.SEEK_END)))
        self._spill.write(array("q", self.recent.values()).tobytes())
        self._spill.write(array("q", (0, *accumulate(map(len, data)))).tobytes())  # n + 1 ends
        self._spill.write(b"".join(data))
        first, n = self.count, len(self.recent)
        hashes = map(_LOW32.__and__, map(self._hash, self.recent))  # C-level passes, no Python loop
        keys = array("Q", sorted(map(operator.or_, map(_SHIFT32, hashes), range(first, first + n))))
        self.count += len(self.recent)
        self.recent.clear()
        self.runs.append(keys)
        while (len(self.runs) > 1 and len(self.runs[-2]) <= len(self.runs[-1])
               and len(self.runs[-2]) + len(self.runs[-1]) <= self.RUN_MAX):
            newer = self.runs.pop()
            self.runs.append(array("Q", sorted(self.runs.pop() + newer)))  # Timsort merges the two runs
        if self.count * 16 > len(self.filter) * 8:
            self._rebuild_filter()
        else:
            self._set_bits(keys)

    def _rebuild_filter(self) -> None:
        """A filter of 16 to 64 bits an id (a false hit at most ~6% of new ids, each costing a search)."""
        bits = 1 << min(32, max(16, (self.count * 64 - 1).bit_length()))
        self.filter = bytearray(bits // 8)
        self.filter_mask = bits - 1
        for run in self.runs:
            self._set_bits(run)

    def _set_bits(self, keys: Iterable[int]) -> None:
        f = self.filter
        for bit in map(self.filter_mask.__and__, map(_UNSHIFT32, keys)):
            f[bit >> 3] |= 1 << (bit & 7)


_INT64, _INT64X2 = struct.Struct("<q"), struct.Struct("<qq")
_SHIFT32, _UNSHIFT32 = (32).__rlshift__, (32).__rrshift__  # h -> h << 32, key -> key >> 32


class _Validation:
    """State of one validation pass: counts, seen ids and the open output files."""

    def __init__(self, report: ValidationReport, max_issues: int, rejected_out: IO[str] | None,
                 valid_out: IO[str] | None, keep_records: bool):
        self.report = report
        self.max_issues = max_issues
        self.rejected_out = rejected_out
        self.valid_out = valid_out
        self.seen_ids = IdIndex()
        if keep_records:
            report.records = []

    def add(self, number: int, value: Any, errors: list[Problem], warnings: list[Problem],
            raw: RawLine | None, original: Any = None) -> None:
        """Account for one line: check the record, then file it as valid or rejected."""
        report = self.report
        report.total += 1
        if value is not None:
            rec_errors, rec_warnings = check_record(value, report.profile)
            errors = errors + rec_errors if errors else rec_errors
            if rec_warnings:
                warnings = warnings + rec_warnings
        rid = value.get("id") if type(value) is dict else None
        rid = rid if type(rid) is str else None
        first = self.seen_ids.get(rid) if rid is not None else None
        if first is not None:
            errors.append(Problem(
                "duplicate_id", "id", f"id {rid!r} is already used on line {first}; give each record a unique id",
            ))
        if warnings:
            self._note(report.warnings, report.warning_counts, number, rid, warnings)
        if errors:
            report.rejected += 1
            self._note(report.errors, report.error_counts, number, rid, errors)
            if self.rejected_out is not None:
                row = _rejected_row(report.source, number, rid, errors, warnings, value if original is None else original, raw)
                self.rejected_out.write(dumps(row))
                self.rejected_out.write("\n")
            return
        report.valid += 1
        if rid is not None:
            self.seen_ids.add(rid, number)
        if report.records is not None:
            report.records.append(value)
        if self.valid_out is not None:
            self.valid_out.write(dumps(value))
            self.valid_out.write("\n")

    def _note(self, sink: list[dict[str, Any]], counts: Counter, number: int, rid: str | None,
              problems: list[Problem]) -> None:
        for p in problems:
            counts[p.code] += 1
            if len(sink) < self.max_issues:
                message = f"{p.field}: {p.message}" if p.field else p.message
                sink.append({"line": number, "id": rid, "code": p.code, "message": message})
            else:
                self.report.truncated = True


def _rejected_row(source: str, number: int, rid: str | None, errors: list[Problem], warnings: list[Problem],
                  value: Any, raw: RawLine | None) -> dict[str, Any]:
    """A rejected line with everything needed to fix it: where, why, and the line itself."""
    row: dict[str, Any] = {
        "source": source, "line": number, "id": rid, "code": errors[0].code,
        "message": "; ".join(f"{p.field}: {p.message}" if p.field else p.message for p in errors),
        "errors": [p._asdict() for p in errors], "warnings": [p._asdict() for p in warnings],
    }
    if raw is not None:
        row["raw"] = raw.data.decode("utf-8", errors="backslashreplace")
        if raw.too_long:
            row["raw_truncated"] = True
            row["raw_bytes"] = raw.size
    else:
        try:
            dumps(value).encode("utf-8")
            row["record"] = value
        except (TypeError, ValueError):  # not JSON (a set, a NaN, a lone surrogate): keep its repr, lose nothing
            row["record"] = repr(value)
    return row


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; use one of: {', '.join(PROFILES)}")


def _open_outputs(out_dir: str | os.PathLike | None, append: bool, write_valid: bool,
                  report: ValidationReport) -> tuple[IO[str] | None, IO[str] | None]:
    if out_dir is None:
        return None, None
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    mode = "a" if append else "w"
    report.rejected_path = str(folder / REJECTED)
    rejected = open(report.rejected_path, mode, encoding="utf-8", newline="\n")  # noqa: SIM115
    valid = None
    if write_valid:
        report.valid_path = str(folder / "valid.jsonl")
        valid = open(report.valid_path, mode, encoding="utf-8", newline="\n")  # noqa: SIM115
    return rejected, valid


def validate_file(
    path: str | os.PathLike,
    profile: str = "sagemaker",
    out_dir: str | os.PathLike | None = None,
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    keep_records: bool = False,
    write_valid: bool = False,
    append: bool = False,
    max_issues: int = 100_000,
) -> ValidationReport:
    """Validate a JSONL file (local path or s3:// URI) line by line, in memory that does not grow with it.

    With `out_dir`, rejected lines go to `<out_dir>/rejected.jsonl` (and, with `write_valid`, the valid
    records to `<out_dir>/valid.jsonl`); `append` adds to those files instead of replacing them, so several
    sources can share one. `keep_records` keeps the valid records in `report.records`. The input is only read.
    Raises `UnreadableSource` when the file cannot be opened at all.
    """
    _check_profile(profile)
    if max_line_bytes < 1:
        raise UserError(f"max_line_bytes must be at least 1, got {max_line_bytes}")
    report = ValidationReport(source=str(path), profile=profile)
    start = time.perf_counter()
    with open_binary(path) as stream:
        rejected, valid = _open_outputs(out_dir, append, write_valid, report)
        run = _Validation(report, max_issues, rejected, valid, keep_records)
        try:
            for raw in _progress(iter_lines(stream, max_line_bytes), str(path)):
                value, errors, warnings = decode_line(raw, max_line_bytes, profile)
                run.add(raw.number, value, errors, warnings, raw)
        finally:
            run.seen_ids.close()
            for handle in (rejected, valid):
                if handle is not None:
                    handle.close()
    report.duration_s = time.perf_counter() - start
    return report


def validate_records(
    records: Iterable[Any],
    profile: str = "sagemaker",
    out_dir: str | os.PathLike | None = None,
    *,
    source: str = "<records>",
    append: bool = False,
    max_issues: int = 100_000,
) -> ValidationReport:
    """Validate records already in memory (a bundled task, a converted table); "line" = position from 1.

    The valid ones are kept in `report.records`; anything that is not a dict is rejected as `not_an_object`.
    """
    _check_profile(profile)
    report = ValidationReport(source=source, profile=profile)
    start = time.perf_counter()
    rejected, _ = _open_outputs(out_dir, append, False, report)
    run = _Validation(report, max_issues, rejected, None, keep_records=True)
    try:
        for number, value in enumerate(records, start=1):
            problems = _json_problems(value) if type(value) is dict else None
            if problems and problems[0].code == "lone_surrogate":  # its id may be the string that cannot be
                run.add(number, None, problems, [], None, original=value)  # written: keep it out of the report
            elif problems is not None:
                run.add(number, value, problems, [], None)
            else:
                problem = Problem("not_an_object", "", f"record is a {type(value).__name__}, not a dict")
                run.add(number, None, [problem], [], None, original=value)
    finally:
        run.seen_ids.close()
        if rejected is not None:
            rejected.close()
    report.duration_s = time.perf_counter() - start
    return report


def parse_record(record: dict[str, Any], profile: Profile = "sagemaker") -> RftRecord:
    """Check `record` with the full rules of `profile`, then build its typed view.

    Raises `UserError` listing every broken rule (user turn, system first, unique tool names, ...).
    """
    errors, _ = check_record(record, profile)
    if errors:
        lines = "\n".join(f"  {p.field or '(record)'}: [{p.code}] {p.message}" for p in errors)
        raise UserError(f"record {record.get('id')!r} is not a valid {profile} RFT record:\n{lines}")
    return RftRecord.model_validate(record)


def _json_problems(record: dict[str, Any]) -> list[Problem]:
    """A record built in memory can hold what a JSON line cannot (NaN, a set, a datetime, a lone surrogate
    from a badly decoded table): catch it here, before it reaches a file."""
    try:
        dumps(record).encode("utf-8")
    except UnicodeEncodeError:
        field, message = lone_surrogate(record) or ("", "a string holds an unpaired surrogate")
        return [Problem("lone_surrogate", field, message)]
    except ValueError as exc:
        return [Problem("non_finite_number", "", f"{exc}: replace NaN/Infinity with null or a finite number")]
    except TypeError as exc:
        return [Problem("invalid_json", "", f"{exc}; convert the value to a string, number, list or object")]
    return []


def _progress(lines: Iterator[RawLine], label: str) -> Iterator[RawLine]:
    """A progress bar in notebooks and terminals (tqdm's own overhead is a few % of the validation time);
    where there is none to show (no terminal), the lines themselves, without tqdm's pass-through layer."""
    from tqdm.auto import tqdm

    bar = tqdm(lines, desc=f"validating {Path(label).name}", unit=" lines", mininterval=1.0, disable=None,
               leave=False)
    return lines if bar.disable else iter(bar)
