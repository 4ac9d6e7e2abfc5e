"""ks_drift and chi2_drift equal scipy on the same data, and give defined answers on edge cases."""
import math

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st
from scipy import stats

from sales_sql.drift import chi2_drift, ks_drift

finite = st.floats(-1e6, 1e6, allow_nan=False)
samples = st.lists(st.one_of(finite, st.sampled_from([0.0, 1.0, 2.0])), min_size=1, max_size=60)


def close(a, b, tol=1e-9):
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


@hsettings(max_examples=300, deadline=None)
@given(samples, samples)
def test_ks_statistic_p_value_and_effect_equal_scipy(current, baseline):
    got = ks_drift(current, baseline)
    ref = stats.ks_2samp(current, baseline)
    assert close(got["statistic"], ref.statistic) and close(got["p_value"], ref.pvalue)
    spread = np.std(baseline)
    scale = spread if spread > 0 else max(abs(baseline[0]), 1.0)
    assert close(got["effect_size"], stats.wasserstein_distance(current, baseline) / scale, 1e-7)
    assert (got["n_current"], got["n_baseline"]) == (len(current), len(baseline))


@pytest.mark.parametrize("n_current,n_baseline,shift", [(20_000, 15_000, 0.0), (12_000, 30_000, 0.05),
                                                        (50_000, 50_000, 0.0)])
def test_ks_large_samples_use_scipys_asymptotic_p_value(n_current, n_baseline, shift):
    rng = np.random.default_rng(n_current)
    a, b = rng.normal(shift, 1, n_current), np.round(rng.normal(0, 1, n_baseline), 2)  # ties too
    got, ref = ks_drift(a, b), stats.ks_2samp(a, b)
    assert close(got["statistic"], ref.statistic) and close(got["p_value"], ref.pvalue)


def test_ks_edge_cases_are_defined():
    empty = ks_drift([], [1.0, 2.0])
    assert empty["statistic"] is None and empty["p_value"] is None and empty["n_current"] == 0
    nans = ks_drift([np.nan, 1.0], [1.0, np.nan, np.nan])
    assert nans["n_current"] == 1 and nans["n_baseline"] == 1 and nans["statistic"] == 0.0
    constant = ks_drift([5.0, 5.0], [5.0, 5.0, 5.0])
    assert constant["effect_size"] == 0.0 and constant["p_value"] == 1.0
    moved = ks_drift([7.0], [5.0, 5.0])
    assert moved["effect_size"] == pytest.approx(2 / 5)  # constant baseline: scaled by |value|


categories = st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d", "\u00e9", ""])), max_size=80)


@hsettings(max_examples=300, deadline=None)
@given(categories, categories)
def test_chi2_equals_scipy_contingency_and_is_always_finite(current, baseline):
    got = chi2_drift(current, baseline)
    a = [c for c in current if c is not None]
    b = [c for c in baseline if c is not None]
    cats = sorted(set(a) | set(b))
    assert got["n_current"] == len(a) and got["n_baseline"] == len(b) and got["categories"] == len(cats)
    if not a or not b:
        assert got["statistic"] is None and got["p_value"] is None and got["effect_size"] is None
        return
    for key in ("statistic", "p_value", "effect_size"):
        assert math.isfinite(got[key]), key
    assert 0 <= got["effect_size"] <= 1 and 0 <= got["p_value"] <= 1
    if len(cats) == 1:
        assert (got["statistic"], got["p_value"], got["dof"]) == (0.0, 1.0, 0)
        return
    ref = stats.chi2_contingency([[a.count(c) for c in cats], [b.count(c) for c in cats]])
    assert close(got["statistic"], ref.statistic) and close(got["p_value"], ref.pvalue)
    assert got["dof"] == ref.dof


def test_chi2_effect_size_is_the_jensen_shannon_distance():
    assert chi2_drift(["a", "b"], ["a", "b"])["effect_size"] == pytest.approx(0.0)
    assert chi2_drift(["a", "a"], ["b", "b"])["effect_size"] == pytest.approx(1.0)


def test_sql_functions_over_list_aggregates(con):
    rows = con.execute("""
        SELECT g, ks_drift(list(x), (SELECT list(y::DOUBLE) FROM range(500) t(y))).statistic,
                  chi2_drift(list(CAST(x::INT % 3 AS VARCHAR)), (SELECT list(CAST(y % 3 AS VARCHAR)) FROM range(500) t(y))).dof
        FROM (SELECT i % 2 AS g, i::DOUBLE AS x FROM range(1000) t(i)) GROUP BY g ORDER BY g""").fetchall()
    for g, statistic, dof in rows:
        xs = [float(i) for i in range(1000) if i % 2 == g]
        assert statistic == pytest.approx(stats.ks_2samp(xs, list(range(500))).statistic)
        assert dof == 2
    nulls = con.execute("SELECT ks_drift(NULL, [1.0]).statistic, chi2_drift([], NULL).n_current").fetchone()
    assert nulls == (None, 0)
