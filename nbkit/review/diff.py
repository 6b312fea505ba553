"""Word-level differences between two responses as HTML, so a reader sees at once what the tuning changed."""

from __future__ import annotations

import difflib
import html
import re

_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")
DEL_STYLE = "background:#fdd;text-decoration:line-through"
INS_STYLE = "background:#cfc"
# Colours say which side scored better, not only what was inserted: a regression's tuned text is red.
BETTER_STYLE = "background:#cfc"
WORSE_STYLE = "background:#fdd"
SAME_STYLE = "background:#fff5b1"


def tokens(text: str) -> list[str]:
    """Words, single punctuation marks and whitespace runs: joined back they give the text unchanged."""
    return _TOKEN.findall(text or "")


def diff_spans(old: str, new: str, old_style: str = DEL_STYLE, new_style: str = INS_STYLE) -> tuple[str, str]:
    """(old as HTML with deletions marked, new as HTML with insertions marked); everything escaped."""
    a, b = tokens(old), tokens(new)
    left, right = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        old_part = html.escape("".join(a[i1:i2]))
        new_part = html.escape("".join(b[j1:j2]))
        if op == "equal":
            left.append(old_part)
            right.append(new_part)
            continue
        if old_part:
            left.append(f'<del style="{old_style}">{old_part}</del>')
        if new_part:
            right.append(f'<ins style="{new_style}">{new_part}</ins>')
    return "".join(left), "".join(right)


def similarity(old: str, new: str) -> float:
    """Share of matching tokens (difflib ratio), 1.0 for identical responses."""
    return difflib.SequenceMatcher(a=tokens(old), b=tokens(new), autojunk=False).ratio()


def side_by_side_html(old: str, new: str, old_title: str = "base", new_title: str = "tuned",
                      better: str | None = "new") -> str:
    """Two columns, base left and tuned right, with word-level changes highlighted: green on the side that
    scored better (`better`: "old", "new", or None for a tie, both yellow), red on the other."""
    styles = {"new": (DEL_STYLE, BETTER_STYLE), "old": (BETTER_STYLE, WORSE_STYLE)}.get(better or "",
                                                                                         (SAME_STYLE, SAME_STYLE))
    left, right = diff_spans(old, new, *styles)
    cell = "vertical-align:top;white-space:pre-wrap;font-family:monospace;padding:4px;border:1px solid #ddd;width:50%"
    return (
        '<table style="width:100%;border-collapse:collapse;table-layout:fixed">'
        f"<tr><th>{html.escape(old_title)}</th><th>{html.escape(new_title)}</th></tr>"
        f'<tr><td style="{cell}">{left}</td><td style="{cell}">{right}</td></tr></table>'
    )
