"""Backend registry: `get(name)` imports `nbkit.train.<name>` lazily.

Why lazy: the local backend pulls torch/transformers/trl and the AWS backends boto3/sagemaker; importing
`nbkit.train` (the widget, the CLI, notebook 04 with an AWS params file) must not pay for either.

A backend module exposes:
- `plan(spec: JobSpec) -> Plan`: pure, no side effects; everything that would be sent, in `Plan.request`.
- `submit(plan: Plan, run_dir: Path) -> JobHandle`: the only call that starts work or spends money.
- `handle_from_dict(data: dict, run_dir: Path) -> JobHandle`: rebuilds a handle from `JobHandle.to_dict()`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from nbkit.errors import UserError
from nbkit.train.spec import BACKENDS

if TYPE_CHECKING:
    from nbkit.train.job import JobHandle, Plan
    from nbkit.train.spec import JobSpec

MODULES = {name: f"nbkit.train.{name}" for name in BACKENDS} | {"sagemaker-serverless": "nbkit.train.serverless"}
EXTRAS = {"local": "local", "sagemaker": "aws", "hyperpod": "aws", "bedrock": "aws", "sagemaker-serverless": "aws"}
REQUIRED = ("plan", "submit", "handle_from_dict")


class Backend(Protocol):
    def plan(self, spec: JobSpec) -> Plan: ...

    def submit(self, plan: Plan, run_dir: Path) -> JobHandle: ...

    def handle_from_dict(self, data: dict[str, Any], run_dir: Path) -> JobHandle: ...


def get(name: str) -> Backend:
    """The backend module for `name`, with a message that says how to fix a missing dependency."""
    if name not in MODULES:
        raise UserError(f"unknown training backend {name!r}; backends are: {', '.join(MODULES)}")
    module_name = MODULES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise UserError(f"training backend {name!r} is not part of this installation ({module_name} missing)") from None
        raise UserError(
            f"training backend {name!r} needs the Python package {exc.name!r}, which is not installed: "
            f"install the extra with `pip install -e '.[{EXTRAS[name]}]'`"
        ) from None
    missing = [fn for fn in REQUIRED if not callable(getattr(module, fn, None))]
    if missing:
        raise UserError(f"training backend module {module_name} lacks {', '.join(missing)}")
    return module


def available() -> dict[str, bool]:
    """Which backends import here (for the widget's dropdown); imports each one, so call it sparingly."""
    result = {}
    for name in MODULES:
        try:
            get(name)
            result[name] = True
        except UserError:
            result[name] = False
    return result
