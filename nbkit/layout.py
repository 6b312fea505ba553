"""The run folder: every artifact one pipeline run makes, named in one place.

    runs/<name>/
      index.html, run.json, .nbkit-run.lock           the runner (index, what ran, who is running)
      <notebook>/                                      executed notebook, params.yaml, status.json,
                                                       report.html, headline.json, progress.json
      data/      train.jsonl eval.jsonl rejected.jsonl report.json          01
      reward/    report.json lambda.zip                                      02
      baseline/  samples.parquet summary.json                                03
      model/     the tiny model this run measured (03) and trains from (04)
      training/  job.json + the backend's files (local: see nbkit.train.local.LocalPaths)   04
      monitor/   metrics.parquet health.json curves.png                     05
      tuned/     samples.parquet comparison.json job_output/                06
      review/    annotations.jsonl flagged.jsonl                            07

Stages get every path from a `RunLayout`, never from string literals, and the JSON records one stage
writes and later stages read (the baseline summary, the comparison, the reward report) have their one
reader here.

A run folder travels: copied, moved or unpacked elsewhere it reads its own data. So every path a record
stores that lies inside the run folder is stored relative to it (`portable`: "data/train.jsonl",
"sqlite:///training/mlflow.db"), paths outside it stay absolute, and a reader turns a stored path back into
a usable one with `resolve` (relative = relative to the run folder, never to the current directory).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from nbkit import paths
from nbkit.errors import UserError

Stage = Literal["data", "reward", "baseline", "model", "training", "monitor", "tuned", "review"]
Split = Literal["train", "eval"]
REJECTED = "rejected.jsonl"  # what the validator writes into any output folder, a run's data/ included
REPORT = "report.json"  # a stage's JSON report: data/ (01) and reward/ (02)
LAMBDA_ZIP = "lambda.zip"
SAMPLES = "samples.parquet"  # sampled completions, one row per (prompt, sample): baseline/ and tuned/
COMPLETIONS = "completions.parquet"  # every training rollout (step, prompt, completion, reward): training/
ANNOTATIONS, FLAGGED = "annotations.jsonl", "flagged.jsonl"  # review/
METRICS, HEALTH = "metrics.parquet", "health.json"  # what a monitoring pass writes into monitor/ (or --write DIR)


# What each notebook writes into the run folder besides its own <notebook>/ folder: a sweep copies these to
# give every point the outputs of the stages they share.
STAGE_OUTPUTS: dict[str, tuple[Stage, ...]] = {
    "01_explore_data": ("data",), "02_prototype_reward": ("reward",), "03_evaluate_baseline": ("baseline", "model"),
    "04_launch_training": ("training",), "05_monitor_training": ("monitor",), "06_evaluate_tuned": ("tuned",),
    "07_review_outputs": ("review",),
}


class RunLayout:
    """The paths of one run folder (`run` as a notebook's `run_dir` gives it; "" = runs/interactive)."""

    def __init__(self, run: str | os.PathLike = "") -> None:
        self.root = paths.run_path(run)  # readers create nothing; `stage()` creates what a writer needs

    def __repr__(self) -> str:
        return f"RunLayout({str(self.root)!r})"

    def stage(self, name: Stage) -> Path:
        """A stage's folder (and the run folder), created on demand."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -- portable records ------------------------------------------------------------------------------

    def portable(self, value: Any) -> Any:
        """`value` (a JSON-like record) as the run folder stores it: see `portable`."""
        return portable(value, self.root)

    def resolve(self, stored: str) -> str:
        """A path or URI a record of this run stored, usable from anywhere: see `resolve`."""
        return resolve(stored, self.root)

    def relative(self, path: str | os.PathLike) -> str:
        """How a report names a file: relative to the run folder when inside it (a shared report shows
        where the file is in the run, not on the author's machine)."""
        return portable(str(path), self.root)

    # -- the runner ------------------------------------------------------------------------------------

    @property
    def index(self) -> Path:
        return self.root / "index.html"

    @property
    def run_record(self) -> Path:
        return self.root / "run.json"

    @property
    def lock(self) -> Path:
        return self.root / ".nbkit-run.lock"

    def notebook(self, name: str) -> Path:
        """A notebook's folder: executed notebook, params.yaml, status.json, report.html, headline.json."""
        return self.root / name

    def executed(self, name: str) -> Path:
        return self.notebook(name) / f"{name}.ipynb"

    def status(self, name: str) -> Path:
        return self.notebook(name) / "status.json"

    def headline(self, name: str) -> Path:
        return self.notebook(name) / "headline.json"

    def notebook_params(self, name: str) -> Path:
        return self.notebook(name) / "params.yaml"

    def report(self, name: str) -> Path:
        return self.notebook(name) / "report.html"

    def progress(self, name: str) -> Path:
        return self.notebook(name) / "progress.json"

    def outputs_of(self, notebook: str) -> list[Path]:
        """The notebook's folder and the stage folders it writes (see STAGE_OUTPUTS)."""
        return [self.notebook(notebook)] + [self.root / stage for stage in STAGE_OUTPUTS.get(notebook, ())]

    # -- 01 data ---------------------------------------------------------------------------------------

    def split(self, name: Split) -> Path:
        return self.root / "data" / f"{name}.jsonl"

    @property
    def rejected(self) -> Path:
        return self.root / "data" / REJECTED

    @property
    def data_report(self) -> Path:
        return self.root / "data" / REPORT

    # -- 02 reward -------------------------------------------------------------------------------------

    @property
    def reward_report(self) -> Path:
        return self.root / "reward" / REPORT

    @property
    def lambda_zip(self) -> Path:
        return self.root / "reward" / LAMBDA_ZIP

    # -- 03 baseline and the model -----------------------------------------------------------------------

    @property
    def baseline_samples(self) -> Path:
        return self.root / "baseline" / SAMPLES

    @property
    def baseline_summary(self) -> Path:
        return self.root / "baseline" / "summary.json"

    @property
    def model(self) -> Path:
        return self.root / "model"

    # -- 04 training -----------------------------------------------------------------------------------

    @property
    def training(self) -> Path:
        return self.root / "training"

    @property
    def job_record(self) -> Path:
        return self.training / "job.json"

    @property
    def training_completions(self) -> Path:
        return self.training / COMPLETIONS

    # -- 05 monitor ------------------------------------------------------------------------------------

    @property
    def metrics(self) -> Path:
        return self.root / "monitor" / METRICS

    @property
    def health(self) -> Path:
        return self.root / "monitor" / HEALTH

    @property
    def curves(self) -> Path:
        return self.root / "monitor" / "curves.png"

    # -- 06 tuned --------------------------------------------------------------------------------------

    @property
    def tuned_samples(self) -> Path:
        return self.root / "tuned" / SAMPLES

    @property
    def comparison(self) -> Path:
        return self.root / "tuned" / "comparison.json"

    @property
    def tuned_job_output(self) -> Path:
        return self.root / "tuned" / "job_output"

    # -- 07 review -------------------------------------------------------------------------------------

    @property
    def annotations(self) -> Path:
        return self.root / "review" / ANNOTATIONS

    @property
    def flagged(self) -> Path:
        return self.root / "review" / FLAGGED

    # -- the records later stages read ----------------------------------------------------------------

    def read_baseline_summary(self) -> dict[str, Any]:
        """03's summary: how the baseline was sampled and scored, and what it found."""
        return read_record(self.baseline_summary, "notebook 03_evaluate_baseline")

    def read_comparison(self) -> dict[str, Any]:
        """06's comparison of the tuned model against the baseline."""
        return read_record(self.comparison, "notebook 06_evaluate_tuned")

    def read_reward_report(self) -> dict[str, Any]:
        """02's report on the reward: contract, latency, probes."""
        return read_record(self.reward_report, "notebook 02_prototype_reward")

    def pass_threshold(self, default: float | None = None) -> float | None:
        """The reward that counted as a pass in this run: 06's comparison, else 03's summary, else `default`."""
        for path, writer in ((self.comparison, "notebook 06_evaluate_tuned"),
                             (self.baseline_summary, "notebook 03_evaluate_baseline")):
            if path.is_file():
                value = setting(read_record(path, writer), "pass_threshold")
                if isinstance(value, int | float):
                    return float(value)
        return default


def setting(record: dict[str, Any], key: str) -> Any:
    """A setting a stage recorded, at the top level of its JSON record or under `settings`."""
    for section in (record.get("settings"), record):
        if isinstance(section, dict) and key in section:
            return section[key]
    return None


def read_json_object(path: str | os.PathLike, missing: str, invalid: str) -> dict[str, Any]:
    """A JSON object from a file; a missing, unreadable or non-object file is a UserError naming the file,
    what is wrong with it and what to do (`missing`, `invalid`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} does not exist: {missing}") from None
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); {invalid}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} holds {type(data).__name__}, not a JSON object; {invalid}")
    return data


def read_record(path: Path, writer: str) -> dict[str, Any]:
    """A JSON object a stage wrote, with an error that names the notebook that writes it."""
    return read_json_object(path, f"run {writer} for this run folder first", f"run {writer} again to rewrite it")


# -------------------------------------------------------------------------------------- portable paths

_FILE_URI = "file://"
_SQLITE_URI = "sqlite:///"


def _roots(root: Path) -> list[str]:
    """The run folder's spellings, longest first (as given and with symlinks resolved)."""
    spellings = {str(root).rstrip("/"), str(root.resolve()).rstrip("/")}
    return sorted(spellings, key=len, reverse=True)


def portable(value: Any, root: str | os.PathLike) -> Any:
    """`value` with every path inside `root` made relative to it; other paths and values unchanged.

    Works on nested dicts and lists. A string that is the run folder becomes "."; one that names a file in
    it (alone, inside a `sqlite:///` URI or inside a message) loses the folder's prefix; a `file://` URI
    into it becomes the plain relative path. Paths outside the run folder stay absolute.
    """
    root = Path(root)
    if isinstance(value, dict):
        return {k: portable(v, root) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [portable(v, root) for v in value]
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        return value
    for prefix in _roots(root):
        if value == prefix or value == _FILE_URI + prefix:
            return "."
        if value.startswith(_FILE_URI + prefix + "/"):
            return value[len(_FILE_URI + prefix) + 1:]
        value = value.replace(prefix + "/", "")
    return value


def resolve(stored: str, root: str | os.PathLike) -> str:
    """A stored path or URI made usable from anywhere: relative ones are relative to the run folder.

    "" stays "" (not set), URIs other than `sqlite:///` and `file:` (s3://, http://, arn:...) and
    absolute paths stay as they are.
    """
    root = Path(root)
    if not stored:
        return stored
    if stored.startswith(_SQLITE_URI):
        rest = stored[len(_SQLITE_URI):]
        return stored if rest.startswith("/") or rest.startswith(":memory:") or not rest else \
            _SQLITE_URI + str(root / rest)
    if stored.startswith(_FILE_URI):
        return stored
    if stored.startswith("file:"):
        stored = stored[len("file:"):]
    if "://" in stored or stored.startswith(("arn:", "s3:")):
        return stored
    path = Path(stored)
    return str(path if path.is_absolute() else root / path)
