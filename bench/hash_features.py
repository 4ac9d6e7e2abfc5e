"""hash_features vs the floor of any Python arrow UDF, measured in one run.

Prints the time of `SELECT hash_features(branch_id, item_code)` over >= 2M invoice rows divided by the time
of an identity arrow UDF over the same two columns (DuckDB's own per-call cost). Target: <= 2.0.

    python bench/hash_features.py [--rows 2500000] [--repeat 5]
"""
import argparse
import time

import duckdb

import sales_sql
from sales_sql.demo import generate


def best_of(con, sql, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        con.execute(sql).fetchall()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2_500_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    con = sales_sql.connect()
    con.register("demo", generate(lines=args.rows))
    con.execute('CREATE TABLE lines AS SELECT "BranchID" AS branch_id, "ItemCode" AS item_code FROM demo')
    n = con.execute("SELECT count(*) FROM lines").fetchall()[0][0]
    con.create_function("identity_udf", lambda b, i: b, ["VARCHAR", "VARCHAR"], "VARCHAR", type="arrow",
                        null_handling="special")
    ident_sql = "SELECT count(identity_udf(branch_id, item_code)) FROM lines"
    hash_sql = "SELECT count(hash_features(branch_id, item_code)) FROM lines"
    best_of(con, hash_sql, 1)  # warm up (numba loads its cached machine code)
    ident = hash_ = float("inf")
    for _ in range(args.repeat):  # interleaved, so both see the same machine
        ident = min(ident, best_of(con, ident_sql, 1))
        hash_ = min(hash_, best_of(con, hash_sql, 1))
    threads = con.execute("SELECT current_setting('threads')").fetchall()[0][0]
    print(f"rows: {n:,}  threads: {threads}  duckdb {duckdb.__version__}")
    print(f"identity arrow UDF: {ident:.3f} s ({n / ident / 1e6:.1f} M rows/s)")
    print(f"hash_features:      {hash_:.3f} s ({n / hash_ / 1e6:.1f} M rows/s)")
    print(f"ratio hash_features / identity: {hash_ / ident:.2f}  (target <= 2.0)")


if __name__ == "__main__":
    main()
