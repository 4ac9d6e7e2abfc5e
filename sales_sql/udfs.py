"""The DuckDB layer only: registering the engine-agnostic functions as vectorized UDFs."""
from __future__ import annotations

import duckdb

from .config import Settings
from .features import hash_features_arrow


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
