"""Drift statistics on arrays (no DuckDB inside): two-sample KS for numbers, chi-square for categories.

On large samples every p-value is tiny, so each result carries an effect size for the decision:
- ks_drift: Wasserstein distance between the two samples divided by the baseline's standard deviation
  (by max(|baseline value|, 1) when the baseline is constant);
- chi2_drift: Jensen-Shannon distance (base 2, 0 = same shares, 1 = no category in common).
NULLs (and NaN, +inf and -inf for numbers) are left out. A side with no values gives a result of NULLs:
nothing to compare.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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


def ks_drift(current, baseline) -> dict:
    """Two-sample Kolmogorov-Smirnov test (two-sided; statistic and p-value as scipy.stats.ks_2samp)."""
    a, b = np.sort(_numbers(current)), np.sort(_numbers(baseline))
    result = dict.fromkeys(KS_FIELDS)
    result |= {"n_current": int(a.size), "n_baseline": int(b.size)}
    if a.size == 0 or b.size == 0:
        return result
    # merge the two sorted samples in linear time (a value of `b` goes after equal values of `a`), then
    # both empirical CDFs are running counts; the KS statistic is read at the end of each run of equal values
    is_b = np.zeros(a.size + b.size, np.bool_)
    is_b[np.searchsorted(a, b, side="right") + np.arange(b.size)] = True
    both = np.empty(is_b.size)
    both[is_b], both[~is_b] = b, a
    b_seen = np.cumsum(is_b.view(np.uint8), dtype=np.int64)
    diff = np.arange(1, is_b.size + 1) / a.size - b_seen * (1 / a.size + 1 / b.size)  # F_a - F_b
    from scipy import stats

    if max(a.size, b.size) <= EXACT_KS_MAX_N:
        ks = stats.ks_2samp(a, b)
        d, p = float(ks.statistic), float(ks.pvalue)
    else:  # scipy's asymptotic branch, from the same statistic
        run_end = np.append(both[1:] != both[:-1], True)
        d = float(np.abs(diff[run_end]).max())
        m, n = sorted([float(a.size), float(b.size)], reverse=True)
        p = float(np.clip(stats.kstwo.sf(d, np.round(m * n / (m + n))), 0, 1))
    # the effect is scale-free: values near the float limit are divided down first, so nothing overflows
    m = max(abs(float(both[0])), abs(float(both[-1])))  # both is sorted
    m = m if m > 1e150 else 1.0
    wasserstein = float(np.sum(np.abs(diff[:-1]) * np.diff(both if m == 1.0 else both / m)))
    spread = float((b if m == 1.0 else b / m).std())
    scale = spread if spread > 0 else max(abs(float(b[0])), 1.0) / m
    return result | {"statistic": d, "p_value": p, "effect_size": wasserstein / scale}


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
    from scipy import stats
    from scipy.spatial.distance import jensenshannon

    test = stats.chi2_contingency(table)
    js = float(jensenshannon(table[0] / na, table[1] / nb, base=2))
    return result | {"statistic": float(test.statistic), "p_value": float(test.pvalue), "dof": int(test.dof),
                     "effect_size": js if np.isfinite(js) else 0.0}
