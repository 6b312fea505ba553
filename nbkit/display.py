"""How results look, in JupyterLab and in the static reports a reader shares: the formatting layer every
stage and notebook shows its tables, numbers and findings through.

So every report reads the same way:
- tables without pandas' index column (a meaningful index becomes a named column), numbers at a sensible
  precision (counts as integers, 3 significant digits otherwise), blanks for missing values, "none" with
  the table's title instead of an empty header-only table;
- no raw Python: a dict becomes a two-column table or `key: value` text, a list its items;
- text is never cut: cells wrap between words, and a wide table scrolls inside the page, never widens it.

It sits low in the import layers (it knows nothing of notebooks' parameters), so a stage can build the
tables its notebook shows; `nbkit.report` adds the parameters table and the headline, and is what
notebooks import.
"""

from __future__ import annotations

import html as html_lib
import math
import numbers
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nbkit.layout import RunLayout

DIGITS = 3  # significant digits of a non-integer number
# The look of every table, report and the run index: left-aligned text that wraps between words, numbers
# right-aligned, wide tables scroll inside their box. Scoped to nbkit's own classes, and specific enough
# to override JupyterLab's right-aligned table cells.
CSS = """
.nbkit-box{max-width:100%;overflow-x:auto;margin:.3em 0 1em}
table.nbkit-table{border-collapse:collapse;table-layout:auto;margin:0;font-size:13px;max-width:none}
.jp-RenderedHTMLCommon table.nbkit-table td,.jp-RenderedHTMLCommon table.nbkit-table th,
table.nbkit-table td,table.nbkit-table th{text-align:left;vertical-align:top;padding:.25em .7em;
border:none;border-bottom:1px solid #d0d7de;white-space:normal;overflow-wrap:normal;word-break:normal;
hyphens:none;max-width:40em;min-width:3em}
.jp-RenderedHTMLCommon table.nbkit-table td.num,.jp-RenderedHTMLCommon table.nbkit-table th.num,
table.nbkit-table td.num,table.nbkit-table th.num{text-align:right;white-space:nowrap;
font-variant-numeric:tabular-nums;min-width:0}
table.nbkit-table th{font-weight:600;border-bottom:2px solid #d0d7de}
.jp-RenderedHTMLCommon table.nbkit-table tbody tr:nth-child(odd),table.nbkit-table tbody tr:nth-child(odd){
background:#f6f8fa}
.jp-RenderedHTMLCommon table.nbkit-table tbody tr:hover{background:#eaeef2}
.nbkit-title{font-weight:600;margin:.8em 0 .2em}
.nbkit-none{color:#57606a;margin:.3em 0 1em}
.nbkit-headline{font-size:1.05em;font-weight:600;border-left:4px solid #0969da;padding:.3em .8em;margin:.6em 0}
.nbkit-error{border-left:6px solid #cf222e;background:#fff8f8;padding:.6em 1em;margin:.6em 0}
.nbkit-error pre,.nbkit-log pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:12px}
.nbkit-error .msg{white-space:pre-wrap;overflow-wrap:anywhere;font-family:inherit;font-size:1em;margin:.4em 0}
code.nbkit-path{overflow-wrap:anywhere}
"""


# ------------------------------------------------------------------------------------------- values


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType") or (
        callable(getattr(value, "item", None)) and getattr(value, "shape", None) == () and value != value)


def number(value: Any, digits: int = DIGITS) -> str:
    """A number as a reader wants it: counts as integers with thousands separators (1600.0 -> 1,600),
    others with `digits` significant digits and no exponent unless tiny (0.0468750 -> 0.0469); "" for a
    missing value (NaN, None)."""
    if _missing(value):
        return ""
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    value = float(value)
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude < -3:
        return f"{value:.{digits - 1}e}"
    if magnitude >= digits - 1:
        return f"{value:,.0f}"
    text = f"{value:.{digits - 1 - magnitude}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def text(value: Any) -> str:
    """Any value as plain text for a cell or a sentence: numbers via `number`, a mapping as `key: value`
    pairs, a list as its items, never Python's repr of a dict."""
    if _missing(value):
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | numbers.Number) or (hasattr(value, "item") and getattr(value, "shape", None) == ()):
        return number(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_inner(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list | tuple | set | frozenset) or (hasattr(value, "tolist") and not isinstance(value, str)):
        items = value.tolist() if hasattr(value, "tolist") else list(value)
        return ", ".join(text(v) for v in items) or "none"
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def _inner(value: Any) -> str:
    """A nested value inside `key: value` text: a mapping goes in parentheses."""
    return f"({text(value)})" if isinstance(value, Mapping) else text(value)


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool | str) and (
        isinstance(value, numbers.Number) or (hasattr(value, "item") and getattr(value, "shape", None) == ()
                                              and isinstance(value.item(), numbers.Number)))


# ------------------------------------------------------------------------------------------- tables


class Table:
    """A table ready to show: display strings, which columns are numeric, a title and what "none" means.

    Shows as HTML in notebooks and reports (`_repr_html_`), as aligned text elsewhere (`str`).
    """

    def __init__(self, columns: list[str], rows: list[list[Any]], title: str | None = None,
                 empty: str = "none", note: str | None = None) -> None:
        self.columns = [str(c) for c in columns]
        self.title, self.empty, self.note = title, empty, note
        self.numeric = [bool(rows) and all(_is_number(r[i]) or _missing(r[i]) for r in rows)
                        and any(_is_number(r[i]) for r in rows) for i in range(len(columns))]
        self.rows = [[text(v) for v in row] for row in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def _title_html(self) -> str:
        return f"<div class='nbkit-title'>{html_lib.escape(self.title)}</div>" if self.title else ""

    def to_html(self) -> str:
        if not self.rows:
            label = f"<b>{html_lib.escape(self.title)}</b>: " if self.title else ""
            return f"<p class='nbkit-none'>{label}{html_lib.escape(self.empty)}</p>"
        cls = ["num" if n else "" for n in self.numeric]
        head = "".join(f"<th class='{c}'>{html_lib.escape(name)}</th>" for name, c in zip(self.columns, cls,
                                                                                          strict=True))
        head = f"<thead><tr>{head}</tr></thead>" if any(self.columns) else ""  # a name/value table has none
        body = "".join("<tr>" + "".join(f"<td class='{c}'>{html_lib.escape(v)}</td>"
                                        for v, c in zip(row, cls, strict=True)) + "</tr>" for row in self.rows)
        note = f"<div class='nbkit-none'>{html_lib.escape(self.note)}</div>" if self.note else ""
        return (f"{self._title_html()}<div class='nbkit-box'><table class='nbkit-table'>{head}"
                f"<tbody>{body}</tbody></table></div>{note}")

    def _repr_html_(self) -> str:
        return self.to_html()

    def __str__(self) -> str:
        title = f"{self.title}\n" if self.title else ""
        if not self.rows:
            return f"{title}{self.empty}"
        widths = [max(len(c), *(len(r[i]) for r in self.rows)) for i, c in enumerate(self.columns)]

        def line(cells: list[str]) -> str:
            return "  ".join(c.rjust(w) if n else c.ljust(w)
                             for c, w, n in zip(cells, widths, self.numeric, strict=True)).rstrip()

        body = "\n".join(line(r) for r in self.rows)
        head = f"{line(self.columns)}\n" if any(self.columns) else ""
        return f"{title}{head}{body}" + (f"\n{self.note}" if self.note else "")

    __repr__ = __str__


def table(data: Any, title: str | None = None, *, columns: Iterable[str] | None = None, empty: str = "none",
          note: str | None = None, rows: int | None = None) -> Table:
    """A Table from a DataFrame, a Series, a mapping (two columns: name and value) or a list of mappings.

    A DataFrame's index is dropped when it only numbers the rows, and kept as a column when it names them
    (a named index, or labels that are not row numbers). `columns` picks and orders columns; `rows` keeps
    the first N rows (the note says how many were left out).
    """
    names, body = _rows(data)
    if columns is not None:
        wanted = [c for c in columns if c in names]
        body = [[row[names.index(c)] for c in wanted] for row in body]
        names = wanted
    if rows is not None and len(body) > rows:
        note = ((note + " ") if note else "") + f"First {rows} of {len(body):,} rows."
        body = body[:rows]
    return Table(names, body, title=title, empty=empty, note=note)


def _rows(data: Any) -> tuple[list[str], list[list[Any]]]:
    """(column names, rows) of any supported table-like value."""
    if isinstance(data, Table):
        return data.columns, [list(r) for r in data.rows]
    if isinstance(data, Mapping):
        return ["", ""], [[k, v] for k, v in data.items()]
    if type(data).__name__ == "Series":
        data = data.to_frame()
    if type(data).__name__ == "DataFrame":
        return _frame_rows(data)
    data = list(data or [])
    if data and all(isinstance(r, Mapping) for r in data):
        names = list(dict.fromkeys(k for r in data for k in r))
        return [str(n) for n in names], [[r.get(n) for n in names] for r in data]
    return [], [list(r) for r in data]


def _frame_rows(frame: Any) -> tuple[list[str], list[list[Any]]]:
    import pandas as pd

    index = frame.index
    numbered = (isinstance(index, pd.RangeIndex) or pd.api.types.is_integer_dtype(index.dtype)) and \
        all(n is None for n in index.names)
    if not numbered:
        frame = frame.reset_index()
        if index.names == [None]:  # unnamed labels: a first column without a header
            frame = frame.rename(columns={frame.columns[0]: ""})
    frame = frame.copy()
    if isinstance(frame.columns, pd.MultiIndex):
        frame.columns = [" ".join(str(p) for p in col if str(p)) for col in frame.columns]
    return [str(c) for c in frame.columns], frame.astype(object).values.tolist()


# -------------------------------------------------------------------------------------------- showing


def _display(html: str, plain: str) -> None:
    try:
        from IPython.display import display
    except ImportError:  # plain Python, no IPython installed
        print(plain)
        return
    display({"text/html": html, "text/plain": plain}, raw=True)


def show(*items: Any, title: str | None = None) -> None:
    """Show each item the way a reader wants it: a string as a paragraph (Markdown), a Table as is, a
    DataFrame, mapping or list of mappings as a table, a matplotlib figure as an image."""
    for item in items:
        if isinstance(item, str):
            _markdown(item)
        elif type(item).__name__ == "Figure":
            from IPython.display import display

            display(item)
        else:
            shown = item if isinstance(item, Table) else table(item, title=title)
            _display(shown.to_html(), str(shown))


def _markdown(md: str) -> None:
    try:
        from IPython.display import Markdown, display
    except ImportError:
        print(md)
        return
    display(Markdown(md))


def bullets(lines: Iterable[str], title: str | None = None, empty: str = "none") -> None:
    """A list of sentences (findings, warnings) as bullet points; "none" when there are none."""
    lines = [str(line) for line in lines]
    head = f"<div class='nbkit-title'>{html_lib.escape(title)}</div>" if title else ""
    if not lines:
        label = f"<b>{html_lib.escape(title)}</b>: " if title else ""
        _display(f"<p class='nbkit-none'>{label}{html_lib.escape(empty)}</p>", f"{title or ''}: {empty}")
        return
    items = "".join(f"<li>{html_lib.escape(line)}</li>" for line in lines)
    _display(f"{head}<ul>{items}</ul>", "\n".join([title or "", *(f"- {line}" for line in lines)]).strip())


def path(value: str | os.PathLike, run_dir: str | os.PathLike = "") -> str:
    """A file as a shared report names it: relative to the run folder when it is inside it."""
    return RunLayout(run_dir).relative(value)


def files(entries: Mapping[str, str | os.PathLike], run_dir: str | os.PathLike = "", title: str = "Files written"
          ) -> Table:
    """What a notebook wrote, relative to the run folder, with sizes."""
    rows = []
    for name, value in entries.items():
        p = Path(value)
        size = f"{p.stat().st_size:,} bytes" if p.is_file() else ("folder" if p.is_dir() else "not written")
        rows.append([name, path(p, run_dir), size])
    return Table(["file", "path in the run folder", "size"], rows, title=title)
