"""The comparison page of a sweep (DIR/index.html) and its figures: what one page needs to choose a run.

A sortable table (click a column header), training and validation curves overlaid, the tuned-vs-base
difference of every run with its 95% interval, and the verdict naming the best configuration with its
Holm-adjusted tests. Figures are embedded as PNG so the page travels as one file.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

from nbkit.display import CSS, number
from nbkit.sweep.compare import RunsComparison

_SORT_JS = """<script>
document.querySelectorAll('table.sortable th').forEach((th, col) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0], rows = Array.from(body.rows), up = th.dataset.dir !== 'up';
  th.dataset.dir = up ? 'up' : 'down';
  const key = r => { const t = r.cells[col].dataset.v ?? r.cells[col].textContent; const n = parseFloat(t);
                     return isNaN(n) ? t : n; };
  rows.sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (up ? 1 : -1));
  rows.forEach(r => body.appendChild(r));
}));
</script>"""


def curves_figure(result: RunsComparison) -> Any:
    """Training reward (mean per step) and validation reward of every run, overlaid."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from nbkit.layout import RunLayout

    fig, (train, val) = plt.subplots(1, 2, figsize=(11, 3.8))
    for run in result.runs:
        path = RunLayout(run.folder).metrics
        if not path.is_file():
            continue
        frame = pd.read_parquet(path)
        if "reward_mean" in frame:
            series = frame.set_index("step")["reward_mean"].dropna()
            window = max(1, len(series) // 20)
            train.plot(series.index, series.rolling(window, min_periods=1).mean(), label=run.name, linewidth=1.2)
        if "val_reward" in frame:
            points = frame[["step", "val_reward"]].dropna()
            val.plot(points["step"], points["val_reward"], marker="o", markersize=3, label=run.name)
    train.set(title="Training reward (rolling mean, 5% of the run)", xlabel="step", ylabel="mean reward (score)")
    val.set(title="Validation reward", xlabel="step", ylabel="val_reward (score)")
    for ax in (train, val):
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def differences_figure(result: RunsComparison) -> Any:
    """Each run's tuned-vs-base difference with its 95% interval (a forest plot); 0 = no change."""
    import matplotlib.pyplot as plt

    runs = [r for r in result.runs if r.metrics.get("diff") is not None]
    fig, ax = plt.subplots(figsize=(7, 0.45 * max(2, len(runs)) + 1.2))
    for i, run in enumerate(runs):
        diff, lo, hi = (float(run.metrics.get(k) or 0.0) for k in ("diff", "diff_lo", "diff_hi"))
        ax.errorbar(diff, i, xerr=[[diff - lo], [hi - diff]], fmt="o",
                    color="#1a7f37" if lo > 0 else "#cf222e" if hi < 0 else "#57606a")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(runs)), [r.name for r in runs], fontsize=8)
    ax.set(title="Tuned minus base mean reward, 95% CI\n(paired bootstrap over prompts)",
           xlabel="difference in mean reward (score)")
    fig.tight_layout()
    return fig


def png(fig: Any) -> str:
    """A figure as a data URI (the page stays one file)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _cell(value: Any) -> str:
    """A table cell: numbers as the reports show them (right-aligned, sorted by their value), "-" if missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '<td data-v="">-</td>'
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f'<td class="num" data-v="{value}">{html.escape(number(value))}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def table_html(result: RunsComparison, links: dict[str, str] | None = None) -> str:
    frame = result.table()
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for record in frame.to_dict(orient="records"):
        cells = []
        for column, value in record.items():
            if column == "run" and links and value in links:
                cells.append(f'<td><a href="{html.escape(links[value])}">{html.escape(str(value))}</a></td>')
            else:
                cells.append(_cell(value))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="nbkit-box"><table class="sortable nbkit-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def configs_html(result: RunsComparison) -> str:
    """Per configuration: runs, mean and spread over seeds (shown only when some configuration has seeds)."""
    if not any(c["seeds"] > 1 for c in result.configs):
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(c['config'])}</td><td>{c['seeds']}</td><td>{c['tuned_mean']:.3f}</td>"
        f"<td>{c['tuned_sd']:.3f}</td><td>{c['tuned_min']:.3f} to {c['tuned_max']:.3f}</td>"
        f"<td>{c['diff_mean']:+.3f} (sd {c['diff_sd']:.3f})</td></tr>" for c in result.configs)
    return ("<h2>Configurations over seeds</h2><div class='nbkit-box'><table class='nbkit-table'><tr>"
            "<th>configuration</th><th>seeds</th><th>tuned mean</th>"
            f"<th>sd over seeds</th><th>range</th><th>tuned - base</th></tr>{rows}</table></div>")


def page(result: RunsComparison, title: str, links: dict[str, str] | None = None, intro: str = "") -> str:
    """The whole comparison page."""
    figures = ""
    if any(r.metrics.get("steps") for r in result.runs):
        figures += f'<img alt="training and validation curves" src="{png(curves_figure(result))}">'
    if any(r.metrics.get("diff") is not None for r in result.runs):
        figures += f'<img alt="tuned minus base per run" src="{png(differences_figure(result))}">'
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{CSS}
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}table.sortable th{{cursor:pointer}}
img{{max-width:100%;display:block;margin:1em 0}}.verdict{{border-left:6px solid #0969da;padding:.5em 1em}}</style>
</head><body><h1>{html.escape(title)}</h1>{intro}<p class="verdict">{html.escape(result.verdict())}</p>
<h2>Runs</h2><p>Click a column to sort.</p>{table_html(result, links)}{configs_html(result)}{figures}{_SORT_JS}
</body></html>"""


def write(result: RunsComparison, dest: Path, title: str, links: dict[str, str] | None = None,
          intro: str = "") -> Path:
    dest.write_text(page(result, title, links, intro), encoding="utf-8")
    return dest
