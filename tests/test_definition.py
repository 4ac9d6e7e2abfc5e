"""The one feature definition: the committed SQL is its rendering, a new statistic or key kind is one entry (the
training view and the prediction-time matrix stay equal bit for bit), and a definition the kernels cannot serve
makes predictions fall back with the cause in `source`, never fail."""
import dataclasses
import json
import logging

import numpy as np
import pytest
import xgboost as xgb
from test_lifecycle import make_db
from test_predict import deploy

import sales_sql
from conftest import ROOT
from sales_sql import lookups, serving
from sales_sql.definition import FEATURES, RENDERED, KeyKind, Statistic
from sales_sql.training import feature_spec, labels, to_matrix, xgb_params

ARGS = "sale_day, branch_id, item_code, unit_price, customer_id"


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_the_committed_sql_is_the_rendering_of_the_definition(name):
    committed = (ROOT / "sql" / f"{name}.sql").read_text()
    assert committed == RENDERED[name](FEATURES), f"sql/{name}.sql differs from sales_sql/definition.py: run `make sql`"


def test_the_spec_holds_the_definition_not_the_sql_text(settings):
    spec = feature_spec(settings)
    assert spec["definition"] == json.loads(json.dumps(FEATURES.as_dict()))
    assert spec["features"] == FEATURES.features(settings.buckets) and "feature_sql_sha256" not in spec


def with_definition(settings, **changes):
    return dataclasses.replace(settings, definition=dataclasses.replace(FEATURES, **changes))


def trained_on(con, settings):
    """training_set in line order, its spec and matrix, and a quick booster trained on it."""
    table = con.sql("SELECT * FROM training_set ORDER BY line_id").to_arrow_table()
    spec = feature_spec(settings)
    X = to_matrix(table, spec)
    booster = xgb.train(xgb_params(settings) | {"max_depth": 3}, xgb.DMatrix(X, labels(table)), 8)
    return table, spec, X, booster


def test_a_new_statistic_and_key_kind_are_one_entry_each(tmp_path, settings):
    # the previous selling day's lines and mean log quantity, for branch x item, item and a new branch x customer kind
    day_stats = (Statistic("day_n", "n", over="day", label="lines that day"),
                 Statistic("day_log_qty_mean", "sum_log_q", "n", over="day", label="that day's mean log quantity"))
    kinds = tuple(dataclasses.replace(k, stats=k.stats + ("day_n", "day_log_qty_mean"))
                  if k.name in ("branch_item", "item") else k for k in FEATURES.kinds)
    kinds += (KeyKind("branch_customer", "bc", ("branch_id", "customer_id"), "branch x customer",
                      ("n", "share_high", "day_log_qty_mean")),)
    custom = with_definition(settings, statistics=FEATURES.statistics + day_stats, kinds=kinds)
    old = make_db(tmp_path / "old", settings, lines=15_000, days=120)
    db = make_db(tmp_path, custom, lines=15_000, days=120)
    con = sales_sql.connect(db, settings=custom)
    table, spec, X, booster = trained_on(con, custom)
    assert {"bi_day_n", "item_day_log_qty_mean", "bc_n", "bc_share_high", "bc_day_log_qty_mean"} <= set(spec["features"])
    assert not np.isnan(X[:, spec["features"].index("bc_day_log_qty_mean")]).all()
    batch = lookups.Batch(lookups.HistoryIndex.of(custom.definition, con), *[table[c] for c in ARGS.split(", ")])
    np.testing.assert_array_equal(batch.matrix(spec), X)  # the view and the kernels, bit for bit

    deploy(con, booster, spec, 1)
    rows = con.sql(f"SELECT predict_sales({ARGS}) AS p FROM training_set ORDER BY line_id").fetchall()
    assert {r[0]["source"] for r in rows} == {serving.MODEL}
    np.testing.assert_array_equal(np.array([[r[0]["proba"][c] for c in ("low", "medium", "high")] for r in rows]),
                                  booster.inplace_predict(X))
    sales_sql.close(db)

    # the model trained on the custom definition, in a file served with the shipped one: a real change falls back
    other = sales_sql.connect(old, settings=settings)
    deploy(other, booster, spec, 1)
    assert other.execute("SELECT predict_sales(DATE '2024-03-01', '1', '10001').source").fetchone()[0] == serving.MISMATCH
    sales_sql.close(old)


@pytest.mark.parametrize("change, cause", [
    ({"calendar": FEATURES.calendar + (("week_of_year", "week"),)}, "calendar functions ['week']"),
    ({"kinds": FEATURES.kinds + (KeyKind("invoice", "inv", ("invoice_number",), "invoice", ("n",)),)},
     "key kind 'invoice' has columns ('invoice_number',)"),
])
def test_a_definition_the_kernels_cannot_serve_falls_back_with_its_cause(tmp_path, settings, caplog, change, cause):
    custom = with_definition(settings, **change)
    db = make_db(tmp_path, custom, lines=6_000, days=60)
    con = sales_sql.connect(db, settings=custom)
    _, spec, _, booster = trained_on(con, custom)  # the view serves it: SQL computes any DuckDB function
    deploy(con, booster, spec, 1)
    with caplog.at_level(logging.WARNING, logger="sales_sql"):
        rows = con.sql(f"SELECT predict_sales({ARGS}) AS p FROM training_set").fetchall()
    assert {r[0]["source"] for r in rows} == {serving.UNSERVABLE} and {r[0]["label"] for r in rows} <= {"LOW", "MEDIUM",
                                                                                                         "HIGH"}
    assert cause in caplog.text
    sales_sql.close(db)
