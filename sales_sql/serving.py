"""Predictions from a model source: one predictor (serving.Predictor) answers predict_sales wherever the model comes
from: the database file (DatabaseFile, here: DuckDB's UDFs, bulk scoring, the gate), a pyfunc's artifacts
(pyfunc.Artifacts: MLflow's load_model, REST, spark_udf) or a Spark bundle (spark.Bundle: Spark's SQL functions). A
source says when what it serves changed (stamp) and loads it (load: the booster and its feature spec, or the documented
fallback with its cause); the predictor keeps the loaded model until the stamp moves, and gives features from
lookups.py, the compiled trees (trees.py) or XGBoost's predictor, and explanations.

Nothing here imports MLflow. XGBoost (2 s and 0.1 GB with the scikit-learn it imports; UCI's booster takes 0.25 GB
more) is imported only to check a model's compiled trees once per file (checked_folder), to explain, or to answer
where the trees do not compile.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa

from . import definition, duck
from . import trees as trees_module
from .config import Settings
from .definition import CLASSES, FEATURES, Definition, readable
from .duck import deployed_row
from .lookups import (SPLIT_ROWS, Batch, HistoryIndex, Layout, LayoutError, Plan, index_folder,
                      write_folder)
from .metrics import WEIGHTS, decide
from .structs import EXPLANATION, PROBA
from .trees import Trees

if TYPE_CHECKING:
    import xgboost as xgb

log = logging.getLogger("sales_sql")

# what answered a row (the `source` field); docs/sql.md lists the fallback causes. READ_FAILED (the history or the
# model could not be read just now: I/O, memory) is the one cause that may pass by itself: it is never kept, and the
# next call tries again
MODEL, NO_MODEL, UNREADABLE, MISMATCH, INVALID_DATE, UNSERVABLE, READ_FAILED, NO_DATABASE, INVALID_PRICE = (
    "model", "fallback:no_model", "fallback:bundle_unreadable", "fallback:spec_mismatch", "invalid_date",
    "fallback:features_unavailable", "fallback:read_failed", "fallback:no_database", "invalid_price")
WITHOUT_HISTORY = (UNSERVABLE, READ_FAILED, NO_DATABASE)  # the fallbacks that answer without history (empty index)
SOURCES = (MODEL, NO_MODEL, UNREADABLE, MISMATCH, INVALID_DATE, UNSERVABLE, READ_FAILED, NO_DATABASE, INVALID_PRICE)
EXPLAIN_TOP = 5
_CLASS_NAMES = pa.array(CLASSES)
_SOURCE_NAMES = pa.array(SOURCES)

@dataclass
class LoadedModel:
    """A model version as a predictor serves it (the one name for it: the database's row is the deployed row, and
    promote deploys), or the fallback that answers instead, with its cause."""
    source: str                         # MODEL or a fallback cause
    version: int | None
    index: HistoryIndex
    reason: str = ""                    # why the fallback answers (empty for MODEL)
    booster: xgb.Booster | None = None  # all cores (None when the checked trees answer: explain loads it)
    single: xgb.Booster | None = None   # the model on one thread, for calls side by side (without trees only)
    trees: Trees | None = None          # the same model compiled (trees.py); None: XGBoost's predictor answers
    spec: dict | None = None
    plan: Plan | None = None            # where the kernels put each feature of the spec
    slow: str = ""                      # why the compiled trees do not answer the model (XGBoost's predictor does)

    @property
    def weights(self) -> list | None:
        """The decision weights its retrain chose, from its spec (metrics.decide); None (argmax): a version from
        before them, or the fallback."""
        return (self.spec or {}).get(WEIGHTS)


def why(e: BaseException) -> str:
    """An exception as the one-line reason a fallback gives."""
    return f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"


def no_history(definition: Definition) -> HistoryIndex:
    """The empty history index of the definition (look-ups find nothing): a source without a database."""
    return HistoryIndex(Layout.of(definition))


def read_failed(version, e: BaseException) -> LoadedModel:
    """The fallback while the history or the model cannot be read (I/O, memory): not kept, tried again next call."""
    return LoadedModel(READ_FAILED, version, no_history(FEATURES),
                       f"the history or the deployed model could not be read ({why(e)}); the next call tries again")


def history_index(con, definition: Definition) -> tuple[HistoryIndex, str]:
    """The history index of the current definition, or an empty one and the reason when the kernels cannot lay the
    definition out (look-ups then find nothing; predictions still answer). Reading errors go to the caller."""
    try:
        layout = Layout.of(definition)
    except LayoutError as e:  # a definition the kernels cannot serve is a fallback, never a failed query
        return no_history(FEATURES), why(e)
    return HistoryIndex(layout, con), ""


def checked_name(digest: str) -> str:
    """The name of the folder that holds the compiled Trees of the booster whose bytes have this md5, once they gave
    XGBoost's own answers (with this trees.py and this XGBoost): with it, later processes serve the model from those
    files, memory-mapped, without reading the booster or importing XGBoost (together 0.4 GB for a large model)."""
    key = hashlib.sha256(digest.encode())  # XGBoost's version from its package (xgboost or xgboost-cpu), unimported
    for part in (Path(trees_module.__file__).read_bytes(),
                 (Path(find_spec("xgboost").origin).parent / "VERSION").read_bytes()):
        key.update(hashlib.sha256(part).digest())
    return f"compiled-{key.hexdigest()[:20]}"


def booster_of(raw) -> xgb.Booster:
    """An XGBoost booster from a booster's UBJSON bytes, on every core."""
    import xgboost as xgb  # 2 s: only where the compiled trees are not checked yet, or to explain

    booster = xgb.Booster()
    booster.load_model(bytearray(raw))
    booster.set_param({"nthread": os.cpu_count() or 1})
    return booster


def load(settings: Settings, index: HistoryIndex, unservable: str = "", version: int | None = None,
         spec_text: str | None = None, read_booster=None, checked: Path | None = None) -> LoadedModel:
    """A model version (its spec's JSON and a function that reads its booster's bytes; `checked`: its checked
    trees' folder, read when it exists and written when not) over a history index, or the fallback with its cause
    (no version: NO_MODEL). Every source loads through here. Nothing about the model or the features fails here: any
    error becomes a fallback whose reason says what happened."""
    if unservable:
        return LoadedModel(UNSERVABLE, version, index,
                           f"the prediction kernels cannot serve the feature definition ({unservable}); the fallback "
                           "answers without history")
    if spec_text is None:
        return LoadedModel(NO_MODEL, None, index,
                           f"no model {settings.model_name!r} is deployed in this database; run `sales-sql promote`")
    trees = booster = None
    try:
        spec = json.loads(spec_text)
        if checked is not None and checked.is_dir():
            trees = Trees.load(checked)
            features = trees.features
        else:
            booster = booster_of(read_booster())
            features = booster.num_features()
        if features != len(spec["features"]):
            raise ValueError(f"the booster has {features} features, its spec {len(spec['features'])}")
    except (ValueError, KeyError, TypeError) as e:  # XGBoostError is a ValueError
        return LoadedModel(UNREADABLE, version, index,
                           f"the deployed model v{version} cannot be read ({str(e).splitlines()[0][:200]}); "
                           "promote a version again with `sales-sql promote`")
    except Exception as e:  # noqa: BLE001  OSError, MemoryError, duckdb.Error: may pass
        return read_failed(version, e)
    current = definition.spec(settings.definition, settings.low_max, settings.medium_max, settings.buckets)
    if {k: v for k, v in spec.items() if k != WEIGHTS} != current:  # the decision weights are the retrain's own
        differ = sorted(k for k in current if spec.get(k) != current[k])
        return LoadedModel(MISMATCH, version, index,
                           f"the deployed model v{version} was trained with a different feature spec ({', '.join(differ)} "
                           "differ from the current settings and feature definition); retrain and promote a new version")
    try:
        plan = index.layout.plan(spec)
    except Exception as e:  # noqa: BLE001  never a failed query: the fallback answers, saying why
        return LoadedModel(UNSERVABLE, version, index,
                           f"the prediction kernels cannot serve the features of v{version}: {e}")
    single, slow = None, ""
    if trees is None:
        trees, slow = Trees.compile(booster)
        if trees is not None and checked is not None:  # no folder: the next process checks again
            failed = write_folder(checked, trees.save, lambda old: old.name.startswith("compiled-"))
            if failed:
                log.warning("the checked trees cannot be written beside the database (%s); the next process checks "
                            "them again", failed)
        elif trees is None:  # without the compiled trees, a copy of the model on one thread (a second copy in memory)
            single = booster.copy()
            single.set_param({"nthread": 1})
    return LoadedModel(MODEL, version, index, booster=booster, single=single, trees=trees, spec=spec, plan=plan,
                       slow=slow)


# ---- where a model comes from -------------------------------------------------------------------------------

class Busy(Exception):
    """A source's file is being written by another process just now: the predictor keeps the model it read last
    (saying so), or answers READ_FAILED when it has none."""

    def __init__(self, version, cause: BaseException):
        super().__init__(str(cause))
        self.version, self.cause = version, cause


class ModelSource:
    """Where a model and its history come from. stamp(): changes when what load() would read changed (the predictor
    loads again then); load(settings): the LoadedModel (serving.load) or its fallback, raising only Busy;
    booster_bytes(): the booster's UBJSON (explanations need XGBoost's own contributions)."""

    def stamp(self):
        return None

    def load(self, settings: Settings) -> LoadedModel:
        raise NotImplementedError

    def booster_bytes(self, settings: Settings) -> bytes:
        raise NotImplementedError


class DatabaseFile(ModelSource):
    """The model deployed in a DuckDB database file (its deployed row), over the file's history; loaded again after a
    load, promote, rollback or register in this process (duck.invalidate)."""

    def __init__(self, con):
        self.con = con

    def stamp(self):
        return duck.generation

    def load(self, settings: Settings) -> LoadedModel:
        cur = self.con.cursor()
        try:
            return load_from_file(cur, settings)
        finally:
            cur.close()

    def booster_bytes(self, settings: Settings) -> bytes:
        cur = self.con.cursor()
        try:
            return deployed_row(cur, settings.model_name, "booster")[0]
        finally:
            cur.close()


def load_from_file(con, settings: Settings) -> LoadedModel:
    """The model deployed in con's database file, or the fallback with its cause."""
    try:
        index, unservable = history_index(con, settings.definition)
        row = deployed_row(con, settings.model_name, "version, md5(booster) AS digest, feature_spec", arrow=True)
    except duckdb.CatalogException:
        return LoadedModel(NO_MODEL, None, no_history(FEATURES),
                           "this database lacks sales_sql tables; open it read-write once with sales_sql.connect(path)")
    except Exception as e:  # noqa: BLE001  I/O or memory while reading: the fallback now, the model again next call
        return read_failed(None, e)
    if row is None:
        return load(settings, index, unservable)
    return load(settings, index, unservable, row["version"][0].as_py(), row["feature_spec"][0].as_py(),
                lambda: deployed_row(con, settings.model_name, "booster", arrow=True)["booster"][0].as_buffer(),
                checked_folder(con, row["digest"][0].as_py()))


def checked_folder(con, digest: str) -> Path | None:
    """The checked trees' folder beside the database (FILE.index/); None for an in-memory database."""
    folder = index_folder(con)
    return None if folder is None else folder / checked_name(digest)


class Given(ModelSource):
    """A model loaded already (the versions the gate compares)."""

    def __init__(self, model: LoadedModel, read_booster=None):
        self.model, self.read_booster = model, read_booster

    def load(self, settings: Settings) -> LoadedModel:
        return self.model

    def booster_bytes(self, settings: Settings) -> bytes:
        return self.read_booster()


class Predictor:
    """Answers predict_sales from a model source: loads its model on first use and again whenever the source's stamp
    moves (a failed read is never kept: the next call tries again). With `warn`, it says in the log once per cause
    when a fallback answers (DuckDB's functions; the pyfunc and Spark say it in each answer's `source` alone, as
    MLflow checks a model by predicting its input example without a database). DuckDB calls it from several threads
    at once. A bulk batch (SPLIT_ROWS lines or more) spreads over `threads` cores (default: all of them; a Spark
    task's Python worker: the task's)."""

    def __init__(self, source: ModelSource, settings: Settings | None = None, warn: bool = True,
                 threads: int | None = None):
        self.source, self.settings, self.warn = source, settings, warn
        self.threads = threads or os.cpu_count() or 1
        self._model: LoadedModel | None = None
        self._stamp = None
        self._lock = threading.Lock()
        self._active = 0  # calls running now
        self._warned: set[str] = set()

    def model(self) -> LoadedModel:
        stamp = self.source.stamp()
        found = self._model
        if found is not None and self._stamp == stamp:
            return found
        with self._lock:
            if self._model is not None and self._stamp == stamp:
                return self._model
            try:
                found = self.source.load(self.settings)
            except Busy as e:
                if self._model is not None:
                    self._say(f"sales_sql predictions keep the history read before while the file is being written "
                              f"({why(e.cause)})", always=True)
                    return self._model
                found = read_failed(e.version, e.cause)
            if found.source != MODEL:
                self._say(f"sales_sql predictions use the fallback heuristic: {found.reason}")
            if found.source != READ_FAILED:
                self._model, self._stamp = found, stamp
            return found

    def _say(self, message: str, always: bool = False) -> None:
        """Log a warning once per message (a predictor answers many calls); a fallback's only with `warn`."""
        if (self.warn or always) and message not in self._warned:
            self._warned.add(message)
            log.warning("%s", message)

    def predict(self, *columns):
        """The inputs' columns (in inputs.NAMES order, cast) -> (class index per row or -1, probabilities float32
        (n, 3), source index per row, model version or None, the Batch)."""
        model = self.model()
        return self._answer(model, Batch(model.index, *columns, threads=self.threads))

    def predict_in(self, index: HistoryIndex, *columns):
        """As predict, with history looked up in `index` (Spark's join path: the history a group of lines needs);
        the fallbacks that answer without history keep their empty index."""
        model = self.model()
        return self._answer(model, Batch(model.index if model.source in WITHOUT_HISTORY else index, *columns,
                                         threads=self.threads))

    def _answer(self, model: LoadedModel, batch: Batch):
        with self._lock:
            self._active += 1
        try:
            if model.source == MODEL:
                X = batch.matrix(model.plan)
                if model.trees is not None:  # DuckDB's calls run side by side; a bulk batch splits over the cores
                    proba = model.trees.proba(X, self.threads if batch.n >= SPLIT_ROWS else 1)
                else:  # a call alone (one row, or the last batches) uses every core; calls side by side one each
                    proba = (model.booster if self._active == 1 else model.single).inplace_predict(X)
            else:
                proba = batch.heuristic()
        finally:
            with self._lock:
                self._active -= 1
        source = SOURCES.index(model.source)
        label = decide(proba, model.weights)  # the fallback's: argmax
        label[~batch.ok] = -1  # no answer without a sale time, or with a price that is no number
        sources = np.where(batch.ok_day, np.where(batch.ok_price, source, SOURCES.index(INVALID_PRICE)),
                           SOURCES.index(INVALID_DATE)).astype(np.int8)
        return label, proba, sources, model.version if model.source == MODEL else None, batch

    def class_arrow(self, *columns) -> pa.DictionaryArray:
        label = self.predict(*columns)[0].astype(np.int8)
        # dictionary-encoded: DuckDB reads it as VARCHAR, and it is cheaper to build than strings
        return pa.DictionaryArray.from_arrays(pa.array(label, mask=label < 0), _CLASS_NAMES)

    def predict_arrow(self, *inputs) -> pa.StructArray:
        label, p_low, p_medium, p_high, source, version = columns(*self.predict(*inputs))
        proba = pa.StructArray.from_arrays([p_low, p_medium, p_high], fields=list(PROBA.arrow), mask=label.is_null())
        return pa.StructArray.from_arrays([label, proba, source, version],
                                          names=["label", "proba", "source", "model_version"])

    def proba_arrow(self, *args) -> pa.StructArray:
        return self.predict_arrow(*args).field("proba")

    def explain_arrow(self, *columns) -> pa.ListArray:
        """Top contributions (XGBoost pred_contribs, log-odds of the predicted class) per row; hashed buckets
        are summed into one entry. Empty for fallback rows, NULL for invalid dates."""
        import xgboost as xgb  # contributions are XGBoost's own

        model = self.model()
        batch = Batch(model.index, *columns)
        out = [None if not ok else [] for ok in batch.ok]
        if model.source == MODEL and batch.ok.any():
            if model.booster is None:  # the checked trees answer predictions; contributions need XGBoost
                model.booster = booster_of(self.source.booster_bytes(self.settings))
            X = batch.matrix(model.plan)
            names = model.spec["features"]
            # a DMatrix refuses inf (inplace_predict takes it); the largest float splits every tree the same way
            big = np.finfo(np.float32).max
            finite = np.nan_to_num(X, nan=np.nan, posinf=big, neginf=-big)
            contribs = model.booster.predict(xgb.DMatrix(finite, feature_names=names), pred_contribs=True)
            label = decide(model.booster.inplace_predict(X), model.weights)
            hashed = [j for j, f in enumerate(names) if f.startswith("hashed_")]
            plain = [j for j, f in enumerate(names) if not f.startswith("hashed_")]
            labels = [readable(model.index.layout.definition, names[j]) for j in plain]
            for r in np.flatnonzero(batch.ok):
                c = contribs[r, label[r]]
                entries = [(name, float(X[r, j]), float(c[j])) for name, j in zip(labels, plain)]
                if hashed:
                    entries.append(("branch x item (hashed keys)", None, float(c[hashed].sum())))
                entries.sort(key=lambda e: -abs(e[2]))
                out[r] = [{"feature": f, "value": None if v is None or np.isnan(v) else v, "contribution": c}
                          for f, v, c in entries[:EXPLAIN_TOP]]
        return pa.array(out, EXPLANATION.arrow)


def columns(label, proba, sources, version, batch):
    """Arrow columns label, p_low, p_medium, p_high, source, model_version (NULL where the date is invalid)."""
    bad = label < 0
    p = proba.astype(np.float64)
    return [_CLASS_NAMES.take(pa.array(label, mask=bad)), *[pa.array(p[:, i], mask=bad) for i in range(3)],
            _SOURCE_NAMES.take(pa.array(sources)),
            pa.array(np.full(len(label), version or 0, np.int32), mask=bad | (version is None))]
