"""sales_sql on Apache Spark (local[2]): the same views, functions, models and drift as DuckDB's, on the same lines.

Marked `spark` and `slow` (`pytest -m spark` runs them alone); they skip, saying so, where Java is missing."""
import dataclasses
import datetime as dt
import json
import shlex
import shutil
import sys

import numpy as np
import pyarrow as pa
import pytest

from conftest import ROOT, run_cli, run_here
from sales_sql import close, connect
from sales_sql.demo import generate, write
from sales_sql.loader import load_file

pytestmark = [pytest.mark.spark, pytest.mark.slow]

if shutil.which("java") is None:
    pytest.skip("Spark needs Java 17 or newer: install a JDK (e.g. apt install openjdk-17-jre-headless) and put "
                "`java` on PATH", allow_module_level=True)
engine = pytest.importorskip("sales_sql.spark", reason="pyspark is not installed: pip install 'sales_sql[spark]'")

QUICK = {"num_boost_round": 40, "early_stopping_rounds": 10, "max_depth": 4, "checkpoint_every": 20}
CUTOFF = "2024-06-01"
ARGS = "sale_time, branch_id, item_code, unit_price, customer_id"
SCALE_OUT_DOC = (ROOT / "docs" / "scale-out.md").read_text()


@pytest.fixture(scope="module")
def work(tmp_path_factory, migrated_store, settings):
    """A demo database with a DuckDB-trained version in production, a copy without a model, its export, and the
    MLflow store they share (MLFLOW_TRACKING_URI for the module)."""
    tmp = tmp_path_factory.mktemp("spark")
    shutil.copy(migrated_store, tmp / "mlflow.db")
    quick = dataclasses.replace(settings, **QUICK)
    (tmp / "quick.toml").write_text("[training]\n" + "".join(f"{k} = {v}\n" for k, v in QUICK.items()))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        db = tmp / "shop.duckdb"
        data = write(generate(lines=20_000, days=200), tmp / "inv.parquet")
        load_file(connect(db, settings=settings), data, settings=settings)
        close(db)
        shutil.copy(db, tmp / "empty.duckdb")  # the same lines, no model deployed
        from sales_sql.registry import promote, retrain

        trained = retrain(str(db), quick, tmp / "models", cutoff=CUTOFF, progress=False)
        promote(str(db), quick, trained.version, models_dir=tmp / "models")
        run_cli("export", db, tmp / "export")
        yield {"tmp": tmp, "db": db, "empty": tmp / "empty.duckdb", "export": tmp / "export", "quick": quick,
               "duckdb_version": trained.version, "duckdb_f1": trained.metrics["macro_f1"]}


@pytest.fixture(scope="module")
def spark(work, settings):
    # (2 shuffle partitions: the demo's few lines, two cores)
    session = engine.session("local[2]", **{"spark.sql.shuffle.partitions": "2"})
    engine.create_views(session, work["export"], settings)
    yield session
    engine.stop(session)


def duck_table(db, sql, settings):
    con = connect(db, read_only=True, settings=settings)
    try:
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()
        close(db)


def assert_same(duck: pa.Table, spark: pa.Table):
    """Column for column, value for value: numbers as float64 (NaN = NaN, NULL = NULL), the rest as Python."""
    assert duck.column_names == spark.column_names and duck.num_rows == spark.num_rows
    for name in duck.column_names:
        a, b = duck[name].combine_chunks(), spark[name].combine_chunks()
        if pa.types.is_integer(a.type) or pa.types.is_floating(a.type) or pa.types.is_decimal(a.type):
            a, b = a.cast(pa.float64()), b.cast(pa.float64())
            assert a.is_null().equals(b.is_null()), name
            x, y = a.fill_null(0).to_numpy(), b.fill_null(0).to_numpy()
            assert np.array_equal(x, y, equal_nan=True), (name, np.flatnonzero(~((x == y) | np.isnan(x)))[:5])
        else:
            assert a.to_pylist() == b.to_pylist(), name


def test_spark_history_and_training_set_equal_duckdb_exactly(work, spark, settings):
    """Spark's own history (computed from the invoices, as for any Parquet of invoices that sales-sql export did not
    write: here a DataFrame of the export's) and the training_set over it. The module's views read the export's
    history instead (the next test), and the join-path tests score over it."""
    order = "ORDER BY kind, key, sale_day"
    duck = duck_table(work["db"], "FROM training_set ORDER BY line_id", settings)
    assert duck["bi_n"].null_count < duck.num_rows
    try:
        said = engine.create_views(spark, spark.read.parquet(str(work["export"] / "invoices")), settings)
        assert said == "computed from the invoices"
        assert all("/invoices/" in f for f in spark.table("history").inputFiles())
        assert_same(duck_table(work["db"], f"FROM history {order}", settings),
                    spark.sql(f"SELECT * FROM history {order}").toArrow())
        theirs = spark.sql("SELECT * FROM training_set ORDER BY line_id").toArrow()
        assert theirs.num_rows > 15_000
        assert_same(duck.drop(["hashed"]), theirs.drop(["hashed"]))
        assert duck["hashed"].to_pylist() == theirs["hashed"].to_pylist()
    finally:
        engine.create_views(spark, work["export"], settings)  # the module's views again


def test_an_exports_history_is_used_only_while_current(work, spark, settings, tmp_path):
    """The export's history serves while it is current (db.history_stale's rule: built under these settings from
    these invoices, the files the export wrote); else Spark computes history from the invoices and says why."""
    from sales_sql.db import export_stale

    assert all("/history/" in f for f in spark.table("history").inputFiles())  # the module's views: the export's
    copy = tmp_path / "export"
    shutil.copytree(work["export"], copy)
    assert export_stale(copy, settings) is None
    assert "other class thresholds" in export_stale(copy, dataclasses.replace(settings, low_max=settings.low_max + 1))
    month = next((copy / "invoices").iterdir())
    shutil.copy(next(month.iterdir()), month / "more.parquet")  # a file added beside the export's
    try:
        said = engine.create_views(spark, copy, settings)
        assert said == ("computed from the invoices: the export's history is older than the invoices (lines were "
                        "added or edited outside sales_sql)")
        assert all("/invoices/" in f for f in spark.table("history").inputFiles())
    finally:
        engine.create_views(spark, work["export"], settings)  # the module's views again
    (copy / "export.json").unlink()
    assert "has no export.json" in export_stale(copy, settings)


def predictions(run, source):
    return run(f"""SELECT line_id, predict_sales({ARGS}) AS p, predict_sales_class({ARGS}) AS c,
                          predict_sales_proba(sale_time, branch_id, item_code) AS three,
                          predict_sales(CAST(sale_day AS STRING), branch_id, item_code, unit_price).source AS four
                   FROM {source} ORDER BY line_id""")


def flat(table: pa.Table) -> pa.Table:
    p = table["p"].combine_chunks()
    proba = p.field("proba")
    return pa.table({"line_id": table["line_id"], "label": p.field("label"), "low": proba.field("low"),
                     "medium": proba.field("medium"), "high": proba.field("high"), "source": p.field("source"),
                     "version": p.field("model_version"), "c": table["c"],
                     "three_low": table["three"].combine_chunks().field("low"), "four": table["four"]})


def test_predict_sales_on_spark_equals_duckdb_bit_for_bit(work, spark, settings):
    assert engine.register(spark, settings, db=work["db"]) == "model"
    theirs = flat(predictions(lambda q: spark.sql(q).toArrow(), "usable_lines"))
    ours = flat(predictions(lambda q: duck_table(work["db"], q, settings), "usable_lines"))
    assert set(theirs["source"].to_pylist()) == {"model"}
    assert set(theirs["version"].to_pylist()) == {work["duckdb_version"]}
    assert_same(ours, theirs)
    # a date that does not cast answers NULL with source invalid_date, as in DuckDB
    bad = spark.sql("SELECT predict_sales('not a date', '1', '10001') AS p").collect()[0]["p"]
    assert bad["label"] is None and bad["source"] == "invalid_date"
    explained = spark.sql("SELECT explain_sales_class(DATE '2024-07-01', '1', '10001') AS e").collect()[0]["e"]
    assert 1 <= len(explained) <= 5 and all(e["feature"] for e in explained)


SCORED = ("SELECT line_id, p.label, p.proba.low AS p_low, p.proba.medium AS p_medium, p.proba.high AS p_high, "
          f"p.source, p.model_version FROM (SELECT line_id, predict_sales({ARGS}) AS p FROM invoices) ORDER BY line_id")


@pytest.mark.parametrize("db, answers", [("db", {"model"}), ("empty", {"fallback:no_model"})])
def test_the_join_path_equals_duckdbs_predict_sales_on_every_line(work, spark, settings, db, answers):
    """sales_sql.spark.predict (history looked up in groups on the executors, nothing of it on the driver) answers
    every invoice line (returns included) as DuckDB's predict_sales does, bit for bit, with a model and with the
    fallback."""
    theirs = engine.predict(spark, "invoices", settings, db=work[db]).drop("sale_month").orderBy("line_id").toArrow()
    ours = duck_table(work[db], SCORED, settings)
    assert theirs.num_rows == ours.num_rows > 17_000
    assert set(theirs["source"].to_pylist()) == answers
    assert_same(ours, theirs.cast(ours.schema))


def test_the_join_path_answers_odd_lines_and_definitions_as_duckdb_does(work, spark, settings):
    """A price that is no number, no sale time, keys never seen, a time of day just after midnight, no branch and no
    item: the same answers as DuckDB's predict_sales on the same values. A definition the kernels cannot serve: the
    fallback, saying so, as on DuckDB."""
    from sales_sql.definition import FEATURES, KeyKind

    times = [dt.datetime(2024, 7, 1, 10), None, dt.datetime(2024, 7, 1),
             dt.datetime(2024, 7, 2, 0, 30), dt.datetime(2024, 7, 3, 9)]
    odd = pa.table({"line_id": pa.array([1, 2, 3, 4, 5], pa.int64()), "sale_time": pa.array(times, pa.timestamp("us")),
                    "branch_id": ["1", "1", "no such branch", "1", None],
                    "item_code": ["10001", "10001", "no such item", "10002", None],
                    "unit_price": [float("nan"), 2.0, None, 0.0, 3.5], "customer_id": ["C1", None, None, "C2", "C1"]})
    scored = engine.predict(spark, spark.createDataFrame(odd), settings, db=work["db"]).orderBy("line_id").toArrow()
    assert scored["sale_month"].to_pylist() == ["2024-07", None, "2024-07", "2024-07", "2024-07"]
    theirs = scored.drop(["sale_month"])
    con = connect(work["db"], read_only=True, settings=settings)
    try:
        con.register("odd", odd)
        ours = con.sql(SCORED.replace("FROM invoices", "FROM odd")).to_arrow_table()
    finally:
        con.close()
        close(work["db"])
    assert theirs["source"].to_pylist() == ["invalid_price", "invalid_date", "model", "model", "model"]
    assert_same(ours, theirs.cast(ours.schema))

    unservable = dataclasses.replace(settings, definition=dataclasses.replace(
        FEATURES, kinds=FEATURES.kinds + (KeyKind("invoice", "inv", ("invoice_number",), "invoice", ("n",)),)))
    fallback = engine.predict(spark, "invoices", unservable, db=work["db"]).groupBy("source", "label").count().collect()
    assert [(r["source"], r["label"]) for r in fallback] == [("fallback:features_unavailable", "LOW")]


@pytest.mark.parametrize("groups, tasks", [(2, 2), (8, 8), (52, 8), (7, 3)])
def test_the_join_paths_groups_share_the_tasks_evenly(spark, groups, tasks):
    """The group numbers predict() uses go, under Spark's own hash partitioning into `tasks` partitions, to task
    (group mod tasks): every task gets as many groups (within one), so no task holds two groups while another idles."""
    from pyspark.sql.functions import spark_partition_id

    values = engine._group_values(spark, groups, tasks)
    assert len(set(values)) == groups
    placed = spark.createDataFrame([(v, i) for i, v in enumerate(values)], "v BIGINT, i INT") \
        .repartition(tasks, "v").select("i", spark_partition_id().alias("task")).collect()
    assert sorted((r["i"], r["task"]) for r in placed) == [(i, i % tasks) for i in range(groups)]


def test_without_a_model_spark_answers_as_duckdbs_fallback(work, spark, settings):
    assert engine.register(spark, settings, db=work["empty"]) == "fallback:no_model"
    theirs = flat(predictions(lambda q: spark.sql(q).toArrow(), "usable_lines"))
    ours = flat(predictions(lambda q: duck_table(work["empty"], q, settings), "usable_lines"))
    assert set(theirs["source"].to_pylist()) == {"fallback:no_model"}
    assert_same(ours, theirs)


def test_a_definition_the_kernels_cannot_serve_falls_back_on_spark_as_in_duckdb(work, spark, settings):
    from sales_sql.definition import FEATURES, KeyKind

    odd = dataclasses.replace(settings, definition=dataclasses.replace(
        FEATURES, kinds=FEATURES.kinds + (KeyKind("invoice", "inv", ("invoice_number",), "invoice", ("n",)),)))
    assert engine.register(spark, odd, db=work["db"]) == "fallback:features_unavailable"
    p = spark.sql("SELECT predict_sales(DATE '2024-07-01', '1', '10001') AS p").collect()[0]["p"]
    assert p["source"] == "fallback:features_unavailable" and p["label"] in ("LOW", "MEDIUM", "HIGH")


def test_mlflow_spark_udf_of_production_equals_sales_sql_spark_register(work, spark, settings):
    """MLflow's own way into Spark (mlflow.pyfunc.spark_udf over the registered pyfunc) answers as sales_sql's."""
    import mlflow

    run_cli("promote", work["db"], str(work["duckdb_version"]), "--force", "--config", work["tmp"] / "quick.toml",
            "--models-dir", work["tmp"] / "models")
    assert engine.register(spark, settings, db=work["db"]) == "model"
    udf = mlflow.pyfunc.spark_udf(spark, f"models:/{settings.model_name}@production", env_manager="local",
                                  model_config={"database": str(work["db"])},
                                  result_type="label string, p_low double, p_medium double, p_high double, "
                                              "source string, model_version int")
    lines = spark.sql("SELECT line_id, sale_time, branch_id, item_code, unit_price, customer_id FROM usable_lines "
                      "WHERE line_id % 7 = 0")
    theirs = lines.withColumn("m", udf("sale_time", "branch_id", "item_code", "unit_price", "customer_id")) \
        .selectExpr("line_id", "m.*").orderBy("line_id").toArrow()
    ours = spark.sql(f"""SELECT line_id, p.label, p.proba.low AS p_low, p.proba.medium AS p_medium,
                                p.proba.high AS p_high, p.source, p.model_version
                         FROM (SELECT line_id, predict_sales({ARGS}) AS p FROM usable_lines WHERE line_id % 7 = 0)
                         ORDER BY line_id""").toArrow()
    assert theirs.num_rows == ours.num_rows > 1000
    assert_same(ours.cast(theirs.schema), theirs)


def test_spark_trains_with_the_parameters_its_run_records(settings):
    from sales_sql.training import xgb_params

    quick = dataclasses.replace(settings, **QUICK)
    classifier = engine.classifier_for(quick, 2, True)
    given = {p.name: classifier.getOrDefault(p) for p in classifier.params if classifier.isDefined(p)}
    logged = {k: v for k, v in xgb_params(quick).items() if k != "nthread"}  # what the run logs as its params
    names = {"eta": "learning_rate", "seed": "random_state", "objective": None, "num_class": None}
    for key, value in logged.items():
        if names.get(key, key) is not None:
            assert given[names.get(key, key)] == value, key
    assert given["n_estimators"] == quick.num_boost_round and given["early_stopping_rounds"] == QUICK[
        "early_stopping_rounds"] and "is_stop" in given.values()  # early stopping on its own slice


def test_zoned_sale_times_give_spark_the_same_days_as_duckdb(work, spark, settings, tmp_path):
    """Instants (TIMESTAMP WITH TIME ZONE) become wall-clock times of the time_zone setting on both engines."""
    from zoneinfo import ZoneInfo

    import pyarrow.parquet as pq

    tokyo = dataclasses.replace(settings, time_zone="Asia/Tokyo")
    utc = ZoneInfo("UTC")
    times = [dt.datetime(2025, 6, 30, 23, 30, tzinfo=utc), dt.datetime(2025, 7, 1, 14, 59, tzinfo=utc),
             dt.datetime(2025, 7, 1, 15, 0, tzinfo=utc)]
    pq.write_table(pa.table({"Date": pa.array(times, pa.timestamp("us", tz="UTC")), "BranchID": ["1"] * 3,
                             "InvoiceNumber": ["A", "B", "C"], "ItemCode": ["10001"] * 3, "QuantitySold": [2, 5, 9]}),
                   tmp_path / "zoned.parquet")
    con = connect(tmp_path / "z.duckdb", settings=tokyo)
    load_file(con, tmp_path / "zoned.parquet", settings=tokyo)
    duck = con.execute("SELECT sale_time, sale_day FROM usable_lines ORDER BY line_id").fetchall()
    close(tmp_path / "z.duckdb")
    assert [d for _, d in duck] == [dt.date(2025, 7, 1), dt.date(2025, 7, 1), dt.date(2025, 7, 2)]
    frame = spark.read.parquet(str(tmp_path / "zoned.parquet")).selectExpr(
        "Date AS sale_time", "BranchID AS branch_id", "InvoiceNumber AS invoice_number", "ItemCode AS item_code",
        "CAST(QuantitySold AS INT) AS quantity_sold", "CAST(NULL AS DOUBLE) AS unit_price", "CAST(NULL AS STRING) AS customer_id",
        "monotonically_increasing_id() AS line_id")
    try:
        engine.create_views(spark, frame, tokyo)
        theirs = [tuple(r) for r in spark.sql("SELECT sale_time, sale_day FROM usable_lines ORDER BY line_id").collect()]
    finally:
        engine.create_views(spark, work["export"], settings)  # the module's views again
    assert theirs == duck


def test_drift_on_spark_equals_duckdbs_report(work, spark, settings):
    from sales_sql import monitor

    end = dt.date(2024, 7, 15)
    theirs = engine.drift(spark, settings, db=work["db"], version=work["duckdb_version"], window_days=30, end=end).rows
    con = connect(work["db"], settings=settings)
    try:
        from sales_sql.registry import promote

        promote(str(work["db"]), work["quick"], work["duckdb_version"], force=True, models_dir=work["tmp"] / "models")
        ours = monitor.check(con, settings, window_days=30, end=end, save=False).rows
    finally:
        con.close()
        close(work["db"])
    assert [r["feature"] for r in ours] == [r["feature"] for r in theirs]
    for a, b in zip(ours, theirs):
        for key in ("statistic", "p_value", "p_adjusted", "effect_size", "threshold", "n_window", "n_baseline"):
            assert (a[key] is None) == (b[key] is None) and (a[key] is None or
                                                              float(a[key]) == pytest.approx(float(b[key]), rel=1e-9)), \
                (a["feature"], key, a[key], b[key])
        assert a["is_drift"] == b["is_drift"], a["feature"]
    assert json.dumps([r["feature"] for r in theirs])


# the driver: 2 MB of task results (broadcast joins, bounded by their own threshold, included), a small heap
BOUNDED = ("--conf", "spark.driver.maxResultSize=2m", "--conf", "spark.sql.autoBroadcastJoinThreshold=1m",
           "--conf", "spark.driver.memory=512m", "--conf", "spark.executor.memory=1g")


@pytest.mark.cluster
def test_predict_and_drift_on_a_standalone_cluster_with_a_bounded_driver(work, settings, tmp_path, monkeypatch):
    """A real cluster: a standalone master and one worker (each its own JVM; executors with their own JVM and Python
    workers), the driver allowed 2 MB of results. `sales-sql predict` and `drift --engine spark`, as docs/scale-out.md
    writes them, answer as DuckDB does; collecting history to the driver (register(), the SQL functions' index) fails
    under the same bound, so the bound is real. Nothing is left running."""
    import subprocess

    import pyarrow.parquet as pq

    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    with engine.standalone(tmp_path / "cluster", cores=2, memory="1500m") as master:
        def documented(command: str) -> list[str]:
            """docs/scale-out.md's example of the command, on this module's files and cluster, driver bounded."""
            start = f"sales-sql {command} sales.duckdb --engine"
            line = next(x for x in SCALE_OUT_DOC.splitlines() if x.startswith(start))
            given = {"sales.duckdb": work["db"], "export/": work["export"], "predictions/": tmp_path / "scored",
                     "spark://host:7077": master}
            return [given.get(word, word) for word in shlex.split(line)[1:]] + list(BOUNDED)

        out = run_cli(*documented("predict"), cwd=tmp_path)  # where the user types it: nothing is written there
        assert "wrote" in out.stdout and f"model v{work['duckdb_version']}" in out.stdout
        assert "history on Spark: the export's" in out.stderr
        months = sorted(p.name for p in (tmp_path / "scored").iterdir() if p.name.startswith("sale_month="))
        assert len(months) >= 6
        written = pq.read_table(tmp_path / "scored").sort_by("line_id")
        ours = duck_table(work["db"], SCORED, settings)
        assert_same(ours, written.drop(["sale_month"]).cast(ours.schema))
        month = duck_table(work["db"], "SELECT strftime(sale_time, '%Y-%m') AS m FROM invoices ORDER BY line_id",
                           settings)
        assert written["sale_month"].cast(pa.string()).to_pylist() == month["m"].to_pylist()  # each in its month

        window = ("--end", "2024-07-15", "--format", "json")
        spark_drift = run_cli(*documented("drift"), *window, check=False, cwd=tmp_path)
        duck_drift = run_cli("drift", work["db"], "--window", "30d", *window, check=False)
        assert spark_drift.returncode == duck_drift.returncode in (0, 1), spark_drift.stderr
        a, b = json.loads(duck_drift.stdout), json.loads(spark_drift.stdout)
        assert b["run_id"] is not None and b["model_version"] == a["model_version"] == work["duckdb_version"]
        for x, y in zip(a["rows"], b["rows"], strict=True):
            assert {k: v for k, v in x.items()} == {k: v for k, v in y.items()}, x["feature"]

        script = ("import sys; from sales_sql import spark as e; s = e.session(sys.argv[1], **{"
                  "'spark.driver.maxResultSize': '2m', 'spark.sql.autoBroadcastJoinThreshold': '1m', "
                  "'spark.driver.memory': '512m'}); "
                  "e.create_views(s, sys.argv[2]); e.register(s, db=sys.argv[3])")
        collect = subprocess.run([sys.executable, "-c", script, master, str(work["export"]), str(work["db"])],
                                 capture_output=True, text=True, timeout=300)
        assert collect.returncode != 0 and "maxResultSize" in collect.stderr, collect.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster", "scored"], "a command wrote where it ran"
    left = subprocess.run(["pgrep", "-f", "org.apache.spark.deploy.(master|worker)"], capture_output=True, text=True)
    assert left.stdout == "", "the cluster's JVMs are still running"


def test_register_refuses_to_collect_history_past_its_bound(work, spark, settings):
    few = dataclasses.replace(settings, spark_index_max_rows=1000)
    with pytest.raises(engine.SparkError, match=r"would collect [\d,]+ history rows .*sales_sql.spark.predict"):
        engine.register(spark, few, db=work["db"])


def test_spark_commands_refuse_what_cannot_run_in_one_line_before_spark_starts(work):
    """A missing --input or --output, an option of the other engine, an output that exists, a setting that is no
    KEY=VALUE: exit 2 with one line, before Spark starts (the commands' Spark runs are in the tests around this one)."""
    refused = run_cli("retrain", work["db"], "--engine", "spark", check=False)
    assert refused.returncode == 2 and "--engine spark needs --input DIR" in refused.stderr
    for args, says in ((("predict", "--engine", "spark", "--input", work["export"]), "needs --output DIR"),
                       (("predict", "--into", "t", "--output", work["tmp"] / "out"), "--output is for --engine spark"),
                       (("predict", "--engine", "spark", "--input", work["export"], "--output", work["export"]),
                        "already exists; pass --replace"),
                       (("drift", "--engine", "spark", "--input", work["export"], "--conf", "spark.x"),
                        "'spark.x' is not a Spark setting; write it as KEY=VALUE"),
                       (("drift", "--engine", "spark", "--input", work["export"], "--plot", "p.png"),
                        "--plot draws the window DuckDB reads")):
        refused = run_cli(args[0], work["db"], *args[1:], check=False)
        assert refused.returncode == 2 and says in refused.stderr and len(refused.stderr.splitlines()) == 1, args
    assert "sale_month=" in " ".join(p.name for p in (work["export"] / "invoices").iterdir())
    again = run_cli("export", work["db"], work["export"], check=False)
    assert again.returncode == 2 and "exists" in again.stderr


def test_export_then_retrain_on_spark_through_the_command_line_serves_in_duckdb(work, spark, settings):
    """(Last in this module: the command stops the session.) The documented path, typed as a user would: `sales-sql export` (fixture) then `sales-sql retrain --engine spark
    --input DIR`; the version it registers serves in DuckDB, and its run record is what ran."""
    from mlflow import MlflowClient

    from sales_sql.definition import CLASSES
    from sales_sql.metrics import evaluate

    # a DuckDB-trained version from the registry, on Spark (before the command below stops this session)
    assert engine.register(spark, settings, db=work["db"], version=work["duckdb_version"]) == "model"
    got = spark.sql("SELECT predict_sales(DATE '2024-07-01', '1', '10001').model_version AS v").collect()[0]["v"]
    assert got == work["duckdb_version"]
    # the command as typed, run in this process (its session is this module's: no second JVM; it stops it at the end)
    from click.testing import CliRunner

    from sales_sql.cli import main

    out = CliRunner().invoke(main, [str(a) for a in (
        "retrain", work["db"], "--engine", "spark", "--input", work["export"], "--cutoff", CUTOFF, "--config",
        work["tmp"] / "quick.toml", "--models-dir", work["tmp"] / "models")])
    assert out.exit_code == 0, out.output
    version = int(out.stdout.split(" version ")[1].split()[0])
    client = MlflowClient()
    registered = client.get_model_version(settings.model_name, str(version))
    run = client.get_run(registered.run_id).data
    # what pipeline needs to skip a retrain, and the same slices and baselines as a DuckDB retrain records
    con = connect(work["db"], read_only=True, settings=settings)
    newest = con.execute("SELECT max(line_id) FROM usable_lines").fetchone()[0]
    trained_through = con.execute("SELECT value FROM sales_sql_meta WHERE key = 'trained_through_line_id'").fetchone()
    con.close()
    close(work["db"])
    assert int(registered.tags["trained_through_line_id"]) == newest == int(trained_through[0])
    duck_run = client.get_run(client.get_model_version(settings.model_name, str(work["duckdb_version"])).run_id).data
    for key in ("train_from", "train_through", "stop_from", "stop_through", "test_from", "test_rows"):
        assert run.params[key] == duck_run.params[key], key
    for key in ("baseline_majority_macro_f1", "baseline_branch_item_mode_macro_f1", "baseline_branch_item_mode_accuracy"):
        assert run.metrics[key] == pytest.approx(duck_run.metrics[key], abs=1e-12), key
    run_here("promote", work["db"], str(version), "--force", "--config", work["tmp"] / "quick.toml",
             "--models-dir", work["tmp"] / "models")
    valid = duck_table(work["db"], f"""SELECT label, predict_sales({ARGS}) AS p FROM training_set
                                       WHERE sale_day >= DATE '{CUTOFF}'""", settings)
    p = valid["p"].combine_chunks()
    assert set(p.field("source").to_pylist()) == {"model"} and set(p.field("model_version").to_pylist()) == {version}
    y = np.array([CLASSES.index(c) for c in valid["label"].to_pylist()])
    pred = np.array([CLASSES.index(c) for c in p.field("label").to_pylist()])
    served = evaluate(y, pred)["macro_f1"]
    assert abs(served - work["duckdb_f1"]) <= 0.02, (served, work["duckdb_f1"])
    assert run.metrics["macro_f1"] == pytest.approx(served, abs=1e-9)  # Spark's executors scored the same rows alike
