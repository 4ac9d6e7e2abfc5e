"""Bulk scoring: every matching invoice line's prediction written into a table in one statement (all or nothing),
in batches streamed through DuckDB's Arrow reader."""
from __future__ import annotations

import duckdb
import pyarrow as pa

from . import inputs
from .config import Settings
from .duck import batches_of, first_row, quote_ident
from .serving import DatabaseFile, LoadedModel, Predictor, columns

SCORED = pa.schema([("line_id", pa.int64()), ("label", pa.string()), ("p_low", pa.float64()),
                    ("p_medium", pa.float64()), ("p_high", pa.float64()), ("source", pa.string()),
                    ("model_version", pa.int32())])


class ScoreError(ValueError):
    """Bulk scoring was refused; nothing was written."""


def scoring_query(where: str | None) -> str:
    """The invoice lines to score; `where` must be a filter expression only (one SELECT, nothing else)."""
    sql = f"SELECT line_id, {', '.join(inputs.NAMES)} FROM invoices"
    if where:
        sql += f" WHERE ({where})"
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise ScoreError(f"--where {where!r} is not a filter expression: {str(e).splitlines()[0]}") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise ScoreError(f"--where {where!r} must be one filter expression over invoices columns, such as "
                         "\"sale_time >= DATE '2025-12-01'\"; it may not end the statement or start another")
    return sql


def score_into(con, settings: Settings, table: str, where: str | None = None, *, replace: bool = False,
               batch_rows: int = 100_000, progress=None) -> tuple[int, LoadedModel]:
    """Write one row of predictions per matching invoice line into `table` in one statement (all or nothing).

    Lines stream through in batches of `batch_rows` (DuckDB's Arrow reader), each predicted by the predictor of
    the file's deployed model (the compiled trees, split over the cores), so memory stays flat however many lines
    match. Returns the lines scored and the model that answered (or the fallback).
    """
    if batch_rows < 1:
        raise ScoreError(f"--batch-rows {batch_rows} must be at least 1 (lines per prediction batch)")
    sql = scoring_query(where)
    exists = first_row(con, "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND NOT temporary", [table])[0]
    if exists and not replace:
        raise ScoreError(f"table {table!r} already exists; pass --replace to overwrite it or choose another --into")
    try:
        total = first_row(con, f"SELECT count(*) FROM ({sql})")[0]
    except duckdb.Error as e:
        raise ScoreError(f"--where {where!r} does not work on invoices: {str(e).splitlines()[0]}") from None
    predictor = Predictor(DatabaseFile(con), settings)
    model = predictor.model()
    reader = con.cursor()
    failed = []  # what stopped the batches: raised as it is, not as the DuckDB error that wraps its traceback

    def batches():
        done = 0
        try:
            for rb in batches_of(reader.sql(sql).to_arrow_reader(batch_rows), batch_rows):
                yield pa.record_batch([rb.column(0), *columns(*predictor.predict(*rb.columns[1:]))], schema=SCORED)
                done += rb.num_rows
                if progress:
                    progress(done, total)
        except BaseException as e:
            failed.append(e)
            raise

    con.register("_sales_sql_scored", pa.RecordBatchReader.from_batches(SCORED, batches()))
    try:
        con.execute(f"CREATE {'OR REPLACE ' if replace else ''}TABLE {quote_ident(table)} AS "
                    "FROM _sales_sql_scored")
    except duckdb.Error:
        if failed:
            raise failed[0] from None
        raise
    finally:
        con.unregister("_sales_sql_scored")
        reader.close()
    return total, model
