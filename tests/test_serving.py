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
    monkeypatch.delenv("SALES_SQL_DATABASE", raising=False)
    alone = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@production")
    assert set(alone.predict(seed)["source"]) == {"fallback:no_database"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, body: bytes, timeout=30):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def records(frame) -> bytes:
    rows = frame.assign(sale_time=frame["sale_time"].astype(str)).to_dict(orient="records")
    return json.dumps({"dataframe_records": rows}, default=str).encode()


def test_sales_sql_serve_answers_json_lines_refuses_bad_ones_and_sees_a_new_load(shop, tmp_path):
    from sales_sql.demo import generate, write

    tmp, db, settings = shop
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    server = subprocess.Popen([SALES_SQL, "serve", str(db), "--port", str(port), "--workers", "2"], env=env,
                              start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, server.stderr.read()[-2000:]
                time.sleep(0.3)
        sql = sql_answers(db, settings).tail(200)
        status, answer = post(port, records(sql[list(ARGS.split(", "))]))
        assert status == 200
        got = pd.DataFrame(answer["predictions"])
        theirs = pd.json_normalize(sql["p"].tolist())
        assert (got["label"].values == theirs["label"].values).all()
        assert np.allclose(got["p_high"].values, theirs["proba.high"].values, rtol=0, atol=1e-15)
        # bad requests: a 4xx with the reason, and the server keeps answering
        for body, reason in ((b"not json", "valid JSON"),
                             (json.dumps({"dataframe_records": [{"BranchID": "1", "ItemCode": "10001"}]}).encode(),
                              "no column sale_time or Date"),
                             (json.dumps({"dataframe_records": [{"Date": "soon", "BranchID": "1",
                                                                 "ItemCode": "10001"}]}).encode(), "'soon'")):
            status, error = post(port, body)
            assert 400 <= status < 500 and reason in error["message"], (status, error)
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
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    log = server.stderr.read()
    assert "Add type hints" not in log, log[-2000:]  # MLflow's warning on each load of a predict without them


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
    mlflow_client(db)
    with mlflow.start_run():
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
