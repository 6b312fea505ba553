"""Watching a running job: refresh the metrics, findings and plots in place until the job ends.

In JupyterLab each refresh replaces the previous output through IPython display handles (no growing pile
of figures); under papermill the same calls produce one static snapshot, because the notebook's `follow`
parameter is off there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from nbkit.errors import UserError
from nbkit.monitor.sources import JobContext

RUNNING = frozenset({"pending", "running"})


def job_running(context: JobContext) -> bool:
    """Whether the recorded job is still pending or running (asks the backend; job.json when it cannot)."""
    if context.run_dir is None:
        return False
    try:
        from nbkit.train import load_job

        return load_job(context.run_dir).status() in RUNNING
    except (UserError, ImportError, KeyError):
        return context.status in RUNNING


def follow(
    refresh: Callable[[], Any],
    render: Callable[[Any], None],
    running: Callable[[], bool],
    *,
    interval_s: float = 30.0,
    timeout_s: float | None = None,
    on_wait: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Any:
    """Refresh and render until `running()` is false or `timeout_s` passes; returns the last result.

    A source that cannot be read yet (the job has not logged its first step) is waited for while the job
    runs; once the job has ended the error is raised, so a wrong source never loops forever.
    """
    deadline = None if timeout_s is None else clock() + timeout_s
    result = None
    while True:
        still_running = running()
        try:
            result = refresh()
        except UserError as exc:
            if not still_running:
                raise
            on_wait(f"waiting for metrics: {exc}")
        else:
            render(result)
        if not still_running or (deadline is not None and clock() >= deadline):
            return result
        sleep(interval_s)


class LiveView:
    """Named output slots in a notebook that each refresh updates in place (display handles)."""

    def __init__(self) -> None:
        self._handles: dict[str, Any] = {}

    def update(self, name: str, obj: Any) -> None:
        """Show `obj` in slot `name`: the first time it is displayed, later it replaces the earlier output."""
        from IPython.display import display

        if name in self._handles:
            self._handles[name].update(obj)
        else:
            self._handles[name] = display(obj, display_id=True)
