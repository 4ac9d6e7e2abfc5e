"""The sales-sql command: a thin face over the library. Library errors become one-line messages."""
from __future__ import annotations

import sys

import click
import duckdb

from . import db
from .config import ConfigError, load_settings
from .loader import PRESETS, LoadError, load_files, parse_mapping


def _fail(e: Exception) -> click.ClickException:
    return click.ClickException(str(e))


def _open(path: str, read_only: bool = False):
    try:
        con = db.connect(path, read_only=read_only, settings=load_settings())
    except (ConfigError, duckdb.Error) as e:
        raise _fail(e) from None
    con.execute("SET enable_progress_bar = false")
    return con


@click.group()
@click.version_option(package_name="sales_sql")
def main():
    """sales_sql: retail sales-class prediction inside one DuckDB database file."""


@main.command()
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--lines", default=220_000, show_default=True, help="Invoice lines drawn; about 10% fall away as repeats of an item within an invoice, then about 2% returns are added.")
@click.option("--seed", default=7, show_default=True)
@click.option("--start", default="2024-01-01", show_default=True, help="First day.")
@click.option("--days", default=731, show_default=True)
@click.option("--drift-after", default=None, help="Inject drift from this date on (YYYY-MM-DD).")
@click.option("--drift-strength", default=1.0, show_default=True, help="1.0 = the documented drift size.")
def generate(out, lines, seed, start, days, drift_after, drift_strength):
    """Write deterministic demo invoices to OUT (.parquet or .csv).

    Example: sales-sql generate data/demo.parquet --lines 200000
    """
    from .demo import generate as make, write

    try:
        table = make(lines=lines, seed=seed, start=start, days=days, drift_after=drift_after,
                     drift_strength=drift_strength)
        write(table, out)
    except ValueError as e:
        raise _fail(e) from None
    click.echo(f"wrote {table.num_rows} lines to {out}")


@main.command()
@click.argument("database", type=click.Path(dir_okay=False))
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="seed", show_default=True,
              help="Column names to expect: seed (Date, BranchID, ...) or uci (both UCI Online Retail files).")
@click.option("--map", "mapping", multiple=True, metavar="TARGET=COLUMN",
              help="Read TARGET (e.g. Date or sale_time) from COLUMN; repeatable; overrides the preset.")
@click.option("--allow-rejects", is_flag=True,
              help="Load the good lines of a file with bad ones and record the bad ones in rejected_rows.")
def load(database, files, preset, mapping, allow_rejects):
    """Load CSV or Parquet FILES into DATABASE (created if missing). Each file is all or nothing;
    lines already present are skipped as duplicates.

    Example: sales-sql load sales.duckdb ../shared/data/*.parquet --preset uci
    """
    con = _open(database)
    try:
        reports = load_files(con, files, preset=preset, mapping=parse_mapping(mapping),
                             allow_rejects=allow_rejects, settings=load_settings())
    except (LoadError, ConfigError) as e:
        raise _fail(e) from None
    for r in reports:
        reasons = ", ".join(f"{k}: {v}" for k, v in r.reasons.items()) or "none"
        click.echo(f"{r.file}: read {r.rows_read}, loaded {r.loaded} (returns/cancellations {r.returns}), "
                   f"duplicates skipped {r.duplicates}, rejected {r.rejected} (reasons: {reasons})")


@main.command()
@click.argument("database", type=click.Path(dir_okay=False, exists=True))
@click.argument("sql")
@click.option("--max-rows", default=20, show_default=True)
def query(database, sql, max_rows):
    """Run SQL against DATABASE with every sales_sql function registered (read-only).

    Example: sales-sql query sales.duckdb "SELECT label, count(*) FROM training_set GROUP BY 1"
    """
    con = _open(database, read_only=True)
    try:
        con.sql(sql).show(max_rows=max_rows, max_width=160)
    except duckdb.Error as e:
        raise _fail(e) from None


if __name__ == "__main__":
    sys.exit(main())
