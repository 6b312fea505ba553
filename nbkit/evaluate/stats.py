"""Statistics for claims about models: bootstrap intervals, paired tests, pass@k.

A single run's "+6 points" is not evidence. Everything here is vectorized numpy/scipy, deterministic for a
given seed, and refuses input that would make a number meaningless (empty, NaN, unpaired lengths) with an
error that says what to fix, rather than returning a silently wrong interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from nbkit.errors import UserError

Stat = Callable[..., np.ndarray]
# Bound the (n_boot x n) index matrix so memory stays ~32 MB whatever the sample size.
_CHUNK_CELLS = 4_000_000


def _as_finite(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    """1-D float array, or a UserError naming how many values are bad and where the first one is."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise UserError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise UserError(f"{name} is empty: there is nothing to estimate; score at least one sample")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise UserError(
            f"{name} holds {int(bad.sum())} non-finite value(s) (first at position {first}: {arr[first]}); "
            "failed scores must be given a value (e.g. 0.0) or excluded explicitly before computing statistics"
        )
    return arr


def _check_alpha(alpha: float, n_boot: int) -> None:
    if not 0.0 < alpha < 1.0:
        raise UserError(f"alpha must be in (0, 1), got {alpha}; use 0.05 for a 95% interval")
    if n_boot < 1:
        raise UserError(f"n_boot must be a positive number of resamples, got {n_boot}")


def _apply_stat(stat: Stat, draws: np.ndarray) -> np.ndarray:
    """Row-wise statistic: numpy reductions take axis=1; any other callable falls back to a loop."""
    try:
        out = np.asarray(stat(draws, axis=1), dtype=float)
    except TypeError:
        out = np.array([stat(row) for row in draws], dtype=float)
    if out.shape != (draws.shape[0],):
        raise UserError(f"stat must reduce each resample to one number; got shape {out.shape}")
    return out


def _resample_indices(rng: np.random.Generator, n: int, n_boot: int):
    """Yield blocks of bootstrap index rows, a block at a time to bound memory."""
    rows = max(1, _CHUNK_CELLS // max(n, 1))
    done = 0
    while done < n_boot:
        size = min(rows, n_boot - done)
        yield rng.integers(0, n, size=(size, n))
        done += size


def bootstrap_distribution(
    values: Sequence[float] | np.ndarray, n_boot: int = 2000, seed: int = 0, stat: Stat = np.mean
) -> np.ndarray:
    """The statistic on `n_boot` resamples with replacement (for plots and custom intervals)."""
    arr = _as_finite(values, "values")
    _check_alpha(0.05, n_boot)
    rng = np.random.default_rng(seed)
    return np.concatenate([_apply_stat(stat, arr[idx]) for idx in _resample_indices(rng, arr.size, n_boot)])


def _percentile_interval(boot: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    stat: Stat = np.mean,
) -> tuple[float, float, float]:
    """(estimate, lo, hi): percentile bootstrap interval of `stat` over independent values.

    For k samples per prompt, pass per-prompt means (see `cluster_bootstrap_ci`): samples of one prompt
    are correlated, and resampling them as if independent gives intervals that are too narrow.
    """
    _check_alpha(alpha, n_boot)
    arr = _as_finite(values, "values")
    estimate = float(_apply_stat(stat, arr[None, :])[0])
    if arr.size == 1:
        return estimate, estimate, estimate
    lo, hi = _percentile_interval(bootstrap_distribution(arr, n_boot, seed, stat), alpha)
    return estimate, lo, hi


def cluster_means(values: Sequence[float] | np.ndarray, clusters: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """(cluster ids, mean value per cluster), ids sorted; the unit of resampling for k samples per prompt."""
    arr = _as_finite(values, "values")
    keys = np.asarray(clusters)
    if keys.shape != arr.shape:
        raise UserError(f"values and clusters must have the same length, got {arr.size} and {keys.size}")
    ids, inverse = np.unique(keys, return_inverse=True)
    sums = np.bincount(inverse, weights=arr, minlength=ids.size)
    counts = np.bincount(inverse, minlength=ids.size)
    return ids, sums / counts


def cluster_bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    clusters: Sequence,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float, float]:
    """(estimate, lo, hi) of the mean per-cluster mean, resampling whole clusters (prompts).

    Each prompt weighs the same whatever its number of samples, which is the quantity a test set measures.
    """
    _, means = cluster_means(values, clusters)
    return bootstrap_ci(means, n_boot=n_boot, seed=seed, alpha=alpha)


def _paired(base: Sequence[float] | np.ndarray, tuned: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b = _as_finite(base, "base")
    t = _as_finite(tuned, "tuned")
    if b.shape != t.shape:
        raise UserError(
            f"paired statistics need one base and one tuned value per unit, got {b.size} and {t.size}; "
            "align both on the same prompts first (compare() does this by prompt_id)"
        )
    return b, t


def paired_bootstrap_diff(
    base: Sequence[float] | np.ndarray,
    tuned: Sequence[float] | np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    stat: Stat = np.mean,
) -> tuple[float, float, float]:
    """(estimate, lo, hi) of stat(tuned) - stat(base), resampling the pairs jointly.

    Pairing removes the prompt-to-prompt difficulty variance that dominates unpaired comparisons, so the
    interval is much tighter than two independent intervals would suggest.
    """
    _check_alpha(alpha, n_boot)
    b, t = _paired(base, tuned)
    estimate = float(_apply_stat(stat, t[None, :])[0] - _apply_stat(stat, b[None, :])[0])
    if b.size == 1:
        return estimate, estimate, estimate
    rng = np.random.default_rng(seed)
    if stat is np.mean:  # linear: mean(t[idx]) - mean(b[idx]) == mean(d[idx]), one gather instead of two
        d = t - b
        boot = np.concatenate([d[idx].mean(axis=1) for idx in _resample_indices(rng, b.size, n_boot)])
    else:
        boot = np.concatenate(
            [_apply_stat(stat, t[idx]) - _apply_stat(stat, b[idx]) for idx in _resample_indices(rng, b.size, n_boot)]
        )
    lo, hi = _percentile_interval(boot, alpha)
    return estimate, lo, hi


def sign_flip_pvalue(
    base: Sequence[float] | np.ndarray,
    tuned: Sequence[float] | np.ndarray,
    n_perm: int = 10000,
    seed: int = 0,
) -> float:
    """Two-sided p-value of the mean paired difference under H0 "base and tuned are exchangeable".

    Exact enumeration for <= 16 non-zero pairs, otherwise Monte Carlo with the observed labelling counted
    (so p is never 0). A permutation test complements the bootstrap interval with an explicit null.
    """
    b, t = _paired(base, tuned)
    d = t - b
    d = d[d != 0]
    if d.size == 0:
        return 1.0
    observed = abs(d.sum())
    tol = 1e-12 * max(1.0, observed)
    if d.size <= 16:
        signs = ((np.arange(2**d.size)[:, None] >> np.arange(d.size)) & 1) * 2 - 1
        sums = np.abs(signs @ d)
        return float(np.mean(sums >= observed - tol))
    rng = np.random.default_rng(seed)
    hits = 0
    rows = max(1, _CHUNK_CELLS // d.size)
    done = 0
    while done < n_perm:
        size = min(rows, n_perm - done)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(size, d.size))
        hits += int(np.sum(np.abs(signs @ d) >= observed - tol))
        done += size
    return (hits + 1) / (n_perm + 1)


def binom_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of k successes in n fair coin flips (doubling the smaller tail)."""
    from scipy.stats import binom

    if n == 0:
        return 1.0
    tail = binom.cdf(min(k, n - k), n, 0.5)
    return float(min(1.0, 2.0 * tail))


@dataclass(frozen=True)
class McNemar:
    """Paired 2x2 table of pass/fail and its exact test; b and c are the discordant pairs that carry signal."""

    both_pass: int  # a
    base_only: int  # b: base passed, tuned failed (regressions)
    tuned_only: int  # c: tuned passed, base failed (fixes)
    both_fail: int  # d
    p_value: float

    def to_dict(self) -> dict:
        return {
            "both_pass": self.both_pass,
            "base_only": self.base_only,
            "tuned_only": self.tuned_only,
            "both_fail": self.both_fail,
            "p_value": self.p_value,
        }


def mcnemar_exact(base_only: int, tuned_only: int) -> float:
    """Exact McNemar p-value from the discordant counts b and c: binomial(b + c, 1/2), two-sided."""
    if base_only < 0 or tuned_only < 0:
        raise UserError(f"discordant counts must be >= 0, got b={base_only}, c={tuned_only}")
    return binom_two_sided(int(base_only), int(base_only) + int(tuned_only))


def mcnemar_table(base_pass: Sequence[bool] | np.ndarray, tuned_pass: Sequence[bool] | np.ndarray) -> McNemar:
    """The paired table and exact McNemar test for per-prompt pass/fail outcomes."""
    b = np.asarray(base_pass, dtype=bool)
    t = np.asarray(tuned_pass, dtype=bool)
    if b.shape != t.shape or b.ndim != 1:
        raise UserError(f"base_pass and tuned_pass must be 1-D and paired, got shapes {b.shape} and {t.shape}")
    counts = (int(np.sum(b & t)), int(np.sum(b & ~t)), int(np.sum(~b & t)), int(np.sum(~b & ~t)))
    return McNemar(*counts, p_value=mcnemar_exact(counts[1], counts[2]))


def sign_test(
    base: Sequence[float] | np.ndarray, tuned: Sequence[float] | np.ndarray
) -> tuple[int, int, int, float]:
    """(wins, ties, losses, exact two-sided p) of tuned vs base per pair; ties carry no information."""
    b, t = _paired(base, tuned)
    wins, losses = int(np.sum(t > b)), int(np.sum(t < b))
    return wins, b.size - wins - losses, losses, binom_two_sided(wins, wins + losses)


def pass_at_k(n: int | np.ndarray, c: int | np.ndarray, k: int) -> float | np.ndarray:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), for n samples of which c pass.

    Uses the product form 1 - prod_{i=n-c+1..n} (1 - k/i), which is exact at the edges (0 when c = 0, c/n
    when k = 1) and never overflows; vectorized over n and c by computing each distinct (n, c) pair once.
    """
    n_arr = np.asarray(n)
    c_arr = np.asarray(c)
    if k < 1:
        raise UserError(f"k must be >= 1, got {k}")
    if np.any(n_arr < k):
        raise UserError(
            f"pass@{k} needs at least {k} samples per prompt, got n={int(np.min(n_arr))}; lower k or sample more"
        )
    if np.any((c_arr < 0) | (c_arr > n_arr)):
        raise UserError("pass@k: the number of passing samples c must lie in [0, n]")
    n_b, c_b = np.broadcast_arrays(n_arr.astype(np.int64), c_arr.astype(np.int64))
    width = int(n_b.max()) + 1 if n_b.size else 1
    codes, inverse = np.unique((n_b * width + c_b).ravel(), return_inverse=True)  # one code per (n, c) pair
    values = np.array([_pass_at_k_one(int(code // width), int(code % width), k) for code in codes], dtype=float)
    out = values[inverse.ravel()].reshape(n_b.shape)
    return float(out) if out.ndim == 0 else out


def _pass_at_k_one(n: int, c: int, k: int) -> float:
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=float)))


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float, float]:
    """(proportion, lo, hi): Wilson score interval, which stays inside [0, 1] and behaves at 0 or n passes."""
    from scipy.stats import norm

    if n <= 0:
        raise UserError("wilson_interval needs n > 0 trials")
    if not 0 <= successes <= n:
        raise UserError(f"successes must be in [0, {n}], got {successes}")
    _check_alpha(alpha, 1)
    z = float(norm.ppf(1 - alpha / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return p, float(max(0.0, centre - half)), float(min(1.0, centre + half))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control, valid under any dependence).

    Why: picking the best of several comparisons by their raw p-values overstates the evidence; an adjusted
    p-value below alpha keeps the chance of any false claim in the family below alpha (a table of ten tests
    at 0.05 otherwise finds a "significant" change by chance about 40% of the time). A missing or invalid
    p-value is an error, never a silent 1.
    """
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1:
        raise UserError(f"p-values must be one-dimensional, got shape {p.shape}")
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise UserError(f"p-values must lie in [0, 1], got {p.tolist()}: compute every test before adjusting")
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()
