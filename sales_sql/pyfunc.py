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

import json
import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

DATABASE_ENV = "SALES_SQL_DATABASE"
# each input field and the names it may come under (sales_sql's own, then the seed system's)
FIELDS = {"sale_time": ("sale_time", "Date"), "branch_id": ("branch_id", "BranchID"),
          "item_code": ("item_code", "ItemCode"), "unit_price": ("unit_price", "UnitPrice"),
          "customer_id": ("customer_id", "CustomerID")}
REQUIRED = ("sale_time", "branch_id", "item_code")
OUTPUT = ("label", "p_low", "p_medium", "p_high", "source", "model_version")
VERSION_FILE = "registered_version.json"


def bad_input(message: str) -> MlflowException:
    """A request the model cannot answer: HTTP 400 from MLflow's scoring server, with this message."""
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


class InvoiceLines(PythonModel):
    """The pyfunc: artifacts `booster` (UBJSON), `spec` (the feature spec) and, when the trees compiled, `trees` (the
    checked compiled trees); model_config `database` (else $SALES_SQL_DATABASE) and `config` (a settings file, else
    $SALES_SQL_CONFIG, else the shipped defaults)."""

    def load_context(self, context):
        from .config import load_settings

        config = context.model_config or {}
        self.settings = load_settings(config.get("config") or None)
        self.database = config.get("database") or os.environ.get(DATABASE_ENV)
        self.booster = Path(context.artifacts["booster"])
        self.spec_text = Path(context.artifacts["spec"]).read_text(encoding="utf-8")
        marked = self.booster.parents[1] / VERSION_FILE  # the model's folder: mark_version() wrote it there
        self.version = int(json.loads(marked.read_text())["version"]) if marked.is_file() else None
        self.trees = Path(context.artifacts["trees"]) if "trees" in context.artifacts else None
        self._dep, self._stamp, self._lock = None, None, threading.Lock()

    def deployment(self):
        """The version over the database's current history, re-read only when the file changed."""
        from . import duck, serving
        from .lookups import HistoryIndex, Layout

        stamp = _stamp(self.database)
        if self._dep is not None and stamp == self._stamp:
            return self._dep
        with self._lock:
            if self._dep is not None and stamp == self._stamp:
                return self._dep
            spec = self.spec_text
            if self.database is None:
                index = HistoryIndex(Layout.of(self.settings.definition))
                dep = serving.Deployment(serving.NO_DATABASE, None, index, duck.generation,
                                         f"no database to read history from: set model_config {{'database': PATH}} "
                                         f"or ${DATABASE_ENV}")
            else:
                import duckdb

                try:
                    con = duckdb.connect(self.database, read_only=True)
                except duckdb.Error as e:
                    if duck.lock_holder(e) and self._dep is not None:
                        return self._dep  # a load is writing the file: the history read last, until it is done
                    return serving.read_failed(self.version, e)  # not kept: the next call tries again
                try:
                    index, why = serving.history_index(con, self.settings.definition)
                except Exception as e:  # noqa: BLE001  as serving.load_deployment
                    return serving.read_failed(self.version, e)
                finally:
                    con.close()
                dep = serving.deployment(self.settings, index, why, self.version, spec, self.booster.read_bytes,
                                         self.trees)
            if dep.source != serving.READ_FAILED:
                self._dep, self._stamp = dep, stamp
            return dep

    def predict(self, context, model_input: pd.DataFrame, params=None):
        # the type hint: MLflow's own check of the input stays the signature's, and it no longer warns on each load
        from .serving import Served, columns

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        args = [_column(frame, field, self.settings.time_zone) for field in FIELDS]
        out = columns(*Served(self.deployment(), self.booster.read_bytes).predict(*args))
        return pd.DataFrame({name: a.to_numpy(zero_copy_only=False) for name, a in zip(OUTPUT, out)})


def _stamp(database) -> tuple | None:
    """What changes when a load writes the file (its size and time, and its write-ahead log's)."""
    if database is None:
        return None
    stats = [os.stat(p) if os.path.exists(p) else None for p in (database, f"{database}.wal")]
    return tuple((s.st_mtime_ns, s.st_size) if s else None for s in stats)


def _column(frame, field: str, zone: str) -> pa.Array:
    """One input field as the serving code takes it (the macros' casts; a zoned time is its wall-clock time in
    `zone`); a request without a required field, or with a sale time that is not a time, is refused with the
    reason."""
    name = next((n for n in FIELDS[field] if n in frame.columns), None)
    n = len(frame)
    if name is None:
        if field in REQUIRED:
            raise bad_input(f"the input has no column {' or '.join(FIELDS[field])}; send invoice lines with "
                            "sale_time (or Date), branch_id (or BranchID), item_code (or ItemCode) and optionally "
                            "unit_price (or UnitPrice) and customer_id (or CustomerID)")
        return pa.nulls(n, pa.float64() if field == "unit_price" else pa.string())
    values = frame[name]
    text = values.dtype == object or isinstance(values.dtype, pd.StringDtype)
    if field == "sale_time":
        if text:
            try:  # ISO text without a zone, as JSON brings it: Arrow's parser, at once
                return pc.cast(pa.array(values, pa.string(), from_pandas=True), pa.timestamp("us"))
            except (pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass  # datetimes, zones, or text that is no time: pandas, below (which names a bad value)
        parsed = pd.to_datetime(values, errors="coerce", format="ISO8601") if not \
            pd.api.types.is_datetime64_any_dtype(values) else values
        bad = parsed.isna() & values.notna()
        if bad.any():
            raise bad_input(f"{name} {values[bad].iloc[0]!r} (line {int(np.flatnonzero(bad)[0]) + 1}) is not a date "
                            "or time; write it as YYYY-MM-DD or YYYY-MM-DD HH:MM:SS")
        if parsed.dt.tz is not None:
            parsed = parsed.dt.tz_convert(zone).dt.tz_localize(None)
        return pa.array(parsed, pa.timestamp("us"))
    if field == "unit_price":
        return pa.array(pd.to_numeric(values, errors="coerce"), pa.float64(), from_pandas=True)
    if text:
        try:  # text (and gaps) as it is: a JSON request's usual keys, converted at once
            return pa.array(values, pa.string(), from_pandas=True)
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            pass  # numbers among them: one at a time, below
    # keys as text; whole numbers stored as floats (a column with gaps: 17850.0) as the loader reads them ('17850')
    return pa.array(values.map(lambda v: None if v is None or v != v else
                               str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)), pa.string())


def mark_version(client, info) -> None:
    """Write the registered version's number into the logged model's folder, where the pyfunc reads it: the number
    exists only once the model is registered, after its artifacts were written."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / VERSION_FILE
        path.write_text(json.dumps({"version": int(info.registered_model_version)}))
        client.log_model_artifact(info.model_id, str(path))


def log_model(booster_raw: bytes, spec: dict, registered_model_name: str | None = None):
    """Log the pyfunc of a booster into the active MLflow run (and register it): the booster, its spec and its
    checked compiled trees as artifacts, a signature and an input example of raw invoice lines, and as its code
    mlflow_model.py (InvoiceLines from the installed sales_sql; nothing pickled)."""
    import tempfile

    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    from . import __version__
    from .serving import booster_of
    from .trees import Trees

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "booster.ubj").write_bytes(booster_raw)
        (folder / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
        artifacts = {"booster": str(folder / "booster.ubj"), "spec": str(folder / "spec.json")}
        trees = Trees.of(booster_of(booster_raw))
        if trees is not None:
            (folder / "trees").mkdir()
            trees.save(folder / "trees")
            artifacts["trees"] = str(folder / "trees")
        # every name optional and of any type: the model takes either name of a field, and times, numbers or text;
        # sales_sql's names first (spark_udf passes its arguments to the schema's columns in order)
        names = [n for at in (0, 1) for n in (names[at] for names in FIELDS.values())]
        inputs = Schema([ColSpec(AnyType(), name, required=False) for name in names])
        outputs = Schema([ColSpec("string", "label"), *(ColSpec("double", c) for c in OUTPUT[1:4]),
                          ColSpec("string", "source"), ColSpec("integer", "model_version")])
        example = {"sale_time": ["2011-12-08 10:30:00"], "branch_id": ["United Kingdom"], "item_code": ["85123A"],
                   "unit_price": [2.55], "customer_id": ["17850"]}
        return mlflow.pyfunc.log_model(
            name="model", python_model=str(Path(__file__).with_name("mlflow_model.py")), artifacts=artifacts,
            signature=ModelSignature(inputs=inputs, outputs=outputs), input_example=pd.DataFrame(example),
            registered_model_name=registered_model_name, model_config={"database": "", "config": ""},
            pip_requirements=[f"sales_sql=={__version__}"])
