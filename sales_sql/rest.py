"""`sales-sql serve`: a registered version behind MLflow's own scoring server (its FastAPI app, under uvicorn, in
this process), made a service a supervisor can run:

- it starts only on what can serve: the file opens as a database with sales_sql's tables, the MLflow store beside
  it has the version, the version loads and answers from the model over the file's history (ServeError otherwise);
- SIGTERM and SIGINT stop it gracefully (uvicorn's own shutdown; with --workers, uvicorn's supervisor stops its
  workers and waits for them), the port is free when it returns;
- `/ready` answers 200 only while the model answers (what answers: the version, or the fallback and why: 503), beside
  MLflow's `/ping` and `/health` (liveness);
- every answer is strict JSON (the pyfunc answers None, not NaN); an error is one JSON object with a one-line
  message (MLflow's stack trace and its copy of the request left out); a text/csv body is read as text columns.
"""
from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import sys
from pathlib import Path

import duckdb
import mlflow
import pandas as pd
import uvicorn
from fastapi.responses import Response
from mlflow.pyfunc import scoring_server
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from . import duck, registry
from .config import Settings, load_settings
from .serving import MODEL, why

MODEL_ENV = "SALES_SQL_SERVE_MODEL"  # the model URI each worker loads (uvicorn starts workers as new processes)


class ServeError(RuntimeError):
    """The server cannot start: nothing answers on the port."""


def model_uri(settings: Settings, version: str) -> str:
    return f"models:/{settings.model_name}/{version}" if version.isdigit() else \
        f"models:/{settings.model_name}@{version}"


def check(database: str, settings: Settings, version: str):
    """What serving DATABASE needs, checked before the port opens (ServeError with the reason and the fix): returns
    the loaded pyfunc, answering from the model."""
    if not Path(database).is_file():
        raise ServeError(f"{database} does not exist; serve the database file that `sales-sql load` wrote")
    try:
        con = duckdb.connect(database, read_only=True)
    except duckdb.Error as e:
        if not duck.lock_holder(e):  # a load holding the file is no reason not to start: it is read when done
            raise ServeError(f"{database} cannot be opened as a DuckDB database ({str(e).splitlines()[0][:200]}); "
                             "serve the file that `sales-sql load` wrote") from None
    else:
        try:
            con.execute("SELECT 1 FROM history LIMIT 1")
        except duckdb.CatalogException:
            raise ServeError(f"{database} holds no sales_sql tables; load invoices into it with `sales-sql load` "
                             "first") from None
        finally:
            con.close()
    client = registry.mlflow_client(database, existing=True)  # RegistryError: no store beside the file
    found = registry.find_version(client, settings, version)  # RegistryError: no such version or alias

    try:
        model = mlflow.pyfunc.load_model(model_uri(settings, version), model_config=model_config(database, settings))
    except Exception as e:  # noqa: BLE001  any failure to load is a reason not to start, in one line
        raise ServeError(f"version {found.version} of {settings.model_name!r} does not load: {why(e)}") from None
    loaded = model.unwrap_python_model().predictor.model()
    if loaded.source != MODEL:
        raise ServeError(f"version {found.version} would not answer from the model but from {loaded.source}: "
                         f"{loaded.reason}")
    return model


def model_config(database: str, settings: Settings) -> dict:
    return {"database": str(Path(database).resolve()),
            "config": "" if settings.source == "defaults" else settings.source}


def application(model):
    """MLflow's scoring app over the loaded pyfunc, with /ready, CSV bodies and one-line errors."""
    app = scoring_server.init(model)
    lines = model.unwrap_python_model()
    lines.refuse = True  # a request with a bad line gets a 400 naming it, not NULL answers

    @app.get("/ready")
    async def ready():
        """200 while the model answers; 503 with the fallback's cause while it does not (e.g. the file unreadable)."""
        loaded = await asyncio.to_thread(lines.predictor.model)
        serving = loaded.source == MODEL
        body = {"ready": serving, "source": loaded.source, "model_version": loaded.version if serving else None,
                "reason": loaded.reason or None}
        return Response(json.dumps(body), status_code=200 if serving else 503, media_type="application/json")

    return Requests(app)


def create():
    """The app of one worker (uvicorn's factory): the model named by the environment `serve` set. A worker that
    cannot load it exits as uvicorn's start-up failure, which stops the supervisor (not restarted forever)."""
    try:
        settings = load_settings(os.environ.get("SALES_SQL_CONFIG") or None)
        config = model_config(os.environ["SALES_SQL_DATABASE"], settings)
        return application(mlflow.pyfunc.load_model(os.environ[MODEL_ENV], model_config=config))
    except Exception as e:  # noqa: BLE001  one line in the log, then the supervisor stops
        print(f"a worker of sales-sql serve could not load the model: {why(e)}", file=sys.stderr, flush=True)
        sys.exit(STARTUP_FAILURE)


class Requests:
    """ASGI around MLflow's app, for /invocations only: a text/csv body becomes the same lines as JSON (every column
    as text, empty cells as null: MLflow's own CSV reader needs typed columns, which the model's signature has not),
    and an error answer becomes {"error_code", "message"} with the message on one line."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/invocations":
            return await self.app(scope, receive, send)
        kind = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip().lower()
        if kind == b"text/csv":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            try:
                body = csv_as_json(body)
            except ValueError as e:
                return await _answer(send, 400, {"error_code": "BAD_REQUEST", "message": str(e)})
            headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")]
            scope = {**scope, "headers": headers + [(b"content-type", b"application/json"),
                                                    (b"content-length", str(len(body)).encode())]}
            receive = _replay(body, receive)

        failed = {}

        async def sending(message):
            if message["type"] == "http.response.start" and message["status"] >= 400:
                failed.update(status=message["status"], body=b"")
                return
            if failed and message["type"] == "http.response.body":
                failed["body"] += message.get("body", b"")
                if not message.get("more_body"):
                    await _answer(send, failed["status"], one_line(failed["body"]))
                return
            await send(message)

        await self.app(scope, receive, sending)


def _replay(body: bytes, receive):
    """An ASGI receive that hands over `body` as the whole request, then waits on the client as before."""
    pending = [body]

    async def replayed():
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()
    return replayed


async def _answer(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def one_line(body: bytes) -> dict:
    """An error answer of MLflow's as {"error_code", "message"}: its message alone (not its copy of the request, not
    its stack trace), on one line."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        parsed = {"message": body.decode("utf-8", "replace")}
    message = str(parsed.get("message", ""))
    message = message.rpartition("\nError: ")[2]  # MLflow puts "Failed to predict data '<the request>'." before
    return {"error_code": parsed.get("error_code", "BAD_REQUEST"), "message": " ".join(message.split())[:2000]}


def csv_as_json(body: bytes) -> bytes:
    """A CSV body (a header line, then one invoice line a row) as MLflow's JSON request, every cell as text."""
    try:
        frame = pd.read_csv(io.BytesIO(body), dtype=str, keep_default_na=False, na_values=[""])
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ValueError(f"the text/csv body is not CSV with a header line ({' '.join(str(e).split())[:200]}); "
                         "send a header line (Date,BranchID,ItemCode,...) and one invoice line a row") from None
    split = frame.astype(object).where(frame.notna(), None).to_dict(orient="split", index=False)
    return json.dumps({"dataframe_split": split}).encode()


def run(database: str, settings: Settings, version: str, host: str, port: int, workers: int, say) -> bool:
    """Check, then answer on host:port until SIGTERM or SIGINT; True when stopped by one, False when the server
    stopped by itself (a worker that could not start)."""
    model = check(database, settings, version)
    try:  # the port, bound here: a port in use is one line, not uvicorn's exit
        sock = listening(host, port)
    except OSError as e:
        raise ServeError(f"cannot answer on {host}:{port}: {e.strerror or e}; choose another --port, or stop what "
                         "answers there") from None
    stopped = []

    def stop(sig, frame):  # uvicorn shuts down first, then hands the signal back here: a requested stop, not a failure
        stopped.append(sig)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    # what each worker needs (started as a new process, it reads them from the environment)
    os.environ.update({"SALES_SQL_DATABASE": str(Path(database).resolve()), MODEL_ENV: model_uri(settings, version),
                       "MLFLOW_TRACKING_URI": registry.tracking_uri(database)})
    if settings.source != "defaults":
        os.environ["SALES_SQL_CONFIG"] = settings.source
    say(f"serving {model_uri(settings, version)} over {database} on http://{host}:{port} (POST /invocations; "
        f"GET /ready, /ping)")
    try:
        if workers == 1:
            config = uvicorn.Config(application(model), host=host, port=port, timeout_graceful_shutdown=10)
            server = uvicorn.Server(config)
            server.run(sockets=[sock])
        else:
            del model  # each worker loads its own
            config = uvicorn.Config("sales_sql.rest:create", factory=True, host=host, port=port, workers=workers,
                                    timeout_graceful_shutdown=10)
            supervisor = _supervisor()(config, sockets=[sock])
            supervisor.run()  # stops its workers (SIGTERM) and waits for them
            stopped.extend(supervisor.requested)
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return bool(stopped)


def listening(host: str, port: int) -> socket.socket:
    """A bound TCP socket for uvicorn, as uvicorn binds one, with its protocol named: asyncio turns Nagle's algorithm
    off (TCP_NODELAY) only on connections of a socket whose protocol is TCP, and without that every answer waits for
    the client's delayed acknowledgement (40 ms a request)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)  # the workers of --workers answer on it
    return sock


def _supervisor():

    class Supervisor(Multiprocess):
        """uvicorn's supervisor of --workers, noting a requested stop (it also stops when a worker cannot start)."""
        requested: list = []

        def handle_int(self):
            self.requested = [*self.requested, signal.SIGINT]
            super().handle_int()

        def handle_term(self):
            self.requested = [*self.requested, signal.SIGTERM]
            super().handle_term()

    return Supervisor
