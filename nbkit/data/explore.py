"""Notebook 01's whole job as one call: get the data, validate it, split it, profile it, write the run folder.

Writes <run>/data/train.jsonl, eval.jsonl (clean records), rejected.jsonl (every rejected line with reasons)
and report.json (validation counts, split, profile and findings) for the notebooks that follow.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbkit.data import samples
from nbkit.data.convert import read_table, records_from_table
from nbkit.data.io import DEFAULT_MAX_LINE_BYTES, is_s3, write_jsonl
from nbkit.data.profile import DataProfile, profile_data
from nbkit.data.split import split_records
from nbkit.data.validate import ValidationReport, validate_file, validate_records
from nbkit.errors import UserError
from nbkit.layout import RunLayout, portable

if TYPE_CHECKING:
    from nbkit.params import ExploreDataParams

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".json")


@dataclass
class DataStage:
    """What notebook 01 produced: the clean splits, how every input line fared, and the profile."""

    task: str
    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    validation: dict[str, ValidationReport]
    profile: DataProfile
    split: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(r.total for r in self.validation.values())

    @property
    def rejected(self) -> int:
        return sum(r.rejected for r in self.validation.values())

    def headline(self) -> str:
        """One sentence for the run index."""
        return (
            f"{self.task}: {len(self.train):,} train and {len(self.eval):,} eval records written; "
            f"{self.rejected:,} of {self.total:,} input records rejected; findings: "
            f"{self.profile.count('error')} error(s), {self.profile.count('warning')} warning(s)."
        )

    def counts(self) -> dict[str, int]:
        return {"input": self.total, "valid": self.total - self.rejected, "rejected": self.rejected,
                "train": len(self.train), "eval": len(self.eval)}

    def to_dict(self) -> dict[str, Any]:
        """The content of report.json."""
        return {
            "task": self.task, "counts": self.counts(), "split": self.split, "files": self.files,
            "validation": {name: r.summary() for name, r in self.validation.items()},
            "profile": self.profile.to_dict(),
        }

    def validation_frame(self) -> Any:
        """Error and warning counts per code and source, for a notebook table."""
        import pandas as pd

        frames = [r.counts_frame().assign(source=name) for name, r in self.validation.items()]
        return pd.concat(frames, ignore_index=True)[["source", "severity", "code", "count", "meaning"]]


def resolve(location: str) -> str:
    """A data location as given: s3:// URIs as they are, relative paths from the repo root (never the cwd)."""
    if is_s3(location):
        return location
    from nbkit import paths

    path = Path(os.path.expanduser(location))
    return str(path if path.is_absolute() else paths.ROOT / path)


def _load_source(location: str, name: str, profile: str, out_dir: Path, append: bool, max_line_bytes: int,
                 question_column: str, answer_column: str) -> ValidationReport:
    """Validate a JSONL file, or convert a question/answer table and validate its records."""
    resolved = resolve(location)
    if not is_s3(resolved) and Path(resolved).suffix.lower() in TABLE_SUFFIXES:
        records = records_from_table(read_table(resolved), question_column, answer_column, id_prefix=name)
        return validate_records(records, profile, out_dir, source=location, append=append)
    return validate_file(resolved, profile, out_dir, max_line_bytes=max_line_bytes, keep_records=True,
                         append=append)


def prepare_data(
    task: str = "math",
    *,
    run_dir: str = "",
    eval_data: str = "",
    n_train: int = 1200,
    n_eval: int = 200,
    eval_fraction: float = 0.2,
    stratify_by: str = "",
    profile: str = "sagemaker",
    seed: int = 0,
    tokenizer: Any = None,
    max_prompt_tokens: int = 0,
    max_new_tokens: int = 0,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    question_column: str = "question",
    answer_column: str = "answer",
) -> DataStage:
    """Build the data stage of a run (see the module docstring); every input record is valid or rejected."""
    layout = RunLayout(run_dir)
    out = layout.stage("data")
    validation: dict[str, ValidationReport] = {}
    if task in samples.TASKS:
        if eval_data:
            raise UserError(f"eval_data={eval_data!r} goes with a task file; the bundled task {task!r} has its own "
                            "eval split (set eval_data='' or give task as a file)")
        train_raw, eval_raw = samples.make_task(task, n_train, n_eval, seed)
        validation["train"] = validate_records(train_raw, profile, out, source=f"sample:{task}/train")
        validation["eval"] = validate_records(eval_raw, profile, out, source=f"sample:{task}/eval", append=True)
        split = {"method": "bundled", "seed": seed, "n_train": n_train, "n_eval": n_eval}
    elif is_s3(task) or Path(resolve(task)).exists():
        load = functools.partial(_load_source, profile=profile, out_dir=out, max_line_bytes=max_line_bytes,
                                 question_column=question_column, answer_column=answer_column)
        validation["train" if eval_data else "source"] = load(task, "train", append=False)
        if eval_data:
            validation["eval"] = load(eval_data, "eval", append=True)
            split = {"method": "separate files", "train": task, "eval": eval_data}
        else:
            split = {"method": "seeded split by prompt", "seed": seed, "eval_fraction": eval_fraction,
                     "stratify_by": stratify_by or None}
    else:
        raise UserError(
            f"task {task!r} is neither a bundled task ({', '.join(samples.TASKS)}) nor an existing file "
            f"(looked for {resolve(task)}); give a task name, a path relative to the repo root, or an s3:// URI"
        )
    if "source" in validation:
        valid = validation["source"].records or []
        if len(valid) < 2:
            _write_report_only(layout.data_report, task, validation, split)
            raise UserError(f"{task}: only {len(valid)} valid record(s); see {layout.rejected} for why")
        train, eval_ = split_records(valid, eval_fraction, seed, stratify_by)
    else:
        train = validation["train"].records or []
        eval_ = (validation["eval"].records or []) if "eval" in validation else []
        if not train:
            _write_report_only(layout.data_report, task, validation, split)
            raise UserError(f"{task}: no valid training record; see {layout.rejected} for why")
    files = {"train": str(layout.split("train")), "eval": str(layout.split("eval")),
             "rejected": str(layout.rejected), "report": str(layout.data_report)}
    write_jsonl(files["train"], train)
    write_jsonl(files["eval"], eval_)
    data_profile = profile_data(train, eval_, tokenizer=tokenizer or None, max_prompt_tokens=max_prompt_tokens,
                                max_new_tokens=max_new_tokens, profile=profile)
    stage = DataStage(task, train, eval_, validation, data_profile, split, files)
    Path(files["report"]).write_text(
        json.dumps(layout.portable(stage.to_dict()), indent=2, ensure_ascii=False, default=str))
    return stage


def _write_report_only(path: Path, task: str, validation: dict[str, ValidationReport], split: dict[str, Any]) -> None:
    """Leave the validation counts behind even when there is nothing to split, so the failure is explainable."""
    report = {"task": task, "split": split, "validation": {n: r.summary() for n, r in validation.items()}}
    path.write_text(json.dumps(portable(report, path.parent.parent), indent=2, ensure_ascii=False, default=str))


def run(p: ExploreDataParams) -> DataStage:
    """Notebook 01's stage: `prepare_data` with the notebook's parameters."""
    return prepare_data(
        p.task, run_dir=p.run_dir, eval_data=p.eval_data, n_train=p.n_train, n_eval=p.n_eval,
        eval_fraction=p.eval_fraction, stratify_by=p.stratify_by, profile=p.profile, seed=p.seed,
        tokenizer=resolve(p.tokenizer) if p.tokenizer else None, max_prompt_tokens=p.max_prompt_tokens,
        max_new_tokens=p.max_new_tokens, max_line_bytes=p.max_line_bytes, question_column=p.question_column,
        answer_column=p.answer_column,
    )


def rejected_frame(path: str | os.PathLike, limit: int = 20) -> Any:
    """The first `limit` rejected lines (source, line, id, code, message) as a table."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    path = Path(path)
    if path.exists():
        with open(path, encoding="utf-8") as handle:
            for text in handle:
                if len(rows) >= limit:
                    break
                row = json.loads(text)
                rows.append({k: row.get(k) for k in ("source", "line", "id", "code", "message")})
    return pd.DataFrame(rows, columns=["source", "line", "id", "code", "message"])


def examples_frame(records: list[dict[str, Any]], n: int = 5) -> Any:
    """A few records as rows a person can read: id, prompt, reference answer and metadata."""
    import pandas as pd

    from nbkit.data.records import KNOWN_FIELDS, prompt_text

    rows = []
    for record in records[:n]:
        extra = {k: v for k, v in record.items() if k not in KNOWN_FIELDS}
        rows.append({"id": record.get("id"), "prompt": prompt_text(record),
                     "reference_answer": record.get("reference_answer"), "tools": len(record.get("tools") or []),
                     "metadata": extra})
    return pd.DataFrame(rows, columns=["id", "prompt", "reference_answer", "tools", "metadata"])


def structure_frame(profile: DataProfile) -> Any:
    """Per split: the turn patterns, the reference answers' kinds and keys, and the extra fields (counts)."""
    import pandas as pd

    rows = []
    for split, summary in profile.splits.items():
        reference = summary["reference_answer"]
        rows.append({"split": split, "turn patterns": summary["turn_patterns"],
                     "reference answer kinds": reference.get("kinds", {}),
                     "reference answer keys": reference.get("keys", {}),
                     "extra fields": summary["extra_fields"]})
    return pd.DataFrame(rows)


def prompt_lengths_frame(profile: DataProfile) -> Any:
    """Prompt length statistics (tokens) per split."""
    import pandas as pd

    return pd.DataFrame({s: v["lengths"]["prompt_tokens"] for s, v in profile.splits.items()}).T.rename_axis("split")
