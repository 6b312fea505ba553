"""Qualitative review: browse baseline, tuned and training samples, compare them, annotate and flag them.

Light at import time: pandas and ipywidgets load when a function needs them.
"""

from nbkit.review.annotations import LABELS, AnnotationStore, export_flagged, export_run_flagged
from nbkit.review.frame import (
    load_review_frame,
    load_sources,
    prompt_history,
    review_frame,
    run_pass_threshold,
    run_records,
)
from nbkit.review.stage import ReviewResult, run
from nbkit.review.tables import (
    component_failures,
    failure_buckets,
    headline_text,
    lowest_scoring,
    most_improved,
    most_regressed,
    report_html,
    report_tables,
)

__all__ = [
    "LABELS",
    "AnnotationStore",
    "ReviewBrowser",
    "ReviewResult",
    "component_failures",
    "export_flagged",
    "export_run_flagged",
    "failure_buckets",
    "headline_text",
    "load_review_frame",
    "load_sources",
    "lowest_scoring",
    "most_improved",
    "most_regressed",
    "open_browser",
    "prompt_history",
    "report_html",
    "report_tables",
    "review_frame",
    "run_pass_threshold",
    "run",
    "run_records",
]


def __getattr__(name: str):
    """The widget classes import ipywidgets, so they load on first use only."""
    if name in ("ReviewBrowser", "open_browser"):
        from nbkit.review import browser

        return getattr(browser, name)
    raise AttributeError(f"module 'nbkit.review' has no attribute {name!r}")
