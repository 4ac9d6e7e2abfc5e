"""Loading invoice lines from CSV and Parquet files with DuckDB's own readers.

Per file: all or nothing, idempotent (a line already in the database is a duplicate, not a second row),
and nothing is dropped silently: unusable lines are either refused (the default: the file is not loaded
and the first bad lines are named) or, with allow_rejects, recorded in rejected_rows with file, line and
reason while the good lines load.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from . import inputs
from .config import Settings, load_settings
from .db import update_history
from .definition import FIRST_TIME, LAST_TIME
from .duck import first_row, invalidate, quote_ident, quote_literal, transaction

TARGETS = ("sale_time", "branch_id", "invoice_number", "item_code", "quantity_sold", "unit_price", "customer_id")
REQUIRED = TARGETS[:5]
# the seed system's column names: the five inputs' (inputs.py) and the two only the loader reads, in TARGETS order
_SEED = {**inputs.SEED_NAMES, "invoice_number": "InvoiceNumber", "quantity_sold": "QuantitySold"}
SEED_NAMES = {t: _SEED[t] for t in TARGETS}
# Each target lists the source column names to try, in order.
PRESETS = {
    "seed": {t: [n] for t, n in SEED_NAMES.items()},
    # Both UCI Online Retail files as they are: 2009-2010 says Invoice/Price/"Customer ID",
    # 2010-2011 says InvoiceNo/UnitPrice/CustomerID; the branch is the country.
    "uci": {
        "sale_time": ["InvoiceDate"], "branch_id": ["Country"], "invoice_number": ["Invoice", "InvoiceNo"],
        "item_code": ["StockCode"], "quantity_sold": ["Quantity"], "unit_price": ["Price", "UnitPrice"],
        "customer_id": ["Customer ID", "CustomerID"],
    },
}
CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
_MAX_NAMED = 5  # bad lines named in an error message


class LoadError(ValueError):
    """A file could not be loaded; the database is unchanged."""


@dataclass
class LoadReport:
    file: str
    rows_read: int = 0
    loaded: int = 0
    duplicates: int = 0
    rejected: int = 0
    returns: int = 0  # loaded lines with quantity <= 0: kept, but not used for training
    reasons: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # where the time went: read, de-duplicate, history


def parse_mapping(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """['Date=InvoiceDate', 'unit_price=Price'] -> {'sale_time': 'InvoiceDate', 'unit_price': 'Price'}."""
    by_alias = {t: t for t in TARGETS} | {v.lower(): t for t, v in SEED_NAMES.items()}
    out = {}
    for pair in pairs:
        target, sep, source = pair.partition("=")
        key = by_alias.get(target.strip()) or by_alias.get(target.strip().lower())
        if not sep or not source or key is None:
            raise LoadError(
                f"mapping {pair!r} is not TARGET=SOURCE_COLUMN with TARGET one of "
                f"{', '.join(TARGETS)} (or {', '.join(SEED_NAMES.values())})"
            )
        out[key] = source
    return out


def _resolve_columns(columns: dict[str, str], preset: str, mapping: dict[str, str], path: str) -> dict[str, str]:
    if preset not in PRESETS:
        raise LoadError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    chosen = {}
    for target in TARGETS:
        candidates = [mapping[target]] if target in mapping else PRESETS[preset][target]
        lower = {c.lower(): c for c in columns}
        found = next((c for c in candidates if c in columns), None) or next(
            (lower[c.lower()] for c in candidates if c.lower() in lower), None
        )
        if found is not None:
            chosen[target] = found
        elif target in REQUIRED or target in mapping:
            raise LoadError(
                f"{path} has no column {' or '.join(map(repr, candidates))} for {target}; its columns are "
                f"{list(columns)}. Pass --map {target}=COLUMN (or --preset uci for the UCI files)."
            )
    return chosen



def _typed(target: str, col: str | None, sql_type: str | None, zone: str) -> str:
    """SQL turning a raw source column into the invoice column's type (NULL where it cannot). Zoned sale times
    become wall-clock times in `zone` (the time_zone setting), explicitly: never in DuckDB's session zone, which is
    the machine's."""
    if col is None:
        return "NULL"
    c = quote_ident(col)
    t = (sql_type or "").upper()
    numeric = t in {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                    "UBIGINT", "FLOAT", "DOUBLE", "REAL"} or t.startswith("DECIMAL")
    if target == "sale_time":
        if t in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"):
            return f"timezone({quote_literal(zone)}, {c})"
        if t.startswith("TIMESTAMP") or t == "DATE":
            return f"TRY_CAST({c} AS TIMESTAMP)"
        text = f"trim(CAST({c} AS VARCHAR))"
        return (f"CASE WHEN regexp_matches({text}, '{inputs.ZONED_TEXT}') "
                f"THEN timezone({quote_literal(zone)}, TRY_CAST({text} AS TIMESTAMPTZ)) "
                f"ELSE TRY_CAST({text} AS TIMESTAMP) END")
    if target in ("quantity_sold", "unit_price"):
        return f"TRY_CAST({c} AS DOUBLE)" if numeric else f"TRY_CAST(trim(CAST({c} AS VARCHAR)) AS DOUBLE)"
    if t in {"FLOAT", "DOUBLE", "REAL"} or t.startswith("DECIMAL"):
        # ids stored as floats (the UCI customer ids: 17850.0) become '17850'
        return f"CASE WHEN {c} = trunc({c}) THEN CAST(CAST({c} AS HUGEINT) AS VARCHAR) ELSE CAST({c} AS VARCHAR) END"
    return f"nullif(trim(CAST({c} AS VARCHAR)), '')"


def _raw(col: str | None) -> str:
    return "NULL" if col is None else f"nullif(trim(CAST({quote_ident(col)} AS VARCHAR)), '')"


_REASON = f"""
CASE
    WHEN raw_sale_time IS NULL THEN 'missing date'
    WHEN sale_time IS NULL THEN 'bad date: ' || raw_sale_time
    WHEN NOT sale_time BETWEEN {FIRST_TIME} AND {LAST_TIME}
        THEN 'date outside the years 1 to 9999: ' || raw_sale_time
    WHEN branch_id IS NULL THEN 'missing branch'
    WHEN invoice_number IS NULL THEN 'missing invoice number'
    WHEN item_code IS NULL THEN 'missing item'
    WHEN raw_quantity_sold IS NULL THEN 'missing quantity'
    WHEN quantity_sold IS NULL OR NOT isfinite(quantity_sold) THEN 'non-numeric quantity: ' || raw_quantity_sold
    WHEN quantity_sold <> trunc(quantity_sold) OR abs(quantity_sold) > 1e9
        THEN 'quantity is not a whole number: ' || raw_quantity_sold
    WHEN raw_unit_price IS NOT NULL AND (unit_price IS NULL OR NOT isfinite(unit_price))
        THEN 'non-numeric unit price: ' || raw_unit_price
END"""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stage(con: duckdb.DuckDBPyConnection, path: Path, preset: str, mapping: dict[str, str], zone: str) -> int:
    """Fill temp table _stage (typed columns, line, reason, and the raw text of rejected lines); return the count of
    malformed CSV lines. The file's lines are held once (a Parquet file is read by the statement that fills _stage;
    a CSV file once more before it, to number its lines); beyond the memory limit DuckDB spills them to disk."""
    name = path.name.lower()
    con.execute("DROP TABLE IF EXISTS _csv_rejects; DROP TABLE IF EXISTS _csv_scans")
    if name.endswith(PARQUET_SUFFIXES):
        source = f"read_parquet({quote_literal(str(path))}, file_row_number = true)"
        line = "file_row_number + 1"
    elif name.endswith(CSV_SUFFIXES):
        source = (f"read_csv({quote_literal(str(path))}, all_varchar = true, header = true, store_rejects = true, "
                  "rejects_table = '_csv_rejects', rejects_scan = '_csv_scans')")
        line = None
    else:
        raise LoadError(f"{path}: unknown file type; use one of {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}")
    try:
        described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
        types = {row[0]: row[1] for row in described if row[0] != "file_row_number"}
        cols = _resolve_columns(types, preset, mapping, str(path))
        raw_cols = ", ".join(f"{_raw(cols.get(t))} AS raw_{t}" for t in ("sale_time", "quantity_sold", "unit_price"))
        typed_cols = ", ".join(f"{_typed(t, cols.get(t), types.get(cols.get(t)), zone)} AS {t}" for t in TARGETS)
        raw_text = " || ',' || ".join(f"coalesce({_raw(c)}, '')" for c in cols.values())
        con.execute(
            f"CREATE OR REPLACE TEMP {'VIEW' if line else 'TABLE'} _read AS SELECT {line or 'NULL::BIGINT'} AS line, "
            f"{raw_cols}, {typed_cols}, {raw_text} AS raw FROM {source}"
        )
    except duckdb.Error as e:
        raise LoadError(f"{path}: cannot be read: {e}") from None
    try:
        return _staged(con, csv=line is None)
    except (duckdb.IOException, duckdb.InvalidInputException, duckdb.ConversionException) as e:
        raise LoadError(f"{path}: cannot be read: {e}") from None
    finally:
        con.execute(f"DROP {'VIEW' if line else 'TABLE'} IF EXISTS _read")


def _staged(con: duckdb.DuckDBPyConnection, csv: bool) -> int:
    """_stage from _read (and, for a CSV file, its rejects)."""
    malformed = 0
    if csv:
        # CSV: the n-th record read sits on the n-th physical line after the header that the reader did not
        # reject as malformed (one line per record assumed).
        malformed = first_row(con, "SELECT count(*) FROM _csv_rejects")[0]
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _lines AS
            SELECT g AS line, row_number() OVER (ORDER BY g) AS n
            FROM range(2, (SELECT count(*) FROM _read) + (SELECT count(*) FROM _csv_rejects) + 2) t(g)
            WHERE g NOT IN (SELECT line FROM _csv_rejects)""")
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _read AS
            SELECT l.line, r.* EXCLUDE (line) FROM (SELECT *, rowid + 1 AS n FROM _read) r JOIN _lines l USING (n)""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _stage AS
        SELECT line, sale_time, branch_id, invoice_number, item_code,
               CAST(CASE WHEN reason IS NULL THEN quantity_sold END AS INTEGER) AS quantity_sold,
               unit_price, customer_id, reason, CASE WHEN reason IS NOT NULL THEN raw END AS raw
        FROM (SELECT *, {_REASON} AS reason FROM _read)""")
    if malformed:
        con.execute("""
            INSERT INTO _stage (line, reason, raw)
            SELECT line, 'malformed CSV line: ' || lower(CAST(error_type AS VARCHAR)), csv_line FROM _csv_rejects""")
    return malformed


def load_file(con: duckdb.DuckDBPyConnection, path: str | Path, *, preset: str = "seed",
              mapping: dict[str, str] | None = None, allow_rejects: bool = False,
              settings: Settings | None = None, progress=None) -> LoadReport:
    """Load one CSV or Parquet file into invoices; see the module docstring for the guarantees. `progress(step)` is
    called as each step starts (read, de-duplicate, history); report.seconds says how long each took."""
    settings = settings or load_settings()
    path = Path(path)
    if not path.is_file():
        raise LoadError(f"{path} does not exist or is not a file")
    report = LoadReport(file=str(path))
    started = [("read", time.perf_counter())]

    def step(name: str) -> None:
        now = time.perf_counter()
        report.seconds[started[-1][0]] = round(now - started[-1][1], 3)
        if name:
            started.append((name, now))
            if progress:
                progress(name)

    if progress:
        progress("read")
    sha = file_sha256(path)
    try:
        _stage(con, path, preset, mapping or {}, settings.time_zone)
        report.rows_read, report.rejected = first_row(
            con, "SELECT count(*), count(*) FILTER (WHERE reason IS NOT NULL) FROM _stage")
        report.reasons = dict(con.execute("""
            SELECT split_part(reason, ':', 1) AS kind, count(*) FROM _stage WHERE reason IS NOT NULL
            GROUP BY kind ORDER BY count(*) DESC""").fetchall())
        if report.rejected and not allow_rejects:
            named = con.execute(
                f"SELECT line, reason FROM _stage WHERE reason IS NOT NULL ORDER BY line LIMIT {_MAX_NAMED}"
            ).fetchall()
            lines = "; ".join(f"line {n}: {r}" for n, r in named)
            more = f" (and {report.rejected - len(named)} more)" if report.rejected > len(named) else ""
            raise LoadError(
                f"{path}: {report.rejected} unusable line(s), nothing loaded: {lines}{more}. Fix them, or pass "
                "--allow-rejects to load the good lines and record the bad ones in rejected_rows."
            )
        step("de-duplicate")
        with transaction(con):
            last_id = first_row(con, "SELECT coalesce(max(line_id), 0) FROM invoices")[0]
            # a line already loaded has the same sale time (its key holds it): only invoices of the file's time span
            # are probed, and DuckDB skips the row groups outside it (a day's load into ten years reads a day or so)
            first, last = first_row(con, "SELECT min(sale_time), max(sale_time) FROM _stage WHERE reason IS NULL")
            con.execute(f"""
                INSERT INTO invoices (sale_time, branch_id, invoice_number, item_code, quantity_sold, unit_price,
                                      customer_id, line_key, source_file, source_line)
                WITH keyed AS (
                    SELECT *, md5_number(concat_ws(chr(31), strftime(sale_time, '%Y-%m-%d %H:%M:%S.%f'), branch_id,
                        invoice_number, item_code, quantity_sold, coalesce(CAST(unit_price AS VARCHAR), ''),
                        coalesce(customer_id, ''))) AS line_key
                    FROM _stage WHERE reason IS NULL
                )
                SELECT sale_time, branch_id, invoice_number, item_code, quantity_sold, unit_price, customer_id,
                       line_key, {quote_literal(str(path))}, line
                FROM keyed  -- NOT EXISTS: DuckDB hashes the file's keys and probes invoices (NOT IN hashed every line)
                WHERE NOT EXISTS (SELECT 1 FROM invoices i WHERE i.line_key = keyed.line_key
                                  AND i.sale_time BETWEEN $first AND $last)
                QUALIFY row_number() OVER (PARTITION BY line_key ORDER BY line) = 1
                ORDER BY line""", {"first": first, "last": last})
            report.loaded, report.returns = first_row(
                con, "SELECT count(*), count(*) FILTER (WHERE quantity_sold <= 0) FROM invoices WHERE line_id > ?",
                [last_id])
            report.duplicates = report.rows_read - report.rejected - report.loaded
            con.execute("""
                INSERT INTO rejected_rows (source_file, file_sha256, source_line, reason, raw)
                SELECT ?, ?, line, reason, raw FROM _stage s
                WHERE reason IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM rejected_rows r WHERE r.file_sha256 = ? AND r.source_line = s.line)
                ORDER BY line""", [str(path), sha, sha])
            con.execute("INSERT INTO load_log (source_file, file_sha256, rows_read, loaded, duplicates, rejected, "
                        "returns) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [str(path), sha, report.rows_read, report.loaded, report.duplicates, report.rejected,
                         report.returns])
            step("history")  # also when nothing was new: a file's load is where history is checked (sales-sql load)
            update_history(con, settings, last_id)
        step("")
        invalidate()  # predictions look history up as of the new lines
    finally:
        con.execute("DROP TABLE IF EXISTS _lines; DROP TABLE IF EXISTS _stage; "
                    "DROP TABLE IF EXISTS _csv_rejects; DROP TABLE IF EXISTS _csv_scans")
    return report


def load_files(con, paths, **kw) -> list[LoadReport]:
    """Load several files, each all-or-nothing; stops at the first file that fails."""
    return [load_file(con, p, **kw) for p in paths]
