"""The answer format a task asks for, so probes write correct answers the way the task wants them.

Why: a strict reward that credits only `#### 72` (what a GSM8K prompt asks for) must not be reported as
"fails to credit correct answers" because every good probe was written as a sentence or a fenced block, and
its adversarial probes are only sharp when they use the format too (several `####` lines, the right one
buried). A template is Python format text whose placeholders name keys of the reference answer
(`'#### {final_answer}'`, `'ANSWER: {answer}'`, `'\\boxed{{{solution}}}'`); with a string reference the
placeholder (any name) is the reference itself. Without one, it is inferred from the prompts when they state
a format ("output the final answer after ####", "ANSWER: <...>").
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nbkit.errors import UserError
from nbkit.plain import content_text

# The field a reference's answer sits under, in the order graders read them (graders.answer_of).
ANSWER_KEYS = ("final_answer", "answer", "solution")
# (what the prompt says, the format it asks for); `{}` is where the answer goes.
_STATED: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"####"), "#### {}"),
    (re.compile(r"\\boxed\s*\{"), "\\boxed{{{}}}"),
    (re.compile(r"<answer>\s*(?:\.\.\.|<[^<>]*>|[^<>\n]{0,40})\s*</answer>", re.I), "<answer>{}</answer>"),
    (re.compile(r"\b(?P<prefix>(?:[A-Z][A-Za-z]*[ \t])?[A-Z][A-Za-z]*:)[ \t]*<[^<>\n]{1,60}>"), "{prefix} {{}}"),
)
NONE = "none"  # a good_template that asks for the default formats even when the prompts state one


@dataclass(frozen=True)
class AnswerTemplate:
    """A format for the answer and where it came from (given, or inferred from which prompt text)."""

    text: str
    origin: str = "given"

    def __post_init__(self) -> None:
        if not self.fields:
            raise UserError(
                f"good template {self.text!r} has no placeholder for the answer; name a key of the reference "
                "answer in braces, e.g. '#### {final_answer}' (double braces for a literal one: '\\boxed{{{answer}}}')"
            )

    @property
    def fields(self) -> list[str]:
        try:
            parsed = list(string.Formatter().parse(self.text))
        except ValueError as exc:
            raise UserError(f"good template {self.text!r} is not valid format text ({exc}); write literal braces "
                            "doubled, e.g. '\\boxed{{{answer}}}'") from None
        names = [name for _, name, _, _ in parsed if name is not None]
        if any(not n or not n.isidentifier() for n in names):
            raise UserError(f"good template {self.text!r}: every placeholder must name a key of the reference "
                            "answer, e.g. {final_answer}")
        return list(dict.fromkeys(names))

    @property
    def answer_field(self) -> str:
        """The placeholder the probes put right and wrong answers into (the first one)."""
        return self.fields[0]

    def values(self, reference: Any, record_id: str = "") -> dict[str, str]:
        """The text of every placeholder for one reference, or an error naming the keys it has."""
        out = {}
        for name in self.fields:
            if isinstance(reference, dict):
                if name not in reference:
                    raise UserError(
                        f"good template {self.text!r} names {{{name}}}, but the reference_answer of record "
                        f"{record_id!r} has the keys {', '.join(map(repr, reference))}; use one of them"
                    )
                out[name] = _text(reference[name])
            elif len(self.fields) == 1:
                out[name] = _text(reference)
            else:
                raise UserError(f"good template {self.text!r} names several fields, but the reference_answer of "
                                f"record {record_id!r} is a single value, not an object")
        return out

    def render(self, reference: Any, answer: str | None = None, record_id: str = "") -> str:
        """The template filled from the reference; `answer` replaces the answer field (a wrong or empty one)."""
        values = self.values(reference, record_id)
        if answer is not None:
            values[self.answer_field] = answer
        return self.text.format(**values)

    def to_dict(self) -> dict[str, str]:
        return {"template": self.text, "origin": self.origin}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def answer_key(references: Sequence[Any]) -> str:
    """The placeholder name for these references: the answer key they share, else 'answer'."""
    dicts = [r for r in references if isinstance(r, dict)]
    if not dicts:
        return "answer"
    for key in ANSWER_KEYS:
        if all(key in r for r in dicts):
            return key
    keys = {tuple(r) for r in dicts}
    if len(keys) == 1 and len(next(iter(keys))) == 1:
        return next(iter(keys))[0]
    raise UserError("the prompts state an answer format, but the references have no common answer key "
                    f"({', '.join(ANSWER_KEYS)}); pass good_template naming the key to fill")


def infer_template(records: Sequence[dict]) -> AnswerTemplate | None:
    """The format most prompts state (in any system or user message), when most of them state the same one."""
    found: Counter[str] = Counter()
    said: dict[str, str] = {}
    for record in records:
        text = "\n".join(content_text(m.get("content")) for m in record.get("messages") or []
                         if isinstance(m, dict) and m.get("role") in ("system", "user"))
        for pattern, form in _STATED:
            match = pattern.search(text)
            if match:
                shape = form.format(**match.groupdict()) if match.groupdict() else form
                found[shape] += 1
                said.setdefault(shape, _context(text, match))
                break
    if not found:
        return None
    shape, n = found.most_common(1)[0]
    if n * 2 <= len(records):
        return None
    references = [r.get("reference_answer", (r.get("metadata") or {}).get("reference_answer")) for r in records]
    key = answer_key(references)
    return AnswerTemplate(shape.replace("{}", "{" + key + "}"),
                          f"inferred from the prompts ({said[shape]!r} in {n} of {len(records)} records)")


def _context(text: str, match: re.Match[str], width: int = 30) -> str:
    """The words around the match, on one line: what the report quotes as the evidence."""
    start = max(0, match.start() - width)
    return " ".join(text[start:match.end() + 10].split())


def resolve(template: str, records: Sequence[dict]) -> AnswerTemplate | None:
    """The template to probe with: the given one, none (`'none'`), or the one the prompts state ('')."""
    if template.strip().lower() == NONE:
        return None
    if template:
        return AnswerTemplate(template)
    return infer_template(records)
