"""Spark local[2] against DuckDB on the same machine and the same 1M UCI lines, each measured in this one run.

1. predict_sales_class over every usable line (the production model of bench/.cache/uci.duckdb, served on
   Spark from that file with sales_sql.spark.register): rows per second per core on each engine and their ratio.
   Target: Spark's per-core throughput >= 1/4 of DuckDB's. Each side runs three times after one warm-up (Spark's
   first query starts its Python workers and loads the bundle); the figures are the median and the range.
2. The as-of feature join: every line's history features (training_set; Spark: the timeline + last() window of
   sql/spark/training_set.sql, with history already cached; DuckDB: its ASOF joins), timed the same way.

The first run exports the database to bench/.cache/uci_export (sales-sql export); bench/predict.py's first run
trains the model (about 5 minutes).

    python bench/spark.py
"""
import os
import shutil
import statistics
import time

from predict import ensure_model
from uci import ROOT, uci_database

import sales_sql
from sales_sql import db as dbs
from sales_sql import spark as engine
from sales_sql.config import load_settings

ARGS = "sale_time, branch_id, item_code, unit_price, customer_id"
PREDICT = f"SELECT count(*), sum(CASE WHEN predict_sales_class({ARGS}) = 'LOW' THEN 1 ELSE 0 END) FROM usable_lines"
FEATURES = "SELECT count(*), sum(bi_n), sum(item_days_since), sum(ci_log_qty_mean) FROM training_set"


def runs(fn, n=3):
    fn()  # warm-up
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def summary(times):
    return f"median {statistics.median(times):.2f} s (runs {min(times):.2f}-{max(times):.2f})"


def main():
    settings = load_settings()
    db = uci_database()
    ensure_model(db, settings)
    export = ROOT / "bench" / ".cache" / "uci_export"
    if not export.exists():
        with dbs.opened(str(db), read_only=True, settings=settings) as con:
            dbs.export(con, export)
    con = sales_sql.connect(db, read_only=True)
    lines = con.execute("SELECT count(*) FROM usable_lines").fetchall()[0][0]
    cores = os.cpu_count()
    duck_predict = runs(lambda: con.execute(PREDICT).fetchall())
    duck_features = runs(lambda: con.execute(FEATURES).fetchall())
    duck_answer = con.execute(PREDICT).fetchall()[0]
    con.close()
    sales_sql.close(db)

    spark = engine.session("local[2]")
    try:
        t = time.perf_counter()
        engine.create_views(spark, export, settings)
        spark.sql("SELECT count(*) FROM history").collect()
        views = time.perf_counter() - t
        t = time.perf_counter()
        source = engine.register(spark, settings, db=db)
        bundled = time.perf_counter() - t
        spark_predict = runs(lambda: spark.sql(PREDICT).collect())
        spark_features = runs(lambda: spark.sql(FEATURES).collect())
        spark_answer = tuple(spark.sql(PREDICT).collect()[0])
    finally:
        engine.stop(spark)
    assert source == "model" and tuple(duck_answer) == spark_answer, (source, duck_answer, spark_answer)

    per_core = lambda times: lines / statistics.median(times) / cores  # noqa: E731
    ratio = per_core(spark_predict) / per_core(duck_predict)
    ratios = sorted(d / s for d, s in zip(duck_predict, spark_predict))
    print(f"{time.strftime('%Y-%m-%d')}, {cores} cores, {lines:,} usable UCI lines, Spark local[{cores}]")
    print(f"  Spark: invoices, usable_lines and history from Parquet {views:.1f} s; register (history index, "
          f"checked trees, addFile) {bundled:.1f} s")
    print(f"predict_sales_class over every line (same answers on both: {spark_answer[1]:,} LOW)")
    print(f"  DuckDB  {summary(duck_predict)}: {per_core(duck_predict):,.0f} rows/s per core")
    print(f"  Spark   {summary(spark_predict)}: {per_core(spark_predict):,.0f} rows/s per core")
    print(f"  Spark / DuckDB per core: {ratio:.2f} (runs {ratios[0]:.2f}-{ratios[-1]:.2f}); target >= 0.25: "
          f"{'met' if ratio >= 0.25 else 'NOT met'}")
    print("as-of feature join (training_set: every line's history features)")
    print(f"  DuckDB ASOF joins            {summary(duck_features)}")
    print(f"  Spark timeline + last()      {summary(spark_features)}: "
          f"{statistics.median(spark_features) / statistics.median(duck_features):.1f}x DuckDB's time")
    shutil.rmtree(ROOT / "bench" / ".cache" / "spark-warehouse", ignore_errors=True)


if __name__ == "__main__":
    main()
