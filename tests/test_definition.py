"""The one feature definition: the committed SQL is its rendering, a new statistic or key kind is one entry (the
training view and the prediction-time matrix stay equal bit for bit), and a definition the kernels cannot serve
makes predictions fall back with the cause in `source`, never fail."""
import dataclasses
import json
import logging
from unittest import mock

import numpy as np
import pytest
import xgboost as xgb
from test_lifecycle import make_db
from test_predict import deploy

import sales_sql
from conftest import ROOT
from sales_sql import lookups, serving
from sales_sql.definition import CALENDAR_SQL, FEATURES, RENDERED, KeyKind, Statistic
from sales_sql.lookups import to_matrix
from sales_sql.training import feature_spec, labels, xgb_params

ARGS = "sale_time, branch_id, item_code, unit_price, customer_id"


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
    # a new daily sum and two statistics over it (all days, and the last 7), for branch x item, item and a new
    # branch x customer kind
    sums = FEATURES.sums + (("n_medium", "count(*) FILTER (WHERE q > $low_max AND q <= $medium_max)", 1),)
    new = (Statistic("share_medium", "n_medium", "n", label="share MEDIUM"),
           Statistic("share_medium_7d", "n_medium", "n", over="7d", label="share MEDIUM in 7 days"))
    kinds = tuple(dataclasses.replace(k, stats=k.stats + ("share_medium", "share_medium_7d"))
                  if k.name in ("branch_item", "item") else k for k in FEATURES.kinds)
    kinds += (KeyKind("branch_customer", "bc", ("branch_id", "customer_id"), "branch x customer",
                      ("n", "share_high", "share_medium_7d")),)
    custom = with_definition(settings, sums=sums, statistics=FEATURES.statistics + new, kinds=kinds)
    old = make_db(tmp_path / "old", settings, lines=15_000, days=120)
    db = make_db(tmp_path, custom, lines=15_000, days=120)
    con = sales_sql.connect(db, settings=custom)
    table, spec, X, booster = trained_on(con, custom)
    assert {"bi_share_medium", "item_share_medium_7d", "bc_n", "bc_share_high", "bc_share_medium_7d"} <= set(
        spec["features"])
    assert not np.isnan(X[:, spec["features"].index("bc_share_medium_7d")]).all()
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
def test_a_definition_the_kernels_cannot_serve_falls_back_with_its_cause(tmp_path, settings, caplog, monkeypatch,
                                                                        change, cause):
    monkeypatch.setitem(CALENDAR_SQL, "week", "week(l.sale_day)")  # SQL the view computes and the kernels do not
    custom = with_definition(settings, **change)
    db = make_db(tmp_path, custom, lines=6_000, days=60)
    con = sales_sql.connect(db, settings=custom)
    _, spec, X, booster = trained_on(con, custom)  # the view serves it: SQL computes any DuckDB function
    from sales_sql.training import batches

    # and training reads its matrix from the view
    np.testing.assert_array_equal(np.concatenate([X for _, X, _ in batches(con, custom, spec, "true")]), X)
    deploy(con, booster, spec, 1)
    with caplog.at_level(logging.WARNING, logger="sales_sql"):
        rows = con.sql(f"SELECT predict_sales({ARGS}) AS p FROM training_set").fetchall()
    assert {r[0]["source"] for r in rows} == {serving.UNSERVABLE} and {r[0]["label"] for r in rows} <= {"LOW", "MEDIUM",
                                                                                                         "HIGH"}
    assert cause in caplog.text
    sales_sql.close(db)


def test_training_reads_the_kernels_matrix_which_equals_the_views(tmp_path, settings):
    import pyarrow as pa
    import pyarrow.compute as pc

    from sales_sql import training

    db = make_db(tmp_path, settings, lines=15_000, days=120)
    con = sales_sql.connect(db, settings=settings)
    data = training.load_dataset(con, settings)
    view = con.sql("SELECT * FROM training_set ORDER BY line_id").to_arrow_table()
    train = pc.less(view["sale_day"], pa.scalar(data.stop_from, pa.date32()))
    test = pc.greater_equal(view["sale_day"], pa.scalar(data.cutoff, pa.date32()))
    with mock.patch.object(training, "BATCH_ROWS", 1_000):  # several batches a slice
        for where, day, y, mask in (("sale_day < ?", data.stop_from, data.y_train, train),
                                    ("sale_day >= ?", data.cutoff, data.y_test, test)):
            got = list(training.batches(con, settings, data.spec, where, [day]))
            assert len(got) > 1
            np.testing.assert_array_equal(np.concatenate([X for _, X, _ in got]), to_matrix(view.filter(mask),
                                                                                             data.spec))
            np.testing.assert_array_equal(y, labels(view.filter(mask)))
    assert (data.dtrain.num_row(), data.dtest.num_row()) == (len(data.y_train), len(data.y_test))
    data.close()
    sales_sql.close(db)


def test_retrain_reads_a_file_whose_history_was_built_by_another_definition(tmp_path, settings):
    from sales_sql.training import prepare

    custom = with_definition(settings, kinds=FEATURES.kinds[:2], price_ratios=FEATURES.price_ratios[:2])
    db = make_db(tmp_path, custom, lines=6_000, days=60)  # history and training_set of two key kinds only
    data, _ = prepare(str(db), settings)  # opens for writing: both are rebuilt for the shipped definition
    assert data.spec == feature_spec(settings) and data.dtrain.num_col() == len(data.spec["features"])
    data.close()
    with sales_sql.db.opened(db, read_only=True, settings=settings) as con:
        assert con.execute("SELECT count(DISTINCT kind) FROM history").fetchone()[0] == len(FEATURES.kinds)
