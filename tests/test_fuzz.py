"""Hypothesis fuzzing of the SQL functions with hostile input: every row gets its documented answer, no query
fails because of one row, no process crashes."""
import datetime as dt
import math

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, settings as hsettings, strategies as st
from test_predict import ARGS, deploy, trained  # noqa: F401  (trained is a fixture)

import sales_sql
from sales_sql import serving
from sales_sql.training import CLASSES

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)  # DuckDB strings are valid UTF-8
KEY = st.one_of(st.none(), st.just(""), TEXT, st.sampled_from(["1", "10001", "12345"]), st.just("k" * 20_000))
DAY = st.one_of(st.none(), st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)).map(str), TEXT,
                st.sampled_from(["2024-03-01", "2024-02-30", "infinity", "-infinity", "99999-01-01", "2024-03-01 25:00"]))
PRICE = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -1.0, 1e308]))
ROW = st.tuples(DAY, KEY, KEY, PRICE, KEY)


@pytest.fixture(scope="module")
def fuzz_con(trained, tmp_path_factory):  # noqa: F811
    db, _, spec, _, booster = trained
    path = tmp_path_factory.mktemp("fuzz") / "f.duckdb"
    path.write_bytes(db.read_bytes())
    con = sales_sql.connect(path)
    deploy(con, booster, spec, 1)
    yield con
    sales_sql.close(path)


@given(st.lists(ROW, min_size=1, max_size=40))
@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_rows_get_their_documented_answers(fuzz_con, rows):
    table = pa.table({name: pa.array([r[i] for r in rows], t) for i, (name, t) in enumerate(
        [("sale_time", pa.string()), ("branch_id", pa.string()), ("item_code", pa.string()),
         ("unit_price", pa.float64()), ("customer_id", pa.string())])})
    cur = fuzz_con.cursor()
    cur.register("fuzz", table)
    out = cur.execute(f"""SELECT coalesce(TRY_CAST(sale_time AS TIMESTAMP) BETWEEN TIMESTAMP '0001-01-01'
                                          AND TIMESTAMP '9999-12-31 23:59:59.999999', false),
                                 coalesce(NOT isnan(unit_price), true), predict_sales({ARGS}), predict_sales_class({ARGS}),
                                 explain_sales_class({ARGS}) FROM fuzz""").fetchall()
    cur.close()
    assert len(out) == len(rows)
    for valid_day, valid_price, p, label, why in out:
        if not valid_day or not valid_price:  # a NaN price is given but no number: no answer, and the source says so
            source = "invalid_date" if not valid_day else "invalid_price"
            assert p == {"label": None, "proba": None, "source": source, "model_version": None}
            assert label is None and why is None
            continue
        assert p["source"] == "model" and p["model_version"] == 1 and p["label"] == label in CLASSES
        probs = list(p["proba"].values())
        assert all(math.isfinite(x) and 0 <= x <= 1 for x in probs) and abs(sum(probs) - 1) < 1e-5
        assert len(why) == serving.EXPLAIN_TOP and all(math.isfinite(e["contribution"]) for e in why)


CELL = st.one_of(st.none(), TEXT, st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
                 st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)), st.sampled_from(["", " ", "1e400", "NaN", "2024-13-01",
                                                                                   "12,5", '"', "\n"]))
GOOD = ["2024-03-01 10:00", "1", "INV1", "10001", "5", "2.5", "C1"]


@given(st.lists(st.tuples(*[CELL] * 7), min_size=1, max_size=15), st.booleans())
@hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_csv_is_loaded_with_counted_rejects_or_refused_whole(tmp_path, settings, rows, allow_rejects):
    import csv

    from sales_sql.loader import LoadError, load_file

    path = tmp_path / "fuzz.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Date", "BranchID", "InvoiceNumber", "ItemCode", "QuantitySold", "UnitPrice", "CustomerID"])
        w.writerow(GOOD)
        w.writerows(rows)
    con = sales_sql.connect(settings=settings)
    before = con.execute("SELECT count(*) FROM invoices").fetchall()[0][0]
    try:
        report = load_file(con, path, allow_rejects=allow_rejects, settings=settings)
    except LoadError as e:
        event("refused")
        assert not allow_rejects or "header" in str(e) or "column" in str(e), e
        assert str(path) in str(e) or "line" in str(e)
        assert con.execute("SELECT count(*) FROM invoices").fetchall()[0][0] == before
        assert con.execute("SELECT count(*) FROM load_log").fetchall()[0][0] == 0
    else:
        event(f"loaded, {'some' if report.rejected else 'no'} rejects")
        loaded = con.execute("SELECT count(*) FROM invoices").fetchall()[0][0]
        assert loaded == before + report.loaded >= 1
        assert report.loaded + report.duplicates + report.rejected == report.rows_read
        assert con.execute("SELECT count(*) FROM rejected_rows").fetchall()[0][0] == report.rejected
        # what loaded is typed and usable: predictions run on every loaded line
        out = con.execute("SELECT count(predict_sales_class(sale_time, branch_id, item_code, unit_price, "
                          "customer_id)) FROM invoices").fetchall()[0][0]
        assert out == loaded
    finally:
        con.close()


NUMBER = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**15, 10**15),
                   st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e308, -1e308]))


@given(st.lists(st.tuples(KEY, KEY), min_size=1, max_size=30), st.lists(NUMBER, max_size=50),
       st.lists(NUMBER, max_size=50), st.lists(st.one_of(st.none(), TEXT), max_size=50),
       st.lists(st.one_of(st.none(), TEXT), max_size=50))
@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_hash_and_drift_functions_answer_any_input(con, keys, xs, ys, cats_a, cats_b):
    """hash_features: a finite vector with at most 3 non-zero terms of +-1 per row; ks_drift / chi2_drift:
    finite statistics or NULLs (nothing to compare), never inf, NaN or an error."""
    cur = con.cursor()
    cur.register("k", pa.table({"b": pa.array([k[0] for k in keys], pa.string()),
                                "i": pa.array([k[1] for k in keys], pa.string())}))
    for (vec,) in cur.execute("SELECT hash_features(b, i) FROM k").fetchall():
        assert len(vec) == 20 and all(v in (-3, -2, -1, 0, 1, 2, 3) for v in vec) and sum(map(abs, vec)) <= 3
    floats = [None if x is None else float(x) for x in xs], [None if y is None else float(y) for y in ys]
    ks, chi = cur.execute("SELECT ks_drift(?::DOUBLE[], ?::DOUBLE[]), chi2_drift(?::VARCHAR[], ?::VARCHAR[])",
                          [*floats, cats_a, cats_b]).fetchall()[0]
    cur.close()
    for result in (ks, chi):
        values = [v for k, v in result.items() if k not in ("n_current", "n_baseline", "categories", "dof")]
        assert all(v is None for v in values) or all(v is not None and math.isfinite(v) for v in values), result
    usable = [x for x in floats[0] if x is not None and math.isfinite(x)]
    assert ks["n_current"] == len(usable)


def test_huge_lists_are_one_call(con):
    """Ten million values a side through ks_drift and two million categories through chi2_drift in one query."""
    ks, chi = con.execute("""SELECT ks_drift((SELECT list(random()) FROM range(10000000)),
                                             (SELECT list(random() + 0.01) FROM range(10000000))),
                                    chi2_drift((SELECT list((i % 1000)::VARCHAR) FROM range(2000000) t(i)),
                                               (SELECT list((i % 999)::VARCHAR) FROM range(2000000) t(i)))""").fetchall()[0]
    assert ks["n_current"] == ks["n_baseline"] == 10_000_000 and 0 < ks["statistic"] < 0.05
    assert chi["categories"] == 1000 and math.isfinite(chi["statistic"])
