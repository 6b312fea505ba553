"""Why a reward fails: the commonest error, where it was raised, and the likely mismatch with the data.

Why: a reward that raises on every call makes every later number (AUC, separation, "fails to credit") an
artefact of the crash. The verdict must start with the crash, and with the cause a reward author can act on:
usually the reward reads a field the data holds in another shape (a string reference where the reward
expects an object, a key that is not there). The error texts come from the harness
(`Type: message (at file.py:LINE in function)`), the shapes from the samples the reward was given.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_ERROR = re.compile(r"^(?P<type>[A-Za-z_][\w.]*): (?P<message>.*?)"
                    r"(?: \(at (?P<file>[^():]+):(?P<line>\d+) in (?P<func>[^()]+)\))?(?: \[[^\]]*\])?$", re.S)
_NOTE = re.compile(r" \[[^\]]*\]$")  # the harness's "[alone, after its batch failed]" and similar notes
_LITERAL = re.compile(r"""["']([A-Za-z_][\w-]{0,63})["']""")
_TYPE_WORDS = {"str": "a string", "dict": "an object", "list": "a list", "NoneType": "null (missing)",
               "int": "a number", "float": "a number", "bool": "a boolean", "tuple": "a list"}
_EXPECTS = {**dict.fromkeys(("get", "keys", "items", "values"), "an object"),
            **dict.fromkeys(("strip", "lower", "upper", "split", "startswith", "endswith", "replace", "format",
                             "encode", "splitlines", "isdigit"), "a string"),
            **dict.fromkeys(("append", "extend", "sort", "index"), "a list")}
MOST = 0.5  # share of failed samples from which the failure leads the verdict


@dataclass(frozen=True)
class Failure:
    """The commonest failure among the samples a reward was given, located and explained when possible."""

    failed: int
    total: int
    count: int  # samples failing with this very error
    status: str
    error: str  # 'Type: message'
    where: str  # 'file.py:15 in lambda_handler', or ''
    code: str  # that source line, when the reward's file could be read
    cause: str  # the likely mismatch between data and reward, or ''
    others: dict[str, int]  # the next commonest failing statuses or errors, with their counts
    unlisted: int = 0  # failed samples whose error is neither the commonest nor among `others`

    @property
    def most(self) -> bool:
        """Whether most samples failed, so that nothing measured on the rest can be trusted."""
        return self.failed >= MOST * self.total

    def sentence(self, noun: str = "samples") -> str:
        """'57 of 57 samples failed: AttributeError: ... at reward.py:15 in handler (`line`); likely cause: ...'"""
        text = f"{self.failed} of {self.total} {noun} failed"
        text += f" ({self.count} with the same error)" if self.count < self.failed else ""
        text += f": {self.error}"
        if self.where:
            text += f" at {self.where}"
        if self.code:
            text += f" (`{self.code}`)"
        if self.cause:
            text += f"; likely cause: {self.cause}"
        if self.others:
            text += "; also " + ", ".join(f"{n} x {what}" for what, n in self.others.items())
        if self.unlisted:
            text += f"; {self.unlisted} more with other errors"
        return text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"most": self.most}


def diagnose(statuses: Sequence[str], errors: Sequence[str | None], samples: Sequence[dict],
             source: Path | None = None) -> Failure | None:
    """The commonest failure of a harness run (None when every sample is ok), read against the samples."""
    failed = [i for i, s in enumerate(statuses) if s != "ok"]
    if not failed:
        return None
    kinds = Counter(_signature(statuses[i], errors[i]) for i in failed)
    top, count = kinds.most_common(1)[0]
    status, error = top
    parsed = _ERROR.match(error)
    where = code = ""
    if parsed and parsed["file"]:
        where = f"{parsed['file']}:{parsed['line']} in {parsed['func']}"
        code = source_line(source, parsed["file"], int(parsed["line"]))
        error = f"{parsed['type']}: {parsed['message']}"
    hit = [samples[i] for i in failed if _signature(statuses[i], errors[i]) == top]
    cause = likely_cause(parsed["type"], parsed["message"], code, hit) if parsed else ""
    others = {f"{s} ({e})" if e else s: n for (s, e), n in kinds.most_common()[1:4]}
    unlisted = len(failed) - count - sum(others.values())
    return Failure(len(failed), len(statuses), count, status, error or status, where, code, cause, others, unlisted)


def _signature(status: str, error: str | None) -> tuple[str, str]:
    return status, _NOTE.sub("", (error or "").strip())


def source_line(source: Path | None, name: str, line: int) -> str:
    """The line the error names, from the reward's file or a file beside it (a helper it imports)."""
    if source is None:
        return ""
    for path in (source, source.parent / name):
        if path.name == name and path.is_file():
            lines = path.read_text(errors="replace").splitlines()
            return lines[line - 1].strip()[:160] if 0 < line <= len(lines) else ""
    return ""


# ------------------------------------------------------------------------------------------ the cause


def likely_cause(kind: str, message: str, code: str, samples: Sequence[dict]) -> str:
    """The field the reward reads that the data holds in another shape, in words; '' when none is evident."""
    if kind.endswith("KeyError"):
        return _missing_key(message.strip("'\""), samples)
    actual, expected = _types(kind, message)
    if actual is None:
        return ""
    fields = _fields(samples)
    named = set(_LITERAL.findall(code))
    matches = [p for p, values in fields.items() if _holds(values, actual)]
    chosen = ([p for p in matches if p.rsplit(".", 1)[-1] in named]
              or [p for p in matches if p.startswith(("reference_answer", "metadata.reference_answer"))])
    if not chosen:
        return f"the reward got {_TYPE_WORDS.get(actual, actual)} where it expects {expected}"
    path = chosen[0]
    values = fields[path]
    n = sum(type(v).__name__ == actual for v in values)
    example = next(v for v in values if type(v).__name__ == actual)
    return (f"the data's {path} is {_TYPE_WORDS.get(actual, actual)} in {n} of {len(values)} failing samples "
            f"(e.g. {_show(example)}), but the reward reads it as {expected}: make the reward accept "
            f"{_TYPE_WORDS.get(actual, actual)} there, or write {path} in the shape the reward reads")


def _types(kind: str, message: str) -> tuple[str | None, str]:
    """(the type the reward got, what it expected) from the exception's own words."""
    m = re.search(r"'(\w+)' object has no attribute '(\w+)'", message)
    if m:
        return m[1], _EXPECTS.get(m[2], f"something with .{m[2]}") + f" (.{m[2]})"
    if "string indices must be integers" in message:
        return "str", "an object or a list (indexed by a key)"
    m = re.search(r"list indices must be integers or slices, not (\w+)", message)
    if m:
        return "list", "an object (indexed by a key)"
    m = re.search(r"'(\w+)' object is not (subscriptable|iterable)", message)
    if m:
        return m[1], "an object, a list or a string"
    m = re.search(r"must be a string or a (?:real )?number, not '(\w+)'", message)
    if m:
        return m[1], "a number or a numeric string"
    m = re.search(r"object of type '(\w+)' has no len\(\)", message)
    if m:
        return m[1], "a string, a list or an object"
    m = re.search(r"can only concatenate (\w+) \(not \"(\w+)\"\)", message)
    if m:
        return m[2], _TYPE_WORDS.get(m[1], m[1])
    return None, ""


def _missing_key(key: str, samples: Sequence[dict]) -> str:
    """A KeyError: where the key is instead, or which keys the reference has."""
    fields = _fields(samples)
    elsewhere = [p for p in fields if p.rsplit(".", 1)[-1] == key]
    if elsewhere:
        return (f"the reward reads the key {key!r} where the data does not have it; the data has it at "
                f"{', '.join(elsewhere[:3])}")
    refs = [v for p, values in fields.items() if p in ("reference_answer", "metadata.reference_answer")
            for v in values]
    if refs and all(isinstance(r, dict) for r in refs):
        keys = sorted({k for r in refs for k in r})
        return f"the reward reads the key {key!r}, but the data's reference_answer has {', '.join(map(repr, keys))}"
    if refs:
        return (f"the reward reads the key {key!r}, but the data's reference_answer is "
                f"{_TYPE_WORDS.get(type(refs[0]).__name__, type(refs[0]).__name__)} (e.g. {_show(refs[0])})")
    return f"the reward reads the key {key!r}, which the samples do not have"


def _fields(samples: Sequence[dict]) -> dict[str, list[Any]]:
    """Values per field path over the samples: the reference (wherever it is) and one level inside it, the
    other top-level and metadata fields, and the response's content."""
    out: dict[str, list[Any]] = {}
    for sample in samples:
        if not isinstance(sample, dict):
            continue
        for key, value in sample.items():
            if key in ("messages", "id"):
                continue
            if key == "metadata" and isinstance(value, dict):
                for sub, inner in value.items():
                    _add(out, f"metadata.{sub}", inner)
            else:
                _add(out, key, value)
        messages = sample.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
            out.setdefault("messages[-1].content", []).append(messages[-1].get("content"))
    return out


def _add(out: dict[str, list[Any]], path: str, value: Any) -> None:
    out.setdefault(path, []).append(value)
    if path.endswith("reference_answer") and isinstance(value, dict):
        for key, inner in value.items():
            out.setdefault(f"{path}.{key}", []).append(inner)


def _holds(values: list[Any], type_name: str) -> bool:
    return any(type(v).__name__ == type_name for v in values)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
