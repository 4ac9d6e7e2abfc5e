"""Model quality on the real UCI data: train on lines before 2011-09-01, test on lines from it.

Prints model and both baselines (majority class; branch x item historical mode, else item's) with
accuracy, macro-F1 and per-class F1, all on the same validation rows. Targets: macro-F1 >= 0.72 and
accuracy >= 0.72.

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
    print(_metrics_table([("model", r.metrics)] + [(f"baseline: {k}", m) for k, m in r.baselines.items()]))
    ok = r.metrics["macro_f1"] >= 0.72 and r.metrics["accuracy"] >= 0.72
    print(f"targets (macro-F1 >= 0.72, accuracy >= 0.72): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
