"""The demo generator: deterministic, realistic enough to learn from, with optional drift."""
import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sales_sql.demo import generate


def test_same_seed_same_lines_other_seed_other_lines():
    a, b, c = generate(lines=5000, seed=1), generate(lines=5000, seed=1), generate(lines=5000, seed=2)
    assert a.equals(b) and not a.equals(c)


def test_shape_of_the_default_data():
    t = generate(lines=60_000, days=365)
    q = t["QuantitySold"].to_numpy()
    assert pc.count_distinct(t["BranchID"]).as_py() == 30
    assert pc.count_distinct(t["ItemCode"]).as_py() > 1500
    pos = q[q > 0]
    shares = [(pos <= 3).mean(), ((pos > 3) & (pos <= 8)).mean(), (pos > 8).mean()]
    assert all(s > 0.1 for s in shares), shares  # all three classes well represented
    assert 0.01 < (q <= 0).mean() < 0.04  # returns
    counts = np.sort(np.unique(t["ItemCode"].to_numpy(zero_copy_only=False), return_counts=True)[1])[::-1]
    assert counts[:30].sum() > 10 * counts[-30:].sum()  # long tail


def test_drift_option_changes_only_lines_after_the_date():
    base = generate(lines=20_000, days=200, seed=3)
    drifted = generate(lines=20_000, days=200, seed=3, drift_after="2024-05-01")
    cut = pa.scalar(dt.datetime(2024, 5, 1), pa.timestamp("s"))
    before = lambda t: t.filter(pc.less(t["Date"], cut))  # noqa: E731
    assert before(base).equals(before(drifted))
    after = lambda t: t.filter(pc.and_(pc.greater_equal(t["Date"], cut), pc.greater(t["QuantitySold"], 0)))  # noqa
    assert pc.mean(after(drifted)["QuantitySold"]).as_py() > 1.4 * pc.mean(after(base)["QuantitySold"]).as_py()
