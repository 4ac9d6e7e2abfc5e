"""The first backfill: one large file loaded into a new database, as a retailer's first command does.

Builds bench/.cache/backfill_xK.parquet from both UCI files K times (invoice numbers and countries suffixed /0 ..
/K-1, so every copy is new lines; the seed system's column names), then runs `sales-sql load` of it into a new file
under /usr/bin/time, and the same for the 1x file, and prints wall time and peak RSS, both per million lines.
Targets (issue #31): peak RSS <= 2 GB at the default settings, and time per million lines no worse than 1.5x the
1x load's.

    python bench/backfill.py [--copies 5] [--runs 1] [-- extra load options, e.g. --memory-limit 1GB]
"""
import argparse
import sys
import tempfile
from pathlib import Path

from scale import timed
from uci import ROOT, UCI

import duckdb

CACHE = ROOT / "bench" / ".cache"


def build(k: int) -> tuple[Path, int]:
    """(bench/.cache/backfill_xK.parquet, its lines), made on first use."""
    path = CACHE / f"backfill_x{k}.parquet"
    con = duckdb.connect()
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        old, new = (str(p) for p in UCI)
        con.execute(f"""COPY (
            WITH uci AS (
                SELECT Invoice AS inv, StockCode AS item, Quantity AS qty, CAST(InvoiceDate AS TIMESTAMP) AS ts,
                       Price AS price, CAST("Customer ID" AS VARCHAR) AS customer, Country AS country
                FROM read_parquet('{old}')
                UNION ALL
                SELECT InvoiceNo, StockCode, Quantity, InvoiceDate, UnitPrice, CAST(CustomerID AS VARCHAR), Country
                FROM read_parquet('{new}'))
            SELECT ts AS "Date", country || '/' || k AS "BranchID", inv || '/' || k AS "InvoiceNumber",
                   item AS "ItemCode", qty AS "QuantitySold", price AS "UnitPrice", customer AS "CustomerID"
            FROM uci, range({k}) r(k) ORDER BY k, ts) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 122880)""")
    return path, con.execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchone()[0]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=5)
    parser.add_argument("--runs", type=int, default=1)
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    results = {}
    for k in (1, args.copies):
        path, lines = build(k)
        for run in range(args.runs):
            said = []
            with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
                wall, rss = timed("load", Path(tmp) / "new.duckdb", path, *extra, output=said)
            results.setdefault(k, []).append((wall, rss, lines))
            steps = said[0].strip().rpartition("; ")[2]  # the command's own account: read, de-duplicate, history
            print(f"x{k}: {lines:,} lines, load {wall:.1f} s ({steps}), peak RSS {rss:,.0f} MB "
                  f"({wall / lines * 1e6:.2f} s and {rss / lines * 1e6:,.0f} MB per million lines)", flush=True)
    per = {k: min(w for w, _, n in r) / r[0][2] * 1e6 for k, r in results.items()}
    peak = max(rss for _, rss, _ in results[args.copies])
    print(f"targets: peak RSS {peak:,.0f} MB at x{args.copies} (<= 2,048 MB: {'met' if peak <= 2048 else 'NOT met'}); "
          f"time per million lines x{args.copies} / x1 = {per[args.copies] / per[1]:.2f} "
          f"(<= 1.5: {'met' if per[args.copies] <= 1.5 * per[1] else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
