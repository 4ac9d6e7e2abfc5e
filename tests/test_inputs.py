"""The five inputs, defined once (sales_sql/inputs.py): sale times with offsets converted line by line as the loader
converts them, a price that is present but no number answered as such (never as "no price") in SQL, and the pyfunc
refusing a bad line with the line and the value as sent."""
import dataclasses

import numpy as np
import pyarrow as pa
import pytest

import sales_sql
from sales_sql import inputs
from sales_sql.loader import load_file

ZONED = ["2025-03-30 00:30:00+00:00", "2025-03-30T03:30:00+02:00", "2025-10-26 01:30:00Z", "2025-10-26 01:30:00-05",
         "2025-06-30 23:59:59.5+05:30", "2025-06-30 12:00:00"]


@pytest.mark.parametrize("zone", ["UTC", "Europe/London", "Asia/Tokyo"])
def test_times_with_mixed_offsets_become_the_loaders_wall_clock_times(tmp_path, settings, zone):
    zoned = dataclasses.replace(settings, time_zone=zone)
    csv = tmp_path / "zoned.csv"
    csv.write_text("Date,BranchID,InvoiceNumber,ItemCode,QuantitySold\n" +
                   "".join(f"{t},1,A{i},1000{i},2\n" for i, t in enumerate(ZONED)))
    con = sales_sql.connect(settings=zoned)
    load_file(con, csv, settings=zoned)
    loaded = [r[0] for r in con.execute("SELECT sale_time FROM invoices ORDER BY line_id").fetchall()]
    con.close()
    assert inputs.sale_times(pa.array(ZONED), zone).to_pylist() == loaded


def test_what_is_no_time_is_null_and_keys_read_as_the_loader_reads_them():
    assert inputs.sale_times(pa.array(["soon", None, "", "2025-13-01"]), "UTC").null_count == 4
    assert inputs.sale_times(pa.array([12345]), "UTC").null_count == 1
    assert inputs.keys(pa.array([17850.0, 1.5, None])).to_pylist() == ["17850", "1.5", None]
    assert inputs.keys(pa.array([7, None])).to_pylist() == ["7", None]


def test_a_price_given_but_no_number_is_nan_and_a_missing_one_null():
    cast = inputs.prices(pa.array(["2.5", " 3 ", "cheap", "", None]))
    assert cast.to_pylist()[:2] == [2.5, 3.0] and cast[4].as_py() is None
    assert inputs.not_a_price(cast).tolist() == \
        [False, False, True, True, False]
    assert inputs.prices(pa.array(["2.5", None, "1e3"])).to_pylist() == [2.5, None, 1000.0]  # Arrow's cast, at once
    flags = inputs.prices(pa.array([True, None]))
    assert inputs.not_a_price(flags).tolist() == [True, False]


def test_sql_answers_a_text_price_with_invalid_price_never_as_no_price(con):
    rows = con.execute("""
        SELECT price, p.label, p.source FROM (
          SELECT price, predict_sales(DATE '2025-06-30', '1', '10001', price) AS p
          FROM (VALUES ('cheap'), (''), ('2.5'), (NULL)) v(price))""").fetchall()
    by_price = {price: (label, source) for price, label, source in rows}
    assert by_price["cheap"] == (None, "invalid_price") and by_price[""] == (None, "invalid_price")
    assert by_price["2.5"][1] == by_price[None][1] == "fallback:no_model" and by_price["2.5"][0] is not None
    assert con.execute("SELECT predict_sales_class(DATE '2025-06-30', '1', '10001', 'cheap')").fetchall() == [(None,)]
    # a NaN price in a DOUBLE column is no price either; the class of a number given as text is the number's
    assert con.execute("SELECT predict_sales(DATE '2025-06-30', '1', '10001', 'NaN'::DOUBLE).source").fetchall() == \
        [("invalid_price",)]
    assert con.execute("SELECT predict_sales_proba(DATE '2025-06-30', '1', '10001', '2.5') = "
                       "predict_sales_proba(DATE '2025-06-30', '1', '10001', 2.5)").fetchall() == [(True,)]


def test_the_pyfunc_refuses_a_bad_line_naming_it_and_the_value_as_sent():
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from sales_sql.pyfunc import _column

    good = {"Date": "2025-06-30", "BranchID": "1", "ItemCode": "10001"}
    for rows, field, message in (
            ([good, {**good, "Date": "soon"}], "sale_time", 'Date "soon" on line 2 is not a sale time'),
            ([good, {**good, "Date": None}], "sale_time", "Date null on line 2"),
            ([{**good, "Date": 12345}], "sale_time", "Date 12345 on line 1"),
            ([good, {**good, "UnitPrice": "cheap"}], "unit_price", 'UnitPrice "cheap" on line 2 is not a price'),
            ([{**good, "UnitPrice": True}], "unit_price", "UnitPrice true on line 1")):
        with pytest.raises(MlflowException, match=message):
            _column(pd.DataFrame(rows), field, "UTC", refuse=True)
        # in Python and Spark (spark_udf) the line is cast as SQL casts it (NULL time, NaN price: answered as
        # invalid_date or invalid_price), so that a query never dies on one line
        out = _column(pd.DataFrame(rows), field, "UTC", refuse=False)
        assert (out.null_count if field == "sale_time" else int(np.isnan(out.fill_null(0.0).to_numpy()).sum())) == 1
    mixed = pd.DataFrame([{**good, "Date": "2025-03-30T00:30:00+00:00"}, {**good, "Date": "2025-03-30T03:30:00+02:00"},
                          good])
    assert _column(mixed, "sale_time", "UTC").to_pylist() == inputs.sale_times(pa.array(mixed["Date"]), "UTC").to_pylist()
    prices = pd.DataFrame([{**good, "UnitPrice": 2.5}, {**good, "UnitPrice": "2.5"}, good])
    assert _column(prices, "unit_price", "UTC").to_pylist() == [2.5, 2.5, None]
