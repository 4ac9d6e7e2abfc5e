"""The five inputs of every prediction, defined once: their names, the seed system's names for them, and how raw
values become what the serving code takes. DuckDB's macros (sql/predict.sql, rendered from here), Spark's functions
and the pyfunc all cast through this module, so a rule changes in one place.

The rules (docs/sql.md, "Arguments"):
- sale time: a TIMESTAMP or DATE as it is; ISO text as a wall-clock time, text with an offset or a zone converted
  line by line to the time_zone setting's wall-clock time (as the loader does: Spark and the pyfunc; DuckDB's
  TRY_CAST drops the offset); a zoned TIMESTAMP as its wall-clock time there; anything else is no time (source
  invalid_date).
- branch, item, customer: text; whole numbers stored as floats (17850.0) as '17850', as the loader reads them (Spark
  and the pyfunc; DuckDB's CAST writes '17850.0': pass keys as text or integers in SQL).
- price: a number; NULL (or left out) is no price; anything else that is present (text that is no number, a
  boolean, NaN) is not a price (source invalid_price), never "no price".
"""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

NAMES = ("sale_time", "branch_id", "item_code", "unit_price", "customer_id")
SEED_NAMES = {"sale_time": "Date", "branch_id": "BranchID", "item_code": "ItemCode", "unit_price": "UnitPrice",
              "customer_id": "CustomerID"}
REQUIRED = NAMES[:3]   # unit_price and customer_id may be left out
SQL_ARGS = {"sale_time": "sale_date", "branch_id": "branch_id", "item_code": "item_code", "unit_price": "unit_price",
            "customer_id": "customer_id"}   # the SQL functions' argument names
UDF_TYPES = {"sale_time": "TIMESTAMP", "branch_id": "VARCHAR", "item_code": "VARCHAR", "unit_price": "DOUBLE",
             "customer_id": "VARCHAR"}      # what the UDFs behind them take (DuckDB), after the macros' casts
KEYS = ("branch_id", "item_code", "customer_id")   # the keys among them (lookups.py's kernels read these)
# a time of day followed by a zone or an offset: Z, +09, -0500, +05:30 (the loader's test for zoned text too)
ZONED_TEXT = r"\d:\d\d(:\d\d(\.\d+)?)?\s*(Z|[+-]\d\d(:?\d\d)?)$"

# DuckDB: each argument's cast inside the prediction macros ({} is the argument)
SQL_CASTS = {"sale_time": "TRY_CAST({} AS TIMESTAMP)", "branch_id": "CAST({} AS VARCHAR)",
             "item_code": "CAST({} AS VARCHAR)", "unit_price": "_sales_price({})",
             "customer_id": "CAST({} AS VARCHAR)"}
SQL_PRICE = ("CREATE OR REPLACE MACRO _sales_price(p) AS\n"
             "    CASE WHEN p IS NULL THEN NULL ELSE coalesce(TRY_CAST(p AS DOUBLE), 'NaN'::DOUBLE) END;\n")
# the SQL functions over the UDFs of serving.py
MACROS = {"predict_sales": "_sales_predict", "predict_sales_class": "_sales_class",
          "explain_sales_class": "_sales_explain"}


def render_predict(definition=None) -> str:
    """sql/predict.sql: the prediction macros, each with the required arguments and then each optional one in turn
    (the definition does not enter)."""
    args = [SQL_ARGS[name] for name in NAMES]
    counts = range(len(REQUIRED), len(NAMES) + 1)
    out = ["-- Rendered from sales_sql/inputs.py by `make sql`: edit the inputs there, not this file.\n"
           "-- The prediction functions: thin macros over the _sales_predict / _sales_class / _sales_explain UDFs\n"
           "-- (sales_sql/serving.py). Arguments are cast here (docs/sql.md): a sale date that does not cast gives a\n"
           "-- NULL answer with source 'invalid_date', a price that is present but no number one with source\n"
           "-- 'invalid_price', instead of failing the query; unit_price and customer_id may be left out.\n",
           "-- a price: NULL stays NULL (no price); present but no number: NaN, which serving answers as invalid_price\n"
           + SQL_PRICE]

    def called(udf: str, n: int) -> str:
        cast = [SQL_CASTS[name].format(arg) for name, arg in zip(NAMES[:n], args[:n])]
        return f"{udf}({', '.join(cast + ['NULL'] * (len(NAMES) - n))})"

    for macro, udf in MACROS.items():
        bodies = ",\n    ".join(f"({', '.join(args[:n])}) AS\n        {called(udf, n)}" for n in counts)
        out.append(f"CREATE OR REPLACE MACRO {macro}{bodies};\n")
    bodies = ",\n    ".join(f"({', '.join(args[:n])}) AS\n        predict_sales({', '.join(args[:n])}).proba"
                           for n in counts)
    out.append(f"CREATE OR REPLACE MACRO predict_sales_proba{bodies};\n")
    return "\n".join(out)


# ---- Arrow: Spark's functions and the pyfunc ---------------------------------------------------------------

def arguments(args, zone: str) -> list[pa.Array]:
    """The functions' arguments (Arrow arrays: the required ones, then any of the optional ones in order) cast as the
    rules above say, one per name of NAMES (NULL for those left out)."""
    if not len(REQUIRED) <= len(args) <= len(NAMES):
        names = ", ".join(SQL_ARGS[name] for name in REQUIRED) + "".join(
            f"[, {SQL_ARGS[name]}" for name in NAMES[len(REQUIRED):]) + "]" * (len(NAMES) - len(REQUIRED))
        raise TypeError(f"the prediction functions take {len(REQUIRED)} to {len(NAMES)} arguments ({names}), not "
                        f"{len(args)}")
    args = [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in args]
    given = args + [absent(name, len(args[0])) for name in NAMES[len(args):]]
    return [cast(name, values, zone) for name, values in zip(NAMES, given)]


def absent(name: str, n: int) -> pa.Array:
    """An optional input left out, for n lines: no price, no key."""
    return pa.nulls(n, pa.float64() if name == "unit_price" else pa.string())


def cast(name: str, values: pa.Array, zone: str) -> pa.Array:
    """One input's values as the serving code takes them (the rules above)."""
    if name == "sale_time":
        return sale_times(values, zone)
    return prices(values) if name == "unit_price" else keys(values)


def sale_times(values: pa.Array, zone: str) -> pa.Array:
    """timestamp[us] (or date32 as it is), NULL where a value is no time."""
    t = values.type
    if pa.types.is_timestamp(t):
        return pc.local_timestamp(values.cast(pa.timestamp(t.unit, zone))) if t.tz else values
    if pa.types.is_date(t):
        return values
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return pa.nulls(len(values), pa.timestamp("us"))
    try:  # ISO text without a zone: Arrow's parser, at once (it refuses offsets: those go line by line)
        return values.cast(pa.timestamp("us"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        to = ZoneInfo(zone)
        return pa.array([_time(v, to) for v in values.to_pylist()], pa.timestamp("us"))


def _time(text: str | None, zone: ZoneInfo) -> dt.datetime | None:
    if text is None:
        return None
    try:
        t = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return t.astimezone(zone).replace(tzinfo=None) if t.tzinfo is not None else t


def keys(values: pa.Array) -> pa.Array:
    """Text; whole numbers stored as floats as the integer's text."""
    t = values.type
    if t == pa.string():
        return values
    if pa.types.is_floating(t):
        whole = pc.fill_null(pc.equal(values, pc.trunc(values)), False)
        as_int = pc.cast(pc.if_else(whole, values, None), pa.int64(), safe=False).cast(pa.string())
        return pc.if_else(whole, as_int, values.cast(pa.string()))
    return values.cast(pa.string())


def prices(values: pa.Array) -> pa.Array:
    """float64; NULL where no price was given, NaN where one was given that is no number."""
    t = values.type
    if t == pa.float64():
        return values
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return values.cast(pa.float64())
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:  # numbers as text (a CSV body's prices): Arrow's parser, at once
            return values.cast(pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # text that is no number among them: value by value, below
        out = []
        for v in values.to_pylist():
            try:
                out.append(None if v is None else float(v))
            except ValueError:
                out.append(np.nan)
        return pa.array(out, pa.float64())
    return pc.if_else(values.is_valid(), np.nan, pa.scalar(None, pa.float64()))  # booleans, times: no number


def not_a_price(prices: pa.Array) -> np.ndarray:
    """Where a price (float64, as prices() gives it: NULL where none was given) is given but no number: NaN."""
    nan = np.isnan(prices.fill_null(0.0).to_numpy(zero_copy_only=False))
    return nan & prices.is_valid().to_numpy(zero_copy_only=False) if prices.null_count else nan
