"""training_set -> XGBoost booster: three slices by time, class weights, checkpoints, resume, evaluation.

The slices: train (the lines before the early-stopping slice), early stopping (the last `stop_fraction` of the lines
before the cut-off: it chooses the number of rounds and nothing else) and test (from the cut-off on: every recorded
metric, the baselines and the gate's comparison). No line is graded by a model that chose anything on it.

Engine work (reading the view) happens through a DuckDB connection; nothing here imports MLflow.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xgboost as xgb

from . import definition, scratch
from .config import Settings
from .db import opened
from .definition import CLASSES
from .duck import batches_of, first_row, sql_text
from .lookups import Batch, HistoryIndex, LayoutError, to_matrix
from .metrics import confusion_metrics, decide

BASELINE_ROWS = 100_000  # the drift baseline: a seeded sample of the training lines, with the model's classes


class TrainingError(ValueError):
    """The data cannot train a model (too little, one class, bad cut-off); nothing was registered."""


def feature_spec(settings: Settings) -> dict:
    """What a booster is trained on (definition.spec): the feature definition and the names in matrix order, the
    class thresholds, the buckets and the kernels' format."""
    return definition.spec(settings.definition, settings.low_max, settings.medium_max, settings.buckets)


def labels(table: pa.Table) -> np.ndarray:
    return pc.index_in(table["label"], value_set=pa.array(CLASSES)).to_numpy(zero_copy_only=False).astype(np.int32)


def given_cutoff(settings: Settings, cutoff: str | None) -> dt.date | None:
    """The given day, else the configured one, else None (automatic)."""
    cutoff = cutoff or settings.cutoff
    if not cutoff:
        return None
    try:
        return dt.date.fromisoformat(cutoff)
    except ValueError:
        raise TrainingError(f"cut-off {cutoff!r} is not a date; write it as YYYY-MM-DD") from None


def choose_cutoff(con, settings: Settings, cutoff: str | None) -> dt.date:
    """The given day, the configured one, or the first day from which the last valid_fraction of lines fall."""
    day = given_cutoff(settings, cutoff)
    if day is not None:
        return day
    row = first_row(con, "SELECT quantile_disc(sale_day, ?) FROM usable_lines", [1 - settings.valid_fraction])
    if row is None or row[0] is None:
        raise TrainingError("the database has no usable invoice lines; load some with `sales-sql load` first")
    return row[0]


def choose_stop(con, settings: Settings, cutoff: dt.date) -> dt.date | None:
    """The first day of the early-stopping slice: the first day from which the last stop_fraction of the lines before
    the cut-off fall (None when early stopping is off: those lines train)."""
    if not settings.early_stopping_rounds:
        return None
    return first_row(con, "SELECT quantile_disc(sale_day, ?) FROM usable_lines WHERE sale_day < ?",
                     [1 - settings.stop_fraction, cutoff])[0]


def slice_of(cutoff: dt.date, stop_from: dt.date | None) -> str:
    """SQL naming each usable line's slice (train, stop, test) by its sale_day, in either engine."""
    stop = f"WHEN sale_day >= DATE '{stop_from.isoformat()}' THEN 'stop' " if stop_from else ""
    return f"CASE WHEN sale_day >= DATE '{cutoff.isoformat()}' THEN 'test' {stop}ELSE 'train' END"


def slices_sql(cutoff: dt.date, stop_from: dt.date | None) -> str:
    """SQL giving each slice's name, first and last day and count of lines, in either engine."""
    return (f"SELECT {slice_of(cutoff, stop_from)} AS s, min(sale_day), max(sale_day), count(*) FROM usable_lines "
            "GROUP BY 1")


def check_slices(slices: dict, cutoff: dt.date, stop_from: dt.date | None) -> None:
    """Refuse slices that cannot train and grade a model. `slices`: {slice: (first day, last day, lines)}."""
    if "train" not in slices:
        raise TrainingError(f"no usable lines before the cut-off {cutoff}" + (
            f" and its early-stopping slice (from {stop_from})" if stop_from else "") + "; choose a later --cutoff")
    if "test" not in slices:
        raise TrainingError(f"no usable lines on or after the cut-off {cutoff}; choose an earlier --cutoff")

BATCH_ROWS = 500_000  # lines per batch of the training matrices (a batch's floats: 500k x features x 4 bytes)

# what training reads of each line beside its features (the training_set view has these columns too)
LINES = ("SELECT line_id, sale_time, sale_day, branch_id, item_code, customer_id, quantity_sold, unit_price, "
         "{label} AS label FROM usable_lines")


def batches(con, settings: Settings, spec: dict, where: str, params: list | None = None, index=None):
    """The usable lines matching `where` (SQL over their columns) in line order, in batches of BATCH_ROWS, each as
    (lines, features, labels). The features are built by the prediction kernels from the history table (the
    training view's values bit for bit, by test, in a quarter of the time), or read from training_set when the
    kernels cannot serve the definition. Lines with infinite features stop it with a TrainingError. `index`: the
    HistoryIndex of con's history, when the caller has it."""

    try:
        index = index or HistoryIndex.of(settings.definition, con)
        plan = index.layout.plan(spec)
        sql = LINES.format(label=definition.label_sql("quantity_sold", settings.low_max, settings.medium_max))
    except LayoutError:  # the view computes what the kernels cannot
        plan, sql = None, "SELECT * FROM training_set"
    # the lines: one scan of invoices in insertion order, which DuckDB keeps without an ORDER BY (line_id order);
    # the view's ASOF joins do not keep it
    order = " ORDER BY line_id" if plan is None else ""
    cur = con.cursor()
    try:
        reader = cur.sql(f"{sql} WHERE {where}{order}", params=params).to_arrow_reader(BATCH_ROWS)
        for rb in batches_of(reader, BATCH_ROWS):
            t = pa.Table.from_batches([rb])
            X = to_matrix(t, spec) if plan is None else Batch(
                index, *(t[c] for c in ("sale_time", "branch_id", "item_code", "unit_price", "customer_id"))
            ).matrix(plan)
            refuse_infinite(t, X, spec)
            yield t, X, labels(t)
    finally:
        cur.close()


class _Side(xgb.DataIter):
    """One slice, batch by batch, for an ExtMemQuantileDMatrix (which reads it twice: sketch, then
    bins, and keeps the binned pages in files under `cache`); the first pass also keeps the labels, and the lines at
    the sorted positions `keep` with their features."""

    def __init__(self, read, names: list[str], cache: str, weights: np.ndarray | None = None,
                 keep: np.ndarray | None = None):
        super().__init__(cache_prefix=cache, release_data=True, on_host=False)
        self.read, self.names, self.weights, self.keep = read, names, weights, keep
        self.it, self.first, self.at, self.labels, self.kept = None, True, 0, [], []

    def reset(self):
        if self.it is not None:
            self.it.close()
            self.first = False
        self.it = None

    def next(self, input_data) -> bool:
        if self.it is None:
            self.it, self.at = self.read(), 0
        lines, X, y = next(self.it, (None, None, None))
        if lines is None:
            return False
        if self.first:
            self.labels.append(y)
            if self.keep is not None:
                mine = self.keep[(self.keep >= self.at) & (self.keep < self.at + len(y))] - self.at
                self.kept.append((lines.take(mine), X[mine]))
        self.at += len(y)
        input_data(data=X, label=y, weight=None if self.weights is None else self.weights[y],
                   feature_names=self.names)
        return True


@dataclass
class Dataset:
    """One retrain's data: XGBoost's binned matrices of the three slices, built batch by batch and kept in files
    (neither the lines, nor the float matrix, nor the bins are ever whole in memory), their labels, and a seeded
    sample of the training lines with their features (for the drift baseline)."""
    cutoff: dt.date                 # the test slice: from this day on
    stop_from: dt.date | None       # the early-stopping slice: from this day to the cut-off (None: no such slice)
    slices: dict                    # {slice: (first day, last day, lines)}
    spec: dict
    dtrain: xgb.DMatrix
    dstop: xgb.DMatrix | None
    dtest: xgb.DMatrix
    y_train: np.ndarray
    y_stop: np.ndarray
    y_test: np.ndarray
    sample: pa.Table
    X_sample: np.ndarray
    last_line_id: int               # the test slice ends here (the lines a later load adds are not in it)
    cache: Path | None = None       # the binned pages' files (XGBoost maps them while training)

    def close(self) -> None:
        """Free the matrices (XGBoost removes their page files), then their folder."""
        self.dtrain = self.dstop = self.dtest = None
        if self.cache is not None:
            scratch.remove(self.cache)


def baseline_table(data, booster, weights=None) -> pa.Table:
    """The training lines of the dataset's seeded sample (up to BASELINE_ROWS) with the booster's predicted class
    (under the version's decision weights, as it answers): what drift is measured against. `data` is a
    training.Dataset."""
    predicted = decide(booster.predict(xgb.DMatrix(data.X_sample, feature_names=data.spec["features"])), weights)
    day = data.sample["sale_day"]
    table = data.sample.select(["quantity_sold", "unit_price", "branch_id", "item_code"])
    for name, values in (("day_of_week", pc.day_of_week(day, count_from_zero=False)), ("day_of_month", pc.day(day)),
                         ("month", pc.month(day)), ("predicted", pa.array(np.array(CLASSES)[predicted]))):
        table = table.append_column(name, values)
    return table


def load_dataset(con, settings: Settings, cutoff: str | None = None) -> Dataset:
    """Split the usable lines by time into the three slices and build their matrices from batches; refuse data that
    cannot train a model."""
    day = choose_cutoff(con, settings, cutoff)
    stop_from = choose_stop(con, settings, day)
    spec = feature_spec(settings)
    label = definition.label_sql("quantity_sold", settings.low_max, settings.medium_max)
    last = first_row(con, "SELECT max(line_id) FROM usable_lines")[0]
    slices = {s: (first, final, n) for s, first, final, n in con.execute(slices_sql(day, stop_from)).fetchall()}
    check_slices(slices, day, stop_from)
    # which lines each slice reads: one definition of the slices (slice_of), the test slice up to the newest line
    where = {name: f"{slice_of(day, stop_from)} = '{name}'" for name in slices}
    where["test"] += f" AND line_id <= {int(last)}"
    by_class = dict(con.execute(f"SELECT {label}, count(*) FROM usable_lines WHERE {where['train']} GROUP BY ALL")
                    .fetchall())
    if len(by_class) < 2:
        raise TrainingError(f"the lines before {stop_from or day} hold only class {sorted(by_class)}; a classifier "
                            "needs at least two classes: load more data or move the cut-off")
    n = slices["train"][2]
    keep = np.sort(np.random.default_rng(settings.seed).choice(n, BASELINE_ROWS, replace=False)) \
        if n > BASELINE_ROWS else np.arange(n)
    weights = class_weights([by_class.get(c, 0) for c in CLASSES], settings.class_weight)

    try:  # one index for every pass (two per slice)
        index = HistoryIndex.of(settings.definition, con)
    except LayoutError:
        index = None
    # the bins of every line (4 bytes a value: 3 GB for 10M lines) go to files in the temporary folder, which
    # XGBoost reads page by page while boosting: the same model as in memory, a quarter of the peak memory
    cache = scratch.folder("retrain")
    try:
        threads = os.cpu_count() or 1
        sides, matrices = {}, {}
        for name in ("train", "stop", "test"):
            if name not in slices:  # no early-stopping slice when early stopping is off
                continue
            sides[name] = _Side(lambda sql=where[name]: batches(con, settings, spec, sql, None, index),
                                spec["features"], str(cache / name), *((weights, keep) if name == "train" else ()))
            matrices[name] = xgb.ExtMemQuantileDMatrix(sides[name], ref=matrices.get("train"),
                                                       max_bin=settings.max_bin, nthread=threads)
    except BaseException:
        scratch.remove(cache)
        raise
    labels_of = {name: np.concatenate(side.labels) if side.labels else np.zeros(0, np.int32)
                 for name, side in sides.items()}
    train = sides["train"]
    return Dataset(day, stop_from, slices, spec, matrices["train"], matrices.get("stop"), matrices["test"],
                   labels_of["train"], labels_of.get("stop", np.zeros(0, np.int32)), labels_of["test"],
                   pa.concat_tables([t for t, _ in train.kept]), np.concatenate([X for _, X in train.kept]), last,
                   cache)


def refuse_infinite(table: pa.Table, X: np.ndarray, spec: dict) -> None:
    """XGBoost cannot learn from infinity: name the lines whose features hold it (a price the loader would have
    rejected, written into invoices some other way, or one beyond float32's range)."""
    infinite = np.isinf(X)
    if infinite.any():  # nonzero() over the whole matrix costs 0.1 s per million lines; only on the error path
        rows, cols = np.nonzero(infinite)
        rows = np.unique(rows)
        line, price = table["line_id"], table["unit_price"]
        examples = ", ".join(f"line_id {line[int(r)].as_py()} (unit_price {price[int(r)].as_py()})" for r in rows[:3])
        features = ", ".join(sorted({spec["features"][c] for c in cols}))
        raise TrainingError(f"training_set has {len(rows)} line(s) with an infinite {features}, e.g. {examples}; "
                            "prices must be finite and below 3.4e38: correct them in invoices (e.g. UPDATE invoices "
                            "SET unit_price = NULL WHERE NOT isfinite(unit_price) OR abs(unit_price) > 3.4e38) and "
                            "retrain")


def prepare(db_path: str, settings: Settings, cutoff: str | None = None) -> tuple[Dataset, dict]:
    """Read and split the training data of a database file and score both baselines on its test slice. (The file
    opens for writing: a history built for other settings or another feature definition is rebuilt first.)"""

    with opened(db_path, settings=settings) as con:
        data = load_dataset(con, settings, cutoff)
        try:
            baselines = baseline_metrics(con.execute(baselines_sql(sql_text, settings, data.cutoff,
                                                                   data.last_line_id)).fetchall())
        except BaseException:
            data.close()
            raise
    return data, baselines


def class_weights(counts: np.ndarray, mode: str) -> np.ndarray:
    """Each class's weight from the class counts: n / (classes present * count of the class), or all ones."""
    counts = np.asarray(counts, np.float64)
    if mode == "none":
        return np.ones(len(counts), np.float32)
    present = counts > 0
    w = np.zeros(len(counts))
    w[present] = counts.sum() / (present.sum() * counts[present])
    return w.astype(np.float32)


def xgb_params(settings: Settings) -> dict:
    return {
        "objective": "multi:softprob", "num_class": len(CLASSES), "eval_metric": "mlogloss",
        "tree_method": "hist", "max_depth": settings.max_depth, "min_child_weight": settings.min_child_weight,
        "eta": settings.learning_rate,
        "subsample": settings.subsample, "colsample_bytree": settings.colsample_bytree,
        "max_bin": settings.max_bin, "seed": settings.seed, "nthread": os.cpu_count() or 1,
    }


class Checkpoints(xgb.callback.TrainingCallback):
    """Saves the booster every `every` iterations as iter_NNNNN.ubj (written whole, then renamed)."""

    def __init__(self, directory: Path, every: int):
        super().__init__()
        self.directory, self.every = directory, every

    def after_iteration(self, model, epoch, evals_log):
        done = model.num_boosted_rounds()
        if done % self.every == 0:
            save_checkpoint(model, self.directory, done)
        return False


def save_checkpoint(booster: xgb.Booster, directory: Path, rounds: int) -> Path:
    path = directory / f"iter_{rounds:05d}.ubj"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(booster.save_raw("ubj"))
    os.replace(tmp, path)
    return path


def latest_checkpoint(directory: Path) -> tuple[int, Path] | None:
    found = sorted(directory.glob("iter_*.ubj"))
    return (int(found[-1].stem.split("_")[1]), found[-1]) if found else None


class Progress(xgb.callback.TrainingCallback):
    """A one-line progress bar on stderr: iteration and the early-stopping slice's log loss."""

    def __init__(self, total: int, stream=sys.stderr):
        super().__init__()
        self.total, self.stream = total, stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def after_iteration(self, model, epoch, evals_log):
        done = model.num_boosted_rounds()
        loss = evals_log.get("stop", {}).get("mlogloss", [float("nan")])[-1]
        if self.tty or done % 20 == 0 or done == self.total:
            bar = "#" * int(30 * done / self.total)
            end = "\r" if self.tty else "\n"
            self.stream.write(f"[{bar:<30}] iteration {done}/{self.total}  early-stopping mlogloss {loss:.4f}{end}")
            self.stream.flush()
        return False

    def after_training(self, model):
        if self.tty:
            self.stream.write("\n")
        return model


def run_key(db_path: str, data: Dataset, params: dict, settings: Settings) -> str:
    """Identifies one training job, so that --resume only continues the same job on the same data."""
    key = json.dumps({"db": str(Path(db_path).resolve()), "cutoff": str(data.cutoff), "stop": str(data.stop_from),
                      "params": params, "rows": [len(data.y_train), len(data.y_stop), len(data.y_test)],
                      "spec": data.spec,
                      "rounds": settings.num_boost_round, "weights": settings.class_weight}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass
class TrainResult:
    booster: xgb.Booster
    resumed_from: int
    rounds: int
    best_iteration: int
    history: dict = field(default_factory=dict)


def train(data: Dataset, settings: Settings, checkpoint_dir: Path, *, resume: bool = False,
          progress: bool = True) -> TrainResult:
    """Train on the train slice with early stopping on the early-stopping slice (never the test slice), saving
    checkpoints; resume from the latest one."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    params = xgb_params(settings)
    start_model, done = None, 0
    last = latest_checkpoint(checkpoint_dir) if resume else None
    if last:
        done, path = last
        start_model = xgb.Booster(model_file=str(path))
    elif not resume:
        for old in checkpoint_dir.glob("iter_*.ubj"):
            old.unlink()
    callbacks = [Checkpoints(checkpoint_dir, settings.checkpoint_every)]
    if progress:
        callbacks.append(Progress(settings.num_boost_round))
    if data.dstop is not None:
        callbacks.append(xgb.callback.EarlyStopping(rounds=settings.early_stopping_rounds, save_best=False))
    history: dict = {}
    booster = xgb.train(params, data.dtrain, num_boost_round=max(settings.num_boost_round - done, 0),
                        evals=[(data.dstop, "stop")] if data.dstop is not None else [], evals_result=history,
                        callbacks=callbacks, xgb_model=start_model, verbose_eval=False)
    rounds = booster.num_boosted_rounds()
    # early stopping only names a best iteration when this call trained at least one round
    best = booster.best_iteration if data.dstop is not None and rounds > done else rounds - 1
    return TrainResult(booster[: best + 1], done, rounds, best, history)


def baselines_sql(sql_text, settings: Settings, cutoff: dt.date, last_line_id: int) -> str:
    """sql/baselines.sql for a test slice, through `sql_text` (duck.sql_text, or spark.sql_text)."""
    return sql_text("baselines", settings, cutoff=f"DATE '{cutoff.isoformat()}'", last_line_id=int(last_line_id),
                    label=definition.label_sql("quantity_sold", settings.low_max, settings.medium_max)).rstrip("; \n")


def baseline_metrics(rows) -> dict[str, dict]:
    """Both baselines' metrics from sql/baselines.sql's rows (actual, mode, majority, lines)."""
    k = len(CLASSES)
    cms = {"majority": np.zeros((k, k), np.int64), "branch_item_mode": np.zeros((k, k), np.int64)}
    for actual, mode, majority, n in rows:
        cms["branch_item_mode"][CLASSES.index(actual), CLASSES.index(mode)] += n
        cms["majority"][CLASSES.index(actual), CLASSES.index(majority)] += n
    return {name: confusion_metrics(cm) for name, cm in cms.items()}
