"""Training: one job spec for every backend, derived quantities, job handles, the widget, `nbkit train`,
and `safe_extract`, the one way any stage unpacks an archive it did not write.

Importing this package is cheap (pydantic only); backends and widgets are imported on use.
"""

from nbkit.train.archive import safe_extract
from nbkit.train.job import (
    DryRunHandle,
    JobHandle,
    Plan,
    launch,
    load_job,
    load_spec,
    plan_job,
    read_job,
    save_job,
)
from nbkit.train.spec import (
    LOCAL_PRESET,
    AwsSettings,
    Hyperparameters,
    Issue,
    JobSpec,
    LocalSettings,
    from_params,
)
from nbkit.train.stage import Launch, LaunchResult, prepare, prepare_spec, run

__all__ = [
    "LOCAL_PRESET",
    "AwsSettings",
    "DryRunHandle",
    "Hyperparameters",
    "Issue",
    "JobHandle",
    "JobSpec",
    "Launch",
    "LaunchResult",
    "LocalSettings",
    "Plan",
    "from_params",
    "launch",
    "load_job",
    "load_spec",
    "plan_job",
    "prepare",
    "prepare_spec",
    "read_job",
    "run",
    "safe_extract",
    "save_job",
]
