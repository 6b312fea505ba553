"""Benchmark: nbkit's JSONL validator against a jsonschema Draft 2020-12 validator of the equivalent schema.

Generates a JSONL file (default 720,000 lines, ~200 MB, ~5% invalid in a dozen ways), validates it with
`nbkit.data.validate_file` (which also writes rejected.jsonl), then with `jsonschema` over the same lines in the
same process (UTF-8 decode + json.loads + every schema error, on the first 100,000 lines: it is ~20x slower),
and reports lines/s, the ratio, and peak RSS. Memory: nbkit is run on a quarter of the file first, then on all
of it; the growth between the two is the duplicate-id index (target: peak under 100 MB for 200 MB). The typed
pydantic model is timed too, for reference.

    .venv/bin/python bench/validate.py [--lines 720000] [--baseline-lines 100000] [--profile sagemaker]

The last line is JSON: {"lines", "nbkit_lines_per_s", "jsonschema_lines_per_s", "ratio", "peak_rss_mb"}, where
lines/s are per CPU-second of the validating thread (wall-clock rates are printed too: on a shared machine they
measure the neighbours as much as the code).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from nbkit.data import RftRecord, json_schema, validate_file  # noqa: E402
from nbkit.data import validate as validate_module  # noqa: E402

TOOLS = [
    {"type": "function", "function": {
        "name": "StatRollAPI", "description": "Generates character stats by rolling 4d6 and applying a modifier.",
        "parameters": {"type": "object", "properties": {"modifier": {"type": "integer", "description": "bonus"}},
                       "required": ["modifier"]}}},
    {"type": "function", "function": {
        "name": "DiceRollAPI", "description": "Rolls dice.",
        "parameters": {"type": "object", "properties": {"count": {"type": "integer"}, "sides": {"type": "integer"}},
                       "required": ["count", "sides"]}}},
]


def valid_record(i: int, rng: random.Random) -> dict[str, Any]:
    """A realistic mix: system + user math, list-form content, tool calling, bare user turns."""
    a, b = rng.randint(1, 99), rng.randint(1, 99)
    kind = rng.random()
    if kind < 0.6:
        return {"id": f"ex-{i}", "messages": [{"role": "system", "content": "Reply with the final answer only."},
                                              {"role": "user", "content": f"Solve for x: {a}x + {b} = {a * 3 + b}"}],
                "reference_answer": {"solution": "x = 3"}, "domain": "algebra", "difficulty_level": "easy"}
    if kind < 0.7:
        return {"id": f"ex-{i}", "messages": [{"role": "user", "content": [{"type": "text", "text": f"What is {a} + {b}?"}]}],
                "reference_answer": {"solution": str(a + b)}}
    if kind < 0.85:
        return {"id": f"ex-{i}", "messages": [{"role": "system", "content": "You are a game master."},
                                              {"role": "user", "content": f"Roll {a % 6 + 1}d6 for the orc."}],
                "tools": TOOLS, "reference_answer": {"tool_called": "DiceRollAPI",
                                                     "tool_parameters": {"count": a % 6 + 1, "sides": 6}}}
    return {"id": f"ex-{i}", "messages": [{"role": "user", "content": f"What is {a} * {b}?"}],
            "reference_answer": str(a * b)}


def invalid_line(i: int, rng: random.Random) -> bytes:
    """One of a dozen ways a line goes wrong."""
    good = valid_record(i, rng)
    broken: list[Callable[[], Any]] = [
        lambda: b'{"id": "x", "messages": [',
        lambda: b"",
        lambda: b"[1, 2, 3]",
        lambda: json.dumps({**good, "messages": []}),
        lambda: json.dumps({**good, "messages": [{"role": "system", "content": "s"}]}),
        lambda: json.dumps({**good, "messages": [{"role": "bot", "content": "hi"}]}),
        lambda: json.dumps({**good, "messages": [{"role": "user", "content": "  "}]}),
        lambda: json.dumps({**good, "messages": [{"role": "user", "content": "q"}, {"role": "system", "content": "s"}]}),
        lambda: json.dumps(good)[:-1] + ', "score": NaN}',
        lambda: json.dumps(good).encode().replace(b"Solve", b"Solv\xe9"),
        lambda: json.dumps({**good, "tools": [{"type": "function", "function": {"name": "f"}}]}),
        lambda: json.dumps({**good, "reference_answer": 42}),
        lambda: json.dumps({**good, "id": 12}),
    ]
    out = broken[i % len(broken)]()
    return out if isinstance(out, bytes) else out.encode()


def generate(path: Path, lines: int, invalid_share: float, seed: int) -> None:
    rng = random.Random(seed)
    with open(path, "wb") as out:
        for i in range(lines):
            if rng.random() < invalid_share:
                out.write(invalid_line(i, rng))
            else:
                out.write(json.dumps(valid_record(i, rng)).encode())
            out.write(b"\n")


class PeakRss:
    """Samples this process's RSS every 5 ms in a thread: the peak of one phase, not of the whole process."""

    def __enter__(self) -> PeakRss:
        self._proc = psutil.Process()
        self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def mb(self) -> float:
        return self.peak / 2**20


class Clock:
    """Wall time and this thread's CPU time: on a shared machine the CPU time is the figure that means something."""

    def __enter__(self) -> Clock:
        self._wall, self._cpu = time.perf_counter(), time.thread_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.thread_time() - self._cpu


def run_nbkit(path: Path, out_dir: Path, profile: str) -> tuple[Clock, Any, float]:
    with PeakRss() as rss, Clock() as clock:
        report = validate_file(path, profile, out_dir)
    return clock, report, rss.mb


class DictIndex(dict):
    """The duplicate-id index before issue 18 (every id a key of one dict), for comparison in this process."""

    def add(self, rid: str, line: int) -> None:
        self[rid] = line

    def close(self) -> None:
        pass


def run_nbkit_dict_index(path: Path, out_dir: Path, profile: str) -> tuple[Clock, Any, float]:
    flat = validate_module.IdIndex
    validate_module.IdIndex = DictIndex  # type: ignore[misc]
    try:
        return run_nbkit(path, out_dir, profile)
    finally:
        validate_module.IdIndex = flat  # type: ignore[misc]


def run_jsonschema(path: Path, limit: int, profile: str) -> tuple[Clock, int, int]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(json_schema(profile))
    valid = seen = 0
    with Clock() as clock, open(path, "rb") as stream:
        for raw in stream:
            if seen >= limit:
                break
            seen += 1
            try:
                record = json.loads(raw.decode("utf-8"))
            except ValueError:
                continue
            if not list(validator.iter_errors(record)):  # every error, as nbkit reports every error
                valid += 1
    return clock, seen, valid


def run_pydantic(path: Path, limit: int) -> tuple[Clock, int, int]:
    from pydantic import ValidationError

    valid = seen = 0
    with Clock() as clock, open(path, "rb") as stream:
        for raw in stream:
            if seen >= limit:
                break
            seen += 1
            try:
                RftRecord.model_validate(json.loads(raw.decode("utf-8")))
            except (ValueError, ValidationError):
                continue
            valid += 1
    return clock, seen, valid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=720_000, help="lines in the generated file (~200 MB)")
    parser.add_argument("--baseline-lines", type=int, default=100_000, help="lines jsonschema validates (0 = all)")
    parser.add_argument("--invalid-share", type=float, default=0.05, help="share of invalid lines")
    parser.add_argument("--profile", default="sagemaker", choices=("sagemaker", "bedrock"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    baseline_lines = args.baseline_lines or args.lines

    with tempfile.TemporaryDirectory(prefix="nbkit-bench-") as tmp:
        folder = Path(tmp)
        quarter, full = folder / "quarter.jsonl", folder / "full.jsonl"
        generate(quarter, max(1, args.lines // 4), args.invalid_share, args.seed)
        generate(full, args.lines, args.invalid_share, args.seed)
        size_mb = full.stat().st_size / 2**20
        print(f"file: {args.lines:,} lines, {size_mb:.1f} MB, ~{args.invalid_share:.0%} invalid; "
              f"machine: {os.cpu_count()} CPUs (shared: timings are noisy)")

        run_nbkit(quarter, folder / "warmup", args.profile)  # imports and first-touch allocations
        _, _, rss_quarter = run_nbkit(quarter, folder / "q", args.profile)
        nb, report, rss_full = run_nbkit(full, folder / "out", args.profile)
        print(f"nbkit:      {report.total / nb.cpu:>10,.0f} lines/CPU-s  {report.total / nb.wall:>10,.0f} lines/wall-s  "
              f"({report.valid:,} valid, {report.rejected:,} rejected, rejected.jsonl written)")
        print(f"            peak RSS {rss_quarter:.1f} MB on 1/4 of the file, {rss_full:.1f} MB on all of it "
              f"(growth {rss_full - rss_quarter:+.1f} MB for {args.lines - args.lines // 4:,} more lines: the id index)")
        old, old_report, rss_old = run_nbkit_dict_index(full, folder / "old", args.profile)
        assert (old_report.valid, old_report.error_counts) == (report.valid, report.error_counts)
        print(f"dict index: {old_report.total / old.cpu:>10,.0f} lines/CPU-s  peak RSS {rss_old:.1f} MB (every id kept in a "
              f"dict, run after the flat index in this process): flat index {nb.cpu / old.cpu:.2f}x its CPU time, "
              f"{rss_full / rss_old:.2f}x its peak")
        js, js_seen, js_valid = run_jsonschema(full, baseline_lines, args.profile)
        print(f"jsonschema: {js_seen / js.cpu:>10,.0f} lines/CPU-s  {js_seen / js.wall:>10,.0f} lines/wall-s  "
              f"({js_seen:,} lines; {js_valid:,} valid: it cannot see NaN, BOM, UTF-8, duplicate ids or tool names)")
        pd_clock, pd_seen, pd_valid = run_pydantic(full, baseline_lines)
        print(f"pydantic:   {pd_seen / pd_clock.cpu:>10,.0f} lines/CPU-s  {pd_seen / pd_clock.wall:>10,.0f} lines/wall-s  "
              f"(the typed model: types only, no cross-field rules; {pd_valid:,} valid)")
        nb_rate, js_rate = report.total / nb.cpu, js_seen / js.cpu
        ratio = nb_rate / js_rate
        print(f"ratio nbkit / jsonschema: {ratio:.1f}x on CPU time, {(report.total / nb.wall) / (js_seen / js.wall):.1f}x "
              "on wall time (target >= 10)")

    print(json.dumps({"lines": args.lines, "nbkit_lines_per_s": round(nb_rate), "jsonschema_lines_per_s": round(js_rate),
                      "ratio": round(ratio, 2), "peak_rss_mb": round(rss_full, 1),
                      "peak_rss_mb_dict_index": round(rss_old, 1), "cpu_vs_dict_index": round(nb.cpu / old.cpu, 3)}))


if __name__ == "__main__":
    main()
