"""Plain data helpers every stage shares: message text, text normalisation, JSON-safe values.

Standard library only and importing nothing else from nbkit: the built-in graders use it, and a reward's
Lambda zip carries this file beside them, so the deployed function reads messages exactly as the workbench
does.
"""

from __future__ import annotations

import math
import re
from typing import Any

_SPACES = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def content_text(content: Any) -> str:
    """The text of a message's content: a string as it is, Nova's list of `{"type": "text", "text": ...}`
    parts joined without separators (as the model reads them); None is ""."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(p if isinstance(p, str) else p["text"] for p in content
                       if isinstance(p, str) or (isinstance(p, dict) and isinstance(p.get("text"), str)))
    return str(content)


def fold_text(text: str) -> str:
    """Whitespace- and case-insensitive form: "What is 2+2?" and "what is  2+2? " are the same prompt."""
    return _SPACES.sub(" ", text).strip().casefold()


def squad_normalize(text: str, case_sensitive: bool = False) -> str:
    """SQuAD-style answer normalisation: case, punctuation, articles and whitespace do not count."""
    if not case_sensitive:
        text = text.lower()
    text = _PUNCT.sub(" ", text)
    text = _ARTICLES.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def json_safe(value: Any) -> Any:
    """A value strict JSON can hold: NaN, inf and missing values become null, numpy scalars plain numbers,
    other objects (paths, timestamps) their text; dict keys become strings."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if type(value).__name__ in ("NAType", "NaTType"):  # pandas' missing values, without importing pandas
        return None
    if callable(getattr(value, "item", None)) and getattr(value, "shape", None) == ():  # numpy scalar
        return json_safe(value.item())
    return str(value)


def clip_words(text: Any, limit: int = 600) -> str:
    """Text for a table cell: whitespace collapsed, and past `limit` characters cut between words with a
    note of how much is left out (never mid-word, never a bare "...")."""
    s = "" if text is None or text != text else _SPACES.sub(" ", str(text)).strip()
    if len(s) <= limit:
        return s
    cut = s.rfind(" ", 0, limit)
    kept = s[: cut if cut > limit // 2 else limit]
    return f"{kept} [+{len(s) - len(kept):,} characters]"
