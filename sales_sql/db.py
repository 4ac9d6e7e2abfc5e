"""Opening a database file: schema, views and UDFs, and the connections that keep UDFs alive."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import duckdb

from .config import Settings, load_settings
from .duck import first_row, history_built, is_read_only, quote_literal, run_sql, sql_text, transaction
from .udfs import register_udfs

# DuckDB bug (shared/notes/duckdb-udf-facts.md): once the connection that registered a UDF is closed or
# garbage-collected, the UDF fails on every other connection to that database. So connect() registers on
# an anchor connection it keeps for the life of the process (or until close()) and hands out cursors,
# and register() keeps a reference to the user's connection so it cannot be collected.
_anchors: dict[tuple[str, bool], duckdb.DuckDBPyConnection] = {}
_registered: dict[int, duckdb.DuckDBPyConnection] = {}
TRAINED_THROUGH = "trained_through_line_id"  # sales_sql_meta: the last line_id the latest retrain read


def history_signature(settings: Settings) -> str:
    # usable_lines=2: history built before usable_lines left out NaN prices and infinite dates is rebuilt once;
    # the definition's digest: a history built from another feature definition is rebuilt
    digest = hashlib.sha256(json.dumps(settings.definition.as_dict(), sort_keys=True).encode()).hexdigest()[:16]
    return f"low_max={settings.low_max};medium_max={settings.medium_max};usable_lines=2;definition={digest}"


_LINE_HASH = "hash(line_id, sale_time, branch_id, item_code, quantity_sold, unit_price, customer_id)"


def invoices_signature(con: duckdb.DuckDBPyConnection, after: int | None = None) -> str | tuple[str, str]:
    """Changes whenever a line is added, removed or edited (one scan of invoices: about 25 ms per million lines).
    With `after`: (the signature of the lines up to that line_id, the signature of all), from the same one scan."""
    if after is None:
        n, h = first_row(con, f"SELECT count(*), bit_xor({_LINE_HASH}) FROM invoices")
        return f"{n}:{h}"
    n, h, n0, h0 = first_row(con, f"""SELECT count(*), bit_xor({_LINE_HASH}), count(*) FILTER (WHERE line_id <= ?),
                                             bit_xor({_LINE_HASH}) FILTER (WHERE line_id <= ?) FROM invoices""",
                             [after, after])
    return f"{n0}:{h0}", f"{n}:{h}"


def history_stale(con: duckdb.DuckDBPyConnection, settings: Settings, invoices: str | None = None) -> str | None:
    """Why the history tables are not current (the one rule: built under these settings from these invoices), or
    None when they are; `invoices`: the signature of the invoices to compare with (default: all of them now)."""
    return _stale(history_built(con), settings, invoices or invoices_signature(con))


def _stale(built: dict, settings: Settings, invoices) -> str | None:
    """The rule itself, over what history was built from (`built`: its history_settings and history_invoices) and
    the invoices now (a database's signature, or an export's files)."""
    if built.get("history_settings") != history_signature(settings):
        return "was built with other class thresholds or feature definition (or by an older sales_sql)"
    if built.get("history_invoices") != invoices:
        return "is older than the invoices (lines were added or edited outside sales_sql)"
    return None


def rebuild_history(con: duckdb.DuckDBPyConnection, settings: Settings, invoices: str | None = None) -> None:
    """Recompute the history tables from invoices (call inside the caller's transaction, if any); `invoices` is
    their invoices_signature when the caller has it already."""
    run_sql(con, "history", settings)
    con.executemany("INSERT OR REPLACE INTO sales_sql_meta VALUES (?, ?)",
                    [("history_settings", history_signature(settings)),
                     ("history_invoices", invoices or invoices_signature(con))])


def update_history(con: duckdb.DuckDBPyConnection, settings: Settings, after: int) -> str:
    """Bring history up to date after lines were added past line_id `after` (inside the caller's transaction): only
    the keys those lines touch are recomputed, when history was current with every line before them; otherwise
    (other settings, a hand edit) the whole of it is rebuilt. One scan of invoices. Returns "updated" or "rebuilt"."""
    before, invoices = invoices_signature(con, after)
    if history_stale(con, settings, before):
        rebuild_history(con, settings, invoices)
        return "rebuilt"
    con.execute(sql_text("history_update", settings, after=int(after)))
    con.execute("INSERT OR REPLACE INTO sales_sql_meta VALUES ('history_invoices', ?)", [invoices])
    return "updated"


def ensure_schema(con: duckdb.DuckDBPyConnection, settings: Settings, check_history: bool = True) -> None:
    """The tables, the history (rebuilt when not current, unless the caller brings it up to date itself:
    `check_history` False), the views and the macros."""
    run_sql(con, "schema", settings)
    if check_history or not history_built(con):
        invoices = invoices_signature(con)  # one scan: the check's, and the rebuild's record
        if history_stale(con, settings, invoices):
            with transaction(con):  # a new file, new thresholds, or lines edited by hand
                rebuild_history(con, settings, invoices)
    run_sql(con, "training_set", settings)
    run_sql(con, "predict", settings)


def register(con: duckdb.DuckDBPyConnection, settings: Settings | None = None, *,
             check_history: bool = True) -> duckdb.DuckDBPyConnection:
    """Register every sales_sql UDF on a connection you already hold, and ensure the schema and views.

    Safe to call again (functions are replaced, the schema is created only where missing). On a read-only
    connection only the functions are registered. Keep this connection open while you use the
    functions from its cursors. Returns `con`.

    >>> import duckdb, sales_sql
    >>> con = sales_sql.register(duckdb.connect())
    >>> con.execute("SELECT len(hash_features('1', '10001'))").fetchone()[0]
    20
    """
    settings = settings or load_settings()
    register_udfs(con, settings)
    in_zone(con, settings)
    if not is_read_only(con):
        ensure_schema(con, settings, check_history)
    _registered[id(con)] = con
    return con


def in_zone(con: duckdb.DuckDBPyConnection, settings: Settings) -> duckdb.DuckDBPyConnection:
    """Set the connection's TimeZone to the time_zone setting: a TIMESTAMP WITH TIME ZONE given to the prediction
    functions is then a wall-clock time of that zone, as loaded lines are, whatever the machine's zone."""
    con.execute(f"SET TimeZone = {quote_literal(settings.time_zone)}")
    return con


def connect(path: str = ":memory:", *, read_only: bool = False, settings: Settings | None = None,
            check_history: bool = True):
    """A DuckDB connection to `path` with the schema ensured and every UDF and view ready. A writer's first connection
    rebuilds history when it is not current, unless `check_history` is False (a load: update_history checks it in the
    same scan that updates it).

    For a file, the returned object is a cursor of a connection sales_sql keeps open until
    `sales_sql.close(path)`, so the UDFs keep working however many connections you open and close.
    """
    if str(path) == ":memory:":
        return register(duckdb.connect(), settings, check_history=check_history)
    resolved = str(Path(path).resolve())
    # DuckDB opens a file once per process with one access mode: a read-only request is served by a
    # read-write connection already open, and a read-write request replaces a read-only one.
    anchor = _live(_anchors.get((resolved, False))) or (_live(_anchors.get((resolved, True))) if read_only else None)
    if anchor is None and not read_only:
        close(resolved)
    key = (resolved, read_only)
    if anchor is None:
        anchor = duckdb.connect(str(path), read_only=read_only)
        try:
            register(anchor, settings, check_history=check_history)
        except BaseException:
            anchor.close()
            _registered.pop(id(anchor), None)
            raise
        _anchors[key] = anchor
    return in_zone(anchor.cursor(), settings or load_settings())


@contextlib.contextmanager
def opened(path: str, *, read_only: bool = False, settings: Settings | None = None):
    """connect() for one job: the file is released afterwards unless this process already had it open."""
    resolved = str(Path(path).resolve())
    had = any(_live(_anchors.get((resolved, mode))) for mode in (False, True))
    con = connect(path, read_only=read_only, settings=settings)
    try:
        yield con
    finally:
        con.close()
        if not had:
            close(resolved)


def _live(con):
    if con is None:
        return None
    try:
        con.execute("SELECT 1").fetchall()
        return con
    except duckdb.ConnectionException:
        return None


def close(path: str | None = None) -> None:
    """Close the connections sales_sql keeps for `path` (all files when None), releasing the file lock."""
    for key in list(_anchors):
        if path is None or key[0] == str(Path(path).resolve()):
            con = _anchors.pop(key)
            _registered.pop(id(con), None)
            con.close()


EXPORTED = ("line_id", "sale_time", "branch_id", "invoice_number", "item_code", "quantity_sold", "unit_price",
            "customer_id", "source_file", "source_line")


EXPORT_MANIFEST = "export.json"  # in an export: what its history was built from


def export(con: duckdb.DuckDBPyConnection, folder: str | Path) -> dict[str, int]:
    """Write the database's invoices as Parquet partitioned by month (FOLDER/invoices/sale_month=YYYY-MM/), its
    history (FOLDER/history/kind=.../) and what that history was built from (FOLDER/export.json: the settings'
    signature, and the invoices' files when history is current with the invoices): what Spark reads
    (sales_sql.spark.create_views, which computes history itself when export_stale says why). Whole or not at all:
    into a temporary folder beside it, renamed at the end; FOLDER must not exist yet. Returns the rows written."""

    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder} exists; export into a new folder (or remove it first)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        con.execute(f"""COPY (SELECT {', '.join(EXPORTED)}, strftime(sale_time, '%Y-%m') AS sale_month FROM invoices
                               ORDER BY line_id)
                        TO '{tmp / 'invoices'}' (FORMAT parquet, PARTITION_BY (sale_month))""")
        con.execute(f"COPY (FROM history ORDER BY kind, key, sale_day) TO '{tmp / 'history'}' "
                    "(FORMAT parquet, PARTITION_BY (kind))")
        counts = {t: first_row(con, f"SELECT count(*) FROM {t}")[0] for t in ("invoices", "history")}
        built = history_built(con)  # a read-only file's history may be stale: the export says so, Spark recomputes it
        current = built.get("history_invoices") == invoices_signature(con)
        (tmp / EXPORT_MANIFEST).write_text(json.dumps({
            "history_settings": built.get("history_settings"),
            "history_invoices": _files(tmp / "invoices") if current else None}, indent=1))
        tmp.chmod(0o755)
        os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return counts


def _files(folder: Path) -> dict[str, int]:
    """The files under a folder (relative path: size in bytes)."""
    return {str(f.relative_to(folder)): f.stat().st_size for f in sorted(folder.rglob("*")) if f.is_file()}


def export_stale(folder: str | Path, settings: Settings) -> str | None:
    """Why the history of an export (`sales-sql export`) is not current for its invoices as they are now, or None
    when it is: history_stale's rule, the invoices being the files the export wrote (paths and sizes)."""
    folder = Path(folder)
    try:
        made = json.loads((folder / EXPORT_MANIFEST).read_text())
    except (OSError, ValueError):
        return f"has no {EXPORT_MANIFEST} (not written by this sales-sql export)"
    return _stale(made, settings, _files(folder / "invoices"))
