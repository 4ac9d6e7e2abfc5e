"""REST on loopback: `sales-sql serve` (MLflow's scoring server over the registered pyfunc) against the SQL function.

Builds a demo shop in a temporary folder (220,000 generated lines, the version `sales-sql retrain` trains on them with
the shipped settings, as `make demo` does, promoted; `--rounds N` trains N rounds instead), starts `sales-sql serve` on
a free port of 127.0.0.1, and measures in one run:
- single-line requests: latency of 1,000 POST /invocations, one invoice line each, over one keep-alive connection
  (p50 and p99; targets p50 <= 5 ms, p99 <= 20 ms);
- requests of 1,000 lines: lines per second over 30 requests, against `SELECT predict_sales(...)` over the same
  30,000 lines in DuckDB, in this process (target: REST >= 0.5 x SQL's rate);
- the same requests of 1,000 lines to `mlflow models serve` over a model that answers at once (the same signature
  and answer columns): the most any pyfunc model reaches through MLflow's scoring server here;
- where a 1,000-line request's time goes: MLflow's scoring steps (`mlflow.pyfunc.scoring_server`) timed one by one
  on the same requests in this process, over the same registered model.

    python bench/serve.py [--rounds N]

MLflow's scoring server costs about the same per request whatever the model, and the model costs per line what it
costs in SQL: so the ratio grows with the model's size (its trees), and the bench prints the model's.
"""
import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

import sales_sql
from sales_sql import scratch
from sales_sql.config import load_settings
from sales_sql.serving import load_from_file

SALES_SQL = str(Path(sys.executable).parent / "sales-sql")
ARGS = "sale_time, branch_id, item_code, unit_price, customer_id"


def run(*args):
    subprocess.run([SALES_SQL, *map(str, args)], check=True, capture_output=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, help="train this many rounds (default: the shipped settings decide)")
    rounds = parser.parse_args().rounds
    folder = scratch.folder("serve")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    db = folder / "shop.duckdb"
    run("generate", folder / "invoices.parquet")
    run("load", db, folder / "invoices.parquet")
    run("retrain", db, "--models-dir", folder / "models", *(("--rounds", rounds) if rounds else ()))
    run("promote", db, "--force", "--models-dir", folder / "models")
    con = sales_sql.connect(db, read_only=True)
    trees = len(load_from_file(con, load_settings()).trees.roots)
    lines = con.execute("SELECT CAST(sale_time AS VARCHAR) AS sale_time, branch_id, item_code, unit_price, "
                        "customer_id FROM invoices ORDER BY line_id DESC LIMIT 31000").df()
    sales_sql.close(db)
    records = lines.to_dict(orient="records")

    batches = [records[1000 + 1000 * i:2000 + 1000 * i] for i in range(30)]
    with server([SALES_SQL, "serve", db], env) as post:
        for row in records[:50]:  # warm up: the model loaded, the kernels compiled
            post([row])
        single = []
        for row in records[1000:2000]:
            t = time.perf_counter()
            post([row])
            single.append((time.perf_counter() - t) * 1000)
        single.sort()
        p50, p99 = statistics.median(single), single[int(0.99 * len(single)) - 1]
        rest_rate = rate(post, batches)
    bin_dir = str(Path(sys.executable).parent)  # MLflow starts uvicorn from PATH, as `sales-sql serve` has it
    with server([f"{bin_dir}/mlflow", "models", "serve", "-m", answers_at_once(db, folder), "--env-manager", "local"],
                {**env, "PATH": bin_dir + os.pathsep + env.get("PATH", "")}) as post:
        floor_rate = rate(post, batches)

    con = sales_sql.connect(db, read_only=True)
    con.register("lines", lines.iloc[1000:31000])
    con.execute(f"SELECT count(predict_sales({ARGS})) FROM lines").fetchall()  # warm up
    t = time.perf_counter()
    con.execute("SELECT count(predict_sales(CAST(sale_time AS TIMESTAMP), branch_id, item_code, unit_price, "
                "customer_id)) FROM lines").fetchall()
    sql_rate = 30_000 / (time.perf_counter() - t)
    sales_sql.close(db)
    steps = breakdown(db, [json.dumps({"dataframe_records": rows}, default=str) for rows in batches])
    scratch.remove(folder)

    print(f"the production version: {trees // 3} rounds x 3 classes ({trees} trees)")
    print(f"single-line requests (1,000 over one connection): p50 {p50:.2f} ms, p99 {p99:.2f} ms "
          f"(targets p50 <= 5 ms: {'met' if p50 <= 5 else 'NOT met'}, p99 <= 20 ms: {'met' if p99 <= 20 else 'NOT met'})")
    print(f"requests of 1,000 lines: REST {rest_rate:,.0f} lines/s, SQL predict_sales over the same lines "
          f"{sql_rate:,.0f} lines/s: ratio {rest_rate / sql_rate:.2f} (target >= 0.5: "
          f"{'met' if rest_rate >= 0.5 * sql_rate else 'NOT met'})")
    print(f"MLflow's scoring server over a model that answers at once (the same signature and answer columns): "
          f"{floor_rate:,.0f} lines/s, {floor_rate / sql_rate:.2f} x SQL: the most any pyfunc model reaches here")
    print("one 1,000-line request in MLflow's scoring server, in ms: " +
          ", ".join(f"{name} {ms:.1f}" for name, ms in steps.items()) +
          f"; SQL's time for the same lines {1000 / sql_rate * 1000:.1f}")


@contextlib.contextmanager
def server(command, env):
    """A scoring server started on a free port of 127.0.0.1 and answering /ping; yields post(rows) -> body."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([*map(str, command), "--port", str(port)], env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(300):
            try:
                conn.request("GET", "/ping")
                conn.getresponse().read()
                break
            except OSError:
                conn.close()
                assert process.poll() is None, f"{command[0]} exited with {process.returncode}"
                time.sleep(0.3)

        def post(rows):
            conn.request("POST", "/invocations", json.dumps({"dataframe_records": rows}, default=str),
                         {"Content-Type": "application/json"})
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200, body[:500]
            return body

        yield post
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def rate(post, batches) -> float:
    """Lines per second of the batches posted one after another."""
    post(batches[0])
    t = time.perf_counter()
    for rows in batches:
        post(rows)
    return sum(map(len, batches)) / (time.perf_counter() - t)


class AtOnce(mlflow.pyfunc.PythonModel):
    """A pyfunc model whose predict costs nothing: sales_sql's answer columns, the same values on every line."""

    def predict(self, context, model_input: pd.DataFrame, params=None):
        n = len(model_input)
        return pd.DataFrame({"label": np.full(n, "LOW", object), "p_low": np.ones(n), "p_medium": np.zeros(n),
                             "p_high": np.zeros(n), "source": np.full(n, "model", object),
                             "model_version": np.ones(n, np.int32)})


def answers_at_once(db, folder) -> Path:
    """AtOnce saved as an MLflow model with the registered model's signature (so MLflow checks the same columns)."""
    from sales_sql.registry import mlflow_client

    mlflow_client(db)
    signature = mlflow.models.get_model_info("models:/sales_sql_class@production").signature
    path = folder / "at_once"
    mlflow.pyfunc.save_model(path, python_model=AtOnce(), signature=signature)
    return path


def breakdown(db, bodies):
    """The median time (ms) of each step MLflow's scoring server takes over a request (its `invocations`): the JSON
    read into a DataFrame, the signature's check of each column, the model's predict, the answer written as JSON."""
    import io

    from mlflow.models.utils import _enforce_schema
    from mlflow.pyfunc import scoring_server as server

    from sales_sql.registry import mlflow_client

    mlflow_client(db)  # the store beside the file, as every sales_sql command finds it
    model = mlflow.pyfunc.load_model("models:/sales_sql_class@production", model_config={"database": str(db)})
    schema, ours = model.metadata.get_input_schema(), model.unwrap_python_model()
    frames = [server._parse_json_data(b, model.metadata, schema).data for b in bodies]
    answers = [ours.predict(None, f) for f in frames]
    assert set(answers[0]["source"]) == {"model"}, ours.predictor.model().reason  # the model answers, not the fallback
    steps = {"whole request (in process)": lambda i: server.invocations(bodies[i], "application/json", model, schema),
             "JSON in": lambda i: server._parse_json_data(bodies[i], model.metadata, schema),
             "signature check": lambda i: _enforce_schema(frames[i], schema),
             "sales_sql's predict": lambda i: ours.predict(None, frames[i]),
             "JSON out": lambda i: server.predictions_to_json(answers[i], io.StringIO())}
    out = {}
    for name, step in steps.items():
        step(0)
        times = []
        for i in range(len(bodies)):
            t = time.perf_counter()
            step(i)
            times.append((time.perf_counter() - t) * 1000)
        out[name] = statistics.median(times)
    return out


if __name__ == "__main__":
    main()
