"""Loading: typed, all-or-nothing per file, idempotent, and nothing dropped silently."""
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SAMPLE_CSV, need_uci

from sales_sql import close, connect
from sales_sql.loader import LoadError, load_file, parse_mapping

HEADER = "Date,BranchID,InvoiceNumber,ItemCode,QuantitySold,UnitPrice,CustomerID\n"
GOOD = ["2024-01-01 10:00:00,1,A1,10001,5,2.5,C1", "2024-01-02,1,A2,10002,12,1.0,", "2024-01-03,2,C3,10001,-2,2.5,C1"]
BAD = ["2024-01-04,1,A4,10003,lots,1.0,C2", "2024-13-45,1,A5,10003,1,1.0,C2", "2024-01-06,1,A6,,1,1.0,C2",
       "2024-01-07,1,A7,10004,1,1.0,C2,extra", "2024-01-08,1,A8,10004,2.5,1.0,C2", "2024-01-09,1,A9,10004,1,abc,C2"]


def write_csv(path, lines):
    path.write_text(HEADER + "\n".join(lines) + "\n")
    return path


def count(con, table="invoices"):
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_good_csv_loads_typed_rows(con, tmp_path):
    r = load_file(con, write_csv(tmp_path / "a.csv", GOOD))
    assert (r.rows_read, r.loaded, r.duplicates, r.rejected, r.returns) == (3, 3, 0, 0, 1)
    rows = con.execute("SELECT sale_time::VARCHAR, branch_id, quantity_sold, unit_price, customer_id, source_line "
                       "FROM invoices ORDER BY source_line").fetchall()
    assert rows[0] == ("2024-01-01 10:00:00", "1", 5, 2.5, "C1", 2)
    assert rows[1][4] is None  # empty customer -> NULL
    # the return is kept but not used for training
    assert count(con, "training_set") == 2


def test_broken_lines_leave_the_database_unchanged_and_are_named(con, tmp_path):
    load_file(con, write_csv(tmp_path / "first.csv", GOOD[:1]))
    before = con.execute("SELECT * FROM invoices").fetchall()
    path = write_csv(tmp_path / "b.csv", GOOD[1:] + BAD)
    with pytest.raises(LoadError) as e:
        load_file(con, path)
    msg = str(e.value)
    assert "6 unusable line(s), nothing loaded" in msg and "--allow-rejects" in msg
    assert "line 4: non-numeric quantity: lots" in msg and "line 5: bad date: 2024-13-45" in msg
    assert "(and 1 more)" in msg
    assert con.execute("SELECT * FROM invoices").fetchall() == before
    assert count(con, "rejected_rows") == 0 and count(con, "load_log") == 1


def test_dates_outside_the_years_1_to_9999_are_unusable(con, tmp_path):
    # TIMESTAMP accepts these, but no prediction can answer for them (found by tests/test_fuzz.py)
    path = write_csv(tmp_path / "d.csv", GOOD[:1] + ["infinity,1,B1,10001,5,2.5,C1", "-infinity,1,B2,10001,5,2.5,C1",
                                                     "10000-01-01,1,B3,10001,5,2.5,C1"])
    r = load_file(con, path, allow_rejects=True)
    assert (r.loaded, r.rejected) == (1, 3)
    assert con.execute("SELECT reason FROM rejected_rows ORDER BY source_line").fetchall() == [
        (f"date outside the years 1 to 9999: {d}",) for d in ("infinity", "-infinity", "10000-01-01")]


def test_allow_rejects_loads_good_lines_and_records_each_bad_line(con, tmp_path):
    path = write_csv(tmp_path / "b.csv", GOOD + BAD)
    r = load_file(con, path, allow_rejects=True)
    assert (r.rows_read, r.loaded, r.rejected) == (9, 3, 6)
    got = dict(con.execute("SELECT source_line, reason FROM rejected_rows").fetchall())
    assert got == {
        5: "non-numeric quantity: lots", 6: "bad date: 2024-13-45", 7: "missing item",
        8: "malformed CSV line: too many columns", 9: "quantity is not a whole number: 2.5",
        10: "non-numeric unit price: abc",
    }
    # again: nothing new anywhere
    r2 = load_file(con, path, allow_rejects=True)
    assert (r2.loaded, r2.duplicates) == (0, 3)
    assert count(con) == 3 and count(con, "rejected_rows") == 6


def test_overlapping_files_are_deduplicated(con, tmp_path):
    load_file(con, write_csv(tmp_path / "a.csv", GOOD[:2]))
    r = load_file(con, write_csv(tmp_path / "b.csv", GOOD[1:] + GOOD[2:]))  # one overlap, one repeat inside
    assert (r.rows_read, r.loaded, r.duplicates) == (3, 1, 2)
    assert count(con) == 3


def test_mapping_reads_other_column_names(con, tmp_path):
    t = pa.table({"when": ["2024-02-01 09:00"], "shop": ["S1"], "inv": ["9"], "sku": [" X-1 "], "qty": [4]})
    pq.write_table(t, tmp_path / "m.parquet")
    with pytest.raises(LoadError, match=r"has no column 'Date' for sale_time; its columns are \['when'"):
        load_file(con, tmp_path / "m.parquet")
    mapping = parse_mapping(["Date=when", "branch_id=shop", "InvoiceNumber=inv", "ItemCode=sku", "quantity_sold=qty"])
    assert load_file(con, tmp_path / "m.parquet", mapping=mapping).loaded == 1
    assert con.execute("SELECT item_code, source_line FROM invoices").fetchone() == ("X-1", 1)  # keys trimmed
    with pytest.raises(LoadError, match="not TARGET=SOURCE_COLUMN"):
        parse_mapping(["Price"])


def test_unknown_file_type_and_missing_file(con, tmp_path):
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(LoadError, match="unknown file type"):
        load_file(con, tmp_path / "x.json")
    with pytest.raises(LoadError, match="does not exist"):
        load_file(con, tmp_path / "nope.csv")


def test_quoted_path_and_names_cannot_inject_sql(con, tmp_path):
    path = write_csv(tmp_path / "it's'); DROP TABLE invoices; --.csv", GOOD)
    assert load_file(con, path).loaded == 3
    t = pa.table({'a"b': ["2024-01-01"], "BranchID": ["1"], "InvoiceNumber": ["1"], "ItemCode": ["1"],
                  "QuantitySold": [1]})
    pq.write_table(t, tmp_path / "q.parquet")
    assert load_file(con, tmp_path / "q.parquet", mapping={"sale_time": 'a"b'}).loaded == 1


def test_committed_sample_loads_cleanly(con):
    r = load_file(con, SAMPLE_CSV)
    assert r.rejected == 0 and r.loaded == r.rows_read > 1000


def test_uci_files_load_with_the_preset(uci_load, tmp_path, settings):
    path, (first, second) = uci_load
    # figures recorded in the README
    assert (first.rows_read, first.loaded, first.duplicates, first.rejected, first.returns) == (
        525461, 518596, 6865, 0, 12302)
    assert (second.rows_read, second.loaded, second.duplicates, second.rejected, second.returns) == (
        541909, 514437, 27472, 0, 10194)
    copy = tmp_path / "again.duckdb"
    shutil.copy(path, copy)
    con = connect(copy, settings=settings)
    again = load_file(con, need_uci()[1], preset="uci", settings=settings)
    assert again.loaded == 0 and again.duplicates == 541909
    n, customers, branches, float_ids = con.execute("""
        SELECT count(*), count(customer_id), count(DISTINCT branch_id),
               count(*) FILTER (WHERE customer_id LIKE '%.%') FROM invoices""").fetchall()[0]
    close(copy)
    assert n == 1033033 and branches == 43 and float_ids == 0 and 0.7 < customers / n < 0.8
