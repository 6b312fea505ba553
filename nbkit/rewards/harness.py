"""Run any reward handler over samples and give every sample exactly one status.

Statuses: ok, exception, timeout, crash, invalid_format (result breaks the contract, including a call that
returns results for ids it was not given), missing_result (no result for the sample's id), non_finite
(NaN/inf score or metric). Nothing is dropped: the report has one result per input sample, in input order.
Ids are read from the samples before the reward sees them, and in-process the reward gets a deep copy, so a
reward that renames ids or edits its samples can neither earn `ok` nor change the caller's data.

`workers=0` runs in-process and is the hot path of local training (called every GRPO step), so results are
kept as columns and the per-sample objects, summaries and latency tables are built only when asked for.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain, repeat
from operator import itemgetter
from typing import Any, overload

from nbkit.errors import UserError
from nbkit.plain import json_safe
from nbkit.progress import Task
from nbkit.rewards.contract import METRIC_TYPES, STATUSES, ContractError, check_result, envelope_hint
from nbkit.rewards.executors import (
    OUTPUT_LIMIT,
    InlineExecutor,
    Outcome,
    ProcessExecutor,
    ThreadExecutor,
    is_transient,
)
from nbkit.rewards.graders import GRADER_ERROR

FAILED_CALL = ("raised", "timeout", "crash")
_OUTCOME_STATUS = {"raised": "exception", "timeout": "timeout", "crash": "crash", "unserializable": "invalid_format"}


@dataclass(slots=True)
class SampleResult:
    """The fate of one sample: status is one of STATUSES; score and metrics only when the result was usable."""

    id: str
    status: str
    score: float | None
    metrics: dict[str, float]
    error: str | None
    latency_s: float


@dataclass
class HarnessReport:
    """Columns of per-sample outcomes plus what was learned about the reward across calls."""

    ids: list[str]
    statuses: list[str]
    score_list: list[float | None]
    raw_metrics: list[dict[str, float] | None]
    errors: list[str | None]
    call_latencies: list[float]
    wall_s: float
    score_range: tuple[float, float] | None = (0.0, 1.0)
    notes: list[str] = field(default_factory=list)
    determinism: dict[str, Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    columns: _Columns | None = field(default=None, repr=False)
    output: str = ""  # what the reward wrote to stdout/stderr (the first 64 KiB; never the caller's stdout)
    output_bytes: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def metric_list(self) -> list[dict[str, float] | None]:
        """Metrics per sample as name -> value. Well-formed calls keep theirs as flat columns (names, values,
        counts per sample: no per-sample containers for the garbage collector to walk); built here, once."""
        out = list(self.raw_metrics)
        cols = self.columns
        if cols is None:
            return out
        sample, entry = 0, 0  # positions in the flat per-sample counts and per-entry names/values
        for start, stop in zip(cols.chunk_starts, cols.chunk_stops, strict=True):
            for k in range(start, stop):
                count = cols.metric_counts[sample]
                sample += 1
                if count < 0:
                    out[k] = None
                    continue
                out[k] = {cols.metric_names[i]: float(cols.metric_values[i]) for i in range(entry, entry + count)}
                entry += count
        return out

    @cached_property
    def latencies(self) -> list[float]:
        """Seconds per sample: its call's time divided by the call's size (a re-run alone overrides)."""
        out = [0.0] * len(self.ids)
        if self.columns is not None:
            cols = self.columns
            for start, stop, latency in zip(cols.span_starts, cols.span_stops, cols.span_latencies, strict=True):
                out[start:stop] = [latency / (stop - start)] * (stop - start)
        return out

    @cached_property
    def results(self) -> list[SampleResult]:
        return [
            SampleResult(i, st, sc, m if m is not None else {}, e, lat)
            for i, st, sc, m, e, lat in zip(self.ids, self.statuses, self.score_list, self.metric_list,
                                             self.errors, self.latencies, strict=True)
        ]

    @overload
    def scores(self, default: float = 0.0) -> list[float]: ...

    @overload
    def scores(self, default: None) -> list[float | None]: ...

    def scores(self, default: float | None = 0.0) -> list[Any]:
        """One score per sample; samples that did not end ok get `default` (what a trainer should learn)."""
        return [s if st == "ok" else default for s, st in zip(self.score_list, self.statuses, strict=True)]

    @property
    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for status in self.statuses:
            counts[status] += 1
        return {"total": len(self.statuses), **counts}

    @property
    def ok(self) -> bool:
        return all(s == "ok" for s in self.statuses)

    @property
    def error_rate(self) -> float:
        return 1.0 - self.summary["ok"] / len(self.statuses) if self.statuses else 0.0

    @cached_property
    def duplicate_ids(self) -> list[str]:
        seen: set[str] = set()
        dups: dict[str, None] = {}
        for i in self.ids:
            if i in seen:
                dups[i] = None
            seen.add(i)
        return list(dups)

    @cached_property
    def out_of_range(self) -> list[str]:
        """Ids whose score lies outside the expected range (a warning: the contract allows any finite score)."""
        if self.score_range is None:
            return []
        lo, hi = self.score_range
        return [i for i, s, st in zip(self.ids, self.score_list, self.statuses, strict=True)
                if st == "ok" and s is not None and not lo <= s <= hi]

    @property
    def warnings(self) -> list[str]:
        out = list(self.notes)
        if self.duplicate_ids:
            out.append(f"{len(self.duplicate_ids)} duplicate sample id(s) (e.g. {self.duplicate_ids[:3]}): "
                       "results are matched by id, so give every sample its own id")
        if self.out_of_range and self.score_range is not None:
            lo, hi = self.score_range
            out.append(f"{len(self.out_of_range)} score(s) outside the expected range [{lo:g}, {hi:g}] "
                       f"(e.g. {self.out_of_range[:3]})")
        if self.determinism and self.determinism["mismatched"]:
            out.append(f"not deterministic: {len(self.determinism['mismatched'])} of {self.determinism['checked']} "
                       f"samples scored differently on a second run (e.g. {self.determinism['mismatched'][:3]})")
        if self.output_bytes:
            out.append(f"the reward wrote {self.output_bytes:,} bytes to stdout/stderr; the report's output "
                       f"keeps the first {min(self.output_bytes, OUTPUT_LIMIT):,}")
        grader_errors = sum(1 for m in self.metric_list if m and m.get(GRADER_ERROR))
        if grader_errors:
            out.append(f"{grader_errors} sample(s) scored 0 because the grader could not score them "
                       "(metric grader_error = 1; see the log for why)")
        return out

    @cached_property
    def latency(self) -> dict[str, Any]:
        """Per call and per sample latency quantiles (seconds), calls made, wall time and throughput."""
        return {
            "calls": len(self.call_latencies),
            "wall_s": self.wall_s,
            "throughput_per_s": len(self.ids) / self.wall_s if self.wall_s > 0 else float("nan"),
            "per_call_s": _quantiles(self.call_latencies),
            "per_sample_s": _quantiles(self.latencies),
        }

    def to_frame(self) -> Any:
        """One row per sample: id, status, score, error, latency_s, then one column per metric name."""
        import pandas as pd

        frame = pd.DataFrame({"id": self.ids, "status": self.statuses, "score": self.score_list,
                              "error": self.errors, "latency_s": self.latencies})
        metrics = pd.DataFrame.from_records([m or {} for m in self.metric_list], index=frame.index)
        return pd.concat([frame, metrics.add_prefix("metric.")], axis=1)

    def to_dict(self, results: bool = True) -> dict[str, Any]:
        """JSON-ready: summary, latency, warnings, determinism, settings and (optionally) every result."""
        out: dict[str, Any] = {"summary": self.summary, "latency": self.latency, "warnings": self.warnings,
                               "error_rate": self.error_rate, "determinism": self.determinism,
                               "settings": self.settings, "output": self.output}
        if results:
            out["results"] = [{"id": r.id, "status": r.status, "score": r.score, "error": r.error,
                               "metrics": r.metrics, "latency_s": r.latency_s} for r in self.results]
        return json_safe(out)

    def describe(self) -> str:
        """A few plain lines for logs and static reports."""
        s = self.summary
        bad = ", ".join(f"{k} {v}" for k, v in s.items() if k not in ("total", "ok") and v)
        lat = self.latency
        lines = [f"{s['ok']}/{s['total']} ok" + (f" ({bad})" if bad else ""),
                 f"per call p50 {lat['per_call_s']['p50'] * 1e3:.2f} ms, p95 {lat['per_call_s']['p95'] * 1e3:.2f} ms; "
                 f"{lat['throughput_per_s']:.0f} samples/s over {lat['calls']} calls"]
        return "\n".join(lines + [f"warning: {w}" for w in self.warnings])

    def __repr__(self) -> str:
        return f"HarnessReport({self.summary})"


def _quantiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {k: float("nan") for k in ("p50", "p95", "p99", "mean", "max")}
    ordered = sorted(values)

    def q(p: float) -> float:
        pos = p * (len(ordered) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(ordered) - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    return {"p50": q(0.5), "p95": q(0.95), "p99": q(0.99), "mean": sum(ordered) / len(ordered), "max": ordered[-1]}


# ------------------------------------------------------------------------------------ classification

class _Columns:
    """Per-sample output columns being filled call by call. Every sample belongs to exactly one call and every
    call is classified, so "ok" is the default and only failures are written one by one."""

    def __init__(self, ids: list[str]) -> None:
        n = len(ids)
        self.ids = ids
        self.statuses: list[str] = ["ok"] * n
        self.scores: list[float | None] = [None] * n
        self.metrics: list[dict[str, float] | None] = [None] * n
        self.errors: list[str | None] = [None] * n
        # Flat lists of numbers and strings only (no per-call containers that would outlive the call and
        # wake the garbage collector): the calls' spans and latencies, and the metrics of well-formed calls.
        self.span_starts: list[int] = []
        self.span_stops: list[int] = []
        self.span_latencies: list[float] = []
        self.chunk_starts: list[int] = []
        self.chunk_stops: list[int] = []
        self.metric_counts: list[int] = []
        self.metric_names: list[str] = []
        self.metric_values: list[float] = []

    def fail(self, k: int, status: str, error: str) -> None:
        self.statuses[k], self.scores[k], self.metrics[k], self.errors[k] = status, None, None, error

    def good(self, k: int, score: float, metrics: dict[str, float] | None) -> None:
        self.statuses[k], self.scores[k], self.metrics[k], self.errors[k] = "ok", score, metrics, None


_ID = itemgetter("id")
_SCORE = itemgetter("aggregate_reward_score")
_NAME = itemgetter("name")
_TYPE = itemgetter("type")
_FIRST = itemgetter(0)
_LIST_ONLY, _LIST_OR_NONE = frozenset({list}), frozenset({list, type(None)})
_NUMBER_TYPES = frozenset({float, int})
METRIC_TYPE_SET = frozenset(METRIC_TYPES)
_NONE_LEN = -1


def _numbers(values: list[Any]) -> set[type] | None:
    """The types of `values` if all are plain finite ints and floats (the contract's numbers: no bool, no numpy
    scalar), else None."""
    types = set(map(type, values))
    try:
        return types if types <= _NUMBER_TYPES and math.isfinite(sum(values)) else None
    except OverflowError:  # an int beyond the largest float: the per-result checks name it
        return None


def _store_metrics(cols: _Columns, start: int, stop: int, metric_lists: list[Any]) -> bool:
    """Keep a call's metrics when every metrics_list is a list of well-formed entries, checked over all the
    call's entries at once in C-level passes (lists by exact type, entries through `dict.get`, which refuses
    anything but dicts, as the per-result checks do); False sends the call to those checks, which say what
    is wrong.

    Rewards usually name the same metrics in the same order for every sample: then names and types are
    compared with the first sample's as whole lists (identity-fast) and only that sample's are checked."""
    try:
        containers = set(map(type, metric_lists))
        whole = containers == _LIST_ONLY
        if whole:
            counts = list(map(len, metric_lists))
            single = counts.count(1) == len(counts)  # one metric a sample, the commonest case: no chaining
            entries = list(map(_FIRST, metric_lists)) if single else list(chain.from_iterable(metric_lists))
        elif containers == _LIST_OR_NONE:
            counts = [_NONE_LEN if ml is None else len(ml) for ml in metric_lists]
            entries = [e for ml in metric_lists if ml is not None for e in ml]
        else:  # a tuple, a dict, a string ...: the per-result checks say which
            return False
        values: list[Any] = list(map(dict.get, entries, repeat("value")))
        names = list(map(_NAME, entries))
        kinds = list(map(_TYPE, entries))
        k = counts[0]
        if whole and k and names == names[:k] * len(counts) and kinds == kinds[:k] * len(counts):
            names_seen, kinds_seen = names[:k], kinds[:k]  # the same k names and types for every sample
        else:
            names_seen, kinds_seen = list(set(names)), list(set(kinds))
        if _numbers(values) is None or not all(type(name) is str and name for name in names_seen) or not all(
                kind in METRIC_TYPE_SET for kind in kinds_seen):
            return False
    except (KeyError, TypeError):
        return False
    cols.metric_counts.extend(counts)
    cols.metric_names.extend(names)
    cols.metric_values.extend(values)
    cols.chunk_starts.append(start)
    cols.chunk_stops.append(stop)
    return True


def _classify(cols: _Columns, start: int, stop: int, outcome: Outcome, notes: list[str], fresh: bool = False) -> None:
    """Write the statuses of samples start..stop (one call) from what the call produced; `fresh` says these
    samples were never classified before (their columns still hold the defaults).

    Fast path, one vectorised pass per call in C-level list operations: a list of dicts whose ids equal the
    samples' ids in order, whose scores are plain finite numbers and whose metrics (if any) are well formed.
    Anything else goes through the per-result checks, which name the problem; both give the same statuses.
    """
    cols.span_starts.append(start)
    cols.span_stops.append(stop)
    cols.span_latencies.append(outcome.latency_s)
    if outcome.kind != "returned":
        status = _OUTCOME_STATUS[outcome.kind]
        for k in range(start, stop):
            cols.fail(k, status, outcome.error or status)
        return
    out = outcome.value
    n = stop - start
    if type(out) is list and len(out) == n:
        try:
            if list(map(_ID, out)) == cols.ids[start:stop]:
                scores = list(map(_SCORE, out))
                types = _numbers(scores)
                metric_lists = list(map(dict.get, out, repeat("metrics_list")))  # TypeError unless all are dicts
                if types is not None and (metric_lists.count(None) == n
                                          or _store_metrics(cols, start, stop, metric_lists)):
                    cols.scores[start:stop] = list(map(float, scores)) if int in types else scores
                    if not fresh:  # a retried call failed before: clear what that left
                        cols.statuses[start:stop] = ["ok"] * n
                        cols.errors[start:stop] = [None] * n
                        cols.metrics[start:stop] = [None] * n
                    return
        except (KeyError, TypeError):
            pass  # something is off: the per-result checks below say what, sample by sample
    if not isinstance(out, list):
        message = f"the handler returned {type(out).__name__}, expected a list with one result per sample" \
                  f"{envelope_hint(out)}"
        for k in range(start, stop):
            cols.fail(k, "invalid_format", message)
        return
    _classify_slow(cols, start, stop, out, notes)


def _hashable_id(r: Any) -> Any:
    if isinstance(r, dict):
        rid = r.get("id")
        try:
            hash(rid)
            return rid
        except TypeError:
            return None
    return None


def _classify_slow(cols: _Columns, start: int, stop: int, out: list, notes: list[str]) -> None:
    """Match results to samples by id (first unused result with that id), then check each one. Results left
    over (ids the call was not given, or a second result for one id) break the contract for the whole call:
    the reward answered something it was not asked, so none of its answers in that call can be trusted."""
    n = stop - start
    by_id: dict[Any, list[int]] = {}
    for pos, r in enumerate(out):
        rid = _hashable_id(r)
        if rid is not None:
            by_id.setdefault(rid, []).append(pos)
    used: set[int] = set()
    for j in range(n):
        k = start + j
        sid = cols.ids[k]
        positions = by_id.get(sid)
        if positions:
            pos = positions.pop(0)
            used.add(pos)
            try:
                score, metrics = check_result(out[pos])
                cols.good(k, score, metrics or None)
            except ContractError as exc:
                cols.fail(k, exc.status, f"result for id {sid!r}: {exc}")
            continue
        if len(out) == n and (not isinstance(out[j], dict) or not isinstance(out[j].get("id"), str | int)):
            what = type(out[j]).__name__ if not isinstance(out[j], dict) else "an object without a string 'id'"
            used.add(j)
            cols.fail(k, "invalid_format", f"result {j} of the call is {what}; each result needs the sample's id")
            continue
        returned = [_hashable_id(r) for r in out[:5]]
        retyped = next((rid for rid in by_id if not isinstance(rid, str) and str(rid) == sid), None)
        hint = f"; id {retyped!r} is {type(retyped).__name__}: return the sample's id unchanged" \
            if retyped is not None else ""
        cols.fail(k, "missing_result", f"no result with id {sid!r}: the call returned {len(out)} result(s) for "
                                       f"{n} sample(s) (first ids returned: {returned}){hint}")
    extra = [_hashable_id(out[p]) for p in range(len(out)) if p not in used]
    if extra:
        message = (f"the call returned {len(extra)} result(s) whose id matches no sample it was given "
                   f"(ids {extra[:5]}): the contract is exactly one result per sample id, unchanged")
        for k in range(start, stop):
            own = cols.errors[k]
            cols.fail(k, "invalid_format", f"{message}; {own}" if own else message)
        notes.append(f"a call returned {len(extra)} result(s) for ids it was not given (e.g. {extra[:3]}): "
                     "its samples are invalid_format")


# ----------------------------------------------------------------------------------------- running

def _executor(reward: Any, workers: int, timeout: float | None, memory_mb: int | None,
              start_method: str | None, context: Any, copy_samples: bool = True) -> Any:
    handler = getattr(reward, "handler", reward)
    if not callable(handler):
        raise UserError(f"the reward's handler is {type(handler).__name__}, not callable: expected "
                        "lambda_handler(event, context)")
    if workers < 0:
        raise UserError(f"workers must be >= 0 (0 = in this process), got {workers}")
    if workers == 0:
        return InlineExecutor(handler, timeout, context,
                              copy_samples=copy_samples and not getattr(reward, "pure", False))
    if getattr(reward, "remote", False):
        return ThreadExecutor(handler, workers, timeout, context)
    return ProcessExecutor(reward, workers, timeout, memory_mb, start_method, context)


class _Batches(Sequence):
    """The calls' batches, sliced when a call starts (not all up front: a long run would keep every slice)."""

    def __init__(self, samples: list[dict], size: int, ids: list[str] | None = None) -> None:
        self.samples, self.size, self.ids = samples, size, ids
        self.total = -(-len(samples) // size)  # not `count`: that is Sequence's method

    def __len__(self) -> int:
        return self.total

    def span(self, c: int) -> tuple[int, int]:
        start = c * self.size
        return start, min(start + self.size, len(self.samples))

    def __getitem__(self, c: int) -> list[dict]:  # type: ignore[override]  # batches are never sliced
        if not 0 <= c < self.total:
            raise IndexError(c)
        start = c * self.size
        batch = self.samples[start:start + self.size]
        if self.ids is not None:  # read as the call starts, before the reward sees the batch (cache-hot)
            self.ids[start:start + len(batch)] = _sample_ids(batch, offset=start)
        return batch

    def __iter__(self) -> Iterator[list[dict]]:
        for c in range(self.total):
            yield self[c]


def _sample_ids(samples: Sequence[Any], offset: int = 0) -> list[str]:
    """Every sample's id (results are matched by id), checked in C-level passes; details only on failure."""
    try:
        ids = list(map(_ID, samples))
        "".join(ids)  # TypeError unless every id is a string
        if all(ids):
            return ids
    except (KeyError, TypeError):
        pass
    problems = []
    for i, s in enumerate(samples, offset):
        if not isinstance(s, dict):
            problems.append(f"sample {i} is {type(s).__name__}")
        elif not isinstance(s.get("id"), str) or not s.get("id"):
            problems.append(f"sample {i} has id {s.get('id')!r}")
    raise UserError(
        f"{len(problems)} sample(s) lack a non-empty string 'id' ({'; '.join(problems[:5])}): results are matched "
        "to samples by id. Build samples with nbkit.rewards.make_sample(record, response, sample_id=...)"
    )


def run_harness(
    reward: Any,
    samples: Sequence[dict],
    batch_size: int = 16,
    workers: int = 0,
    timeout: float | None = 60.0,
    retries: int = 0,
    *,
    backoff_s: float = 0.5,
    retry_on: Callable[[tuple[str, ...], str], bool] | None = None,
    memory_mb: int | None = 2048,
    score_range: tuple[float, float] | None = (0.0, 1.0),
    check_determinism: bool | int = False,
    split_failed: bool = True,
    start_method: str | None = None,
    context: Any = None,
    progress: bool = False,
    copy_samples: bool = True,
) -> HarnessReport:
    """Run a reward over samples in calls of `batch_size` and classify every sample's outcome.

    workers=0 calls the handler in this process (cheapest; the timeout is best effort, see InlineExecutor);
    workers>=1 uses that many isolated worker processes (hard timeout, `memory_mb` limit each; a raising,
    hanging, exiting or crashing reward loses only its own call, and the dead worker is replaced) or, for a
    remote reward (a deployed Lambda), that many concurrent invocations. Calls that fail with a transient
    error (throttling, connection; or `retry_on(error_types, message)`) are retried `retries` times with
    exponential backoff. With `split_failed`, each sample of a failed multi-sample call is re-run alone, so
    the failure is pinned to the samples that cause it and the others still get their scores.
    `check_determinism` re-scores the first N ok samples (True = 32) and reports any that differ.
    In-process, each call gets a deep copy of its batch so a reward cannot edit the caller's samples (or the
    records they share data with); `copy_samples=False` skips that copy (~1.5 us a sample) for callers that
    build fresh samples for this run alone and read none of them afterwards, such as the local trainer.
    """
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    if timeout is not None and timeout <= 0:
        raise UserError(f"timeout must be > 0 seconds (or None for no limit), got {timeout}")
    samples = samples if isinstance(samples, list) else list(samples)
    executor = _executor(reward, workers, timeout, memory_mb, start_method, context, copy_samples)
    n = len(samples)
    # Ids are read before the reward sees its samples, so a reward that renames them cannot match its results:
    # up front for worker processes (a batch that cannot be matched is never sent), as each call starts
    # in-process (where the reward gets a copy).
    inline = isinstance(executor, InlineExecutor)
    cols = _Columns([""] * n if inline else _sample_ids(samples))
    notes: list[str] = []
    batches = _Batches(samples, batch_size, cols.ids if inline else None)
    bar = _progress(progress, n, getattr(reward, "name", "reward"))
    call_latencies: list[float] = [0.0] * len(batches)
    failed: dict[int, Outcome] = {}  # only failed calls are kept: retries and splits need them

    def on_done(c: int, outcome: Outcome) -> None:
        a, b = batches.span(c)
        _classify(cols, a, b, outcome, notes, fresh=True)
        call_latencies[c] = outcome.latency_s
        if outcome.kind != "returned":
            failed[c] = outcome
        if bar is not None:
            bar.update(b - a)

    begin = time.perf_counter()
    try:
        executor.map(batches, on_done)
        retried = _retry(executor, batches, failed, retries, backoff_s, retry_on or is_transient,
                         call_latencies, cols, notes)
        isolated = _split(executor, samples, batches, failed, cols, notes, call_latencies) if split_failed else 0
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - begin
    report = HarnessReport(cols.ids, cols.statuses, cols.scores, cols.metrics, cols.errors, call_latencies, wall,
                           score_range, notes, columns=cols)
    if retried:
        notes.append(f"{retried} call(s) were retried after transient errors")
    if isolated:
        notes.append(f"{isolated} failed call(s) were re-run one sample at a time to find the failing samples")
    if not executor.timeout_enforced and timeout:
        notes.append("the per-call timeout was not enforced (in-process outside the main thread): "
                     "use workers >= 1 for a hard timeout")
    if check_determinism:
        limit = 32 if check_determinism is True else int(check_determinism)
        report.determinism = _determinism(executor, samples, cols, limit, batch_size)
    captured = getattr(executor, "captured", None)
    if captured is not None and captured.total:
        report.output, report.output_bytes = captured.text(), captured.total
    report.settings = {"batch_size": batch_size, "workers": workers, "timeout_s": timeout, "retries": retries,
                       "memory_mb": memory_mb if workers else None, "reward": getattr(reward, "name", None),
                       "executor": type(executor).__name__, "workers_replaced": getattr(executor, "replaced", 0)}
    return report


def _progress(progress: bool, total: int, name: str) -> Task | None:
    """A bar in the notebook and a line in the runner's live status (scoring thousands of samples with a
    slow reward takes minutes)."""
    return Task(f"scoring with {name}", total, unit="sample") if progress else None


def _retry(executor: Any, batches: _Batches, failed: dict[int, Outcome], retries: int, backoff_s: float,
           rule: Callable[[tuple[str, ...], str], bool], call_latencies: list[float], cols: _Columns,
           notes: list[str]) -> int:
    """Re-run calls that raised a transient error, waiting backoff_s * 2**attempt (with jitter) between tries;
    what a retry returns replaces what the failed try left."""
    retried = 0
    for attempt in range(retries):
        again = [c for c, o in failed.items() if o.kind == "raised" and rule(o.error_types, o.error or "")]
        if not again:
            break
        time.sleep(backoff_s * (2 ** attempt) * (0.5 + random.random() / 2))
        for c, outcome in zip(again, executor.map([batches[c] for c in again]), strict=True):
            call_latencies.append(outcome.latency_s)
            _classify(cols, *batches.span(c), outcome, notes)
            outcome.value = None
            if outcome.kind == "returned":
                del failed[c]
            else:
                failed[c] = outcome
        retried += len(again)
    return retried


def _split(executor: Any, samples: list[dict], batches: _Batches, failed: dict[int, Outcome], cols: _Columns,
           notes: list[str], call_latencies: list[float]) -> int:
    """Re-run each sample of a failed multi-sample call on its own and keep what each one does alone."""
    calls = [c for c, o in failed.items() if o.kind in FAILED_CALL and len(batches[c]) > 1]
    if not calls:
        return 0
    singles = [k for c in calls for k in range(*batches.span(c))]
    fresh = executor.map([[samples[k]] for k in singles])
    for k, outcome in zip(singles, fresh, strict=True):
        call_latencies.append(outcome.latency_s)
        _classify(cols, k, k + 1, outcome, notes)
        if cols.errors[k]:
            cols.errors[k] = f"{cols.errors[k]} [alone, after its batch failed]"
    return len(calls)


def _determinism(executor: Any, samples: list[dict], cols: _Columns, limit: int, batch_size: int) -> dict[str, Any]:
    """Score the first `limit` ok samples again, from fresh copies, and compare (same input, same score?)."""
    chosen = [k for k, st in enumerate(cols.statuses) if st == "ok"][:limit]
    copies = [json.loads(json.dumps(samples[k], default=str)) for k in chosen]
    again = _Columns([cols.ids[k] for k in chosen])
    batches = _Batches(copies, batch_size)
    for c, outcome in enumerate(executor.map(batches)):
        _classify(again, *batches.span(c), outcome, [])
    mismatched, max_diff = [], 0.0
    for i, k in enumerate(chosen):
        a, b = cols.scores[k], again.scores[i]
        diff = abs(a - b) if (a is not None and b is not None and again.statuses[i] == "ok") else float("inf")
        if diff > 1e-12:
            mismatched.append(cols.ids[k])
        max_diff = max(max_diff, diff)
    return {"checked": len(chosen), "mismatched": mismatched, "max_abs_diff": max_diff,
            "deterministic": not mismatched}
