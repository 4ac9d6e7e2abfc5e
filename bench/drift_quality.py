"""False alarms and detections of the drift check on demo data, each over 50 windows, in one run.

Demo invoices (the generator's defaults, 2024-01-01 .. 2025-12-31) with its drift option from 2025-10-01 at
the documented size (strength 1.0: quantities x1.8, prices x1.15, branch popularity shifted). A model is trained
on lines before 2025-07-01 and deployed with its training baseline. Each window is a bootstrap resample of
N lines (N = the mean number of lines in `drift.window_days` days) from the drift-free months 2025-07-01 ..
2025-09-30 (false alarms: any feature flagged) or from the drifted months 2025-10-01 .. 2025-12-31
(detections). Targets: false-alarm rate <= 5%, detection rate >= 95%.

    python bench/drift_quality.py
"""
import time


import numpy as np
import xgboost as xgb

from sales_sql import scratch
import sales_sql
from sales_sql.demo import generate, write
from sales_sql.loader import load_file
from sales_sql.monitor import check, store_baseline
from sales_sql.training import baseline_table
from sales_sql.serving import invalidate
from sales_sql.training import load_dataset, xgb_params

TRIES = 50


def main():
    settings = sales_sql.load_settings()
    folder = scratch.folder("drift")
    t0 = time.perf_counter()
    data_file = write(generate(drift_after="2025-10-01"), folder / "invoices.parquet")
    db = folder / "drift.duckdb"
    con = sales_sql.connect(db, settings=settings)
    con.execute("SET enable_progress_bar = false")
    load_file(con, data_file, settings=settings)
    data = load_dataset(con, settings, "2025-07-01")
    booster = xgb.train(xgb_params(settings), data.dtrain, 100)
    con.execute("""INSERT INTO deployed_models (model_name, version, run_id, booster, feature_spec, metrics, status)
                   VALUES (?, 1, 'bench', ?, ?, '{"accuracy": 1.0, "macro_f1": 1.0}', 'active')""",
                [settings.model_name, bytes(booster.save_raw("ubj")), __import__("json").dumps(data.spec)])
    store_baseline(con, settings, 1, baseline_table(data, booster))
    invalidate()
    per_day = con.execute("""SELECT count(*) / count(DISTINCT sale_day) FROM usable_lines
                             WHERE sale_day >= DATE '2025-07-01'""").fetchall()[0][0]
    n = int(per_day * settings.drift_window_days)
    print(f"set-up {time.perf_counter() - t0:.0f} s; windows of {n:,} lines; thresholds ks "
          f"{settings.ks_effect_threshold}, chi2 {settings.chi2_effect_threshold}, alpha {settings.drift_alpha}")
    rng = np.random.default_rng(11)
    for name, lo, hi in (("drift-free", "2025-07-01", "2025-09-30"), ("drifted", "2025-10-01", "2025-12-31")):
        pool = con.sql(f"""SELECT * FROM usable_lines WHERE sale_day BETWEEN DATE '{lo}' AND DATE '{hi}'""").to_arrow_table()
        flagged, features = 0, {}
        for _ in range(TRIES):
            window = pool.take(rng.integers(0, pool.num_rows, n))
            con.register("_window", window)
            report = check(con, settings, window_sql="SELECT * FROM _window", save=False)
            # performance rows are left out: the bench deploys a model without real validation figures
            hits = [r["feature"] for r in report.drifted if r["test"] != "performance"]
            flagged += bool(hits)
            for f in hits:
                features[f] = features.get(f, 0) + 1
        rate = flagged / TRIES
        target = "false-alarm rate (target <= 0.05)" if name == "drift-free" else "detection rate (target >= 0.95)"
        print(f"{name:10} windows flagged {flagged}/{TRIES}: {target} {rate:.2f}; by feature {features}")
    sales_sql.close(db)


if __name__ == "__main__":
    main()
