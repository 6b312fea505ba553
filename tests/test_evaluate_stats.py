"""Statistics checked against hand-computed values, closed forms and simulated coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom, binomtest

from nbkit.errors import UserError
from nbkit.evaluate import stats

# --- exact tests -----------------------------------------------------------------------------------------

def test_mcnemar_exact_known_table():
    # b=1, c=9: p = 2 * P(X <= 1 | n=10, 1/2) = 2 * (1 + 10) / 1024
    assert stats.mcnemar_exact(1, 9) == pytest.approx(22 / 1024, abs=1e-15)
    assert stats.mcnemar_exact(9, 1) == pytest.approx(22 / 1024, abs=1e-15)
    # b=0, c=5: 2 / 32
    assert stats.mcnemar_exact(0, 5) == pytest.approx(0.0625)
    assert stats.mcnemar_exact(0, 0) == 1.0
    assert stats.mcnemar_exact(3, 3) == 1.0


def test_mcnemar_matches_scipy_binomtest():
    for b, c in [(2, 11), (7, 4), (0, 1), (20, 35)]:
        assert stats.mcnemar_exact(b, c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-12)


def test_mcnemar_table_counts():
    base = [1, 1, 0, 0, 0, 1, 0]
    tuned = [1, 0, 1, 1, 0, 1, 1]
    table = stats.mcnemar_table(np.array(base, bool), np.array(tuned, bool))
    assert (table.both_pass, table.base_only, table.tuned_only, table.both_fail) == (2, 1, 3, 1)
    assert table.p_value == pytest.approx(2 * (1 + 4) / 16)  # b=1, c=3 -> 2 * P(X<=1 | n=4)


def test_sign_test_counts_and_p():
    wins, ties, losses, p = stats.sign_test([0.0, 0.2, 0.5, 1.0, 0.3], [1.0, 0.2, 0.9, 0.0, 0.8])
    assert (wins, ties, losses) == (3, 1, 1)
    assert p == pytest.approx(2 * binom.cdf(1, 4, 0.5))  # 10/16 = 0.625


def test_sign_flip_pvalue_exact_enumeration():
    # differences 1, 2, 3: |+-1 +-2 +-3| over 8 labellings = 6,4,2,0,0,2,4,6 -> P(>= 6) = 2/8
    assert stats.sign_flip_pvalue([0, 0, 0], [1, 2, 3]) == pytest.approx(0.25)
    assert stats.sign_flip_pvalue([1, 2], [1, 2]) == 1.0


def test_sign_flip_pvalue_monte_carlo_strong_and_null():
    rng = np.random.default_rng(3)
    base = rng.uniform(size=100)
    assert stats.sign_flip_pvalue(base, base + 0.3, n_perm=2000) == pytest.approx(1 / 2001)
    noise = rng.normal(scale=0.1, size=100)
    assert stats.sign_flip_pvalue(base, base + noise - noise.mean(), n_perm=2000) > 0.5


# --- pass@k ----------------------------------------------------------------------------------------------

def test_pass_at_k_closed_forms():
    assert stats.pass_at_k(10, 3, 1) == pytest.approx(0.3)  # k=1 -> c/n
    assert stats.pass_at_k(10, 3, 10) == 1.0  # k=n and c>0
    assert stats.pass_at_k(10, 0, 5) == 0.0  # nothing passes
    assert stats.pass_at_k(5, 2, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(5, 2))  # 0.7
    assert stats.pass_at_k(8, 6, 3) == 1.0  # fewer failures than k


def test_pass_at_k_vectorized_matches_comb():
    n = np.array([4, 8, 8, 16, 16, 16])
    c = np.array([1, 0, 5, 3, 16, 7])
    for k in (1, 2, 4):
        want = [1 - math.comb(int(nn - cc), k) / math.comb(int(nn), k) for nn, cc in zip(n, c, strict=True)]
        np.testing.assert_allclose(stats.pass_at_k(n, c, k), want, rtol=1e-12, atol=1e-15)


def test_pass_at_k_is_unbiased():
    # E_c~Bin(n,p)[pass@k estimator] = 1 - (1-p)^k exactly
    n, k, p = 10, 3, 0.2
    expectation = sum(binom.pmf(c, n, p) * stats.pass_at_k(n, c, k) for c in range(n + 1))
    assert expectation == pytest.approx(1 - (1 - p) ** k, rel=1e-12)


def test_pass_at_k_rejects_bad_input():
    with pytest.raises(UserError, match="at least 5 samples"):
        stats.pass_at_k(4, 1, 5)
    with pytest.raises(UserError, match=r"\[0, n\]"):
        stats.pass_at_k(4, 5, 1)


# --- bootstrap -------------------------------------------------------------------------------------------

def test_bootstrap_ci_estimate_and_width_match_normal_theory():
    rng = np.random.default_rng(0)
    x = rng.normal(loc=2.0, scale=1.0, size=400)
    est, lo, hi = stats.bootstrap_ci(x, n_boot=4000, seed=1)
    assert est == pytest.approx(x.mean())
    assert lo < est < hi
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.12)


def test_bootstrap_ci_is_deterministic_and_supports_other_stats():
    x = np.arange(50, dtype=float)
    assert stats.bootstrap_ci(x, seed=5) == stats.bootstrap_ci(x, seed=5)
    est, lo, hi = stats.bootstrap_ci(x, stat=np.median)
    assert est == 24.5 and lo < est < hi
    # a callable without an axis argument falls back to a row loop and gives the same numbers as np.mean
    assert stats.bootstrap_ci(x, stat=lambda v: float(np.mean(v))) == pytest.approx(stats.bootstrap_ci(x))


def test_bootstrap_ci_degenerate_cases():
    assert stats.bootstrap_ci([0.7]) == (0.7, 0.7, 0.7)
    assert stats.bootstrap_ci([1.0] * 20) == (1.0, 1.0, 1.0)
    with pytest.raises(UserError, match="empty"):
        stats.bootstrap_ci([])
    with pytest.raises(UserError, match="non-finite.*position 1"):
        stats.bootstrap_ci([0.1, float("nan"), 0.3])
    with pytest.raises(UserError, match="alpha"):
        stats.bootstrap_ci([0.1, 0.2], alpha=1.5)


def test_cluster_bootstrap_uses_per_cluster_means():
    ids, means = stats.cluster_means([1.0, 0.0, 1.0, 1.0, 0.5], ["b", "b", "a", "a", "c"])
    assert list(ids) == ["a", "b", "c"]
    np.testing.assert_allclose(means, [1.0, 0.5, 0.5])
    # each prompt weighs the same: (1 + 0.5 + 0.5) / 3, not the sample mean 0.7
    est, _, _ = stats.cluster_bootstrap_ci([1.0, 0.0, 1.0, 1.0, 0.5], ["b", "b", "a", "a", "c"])
    assert est == pytest.approx(2 / 3)


def test_cluster_bootstrap_is_wider_than_naive_for_correlated_samples():
    rng = np.random.default_rng(2)
    prompt_effect = rng.normal(size=30)
    values = np.repeat(prompt_effect, 8) + rng.normal(scale=0.1, size=240)
    clusters = np.repeat(np.arange(30), 8)
    _, lo_c, hi_c = stats.cluster_bootstrap_ci(values, clusters)
    _, lo_n, hi_n = stats.bootstrap_ci(values)
    assert (hi_c - lo_c) > 2 * (hi_n - lo_n)


def test_paired_bootstrap_no_real_difference_covers_zero():
    rng = np.random.default_rng(4)
    base = rng.uniform(size=80)
    noise = rng.normal(scale=0.2, size=80)
    tuned = base + noise - noise.mean()  # same mean, different per-prompt values
    est, lo, hi = stats.paired_bootstrap_diff(base, tuned)
    assert est == pytest.approx(0.0, abs=1e-12)
    assert lo < 0 < hi


def test_paired_bootstrap_strong_difference_excludes_zero():
    rng = np.random.default_rng(5)
    base = rng.uniform(0, 0.5, size=60)
    tuned = base + 0.2 + rng.normal(scale=0.05, size=60)
    est, lo, hi = stats.paired_bootstrap_diff(base, tuned)
    assert est == pytest.approx(np.mean(tuned - base))
    assert 0 < lo < est < hi


def test_paired_bootstrap_coverage_under_null_is_near_nominal():
    """Simulated: 200 null data sets, the 95% interval should cover 0 about 95% of the time."""
    rng = np.random.default_rng(6)
    covered = 0
    for i in range(200):
        base = rng.uniform(size=40)
        tuned = base + rng.normal(scale=0.3, size=40)
        _, lo, hi = stats.paired_bootstrap_diff(base, tuned, n_boot=500, seed=i)
        covered += lo <= 0 <= hi
    assert 0.88 <= covered / 200 <= 0.99


def test_paired_bootstrap_requires_pairs():
    with pytest.raises(UserError, match="paired statistics need one base and one tuned value"):
        stats.paired_bootstrap_diff([0.1, 0.2], [0.3])


def test_bootstrap_chunking_gives_same_result_as_one_block(monkeypatch):
    x = np.random.default_rng(7).uniform(size=300)
    whole = stats.bootstrap_distribution(x, n_boot=100, seed=3)
    monkeypatch.setattr(stats, "_CHUNK_CELLS", 300 * 7)  # 7 rows per block
    np.testing.assert_array_equal(stats.bootstrap_distribution(x, n_boot=100, seed=3), whole)


# --- Wilson --------------------------------------------------------------------------------------------

def test_wilson_interval_known_values():
    p, lo, hi = stats.wilson_interval(0, 10)
    z2 = 1.959963984540054**2
    assert (p, lo) == (0.0, 0.0) and hi == pytest.approx(z2 / (10 + z2))
    p, lo, hi = stats.wilson_interval(5, 10)
    assert p == 0.5 and lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
