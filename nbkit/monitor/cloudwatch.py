"""Metrics from the CloudWatch log lines of Nova RFT jobs: SageMaker training jobs (SMTJ) and HyperPod (SMHP).

The two formats (reference nova-rft.md section 5):
- SMTJ: `step:295 - actor/entropy:0.41 - actor/ppo_kl:0.002 - ... - critic/score/mean:0.61 - ...`
- SMHP: `Training epoch 0, iteration 119/999 | lr: 7e-07 | global_step: 119 | ... | train_rm_score: 0.6797 | ...`
Lines may carry a logger prefix; every other line in the stream is ignored. A metric line whose value is
not a number keeps its other values, and the problem is recorded in `frame.attrs["notes"]` (never dropped
silently). `read_cloudwatch` pages through `filter_log_events` with boto3 (imported lazily).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from nbkit.errors import UserError
from nbkit.monitor.frame import empty_frame, normalize

FORMATS = ("smtj", "smhp", "auto")
SMTJ_LOG_GROUP = "/aws/sagemaker/TrainingJobs"

# SMTJ (verl-style keys) -> normalized names. critic/score is the reward function's score; critic/rewards
# adds the KL penalty, so it stays an extra column.
SMTJ_ALIASES: dict[str, str] = {
    "training/global_step": "step",
    "actor/entropy": "entropy",
    "actor/ppo_kl": "kl",
    "actor/grad_norm": "grad_norm",
    "actor/lr": "lr",
    "actor/pg_loss": "loss",
    "critic/score/mean": "reward_mean",
    "response_length/mean": "completion_len_mean",
    "response_length/clip_ratio": "clipped_share",
}
# SMHP -> normalized names. `clipfrac` is PPO's ratio-clipping fraction, not length clipping: kept as is.
SMHP_ALIASES: dict[str, str] = {
    "global_step": "step",
    "lr": "lr",
    "train_rm_score": "reward_mean",
    "kl": "kl",
    "ent": "entropy",
    "completion_length": "completion_len_mean",
    "reduced_train_loss": "loss",
    "train_step_timing_in_s": "step_time_s",
}

_SMTJ = re.compile(r"(?:^|[\s\]|:])(step:\s*\d+\s+-\s+.*)$")
_SMHP = re.compile(r"Training epoch (\d+), iteration (\d+)/(\d+)\s*\|(.*)$")


def detect_format(line: str) -> str | None:
    """"smtj", "smhp", or None when the line is not a metric line of either format."""
    if _SMHP.search(line):
        return "smhp"
    if _SMTJ.search(line):
        return "smtj"
    return None


def parse_smtj_line(line: str, problems: list[str] | None = None) -> dict[str, float] | None:
    """The metrics of one SMTJ line (keys as logged, `step` included), or None for a non-metric line."""
    match = _SMTJ.search(line)
    if not match:
        return None
    out: dict[str, float] = {}
    for part in match.group(1).split(" - "):
        key, sep, value = part.rpartition(":")
        if sep:
            _put(out, key.strip(), value, problems)
    return out if "step" in out else None


def parse_smhp_line(line: str, problems: list[str] | None = None) -> dict[str, float] | None:
    """The metrics of one SMHP line (keys as logged, spaces as underscores), or None for a non-metric line."""
    match = _SMHP.search(line)
    if not match:
        return None
    out: dict[str, float] = {
        "epoch": float(match.group(1)),
        "iteration": float(match.group(2)),
        "iterations_total": float(match.group(3)),
    }
    for part in match.group(4).split("|"):
        key, sep, value = part.partition(":")
        if sep:
            _put(out, key.strip().replace(" ", "_"), value, problems)
    if "global_step" not in out:
        out["global_step"] = out["iteration"]
    return out


def _put(out: dict[str, float], key: str, text: str, problems: list[str] | None) -> None:
    """Store a value as float; a non-number is reported, not guessed."""
    text = text.strip()
    try:
        out[key] = float(text)
    except ValueError:
        if problems is not None:
            problems.append(f"{key}={text!r} is not a number")


def parse_log_lines(lines: Iterable[str | tuple[int, str]], fmt: str = "auto", source: str = "log lines") -> pd.DataFrame:
    """The normalized frame from log lines (plain strings, or (timestamp ms, message) pairs from CloudWatch).

    With time stamps, `time` is seconds since the first metric line; SMHP lines without them get `time`
    from the cumulative step timing they log.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown log format {fmt!r}; use one of {', '.join(FORMATS)}")
    rows: list[dict[str, float]] = []
    notes: list[str] = []
    seen: set[str] = set()
    for n, item in enumerate(lines, 1):
        stamp, text = item if isinstance(item, tuple) else (None, item)
        for line in str(text).splitlines():
            kind = fmt if fmt != "auto" else detect_format(line)
            if kind is None:
                continue
            problems: list[str] = []
            parsed = (parse_smtj_line if kind == "smtj" else parse_smhp_line)(line, problems)
            if parsed is None:
                continue
            notes += [f"{source} line {n}: {p}; that value was left out" for p in problems]
            seen.add(kind)
            parsed["_ts"] = np.nan if stamp is None else float(stamp)
            rows.append(parsed)
    if not rows:
        frame = empty_frame(source)
        frame.attrs["notes"] = notes
        return frame
    if len(seen) > 1:
        raise UserError(f"{source} mixes SMTJ and SMHP metric lines; read one job's logs at a time")
    kind = seen.pop()
    wide = pd.DataFrame(rows)
    wide["time"] = _elapsed(wide, kind)
    wide = wide.drop(columns="_ts")
    aliases = SMTJ_ALIASES if kind == "smtj" else SMHP_ALIASES
    frame = normalize(wide, aliases, source=source, notes=notes)
    frame.attrs["kind"] = f"cloudwatch_{kind}"
    return frame


def _elapsed(wide: pd.DataFrame, kind: str) -> pd.Series:
    stamps = wide["_ts"]
    if stamps.notna().any():
        return (stamps - stamps.min()) / 1000.0
    if kind == "smhp" and "train_step_timing_in_s" in wide.columns:
        return wide["train_step_timing_in_s"].fillna(0).cumsum()
    return pd.Series(np.nan, index=wide.index)


def read_cloudwatch(
    log_group: str,
    stream_prefix: str | None = None,
    fmt: str = "auto",
    *,
    region: str | None = None,
    client: Any = None,
    start_time_ms: int | None = None,
    page_size: int | None = None,
) -> pd.DataFrame:
    """Read a job's metric lines from CloudWatch Logs (every page of `filter_log_events`) into the frame.

    SMTJ: log group `/aws/sagemaker/TrainingJobs`, stream prefix = the job name. SMHP: the cluster's group
    `/aws/sagemaker/Clusters/<name>/<id>` (a stream per node; a step logged by several nodes keeps the last).
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown log format {fmt!r}; use one of {', '.join(FORMATS)}")
    if client is None:
        import boto3

        client = boto3.client("logs", region_name=region or None)
    kwargs: dict[str, Any] = {"logGroupName": log_group}
    if stream_prefix:
        kwargs["logStreamNamePrefix"] = stream_prefix
    if start_time_ms is not None:
        kwargs["startTime"] = int(start_time_ms)
    config = {"PageSize": page_size} if page_size else {}
    where = f"CloudWatch {log_group}" + (f" (streams {stream_prefix}*)" if stream_prefix else "")
    events = list(_events(client, kwargs, config, where, region))
    if stream_prefix:  # the service filters already; this keeps emulators that ignore the prefix honest
        events = [e for e in events if str(e.get("logStreamName", stream_prefix)).startswith(stream_prefix)]
    events.sort(key=lambda e: (e.get("timestamp", 0), e.get("ingestionTime", 0)))
    return parse_log_lines(((e.get("timestamp"), e.get("message", "")) for e in events), fmt, where)


def _events(client: Any, kwargs: dict[str, Any], config: dict[str, Any], where: str, region: str | None):
    """Every event of every page; AWS errors become messages that say what to fix."""
    from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

    try:
        paginator = client.get_paginator("filter_log_events")
        for page in paginator.paginate(**kwargs, PaginationConfig=config):
            yield from page.get("events", [])
    except NoCredentialsError:
        raise UserError(f"reading {where} needs AWS credentials (aws configure / aws sso login / AWS_PROFILE)") from None
    except NoRegionError:
        raise UserError(f"reading {where} needs a region: pass region= or set AWS_DEFAULT_REGION") from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            raise UserError(
                f"{where} not found in region {region or client.meta.region_name}: check the log group, the "
                "job name and the region (the job's logs appear once its instances start)"
            ) from None
        if code in ("AccessDeniedException", "AccessDenied"):
            raise UserError(f"reading {where} was denied: the identity needs logs:FilterLogEvents on that group") from None
        raise
