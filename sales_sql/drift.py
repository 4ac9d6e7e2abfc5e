"""Drift statistics on arrays (no DuckDB inside): two-sample KS for numbers, chi-square for categories.

On large samples every p-value is tiny, so each result carries an effect size for the decision:
- ks_drift: Wasserstein distance between the two samples divided by the baseline's standard deviation
  (by max(|baseline value|, 1) when the baseline is constant);
- chi2_drift: Jensen-Shannon distance (base 2, 0 = same shares, 1 = no category in common).
NULLs (and NaN, +inf and -inf for numbers) are left out. A side with no values gives a result of NULLs:
nothing to compare.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from .structs import CHI2, KS

# scipy.stats is imported where it is used: importing it takes about a second, which every sales-sql command
# (they all register these functions) would pay

EXACT_KS_MAX_N = 10_000  # scipy's ks_2samp computes the exact p-value up to this sample size (method='auto')
KS_FIELDS, CHI2_FIELDS = tuple(KS.names), tuple(CHI2.names)


def _numbers(values) -> np.ndarray:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = pc.drop_null(values).to_numpy(zero_copy_only=False)
    x = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(x)  # NaN has no place in an order; +-inf would make every distance infinite
    return x[~bad] if bad.any() else x


@njit(nogil=True, cache=True)
def _ks_pass(a, b, m):
    """One merge pass over two sorted samples: the KS statistic (the largest |F_a - F_b|, read after each run of
    equal values) and the area between the two CDFs (the Wasserstein distance) over values divided by m."""
    na, nb = a.size, b.size
    i = j = 0
    d = w = 0.0
    prev = min(a[0], b[0]) / m
    while i < na or j < nb:
        v = a[i] if j >= nb or (i < na and a[i] <= b[j]) else b[j]
        w += abs(i / na - j / nb) * (v / m - prev)
        while i < na and a[i] == v:
            i += 1
        while j < nb and b[j] == v:
            j += 1
        d = max(d, abs(i / na - j / nb))
        prev = v / m
    return d, w


def _sorted_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both samples sorted, one on a second thread (numpy's sort lets go of the GIL)."""
    if a.size + b.size < 1_000_000:
        return np.sort(a), np.sort(b)
    with ThreadPoolExecutor(1) as pool:
        sorted_a = pool.submit(np.sort, a)
        sorted_b = np.sort(b)
        return sorted_a.result(), sorted_b


def ks_drift(current, baseline) -> dict:
    """Two-sample Kolmogorov-Smirnov test (two-sided; statistic and p-value as scipy.stats.ks_2samp)."""
    a, b = _sorted_pair(_numbers(current), _numbers(baseline))
    result = dict.fromkeys(KS_FIELDS)
    result |= {"n_current": int(a.size), "n_baseline": int(b.size)}
    if a.size == 0 or b.size == 0:
        return result
    from scipy import stats  # 0.3 s: only when a statistic runs

    # the effect is scale-free: values near the float limit are divided down first, so nothing overflows
    m = max(abs(float(a[0])), abs(float(a[-1])), abs(float(b[0])), abs(float(b[-1])))
    m = m if m > 1e150 else 1.0
    d, wasserstein = _ks_pass(a, b, m)
    if max(a.size, b.size) <= EXACT_KS_MAX_N:
        ks = stats.ks_2samp(a, b)
        d, p = float(ks.statistic), float(ks.pvalue)
    else:  # scipy's asymptotic branch, from the same statistic
        n1, n2 = sorted([float(a.size), float(b.size)], reverse=True)
        p = float(np.clip(stats.kstwo.sf(d, np.round(n1 * n2 / (n1 + n2))), 0, 1))
    spread = float((b if m == 1.0 else b / m).std())
    scale = spread if spread > 0 else max(abs(float(b[0])), 1.0) / m
    return result | {"statistic": float(d), "p_value": p, "effect_size": wasserstein / scale}


def _counts(values) -> dict:
    if not isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = pa.array(values, pa.string())
    vc = pc.value_counts(pc.drop_null(values))
    return dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()))


def chi2_drift(current, baseline) -> dict:
    """Chi-square test of homogeneity over the union of categories (as scipy.stats.chi2_contingency on the
    2 x k table of counts), with the Jensen-Shannon distance of the two share vectors."""
    ca, cb = _counts(current), _counts(baseline)
    na, nb = sum(ca.values()), sum(cb.values())
    cats = sorted(set(ca) | set(cb), key=str)
    result = dict.fromkeys(CHI2_FIELDS)
    result |= {"n_current": na, "n_baseline": nb, "categories": len(cats)}
    if na == 0 or nb == 0:
        return result
    table = np.array([[ca.get(c, 0) for c in cats], [cb.get(c, 0) for c in cats]], dtype=np.float64)
    if len(cats) == 1:  # one category on both sides: identical by definition
        return result | {"statistic": 0.0, "p_value": 1.0, "dof": 0, "effect_size": 0.0}
    from scipy import stats  # 0.3 s: only when a statistic runs
    from scipy.spatial.distance import jensenshannon

    test = stats.chi2_contingency(table)
    js = float(jensenshannon(table[0] / na, table[1] / nb, base=2))
    return result | {"statistic": float(test.statistic), "p_value": float(test.pvalue), "dof": int(test.dof),
                     "effect_size": js if np.isfinite(js) else 0.0}
