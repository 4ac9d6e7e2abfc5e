"""How failures reach the user: the exit codes of every command, the one line a failure prints (cause), the one
message for a database file another process holds, and the CLI's Finding (exit code 1)."""
from __future__ import annotations

import sys

import click

from .duck import lock_holder

# the exit-code contract of every command (docs/cli.md): schedulers branch on these three values alone
DONE, FINDING, FAILED = 0, 1, 2


class Finding(click.ClickException):
    """What a command exists to report: drift found, the gate refused a version, doctor's WARN or FAIL."""
    exit_code = FINDING


def held(what: str, holder: str, waited: float = 0) -> str:
    """The message for a database file that another process holds (DuckDB: one writing process, or several reading
    ones, never both)."""
    return (f"{what} is in use by another process ({holder})" + (f" after waiting {waited:g} s" if waited else "") +
            ". Wait for it to finish or close that connection (sales_sql.close(path) in Python), then run this again "
            "(pipeline: --wait retries for a while); nothing was changed.")


def cause(e: BaseException) -> str:
    """One line for any exception: sales_sql's own errors are written for users and speak alone; any other names its
    type (OSError, MemoryError, XGBoostError, a bug); a DuckDB lock names the process that holds the file."""
    holder = lock_holder(e)
    if holder:
        return held("the database file", holder)
    if "mlflow" in sys.modules and type(e).__module__.startswith("mlflow"):
        from .store import store_failed  # imports MLflow: only when an MLflow error is already here

        return str(store_failed(e))
    text = str(e).strip().splitlines()[0][:500] if str(e).strip() else ""
    if type(e).__module__.startswith("sales_sql."):
        return text
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
