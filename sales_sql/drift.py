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
def _ks_pass(va, ca, vb, cb, m):
    """One merge pass over two samples given as sorted distinct values and their counts: the KS statistic (the
    largest |F_a - F_b|, read after each value) and the area between the two CDFs (the Wasserstein distance) over
    values divided by m."""
    na, nb = ca.sum(), cb.sum()
    i = j = 0
    fa = fb = 0  # lines of each side at or below the value reached
    d = w = 0.0
    prev = min(va[0], vb[0]) / m
    while i < va.size or j < vb.size:
        v = va[i] if j >= vb.size or (i < va.size and va[i] <= vb[j]) else vb[j]
        w += abs(fa / na - fb / nb) * (v / m - prev)
        if i < va.size and va[i] == v:
            fa += ca[i]
            i += 1
        if j < vb.size and vb[j] == v:
            fb += cb[j]
            j += 1
        d = max(d, abs(fa / na - fb / nb))
        prev = v / m
    return d, w


def _distinct(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and their counts (np.unique: a sort)."""
    values, counts = np.unique(x, return_counts=True)
    return values, counts.astype(np.int64)


def _distinct_pair(a: np.ndarray, b: np.ndarray):
    """Both samples as distinct values and counts, one on a second thread (numpy's sort lets go of the GIL)."""
    if a.size + b.size < 1_000_000:
        return _distinct(a), _distinct(b)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(_distinct, a)
        second = _distinct(b)
        return first.result(), second


def ks_drift(current, baseline) -> dict:
    """Two-sample Kolmogorov-Smirnov test (two-sided; statistic and p-value as scipy.stats.ks_2samp)."""
    (va, ca), (vb, cb) = _distinct_pair(_numbers(current), _numbers(baseline))
    return ks_counted(va, ca, vb, cb)


def ks_drift_counted(current, baseline) -> dict:
    """ks_drift of two samples given as (value, n) pairs: each distinct value and how many lines hold it (what
    GROUP BY gives, so that a window of any size reaches the test as one row per distinct value). Equal to ks_drift
    of the samples the pairs count, bit for bit."""
    return ks_counted(*_pairs(current, numbers=True), *_pairs(baseline, numbers=True))


def _pairs(pairs, numbers: bool) -> tuple[pa.Array | np.ndarray, np.ndarray]:
    """(value, n) pairs (an Arrow struct array, or a list of dicts) as distinct values and their counts (a value the
    pairs repeat counts once, with the sum), without NULL values (and, for numbers, NaN and +-inf); numbers sorted,
    as a float64 array."""
    if not isinstance(pairs, (pa.Array, pa.ChunkedArray)):
        pairs = pa.array(pairs, pa.struct([("value", pa.float64() if numbers else pa.string()), ("n", pa.int64())]))
    pairs = pairs.combine_chunks() if isinstance(pairs, pa.ChunkedArray) else pairs
    values, counts = pairs.field("value"), pc.fill_null(pairs.field("n"), 0)
    keep = pc.and_(values.is_valid(), pc.greater(counts, 0))
    values, counts = values.filter(keep), counts.filter(keep).to_numpy(zero_copy_only=False).astype(np.int64)
    if not numbers:
        summed = pa.table({"value": values, "n": counts}).group_by("value").aggregate([("n", "sum")])
        return summed["value"].combine_chunks(), summed["n_sum"].to_numpy().astype(np.int64)
    x = values.to_numpy(zero_copy_only=False).astype(np.float64)
    finite = np.isfinite(x)
    distinct, at = np.unique(x[finite], return_inverse=True)
    return distinct, np.bincount(at, weights=counts[finite], minlength=distinct.size).astype(np.int64)


def ks_counted(va: np.ndarray, ca: np.ndarray, vb: np.ndarray, cb: np.ndarray) -> dict:
    """ks_drift of two samples as sorted distinct finite values and their counts. The baseline (in sales_sql's drift
    check, a sample of at most training.BASELINE_ROWS lines) is spread out once for its standard deviation; the
    current side never is past EXACT_KS_MAX_N lines."""
    na, nb = int(ca.sum()), int(cb.sum())
    result = dict.fromkeys(KS_FIELDS)
    result |= {"n_current": na, "n_baseline": nb}
    if na == 0 or nb == 0:
        return result
    from scipy import stats  # 0.3 s: only when a statistic runs

    # the effect is scale-free: values near the float limit are divided down first, so nothing overflows
    m = max(abs(float(va[0])), abs(float(va[-1])), abs(float(vb[0])), abs(float(vb[-1])))
    m = m if m > 1e150 else 1.0
    d, wasserstein = _ks_pass(va, ca, vb, cb, m)
    b = np.repeat(vb, cb)  # the sorted baseline
    if max(na, nb) <= EXACT_KS_MAX_N:
        ks = stats.ks_2samp(np.repeat(va, ca), b)
        d, p = float(ks.statistic), float(ks.pvalue)
    else:  # scipy's asymptotic branch, from the same statistic
        n1, n2 = sorted([float(na), float(nb)], reverse=True)
        p = float(np.clip(stats.kstwo.sf(d, np.round(n1 * n2 / (n1 + n2))), 0, 1))
    spread = float((b if m == 1.0 else b / m).std())
    scale = spread if spread > 0 else max(abs(float(vb[0])), 1.0) / m
    return result | {"statistic": float(d), "p_value": p, "effect_size": wasserstein / scale}


def _counts(values) -> dict:
    if not isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = pa.array(values, pa.string())
    vc = pc.value_counts(pc.drop_null(values))
    return dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()))


def chi2_drift(current, baseline) -> dict:
    """Chi-square test of homogeneity over the union of categories (as scipy.stats.chi2_contingency on the
    2 x k table of counts), with the Jensen-Shannon distance of the two share vectors."""
    return chi2_counted(_counts(current), _counts(baseline))


def chi2_drift_counted(current, baseline) -> dict:
    """chi2_drift of two samples given as (value, n) pairs (each category and how many lines hold it)."""
    sides = (_pairs(current, numbers=False), _pairs(baseline, numbers=False))
    return chi2_counted(*(dict(zip(values.to_pylist(), counts.tolist())) for values, counts in sides))


def chi2_counted(ca: dict, cb: dict) -> dict:
    """chi2_drift of two samples as {category: count}."""
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
