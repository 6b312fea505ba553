"""Typed settings that fail loudly: the base model of every params class and spec, and one error format.

Why a shared base: YAML hands `true` where a count was meant and pydantic's lax mode reads it as 1, and a
typo in a nested map must not fall back to a default. Every settings model (notebook parameters, the job
spec and its parts, health-rule thresholds) inherits these rules, and every validation failure becomes
one `UserError` that names each field, the value given and what is allowed.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from nbkit.errors import UserError


class StrictModel(BaseModel):
    """Unknown names are errors, assignments are validated, and a boolean is never a number."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name in cls.model_fields:
            annotation = cls.model_fields[info.field_name].annotation
            if _numeric(annotation) and not _accepts(annotation, bool):
                raise ValueError("true/false is not a number here; write the number itself")
        return value


def _accepts(annotation: Any, kind: type) -> bool:
    if annotation is kind:
        return True
    return any(_accepts(arg, kind) for arg in typing.get_args(annotation))


def _numeric(annotation: Any) -> bool:
    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Annotated):
        return any(_numeric(arg) for arg in typing.get_args(annotation))
    return False


class LinesError(UserError):
    """A UserError of one problem per line; `lines` lets an outer check merge them under its field name."""

    lines: list[str]


def user_error(exc: ValidationError, title: str, model: type[BaseModel] | None = None,
               noun: str = "name") -> LinesError:
    """One readable error for every problem pydantic found: `field = value: what is wrong`.

    An unknown name lists the valid names of the (nested) model that rejected it, so the fix is in the
    message. A nested check that raised such an error itself (a spec inside notebook parameters) has its
    lines merged in under the outer field's name. The lines stay on the error as `.lines`.
    """
    lines: list[str] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        field = ".".join(str(p) for p in loc)
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, LinesError):
            lines += [f"{field}.{line}" if field else line for line in inner.lines]
        elif err["type"] == "extra_forbidden":
            names = _valid_names(model, loc) if model is not None else []
            listed = f"; valid names are: {', '.join(names)}" if names else ""
            lines.append(f"{field}: unknown {noun}{listed}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{field or '(value)'} = {err.get('input')!r}: {msg}")
    return lines_error(title, lines)


def lines_error(title: str, lines: list[str]) -> LinesError:
    """A UserError of one problem per line (kept as `.lines`, so an outer check can merge them)."""
    error = LinesError(f"{title}:\n" + "\n".join(f"  {line}" for line in lines))
    error.lines = lines
    return error


def _valid_names(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the nested model that holds the unknown name at `loc`."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        inner = _model_in(field.annotation) if field is not None else None
        if inner is None:
            return []
        model = inner
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None

