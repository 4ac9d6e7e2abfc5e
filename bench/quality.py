"""Model quality on the real UCI data with the shipped settings: train on lines before the early-stopping slice,
stop early on that slice (the last 10% of the lines before 2011-09-01), test on lines from 2011-09-01.

Prints the model and both baselines (majority class; branch x item historical mode, else item's) with accuracy,
macro-F1 and per-class F1 on the test slice, and beside them the model on the early-stopping slice, which chose the
number of rounds (the optimism that grading on it would add). Targets, on the test slice: macro-F1 >= 0.745 and
accuracy >= 0.775.

    python bench/quality.py
"""
import time

from uci import CUTOFF, fresh_mlflow_store, uci_database

from sales_sql.cli import _metrics_table
from sales_sql.config import load_settings
from sales_sql.registry import retrain


def main():
    db = uci_database()
    models = fresh_mlflow_store()
    t = time.perf_counter()
    r = retrain(str(db), load_settings(), models, cutoff=CUTOFF)
    print(f"cut-off {CUTOFF}; {r.rounds} rounds; {time.perf_counter() - t:.0f} s")
    for name, (first, last, lines) in sorted(r.slices.items(), key=lambda kv: kv[1][0]):
        print(f"  {name:5} slice: {first} .. {last}, {lines:,} lines")
    rows = [("model, test slice", r.metrics), ("model, early-stopping slice", r.stop)]
    print(_metrics_table(rows + [(f"baseline: {k}, test", m) for k, m in r.baselines.items()]))
    ok = r.metrics["macro_f1"] >= 0.745 and r.metrics["accuracy"] >= 0.775
    print(f"targets on the test slice (macro-F1 >= 0.745, accuracy >= 0.775): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
