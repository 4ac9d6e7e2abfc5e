"""Truthful under failure: one exit-code contract for every command, one time zone, fallbacks that heal and say why,
one model's rows, nothing left in the temporary folder."""
import dataclasses
import errno
import os
import shutil
import subprocess

import pytest
from click.testing import CliRunner
from xgboost.core import XGBoostError

from conftest import SALES_SQL
from test_lifecycle import QUICK, make_db

import sales_sql
from sales_sql import serving
from sales_sql.cli import main

FAULTS = {"XGBoostError": XGBoostError("[12:00:00] booster: Check failed"),
          "ENOSPC": OSError(errno.ENOSPC, "No space left on device"),
          "MemoryError": MemoryError(), "RuntimeError": RuntimeError("a bug")}


def everything(db, settings):
    """Every table of the file (contents, not just counts), and MLflow's @production alias."""
    from mlflow import MlflowClient

    from sales_sql.registry import production_version, tracking_uri

    con = sales_sql.connect(db, read_only=True, settings=settings)
    tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
    # hash of the whole row (a struct): casting rows to text would spend seconds on line_key (UHUGEINT -> VARCHAR)
    state = {t: con.execute(f"SELECT count(*), sum(hash(x)::HUGEINT) FROM {t} x").fetchall()[0] for t in tables}
    sales_sql.close(db)
    state["@production"] = production_version(MlflowClient(tracking_uri(db)), settings.model_name)
    return state


@pytest.fixture(scope="module")
def shop(tmp_path_factory, migrated_store):
    """A file with two promoted versions (so rollback has work), an export's input and an MLflow store beside it."""
    from sales_sql.config import load_settings
    from sales_sql.registry import promote, retrain

    settings = dataclasses.replace(load_settings(), **QUICK)
    tmp = tmp_path_factory.mktemp("shop")
    shutil.copy(migrated_store, tmp / "mlflow.db")
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
    db = make_db(tmp, settings, lines=12_000, days=120)
    for _ in range(2):
        promote(str(db), settings, retrain(str(db), settings, tmp / "models", progress=False).version, force=True,
                models_dir=tmp / "models")
    yield tmp, db, settings
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


# each command, its arguments, and the function its main step calls (where the fault is injected)
MATRIX = {
    "load": (["{db}", "{tmp}/more.parquet"], "sales_sql.loader.update_history"),
    "retrain": (["{db}", "--models-dir", "{tmp}/models"], "sales_sql.registration.train"),
    "promote": (["{db}", "1", "--force", "--models-dir", "{tmp}/models"], "sales_sql.deploy.write_row"),
    "rollback": (["{db}", "--models-dir", "{tmp}/models"], "sales_sql.deploy.write_row"),
    "predict": (["{db}", "--into", "scored"], "sales_sql.scoring.columns"),
    "drift": (["{db}", "--window", "30d"], "sales_sql.monitor.save_report"),
    "doctor": (["{db}"], "sales_sql.ops._registry"),
    "pipeline": (["{db}", "--force", "--models-dir", "{tmp}/models"], "sales_sql.registry.retrain"),
    "export": (["{db}", "{tmp}/export"], "os.rename"),  # its last step: the folder written whole, renamed
}


@pytest.mark.slow  # the fault matrix
def test_every_command_fails_with_exit_2_one_line_and_nothing_changed(shop, tmp_path, monkeypatch):
    from sales_sql.demo import generate, write

    tmp, db, settings = shop
    write(generate(lines=2_000, days=30, start="2025-01-01", seed=11), tmp / "more.parquet")
    config = tmp / "quick.toml"
    config.write_text("[training]\n" + "".join(f"{k} = {v}\n" for k, v in QUICK.items()))
    before = everything(db, settings)
    for command, (args, target) in MATRIX.items():
        for name, fault in FAULTS.items():
            def boom(*a, _fault=fault, **k):
                raise _fault

            with monkeypatch.context() as m:
                m.setattr(target, boom)
                argv = [command, *(a.format(db=db, tmp=tmp) for a in args), "--config", str(config)]
                result = CliRunner().invoke(main, argv)
            where = f"{command} with {name}"
            assert result.exit_code == 2, (where, result.exit_code, result.output)
            lines = result.stderr.strip().splitlines()
            if command == "pipeline":  # the pipeline names its failed step in its summary (stdout), then exits 2
                assert "failed" in result.stdout and type(fault).__name__ in result.stdout, (where, result.stdout)
            else:
                assert len(lines) == 1 and lines[0].startswith(f"Error: {command} failed"), (where, result.stderr)
                assert type(fault).__name__ in lines[0] or str(fault) in lines[0], (where, lines)
            assert "Traceback" not in result.output, where
            assert everything(db, settings) == before, where
            assert not (tmp / "export").exists(), where
    # --debug adds the traceback under the same line
    with monkeypatch.context() as m:
        m.setattr("sales_sql.ops._registry", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("a bug")))
        result = CliRunner().invoke(main, ["--debug", "doctor", str(db)])
    assert result.exit_code == 2 and "Traceback" in result.stderr and "Error: doctor failed: RuntimeError: a bug" \
        in result.stderr


def test_zoned_sale_times_load_the_same_under_every_machine_zone(tmp_path):
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq
    from zoneinfo import ZoneInfo

    from sales_sql.demo import generate

    lines = generate(lines=3_000, days=60, seed=5)
    utc = pa.array([t.replace(tzinfo=ZoneInfo("UTC")) if t else None for t in lines["Date"].to_pylist()],
                   pa.timestamp("us", tz="UTC"))
    zoned = lines.set_column(lines.schema.get_field_index("Date"), "Date", utc)
    # one line at 23:30 UTC on 2025-06-30: 08:30 the next day in Tokyo, 19:30 the same day in New York
    late = zoned.slice(0, 1).set_column(0, "Date", pa.array([dt.datetime(2025, 6, 30, 23, 30, tzinfo=ZoneInfo("UTC"))],
                                                            pa.timestamp("us", tz="UTC")))
    pq.write_table(pa.concat_tables([zoned, late]), tmp_path / "zoned.parquet")
    seen = []
    for zone in ("UTC", "America/New_York", "Asia/Tokyo"):
        db = tmp_path / f"{zone.replace('/', '_')}.duckdb"
        env = {**os.environ, "TZ": zone, "PYTHONWARNINGS": "ignore"}
        subprocess.run([SALES_SQL, "load", db, tmp_path / "zoned.parquet"], check=True, env=env, capture_output=True)
        query = ("struct_pack(lines := (SELECT list(sale_time ORDER BY line_id) FROM invoices), "
                 "history := (SELECT count(*) || ':' || sum(hash(CAST(h AS VARCHAR))::HUGEINT) FROM history h), "
                 "predicted := (SELECT list(predict_sales_class(sale_time, branch_id, item_code) ORDER BY line_id) "
                 "FROM invoices))")
        out = subprocess.run([SALES_SQL, "query", db, f"SELECT md5(CAST({query} AS VARCHAR)) AS digest, "
                              "(SELECT max(sale_time) FROM invoices) AS latest"],
                             check=True, env=env, capture_output=True, text=True).stdout
        seen.append(out)
    assert seen[0] == seen[1] == seen[2], seen
    assert "2025-06-30 23:30:00" in seen[0]


def test_two_files_in_one_process_each_use_the_store_beside_them(tmp_path, monkeypatch):
    """MLflow's set_tracking_uri also exports MLFLOW_TRACKING_URI; the first file's store must not become every later
    file's (a notebook that works with two shops)."""
    from sales_sql.registry import mlflow_client, tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    mlflow_client(tmp_path / "a" / "shop.duckdb")
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert tracking_uri(tmp_path / "b" / "shop.duckdb") == f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}"
    chosen = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", chosen)  # the user's choice stays theirs
    mlflow_client(tmp_path / "a" / "shop.duckdb")
    assert os.environ["MLFLOW_TRACKING_URI"] == chosen


def test_two_model_names_in_one_file_each_stay_active(tmp_path, settings, store):
    from sales_sql.registry import promote, retrain

    quick = dataclasses.replace(settings, **QUICK)
    other = dataclasses.replace(quick, model_name="sales_sql_other")
    db = make_db(tmp_path, settings, lines=8_000, days=80)
    for s in (quick, other, quick):
        promote(str(db), s, retrain(str(db), s, tmp_path / "models", progress=False).version, force=True,
                models_dir=tmp_path / "models")
    con = sales_sql.connect(db, read_only=True, settings=settings)
    active = con.execute("SELECT model_name, count(*) FROM deployed_models WHERE status = 'active' GROUP BY 1 "
                         "ORDER BY 1").fetchall()
    sales_sql.close(db)
    assert active == [("sales_sql_class", 1), ("sales_sql_other", 1)]


def test_a_read_error_falls_back_says_so_and_heals(tmp_path, settings, store, monkeypatch):
    from sales_sql import lookups
    from sales_sql.registry import promote, retrain

    quick = dataclasses.replace(settings, **QUICK)
    db = make_db(tmp_path, settings, lines=8_000, days=80)
    promote(str(db), quick, retrain(str(db), quick, tmp_path / "models", progress=False).version,
            models_dir=tmp_path / "models")
    shutil.rmtree(f"{db}.index", ignore_errors=True)  # the next process maps the history again
    con = sales_sql.connect(db, settings=settings)
    real, calls = lookups._mapped, []

    def flaky(*args):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(errno.EIO, "Input/output error")
        return real(*args)

    monkeypatch.setattr(lookups, "_mapped", flaky)
    ask = "SELECT predict_sales(DATE '2024-03-01', '1', '10001').source"
    assert con.execute(ask).fetchone()[0] == serving.READ_FAILED
    assert con.execute(ask).fetchone()[0] == serving.MODEL  # the next call read again: healed, no restart
    sales_sql.close(db)


def test_an_unknown_statistic_is_features_unavailable_not_a_failed_query(settings):
    from sales_sql.definition import FEATURES

    odd = dataclasses.replace(settings, definition=dataclasses.replace(
        FEATURES, kinds=(dataclasses.replace(FEATURES.kinds[0], stats=("no_such_statistic",)),) + FEATURES.kinds[1:]))
    index, why = serving.history_index(None, odd.definition)  # the layout is refused before history is read
    dep = serving.load(odd, index, why)
    assert dep.source == serving.UNSERVABLE and "no_such_statistic" in dep.reason
