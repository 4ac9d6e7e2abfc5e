"""The drift report on the real UCI data: baseline = the production model's training lines (before 2011-09-01),
windows = each month from 2011-09 (December 2011 ends on the 9th). Prints one line per feature and month:
effect size, threshold and the decision (* = drift). Uses bench/.cache/uci.duckdb and its production model
(bench/predict.py trains and promotes it on first use).

    python bench/drift_uci.py
"""
import datetime as dt

import xgboost as xgb
from predict import ensure_model
from uci import CUTOFF, uci_database

import sales_sql
from sales_sql.monitor import check, store_baseline
from sales_sql.training import baseline_table
from sales_sql.training import load_dataset

MONTHS = [("2011-09-01", "2011-09-30"), ("2011-10-01", "2011-10-31"), ("2011-11-01", "2011-11-30"),
          ("2011-12-01", "2011-12-31")]


def main():
    settings = sales_sql.load_settings()
    db = uci_database()
    ensure_model(db, settings)
    con = sales_sql.connect(db, settings=settings)
    con.execute("SET enable_progress_bar = false")
    version, raw = con.execute("SELECT version, booster FROM deployed_models WHERE status = 'active'").fetchall()[0]
    if not con.execute("SELECT count(*) FROM drift_baseline WHERE version = ?", [version]).fetchall()[0][0]:
        # a model promoted before baselines were stored: rebuild its baseline from the same training lines
        booster = xgb.Booster()
        booster.load_model(bytearray(raw))
        con.execute("BEGIN TRANSACTION")
        store_baseline(con, settings, version, baseline_table(load_dataset(con, settings, CUTOFF), booster))
        con.execute("COMMIT")
    reports = [check(con, settings, window_sql=f"SELECT * FROM usable_lines WHERE sale_day BETWEEN DATE '{a}' AND "
                     f"DATE '{b}'", save=False) for a, b in MONTHS]
    print(f"baseline: model v{version}, training lines before {CUTOFF}; thresholds ks "
          f"{settings.ks_effect_threshold}, chi2 {settings.chi2_effect_threshold}, performance drop "
          f"{settings.performance_drop}; * = drift")
    print(f"| feature | test | " + " | ".join(dt.date.fromisoformat(a).strftime("%Y-%m") for a, _ in MONTHS) + " |")
    print("| --- | --- |" + " --- |" * len(MONTHS))
    for i, row in enumerate(reports[0].rows):
        cells = []
        for rep in reports:
            r = rep.rows[i]
            value = f"{r['statistic']:.3f} (drop {r['effect_size']:+.3f})" if r["test"] == "performance" \
                else f"{r['effect_size']:.3f}"
            cells.append(value + (" *" if r["is_drift"] else ""))
        print(f"| {row['feature']} | {row['test']} | " + " | ".join(cells) + " |")
    print("lines per window:", [rep.rows[0]["n_window"] for rep in reports])
    sales_sql.close(db)


if __name__ == "__main__":
    main()
