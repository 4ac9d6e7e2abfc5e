"""The Spark layer only: sales_sql's scoring, SQL functions, views, training and drift on Apache Spark.

`pip install 'sales_sql[spark]'` (pyspark; Java 17 or newer is the one prerequisite). The functions are DuckDB's,
by the same names, as Arrow UDFs over the same engine-agnostic cores (features, lookups, trees, drift); the views
are rendered from the same feature definition (sql/spark/); a model trained here is a version in the same MLflow
registry, and any version serves on either engine (one booster format, one spec). docs/scale-out.md shows how.

    spark = sales_sql.spark.session()                      # or your own SparkSession
    create_views(spark, "export/")                         # invoices (Parquet of `sales-sql export`), history, ...
    predict(spark, "invoices", db="shop.duckdb")           # the join path: any number of lines, a DataFrame out
    drift(spark, db="shop.duckdb", window_days=30)         # the drift report, from aggregates
    register(spark, db="shop.duckdb")                      # the SQL functions, for ad-hoc queries
    spark.sql("SELECT predict_sales_class(sale_time, branch_id, item_code, unit_price, customer_id) FROM invoices")

predict() looks each line's history up on the executors, in groups of keys that each hold their lines and the
history they need (DuckDB's own look-ups and trees run on each group), and ships only the model; register() collects
history to the driver for the functions' history index (bounded by the spark.index_max_rows setting). The
model (and register()'s index) travel to the executors as one archive (SparkContext.addArchive) and are loaded once
per Python worker: the index memory-mapped, the trees compiled and checked on the driver.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import sys
import tarfile
import threading
import warnings
from pathlib import Path
from types import SimpleNamespace

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import duck, inputs, lookups, scratch, serving
from .config import Settings, load_settings, shipped
from .db import export_stale, opened
from .definition import CLASSES, FEATURES, RENDERED, Definition, key_sql, spark_sql
from .metrics import best, candidates, confusion_metrics, confusions
from .monitor import COLUMNS, DriftError, DriftReport, drift_values
from .scoring import SCORED
from .structs import CHI2, EXPLANATION, KS, PREDICTION, PROBA, Struct
from .udfs import per_row

log = logging.getLogger("sales_sql")
# the model register() or predict() served last, per Spark application: its version, its test-slice metrics (drift's
# performance rows) and its drift baseline (None: no model, or one without a baseline)
_LAST_MODEL: dict[str, tuple[int | None, dict, pa.Table | None]] = {}
_SCRATCH: dict[str, list[Path]] = {}  # a Spark application's scratch folders (bundles, warehouse): stop() removes
BUNDLE_META = "model.json"  # in a bundle: the version, its spec and metrics, its checked trees' folder


def session(master: str = "local[2]", app: str = "sales_sql", **conf):
    """A SparkSession as sales_sql's functions expect it: times in UTC (sale times carry no zone), workers on this
    Python (PYSPARK_PYTHON, unless set), no UI, nothing written where it runs. Extra settings as keyword arguments
    ("spark.x.y": value)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    warehouse = scratch.folder("warehouse")
    builder = (SparkSession.builder.master(master).appName(app).config("spark.ui.enabled", "false")
               .config("spark.sql.session.timeZone", "UTC").config("spark.sql.shuffle.partitions", "8")
               # predictions partitioned by month are written as they come, a file open per month and task, not
               # sorted by month first (past 64 months in one task Spark sorts the rest)
               .config("spark.sql.maxConcurrentOutputFileWriters", "64")
               # sales_sql makes temporary views only: Spark's warehouse folder (else ./spark-warehouse wherever the
               # command runs) goes to a scratch folder, which stop() removes
               .config("spark.sql.warehouse.dir", str(warehouse)))
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    _SCRATCH.setdefault(spark.sparkContext.applicationId, []).append(warehouse)
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def stop(spark) -> None:
    """Stop the session, forget the model it served last and remove its scratch folders: the model bundles register()
    and predict() wrote for it and its warehouse folder (else removed at interpreter exit)."""
    try:
        app = spark.sparkContext.applicationId
    except AttributeError:  # stopped already (its folders went then)
        return
    _LAST_MODEL.pop(app, None)
    for folder in _SCRATCH.pop(app, []):
        scratch.remove(folder)
    spark.stop()


@contextlib.contextmanager
def standalone(folder: str | os.PathLike, cores: int = 1, memory: str = "1g", timeout: float = 60.0):
    """A Spark standalone cluster on this machine, to try the cluster path (and test it): a master and one worker on
    127.0.0.1, each its own JVM started from the installed pyspark (bin/spark-class), the worker offering `cores` and
    `memory` to executors (their own JVMs and Python workers). Logs and the worker's folder go into `folder`. Yields
    the master's URL (spark://127.0.0.1:PORT); on exit both stop with everything they started (their process groups),
    so nothing is left running."""
    import signal
    import socket
    import subprocess
    import time

    import pyspark

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_HOME": str(spark_class.parent.parent),
           "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable)}

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    started = []

    def start(name: str, args: list[str], ready: str):
        said = folder / f"{name}.log"
        with open(said, "wb") as out:
            proc = subprocess.Popen([str(spark_class), *args], stdout=out, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        started.append(proc)
        deadline = time.monotonic() + timeout
        while ready not in said.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Spark {name} did not start (see {said}): "
                                   f"{said.read_text(errors='replace').strip()[-300:]}")
            time.sleep(0.2)

    port = free_port()
    url = f"spark://127.0.0.1:{port}"
    try:
        start("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                         "--webui-port", str(free_port())], "I have been elected leader")
        start("worker", ["org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1", "--cores", str(cores),
                         "--memory", memory, "--webui-port", str(free_port()), "--work-dir", str(folder / "work")],
              "Successfully registered with master")
        yield url
    finally:
        for proc in reversed(started):
            for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue


# ---- SQL --------------------------------------------------------------------------------------------------------

def statements(name: str, settings: Settings, **values) -> list[tuple[str | None, str]]:
    """The Spark SQL statements (each: the name it creates or None, its text) of history / training_set (sql/spark/,
    rendered from the definition), usable_lines (schema.sql's view), drift and baselines, with the settings and
    `values` filled in as duck.sql_text does: definition.spark_sql parses and writes them (no text is rewritten)."""
    if f"spark/{name}" in RENDERED:
        return spark_sql(duck.fill(RENDERED[f"spark/{name}"](settings.definition), settings, **values), read="spark")
    if name == "usable_lines":
        schema = duck.fill(shipped("sql/schema.sql").read_text("utf-8"), settings)
        return [s for s in spark_sql(schema) if s[0] == "usable_lines"]
    return spark_sql(duck.sql_text(name, settings, **values))


def sql_text(name: str, settings: Settings, **values) -> str:
    """The Spark SQL of a one-statement file (sql/baselines.sql), as duck.sql_text gives DuckDB's."""
    (_, text), = statements(name, settings, **values)
    return text


def run_sql(spark, script: list[tuple[str | None, str]]):
    """Each statement of a script (statements()); the last one's DataFrame."""
    out = None
    for _, text in script:
        out = spark.sql(text)
    return out


def create_views(spark, invoices, settings: Settings | None = None) -> str:
    """Temporary views invoices, usable_lines, history_daily, history and training_set over `invoices`: a folder of
    Parquet (what `sales-sql export DB DIR` writes: DIR/invoices, partitioned by month), a table name or a DataFrame
    with the columns of DuckDB's invoices table. `history` is the export's (DIR/history, as DuckDB's loads keep it)
    when it is current for these invoices and settings (db.export_stale), else computed from the invoices and then
    cached for the queries that read it directly (Spark 4.3 does not use a cached view inside the WITH clauses of
    training_set). hash_features is registered for training_set. Returns where history comes from, in words."""
    settings = settings or load_settings()
    exported = None
    if isinstance(invoices, (str, os.PathLike)) and Path(invoices).exists():
        folder = Path(invoices) / "invoices" if (Path(invoices) / "invoices").is_dir() else Path(invoices)
        exported = folder.parent if folder.name == "invoices" else None
        invoices = spark.read.parquet(str(folder))
    elif isinstance(invoices, str):
        invoices = spark.table(invoices)
    from pyspark.sql.functions import expr
    from pyspark.sql.types import TimestampType

    if isinstance(invoices.schema["sale_time"].dataType, TimestampType):  # an instant: the wall-clock time in the
        invoices = invoices.withColumn("sale_time", expr(  # time_zone setting, as DuckDB's loader gives (never the
            f"convert_timezone(current_timezone(), {duck.quote_literal(settings.time_zone)}, "  # machine's zone)
            "CAST(sale_time AS TIMESTAMP_NTZ))"))
    invoices.createOrReplaceTempView("invoices")
    _register_hash(spark, settings)
    spark.sql("UNCACHE TABLE IF EXISTS history")  # of invoices loaded before
    for name in ("usable_lines", "history"):
        run_sql(spark, statements(name, settings))
    stored, source = _exported_history(spark, exported, settings) if exported else \
        (False, "computed from the invoices")
    run_sql(spark, statements("training_set", settings))
    if not stored:  # computed: once, for the queries that read it directly (the export's is read from its files)
        spark.sql("CACHE LAZY TABLE history")
    log.info("history on Spark: %s", source)
    return source


def _exported_history(spark, folder: Path, settings: Settings) -> tuple[bool, str]:
    """Make `history` the export's own (FOLDER/history) when it is current and has the computed view's columns, so
    that no command computes it again; else leave the computed view. Returns whether it is the export's, and where
    history comes from, in words."""
    why = export_stale(folder, settings)
    if why is None:
        computed = spark.table("history").schema
        try:
            stored = spark.read.parquet(str(folder / "history"))
        except Exception as e:  # noqa: BLE001  Spark's analysis errors: no folder, or no files (no history rows)
            why = f"cannot be read ({str(e).strip().splitlines()[0]})"
        else:
            if all(f.name in stored.columns and stored.schema[f.name].dataType == f.dataType for f in computed):
                stored.select(*computed.names).createOrReplaceTempView("history")
                return True, f"the export's ({folder / 'history'})"
            why = "has other columns than this sales_sql computes (an older export)"
    return False, f"computed from the invoices: the export's history {why}"


# ---- the SQL functions ------------------------------------------------------------------------------------------

_SPARK_TYPES = {"DOUBLE": "double", "BIGINT": "bigint", "INTEGER": "int", "VARCHAR": "string"}


def spark_type(struct: Struct) -> str:
    """A Struct (structs.py) as Spark's DDL type."""
    inner = ", ".join(f"{name}: {spark_type(t) if isinstance(t, Struct) else _SPARK_TYPES[t]}"
                      for name, t in struct.fields)
    return f"array<struct<{inner}>>" if struct.many else f"struct<{inner}>"


def _arrow_udf(fn, returns: str):
    from pyspark.sql.functions import ArrowUDFType, arrow_udf

    with warnings.catch_warnings():  # the functions take any number of arguments, so no type hints
        warnings.simplefilter("ignore", UserWarning)
        return arrow_udf(fn, returns, ArrowUDFType.SCALAR)


def _register_hash(spark, settings: Settings) -> None:
    buckets = settings.buckets

    def hash_features(branch, item):
        from .features import hash_matrix  # numba's kernels: on an executor's first call

        flat = pa.array(hash_matrix(branch, item, buckets).ravel())
        return pa.ListArray.from_arrays(pa.array(np.arange(0, len(flat) + 1, buckets, dtype=np.int32)), flat)

    spark.udf.register("hash_features", _arrow_udf(hash_features, "array<float>"))


class SparkError(ValueError):
    """A Spark step was refused before it started (nothing was collected or written)."""


def _register_drift(spark) -> None:
    for fn, struct in (("ks_drift", KS), ("chi2_drift", CHI2), ("ks_drift_counted", KS), ("chi2_drift_counted", CHI2)):
        spark.udf.register(fn, _arrow_udf(per_row(fn, struct), spark_type(struct)))


def register(spark, settings: Settings | None = None, *, db: str | os.PathLike | None = None,
             version: int | str | None = None, history: str = "history") -> str:
    """Make hash_features, predict_sales, predict_sales_class, predict_sales_proba, explain_sales_class, ks_drift
    and chi2_drift callable in Spark SQL, and the view drift_baseline. The model: `version` (a number, or an alias
    such as "production") from the MLflow store (MLFLOW_TRACKING_URI, else the mlflow.db beside `db`), else the
    one deployed in the DuckDB file `db`, else none (the fallback answers, as in DuckDB). History: the Spark table
    or view `history` (create_views makes it), collected to the driver for the functions' history index: past the
    spark.index_max_rows setting it refuses (SparkError), and predict() (the join path) scores instead. Returns
    what answers: "model" or the fallback's source."""
    settings = settings or load_settings()
    rows = spark.table(history).count()
    log.info("register() collects %s history rows to the driver for the SQL functions' history index", f"{rows:,}")
    if rows > settings.spark_index_max_rows:
        raise SparkError(f"register() would collect {rows:,} history rows to the driver for the SQL functions' index "
                         f"(more than spark.index_max_rows = {settings.spark_index_max_rows:,}); score with the join "
                         "path instead (sales_sql.spark.predict, `sales-sql predict --engine spark`), or raise the "
                         "setting and the driver's memory")
    folder = _folder(spark)
    unservable = _layout_problem(settings)
    if not unservable:
        _write_index(spark, settings, folder, history)
    source = _write_model(spark, settings, folder, db, version, unservable)
    _baseline_view(spark, settings)
    name = _ship(spark, folder)
    _register_hash(spark, settings)

    def calling(method):
        def udf(*args):
            return getattr(_served(name, settings), method)(*inputs.arguments(args, settings.time_zone))
        return udf

    prediction = spark_type(PREDICTION)
    for fn, method, returns in (("predict_sales", "predict_arrow", prediction),
                                ("predict_sales_class", "class_arrow", "string"),
                                ("predict_sales_proba", "proba_arrow", spark_type(PROBA)),
                                ("explain_sales_class", "explain_arrow", spark_type(EXPLANATION))):
        spark.udf.register(fn, _arrow_udf(calling(method), returns))
    _register_drift(spark)
    return source


def predict(spark, lines, settings: Settings | None = None, *, db: str | os.PathLike | None = None,
            version: int | str | None = None):
    """The join path: one row of predictions per line of `lines` (a DataFrame, or a table or view name, with the
    columns of invoices: line_id, sale_time, branch_id, item_code, unit_price, customer_id), the columns of
    `sales-sql predict --into` (line_id, label, p_low, p_medium, p_high, source, model_version) and the line's
    sale_month (YYYY-MM, what `sales-sql predict --engine spark` partitions by), a lazy DataFrame.

    History is looked up on the executors, by groups of keys: the lines and the history rows of the key kinds that
    end with the grouping column (item_code: item, branch x item, customer x item) meet in the group of that column's
    value; for the other kinds (branch, customer) an as-of join by key first finds the row each line needs, and that
    row joins its line's group. In each group DuckDB's own code answers (lookups.Batch over the group's history index,
    the compiled trees), so the answers are predict_sales's bit for bit, fallback included. Only the model's bundle
    (booster, spec, compiled trees, drift baseline) goes through the driver, and the count of the lines and the
    groups' numbers come back."""
    settings = settings or load_settings()
    folder = _folder(spark)
    unservable = _layout_problem(settings)
    _write_model(spark, settings, folder, db, version, unservable)
    name = _ship(spark, folder)
    lines = (spark.table(lines) if isinstance(lines, str) else lines).selectExpr("line_id", *inputs.NAMES)
    from pyspark.sql.pandas.types import from_arrow_schema

    schema = from_arrow_schema(_SCORED)
    if unservable:  # the fallback answers without history, as DuckDB's does: nothing to look up

        def plain(batches):
            predictor = _served(name, settings)
            for rb in batches:
                yield _scored(rb, predictor.predict(*(rb.column(n) for n in inputs.NAMES)))

        return lines.mapInArrow(plain, schema)
    from pyspark.sql.functions import expr

    d, layout = settings.definition, lookups.Layout.of(settings.definition)
    by = _grouping_column(d)
    tasks = int(spark.conf.get("spark.sql.shuffle.partitions"))
    groups = max(tasks, -(-lines.count() // GROUP_LINES))
    # a key's last column's value -> its group, as a number that Spark's hash partitioning sends to task (group mod
    # tasks): each task gets as many groups, about as large, and adaptive execution does not join tasks by size
    group = (f"element_at(array({', '.join(f'{v}L' for v in _group_values(spark, groups, tasks))}), "
             f"CAST(pmod(xxhash64(substring_index({{}}, chr(31), -1)), {groups}) AS INT) + 1)")
    kept = ["kind", "key", "sale_day", *layout.row.names]
    history = spark.table("history").select(*kept)
    rows = history.where(expr(f"kind IN ({_names(k for k in d.kinds if k.columns[-1] == by)})")) \
        .withColumn("g", expr(group.format("key")))
    lines = lines.withColumn("g", expr(group.format(by)))
    far = [k for k in d.kinds if k.columns[-1] != by]
    if far:  # each line's (kind, key, day, group) of these kinds, in one pass over the lines (a key with a NULL part
        # is NULL: nothing to find, as a look-up's)
        pairs = ", ".join(f"'{k.name}', CAST({key_sql(k)} AS STRING)" for k in far)
        probes = lines.selectExpr(f"stack({len(far)}, {pairs}) AS (kind, key)", "CAST(sale_time AS DATE) AS sale_day",
                                  "g").where("key IS NOT NULL AND sale_day IS NOT NULL")
        by_key = f"pmod(xxhash64(kind, key), {groups})"
        found = probes.distinct().withColumn("a", expr(by_key)).groupBy("a").cogroup(
            history.where(expr(f"kind IN ({_names(far)})")).withColumn("a", expr(by_key)).groupBy("a")) \
            .applyInArrow(_found_rows(kept, rows.schema), rows.schema)
        rows = rows.unionByName(found)
    rows.createOrReplaceTempView("scoring_history")  # what the groups read of history (bench/spark.py times it)

    def score(lines: pa.Table, rows: pa.Table) -> pa.Table:  # a group: its lines, the history rows they need
        if not lines.num_rows:
            return _SCORED.empty_table()
        predictor = _served(name, settings)
        index = lookups.HistoryIndex(layout, arrays=_built(layout, rows, threads=1)) if rows.num_rows else \
            lookups.HistoryIndex(layout)  # no rows: the empty index
        return pa.Table.from_batches([_scored(b, predictor.predict_in(index, *(b.column(n) for n in inputs.NAMES)))
                                      for b in lines.to_batches(max_chunksize=lookups.SPLIT_ROWS)], _SCORED)

    return lines.repartition(tasks, "g").groupBy("g").cogroup(rows.repartition(tasks, "g").groupBy("g")) \
        .applyInArrow(score, schema)


def _group_values(spark, groups: int, tasks: int) -> list[int]:
    """predict()'s group numbers: for group i, a BIGINT that Spark's hash partitioning into `tasks` partitions
    (pmod(hash(x), tasks)) sends to partition i mod tasks, a different one for each group. A small job; `groups`
    numbers reach the driver."""
    from pyspark.sql.functions import expr

    each = -(-groups // tasks)
    found = {r.p: r.ids for r in spark.range(64 * groups).selectExpr(f"pmod(hash(id), {tasks}) AS p", "id")
             .groupBy("p").agg(expr(f"slice(array_sort(collect_list(id)), 1, {each}) AS ids")).collect()}
    if any(len(found.get(t, [])) < each for t in range(tasks)):  # 64 numbers a group: never seen
        raise RuntimeError(f"too few numbers found for {groups} groups in {tasks} partitions")
    return [found[i % tasks][i // tasks] for i in range(groups)]


def write_predictions(scored, output: str | os.PathLike, replace: bool = False) -> None:
    """Write predict()'s DataFrame as Parquet partitioned by month (OUTPUT/sale_month=YYYY-MM/), the columns of
    `sales-sql predict --into`. Line ids and probabilities are written without dictionaries: nearly every value
    differs, and Parquet's writer tries one in every file before it gives up (a third of the write's CPU)."""
    writer = scored.write.mode("overwrite" if replace else "errorifexists").partitionBy("sale_month")
    for column in ("line_id", "p_low", "p_medium", "p_high"):
        writer = writer.option(f"parquet.enable.dictionary#{column}", "false")
    writer.parquet(str(output))


GROUP_LINES = 200_000  # predict(): lines per group on average, at most (a group sits whole in one Python worker)


def _grouping_column(definition: Definition) -> str:
    """The key column that ends the most kinds' keys (item_code): predict() groups lines and history by it."""
    ends = [k.columns[-1] for k in definition.kinds]
    return max(ends, key=ends.count)


def _names(kinds) -> str:
    return ", ".join(f"'{k.name}'" for k in kinds)


def _found_rows(kept: list[str], schema):
    """predict()'s as-of join by key for the kinds that do not end with the grouping column: per group of keys, the
    history row each (kind, key, day, line group) finds, the latest strictly before the day (DuckDB's ASOF join,
    as sql/training_set.sql's), once per line group."""
    from pyspark.sql.pandas.types import to_arrow_schema

    target = to_arrow_schema(schema)

    def found(probes: pa.Table, history: pa.Table) -> pa.Table:
        if not probes.num_rows or not history.num_rows:
            return target.empty_table()
        con = duckdb.connect(config={"threads": 1})
        try:
            con.register("p", probes)
            con.register("h", history)
            return con.sql(f"""SELECT DISTINCT {', '.join(f'h.{c}' for c in kept)}, p.g FROM p ASOF JOIN h
                               ON p.kind = h.kind AND p.key = h.key AND p.sale_day > h.sale_day""") \
                .to_arrow_table().cast(target)
        finally:
            con.close()
    return found


def _scored(batch: pa.RecordBatch, answer) -> pa.RecordBatch:
    """A batch of lines' predictions: line_id, the columns of serving.columns, sale_month."""
    return pa.record_batch([batch.column("line_id"), *serving.columns(*answer), _months(batch.column("sale_time"))],
                           schema=_SCORED)


def _months(times: pa.Array) -> pa.Array:
    """Each sale time's month as YYYY-MM, NULL for NULL: the few distinct months written once each (strftime of each
    time costs several times the rest of a line's output)."""
    month = pc.add(pc.multiply(pc.year(times), 100), pc.month(times))
    distinct = pc.unique(month)
    names = pa.array([None if m is None else f"{m // 100:04d}-{m % 100:02d}" for m in distinct.to_pylist()],
                     pa.string())
    return names.take(pc.index_in(month, distinct))


# the columns of `sales-sql predict --into`, and the month sales-sql export partitions by
_SCORED = SCORED.append(pa.field("sale_month", pa.string()))


def _folder(spark) -> Path:
    """A new bundle folder (in a scratch folder that stop() removes)."""
    folder = scratch.folder("bundle")
    _SCRATCH.setdefault(spark.sparkContext.applicationId, []).append(folder)
    (folder / "bundle").mkdir()
    return folder / "bundle"


def _ship(spark, folder: Path) -> str:
    """Send a bundle folder to every executor as one archive (SparkContext.addArchive: executors of a cluster get no
    folders through addFile); the name SparkFiles.get finds it unpacked under."""
    archive = folder.parent / f"{folder.parent.name}.tar"
    with tarfile.open(archive, "w") as tar:  # entries relative to the folder: Spark refuses "./"
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    spark.sparkContext.addArchive(str(archive))
    return archive.name


def _layout_problem(settings: Settings) -> str:
    """Why the prediction kernels cannot lay the feature definition out ("" when they can): as
    serving.history_index, the fallback then answers without history."""
    try:
        lookups.Layout.of(settings.definition)
    except lookups.LayoutError as e:
        return serving.why(e)
    return ""


def _write_index(spark, settings: Settings, folder: Path, history: str) -> None:
    """The history index of Spark's `history` into folder/index: collected to the driver through Arrow and built by
    the same code as DuckDB's (register() bounds the rows first)."""
    rows = spark.table(history).toArrow()
    (folder / "index").mkdir()
    _built(lookups.Layout.of(settings.definition), rows, folder / "index")


def _built(layout: lookups.Layout, rows: pa.Table, folder: Path | None = None, **config) -> dict[str, np.ndarray]:
    """The history index arrays of history rows in Arrow, by DuckDB's code (lookups.build, in a connection of its own
    with `config`): files in `folder`, or in memory."""
    con = duckdb.connect(config=config)
    try:
        con.register("arrow_history", rows)
        con.execute("CREATE TABLE history AS FROM arrow_history")
        return lookups.build(layout, con, folder)
    finally:
        con.close()


def _write_model(spark, settings: Settings, folder: Path, db, version, unservable: str) -> str:
    """Write into `folder` what the executors serve besides history: the model's booster, spec and metrics, its
    compiled trees once checked against XGBoost; keeps its version, metrics and drift baseline in _LAST_MODEL.
    Returns what answers: "model" or the fallback's source."""
    meta, raw, baseline = {"version": None, "spec": None, "metrics": {}, "unservable": unservable}, None, None
    if db is not None and version is None:
        with opened(db, read_only=True, settings=settings) as con:
            row = duck.deployed_row(con, settings.model_name, "version, booster, feature_spec, metrics")
            if row is not None:
                meta |= {"version": row[0], "spec": row[2], "metrics": json.loads(row[3])}
                raw = bytes(row[1])
                beside = serving.checked_folder(con, hashlib.md5(raw).hexdigest())
                if beside is not None and beside.is_dir():  # checked by a DuckDB process already: no XGBoost here
                    shutil.copytree(beside, folder / beside.name)
                baseline = con.sql("SELECT * EXCLUDE (model_name, version) FROM drift_baseline WHERE "
                                   "model_name = ? AND version = ?", params=[settings.model_name, row[0]]).to_arrow_table()
    if version is not None:
        from . import store  # imports MLflow (seconds): only to serve a version from the store

        client = store.mlflow_client(db if db is not None else "mlflow.db", existing=True)
        found = store.find_version(client, settings, version)
        raw, spec, metrics, baseline = store.read_version(settings, found)
        meta |= {"version": int(found.version), "spec": json.dumps(spec), "metrics": metrics}
    if raw is not None:
        (folder / "booster.ubj").write_bytes(raw)
        meta["checked"] = serving.checked_name(hashlib.md5(raw).hexdigest())
    (folder / BUNDLE_META).write_text(json.dumps(meta))
    _LAST_MODEL[spark.sparkContext.applicationId] = (meta["version"], meta["metrics"],
                                                     baseline if meta["version"] is not None else None)
    # checks the compiled trees (written into the folder) and says what answers
    return serving.Predictor(Bundle(folder), settings, warn=False).model().source


def _baseline_view(spark, settings: Settings) -> int | None:
    """The view drift_baseline: the drift baseline of the model served last (none: no view). Returns its version.
    Made only where read (register(), drift()): predict() alone does not need it."""
    version, _, baseline = _LAST_MODEL.get(spark.sparkContext.applicationId, (None, {}, None))
    spark.catalog.dropTempView("drift_baseline")
    if baseline is None:
        return None
    spark.createDataFrame(baseline).selectExpr(f"'{settings.model_name}' AS model_name", f"{int(version)} AS version",
                                                "*").createOrReplaceTempView("drift_baseline")
    return version


class Bundle(serving.ModelSource):
    """A model bundle register() or predict() wrote (model.json, the booster, its checked trees; register()'s also
    the history index): what Spark's executors serve."""

    def __init__(self, folder: Path):
        self.folder = folder

    def load(self, settings: Settings) -> serving.LoadedModel:
        try:
            meta = json.loads((self.folder / BUNDLE_META).read_text())
            if meta["unservable"]:  # the empty index of the shipped layout, as serving.history_index gives
                index = serving.no_history(FEATURES)
            elif not (self.folder / "index").is_dir():  # predict()'s bundle: each group brings its own history
                index = serving.no_history(settings.definition)
            else:
                index = lookups.HistoryIndex(lookups.Layout.of(settings.definition),
                                             arrays=lookups.mapped(self.folder / "index"))
        except Exception as e:  # noqa: BLE001  as serving.load_from_file: the fallback, tried again next batch
            return serving.read_failed(None, e)
        return serving.load(settings, index, meta["unservable"], meta["version"], meta["spec"],
                            (self.folder / "booster.ubj").read_bytes,
                            self.folder / meta["checked"] if "checked" in meta else None)

    def booster_bytes(self, settings: Settings) -> bytes:
        return (self.folder / "booster.ubj").read_bytes()


_SERVED: dict[str, serving.Predictor] = {}
_SERVED_LOCK = threading.Lock()


def _served(name: str, settings: Settings) -> serving.Predictor:
    """The bundle's predictor in this Python worker (it loads the bundle on its first call)."""
    found = _SERVED.get(name)
    if found is None:
        with _SERVED_LOCK:
            found = _SERVED.get(name)
            if found is None:
                from pyspark import SparkFiles, TaskContext  # on an executor: pyspark is there

                task = TaskContext.get()  # a task's share of the cores (spark.task.cpus): its batches use no more
                found = _SERVED[name] = serving.Predictor(Bundle(Path(SparkFiles.get(name))), settings,
                                                            warn=False, threads=task.cpus() if task else None)
    return found


# ---- drift ------------------------------------------------------------------------------------------------------

def drift(spark, settings: Settings | None = None, *, db: str | os.PathLike | None = None,
          version: int | str | None = None, window_days: int | None = None, end: dt.date | None = None) -> DriftReport:
    """sql/drift.sql in Spark SQL: the usable lines of the `window_days` days up to `end` (default: the latest sale)
    against the drift baseline of the model predict() serves (`version` from the store, else the one deployed in
    `db`), each line's class from the join path. The statistics run on the executors over (value, count) pairs: only
    aggregates and the report's rows reach the driver. The report as monitor.check gives it (not saved:
    monitor.save_report writes it into a database file)."""
    settings = settings or load_settings()
    if end is None:
        end = spark.sql("SELECT max(sale_day) FROM usable_lines").collect()[0][0]
        if end is None:
            raise DriftError("there are no usable invoice lines to check")
    start = end - dt.timedelta(days=(window_days or settings.drift_window_days) - 1)
    window = spark.sql(f"SELECT * FROM usable_lines WHERE sale_day BETWEEN DATE '{start.isoformat()}' AND "
                       f"DATE '{end.isoformat()}'")
    scored = predict(spark, window, settings, db=db, version=version)
    served = _baseline_view(spark, settings)  # the baseline of the model predict() serves
    if served is None:
        raise DriftError("no model with a training baseline serves: promote a version into the database (each "
                         "retrain stores a baseline), or pass a version of the registry that has one")
    if not window.limit(1).count():
        raise DriftError(f"the window {start} .. {end} holds no usable invoice lines; choose another end or a longer "
                         "window")
    window.join(scored.select("line_id", scored["label"].alias("predicted")), "line_id") \
        .createOrReplaceTempView("drift_window")
    metrics = _LAST_MODEL[spark.sparkContext.applicationId][1]
    _register_drift(spark)
    script = statements("drift", settings, **drift_values(settings, served, metrics))
    for made, text in script[:-1]:
        if made == "drift_current_rows":  # DuckDB's temporary table: the rows kept on the executors (predicted once,
            # read by every test), without their lineage, which every test would otherwise plan again
            spark.table("drift_current").localCheckpoint().createOrReplaceTempView(made)
        else:
            spark.sql(text)
    rows = [dict(zip(COLUMNS, row)) for row in spark.sql(script[-1][1]).collect()]
    spark.catalog.dropTempView("drift_current_rows")
    return DriftReport(None, start, end, served, rows)


# ---- training ---------------------------------------------------------------------------------------------------

def _quantile_day(spark, fraction: float, where: str = "TRUE") -> dt.date | None:
    """DuckDB's quantile_disc(sale_day, fraction) over Spark's usable_lines (the same day for the same lines)."""
    return spark.sql(f"""SELECT date_add(DATE '1970-01-01', CAST(percentile_disc({fraction})
                            WITHIN GROUP (ORDER BY datediff(sale_day, DATE '1970-01-01')) AS INT))
                         FROM usable_lines WHERE {where}""").collect()[0][0]


def choose_cutoff(spark, settings: Settings, cutoff: str | None = None) -> dt.date:
    """training.choose_cutoff on Spark's usable_lines (the same day for the same lines)."""
    from .training import TrainingError, given_cutoff  # XGBoost (2 s): training only

    day = given_cutoff(settings, cutoff) or _quantile_day(spark, 1 - settings.valid_fraction)
    if day is None:
        raise TrainingError("there are no usable invoice lines; create_views() over some invoices first")
    return day


def retrain(spark, db_path: str | os.PathLike, settings: Settings | None = None, *, cutoff: str | None = None,
            num_workers: int | None = None) -> tuple[int, dict]:
    """Train on Spark's training_set (create_views first) with xgboost.spark.SparkXGBClassifier: the three slices,
    class weights, parameters and early stopping of `sales-sql retrain`; log the run to the MLflow store of db_path
    and register a new version (its drift baseline goes into db_path, as a DuckDB retrain's does). Returns (version,
    test-slice metrics)."""
    import mlflow  # MLflow and XGBoost (seconds): only a retrain needs them

    from . import registration, store, training

    settings = settings or load_settings()
    day = choose_cutoff(spark, settings, cutoff)
    stop_from = _quantile_day(spark, 1 - settings.stop_fraction, f"sale_day < DATE '{day.isoformat()}'") \
        if settings.early_stopping_rounds else None
    spec = training.feature_spec(settings)
    part = training.slice_of(day, stop_from)
    last = spark.sql("SELECT max(line_id) FROM usable_lines").collect()[0][0]
    slices = {s: (first, final, n) for s, first, final, n in spark.sql(training.slices_sql(day, stop_from)).collect()}
    training.check_slices(slices, day, stop_from)
    counts = {c: n for c, n in spark.sql(f"SELECT label, count(*) FROM training_set WHERE {part} = 'train' "
                                          "GROUP BY label").collect()}
    train_counts = [counts.get(c, 0) for c in CLASSES]
    if sum(n > 0 for n in train_counts) < 2:
        raise training.TrainingError(f"the training slice (before {stop_from or day}) holds only one class; a "
                                     "classifier needs at least two")
    weights = training.class_weights(train_counts, settings.class_weight)
    index = " ".join(f"WHEN '{c}' THEN {i}" for i, c in enumerate(CLASSES))
    weight = " ".join(f"WHEN '{c}' THEN {float(w)!r}" for c, w in zip(CLASSES, weights))
    # the features as one array (NULL: NaN, XGBoost's missing value): xgboost.spark reads a batch of lines without
    # early-stopping lines fine that way, where its one-column-a-feature form fails (KeyError 'values')
    features = ", ".join(f"coalesce(CAST({f'hashed[{f[7:]}]' if f.startswith('hashed_') else f} AS FLOAT), "
                         "CAST('NaN' AS FLOAT))" for f in spec["features"])
    # the features once (fit, evaluation and the baseline sample read them), with what the baseline keeps
    data = spark.sql(f"""SELECT array({features}) AS features, CASE label {index} END AS label_index,
                                CASE label {weight} END AS weight,
                                {part} AS slice, {part} = 'stop' AS is_stop, line_id, quantity_sold,
                                unit_price AS price, branch_id, item_code, sale_day
                         FROM training_set""").cache()
    workers = num_workers or spark.sparkContext.defaultParallelism
    classifier = classifier_for(settings, workers, stop_from is not None)
    client = store.mlflow_client(db_path)
    experiment_id = store.experiment_id(client, db_path, settings)
    try:
        with mlflow.start_run(experiment_id=experiment_id):
            registration.log_settings(settings, spec, engine="spark", num_workers=workers)
            model = classifier.fit(data.where("slice <> 'test'"))
            booster = model.get_booster()
            booster.feature_names = spec["features"]
            rounds = booster.num_boosted_rounds()
            kept = booster.best_iteration if stop_from is not None and booster.attr("best_iteration") else rounds - 1
            booster = booster[: kept + 1]
            curve = model.training_summary.validation_objective_history.get("mlogloss", [])
            for step, loss in enumerate(curve):
                mlflow.log_metric("stop_mlogloss", loss, step=step)
            weights = stop = None
            if stop_from is not None:  # the decision weights, chosen on the early-stopping slice (as on DuckDB)
                tried = candidates(settings.decision)
                cms, loss = _validate(spark, data.where("is_stop"), booster, tried)
                chosen = best(cms)
                weights, stop = tried[chosen].tolist(), confusion_metrics(cms[chosen], loss)
            spec = registration.decided(spec, weights)
            cms, loss = _validate(spark, data.where("slice = 'test'"), booster, [weights or [1.0] * len(CLASSES)])
            metrics = confusion_metrics(cms[0], loss)
            baselines = training.baseline_metrics(
                spark.sql(training.baselines_sql(sql_text, settings, day, last)).collect())
            mlflow.log_metrics({"best_iteration": kept, "resumed_from": 0})
            # the drift baseline: a seeded sample of the training lines (about BASELINE_ROWS) with the model's classes
            rows = training.BASELINE_ROWS
            picked = data.where("slice = 'train'").sample(min(1.0, 1.2 * rows / sum(train_counts)), settings.seed) \
                .orderBy("line_id").limit(rows).toArrow()
            X = _matrix(picked["features"], len(spec["features"]))
            sample = picked.select(["quantity_sold", "price", "branch_id", "item_code", "sale_day"]) \
                .rename_columns(["quantity_sold", "unit_price", "branch_id", "item_code", "sale_day"])
            return registration.register_version(
                db_path, settings, client, booster, spec, metrics, baselines,
                lambda: training.baseline_table(SimpleNamespace(X_sample=X, spec=spec, sample=sample), booster,
                                                weights),
                slices, last, stop)
    finally:
        data.unpersist()


def classifier_for(settings: Settings, workers: int, early_stopping: bool):
    """The SparkXGBClassifier of a retrain: training.xgb_params under the estimator's names (one mapping, so the run
    record says what ran), on the features, label, class weight and early-stopping slice of retrain's data."""
    from xgboost.spark import SparkXGBClassifier  # XGBoost (2 s): training only

    from .training import xgb_params  # XGBoost (2 s): training only

    names = {"eta": "learning_rate", "seed": "random_state"}  # the rest keep their names; the estimator sets the
    params = {names.get(k, k): v for k, v in xgb_params(settings).items()  # objective and its workers' threads
              if k not in ("objective", "num_class", "nthread")}
    stopping = {"validation_indicator_col": "is_stop", "early_stopping_rounds": settings.early_stopping_rounds} \
        if early_stopping else {}
    return SparkXGBClassifier(features_col="features", label_col="label_index", weight_col="weight",
                              num_workers=workers, n_estimators=settings.num_boost_round, **stopping, **params)


def _matrix(features, width: int) -> np.ndarray:
    """retrain's `features` arrays (an Arrow list column) as a float32 matrix."""
    flat = (features.combine_chunks() if isinstance(features, pa.ChunkedArray) else features).flatten()
    return flat.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, width)


def _validate(spark, valid, booster, weights) -> tuple[np.ndarray, float]:
    """The confusion matrices of the booster's classes under each row of `weights` (metrics.confusions: (n, 3, 3))
    and its log loss, on the rows of `valid`, computed on the executors (only nine counts per row of weights and a
    sum reach the driver)."""
    raw = spark.sparkContext.broadcast(bytes(booster.save_raw("ubj")))
    weights = np.asarray(weights, np.float64)

    def score(batches):
        import xgboost as xgb  # on the executors, for this job

        model = xgb.Booster()
        model.load_model(bytearray(raw.value))
        model.set_param({"nthread": 1})
        for rb in batches:
            p = model.inplace_predict(_matrix(rb.column("features"), width))
            y = rb.column("label_index").to_numpy(zero_copy_only=False).astype(np.int64)
            counts = confusions(y, p, weights).ravel()
            loss = np.zeros(len(counts))
            loss[0] = -np.log(np.clip(p[np.arange(len(y)), y], 1e-15, 1.0)).astype(np.float64).sum()
            yield pa.RecordBatch.from_arrays([pa.array(np.arange(len(counts), dtype=np.int32)), pa.array(counts),
                                              pa.array(loss)], names=["cell", "n", "loss"])

    width = booster.num_features()
    rows = valid.select("features", "label_index").mapInArrow(score, "cell int, n long, loss double") \
        .groupBy("cell").agg({"n": "sum", "loss": "sum"}).collect()
    cms = np.zeros(len(weights) * 9, np.int64)
    total = 0.0
    for r in rows:
        cms[r["cell"]] = r["sum(n)"]
        total += r["sum(loss)"]
    cms = cms.reshape(-1, 3, 3)
    return cms, total / max(cms[0].sum(), 1)
