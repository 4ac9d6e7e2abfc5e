"""predict_sales / predict_sales_class / predict_sales_proba / explain_sales_class, the fallback and bulk scoring."""
import datetime as dt
import json
import logging
import shutil

import duckdb
import numpy as np
import pyarrow as pa
import pytest
import xgboost as xgb
from conftest import run_cli
from hypothesis import given, settings as hsettings, strategies as st
from test_lifecycle import make_db

import sales_sql
from sales_sql import duck, lookups, scoring, serving
from sales_sql.definition import FEATURES, FIRST_DAY, LAST_DAY, readable
from sales_sql.lookups import to_matrix
from sales_sql.metrics import WEIGHTS
from sales_sql.training import CLASSES, feature_spec, labels, xgb_params

ARGS = "sale_time, branch_id, item_code, unit_price, customer_id"


def deploy(con, booster, spec, version):
    """What promote writes into the file, without MLflow: the test's booster as the active deployment."""
    con.execute("UPDATE deployed_models SET status = 'retired' WHERE status = 'active'")
    con.execute("""INSERT INTO deployed_models (model_name, version, run_id, booster, feature_spec, metrics, status)
                   VALUES ('sales_sql_class', ?, 'test', ?, ?, '{}', 'active')""",
                [version, bytes(booster.save_raw("ubj")), json.dumps(spec)])
    duck.invalidate()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small demo database, its training_set in order, and a quick booster trained on all of it."""
    from sales_sql.config import load_settings

    settings = load_settings()
    folder = tmp_path_factory.mktemp("predict")
    db = make_db(folder, settings, lines=20_000, days=150)
    con = sales_sql.connect(db, settings=settings)
    table = con.sql("SELECT * FROM training_set ORDER BY line_id").to_arrow_table()
    spec = feature_spec(settings)
    X = to_matrix(table, spec)
    booster = xgb.train(xgb_params(settings) | {"max_depth": 4}, xgb.DMatrix(X, labels(table),
                        feature_names=spec["features"]), 15)
    sales_sql.close(db)
    return db, table, spec, X, booster


@pytest.fixture
def db(trained, tmp_path, settings):
    """A copy of the trained database with no model deployed, open read-write."""
    path = tmp_path / "p.duckdb"
    shutil.copy(trained[0], path)
    con = sales_sql.connect(path, settings=settings)
    con.execute("SET enable_progress_bar = false")
    yield path, con
    sales_sql.close(path)


@pytest.mark.parametrize("split_rows", [lookups.SPLIT_ROWS, 1000], ids=["one thread", "two threads"])
def test_prediction_time_features_equal_the_training_view_on_every_line(trained, settings, monkeypatch, split_rows):
    db, table, spec, X, _ = trained
    monkeypatch.setattr(lookups, "SPLIT_ROWS", split_rows)  # bulk batches compute their halves side by side
    con = sales_sql.connect(db, read_only=True, settings=settings)
    batch = lookups.Batch(lookups.HistoryIndex.of(FEATURES, con), *[table[c] for c in ARGS.split(", ")])
    Y = batch.matrix(spec)
    sales_sql.close(db)
    assert X.shape == Y.shape and X.shape[0] > 10_000
    np.testing.assert_array_equal(X, Y)  # NaN in the same places, every other value bitwise equal


def test_prediction_time_features_equal_the_training_view_on_uci(uci_db, settings):
    """Real data: every usable UCI line (about a million), in 2048-row batches as DuckDB hands them over."""
    path = uci_db
    con = sales_sql.connect(path, read_only=True, settings=settings)
    spec = feature_spec(settings)
    index = lookups.HistoryIndex.of(FEATURES, con)
    reader = con.sql("SELECT * FROM training_set ORDER BY line_id").to_arrow_reader(2048 * 50)
    lines = 0
    for rb in reader:
        t = pa.Table.from_batches([rb])
        X = to_matrix(t, spec)
        for start in range(0, t.num_rows, 2048):
            part = t.slice(start, 2048)
            Y = lookups.Batch(index, *[part[c] for c in ARGS.split(", ")]).matrix(spec)
            np.testing.assert_array_equal(X[start:start + 2048], Y)
        lines += t.num_rows
    sales_sql.close(path)
    assert lines > 1_000_000


@pytest.mark.parametrize("weights", [None, [1.0, 0.5, 1.5]], ids=["argmax", "decision weights"])
@pytest.mark.parametrize("compiled", [True, False], ids=["compiled trees", "xgboost predictor"])
def test_predictions_equal_the_boosters_own(trained, db, settings, compiled, weights, monkeypatch):
    _, table, spec, X, booster = trained
    path, con = db
    if not compiled:  # what answers when the trees cannot be compiled (trees.py)
        monkeypatch.setattr(serving.Trees, "compile", lambda booster: (None, "not compiled in this test"))
    deploy(con, booster, spec if weights is None else spec | {WEIGHTS: weights}, 1)
    rows = con.sql(f"""SELECT predict_sales({ARGS}) AS p, predict_sales_class({ARGS}) AS c,
                              predict_sales_proba({ARGS}) AS q
                       FROM training_set ORDER BY line_id""").fetchall()
    expected = booster.inplace_predict(X)
    got = np.array([[r[0]["proba"]["low"], r[0]["proba"]["medium"], r[0]["proba"]["high"]] for r in rows])
    np.testing.assert_array_equal(got, expected)  # bit for bit (float32 in float64)
    assert (serving.Predictor(serving.DatabaseFile(con), settings).model().trees is not None) == compiled
    # the class: the highest probability, times its decision weight when the version's retrain chose them
    classes = expected.argmax(1) if weights is None else (expected * np.float32(weights)).argmax(1)
    assert (classes != expected.argmax(1)).any() == (weights is not None)  # the weights change some answers
    assert [r[1] for r in rows] == [CLASSES[i] for i in classes]
    assert [r[0]["label"] for r in rows] == [r[1] for r in rows]
    assert all(r[2] == r[0]["proba"] for r in rows)
    assert {(r[0]["source"], r[0]["model_version"]) for r in rows} == {("model", 1)}


def test_checked_trees_serve_without_xgboost(trained, db, settings):
    """Once a model's compiled trees were checked against XGBoost in a file (a mark in FILE.index/), later processes
    serve it without importing XGBoost, with the same bits; a changed booster is checked again."""
    import subprocess
    import sys

    _, table, spec, X, booster = trained
    path, con = db
    deploy(con, booster, spec, 1)
    first = serving.Predictor(serving.DatabaseFile(con), settings).model()
    assert first.booster is not None and first.trees is not None
    assert len(list(path.parent.glob("p.duckdb.index/compiled-*"))) == 1
    duck.invalidate()
    second = serving.Predictor(serving.DatabaseFile(con), settings).model()
    assert second.booster is None and second.trees is not None
    got = con.sql(f"SELECT predict_sales_proba({ARGS}) AS q FROM training_set ORDER BY line_id").fetchall()
    np.testing.assert_array_equal(np.array([[r[0]["low"], r[0]["medium"], r[0]["high"]] for r in got]),
                                  booster.inplace_predict(X))
    explained = con.sql(f"SELECT explain_sales_class({ARGS}) FROM training_set ORDER BY line_id LIMIT 5").fetchall()
    assert all(len(r[0]) == 5 for r in explained)  # explain loads the booster it needs
    sales_sql.close(path)
    code = (f"import sys, sales_sql; con = sales_sql.connect({str(path)!r}, read_only=True); "
            f"print(con.sql(\"SELECT count(DISTINCT p.source) FROM (SELECT predict_sales({ARGS}) AS p "
            "FROM invoices)\").fetchall()[0][0], 'xgboost' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "False"]
    con = sales_sql.connect(path, settings=settings)
    con.execute("UPDATE deployed_models SET booster = booster[1:100]")  # other bytes: no mark, XGBoost reads them
    duck.invalidate()
    assert serving.Predictor(serving.DatabaseFile(con), settings).model().source == serving.UNREADABLE


def test_optional_arguments_and_argument_types(trained, db):
    _, _, spec, _, booster = trained
    path, con = db
    deploy(con, booster, spec, 1)
    three, five_nulls, ts, text = con.execute("""SELECT
        predict_sales(DATE '2024-03-01', '1', '10001'),
        predict_sales(DATE '2024-03-01', '1', '10001', NULL, NULL),
        predict_sales(TIMESTAMP '2024-03-01 17:30', 1, 10001),
        predict_sales('2024-03-01', '1', '10001')""").fetchall()[0]
    assert three == five_nulls == ts == text
    assert three["source"] == "model"


def test_explanations_name_features_readably_in_order_of_weight(trained, db):
    _, table, spec, X, booster = trained
    path, con = db
    decision = np.float32([1.0, 3.0, 0.5])  # the class explained is the one answered: under the decision weights
    deploy(con, booster, spec | {WEIGHTS: decision.tolist()}, 1)
    rows = con.sql(f"SELECT explain_sales_class({ARGS}) FROM training_set ORDER BY line_id LIMIT 50").fetchall()
    contribs = booster.predict(xgb.DMatrix(X[:50], feature_names=spec["features"]), pred_contribs=True)
    names = {readable(FEATURES, f): j for j, f in enumerate(spec["features"])}
    changed = 0
    for i, (entries,) in enumerate(rows):
        assert len(entries) == serving.EXPLAIN_TOP
        weights = [abs(e["contribution"]) for e in entries]
        assert weights == sorted(weights, reverse=True)
        label = int((booster.inplace_predict(X[i:i + 1]) * decision).argmax())
        changed += label != int(booster.inplace_predict(X[i:i + 1]).argmax())
        for e in entries:
            assert "_" not in e["feature"]
            if e["feature"] in names:
                assert e["contribution"] == pytest.approx(float(contribs[i, label, names[e["feature"]]]), abs=1e-6)
    assert changed > 0, "no line's class moved with the weights: the test shows nothing"


def expected_heuristic(table):
    """The documented fallback, from the training view's own columns: branch x item shares, else item's, else LOW."""
    out = []
    for r in table.select(["bi_share_low", "bi_share_high", "item_share_low", "item_share_high"]).to_pylist():
        for low, high in ((r["bi_share_low"], r["bi_share_high"]), (r["item_share_low"], r["item_share_high"])):
            if low is not None:
                p = np.float32([low, max(0.0, 1 - np.float32(low) - np.float32(high)), high])
                out.append(CLASSES[int(p.argmax())])
                break
        else:
            out.append("LOW")
    return out


def test_no_model_deployed_gives_the_heuristic_and_says_so(trained, db, caplog):
    _, table, *_ = trained
    path, con = db
    duck.invalidate()
    with caplog.at_level(logging.WARNING, logger="sales_sql"):
        rows = con.sql(f"SELECT predict_sales({ARGS}) FROM training_set ORDER BY line_id").fetchall()
        con.sql(f"SELECT predict_sales_class({ARGS}) FROM training_set").fetchall()
    assert {r[0]["source"] for r in rows} == {serving.NO_MODEL}
    assert {r[0]["model_version"] for r in rows} == {None}
    assert [r[0]["label"] for r in rows] == expected_heuristic(table)
    warnings = [r for r in caplog.records if "fallback heuristic" in r.getMessage()]
    assert len(warnings) == 1 and "sales-sql promote" in warnings[0].getMessage()


@pytest.mark.parametrize("damage, source", [
    ("UPDATE deployed_models SET booster = 'not a model'::BLOB", serving.UNREADABLE),
    ("UPDATE deployed_models SET booster = booster[1:100]", serving.UNREADABLE),
    ("UPDATE deployed_models SET feature_spec = json_object('features', 3)", serving.UNREADABLE),
    ("UPDATE deployed_models SET feature_spec = json_merge_patch(feature_spec, '{\"buckets\": 16}')", serving.MISMATCH),
    ("UPDATE deployed_models SET feature_spec = json_merge_patch(feature_spec, '{\"kernel_format\": 1}')",
     serving.MISMATCH),
])
def test_a_broken_or_mismatched_deployment_falls_back_without_failing(trained, db, damage, source):
    _, table, spec, _, booster = trained
    path, con = db
    deploy(con, booster, spec, 1)
    con.execute(damage)
    duck.invalidate()
    rows = con.sql(f"SELECT predict_sales({ARGS}).label, predict_sales({ARGS}).source FROM training_set "
                   "ORDER BY line_id").fetchall()
    assert {s for _, s in rows} == {source}
    assert [c for c, _ in rows] == expected_heuristic(table)


def test_a_promote_in_the_same_process_switches_versions_without_registering_again(trained, db):
    _, _, spec, X, booster = trained
    path, con = db
    q = f"SELECT predict_sales({ARGS}) FROM training_set ORDER BY line_id LIMIT 200"
    deploy(con, booster, spec, 1)
    first = con.sql(q).fetchall()
    other = xgb.train({**xgb_params(sales_sql.load_settings()), "max_depth": 2}, xgb.DMatrix(X[:5000], np.arange(5000) % 3,
                      feature_names=spec["features"]), 5)
    deploy(con, other, spec, 2)
    second = con.sql(q).fetchall()
    assert {r[0]["model_version"] for r in first} == {1} and {r[0]["model_version"] for r in second} == {2}
    np.testing.assert_allclose([list(r[0]["proba"].values()) for r in second], other.inplace_predict(X[:200]),
                               atol=1e-6)


def test_odd_keys_and_dates_get_the_documented_answers(trained, db):
    _, _, spec, _, booster = trained
    path, con = db
    deploy(con, booster, spec, 1)
    rows = con.sql("""SELECT b, i, d, predict_sales(d, b, i, 2.5, c) AS p FROM (VALUES
            (DATE '2024-03-01', NULL, NULL, NULL), (DATE '2024-03-01', '', '', ''),
            (DATE '2024-03-01', 'Zürich-店舗', '😀 ', 'ß'), (DATE '2024-03-01', repeat('x', 100000), '10001', '1'),
            (DATE '1900-01-01', '1', '10001', NULL), (DATE '2100-01-01', '1', '10001', NULL),
            (DATE '0001-01-01', '1', '10001', NULL), (DATE '9999-12-31', '1', '10001', NULL)) v(d, b, i, c)
        """).fetchall()
    assert all(r[3]["source"] == "model" and r[3]["label"] in CLASSES for r in rows)
    invalid = con.sql("""SELECT predict_sales(d, '1', '10001') FROM (VALUES (NULL), ('not a date'), ('2024-02-30'),
                         ('infinity'), ('-infinity')) v(d)""").fetchall()
    assert [r[0] for r in invalid] == [{"label": None, "proba": None, "source": "invalid_date",
                                        "model_version": None}] * 5
    assert con.execute("SELECT explain_sales_class(NULL, '1', '2')").fetchall()[0][0] is None


def test_history_is_as_of_the_prediction_day(trained, db):
    """Far after the data, a key's features are its latest history; before the data there is none."""
    _, table, spec, _, booster = trained
    path, con = db
    key = con.execute("""SELECT branch_id, item_code, max(sale_day) FROM usable_lines GROUP BY ALL
                         ORDER BY count(*) DESC LIMIT 1""").fetchall()[0]
    index = lookups.HistoryIndex.of(FEATURES, con)

    def features(day):
        return lookups.Batch(index, pa.array([dt.date.fromisoformat(day)]), pa.array([key[0]]), pa.array([key[1]]),
                             pa.array([None], pa.float64()), pa.array([None], pa.string())).matrix(spec)

    late, early = features("2100-01-01"), features("1900-01-01")
    n_total = con.execute("SELECT count(*) FROM usable_lines WHERE branch_id = ? AND item_code = ?",
                          list(key[:2])).fetchall()[0][0]
    bi_n = spec["features"].index("bi_n")
    assert late[0, bi_n] == n_total
    assert np.isnan(early[0, bi_n])


@given(st.integers(min_value=FIRST_DAY, max_value=LAST_DAY))
@hsettings(max_examples=300, deadline=None)
def test_calendar_features_match_the_calendar(day):
    spec = {"features": ["day_of_week", "day_of_month", "month", "day_of_year"], "buckets": 20}
    b = lookups.Batch(lookups.HistoryIndex.of(FEATURES), pa.array([day], pa.int32()).cast(pa.date32()), pa.array(["1"]),
                      pa.array(["2"]), pa.array([1.0]), pa.array(["3"]))
    d = dt.date(1970, 1, 1) + dt.timedelta(days=day)
    assert b.matrix(spec)[0].tolist() == [d.isoweekday(), d.day, d.month, d.timetuple().tm_yday]


def test_functions_work_on_a_connection_the_user_made(trained, db, settings):
    _, _, spec, _, booster = trained
    path, con = db
    deploy(con, booster, spec, 3)
    sales_sql.close(path)
    mine = duckdb.connect(str(path), read_only=True)
    sales_sql.register(mine, settings)
    label, version = mine.execute("SELECT predict_sales_class(DATE '2024-03-01', '1', '10001'), "
                                  "predict_sales(DATE '2024-03-01', '1', '10001').model_version").fetchall()[0]
    assert label in CLASSES and version == 3
    mine.close()


def test_bulk_scoring_writes_a_table_equal_to_the_sql_functions(trained, db):
    _, _, spec, _, booster = trained
    path, con = db
    deploy(con, booster, spec, 1)
    sales_sql.close(path)
    where = "sale_time >= DATE '2024-04-01'"
    out = run_cli("predict", path, "--where", where, "--into", "april on", "--batch-rows", "3000")
    assert "predictions to april on from model v1" in out.stdout
    con = sales_sql.connect(path)
    bulk = con.sql('SELECT * FROM "april on" ORDER BY line_id').fetchall()
    done = [int(line.split()[1].replace(",", "")) for line in out.stderr.splitlines() if line.startswith("scored")]
    assert done == [*range(3000, len(bulk), 3000), len(bulk)]  # progress after each batch of 3000
    sql = con.sql(f"""SELECT line_id, p.label, p.proba.low, p.proba.medium, p.proba.high, p.source, p.model_version
                      FROM (SELECT line_id, predict_sales(sale_time, branch_id, item_code, unit_price, customer_id) p
                            FROM invoices WHERE {where}) ORDER BY line_id""").fetchall()
    assert len(bulk) == con.execute(f"SELECT count(*) FROM invoices WHERE {where}").fetchall()[0][0] > 0
    assert [r[:2] + r[5:] for r in bulk] == [r[:2] + r[5:] for r in sql]
    np.testing.assert_allclose([r[2:5] for r in bulk], [r[2:5] for r in sql], atol=1e-6)


@pytest.mark.parametrize("args, message", [
    (["--where", "1=1; DROP TABLE invoices"], "is not a filter expression"),
    (["--where", "1=1); DROP TABLE invoices; SELECT (1"], "must be one filter expression"),
    (["--where", "1=1) UNION ALL (SELECT 1"], "--where"),
    (["--where", "no_such_column > 1"], "does not work on invoices"),
    (["--into", "invoices"], "already exists"),
    (["--batch-rows", "0"], "--batch-rows 0 must be at least 1"),
])
def test_bulk_scoring_refuses_bad_input_and_changes_nothing(db, args, message):
    path, con = db
    before = con.execute("SELECT count(*) FROM invoices").fetchall()[0][0]
    sales_sql.close(path)
    full = ["--into", "x", *args] if "--into" not in args else args
    proc = run_cli("predict", path, *full, check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    con = sales_sql.connect(path)
    assert con.execute("SELECT count(*) FROM invoices").fetchall()[0][0] == before
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'x'").fetchall()[0][0] == 0


@given(st.lists(st.integers(min_value=0, max_value=40), max_size=12), st.integers(min_value=1, max_value=50))
def test_batches_of_cuts_the_lines_into_batches_of_exactly_the_size_asked(sizes, rows):
    """DuckDB's reader ends a batch at each row group; batches_of joins and cuts them to `rows` lines, in order."""
    start = np.cumsum([0, *sizes])
    reader = pa.RecordBatchReader.from_batches(
        pa.schema([("line_id", pa.int64())]),
        [pa.record_batch([pa.array(np.arange(a, b))], names=["line_id"]) for a, b in zip(start, start[1:])])
    out = list(scoring.batches_of(reader, rows))
    total = int(start[-1])
    assert [b.num_rows for b in out] == [rows] * (total // rows) + ([total % rows] if total % rows else [])
    assert np.concatenate([b.column(0).to_numpy() for b in out] or [np.zeros(0, np.int64)]).tolist() == \
        list(range(total))
