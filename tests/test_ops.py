"""`sales-sql doctor` (a read-only health check) and `sales-sql pipeline` (the scheduled flow), driven as a user
would: monthly files fed one at a time, reruns, a refused promotion, a file held by another process, and each
failure doctor must name."""
import dataclasses
import datetime as dt
import json
import shutil
import subprocess
import sys
import time

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from test_lifecycle import QUICK, make_db
from test_loader import BAD, GOOD, write_csv

import sales_sql
from conftest import SALES_SQL, run_cli, run_here
from sales_sql.demo import generate
from sales_sql.ops import doctor

QUICK_TOML = "[training]\nnum_boost_round = 30\nearly_stopping_rounds = 0\nmax_depth = 4\n"


def status(findings) -> dict:
    return {f.name: f.status for f in findings}


def counts(db) -> dict:
    """What a run could change in the file: every table pipeline writes."""
    with duckdb.connect(str(db), read_only=True) as con:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("invoices", "load_log", "history", "deployed_models", "drift_report", "drift_baseline")}


def pipeline(*args):
    proc = run_here("pipeline", *args, "--format", "json", check=False)
    assert proc.returncode in (0, 1, 2), proc.stderr
    steps = json.loads(proc.stdout) if proc.stdout.strip() else []
    return proc, {s["name"]: s for s in steps}, steps


def test_monthly_files_through_the_pipeline(tmp_path, migrated_store):
    table = generate(lines=24_000, days=92, start="2024-01-01")
    month = pc.strftime(table["Date"], "%Y-%m")
    files = []
    for m in sorted(set(month.to_pylist())):
        files.append(tmp_path / f"invoices-{m}.parquet")
        pq.write_table(table.filter(pc.equal(month, m)), files[-1])
    shutil.copy(migrated_store, tmp_path / "mlflow.db")  # the store beside the database, migrated once
    (tmp_path / "quick.toml").write_text(QUICK_TOML)
    db, common = tmp_path / "shop.duckdb", ["--config", tmp_path / "quick.toml", "--models-dir", tmp_path / "models"]

    production = None
    for i, file in enumerate(files, start=1):
        proc, step, steps = pipeline(db, file, *common)
        assert step["load"]["status"] == "done" and step["retrain"]["status"] == "done"
        assert f"version {i}," in step["retrain"]["detail"]
        assert step["promote"]["status"] in ("done", "refused")
        if step["promote"]["status"] == "done":
            production = i
        assert step["drift"]["status"] in ("done", "drift")
        refused_or_drift = step["promote"]["status"] == "refused" or step["drift"]["status"] == "drift"
        assert proc.returncode == (1 if refused_or_drift else 0), steps
        with duckdb.connect(str(db), read_only=True) as con:
            assert con.execute("SELECT version FROM deployed_models WHERE status = 'active'").fetchone()[0] == production
    assert production is not None

    before = counts(db)
    proc, step, steps = pipeline(db, files[-1], *common)  # the same file again: nothing to do
    assert step["load"]["status"] == "skipped" and step["retrain"]["status"] == "skipped" and "promote" not in step
    assert proc.returncode == (1 if step["drift"]["status"] == "drift" else 0)
    assert counts(db) == before

    # a much weaker model on the same lines: trained and registered, refused by the gate, production unchanged
    (tmp_path / "weak.toml").write_text("[training]\nnum_boost_round = 2\nearly_stopping_rounds = 0\nmax_depth = 1\n")
    proc, step, steps = pipeline(db, "--force", "--config", tmp_path / "weak.toml", "--models-dir", tmp_path / "models")
    assert step["retrain"]["status"] == "done" and step["promote"]["status"] == "refused", steps
    assert "worse than production" in step["promote"]["detail"] and proc.returncode == 1
    assert counts(db)["deployed_models"] == before["deployed_models"]

    # a step that fails names itself, exits 2 and leaves the steps before it done
    good, bad = write_csv(tmp_path / "good.csv", GOOD), write_csv(tmp_path / "bad.csv", GOOD[:1] + BAD[:1])
    proc, step, steps = pipeline(db, good, bad, *common)
    assert proc.returncode == 2 and [s["status"] for s in steps] == ["done", "failed"], steps
    assert "line 3: non-numeric quantity" in steps[-1]["detail"]
    assert counts(db)["invoices"] == before["invoices"] + len(GOOD)  # good.csv stays loaded


def test_wait_gives_up_naming_the_holder_or_goes_on_when_it_lets_go(tmp_path, settings, migrated_store):
    db = make_db(tmp_path, settings, lines=6_000, days=60)
    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    (tmp_path / "quick.toml").write_text(QUICK_TOML)
    before = counts(db)

    def hold(seconds):
        holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(db)!r}); "
                                   f"print('ready', flush=True); time.sleep({seconds}); c.close()"],
                                  stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "ready"
        return holder

    holder = hold(60)
    try:
        started = time.monotonic()
        proc = run_cli("pipeline", db, "--wait", "5s", "--config", tmp_path / "quick.toml", check=False)
        took = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2 and f"PID {holder.pid}" in proc.stderr and "after waiting 5 s" in proc.stderr
    assert proc.stderr.count("waiting up to 5 s") == 1
    assert 5 <= took < 5 + 20, took  # five seconds of waiting, plus the command's start-up
    assert counts(db) == before

    holder = hold(60)  # held until the command says it waits, then let go: the command goes on
    proc = subprocess.Popen([SALES_SQL, "pipeline", str(db), "--wait", "60s", "--config", str(tmp_path / "quick.toml"),
                             "--models-dir", str(tmp_path / "models"), "--format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    said = []
    for line in proc.stderr:
        said.append(line)
        if "waiting up to 60 s" in line:
            break
    holder.kill()
    holder.wait()
    out, rest = proc.communicate(timeout=300)
    said = "".join(said) + rest
    assert f"PID {holder.pid}" in said and proc.returncode in (0, 1), said
    step = {s["name"]: s for s in json.loads(out)}
    assert step["retrain"]["status"] == "done" and step["promote"]["status"] == "done"


@pytest.fixture(scope="module")
def healthy(tmp_path_factory, settings, migrated_store):
    """A folder with a demo database (drifting from 2024-06-10 on), two versions retrained and v2 promoted, and a
    drift check before the drift: everything doctor looks at is OK."""
    from sales_sql.monitor import check
    from sales_sql.registry import promote, retrain

    folder = tmp_path_factory.mktemp("doctor")
    shutil.copy(migrated_store, folder / "mlflow.db")
    db = make_db(folder, settings, lines=30_000, days=180, drift_after="2024-06-10")
    quick = dataclasses.replace(settings, **QUICK)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        for _ in range(2):
            retrain(str(db), quick, folder / "models", cutoff="2024-05-01", progress=False)
        promote(str(db), settings, 2, force=True, models_dir=folder / "models")
    with sales_sql.db.opened(db, settings=settings) as con:
        assert not check(con, settings, end=dt.date(2024, 6, 5)).drifted
    return folder


@pytest.fixture
def shop(healthy, tmp_path, monkeypatch):
    """A copy of the healthy folder (database and MLflow store): its database's path."""
    folder = tmp_path / "shop"
    shutil.copytree(healthy, folder)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for name, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"), ("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")):
        monkeypatch.setenv(name, value)  # what the doctor command sets, undone after the test
    return str(folder / "s.duckdb")


def test_doctor_on_a_healthy_file_says_ok_everywhere_and_exits_0(shop, settings):
    found = doctor(shop, settings)
    assert status(found) == {n: "OK" for n in ("schema", "history", "model", "mlflow", "drift", "rejects", "disk")}
    assert "v2" in next(f.detail for f in found if f.name == "model")
    before = counts(shop)
    proc = run_cli("doctor", shop, "--format", "json", check=False)
    assert proc.returncode == 0 and {r["status"] for r in json.loads(proc.stdout)} == {"OK"}
    assert counts(shop) == before


def with_con(db, sql):
    with duckdb.connect(db) as con:
        con.execute(sql)


def doctor_cli(*args):
    """The doctor command in this process (a subprocess spends seconds importing MLflow and XGBoost)."""
    from click.testing import CliRunner

    from sales_sql.cli import main

    return CliRunner().invoke(main, ["doctor", *map(str, args)])


@pytest.mark.parametrize("damage,check,needle,fix", [
    ("DELETE FROM deployed_models", "model", "no model 'sales_sql_class' is deployed", "retrain"),
    ("UPDATE deployed_models SET booster = 'garbage'::BLOB WHERE status = 'active'", "model", "cannot be read",
     "promote"),
    ("UPDATE deployed_models SET feature_spec = json_merge_patch(feature_spec, '{\"buckets\": 7}')", "model",
     "different feature spec (buckets", "retrain"),
    ("UPDATE invoices SET quantity_sold = quantity_sold + 1 WHERE line_id = 1", "history", "older than the invoices",
     "rebuilds"),
])
def test_doctor_names_each_damage_to_the_file_and_its_fix(shop, settings, damage, check, needle, fix):
    with_con(shop, damage)
    found = {f.name: f for f in doctor(shop, settings)}
    assert found[check].status in ("WARN", "FAIL") and needle in found[check].detail, found[check]
    assert fix in found[check].fix
    assert doctor_cli(shop).exit_code == 1


def test_doctor_sees_the_alias_differ_and_drift_found(shop, settings):
    from mlflow import MlflowClient

    from sales_sql.monitor import check
    from sales_sql.registry import tracking_uri

    MlflowClient(tracking_uri(shop)).set_registered_model_alias("sales_sql_class", "production", "1")
    with sales_sql.db.opened(shop, settings=settings) as con:
        assert check(con, settings).drifted  # the latest window, after the generator's drift
    found = {f.name: f for f in doctor(shop, settings)}
    assert found["mlflow"].status == "WARN" and "@production is v1, but this file runs v2" in found["mlflow"].detail
    assert found["mlflow"].fix == f"sales-sql promote {shop} 1 --force"
    assert found["drift"].status == "WARN" and "found drift in" in found["drift"].detail
    assert "retrain" in found["drift"].fix


def test_doctor_names_an_mlflow_store_that_is_missing_or_does_not_answer(shop, settings, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    found = {f.name: f for f in doctor(shop, settings)}
    assert found["mlflow"].status == "FAIL" and "there is no MLflow store" in found["mlflow"].detail
    assert not (tmp_path / "elsewhere.db").exists()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    result = doctor_cli(shop, "--format", "json")
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert result.exit_code == 1 and rows["mlflow"]["status"] == "FAIL" and "127.0.0.1:9" in rows["mlflow"]["detail"]
    assert rows["model"]["status"] == "OK"  # predictions do not need MLflow


def test_doctor_exits_2_when_it_cannot_run(tmp_path, settings):
    proc = run_cli("doctor", tmp_path / "nothing.duckdb", check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    db = make_db(tmp_path, settings, lines=2_000, days=30)
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(db)!r}); "
                               "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        proc = run_cli("doctor", db, check=False)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2 and f"PID {holder.pid}" in proc.stderr
