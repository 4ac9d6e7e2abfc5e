"""Each registered version as an MLflow pyfunc model over raw invoice lines, so it works wherever MLflow models do:
`mlflow.pyfunc.load_model("models:/sales_sql_class@production")`, `mlflow models serve` (REST) and
`mlflow.pyfunc.spark_udf`. Its answers are predict_sales's, from the same serving code (features from the history
index, the compiled trees, the fallback), with the columns of `sales-sql predict`.

Input: one row per invoice line, `sale_time` (or `Date`), `branch_id` (or `BranchID`), `item_code` (or `ItemCode`),
optional `unit_price` (or `UnitPrice`) and `customer_id` (or `CustomerID`); other columns are ignored. History comes
from the database file named by the model_config key "database" or $SALES_SQL_DATABASE: read from the history index
the file keeps beside it (FILE.index/), opening the file read-only only when it changed and only for that moment,
so a scheduled `sales-sql pipeline` can write it between calls. Without a database the fallback answers, and
`source` says so.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from importlib.metadata import version as installed_version
from pathlib import Path

import duckdb
import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import AnyType

from . import duck, inputs, serving
from .config import load_settings
from .trees import Trees

DATABASE_ENV = "SALES_SQL_DATABASE"
OUTPUT = ("label", "p_low", "p_medium", "p_high", "source", "model_version")
VERSION_FILE = "registered_version.json"


def bad_input(message: str) -> MlflowException:
    """A request the model cannot answer: HTTP 400 from MLflow's scoring server, with this message."""
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


class Artifacts(serving.ModelSource):
    """A logged version's artifacts (booster, spec, checked trees, its number) over the history of a database file,
    re-read only when the file changed; without a database, the fallback says so."""

    def __init__(self, booster: Path, spec_text: str, trees: Path | None, version: int | None, database: str | None):
        self.booster, self.spec_text, self.trees, self.version, self.database = (booster, spec_text, trees, version,
                                                                                 database)

    def stamp(self):
        return _stamp(self.database)

    def load(self, settings) -> serving.LoadedModel:
        if self.database is None:
            return serving.LoadedModel(serving.NO_DATABASE, None, serving.no_history(settings.definition),
                                       f"no database to read history from: set model_config {{'database': PATH}} "
                                       f"or ${DATABASE_ENV}")
        try:
            con = duckdb.connect(self.database, read_only=True)
        except duckdb.Error as e:
            if duck.lock_holder(e):
                raise serving.Busy(self.version, e) from None  # a load is writing the file: the history read last
            return serving.read_failed(self.version, e)  # not kept: the next call tries again
        try:
            index, why = serving.history_index(con, settings.definition)
        except Exception as e:  # noqa: BLE001  as serving.load_from_file
            return serving.read_failed(self.version, e)
        finally:
            con.close()
        return serving.load(settings, index, why, self.version, self.spec_text, self.booster.read_bytes, self.trees)

    def booster_bytes(self, settings) -> bytes:
        return self.booster.read_bytes()


class InvoiceLines(PythonModel):
    """The pyfunc: artifacts `booster` (UBJSON), `spec` (the feature spec) and, when the trees compiled, `trees` (the
    checked compiled trees); model_config `database` (else $SALES_SQL_DATABASE) and `config` (a settings file, else
    $SALES_SQL_CONFIG, else the shipped defaults)."""

    def load_context(self, context):
        config = context.model_config or {}
        self.settings = load_settings(config.get("config") or None)
        booster = Path(context.artifacts["booster"])
        marked = booster.parents[1] / VERSION_FILE  # the model's folder: mark_version() wrote it there
        source = Artifacts(booster, Path(context.artifacts["spec"]).read_text(encoding="utf-8"),
                           Path(context.artifacts["trees"]) if "trees" in context.artifacts else None,
                           int(json.loads(marked.read_text())["version"]) if marked.is_file() else None,
                           config.get("database") or os.environ.get(DATABASE_ENV))
        self.predictor = serving.Predictor(source, self.settings, warn=False)
        # sales-sql serve refuses a request with a bad line (HTTP 400); in Python and Spark a bad line answers NULL
        # with its source, as in SQL: a query never dies on one line
        self.refuse = False

    def predict(self, context, model_input: pd.DataFrame, params=None):
        # the type hint: MLflow's own check of the input stays the signature's, and it no longer warns on each load
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        args = [_column(frame, field, self.settings.time_zone, self.refuse) for field in inputs.NAMES]
        out = serving.columns(*self.predictor.predict(*args))
        # a column with gaps holds None there, not NaN: JSON has no NaN (a strict parser refuses the whole answer)
        return pd.DataFrame({name: pd.Series(a.to_pylist(), dtype=object) if a.null_count else
                             a.to_numpy(zero_copy_only=False) for name, a in zip(OUTPUT, out)})


def _stamp(database) -> tuple | None:
    """What changes when a load writes the file (its size and time, and its write-ahead log's)."""
    if database is None:
        return None
    stats = [os.stat(p) if os.path.exists(p) else None for p in (database, f"{database}.wal")]
    return tuple((s.st_mtime_ns, s.st_size) if s else None for s in stats)


def _column(frame, field: str, zone: str, refuse: bool = True) -> pa.Array:
    """One input field as the serving code takes it (inputs.py's casts). A request without a required field is
    refused; with `refuse`, so is one with a line whose sale time is missing or no time, or whose price is given but
    no number, naming the line and showing the value as it was sent (else that line answers invalid_date or
    invalid_price)."""
    name = next((n for n in (field, inputs.SEED_NAMES[field]) if n in frame.columns), None)
    if name is None:
        if field in inputs.REQUIRED:
            raise bad_input(f"the input has no column {field} or {inputs.SEED_NAMES[field]}; send invoice lines with "
                            "sale_time (or Date), branch_id (or BranchID), item_code (or ItemCode) and optionally "
                            "unit_price (or UnitPrice) and customer_id (or CustomerID)")
        return inputs.absent(field, len(frame))
    given = _arrow(frame[name])
    if field == "sale_time":
        out = inputs.sale_times(given, zone)
        bad = ~out.is_valid().to_numpy(zero_copy_only=False)
        rule = ("is not a sale time; every line needs one, written YYYY-MM-DD or YYYY-MM-DD HH:MM:SS (an offset "
                "such as +01:00 or Z is converted to the time_zone setting)")
    elif field == "unit_price":
        out = inputs.prices(given)
        bad = inputs.not_a_price(out)
        rule = "is not a price; send a number, or null (or no field) when the price is unknown"
    else:
        return inputs.keys(given)
    if refuse and bad.any():
        line = int(np.flatnonzero(bad)[0])
        raise bad_input(f"{name} {_shown(frame[name].iloc[line])} on line {line + 1} {rule}")
    return out


def _arrow(values: pd.Series) -> pa.Array:
    """A column as Arrow; one of mixed kinds (text and numbers, times in several zones) as text, value by value."""
    try:  # text and JSON's values (object) from numpy: pyarrow's probes of a Series cost more than a short column
        return pa.array(values.to_numpy() if values.dtype == object else values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError):
        return pa.array([_text(v) for v in values], pa.string())


def _missing(v) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v)


def _text(v) -> str | None:
    v = v.item() if isinstance(v, np.generic) else v
    if _missing(v):
        return None
    if isinstance(v, float) and v.is_integer():  # a key stored as a float (17850.0), as the loader reads it
        return str(int(v))
    return v.isoformat() if isinstance(v, (dt.datetime, dt.date)) else str(v)


def _shown(v) -> str:
    """A value as the user sent it (in JSON's words: "soon", 12345, true, null)."""
    v = v.item() if isinstance(v, np.generic) else v
    if _missing(v):
        return "null"
    if isinstance(v, (dt.datetime, dt.date)):
        return json.dumps(v.isoformat())
    try:
        return json.dumps(v)
    except TypeError:
        return repr(v)


def mark_version(client, model_id: str, version: int) -> None:
    """Write the registered version's number into the logged model's folder, where the pyfunc reads it: the number
    exists only once the model is registered, after its artifacts were written."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / VERSION_FILE
        path.write_text(json.dumps({"version": int(version)}))
        client.log_model_artifact(model_id, str(path))


def log_model(booster_raw: bytes, spec: dict):
    """Log the pyfunc of a booster into the active MLflow run (registry.register_version registers it): the booster, its spec and its
    checked compiled trees as artifacts, a signature and an input example of raw invoice lines, and as its code
    mlflow_model.py (InvoiceLines from the installed sales_sql; nothing pickled)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "booster.ubj").write_bytes(booster_raw)
        (folder / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
        artifacts = {"booster": str(folder / "booster.ubj"), "spec": str(folder / "spec.json")}
        trees = Trees.of(serving.booster_of(booster_raw))
        if trees is not None:
            (folder / "trees").mkdir()
            trees.save(folder / "trees")
            artifacts["trees"] = str(folder / "trees")
        # every name optional and of any type: the model takes either name of a field, and times, numbers or text;
        # sales_sql's names first (spark_udf passes its arguments to the schema's columns in order)
        names = [*inputs.NAMES, *inputs.SEED_NAMES.values()]
        columns = Schema([ColSpec(AnyType(), name, required=False) for name in names])
        outputs = Schema([ColSpec("string", "label"), *(ColSpec("double", c) for c in OUTPUT[1:4]),
                          ColSpec("string", "source"), ColSpec("integer", "model_version")])
        example = {"sale_time": ["2011-12-08 10:30:00"], "branch_id": ["United Kingdom"], "item_code": ["85123A"],
                   "unit_price": [2.55], "customer_id": ["17850"]}
        return mlflow.pyfunc.log_model(
            name="model", python_model=str(Path(__file__).with_name("mlflow_model.py")), artifacts=artifacts,
            signature=ModelSignature(inputs=columns, outputs=outputs), input_example=pd.DataFrame(example),
            model_config={"database": "", "config": ""},
            pip_requirements=[f"sales_sql=={installed_version('sales_sql')}"])
