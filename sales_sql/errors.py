"""How failures reach the user: the exit codes of every command and the one place they are decided (Contract, the
CLI's group), the one line a failure prints (cause), the one message for a database file another process holds, and
the CLI's Finding (exit code 1)."""
from __future__ import annotations

import sys
import traceback

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


def step(text: str) -> None:
    """Name what the running command is doing, for the one line that reports a failure."""
    click.get_current_context().meta["sales_sql.step"] = text


class Contract(click.Group):
    """The one place exit codes are decided. 0: done. 1: a Finding. 2: could not run or failed, whatever the exception
    (a bad option, a library error, OSError, MemoryError, XGBoostError, a bug, Ctrl-C): one line on stderr that names
    the command (and the step, where it named one) and the cause; the traceback too with --debug."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, Finding):
            raise
        except click.UsageError as e:  # an impossible argument: one line too, before anything ran
            command = f"sales-sql {ctx.invoked_subcommand or ''}".strip()
            failed = click.ClickException(f"{e.format_message()} ({command} --help shows every option)")
            failed.exit_code = FAILED
            raise failed from None
        except (Exception, KeyboardInterrupt, click.Abort) as e:  # noqa: BLE001  the contract covers every failure
            if ctx.meta.get("sales_sql.debug"):
                traceback.print_exc()
            doing = ctx.meta.get("sales_sql.step")
            where = f"{ctx.invoked_subcommand} failed" + (f" while {doing}" if doing else "")
            why = e.format_message() if isinstance(e, click.ClickException) else cause(e) if isinstance(e, Exception) \
                else "interrupted"
            failed = click.ClickException(f"{where}: {why}")
            failed.exit_code = FAILED
            raise failed from None
