"""Notebook 07's stage: every sample of the run in one frame, the report tables, annotations and the export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from nbkit.params import ReviewOutputsParams


@dataclass
class ReviewResult:
    """The review frame (baseline, tuned and training samples), its tables, the annotations so far and the
    flagged samples exported as Nova RFT records."""

    threshold: float
    frame: pd.DataFrame
    tables: dict[str, Any]
    annotations: pd.DataFrame
    annotations_path: Path
    exported: int
    flagged_path: Path
    rows: int = 10

    @property
    def flagged(self) -> int:
        notes = self.annotations
        return int(notes["flagged"].fillna(False).astype(bool).sum()) if len(notes) else 0

    def headline(self) -> str:
        from nbkit.review.tables import headline_text

        return headline_text(self.frame, self.annotations)

    def to_html(self) -> str:
        from nbkit.review.tables import report_html

        return report_html(self.frame, n=self.rows)


def run(P: ReviewOutputsParams) -> ReviewResult:
    """Load every sample, build the report tables and export what reviewers flagged (review/flagged.jsonl)."""
    from nbkit.review.annotations import AnnotationStore, export_run_flagged
    from nbkit.review.frame import load_review_frame, run_pass_threshold
    from nbkit.review.tables import report_tables

    threshold = run_pass_threshold(P.run_dir, P.pass_threshold)
    frame = load_review_frame(P.run_dir, high=threshold, low=P.low_reward)
    store = AnnotationStore.for_run(P.run_dir)
    exported, flagged_path = export_run_flagged(P.run_dir, frame)
    return ReviewResult(threshold, frame, report_tables(frame, n=P.table_rows), store.frame(), store.path,
                        exported, flagged_path, P.table_rows)
