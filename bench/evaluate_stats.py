"""How fast are the comparison statistics? Vectorized bootstrap / pass@k against plain loops, and compare() end to end.

Run: .venv/bin/python bench/bench_evaluate_stats.py [--prompts 1000] [--k 8] [--n-boot 2000]
Prints timings and speed-up ratios against a loop baseline run in the same process; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np


def timed(fn, repeat: int = 3) -> float:
    """Best of `repeat` wall-clock runs, in seconds (the least disturbed by neighbours on a shared machine)."""
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def loop_paired_bootstrap(base: np.ndarray, tuned: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    """The textbook loop: one resample at a time."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        idx = rng.integers(0, base.size, base.size)
        diffs.append(float(np.mean(tuned[idx]) - np.mean(base[idx])))
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return float(lo), float(hi)


def loop_pass_at_k(n: np.ndarray, c: np.ndarray, k: int) -> list[float]:
    return [1.0 if nn - cc < k else 1 - math.comb(int(nn - cc), k) / math.comb(int(nn), k) for nn, cc in zip(n, c, strict=True)]


def main() -> None:
    import pandas as pd

    from nbkit.evaluate import stats
    from nbkit.evaluate.compare import compare

    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=1000)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--n-boot", type=int, default=2000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    base = rng.uniform(size=args.prompts)
    tuned = np.clip(base + rng.normal(0.05, 0.2, size=args.prompts), 0, 1)

    t_vec = timed(lambda: stats.paired_bootstrap_diff(base, tuned, n_boot=args.n_boot))
    t_loop = timed(lambda: loop_paired_bootstrap(base, tuned, args.n_boot, 0), repeat=1)
    print(f"paired bootstrap, {args.prompts} prompts x {args.n_boot} resamples: vectorized {t_vec * 1e3:.1f} ms, "
          f"loop {t_loop * 1e3:.1f} ms, speed-up {t_loop / t_vec:.1f}x")

    n = np.full(args.prompts * 10, args.k)
    c = rng.integers(0, args.k + 1, size=n.size)
    t_pk = timed(lambda: stats.pass_at_k(n, c, 2))
    t_pk_loop = timed(lambda: loop_pass_at_k(n, c, 2), repeat=1)
    print(f"pass@2 over {n.size} prompts: vectorized {t_pk * 1e3:.2f} ms, loop {t_pk_loop * 1e3:.2f} ms, "
          f"speed-up {t_pk_loop / t_pk:.1f}x")

    def frame(per_prompt: np.ndarray) -> pd.DataFrame:
        rewards = (rng.uniform(size=(args.prompts, args.k)) < per_prompt[:, None]).astype(float)
        return pd.DataFrame({
            "prompt_id": np.repeat([f"p{i}" for i in range(args.prompts)], args.k),
            "sample": np.tile(np.arange(args.k), args.prompts), "reward": rewards.ravel(), "status": "ok",
            "response": "x", "prompt": "q", "domain": np.repeat(rng.choice(["a", "b", "c"], args.prompts), args.k),
        })

    b, t = frame(base), frame(tuned)
    t_cmp = timed(lambda: compare(b, t, n_boot=args.n_boot), repeat=2)
    print(f"compare() on {args.prompts} prompts x {args.k} samples, {args.n_boot} resamples (every interval, "
          f"pass@k, 3 domains): {t_cmp:.2f} s")
    print(json.dumps({
        "prompts": args.prompts, "k": args.k, "n_boot": args.n_boot,
        "paired_bootstrap_ms": round(t_vec * 1e3, 2), "paired_bootstrap_loop_ms": round(t_loop * 1e3, 2),
        "paired_bootstrap_speedup": round(t_loop / t_vec, 1),
        "pass_at_k_ms": round(t_pk * 1e3, 3), "pass_at_k_loop_ms": round(t_pk_loop * 1e3, 3),
        "pass_at_k_speedup": round(t_pk_loop / t_pk, 1), "compare_s": round(t_cmp, 3),
    }))


if __name__ == "__main__":
    main()
