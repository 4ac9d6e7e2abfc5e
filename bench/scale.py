"""How the costs grow with the data: UCI x 1, x 10 (and x 30 with --sizes 1,10,30), each measured in this one run.

A size-k database holds the UCI lines k times, under k sets of branch names (Country/0 .. Country/k-1; items,
customers and dates as they are), without the last two days, and the production model of bench/.cache/uci.duckdb
(with its drift baseline). Per size, each step runs as a user runs it, as a `sales-sql` command in its own process
under /usr/bin/time (wall time and peak RSS, the process start included):
- load: one new day (UCI's 2011-12-08 under Country/0, 4,907 lines) into a copy of the database;
- retrain: XGBoost on every usable line before 2011-09-01 (bench/scale.toml: 100 rounds without early stopping,
  so every size does the same work per line);
- score: `sales-sql predict` of every invoice line into a table;
- drift: `sales-sql drift --window 30d` (the latest 30 days against the model's baseline).
The table gives each step's time and RSS, then the same per million lines, and the targets of issue #20 at the end.

    python bench/scale.py [--sizes 1,10] [--steps load,retrain,score,drift] [--runs 1]

Databases are built once into bench/.cache/scale_xK.duckdb (x10: about 2 minutes; x30 needs about 8 GB of disk).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from uci import CUTOFF, ROOT, fresh_mlflow_store, uci_database

from sales_sql import scratch
import sales_sql
from sales_sql.config import load_settings
from sales_sql.serving import load_from_file

SALES_SQL = str(Path(sys.executable).parent / "sales-sql")
CACHE = ROOT / "bench" / ".cache"
NEW_DAY = "2011-12-08"  # this day and the next are left out of every size; this day is the load
CONFIG = ROOT / "bench" / "scale.toml"


def build(k: int, uci: Path) -> Path:
    """bench/.cache/scale_xK.duckdb, made on first use (and given the UCI database's production model again)."""
    path = CACHE / f"scale_x{k}.duckdb"
    if not path.exists():
        print(f"building {path.name} ...", flush=True)
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        con = sales_sql.connect(tmp)
        con.execute(f"ATTACH '{uci}' AS uci (READ_ONLY)")
        con.execute(f"""INSERT INTO invoices (sale_time, branch_id, invoice_number, item_code, quantity_sold,
                                              unit_price, customer_id, line_key, source_file, source_line)
                        SELECT sale_time, branch_id || '/' || k, invoice_number, item_code, quantity_sold, unit_price,
                               customer_id, line_key + k, source_file, source_line
                        FROM uci.invoices, range({k}) r(k) WHERE sale_time < DATE '{NEW_DAY}'
                        ORDER BY k, line_id""")
        con.execute("DETACH uci")
        sales_sql.db.rebuild_history(con, load_settings())
        sales_sql.close(tmp)
        tmp.rename(path)
    con = sales_sql.connect(path)
    con.execute(f"ATTACH '{uci}' AS uci (READ_ONLY)")
    for table in ("deployed_models", "drift_baseline"):
        con.execute(f"DELETE FROM {table}")
    con.execute("INSERT INTO deployed_models SELECT * FROM uci.deployed_models WHERE status = 'active'")
    con.execute("""INSERT INTO drift_baseline SELECT b.* FROM uci.drift_baseline b
                   JOIN uci.deployed_models d ON d.status = 'active' AND b.version = d.version""")
    con.execute("DETACH uci")
    load_from_file(con, load_settings())  # what promote does: the compiled trees checked, the history index built
    sales_sql.close(path)
    return path


def new_day(uci: Path) -> Path:
    """The day to load, as a Parquet file with the seed system's column names."""
    path = CACHE / f"scale_day_{NEW_DAY}.parquet"
    if not path.exists():
        con = sales_sql.connect(uci, read_only=True)
        con.execute(f"""COPY (SELECT sale_time AS "Date", branch_id || '/0' AS "BranchID",
                                     invoice_number AS "InvoiceNumber", item_code AS "ItemCode",
                                     quantity_sold AS "QuantitySold", unit_price AS "UnitPrice",
                                     customer_id AS "CustomerID"
                              FROM invoices WHERE CAST(sale_time AS DATE) = DATE '{NEW_DAY}' ORDER BY line_id)
                        TO '{path}' (FORMAT parquet)""")
        sales_sql.close(uci)
    return path


def timed(*args, ok=(0,), output: list | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one sales-sql command (its stdout appended to `output`, when given)."""
    proc = subprocess.run(["/usr/bin/time", "-v", SALES_SQL, *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode not in ok:
        sys.exit(f"sales-sql {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    if output is not None:
        output.append(proc.stdout)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) / 1024
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", proc.stderr).groups()
    return int(wall[0] or 0) * 3600 + int(wall[1]) * 60 + float(wall[2]), rss


def measure(db: Path, step: str, day: Path) -> tuple[float, float]:
    if step == "load":
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            copy = Path(tmp) / "copy.duckdb"
            shutil.copy(db, copy)
            os.sync()  # the copy on disk first: else the load's commit (fsync) pays for writing the whole copy
            return timed("load", copy, day)
    if step == "retrain":
        models = str(scratch.folder("models"))
        try:
            return timed("retrain", db, "--cutoff", CUTOFF, "--config", CONFIG, "--models-dir", models)
        finally:
            shutil.rmtree(models, ignore_errors=True)
    if step == "score":
        return timed("predict", db, "--into", "scale_scored", "--replace")
    return timed("drift", db, "--window", "30d", "--no-save", ok=(0, 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,10")
    ap.add_argument("--steps", default="load,retrain,score,drift")
    ap.add_argument("--runs", type=int, default=1, help="runs of each step (the table gives the median)")
    args = ap.parse_args()
    sizes, steps = [int(k) for k in args.sizes.split(",")], args.steps.split(",")
    uci = uci_database()
    from predict import ensure_model  # a production model trained on the current feature definition

    ensure_model(uci, load_settings())
    day = new_day(uci)
    fresh_mlflow_store()
    results = {}
    for k in sizes:
        db = build(k, uci)
        con = sales_sql.connect(db, read_only=True)
        lines = con.execute("SELECT count(*) FROM invoices").fetchone()[0]
        sales_sql.close(db)
        row = {"lines": lines}
        for step in steps:
            runs = sorted(measure(db, step, day) for _ in range(args.runs))
            row[step] = runs[len(runs) // 2]
            print(f"x{k} {step}: {row[step][0]:.1f} s, {row[step][1]:,.0f} MB"
                  + (f" (runs: {', '.join(f'{t:.1f}' for t, _ in runs)} s)" if len(runs) > 1 else ""), flush=True)
        results[k] = row
    report(results, steps)


def report(results: dict, steps: list[str]) -> None:
    print(f"\n{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; seconds / peak RSS MB of each command "
          "(its process start included), then per million invoice lines")
    print(f"{'size':>5} {'lines':>11} " + " ".join(f"{s:>17}" for s in steps))
    for k, row in results.items():
        print(f"{'x' + str(k):>5} {row['lines']:>11,} " + " ".join(f"{row[s][0]:7.1f} s {row[s][1]:6,.0f} MB"
                                                              for s in steps))
    for k, row in results.items():
        m = row["lines"] / 1e6
        print(f"{'x' + str(k):>5} {'per M lines':>11} " + " ".join(f"{row[s][0] / m:7.2f} s {row[s][1] / m:6,.0f} MB"
                                                                    for s in steps))
    if 1 in results and 10 in results:
        one, ten = results[1], results[10]
        checks = []
        if "retrain" in steps:
            checks += [("retrain x10 peak RSS <= 4096 MB", ten["retrain"][1], ten["retrain"][1] <= 4096),
                       ("retrain x10 time / x1 <= 12", ten["retrain"][0] / one["retrain"][0],
                        ten["retrain"][0] <= 12 * one["retrain"][0])]
        if "load" in steps:
            checks += [("one new day into x10 <= 2 s", ten["load"][0], ten["load"][0] <= 2),
                       ("one new day, x10 / x1 <= 1.5", ten["load"][0] / one["load"][0],
                        ten["load"][0] <= 1.5 * one["load"][0])]
        if "score" in steps:
            checks += [("scoring x10 peak RSS <= 1024 MB", ten["score"][1], ten["score"][1] <= 1024)]
        print("\ntargets (issue #20):")
        for name, value, met in checks:
            print(f"  {name}: {value:,.2f}  {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
