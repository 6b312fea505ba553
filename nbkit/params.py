"""Typed parameters for every notebook.

Papermill only warns on unknown names and passes loose types (YAML 1.1 reads `3e-6` as a string, numpy
scalars and Paths arrive as strings or odd types), so every notebook validates its parameters here:
values are coerced, unknown names are rejected with the list of valid ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nbkit.errors import UserError


class NotebookParams(BaseModel):
    """Fields every notebook has; subclasses add their own, each with a default that is small and safe."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    notebook: ClassVar[str] = ""

    run_dir: str = Field("", description="run folder (runs/<name>); '' = runs/interactive")
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
    notebook: ClassVar[str] = "01_explore_data"


class PrototypeRewardParams(NotebookParams):
    notebook: ClassVar[str] = "02_prototype_reward"


class EvaluateBaselineParams(NotebookParams):
    notebook: ClassVar[str] = "03_evaluate_baseline"


class LaunchTrainingParams(NotebookParams):
    notebook: ClassVar[str] = "04_launch_training"


class MonitorTrainingParams(NotebookParams):
    notebook: ClassVar[str] = "05_monitor_training"


class EvaluateTunedParams(NotebookParams):
    notebook: ClassVar[str] = "06_evaluate_tuned"


class ReviewOutputsParams(NotebookParams):
    notebook: ClassVar[str] = "07_review_outputs"


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
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(parameters)"
            if err["type"] == "extra_forbidden":
                valid = ", ".join(sorted(cls.model_fields))
                lines.append(f"  {field}: unknown parameter; valid names are: {valid}")
            else:
                lines.append(f"  {field} = {err.get('input')!r}: {err['msg']}")
        raise UserError(f"invalid parameters for {cls.notebook}{where}:\n" + "\n".join(lines)) from None


def from_namespace(notebook: str, namespace: dict[str, Any]) -> NotebookParams:
    """Collect a notebook's parameters from its globals (after papermill injected them) and validate."""
    cls = params_class(notebook)
    return validate(cls.notebook, {k: namespace[k] for k in cls.model_fields if k in namespace})


def describe(notebook: str) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, help) of each parameter: the source of truth the notebooks' cells must match."""
    cls = params_class(notebook)
    rows = []
    for name, field in cls.model_fields.items():
        kind = getattr(field.annotation, "__name__", None) or str(field.annotation).replace("typing.", "")
        rows.append((name, kind, field.default, field.description or ""))
    return rows


def load_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a params file into one merged dict per notebook that has a section (shared keys + section).

    A notebook runs when the file has its section (`{}` for all defaults). Shared keys go to every notebook
    that declares them; a shared key no notebook declares, or an unknown section, is an error so a typo
    never passes silently.
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
