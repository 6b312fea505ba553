"""Benchmark of the reward harness (issue 3).

1. Overhead in-process: the harness (workers=0, default settings: per-call timeout, full contract checks)
   against a bare Python loop calling the same cheap handler in the same batches, over 100,000 samples;
   twice: with the defensive deep copy of each batch a user reward gets by default (it cannot edit the
   caller's samples), and without it (`copy_samples=False`, as the local trainer calls it: its samples are
   built for the call and read by nobody after). Target: overhead ratio <= 1.1 on the bench's grader.
2. Parallelism: 2 worker processes against 1 on a CPU-heavy handler. Target: speed-up >= 1.7 on 2 cores.

Both sides of each ratio run in this process, interleaved, best of several repeats. The in-process
comparison uses this process's CPU time (the machine may be shared: wall time would count the neighbours'
work too); the worker speed-up needs wall time, so it is only meaningful when two cores are free.
Last line: JSON.
"""

from __future__ import annotations

import gc
import json
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nbkit.rewards import load_reward, make_sample, run_harness  # noqa: E402

SAMPLES = int(os.environ.get("BENCH_SAMPLES", 100_000))
BATCH = 64
REPEATS = int(os.environ.get("BENCH_REPEATS", 5))
HEAVY_SAMPLES, HEAVY_BATCH = 48, 4


_LAST_NUMBER = re.compile(r"(-?\d+(?:\.\d+)?)\s*$")


def cheap_handler(event, context):
    """A minimal real reward in the style of AWS's samples: reference read metadata-first, the response's
    final number against the reference's, one metric (a few microseconds per sample)."""
    results = []
    for sample in event:
        reference = (sample.get("metadata") or {}).get("reference_answer", sample.get("reference_answer"))
        expected = _LAST_NUMBER.search(str(reference.get("solution", "") if isinstance(reference, dict) else reference))
        got = _LAST_NUMBER.search(sample["messages"][-1]["content"])
        correct = 1.0 if got and expected and float(got.group(1)) == float(expected.group(1)) else 0.0
        results.append({"id": sample["id"], "aggregate_reward_score": correct,
                        "metrics_list": [{"name": "correct", "value": correct, "type": "Reward"}]})
    return results


def trivial_handler(event, context):
    """Next to no work per sample: shows the harness's fixed cost per sample in the worst case."""
    return [{"id": s["id"], "aggregate_reward_score": 1.0} for s in event]


def heavy_handler(event, context):
    """CPU-bound pure Python (~20 ms per sample): stands for a parser or a simulator inside a reward."""
    results = []
    for sample in event:
        acc = 0
        for i in range(300_000):
            acc = (acc * 31 + i) % 1_000_003
        results.append({"id": sample["id"], "aggregate_reward_score": float(acc % 2)})
    return results


def make_samples(n: int) -> list[dict]:
    samples = []
    for i in range(n):
        x = i % 13
        record = {"id": f"alg-{i}", "messages": [{"role": "system", "content": "Reply with the final answer only."},
                                                 {"role": "user", "content": f"Solve for x: 3x + 2 = {3 * x + 2}"}],
                  "reference_answer": {"solution": f"x = {x}"}, "domain": "algebra"}
        response = f"x = {x}" if i % 3 else f"x = {x + 1}"
        samples.append(make_sample(record, response, variant="bedrock" if i % 2 else "sagemaker"))
    return samples


def bare_loop(handler, samples: list[dict], clock=time.process_time) -> float:
    """What a trainer would write without the harness: call the handler per batch, keep the scores."""
    start = clock()
    scores = []
    for i in range(0, len(samples), BATCH):
        scores.extend([r["aggregate_reward_score"] for r in handler(samples[i:i + BATCH], None)])
    return clock() - start


def harness(handler, samples: list[dict], clock=time.perf_counter, **kw) -> float:
    start = clock()
    report = run_harness(handler, samples, **kw)
    elapsed = clock() - start
    assert report.summary["ok"] == len(samples), report.summary
    return elapsed


def overhead(handler, samples: list[dict], **kw) -> tuple[float, float]:
    """Best-of-N CPU time of this process for each side, interleaved. In-process work is single-threaded,
    so CPU time is the work done; wall time on a shared machine would also count the neighbours' work."""
    bare, harn = [], []
    for _ in range(REPEATS):
        gc.collect()
        bare.append(bare_loop(handler, samples))
        gc.collect()
        harn.append(harness(handler, samples, clock=time.process_time, batch_size=BATCH, workers=0, **kw))
    return min(bare), min(harn)


def main() -> None:
    samples = make_samples(SAMPLES)
    print(f"{SAMPLES} samples, batches of {BATCH}, best of {REPEATS}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    bare, harn = overhead(cheap_handler, samples)
    print(f"cheap handler : bare loop {SAMPLES / bare:>10,.0f} samples/s   harness {SAMPLES / harn:>10,.0f} samples/s"
          f"   ratio {harn / bare:.3f}   (+{(harn - bare) / SAMPLES * 1e9:.0f} ns/sample; with the deep copy of "
          "each batch a user reward gets)")
    bare_nc, harn_nc = overhead(cheap_handler, samples, copy_samples=False)
    print(f"  no copy     : bare loop {SAMPLES / bare_nc:>10,.0f} samples/s   harness {SAMPLES / harn_nc:>10,.0f} "
          f"samples/s   ratio {harn_nc / bare_nc:.3f}   (+{(harn_nc - bare_nc) / SAMPLES * 1e9:.0f} ns/sample; "
          "copy_samples=False, as the local trainer scores)")
    tb, th = overhead(trivial_handler, samples, copy_samples=False)
    print(f"trivial handler: bare loop {SAMPLES / tb:>10,.0f} samples/s   harness {SAMPLES / th:>10,.0f} samples/s"
          f"   ratio {th / tb:.3f}   (+{(th - tb) / SAMPLES * 1e9:.0f} ns/sample, no copy; worst case, for reference)")
    numeric = load_reward("builtin:numeric")  # nbkit's own grader: pure, so the harness never copies for it
    sub = samples[: SAMPLES // 10]
    nb, nh = overhead(numeric, sub)
    print(f"builtin:numeric ({len(sub)} samples): bare {len(sub) / nb:,.0f}/s   harness {len(sub) / nh:,.0f}/s   "
          f"ratio {nh / nb:.3f}")

    heavy = samples[:HEAVY_SAMPLES]
    one, two = [], []
    for _ in range(max(2, REPEATS // 2)):
        one.append(harness(heavy_handler, heavy, batch_size=HEAVY_BATCH, workers=1))
        two.append(harness(heavy_handler, heavy, batch_size=HEAVY_BATCH, workers=2))
    speedup = min(one) / min(two)
    print(f"CPU-heavy handler ({HEAVY_SAMPLES} samples, batches of {HEAVY_BATCH}): 1 worker {min(one):.2f} s, "
          f"2 workers {min(two):.2f} s, speed-up {speedup:.2f}")
    print(json.dumps({"samples": SAMPLES, "bare_per_s": round(SAMPLES / bare, 1),
                      "harness_per_s": round(SAMPLES / harn, 1), "overhead_ratio": round(harn / bare, 4),
                      "overhead_ratio_no_copy": round(harn_nc / bare_nc, 4),
                      "load_average": round(os.getloadavg()[0], 2),
                      "cpu_heavy_speedup_2_workers": round(speedup, 3)}))


if __name__ == "__main__":
    main()
