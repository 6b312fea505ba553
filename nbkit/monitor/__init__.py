"""Monitoring (issue 7): one metrics frame for every backend, health rules, when to stop, plots, `nbkit monitor`.

Importing this package is cheap: the names below load their modules (pandas, scipy, matplotlib, mlflow,
boto3 as each needs) on first use.
"""

from __future__ import annotations

from nbkit._lazy import lazy_exports

_EXPORTS = {
    "run": "notebook",
    "COLUMNS": "frame",
    "normalize": "frame",
    "load_metrics": "sources",
    "parse_source": "sources",
    "MlflowRun": "sources",
    "NovaCsv": "sources",
    "CloudWatchLogs": "sources",
    "read_mlflow": "mlflow_reader",
    "read_nova_csv": "nova_csv",
    "read_cloudwatch": "cloudwatch",
    "parse_log_lines": "cloudwatch",
    "Thresholds": "rules",
    "Finding": "rules",
    "analyse": "rules",
    "check": "rules",
    "findings_table": "rules",
    "Recommendation": "stop",
    "recommend_stop": "stop",
    "best_checkpoint": "stop",
    "dashboard": "plots",
    "monitor": "summary",
    "write": "summary",
    "MonitorResult": "summary",
    "follow": "live",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
