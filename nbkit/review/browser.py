"""The interactive review browser (ipywidgets): filter samples, read them with base vs tuned differences
highlighted, follow a prompt across training steps, and label, annotate and flag them.

All logic lives in plain functions (`apply_filters`, `sample_html`, ...) that tests call directly; the widget
only wires them to controls, and is itself testable by setting `.value` and calling `.click()`.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbkit.layout import FLAGGED, RunLayout
from nbkit.review.annotations import LABELS, AnnotationStore, export_flagged
from nbkit.review.diff import side_by_side_html
from nbkit.review.frame import (
    BUCKETS,
    CHANGES,
    FAILURE_KINDS,
    history_summary,
    parse_components,
    prompt_history,
)

if TYPE_CHECKING:
    import pandas as pd

ALL = "all"
CHANGED = "changed"
ANNOTATION_FILTERS = (ALL, "annotated", "flagged", "not annotated")
_PRE = "white-space:pre-wrap;font-family:monospace;background:#f7f7f7;padding:4px;margin:2px 0"


def apply_filters(
    frame: pd.DataFrame,
    source: str = ALL,
    bucket: str = ALL,
    domain: str = ALL,
    step: int | None = None,
    change: str = ALL,
    failure: str = ALL,
    text: str = "",
    annotation: str = ALL,
    annotations: dict[str, dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """Rows matching every filter; ALL (or None/"") leaves a dimension unfiltered."""
    mask = frame["source"].notna()
    if source != ALL:
        mask &= frame["source"] == source
    if bucket != ALL:
        mask &= frame["bucket"] == bucket
    if domain != ALL:
        mask &= frame["domain"].astype(str) == domain
    if step is not None:
        mask &= frame["step"] == step
    if change == CHANGED:
        mask &= frame["change"].isin(["improved", "regressed", "text changed"])
    elif change != ALL:
        mask &= frame["change"] == change
    if failure == "any failure":
        mask &= frame["failure"].notna()
    elif failure != ALL:
        mask &= frame["failure"] == failure
    if text:
        needle = text.casefold()
        hay = frame["prompt"].astype(str).str.casefold() + "\n" + frame["response"].astype(str).str.casefold()
        mask &= hay.str.contains(needle, regex=False)
    if annotation != ALL:
        notes = annotations or {}
        annotated = frame["key"].map(lambda k: k in notes)
        flagged = frame["key"].map(lambda k: bool(notes.get(k, {}).get("flagged")))
        mask &= {"annotated": annotated, "flagged": flagged, "not annotated": ~annotated}[annotation]
    return frame[mask]


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


# What a failure kind means for the sample on screen (the frame's failure kinds, in words).
VERDICTS = {"reward error": "the reward could not score it", "truncated": "cut off at the length limit",
            "format": "wrong format", "logic": "wrong answer", "unexplained": "low reward that no component explains"}


def verdict(row: dict[str, Any]) -> str:
    """Pass, or why the sample fails and which check failed: "fails: wrong answer (failed check: correct)"."""
    failure = row.get("failure")
    if failure is None or failure != failure:
        return "passes"
    failed = row.get("failed_components") or ""
    return f"fails: {VERDICTS.get(failure, failure)}" + (f" (failed check: {failed})" if failed else "")


def _block(title: str, text: Any) -> str:
    body = "" if text is None or (isinstance(text, float) and math.isnan(text)) else str(text)
    return f"<div><b>{html.escape(title)}</b><div style='{_PRE}'>{html.escape(body)}</div></div>"


def sample_html(row: dict[str, Any], annotation: dict[str, Any] | None = None) -> str:
    """One sample: where it comes from, reward and its components, failure kind, prompt, reference, response."""
    where = " · ".join(
        f"{name} <code>{_fmt(row.get(name))}</code>"
        for name in ("source", "step", "prompt_id", "sample", "domain", "difficulty_level")
        if row.get(name) is not None and not (isinstance(row.get(name), float) and math.isnan(row[name]))
        and str(row.get(name)) not in ("", "<NA>")
    )
    comps = parse_components(row.get("components"), row.get("key", ""))
    comp_cells = "".join(f"<td>{html.escape(k)}</td><td><b>{_fmt(v)}</b></td>" for k, v in comps.items())
    lines = [
        f"<div><code>{html.escape(str(row.get('key', '')))}</code> — {where}</div>",
        f"<div>reward <b>{_fmt(row.get('reward'))}</b> · bucket {_fmt(row.get('bucket'))} · "
        f"status {_fmt(row.get('status'))} · finish {_fmt(row.get('finish_reason'))} · "
        f"tokens {_fmt(row.get('num_tokens'))} · <b>{html.escape(verdict(row))}</b></div>",
    ]
    if comp_cells:
        lines.append(f"<table><tr><td>components:</td>{comp_cells}</tr></table>")
    if annotation:
        flag = " · flagged" if annotation.get("flagged") else ""
        lines.append(f"<div style='color:#555'>annotated <b>{html.escape(annotation.get('label') or '(no label)')}"
                     f"</b>{flag} at {html.escape(str(annotation.get('ts', '')))}: "
                     f"{html.escape(annotation.get('note') or '')}</div>")
    lines += [_block("prompt", row.get("prompt")), _block("reference", row.get("reference")),
              _block("response", row.get("response"))]
    return "\n".join(lines)


def pair_html(row: dict[str, Any]) -> str:
    """Base vs tuned for the same (prompt, sample), differences highlighted; empty for unpaired samples."""
    partner = row.get("partner_response")
    if row.get("source") not in ("baseline", "tuned") or partner is None or partner != partner:
        return ""
    mine, theirs = str(row.get("response") or ""), str(partner)
    base, tuned = (mine, theirs) if row["source"] == "baseline" else (theirs, mine)
    r_self, r_other = row.get("reward"), row.get("partner_reward")
    r_base, r_tuned = (r_self, r_other) if row["source"] == "baseline" else (r_other, r_self)
    better = {"improved": "new", "regressed": "old"}.get(row.get("change") or "")
    return (f"<div><b>base vs tuned</b> ({_fmt(row.get('change'))})</div>"
            + side_by_side_html(base, tuned, f"base · reward {_fmt(r_base)}", f"tuned · reward {_fmt(r_tuned)}",
                                better=better))


def history_html(frame: pd.DataFrame, prompt_id: str, width: int = 120) -> str:
    """The prompt across baseline, training steps and tuned: mean reward per stage, then each response."""
    summary = history_summary(frame, prompt_id)
    if summary.empty or len(summary) < 2:
        return ""
    from nbkit.display import CSS, table
    from nbkit.plain import clip_words

    detail = prompt_history(frame, prompt_id)
    detail["response"] = detail["response"].map(lambda s: clip_words(s, width))
    return (f"<style>{CSS}</style><div><b>prompt {html.escape(str(prompt_id))} across models and steps</b></div>"
            + table(summary).to_html() + "<details><summary>every response</summary>"
            + table(detail.drop(columns=["key"])).to_html() + "</details>")


class ReviewBrowser:
    """Filter, read and annotate samples; `.widget` is the ipywidgets box (displayed when the object is shown)."""

    def __init__(self, frame: pd.DataFrame, store: AnnotationStore, flagged_path: str | Path | None = None,
                 records: list[dict[str, Any]] | None = None, labels: tuple[str, ...] = LABELS):
        import ipywidgets as w

        self.frame = frame.reset_index(drop=True)
        self.store = store
        self.flagged_path = Path(flagged_path) if flagged_path else store.path.with_name(FLAGGED)
        self.records = records
        self.notes = store.latest()
        self.filtered = self.frame
        self.position = 0

        def dropdown(desc: str, options: list) -> w.Dropdown:
            return w.Dropdown(options=options, value=options[0] if not isinstance(options[0], tuple)
                              else options[0][1], description=desc, layout=w.Layout(width="220px"))

        domains = sorted(str(d) for d in self.frame["domain"].dropna().unique())
        steps = sorted(int(s) for s in self.frame["step"].dropna().unique())
        self.source = dropdown("source", [ALL, *[s for s in ("baseline", "tuned", "training")
                                                 if s in set(self.frame["source"])]])
        self.bucket = dropdown("reward", [ALL, *BUCKETS])
        self.domain = dropdown("domain", [ALL, *domains])
        # a slider: a long run logs hundreds of steps, too many for a dropdown (all = every step)
        self.step = w.SelectionSlider(options=[(ALL, -1), *[(str(s), s) for s in steps]], value=-1,
                                      description="step", continuous_update=False,
                                      layout=w.Layout(width="420px"), disabled=not steps)
        self.change = dropdown("vs base", [ALL, CHANGED, *CHANGES])
        self.failure = dropdown("failure", [ALL, "any failure", *FAILURE_KINDS])
        self.annotation = dropdown("labels", list(ANNOTATION_FILTERS))
        self.text = w.Text(value="", placeholder="text in prompt or response", description="search")
        self.count = w.Label()
        self.prev = w.Button(description="◀ prev", layout=w.Layout(width="90px"))
        self.next = w.Button(description="next ▶", layout=w.Layout(width="90px"))
        self.index = w.BoundedIntText(value=0, min=0, max=0, description="#", layout=w.Layout(width="150px"))
        self.view = w.HTML()
        self.pair = w.HTML()
        self.history = w.HTML()
        self.label = w.Dropdown(options=["", *labels], value="", description="label")
        self.note = w.Textarea(value="", placeholder="what is wrong or notable", description="note",
                               layout=w.Layout(width="60%"))
        self.flag = w.Checkbox(value=False, description="flag for data/reward fix")
        self.save = w.Button(description="save annotation", button_style="primary")
        self.export = w.Button(description="export flagged")
        self.status = w.Label()

        for control in (self.source, self.bucket, self.domain, self.step, self.change, self.failure,
                        self.annotation, self.text):
            control.observe(lambda _change: self.refilter(), names="value")
        self.index.observe(lambda change: self.go(change["new"]), names="value")
        self.prev.on_click(lambda _b: self.go(self.position - 1))
        self.next.on_click(lambda _b: self.go(self.position + 1))
        self.save.on_click(lambda _b: self.save_annotation())
        self.export.on_click(lambda _b: self.export_flagged())

        self.widget = w.VBox([
            w.HBox([self.source, self.bucket, self.domain, self.step]),
            w.HBox([self.change, self.failure, self.annotation, self.text]),
            w.HBox([self.prev, self.index, self.next, self.count]),
            self.view, self.pair, self.history,
            w.HBox([self.label, self.flag]), self.note,
            w.HBox([self.save, self.export, self.status]),
        ])
        self.refilter()

    @property
    def current(self) -> dict[str, Any] | None:
        """The sample on screen (a dict of its row), None when no sample matches the filters."""
        if self.filtered.empty:
            return None
        return self.filtered.iloc[self.position].to_dict()

    def refilter(self) -> None:
        """Apply the filter controls and show the first match."""
        self.filtered = apply_filters(
            self.frame, source=self.source.value, bucket=self.bucket.value, domain=self.domain.value,
            step=None if self.step.value == -1 else self.step.value, change=self.change.value, failure=self.failure.value, text=self.text.value,
            annotation=self.annotation.value, annotations=self.notes,
        )
        self.index.max = max(0, len(self.filtered) - 1)
        self.go(0, force=True)

    def go(self, position: int, force: bool = False) -> None:
        """Show the sample at `position` in the filtered list (clamped to its ends)."""
        position = min(max(0, int(position)), max(0, len(self.filtered) - 1))
        if position == self.position and not force:
            return
        self.position = position
        if self.index.value != position:
            self.index.value = position  # re-enters go() once with the same position: a no-op
        self.render()

    def render(self) -> None:
        row = self.current
        self.count.value = f"{self.position + 1 if row else 0} of {len(self.filtered)} matching ({len(self.frame)} samples)"
        if row is None:
            self.view.value = "<i>no sample matches these filters</i>"
            self.pair.value = self.history.value = ""
            return
        note = self.notes.get(row["key"])
        self.view.value = sample_html(row, note)
        self.pair.value = pair_html(row)
        self.history.value = history_html(self.frame, row["prompt_id"])
        self.label.value = (note or {}).get("label", "") if (note or {}).get("label", "") in self.label.options else ""
        self.note.value = (note or {}).get("note", "")
        self.flag.value = bool((note or {}).get("flagged", False))

    def save_annotation(self) -> dict[str, Any] | None:
        """Append the label, note and flag of the sample on screen to annotations.jsonl."""
        row = self.current
        if row is None:
            self.status.value = "nothing to annotate: no sample matches the filters"
            return None
        record = self.store.add(
            row["key"], label=self.label.value, note=self.note.value, flagged=self.flag.value,
            source=row["source"], step=row.get("step"), prompt_id=row["prompt_id"], sample=row.get("sample"),
            reward=row.get("reward"),
        )
        self.notes[row["key"]] = record
        self.view.value = sample_html(row, record)
        self.status.value = f"saved {row['key']} to {self.store.path.name}"
        return record

    def export_flagged(self) -> int:
        """Write every flagged sample (Nova RFT records + review) to flagged.jsonl."""
        count = export_flagged(self.store, self.frame, self.flagged_path, self.records)
        self.status.value = f"exported {count} flagged sample(s) to {self.flagged_path}"
        return count

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def open_browser(run_dir: str | Path, frame: pd.DataFrame | None = None, high: float = 0.8,
                 low: float = 0.2) -> ReviewBrowser:
    """A browser over everything in the run folder, annotating into <run>/review/annotations.jsonl."""
    from nbkit.review.frame import load_review_frame, run_records

    if frame is None:
        frame = load_review_frame(run_dir, high=high, low=low)
    store = AnnotationStore.for_run(run_dir)
    return ReviewBrowser(frame, store, RunLayout(run_dir).flagged, run_records(run_dir))
