"""DuckDB helpers that know nothing of sales_sql's connections: SQL text, quoting, transactions, lock errors, and
the one query for the deployed row (the version that answers predictions)."""
from __future__ import annotations

import contextlib
import re
import string

import duckdb
import pyarrow as pa

from .config import Settings, shipped
from .definition import FIRST_TIME, LAST_TIME, RENDERED

generation = 0  # bumped whenever a database may have new invoices or a new deployed model (serving.py reloads)


def invalidate() -> None:
    """Make every predictor in this process reload its model and history before its next batch."""
    global generation
    generation += 1


def sql_text(name: str, settings: Settings, **values) -> str:
    """The text of sql/NAME.sql (history and training_set: rendered from the settings' feature definition, which
    the committed files equal) with $low_max / $medium_max / $buckets filled in from the settings (and any other
    $names from `values`, which must be numbers or already quoted SQL)."""
    text = RENDERED[name](settings.definition) if name in RENDERED else shipped(f"sql/{name}.sql").read_text("utf-8")
    return fill(text, settings, **values)


def fill(text: str, settings: Settings, **values) -> str:
    """SQL text with $low_max / $medium_max / $buckets / $first_time / $last_time from the settings (`values` may
    give those too, and any other $names)."""
    return string.Template(text).substitute({"low_max": settings.low_max, "medium_max": settings.medium_max,
                                             "buckets": settings.buckets, "first_time": FIRST_TIME,
                                             "last_time": LAST_TIME, **values})


def run_sql(con: duckdb.DuckDBPyConnection, name: str, settings: Settings) -> None:
    con.execute(sql_text(name, settings))


def quote_literal(text: str) -> str:
    """Text as a quoted SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    """A name as a quoted SQL identifier (any text is safe inside)."""
    return '"' + name.replace('"', '""') + '"'


def first_row(con: duckdb.DuckDBPyConnection, sql: str, params=None) -> tuple | None:
    """The first row of a query, with the result fully consumed (DuckDB 2 refuses some calls, such as
    create_function, while a result is still open)."""
    rows = con.execute(sql, params).fetchall() if params is not None else con.execute(sql).fetchall()
    return rows[0] if rows else None


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection):
    """BEGIN ... COMMIT around the block; ROLLBACK (and the exception goes on) when the block or COMMIT fails."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def history_built(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """What the history tables were built from (sales_sql_meta's history_* rows: the settings' and the invoices'
    signatures; db.history_stale compares them with now)."""
    return dict(con.execute("SELECT key, value FROM sales_sql_meta WHERE key LIKE 'history_%'").fetchall())


def lock_holder(error: Exception | str) -> str | None:
    """The process named by DuckDB's lock error ("PID 123 (/usr/bin/python3)"), None for any other error. DuckDB lets
    one process write a file only while no other process has it open."""
    held = re.search(r"Conflicting lock is held in (.*?) \(PID (\d+)\)", str(error))
    return f"PID {held.group(2)} ({held.group(1)})" if held else None


def is_read_only(con: duckdb.DuckDBPyConnection) -> bool:
    return first_row(con, "SELECT current_setting('access_mode')")[0] == "read_only"


def deployed_row(con: duckdb.DuckDBPyConnection, model_name: str, columns: str = "version", *, arrow: bool = False):
    """The listed columns of the deployed row (the active row of deployed_models: the version predictions use), or
    None; as a one-row Arrow table with `arrow` (a booster's bytes then reach Python without a copy per step)."""
    sql = f"""SELECT {columns} FROM deployed_models WHERE status = 'active' AND model_name = ?
              ORDER BY deployment_id DESC LIMIT 1"""
    if arrow:
        table = con.sql(sql, params=[model_name]).to_arrow_table()
        return table if table.num_rows else None
    return first_row(con, sql, [model_name])


def batches_of(reader: pa.RecordBatchReader, rows: int):
    """The reader's lines in record batches of exactly `rows` (the last may be shorter): DuckDB's Arrow reader
    ends a batch at each row group (122,880 lines) however many lines are asked for."""
    held, count = [], 0
    for rb in reader:
        held.append(rb)
        count += rb.num_rows
        while count >= rows:
            table = pa.Table.from_batches(held, schema=reader.schema)
            yield table.slice(0, rows).combine_chunks().to_batches()[0]
            rest = table.slice(rows)
            held, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(held, schema=reader.schema).combine_chunks().to_batches()[0]
