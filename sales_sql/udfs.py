"""The DuckDB layer only: registering the engine-agnostic functions as vectorized UDFs."""
from __future__ import annotations

import duckdb
import pyarrow as pa

from .config import Settings
from .drift import chi2_drift, ks_drift
from .features import hash_features_arrow
from .serving import Predictor, invalidate
from .structs import CHI2, EXPLANATION, KS, PREDICTION, Struct


def _per_row(test, struct: Struct):
    """An arrow UDF over two list columns: `test` on each row's pair of lists (a NULL list counts as empty)."""
    fields, arrow_type = struct.names, struct.arrow

    def udf(current, baseline):
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
        return hash_features_arrow(branch_id, item_code, buckets)

    _replace_function(
        con, "hash_features", hash_features, ["VARCHAR", "VARCHAR"], f"FLOAT[{buckets}]",
        type="arrow", null_handling="special",
    )
    _replace_function(con, "ks_drift", _per_row(ks_drift, KS), ["DOUBLE[]", "DOUBLE[]"], KS.duckdb,
                      type="arrow", null_handling="special")
    _replace_function(con, "chi2_drift", _per_row(chi2_drift, CHI2), ["VARCHAR[]", "VARCHAR[]"], CHI2.duckdb,
                      type="arrow", null_handling="special")
    register_prediction(con, settings)


def register_prediction(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """_sales_predict / _sales_class / _sales_explain (the macros in sql/predict.sql wrap them), answered by a fresh
    Predictor that loads the deployed model on first use; other predictors of this process reload too."""
    invalidate()
    predictor = Predictor(con, settings)
    args = ["TIMESTAMP", "VARCHAR", "VARCHAR", "DOUBLE", "VARCHAR"]
    _replace_function(con, "_sales_predict", predictor.predict_arrow, args, PREDICTION.duckdb, type="arrow",
                      null_handling="special")
    _replace_function(con, "_sales_class", predictor.class_arrow, args, "VARCHAR", type="arrow",
                      null_handling="special")
    _replace_function(con, "_sales_explain", predictor.explain_arrow, args, EXPLANATION.duckdb, type="arrow",
                      null_handling="special")
