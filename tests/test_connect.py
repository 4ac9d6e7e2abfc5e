"""connect() and register(): UDFs and views on any connection, again and again, across reopen."""
import math
import subprocess
import sys

import duckdb
import pytest

import sales_sql


def test_register_on_an_existing_connection_twice(settings):
    con = duckdb.connect()
    assert sales_sql.register(con, settings) is con
    sales_sql.register(con, settings)  # harmless the second time
    assert con.execute("SELECT len(hash_features('1', '10001'))").fetchone()[0] == settings.buckets
    assert con.execute("SELECT count(*) FROM training_set").fetchone()[0] == 0


def test_functions_survive_closing_other_connections(tmp_path, settings):
    path = tmp_path / "x.duckdb"
    a = sales_sql.connect(path, settings=settings)
    b = sales_sql.connect(path, settings=settings)
    b.close()
    del b
    import gc

    gc.collect()
    assert a.execute("SELECT len(hash_features('1', '2'))").fetchone()[0] == settings.buckets
    a.close()
    c = sales_sql.connect(path, settings=settings)
    assert c.execute("SELECT len(hash_features('1', '2'))").fetchone()[0] == settings.buckets
    sales_sql.close(path)


def test_file_closed_and_reopened_works_again_after_connect(tmp_path, settings):
    path = tmp_path / "x.duckdb"
    con = sales_sql.connect(path, settings=settings)
    con.execute("""INSERT INTO invoices (sale_time, branch_id, invoice_number, item_code, quantity_sold, line_key,
                   source_file, source_line) VALUES ('2024-01-01', '1', 'A', '10001', 5, 1, 'f', 2)""")
    sales_sql.close(path)
    raw = duckdb.connect(str(path))  # a plain DuckDB connection does not know the functions
    with pytest.raises(duckdb.Error, match="hash_features"):
        raw.execute("SELECT * FROM training_set").fetchall()
    raw.close()
    con = sales_sql.connect(path, settings=settings)
    row = con.execute("SELECT label, len(hashed) FROM training_set").fetchone()
    assert row == ("MEDIUM", settings.buckets)
    sales_sql.close(path)


def test_read_only_connection_gets_functions_and_reads_views(tmp_path, settings):
    path = tmp_path / "x.duckdb"
    sales_sql.connect(path, settings=settings)
    sales_sql.close(path)
    ro = sales_sql.connect(path, read_only=True, settings=settings)
    assert ro.execute("SELECT count(*) FROM training_set").fetchone()[0] == 0
    with pytest.raises(duckdb.Error):
        ro.execute("CREATE TABLE t (x INT)")
    sales_sql.close(path)


def test_connect_and_queries_without_a_model_do_not_import_xgboost(tmp_path):
    # XGBoost (with the scikit-learn it imports) takes about 2 s to import: only predictions need it
    code = f"""import sys, sales_sql
con = sales_sql.connect({str(tmp_path / 'x.duckdb')!r})
con.sql("SELECT hash_features('1', '10001'), count(*) FROM invoices").fetchall()
print(sorted({{'xgboost', 'sklearn'}} & set(sys.modules)))"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_lifecycle_commands_that_do_not_train_do_not_import_xgboost():
    # promote, rollback, models and doctor import the registry (MLflow); XGBoost and scikit-learn only with retrain
    code = """import sys
from sales_sql import ops, registry
registry.promote, registry.rollback, registry.list_models, registry.GateRefused
print(sorted({'xgboost', 'sklearn'} & set(sys.modules)))
registry.retrain, registry.TrainingError
print(sorted({'xgboost', 'sklearn'} & set(sys.modules)))"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["[]", "['sklearn', 'xgboost']"], out


def test_lines_added_or_edited_by_hand_reach_history_at_the_next_connect_or_register(tmp_path, settings):
    path = tmp_path / "x.duckdb"
    sales_sql.connect(path, settings=settings)
    sales_sql.close(path)
    raw = duckdb.connect(str(path))  # by hand, without sales_sql
    raw.execute("""INSERT INTO invoices (sale_time, branch_id, invoice_number, item_code, quantity_sold, line_key,
                   source_file, source_line) VALUES ('2024-01-01', '1', 'A', '10001', 5, 1, 'f', 2)""")
    raw.close()
    history = "SELECT n, log_qty_mean FROM history WHERE kind = 'item' AND key = '10001'"
    con = sales_sql.connect(path, settings=settings)
    assert con.execute(history).fetchall() == [(1, pytest.approx(math.log(5)))]
    sales_sql.close(path)

    mine = duckdb.connect(str(path))  # the user's own connection: register again after editing
    sales_sql.register(mine, settings)
    mine.execute("UPDATE invoices SET quantity_sold = 12")
    sales_sql.register(mine, settings)
    assert mine.execute(history).fetchall() == [(1, pytest.approx(math.log(12)))]
    assert mine.execute("SELECT (predict_sales(DATE '2024-01-02', '1', '10001')).proba.high").fetchall() == [(1.0,)]
    mine.close()


def test_a_nan_price_written_by_hand_counts_as_unknown_and_an_infinite_date_is_left_out(tmp_path, settings):
    path = tmp_path / "x.duckdb"
    sales_sql.connect(path, settings=settings)
    sales_sql.close(path)
    raw = duckdb.connect(str(path))  # the loader rejects NaN; an UPDATE or INSERT by hand does not
    raw.execute("""INSERT INTO invoices (sale_time, branch_id, invoice_number, item_code, quantity_sold, unit_price,
                   line_key, source_file, source_line)
                   VALUES ('2024-01-01', '1', 'A', '10001', 5, 2.0, 1, 'f', 2),
                          ('2024-01-01', '1', 'B', '10001', 5, 'nan', 2, 'f', 3),
                          ('2024-01-02', '1', 'C', '10001', 5, 3.0, 3, 'f', 4),
                          ('infinity', '1', 'D', '10001', 5, 3.0, 4, 'f', 5)""")
    raw.close()
    con = sales_sql.connect(path, settings=settings)
    assert con.execute("SELECT price_mean FROM history WHERE kind = 'item' AND sale_day = DATE '2024-01-01'"
                       ).fetchall() == [(2.0,)]
    assert con.execute("SELECT unit_price, price_vs_item FROM training_set ORDER BY line_id").fetchall() == [
        (2.0, None), (None, None), (3.0, 1.5)]
    assert con.execute("SELECT max(sale_day) FROM history").fetchall()[0][0].isoformat() == "2024-01-02"
    sales_sql.close(path)
