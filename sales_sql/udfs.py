"""The DuckDB layer only: registering the engine-agnostic functions as vectorized UDFs.

The modules behind them (numba's kernels: 0.5 s and 120 MB to import) are imported on a function's first call, so
connecting, loading and plain queries do without them."""
from __future__ import annotations

import inspect
import threading

import duckdb
import pyarrow as pa

from . import inputs
from .config import Settings
from .duck import invalidate
from .structs import CHI2, EXPLANATION, KS, PREDICTION, Struct


def per_row(name: str, struct: Struct):
    """An arrow UDF over two list columns: drift.`name` on each row's pair of lists (a NULL list counts as empty)."""
    fields, arrow_type = struct.names, struct.arrow

    def udf(current, baseline):
        from . import drift  # scipy: on the first call

        test = getattr(drift, name)
        current = current.combine_chunks() if isinstance(current, pa.ChunkedArray) else current
        baseline = baseline.combine_chunks() if isinstance(baseline, pa.ChunkedArray) else baseline
        rows = [test(_values(current, i), _values(baseline, i)) for i in range(len(current))]
        return pa.array([{f: r[f] for f in fields} for r in rows], arrow_type)

    return udf


def _values(lists: pa.Array, i: int) -> pa.Array:
    row = lists[i]
    return row.values if row.is_valid else pa.array([], lists.type.value_type)


def _replace_function(con: duckdb.DuckDBPyConnection, name: str, fn, params, returns, **kw) -> None:
    # DuckDB refuses to register a name twice; removing first makes registration idempotent.
    try:
        con.remove_function(name)
    except (duckdb.InvalidInputException, duckdb.CatalogException):
        pass
    con.create_function(name, fn, params, returns, **kw)


def register_udfs(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    buckets = settings.buckets

    def hash_features(branch_id, item_code):
        from .features import hash_features_arrow  # numba's kernels: on the first call

        return hash_features_arrow(branch_id, item_code, buckets)

    _replace_function(
        con, "hash_features", hash_features, ["VARCHAR", "VARCHAR"], f"FLOAT[{buckets}]",
        type="arrow", null_handling="special",
    )
    _replace_function(con, "ks_drift", per_row("ks_drift", KS), ["DOUBLE[]", "DOUBLE[]"], KS.duckdb,
                      type="arrow", null_handling="special")
    _replace_function(con, "chi2_drift", per_row("chi2_drift", CHI2), ["VARCHAR[]", "VARCHAR[]"], CHI2.duckdb,
                      type="arrow", null_handling="special")
    for name, struct, value in (("ks_drift_counted", KS, "DOUBLE"), ("chi2_drift_counted", CHI2, "VARCHAR")):
        pairs = f"STRUCT(value {value}, n BIGINT)[]"  # each distinct value and its count (sql/drift.sql)
        _replace_function(con, name, per_row(name, struct), [pairs, pairs], struct.duckdb, type="arrow",
                          null_handling="special")
    register_prediction(con, settings)


def register_prediction(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """_sales_predict / _sales_class / _sales_explain (the macros in sql/predict.sql wrap them), answered by a fresh
    Predictor that loads the deployed model on first use; other predictors of this process reload too."""
    invalidate()
    made, lock = [], threading.Lock()

    def predictor():
        if not made:
            with lock:
                if not made:
                    from .serving import DatabaseFile, Predictor  # numba's kernels: on the first prediction

                    made.append(Predictor(DatabaseFile(con), settings))
        return made[0]

    def calling(method):
        def udf(*columns):
            return getattr(predictor(), method)(*columns)
        # DuckDB counts a function's parameters: one per input
        udf.__signature__ = inspect.Signature([inspect.Parameter(name, inspect.Parameter.POSITIONAL_ONLY)
                                               for name in inputs.NAMES])
        return udf

    args = [inputs.UDF_TYPES[name] for name in inputs.NAMES]
    for name, method, returns in (("_sales_predict", "predict_arrow", PREDICTION.duckdb),
                                  ("_sales_class", "class_arrow", "VARCHAR"),
                                  ("_sales_explain", "explain_arrow", EXPLANATION.duckdb)):
        _replace_function(con, name, calling(method), args, returns, type="arrow", null_handling="special")
