"""Concurrent use: several processes read one database file at once (prediction queries, read-only) and get
exactly the answers of a single process. `make test` runs 4 readers for a few seconds; `make soak` for 60 s
(SALES_SQL_SOAK_SECONDS)."""
import os
import subprocess
import sys
import textwrap

import pytest

from test_predict import deploy, trained  # noqa: F401  (trained is a fixture)

import sales_sql

pytestmark = pytest.mark.slow
READERS = 4
SECONDS = float(os.environ.get("SALES_SQL_SOAK_SECONDS", "4"))
READER = textwrap.dedent("""
    import hashlib, sys, time
    import sales_sql
    path, seconds = sys.argv[1], float(sys.argv[2])
    con = sales_sql.connect(path, read_only=True)
    query = '''SELECT line_id, predict_sales(sale_time, branch_id, item_code, unit_price, customer_id),
                      explain_sales_class(sale_time, branch_id, item_code, unit_price, customer_id)
               FROM invoices WHERE line_id % 7 = 0 ORDER BY line_id'''
    digests, runs, end = set(), 0, time.time() + seconds
    while True:
        digests.add(hashlib.sha256(repr(con.execute(query).fetchall()).encode()).hexdigest())
        runs += 1
        if time.time() >= end:
            break
    print(runs, *sorted(digests))
""")


def readers(path, n, seconds):
    procs = [subprocess.Popen([sys.executable, "-c", READER, str(path), str(seconds)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(n)]
    outs = [p.communicate(timeout=seconds + 300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    return [out.split() for out, _ in outs]


def test_four_readers_at_once_answer_exactly_like_one(trained, tmp_path):  # noqa: F811
    db, _, spec, _, booster = trained
    path = tmp_path / "soak.duckdb"
    path.write_bytes(db.read_bytes())
    con = sales_sql.connect(path)
    deploy(con, booster, spec, 1)
    sales_sql.close(path)
    [(_, reference)] = readers(path, 1, 0)
    results = readers(path, READERS, SECONDS)
    assert all(digests == [reference] for _, *digests in results)
    assert all(int(runs) >= 1 for runs, *_ in results)
    print(f"{READERS} readers for {SECONDS:.0f} s: {sum(int(r[0]) for r in results)} queries, all identical")
