"""The registered model wherever MLflow models work: mlflow.pyfunc.load_model over raw invoice lines, and REST with
MLflow's own scoring server (`sales-sql serve`), giving predict_sales's answers."""
import dataclasses
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest

from conftest import SALES_SQL, run_cli
from test_lifecycle import QUICK, make_db

import sales_sql

pytestmark = pytest.mark.slow  # the REST server (the serve group)
ARGS = "sale_time, branch_id, item_code, unit_price, customer_id"


@pytest.fixture(scope="module")
def shop(tmp_path_factory, migrated_store):
    """A demo database with a version promoted (and its MLflow store beside it), as a user's shop."""
    import shutil

    from sales_sql.config import load_settings

    from sales_sql.registry import promote, retrain

    tmp = tmp_path_factory.mktemp("serve")
    shutil.copy(migrated_store, tmp / "mlflow.db")
    settings = load_settings()
    db = make_db(tmp, settings, lines=20_000, days=200)
    quick = dataclasses.replace(settings, **QUICK)
    with pytest.MonkeyPatch.context() as mp:  # the store beside the file, where `sales-sql serve` looks
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        promote(str(db), quick, retrain(str(db), quick, tmp / "models", progress=False).version,
                models_dir=tmp / "models")
    return tmp, db, settings


def sql_answers(db, settings, where="TRUE"):
    con = sales_sql.connect(db, read_only=True, settings=settings)
    try:
        return con.execute(f"SELECT {ARGS}, predict_sales({ARGS}) AS p FROM invoices WHERE {where} "
                           "ORDER BY line_id").df()
    finally:
        sales_sql.close(db)


def test_pyfunc_from_the_registry_equals_predict_sales_bit_for_bit(shop, monkeypatch):
    import mlflow

    tmp, db, settings = shop
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")  # a deployment that refuses pickled models
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@production",
                                     model_config={"database": str(db)})
    sql = sql_answers(db, settings)
    ours = model.predict(sql[list(ARGS.split(", "))])
    theirs = pd.json_normalize(sql["p"].tolist())
    assert (ours["label"].values == theirs["label"].values).all()
    for mine, sqls in (("p_low", "proba.low"), ("p_medium", "proba.medium"), ("p_high", "proba.high")):
        assert np.array_equal(ours[mine].values, theirs[sqls].values), mine  # bit for bit
    assert set(ours["source"]) == {"model"} and set(ours["model_version"]) == {1}
    # the seed system's column names, extra columns ignored; without a database the fallback, saying so
    seed = pd.DataFrame({"Date": sql["sale_time"][:5], "BranchID": sql["branch_id"][:5],
                         "InvoiceNumber": "A1", "ItemCode": sql["item_code"][:5]})
    named = model.predict(seed)
    assert list(named.columns) == ["label", "p_low", "p_medium", "p_high", "source", "model_version"]
    # as JSON brings them: ISO text (with a zone or not), keys as numbers: the same answers
    as_text = seed.assign(Date=seed["Date"].dt.strftime("%Y-%m-%d %H:%M:%S"))
    zoned = seed.assign(Date=seed["Date"].dt.strftime("%Y-%m-%dT%H:%M:%S+00:00"))
    numbers = seed.assign(BranchID=seed["BranchID"].astype(int))
    for other in (as_text, zoned, numbers):
        assert model.predict(other).equals(named)
    # a line without a sale time, or with a price that is no number, answers NULL with its source, as in SQL
    bad = model.predict(seed.assign(Date=[None, *seed["Date"][1:]], UnitPrice=[2.5, "cheap", 2.5, 2.5, 2.5]))
    assert bad["source"].tolist()[:2] == ["invalid_date", "invalid_price"] and bad["label"][:2].isna().all()
    assert bad["label"].notna().sum() == 3
    monkeypatch.delenv("SALES_SQL_DATABASE", raising=False)
    alone = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@production")
    assert set(alone.predict(seed)["source"]) == {"fallback:no_database"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def strict(text):
    """JSON as a strict client (JavaScript's JSON.parse) reads it: NaN and Infinity are not JSON."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def get(port, path, timeout=30):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, strict(r.read())
    except urllib.error.HTTPError as e:
        return e.code, strict(e.read())


def post(port, body: bytes, timeout=30, kind="application/json"):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body, method="POST",
                                     headers={"Content-Type": kind})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, strict(r.read())
    except urllib.error.HTTPError as e:
        return e.code, strict(e.read())


def lines(*rows) -> bytes:
    return json.dumps({"dataframe_records": list(rows)}).encode()


def records(frame) -> bytes:
    rows = frame.assign(sale_time=frame["sale_time"].astype(str)).to_dict(orient="records")
    return json.dumps({"dataframe_records": rows}, default=str).encode()


def group_alive(pgid, wait=10.0) -> bool:
    """Whether a process of the group is left after `wait` seconds (multiprocessing's resource tracker ends a moment
    after the command)."""
    deadline = time.time() + wait
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        if time.time() > deadline:
            return True
        time.sleep(0.1)


def port_free(port) -> bool:
    """Whether a new server can listen on the port (as servers do, past the closed connections' TIME_WAIT)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_sales_sql_serve_answers_json_lines_refuses_bad_ones_and_sees_a_new_load(shop, tmp_path):
    from sales_sql.demo import generate, write

    tmp, db, settings = shop
    port = free_port()
    server, log = start(db, port, tmp_path, "--workers", "2")
    try:
        sql = sql_answers(db, settings).tail(200)
        status, answer = post(port, records(sql[list(ARGS.split(", "))]))
        assert status == 200
        got = pd.DataFrame(answer["predictions"])
        theirs = pd.json_normalize(sql["p"].tolist())
        assert (got["label"].values == theirs["label"].values).all()
        assert np.allclose(got["p_high"].values, theirs["proba.high"].values, rtol=0, atol=1e-15)
        # bad requests: a 4xx with the reason in one line, the line and the value as sent, and the server keeps
        # answering; a missing or null sale time is refused as one that is no time
        good = {"Date": "2025-06-30", "BranchID": "1", "ItemCode": "10001"}
        for body, reason in ((b"not json", "valid JSON"),
                             (lines({"BranchID": "1", "ItemCode": "10001"}), "no column sale_time or Date"),
                             (lines(good, {**good, "Date": "soon"}), 'Date "soon" on line 2 is not a sale time'),
                             (lines({**good, "Date": None}), "Date null on line 1 is not a sale time"),
                             (lines(good, {"BranchID": "1", "ItemCode": "10001"}), "Date null on line 2"),
                             (lines({**good, "Date": 12345}), "Date 12345 on line 1"),
                             (lines(good, {**good, "UnitPrice": "cheap"}), 'UnitPrice "cheap" on line 2 is not a price'),
                             (lines({**good, "UnitPrice": True}), "UnitPrice true on line 1 is not a price")):
            status, error = post(port, body)
            assert 400 <= status < 500 and reason in error["message"], (status, error)
            assert set(error) == {"error_code", "message"} and "\n" not in error["message"], error
        # times with different offsets in one request (a batch across a daylight-saving change): each converted
        status, answer = post(port, lines({**good, "Date": "2025-03-30T00:30:00+00:00"},
                                          {**good, "Date": "2025-03-30T03:30:00+02:00"}))
        assert status == 200 and len(answer["predictions"]) == 2
        # CSV, as the 415 answer lists it: the same answers as JSON
        csv = sql[list(ARGS.split(", "))].tail(20).assign(sale_time=lambda f: f["sale_time"].astype(str))
        status, by_csv = post(port, csv.to_csv(index=False).encode(), kind="text/csv")
        assert status == 200 and by_csv == post(port, records(csv))[1]
        status, error = post(port, b"", kind="text/csv")
        assert status == 400 and "CSV" in error["message"]
        # readiness: 200 while the model answers; while the file cannot be read, 503 with the cause, and the
        # fallback's answers are strict JSON (model_version null); it heals when the file is back
        assert get(port, "/ready") == (200, {"ready": True, "source": "model", "model_version": 1, "reason": None})
        aside = db.with_name("aside.duckdb")
        db.rename(aside)
        db.write_text("not a database")
        try:
            status, ready = get(port, "/ready")
            assert status == 503 and ready["source"] == "fallback:read_failed" and ready["reason"], ready
            status, answer = post(port, lines(good))
            assert status == 200 and answer["predictions"][0]["source"] == "fallback:read_failed"
            assert answer["predictions"][0]["model_version"] is None
        finally:
            db.unlink()
            aside.rename(db)
        assert get(port, "/ready")[0] == 200
        # a load while the server runs (it holds no lock on the file): the next answer reads the new history
        last = pd.Timestamp(sql["sale_time"].max()).normalize()
        probe = sql[list(ARGS.split(", "))].tail(50).assign(sale_time=last + pd.Timedelta(days=3))

        def sql_now():  # what SQL answers for the probe lines, with the file's history as it is
            con = sales_sql.connect(db, read_only=True, settings=settings)
            con.register("probe", probe)
            try:
                return [r[0] for r in con.execute(f"SELECT predict_sales({ARGS}).proba.high FROM probe").fetchall()]
            finally:
                sales_sql.close(db)

        before = sql_now()
        day = write(generate(lines=3_000, days=1, start=str((last + pd.Timedelta(days=1)).date()), seed=9),
                    tmp_path / "day.parquet")
        run_cli("load", db, day)
        after = sql_now()
        assert before != after  # the new day changed these lines' history
        status, answer = post(port, records(probe))
        assert status == 200
        assert np.allclose([p["p_high"] for p in answer["predictions"]], after, rtol=0, atol=1e-15)
    finally:  # what a supervisor sends: SIGTERM to the command alone; it stops its workers and frees the port
        os.kill(server.pid, signal.SIGTERM)
        code = server.wait(timeout=60)
    assert code == 0, log.read_text()[-2000:]
    assert not group_alive(server.pid) and port_free(port)
    assert "Add type hints" not in log.read_text()  # MLflow's warning on each load of a predict without them


def start(db, port, tmp_path, *options):
    """`sales-sql serve DB` as a user starts it (its output in a file), once it answers /ping."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    log = tmp_path / f"serve-{port}.log"
    with open(log, "w") as out:
        server = subprocess.Popen([SALES_SQL, "serve", str(db), "--port", str(port), *options], env=env,
                                  start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while get_or_none(port) is None:
        if server.poll() is not None or time.time() > deadline:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
            raise AssertionError(f"sales-sql serve did not answer: {log.read_text()[-3000:]}")
        time.sleep(0.3)
    return server, log


def test_serve_stops_on_ctrl_c_with_exit_0_and_refuses_to_start_on_what_cannot_serve(shop, tmp_path):
    tmp, db, settings = shop
    port = free_port()
    server, log = start(db, port, tmp_path)
    try:
        taken = run_cli("serve", db, "--port", port, check=False)  # the port in use: one line, exit 2
        assert taken.returncode == 2 and taken.stderr.count("\n") == 1 and "Address already in use" in taken.stderr
    finally:
        os.kill(server.pid, signal.SIGINT)
        code = server.wait(timeout=60)
    assert code == 0 and not group_alive(server.pid) and port_free(port), log.read_text()[-2000:]
    text = tmp_path / "shop2.duckdb"
    text.write_text("not a database")
    loaded = make_db(tmp_path, settings, lines=2_000, days=30)  # invoices, but no MLflow store beside it
    for path, reason in ((text, "cannot be opened as a DuckDB database"), (tmp_path / "missing.duckdb", "does not exist"),
                         (loaded, "no MLflow store")):
        proc = run_cli("serve", path, "--port", free_port(), check=False)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and reason in proc.stderr, proc.stderr
    proc = run_cli("serve", db, "--version", "7", "--port", free_port(), check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no version '7'" in proc.stderr, proc.stderr


def get_or_none(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
            return r.status
    except OSError:
        return None


def test_a_version_registered_before_the_pyfunc_still_serves_in_sql(tmp_path, settings, store):
    """Versions logged with MLflow's xgboost flavor (before sales_sql.pyfunc) promote and serve as they did."""
    import mlflow
    import xgboost as xgb
    from mlflow import MlflowClient

    from sales_sql.registry import mlflow_client, promote
    from sales_sql.training import load_dataset, xgb_params

    quick = dataclasses.replace(settings, **QUICK)
    db = make_db(tmp_path, settings, lines=8_000, days=80)
    with sales_sql.db.opened(db, settings=quick) as con:
        data = load_dataset(con, quick)
        booster = xgb.train(xgb_params(quick), data.dtrain, 10)
        data.close()
    client = mlflow_client(db)
    # an experiment whose artifacts go to the test's folder (the default experiment's are ./mlruns, in the checkout)
    experiment = client.create_experiment("before_pyfunc", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        mlflow.log_dict(data.spec, "feature_spec.json")
        info = mlflow.xgboost.log_model(booster, name="model", model_format="ubj",
                                        registered_model_name=settings.model_name)
    for tag, value in (("macro_f1", "0.5"), ("accuracy", "0.5"), ("cutoff", str(data.cutoff))):
        MlflowClient(store).set_model_version_tag(settings.model_name, info.registered_model_version, tag, value)
    promote(str(db), quick, int(info.registered_model_version), force=True, models_dir=tmp_path / "models")
    con = sales_sql.connect(db, read_only=True, settings=settings)
    source = con.execute("SELECT DISTINCT predict_sales(sale_time, branch_id, item_code).source FROM invoices").fetchall()
    sales_sql.close(db)
    assert source == [("model",)]
