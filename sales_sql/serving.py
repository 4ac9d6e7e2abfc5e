"""Predictions over the deployed model: the booster and its feature spec read from the database file (or the
documented fallback, with its cause), features from lookups.py, the compiled trees (trees.py) or XGBoost's predictor,
and explanations.

Nothing here imports MLflow. XGBoost (2 s and 0.1 GB with the scikit-learn it imports; UCI's booster takes 0.25 GB
more) is imported only to check a model's compiled trees once per file (_checked), to explain, or to answer where the
trees do not compile.
The model and the history index are loaded on a connection's first prediction, once per process and database, and
again after a load, promote, rollback or register in this process (invalidate()).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa

from .config import Settings
from . import definition
from .definition import CLASSES, FEATURES, Definition, readable
from . import duck
from .duck import active_deployment, invalidate  # noqa: F401  (invalidate: also sales_sql.serving's)
from .lookups import SPLIT_ROWS, Batch, HistoryIndex, Layout, LayoutError, Plan, write_folder
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
SOURCES = (MODEL, NO_MODEL, UNREADABLE, MISMATCH, INVALID_DATE, UNSERVABLE, READ_FAILED, NO_DATABASE, INVALID_PRICE)
EXPLAIN_TOP = 5
_CLASS_NAMES = pa.array(CLASSES)
_SOURCE_NAMES = pa.array(SOURCES)

@dataclass
class Deployment:
    source: str                         # MODEL or a fallback cause
    version: int | None
    index: HistoryIndex
    generation: int
    reason: str = ""                    # why the fallback answers (empty for MODEL)
    booster: xgb.Booster | None = None  # all cores (None when the checked trees answer: explain loads it)
    single: xgb.Booster | None = None   # the model on one thread, for calls side by side (without trees only)
    trees: Trees | None = None          # the same model compiled (trees.py); None: XGBoost's predictor answers
    spec: dict | None = None
    plan: Plan | None = None            # where the kernels put each feature of the spec


def why(e: BaseException) -> str:
    """An exception as the one-line reason a fallback gives."""
    return f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"


def read_failed(version, e: BaseException) -> Deployment:
    """The fallback while the history or the model cannot be read (I/O, memory): not kept, tried again next call."""
    return Deployment(READ_FAILED, version, HistoryIndex(Layout.of(FEATURES)), duck.generation,
                      f"the history or the deployed model could not be read ({why(e)}); the next call tries again")


def history_index(con, definition: Definition) -> tuple[HistoryIndex, str]:
    """The history index of the current definition, or an empty one and the reason when the kernels cannot lay the
    definition out (look-ups then find nothing; predictions still answer). Reading errors go to the caller."""
    try:
        layout = Layout.of(definition)
    except LayoutError as e:  # a definition the kernels cannot serve is a fallback, never a failed query
        return HistoryIndex(Layout.of(FEATURES)), why(e)
    return HistoryIndex(layout, con), ""


def checked_name(digest: str) -> str:
    """The name of the folder that holds the compiled Trees of the booster whose bytes have this md5, once they gave
    XGBoost's own answers (with this trees.py and this XGBoost): with it, later processes serve the model from those
    files, memory-mapped, without reading the booster or importing XGBoost (together 0.4 GB for a large model)."""
    from importlib.util import find_spec

    from . import trees

    key = hashlib.sha256(digest.encode())  # XGBoost's version from its package (xgboost or xgboost-cpu), unimported
    for part in (Path(trees.__file__).read_bytes(), (Path(find_spec("xgboost").origin).parent / "VERSION").read_bytes()):
        key.update(hashlib.sha256(part).digest())
    return f"compiled-{key.hexdigest()[:20]}"


def _checked(con, digest: str) -> Path | None:
    """The checked trees' folder beside the database (FILE.index/); None for an in-memory database."""
    from .lookups import index_folder

    folder = index_folder(con)
    return None if folder is None else folder / checked_name(digest)


def booster_of(raw) -> xgb.Booster:
    """An XGBoost booster from deployed_models' bytes, on every core."""
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(raw))
    booster.set_param({"nthread": os.cpu_count() or 1})
    return booster


def load_deployment(con, settings: Settings) -> Deployment:
    """The active deployed model of this database, or the fallback with its cause. Nothing about the model or the
    features fails here: any error becomes a fallback whose reason says what happened."""
    try:
        index, unservable = history_index(con, settings.definition)
        row = active_deployment(con, settings.model_name, "version, md5(booster) AS digest, feature_spec", arrow=True)
    except duckdb.CatalogException:
        return Deployment(NO_MODEL, None, HistoryIndex(Layout.of(FEATURES)), duck.generation,
                          "this database lacks sales_sql tables; open it read-write once with sales_sql.connect(path)")
    except Exception as e:  # noqa: BLE001  I/O or memory while reading: the fallback now, the model again next call
        return read_failed(None, e)
    if row is None:
        return deployment(settings, index, unservable)
    return deployment(settings, index, unservable, row["version"][0].as_py(), row["feature_spec"][0].as_py(),
                      lambda: active_deployment(con, settings.model_name, "booster", arrow=True)["booster"][0]
                      .as_buffer(), _checked(con, row["digest"][0].as_py()))


def deployment(settings: Settings, index: HistoryIndex, unservable: str = "", version: int | None = None,
               spec_text: str | None = None, read_booster=None, checked: Path | None = None) -> Deployment:
    """A model version (its spec's JSON and a function that reads its booster's bytes; `checked`: its checked
    trees' folder, read when it exists and written when not) over a history index, or the fallback with its cause
    (no version: NO_MODEL). Both engines' predictions come from here."""
    if unservable:
        return Deployment(UNSERVABLE, version, index, duck.generation,
                          f"the prediction kernels cannot serve the feature definition ({unservable}); the fallback "
                          "answers without history")
    if spec_text is None:
        return Deployment(NO_MODEL, None, index, duck.generation,
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
        return Deployment(UNREADABLE, version, index, duck.generation,
                          f"the deployed model v{version} cannot be read ({str(e).splitlines()[0][:200]}); "
                          "promote a version again with `sales-sql promote`")
    except Exception as e:  # noqa: BLE001  OSError, MemoryError, duckdb.Error: may pass
        return read_failed(version, e)
    current = definition.spec(settings.definition, settings.low_max, settings.medium_max, settings.buckets)
    if spec != current:
        differ = sorted(k for k in current if spec.get(k) != current[k])
        return Deployment(MISMATCH, version, index, duck.generation,
                          f"the deployed model v{version} was trained with a different feature spec ({', '.join(differ)} "
                          "differ from the current settings and feature definition); retrain and promote a new version")
    try:
        plan = index.layout.plan(spec)
    except Exception as e:  # noqa: BLE001  never a failed query: the fallback answers, saying why
        return Deployment(UNSERVABLE, version, index, duck.generation,
                          f"the prediction kernels cannot serve the features of v{version}: {e}")
    single = None
    if trees is None:
        trees = Trees.of(booster)
        if trees is not None and checked is not None:  # no folder: the next process checks again
            write_folder(checked, trees.save, lambda old: old.name.startswith("compiled-"))
        elif trees is None:  # without the compiled trees, a copy of the model on one thread (a second copy in memory)
            single = booster.copy()
            single.set_param({"nthread": 1})
    return Deployment(MODEL, version, index, duck.generation, booster=booster, single=single, trees=trees, spec=spec,
                      plan=plan)


class Predictor:
    """Answers predict_sales for one registered connection; loads the deployment lazily, once per generation."""

    def __init__(self, con, settings: Settings):
        self.con, self.settings = con, settings
        self._deployment: Deployment | None = None
        self._lock = threading.Lock()
        self._active = 0  # calls running now (DuckDB calls a UDF from several threads at once)
        self._warned: set[str] = set()

    def deployment(self) -> Deployment:
        dep = self._deployment
        if dep is not None and dep.generation == duck.generation and dep.source != READ_FAILED:
            return dep
        with self._lock:
            dep = self._deployment
            if dep is None or dep.generation != duck.generation or dep.source == READ_FAILED:
                cur = self.con.cursor()
                try:
                    self._deployment = load_deployment(cur, self.settings)
                finally:
                    cur.close()
                dep = self._deployment
                if dep.source != MODEL and dep.reason not in self._warned:
                    self._warned.add(dep.reason)
                    log.warning("sales_sql predictions use the fallback heuristic: %s", dep.reason)
            return self._deployment

    def booster_bytes(self) -> bytes:
        cur = self.con.cursor()
        try:
            return active_deployment(cur, self.settings.model_name, "booster")[0]
        finally:
            cur.close()

    def predict(self, day, branch, item, price, customer):
        """(class index per row or -1, probabilities float32 (n, 3), source index per row, model version or None,
        the Batch)."""
        dep = self.deployment()
        with self._lock:
            self._active += 1
        try:
            batch = Batch(dep.index, day, branch, item, price, customer)
            if dep.source == MODEL:
                X = batch.matrix(dep.plan)
                if dep.trees is not None:  # DuckDB's calls run side by side; a bulk batch splits over the cores
                    proba = dep.trees.proba(X, (os.cpu_count() or 1) if batch.n >= SPLIT_ROWS else 1)
                else:  # a call alone (one row, or the last batches) uses every core; calls side by side one each
                    proba = (dep.booster if self._active == 1 else dep.single).inplace_predict(X)
            else:
                proba = batch.heuristic()
        finally:
            with self._lock:
                self._active -= 1
        source = SOURCES.index(dep.source)
        label = proba.argmax(axis=1)  # ties go to the lower class
        label[~batch.ok] = -1  # no answer without a sale time, or with a price that is no number
        sources = np.where(batch.ok_day, np.where(batch.ok_price, source, SOURCES.index(INVALID_PRICE)),
                           SOURCES.index(INVALID_DATE)).astype(np.int8)
        return label, proba, sources, dep.version if dep.source == MODEL else None, batch

    def class_arrow(self, day, branch, item, price, customer) -> pa.DictionaryArray:
        label = self.predict(day, branch, item, price, customer)[0].astype(np.int8)
        # dictionary-encoded: DuckDB reads it as VARCHAR, and it is cheaper to build than strings
        return pa.DictionaryArray.from_arrays(pa.array(label, mask=label < 0), _CLASS_NAMES)

    def predict_arrow(self, day, branch, item, price, customer) -> pa.StructArray:
        label, p_low, p_medium, p_high, source, version = columns(*self.predict(day, branch, item, price, customer))
        proba = pa.StructArray.from_arrays([p_low, p_medium, p_high], fields=list(PROBA.arrow), mask=label.is_null())
        return pa.StructArray.from_arrays([label, proba, source, version],
                                          names=["label", "proba", "source", "model_version"])

    def explain_arrow(self, day, branch, item, price, customer) -> pa.ListArray:
        """Top contributions (XGBoost pred_contribs, log-odds of the predicted class) per row; hashed buckets
        are summed into one entry. Empty for fallback rows, NULL for invalid dates."""
        import xgboost as xgb

        dep = self.deployment()
        batch = Batch(dep.index, day, branch, item, price, customer)
        out = [None if not ok else [] for ok in batch.ok]
        if dep.source == MODEL and batch.ok.any():
            if dep.booster is None:  # the checked trees answer predictions; contributions need XGBoost
                dep.booster = booster_of(self.booster_bytes())
            X = batch.matrix(dep.plan)
            names = dep.spec["features"]
            # a DMatrix refuses inf (inplace_predict takes it); the largest float splits every tree the same way
            big = np.finfo(np.float32).max
            finite = np.nan_to_num(X, nan=np.nan, posinf=big, neginf=-big)
            contribs = dep.booster.predict(xgb.DMatrix(finite, feature_names=names), pred_contribs=True)
            label = dep.booster.inplace_predict(X).argmax(axis=1)
            hashed = [j for j, f in enumerate(names) if f.startswith("hashed_")]
            plain = [j for j, f in enumerate(names) if not f.startswith("hashed_")]
            labels = [readable(dep.index.layout.definition, names[j]) for j in plain]
            for r in np.flatnonzero(batch.ok):
                c = contribs[r, label[r]]
                entries = [(name, float(X[r, j]), float(c[j])) for name, j in zip(labels, plain)]
                if hashed:
                    entries.append(("branch x item (hashed keys)", None, float(c[hashed].sum())))
                entries.sort(key=lambda e: -abs(e[2]))
                out[r] = [{"feature": f, "value": None if v is None or np.isnan(v) else v, "contribution": c}
                          for f, v, c in entries[:EXPLAIN_TOP]]
        return pa.array(out, EXPLANATION.arrow)


class Served(Predictor):
    """Predictor's answers over a given deployment, with no database behind it: a Spark bundle, a version the gate
    scores. `read_booster()` gives the booster's bytes (for explanations)."""

    def __init__(self, dep: Deployment, read_booster):
        super().__init__(None, None)
        self._deployment, self._read_booster = dep, read_booster

    def deployment(self) -> Deployment:
        return self._deployment

    def booster_bytes(self) -> bytes:
        return self._read_booster()

    def proba_arrow(self, *args):
        return self.predict_arrow(*args).field("proba")


def columns(label, proba, sources, version, batch):
    """Arrow columns label, p_low, p_medium, p_high, source, model_version (NULL where the date is invalid)."""
    bad = label < 0
    p = proba.astype(np.float64)
    return [_CLASS_NAMES.take(pa.array(label, mask=bad)), *[pa.array(p[:, i], mask=bad) for i in range(3)],
            _SOURCE_NAMES.take(pa.array(sources)),
            pa.array(np.full(len(label), version or 0, np.int32), mask=bad | (version is None))]
