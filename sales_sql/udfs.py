"""The DuckDB layer only: registering the engine-agnostic functions as vectorized UDFs."""
from __future__ import annotations

import duckdb
import pyarrow as pa

from .config import Settings
from .drift import CHI2_FIELDS, KS_FIELDS, chi2_drift, ks_drift
from .features import hash_features_arrow

KS_TYPE = ("STRUCT(statistic DOUBLE, p_value DOUBLE, effect_size DOUBLE, n_current BIGINT, n_baseline BIGINT)")
CHI2_TYPE = ("STRUCT(statistic DOUBLE, p_value DOUBLE, dof INTEGER, effect_size DOUBLE, categories BIGINT, "
             "n_current BIGINT, n_baseline BIGINT)")
_KS_ARROW = pa.struct([("statistic", pa.float64()), ("p_value", pa.float64()), ("effect_size", pa.float64()),
                       ("n_current", pa.int64()), ("n_baseline", pa.int64())])
_CHI2_ARROW = pa.struct([("statistic", pa.float64()), ("p_value", pa.float64()), ("dof", pa.int32()),
                         ("effect_size", pa.float64()), ("categories", pa.int64()), ("n_current", pa.int64()),
                         ("n_baseline", pa.int64())])


def _per_row(test, fields, arrow_type):
    """An arrow UDF over two list columns: `test` on each row's pair of lists (a NULL list counts as empty)."""

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
    _replace_function(con, "ks_drift", _per_row(ks_drift, KS_FIELDS, _KS_ARROW), ["DOUBLE[]", "DOUBLE[]"], KS_TYPE,
                      type="arrow", null_handling="special")
    _replace_function(con, "chi2_drift", _per_row(chi2_drift, CHI2_FIELDS, _CHI2_ARROW), ["VARCHAR[]", "VARCHAR[]"],
                      CHI2_TYPE, type="arrow", null_handling="special")
    register_prediction(con, settings)


def register_prediction(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """_sales_predict / _sales_class / _sales_explain (the macros in sql/predict.sql wrap them), answered by a fresh
    Predictor that loads the deployed model on first use; other predictors of this process reload too."""
    from .predict import EXPLAIN_TYPE, PREDICT_TYPE, Predictor, invalidate

    invalidate()
    predictor = Predictor(con, settings)
    args = ["DATE", "VARCHAR", "VARCHAR", "DOUBLE", "VARCHAR"]
    _replace_function(con, "_sales_predict", predictor.predict_arrow, args, PREDICT_TYPE, type="arrow",
                      null_handling="special")
    _replace_function(con, "_sales_class", predictor.class_arrow, args, "VARCHAR", type="arrow",
                      null_handling="special")
    _replace_function(con, "_sales_explain", predictor.explain_arrow, args, EXPLAIN_TYPE, type="arrow",
                      null_handling="special")
