"""What a notebook shows about itself in a static report: its parameters and its headline result.

Widgets render blank in static HTML and `nbconvert --no-input` hides the parameters cell, so every
notebook prints its parameters as a table and records one headline for the run index.
"""

from __future__ import annotations

import html as html_lib
import json
from typing import Any

from nbkit import provenance
from nbkit.layout import RunLayout
from nbkit.params import NotebookParams


def params_table(p: NotebookParams) -> list[dict[str, Any]]:
    """Rows of (parameter, value, help) in declaration order."""
    return [
        {"parameter": name, "value": getattr(p, name), "help": field.description or ""}
        for name, field in type(p).model_fields.items()
    ]


def show_params(p: NotebookParams) -> None:
    """Display the parameters as an HTML table in notebooks (plain text elsewhere)."""
    rows = params_table(p)
    try:
        from IPython.display import HTML, display
    except ImportError:  # plain Python, no IPython installed
        for row in rows:
            print(f"{row['parameter']:>24} = {row['value']!r}  # {row['help']}")
        return
    body = "".join(
        f"<tr><td><code>{html_lib.escape(r['parameter'])}</code></td>"
        f"<td><code>{html_lib.escape(repr(r['value']))}</code></td><td>{html_lib.escape(r['help'])}</td></tr>"
        for r in rows
    )
    display(HTML(
        f"<b>Parameters of {p.notebook}</b><table><tr><th>parameter</th><th>value</th><th>help</th></tr>"
        f"{body}</table>"
    ))
    provenance.show(p)  # how the figures below were produced: seed, threads, versions, math, hashes


def headline(p: NotebookParams, text: str, html: str | None = None) -> None:
    """Show the notebook's key result and record it for the run index (runs/<name>/index.html)."""
    path = RunLayout(p.run_dir).headline(p.notebook)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"headline": text, "html": html}, indent=2))
    try:
        from IPython.display import Markdown, display
    except ImportError:
        print(text)
        return
    display(Markdown(f"**{text}**"))
