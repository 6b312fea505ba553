"""Typed parameters for every notebook.

Papermill only warns on unknown names and passes loose types (YAML 1.1 reads `3e-6` as a string, numpy
scalars and Paths arrive as strings or odd types), so every notebook validates its parameters here:
values are coerced, unknown names are rejected with the list of valid ones.
"""

from __future__ import annotations

import json
import os
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import Field, ValidationError, create_model, field_validator, model_validator

from nbkit.errors import UserError
from nbkit.train.spec import Hyperparameters, from_params
from nbkit.validation import StrictModel, lines_error, user_error


class NotebookParams(StrictModel):
    """Fields every notebook has; subclasses add their own, each with a default that is small and safe."""

    notebook: ClassVar[str] = ""
    entry: ClassVar[str] = ""  # "module:function" the notebook calls with its parameters

    run_dir: str = Field("", description="run folder (runs/<name>); empty means runs/interactive")
    seed: int = Field(0, description="seed for every random choice, so runs repeat exactly")

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, values: Any) -> Any:
        """Turn numpy scalars, tuples and Paths into plain Python before field validation."""
        if isinstance(values, dict):
            return {k: _plain(v) for k, v in values.items()}
        return values


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        return value.item()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


class ExploreDataParams(NotebookParams):
    """Notebook 01: where the data comes from, how it is split and checked, and the budget lengths are checked
    against. `task` is a bundled sample task or a file; the clean splits land in <run>/data/."""

    notebook: ClassVar[str] = "01_explore_data"
    entry: ClassVar[str] = "nbkit.data.explore:run"

    seed: int = Field(0, description="seed for the sample task and the split")
    task: str = Field("math", description="bundled task (math, tools, chem) or a .jsonl/.csv/.parquet path or s3:// URI")
    eval_data: str = Field("", description="separate eval JSONL; empty means the bundled eval split or a split of task")
    n_train: int = Field(1200, ge=1, description="training records of a bundled task")
    n_eval: int = Field(200, ge=0, description="eval records of a bundled task")
    eval_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="share of a task file held out for eval")
    stratify_by: str = Field("", description="field to stratify the split by, e.g. difficulty_level; empty means none")
    profile: Literal["sagemaker", "bedrock"] = Field(
        "sagemaker", description="validation profile: sagemaker or bedrock (stricter)")
    tokenizer: str = Field("", description="local HF tokenizer folder for token counts; empty means a regex approximation")
    max_prompt_tokens: int = Field(2048, ge=0, description="prompt length budget to check against; 0 means no check")
    max_new_tokens: int = Field(8192, ge=0, description="generation budget reference answers must fit; 0 means no check")
    max_line_bytes: int = Field(1_000_000, ge=1, description="longer JSONL lines are rejected as line_too_long")
    question_column: str = Field("question", description="question column when task is a .csv/.parquet table")
    answer_column: str = Field("answer", description="answer column when task is a .csv/.parquet table")


class PrototypeRewardParams(NotebookParams):
    """Notebook 02: run one reward on reference-derived good and bad answers to the run's data, check the
    contract, latency and hackability, and package it for Lambda into <run>/reward/."""

    notebook: ClassVar[str] = "02_prototype_reward"
    entry: ClassVar[str] = "nbkit.rewards.prototype:run"

    seed: int = Field(0, description="seed for the probe texts")
    reward: str = Field("builtin:numeric", description="reward: file.py, file.py:func, module:func or builtin:<name>")
    split: Literal["train", "eval"] = Field("train", description="data split of the run to prototype on (train or eval)")
    num_samples: int = Field(50, ge=1, description="records to probe (the first N of the split)")
    variant: Literal["sagemaker", "bedrock"] = Field(
        "sagemaker", description="event shape sent to the reward: sagemaker or bedrock (reference under metadata)")
    batch_size: int = Field(16, ge=1, description="samples per handler call")
    workers: int = Field(1, ge=0, description="isolated worker processes; 0 runs in this process (no crash isolation)")
    timeout_s: float = Field(30.0, gt=0, description="seconds one handler call may take")
    threshold: float = Field(0.5, description="scores at or above this count as high (probe verdicts)")
    good_template: str = Field(
        "", description="answer format of the task, e.g. '#### {final_answer}'; empty means inferred from the "
        "prompts, none means the default formats")
    package: bool = Field(True, description="write <run>/reward/lambda.zip for deployment")


class EvaluateBaselineParams(NotebookParams):
    """Notebook 03: k samples per eval prompt from the base model, scored by the reward; the RFT/SFT verdict."""

    notebook: ClassVar[str] = "03_evaluate_baseline"
    entry: ClassVar[str] = "nbkit.evaluate.baseline:run"

    model: str = Field("tiny", description="base model: tiny, a local HF folder, bedrock:<model id or ARN>, replay:<path>")
    reward: str = Field("builtin:numeric", description="reward: file.py, file.py:func, module:func or builtin:<name>")
    tiny_recipe: str = Field("default", description="recipe of the tiny default model: default (demo) or smoke (CI)")
    num_prompts: int = Field(64, ge=0, description="eval prompts to score (the first N of the eval split); 0 means all")
    k: int = Field(8, ge=1, description="samples per prompt (the pass-rate profile needs at least 2)")
    max_new_tokens: int = Field(16, ge=1, description="longest completion in tokens")
    temperature: float = Field(1.0, ge=0.0, description="sampling temperature; 0 means greedy (then one sample per prompt suffices)")
    pass_threshold: float = Field(0.8, description="a sample passes when its reward is at least this (pass-rate profile)")
    high: float = Field(0.8, description="rewards at or above this are the high bucket")
    low: float = Field(0.2, description="rewards below this are the low bucket")
    n_boot: int = Field(2000, ge=1, description="bootstrap resamples for the confidence interval")
    alpha: float = Field(0.05, gt=0.0, lt=1.0, description="1 - confidence level of the interval")
    batch_size: int = Field(64, ge=1, description="sequences per generation batch (local models)")
    device: str = Field("auto", description="auto, cpu or cuda[:N] (local models)")
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 leaves the torch setting")
    reward_workers: int = Field(0, ge=0, description="reward worker processes; 0 scores in this process")


class _LaunchSettings(NotebookParams):
    """Notebook 04: the job spec (nbkit.train.spec.JobSpec) as flat parameters.

    The hyperparameters are the fields of `nbkit.train.spec.Hyperparameters` (added below, so they have one
    source); one left at None takes the preset's value ("auto": the local CPU preset for the local backend,
    each AWS surface's published recipe default otherwise). `aws` and `local` hold AwsSettings /
    LocalSettings fields, so an AWS params file sets everything a managed backend needs here.
    """

    notebook: ClassVar[str] = "04_launch_training"
    entry: ClassVar[str] = "nbkit.train.stage:prepare"

    seed: int = Field(0, description="seed of sampling, shuffling and initialization")
    backend: str = Field("local", description="local, sagemaker, hyperpod, bedrock or sagemaker-serverless")
    preset: str = Field("auto", description="values for hyperparameters left at None: auto, local-cpu or nova")
    name: str = Field("", description="job name; empty means rft-<run folder name>")
    model: str = Field("tiny", description="base model: tiny, a local HF folder, or the Nova model id")
    reward: str = Field("builtin:numeric", description="reward: file.py, file.py:func, module:func or builtin:<name>")
    train_data: str = Field("", description="training JSONL; empty means <run>/data/train.jsonl")
    eval_data: str = Field("", description="evaluation JSONL; empty means <run>/data/eval.jsonl")
    output: str = Field("", description="output location; empty means <run>/training or the aws settings")
    dry_run: bool = Field(True, description="plan only; set False to train (local runs are free)")
    wait: bool = Field(True, description="wait for the job to finish (local backend)")
    timeout_s: float = Field(0.0, ge=0, description="longest wait in seconds; 0 means no limit (the job keeps running after it)")
    restart: bool = Field(False, description="start training over instead of resuming this run's job (its files are kept)")
    prices: str = Field("", description="JSON prices file overriding nbkit/train/prices.json; empty means bundled")
    save_to: str = Field("", description="params file the editor's Save writes into; empty means params/interactive.yaml")
    aws: dict = Field({}, description="AwsSettings fields (region, role_arn, s3_bucket, reward_lambda_arn, ...)")
    local: dict = Field({}, description="LocalSettings fields (threads, eval_every, eval_prompts, ...)")

    @model_validator(mode="after")
    def _spec_is_valid(self) -> _LaunchSettings:
        """Fail before the pipeline starts: build the job spec and check its ranges on its surface."""
        values = self.model_dump()
        values["train_data"] = values["train_data"] or "<run>/data/train.jsonl"  # filled in at launch
        values["name"] = values["name"] or "rft-job"
        spec = from_params(values)
        errors = [str(i) for i in spec.check() if i.severity == "error"]
        if errors:
            raise lines_error("job spec errors", errors)
        return self


def _hyperparameter_fields() -> dict[str, Any]:
    """Every Hyperparameters field, optional (None: the preset's value), with its own description; `seed` is
    the notebook's own, and in a params file max_steps 0 (not None, which takes the preset's) means epochs."""
    described = {"max_steps": "optimizer steps; 0 means from epochs and the data size"}
    fields: dict[str, Any] = {}
    for name, field in Hyperparameters.model_fields.items():
        if name == "seed":
            continue
        assert field.annotation is not None  # a model field always has its type
        fields[name] = (field.annotation | None, Field(None, description=described.get(name, field.description)))
    return fields


LaunchTrainingParams = create_model(
    "LaunchTrainingParams", __base__=_LaunchSettings, __module__=__name__, __doc__=_LaunchSettings.__doc__,
    **_hyperparameter_fields(),
)


class MonitorTrainingParams(NotebookParams):
    """Notebook 05: the training job's metrics, health rules and the stop recommendation."""

    notebook: ClassVar[str] = "05_monitor_training"
    entry: ClassVar[str] = "nbkit.monitor.notebook:run"

    seed: int = Field(0, description="seed (monitoring draws no random numbers; kept for a uniform params file)")
    source: str = Field(
        "", description="metrics source; empty means the run's training/job.json (or a path, mlflow:..., cloudwatch:...)")
    region: str = Field("", description="AWS region of CloudWatch logs; empty means from job.json or the AWS config")
    follow: bool = Field(False, description="refresh in place while the job runs (JupyterLab); keep False in papermill")
    refresh_s: float = Field(30.0, gt=0, description="seconds between refreshes when following")
    follow_timeout_s: float = Field(3600.0, gt=0, description="stop following after this many seconds")
    allow_running: bool = Field(False, description="analyse a job that is still running (a snapshot); else wait for it to end")
    target: float | None = Field(None, description="stop once the validation (else training) reward reaches this; None means no target")
    budget_steps: int | None = Field(None, ge=1, description="stop at this many steps; None means no step budget")
    budget_time_s: float | None = Field(None, gt=0, description="stop after this many seconds of training; None means no time budget")
    budget_cost: float | None = Field(None, gt=0, description="stop at this spend in dollars; None means no cost budget")
    cost_per_hour: float | None = Field(None, gt=0, description="dollars per hour of the whole job; None means the job.json estimate")
    independent_metric: str = Field("val_reward", description="metric that must not fall while the training reward rises")
    thresholds: dict[str, Any] = Field(
        default_factory=dict, description='health-rule threshold overrides, e.g. {"max_error_rate": 0.1}')
    smooth_span: int = Field(0, ge=0, description="EMA span of the smoothed curves in steps; 0 means about 2% of the run")

    @field_validator("thresholds")
    @classmethod
    def _known_thresholds(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Check the overrides against the health rules now, not after training, when notebook 05 runs."""
        from nbkit.monitor.rules import Thresholds

        try:
            Thresholds(**value)
        except ValidationError as exc:
            raise user_error(exc, "invalid health-rule thresholds", Thresholds, "threshold") from None
        return value


class EvaluateTunedParams(NotebookParams):
    """Notebook 06: the tuned model on the baseline's eval prompts with the baseline's sampling settings."""

    notebook: ClassVar[str] = "06_evaluate_tuned"
    entry: ClassVar[str] = "nbkit.evaluate.tuned:run"

    seed: int = Field(0, description="bootstrap seed")
    tuned_model: str = Field("", description="empty: checkpoint from the training job; or HF folder, bedrock:<arn>, replay:<path>")
    reward: str = Field("", description="reward spec; empty: the baseline's (must match it)")
    pass_threshold: float = Field(0.0, ge=0, description="reward counted as a pass; 0 means the baseline's threshold")
    n_boot: int = Field(2000, ge=100, description="bootstrap resamples")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="1 - confidence level (0.05 for 95% intervals)")
    allow_unmatched: bool = Field(False, description="compare common prompts if the prompt sets differ")
    allow_mismatch: bool = Field(
        False, description="compare even if base and tuned had other eval data or sampling settings (stated in the verdict)")
    show_regressions: int = Field(10, ge=0, description="regressions listed in the report")
    threads: int = Field(0, ge=0, description="torch CPU threads for a local model; 0 means torch's default")


class ReviewOutputsParams(NotebookParams):
    """Notebook 07: browse, compare and annotate samples; static tables for the report."""

    notebook: ClassVar[str] = "07_review_outputs"
    entry: ClassVar[str] = "nbkit.review.stage:run"

    seed: int = Field(0, description="unused here; shared with the other notebooks")
    pass_threshold: float = Field(0.0, ge=0, description="reward counted as a pass (high bucket); 0 means the run's (06, else 03)")
    low_reward: float = Field(0.2, description="rewards below this are the low bucket; components below it failed")
    table_rows: int = Field(10, ge=1, description="rows in each report table")
    show_browser: bool = Field(True, description="show the interactive browser (blank in static HTML)")


class CompareRunsParams(NotebookParams):
    """Notebook 08: several runs side by side (a sweep's points, or any run folders), the best configuration
    with Holm-adjusted tests."""

    notebook: ClassVar[str] = "08_compare_runs"
    entry: ClassVar[str] = "nbkit.sweep.compare:run"

    seed: int = Field(0, description="bootstrap seed")
    runs: str = Field("", description="a sweep folder or comma-separated run folders; empty means this run's sweep, "
                      "else this run")
    n_boot: int = Field(2000, ge=100, description="bootstrap resamples for the intervals")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="1 - confidence level; also the level of the Holm-adjusted tests")


NOTEBOOKS: dict[str, type[NotebookParams]] = {
    cls.notebook: cls
    for cls in (
        ExploreDataParams,
        PrototypeRewardParams,
        EvaluateBaselineParams,
        LaunchTrainingParams,
        MonitorTrainingParams,
        EvaluateTunedParams,
        ReviewOutputsParams,
        CompareRunsParams,
    )
}


def params_class(notebook: str) -> type[NotebookParams]:
    """The parameters class of a notebook, by its full name (`03_evaluate_baseline`) or number (`03`)."""
    for name, cls in NOTEBOOKS.items():
        if notebook in (name, name[:2]):
            return cls
    raise UserError(f"unknown notebook {notebook!r}; notebooks are: {', '.join(NOTEBOOKS)}")


def validate(notebook: str, values: dict[str, Any], source: str = "") -> NotebookParams:
    """Validate one notebook's parameters; the error names each bad field, its value and what is allowed."""
    cls = params_class(notebook)
    where = f" in {source}" if source else ""
    try:
        return cls(**values)
    except ValidationError as exc:
        raise user_error(exc, f"invalid parameters for {cls.notebook}{where}", cls, "parameter") from None


def from_namespace(notebook: str, namespace: dict[str, Any]) -> NotebookParams:
    """Collect a notebook's parameters from its globals (after papermill injected them) and validate."""
    cls = params_class(notebook)
    return validate(cls.notebook, {k: namespace[k] for k in cls.model_fields if k in namespace})


def parameters_cell(notebook: str) -> str:
    """The notebook's `parameters` cell, generated from its params class (the one source of names, defaults
    and help): one annotated literal per line, in the form papermill reads (a plain type, no second `=`)."""
    cls = params_class(notebook)
    lines = []
    for name, field in cls.model_fields.items():
        default = field.get_default(call_default_factory=True)
        help_text = field.description or ""
        if "=" in help_text:
            raise ValueError(f"{cls.__name__}.{name}: papermill drops a parameter line with a second '='")
        value = json.dumps(default) if isinstance(default, str) else repr(default)
        lines.append(f"{name}: {_cell_type(field.annotation)} = {value}  # {help_text}")
    return "\n".join(lines)


def _cell_type(annotation: Any) -> str:
    """The plain type papermill shows for an annotation (Optional and Literal collapse to their base type)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return type(args[0]).__name__
    if origin in (typing.Union, types.UnionType):
        return _cell_type(args[0])
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return annotation.__name__


SWEEP_KEY = "sweep"


def load_file(path: str | os.PathLike, overrides: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Read a params file into one merged dict per notebook that has a section (shared keys + section).

    A notebook runs when the file has its section (`{}` for all defaults). Shared keys go to every notebook
    that declares them; a shared key no notebook declares, or an unknown section, is an error so a typo
    never passes silently. `overrides` (`SECTION.NAME=VALUE`, `NAME=VALUE` for a shared key, dotted deeper
    for nested maps; VALUE read as YAML) change the file's values without editing it.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise UserError(f"params file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"params file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise UserError(f"params file {path} must be a mapping of names to values, got {type(raw).__name__}")
    raw.pop(SWEEP_KEY, None)  # the grid of `nbkit sweep` (nbkit.sweep.grid reads it), not a parameter
    for item in overrides or []:
        apply_override(raw, item)
    sections = {k: v for k, v in raw.items() if str(k)[:2].isdigit()}
    shared = {k: v for k, v in raw.items() if k not in sections}
    for name, body in sections.items():
        if name not in NOTEBOOKS:
            raise UserError(f"{path}: unknown notebook section {name!r}; sections are: {', '.join(NOTEBOOKS)}")
        if body is not None and not isinstance(body, dict):
            raise UserError(f"{path}: section {name!r} must be a mapping, got {type(body).__name__}")
    declared = set().union(*(cls.model_fields for cls in NOTEBOOKS.values()))
    unknown = sorted(set(shared) - declared)
    if unknown:
        raise UserError(
            f"{path}: shared key(s) {', '.join(unknown)} are declared by no notebook; "
            "move them into a notebook section or fix the name"
        )
    return {
        name: {k: v for k, v in shared.items() if k in cls.model_fields} | (sections[name] or {})
        for name, cls in NOTEBOOKS.items()
        if name in sections
    }


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set one `KEY.PATH=VALUE` in a params mapping (sections and nested maps are created as needed)."""
    key, sep, text = item.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not sep or not parts:
        raise UserError(f"override {item!r} is not KEY=VALUE; e.g. 04_launch_training.max_steps=50 or seed=1")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise UserError(f"override {item!r}: the value is not valid YAML ({exc})") from None
    target = raw
    for part in parts[:-1]:
        child = target.get(part)
        if child is None:
            child = target[part] = {}
        if not isinstance(child, dict):
            raise UserError(f"override {item!r}: {part!r} holds a {type(child).__name__}, not a mapping")
        target = child
    target[parts[-1]] = value
