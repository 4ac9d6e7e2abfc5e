"""Operations in one call each: doctor (is this database file healthy, and what fixes it) and pipeline (the
scheduled flow: load, retrain when there is something new, promote through the gate, check drift).

doctor changes nothing in the file or in MLflow (like any first prediction, it may write the prediction caches beside
the file: FILE.index/). pipeline writes, one step at a time: a failed step leaves the steps before it done.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from . import db, duck
from .config import Settings
from .errors import cause, held
from .loader import LoadError, file_sha256, load_file
from .monitor import check
from .serving import MISMATCH, MODEL, NO_MODEL, READ_FAILED, UNSERVABLE, load_from_file

OK, WARN, FAIL = "OK", "WARN", "FAIL"
SALES_SQL_TABLES = ("invoices", "rejected_rows", "load_log", "sales_sql_meta", "history", "history_daily",
                    "deployed_models", "drift_baseline", "drift_report")


class OpsError(RuntimeError):
    """doctor could not run, or pipeline could not open the file; nothing was changed."""


@dataclass
class Outcome:
    """One row of doctor's report (a check), or one step of pipeline's summary."""
    name: str
    status: str
    detail: str
    fix: str = ""


# ---- doctor -------------------------------------------------------------------------------------------------

def doctor(db_path: str, settings: Settings) -> list[Outcome]:
    """Check a database file without changing it (the caches beside it aside); every outcome that is not OK names the
    command that fixes it."""
    path = Path(db_path)
    if not path.is_file():
        raise OpsError(f"{db_path} does not exist; `sales-sql load {db_path} FILE` creates it")
    try:
        con = db.connect(db_path, read_only=True, settings=settings)
    except duckdb.Error as e:
        holder = duck.lock_holder(e)
        raise OpsError(held(db_path, holder) if holder else f"cannot open {db_path}: {str(e).splitlines()[0]}") \
            from None
    try:
        present = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        missing = [t for t in SALES_SQL_TABLES if t not in present]
        if missing:
            return [Outcome("schema", FAIL, f"not a sales_sql database: no {', '.join(missing)}",
                            f"sales-sql load {db_path} FILE")]
        found = [Outcome("schema", OK, "every sales_sql table is there"), _history(con, settings, db_path)]
        found.append(_model(con, settings, db_path))
        found.append(_registry(con, settings, db_path))
        found.append(_drift(con, settings, db_path))
        found.append(_rejects(con, db_path))
    finally:
        con.close()
        db.close(db_path)
    return found + [_disk(path)]


def _history(con, settings: Settings, db_path: str) -> Outcome:
    why = db.history_stale(con, settings)
    if why is None:
        return Outcome("history", OK, "current with the invoices and the settings")
    return Outcome("history", WARN, f"the history table {why}; predictions read it as it is",
                   f"any command that opens the file for writing rebuilds it, e.g. sales-sql drift {db_path}")


def _model(con, settings: Settings, db_path: str) -> Outcome:

    model = load_from_file(con, settings)
    retrain = f"sales-sql retrain {db_path} && sales-sql promote {db_path}"
    if model.source in (NO_MODEL, MISMATCH, UNSERVABLE):
        return Outcome("model", FAIL, model.reason, retrain)
    if model.source == READ_FAILED:
        return Outcome("model", FAIL, model.reason, f"check the disk and memory of this machine and the folder "
                       f"{db_path}.index/ (safe to delete); predictions answer from the model again once it reads")
    if model.source != MODEL:
        return Outcome("model", FAIL, model.reason, f"sales-sql promote {db_path} {model.version} --force "
                       "(deploys that version again from MLflow)")
    if model.trees is None:
        return Outcome("model", WARN, f"v{model.version} reads and its spec is current, but it runs on XGBoost's "
                       f"predictor, about 2x slower: {model.slow or 'its trees were not compiled'}",
                       "none needed (same answers); report the message if the model is a plain multi:softprob one")
    return Outcome("model", OK, f"v{model.version} reads, its feature spec is current, it runs on the compiled trees")


def _registry(con, settings: Settings, db_path: str) -> Outcome:
    from . import registry  # MLflow (seconds): doctor's other checks and a pipeline's load do without it

    row = duck.deployed_row(con, settings.model_name)
    deployed = row[0] if row else None
    try:
        client = registry.mlflow_client(db_path, existing=True)
        production = registry.production_version(client, settings.model_name)
        unfinished = registry.unfinished(registry.registered_versions(client, settings.model_name))
    except registry.RegistryError as e:
        return Outcome("mlflow", FAIL, str(e), "set MLFLOW_TRACKING_URI to the store the models were trained in")
    except registry.MlflowException as e:
        return Outcome("mlflow", FAIL, str(registry.store_failed(e)),
                       "start the MLflow server or set MLFLOW_TRACKING_URI to a store that answers")
    except OSError as e:  # a server that is not there, with MLflow's retries turned off
        return Outcome("mlflow", FAIL, f"the MLflow store at {registry.tracking_uri(db_path)} does not answer: "
                       f"{str(e).splitlines()[0][:200]}", "start the MLflow server or set MLFLOW_TRACKING_URI")
    if unfinished:
        listed = ", ".join(f"v{v}" for v in unfinished)
        return Outcome("mlflow", WARN, f"{listed} of {settings.model_name!r} never finished registering (no test "
                       "metrics: a retrain stopped part way, under a sales_sql before 2026-12-06); promote refuses "
                       "them", f"delete them in MLflow: mlflow ui --backend-store-uri {registry.tracking_uri(db_path)}"
                       ", or MlflowClient().delete_model_version")
    if production == deployed:
        what = f"@production is v{production}, the version deployed here" if production else "no version yet"
        return Outcome("mlflow", OK, f"the store answers; {what}")
    if production is None:
        return Outcome("mlflow", WARN, f"this file runs v{deployed}, but no version holds MLflow's @production alias",
                       f"sales-sql promote {db_path} {deployed} --force")
    return Outcome("mlflow", WARN, f"MLflow's @production is v{production}, but this file runs "
                   f"{f'v{deployed}' if deployed else 'no model'}", f"sales-sql promote {db_path} {production} --force")


def _drift(con, settings: Settings, db_path: str) -> Outcome:
    rows = con.execute("""SELECT window_start, window_end, model_version, feature, is_drift FROM drift_report
                          WHERE run_id = (SELECT max(run_id) FROM drift_report) ORDER BY feature""").fetchall()
    if not rows:
        return Outcome("drift", WARN, "no drift check has run on this file", f"sales-sql drift {db_path}")
    start, end, version = rows[0][:3]
    window = f"window {start} .. {end} against v{version}"
    drifted = [r[3] for r in rows if r[4]]
    if drifted:
        return Outcome("drift", WARN, f"the last check found drift in {', '.join(drifted)} ({window})",
                       f"retrain on recent lines: sales-sql retrain {db_path} && sales-sql promote {db_path}")
    return Outcome("drift", OK, f"the last check found no drift ({window})")


def _rejects(con, db_path: str) -> Outcome:
    last = duck.first_row(con, "SELECT source_file, rejected, loaded_at FROM load_log ORDER BY loaded_at DESC LIMIT 1")
    if last is None:
        return Outcome("rejects", WARN, "nothing has been loaded", f"sales-sql load {db_path} FILE")
    file, rejected, at = last
    if rejected:
        return Outcome("rejects", WARN, f"the last load ({file}, {at:%Y-%m-%d %H:%M}) rejected {rejected} line(s)",
                       f"see them with sales-sql query {db_path} \"SELECT source_line, reason FROM rejected_rows "
                       f"WHERE source_file = {duck.quote_literal(file)}\", correct the file and load it again")
    return Outcome("rejects", OK, f"the last load ({file}, {at:%Y-%m-%d %H:%M}) rejected no line")


def _disk(path: Path) -> Outcome:
    size = sum(p.stat().st_size for p in (path, path.with_name(path.name + ".wal")) if p.exists())
    free = shutil.disk_usage(path.resolve().parent).free
    detail = f"{free / 2**30:.1f} GB free beside the file ({size / 2**30:.2f} GB)"
    fix = f"free space on the file system of {path.resolve().parent}: a load or a retrain may write the file's size again"
    if free < size:
        return Outcome("disk", FAIL, detail, fix)
    if free < max(2 * size, 2**30):
        return Outcome("disk", WARN, detail, fix)
    return Outcome("disk", OK, detail)


# ---- pipeline -----------------------------------------------------------------------------------------------

def open_waiting(db_path: str, settings: Settings, wait: float, say=print):
    """db.connect(db_path) for writing, retrying for up to `wait` seconds while another process holds the file
    (saying once who); OpsError naming the holder when it is still held after that."""
    deadline = time.monotonic() + wait
    said = False
    while True:
        try:
            return db.connect(db_path, settings=settings)
        except duckdb.Error as e:
            holder = duck.lock_holder(e)
            if holder is None:
                raise OpsError(f"cannot open {db_path}: {str(e).splitlines()[0]}") from None
            if time.monotonic() >= deadline:
                raise OpsError(held(db_path, holder, wait)) from None
            if not said:
                say(f"{db_path} is held by {holder}; waiting up to {wait:g} s")
                said = True
            time.sleep(0.2)


def retrain_reason(con, settings: Settings, force: bool) -> str | None:
    """Why the pipeline should retrain now, or None: --force, nothing deployed, or usable lines newer than those
    the file's last retrain read (sales_sql_meta, written by registration.register_version)."""
    if force:
        return "--force"
    if duck.deployed_row(con, settings.model_name) is None:
        return "no model is deployed yet"
    row = duck.first_row(con, "SELECT value FROM sales_sql_meta WHERE key = ?", [db.TRAINED_THROUGH])
    if row is None:
        return "no retrain of this file is recorded"
    new = duck.first_row(con, "SELECT count(*) FROM usable_lines WHERE line_id > ?", [int(row[0])])[0]
    return f"{new:,} usable line(s) newer than the last retrain" if new else None


def pipeline(db_path: str, files, settings: Settings, *, cutoff: str | None = None, force: bool = False,
             wait: float = 0.0, models_dir="models", preset: str = "seed", allow_rejects: bool = False,
             say=print, limit=None) -> list[Outcome]:
    """Load each file (all or nothing, a file loaded before is skipped), retrain when retrain_reason says so,
    promote through the gate, then check drift over the latest window (saved only when something changed).
    Returns one Outcome per step: status done, skipped, refused (the gate), drift, or failed (the last one).
    `limit(con)`: sets DuckDB's memory limit on the open file (the CLI's --memory-limit)."""
    from . import registry  # MLflow (seconds): doctor's other checks and a pipeline's load do without it

    steps: list[Outcome] = []
    con = open_waiting(db_path, settings, wait, say)
    try:
        if limit is not None:
            limit(con)
        changed = False
        for file in files:
            sha = file_sha256(Path(file))
            if duck.first_row(con, "SELECT 1 FROM load_log WHERE file_sha256 = ?", [sha]):
                steps.append(Outcome("load", "skipped", f"{file}: loaded before (the same content)"))
                continue
            try:
                r = load_file(con, file, preset=preset, allow_rejects=allow_rejects, settings=settings)
            except LoadError as e:
                return steps + [Outcome("load", "failed", str(e), "correct the file, or pass --allow-rejects")]
            except Exception as e:  # noqa: BLE001  any failure ends the run as a failed step, named
                return steps + [Outcome("load", "failed", f"{file}: {cause(e)}")]
            changed |= r.loaded > 0
            steps.append(Outcome("load", "done", f"{file}: read {r.rows_read}, loaded {r.loaded}, duplicates "
                                 f"{r.duplicates}, rejected {r.rejected}"))
        reason = retrain_reason(con, settings, force)
        if reason is None:
            steps.append(Outcome("retrain", "skipped", "no usable line newer than the last retrain"))
        else:
            try:
                trained = registry.retrain(db_path, settings, models_dir, cutoff=cutoff, progress=False)
            except Exception as e:  # noqa: BLE001
                return steps + [Outcome("retrain", "failed", f"{reason}: {cause(e)}")]
            steps.append(Outcome("retrain", "done", f"{reason}: version {trained.version}, test macro-F1 "
                                 f"{trained.metrics['macro_f1']:.4f}"))
            notes: list[str] = []  # what the gate compared, or why production counted as absent
            try:
                version = registry.promote(db_path, settings, trained.version, models_dir=models_dir,
                                           say=notes.append)
                steps.append(Outcome("promote", "done", "; ".join([f"version {version} is production", *notes])))
                changed = True
            except registry.GateRefused as e:
                steps.append(Outcome("promote", "refused", str(e)))
            except Exception as e:  # noqa: BLE001
                return steps + [Outcome("promote", "failed", cause(e))]
        try:
            report = check(con, settings, save=changed)
        except Exception as e:  # noqa: BLE001
            return steps + [Outcome("drift", "failed", cause(e))]
        window = f"window {report.window_start} .. {report.window_end} against v{report.model_version}"
        drifted = ", ".join(r["feature"] for r in report.drifted)
        steps.append(Outcome("drift", "drift" if drifted else "done",
                             f"drift in {drifted} ({window})" if drifted else f"no drift ({window})"))
    finally:
        con.close()
        db.close(db_path)
    return steps


__all__ = ["FAIL", "OK", "OpsError", "Outcome", "WARN", "doctor", "pipeline"]
