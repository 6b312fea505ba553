"""What a notebook shows about itself: its parameters (with the provenance of its figures) and its one
headline, shown once and recorded for the run index; with the formatting layer of `nbkit.display`, which
notebooks reach through this module (`report.table`, `report.show`, ...).

Widgets render blank in static HTML and `nbconvert --no-input` hides the parameters cell, so every
notebook shows its parameters (`show_params`) and its results through these functions.
"""

from __future__ import annotations

import html as html_lib
import json
from collections.abc import Mapping
from typing import Any

from nbkit import provenance
from nbkit.display import CSS, Table, _display, bullets, files, number, path, show, table, text
from nbkit.layout import RunLayout
from nbkit.params import NotebookParams

__all__ = ["CSS", "Table", "bullets", "files", "headline", "number", "params_table", "path", "show",
           "show_params", "table", "text"]


# -------------------------------------------------------------------------------- parameters, headline


def params_table(p: NotebookParams) -> list[dict[str, Any]]:
    """Rows of (parameter, value, help) in declaration order."""
    return [
        {"parameter": name, "value": getattr(p, name), "help": field.description or ""}
        for name, field in type(p).model_fields.items()
    ]


def _param_text(name: str, value: Any) -> str:
    if name == "run_dir":
        return RunLayout(value).root.name + " (this run folder)"
    if value == "":
        return '"" (empty)'
    if value is None:
        return "None"
    if isinstance(value, Mapping) and not value:
        return "{} (none)"
    return text(value)


def show_params(p: NotebookParams) -> None:
    """Show the parameters as a table (and load the report's stylesheet: this is every notebook's first
    output)."""
    rows = [[r["parameter"], _param_text(r["parameter"], r["value"]), r["help"]] for r in params_table(p)]
    shown = Table(["parameter", "value", "help"], rows, title=f"Parameters of {p.notebook}")
    shown.numeric = [False, False, False]
    _display(f"<style>{CSS}</style>{shown.to_html()}", str(shown))
    # how the figures below were produced: seed, threads, versions, math mode, model and data hashes
    bullets(provenance.lines(provenance.collect(p)), title="Provenance")


def headline(p: NotebookParams, text: str, html: str | None = None) -> None:
    """Show the notebook's key result once and record it for the run index (runs/<name>/index.html)."""
    path = RunLayout(p.run_dir).headline(p.notebook)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"headline": text, "html": html}, indent=2))
    _display(f"<div class='nbkit-headline'>{html_lib.escape(text)}</div>", text)
