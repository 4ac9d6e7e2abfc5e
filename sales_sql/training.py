"""training_set -> XGBoost booster: time split, class weights, checkpoints, resume, evaluation.

Engine work (reading the view) happens through a DuckDB connection; nothing here imports MLflow.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xgboost as xgb

from .config import Settings
from . import definition
from .definition import CLASSES
from .duck import first_row

# training_set columns that identify a line or hold its answer; every other column is a feature
ID_COLUMNS = ("line_id", "sale_time", "sale_day", "branch_id", "item_code", "customer_id", "quantity_sold", "label")


class TrainingError(ValueError):
    """The data cannot train a model (too little, one class, bad cut-off); nothing was registered."""


def feature_spec(settings: Settings) -> dict:
    """What a booster is trained on (definition.spec): the feature definition and the names in matrix order, the
    class thresholds, the buckets and the kernels' format."""
    return definition.spec(settings.definition, settings.low_max, settings.medium_max, settings.buckets)


def to_matrix(table: pa.Table, spec: dict) -> np.ndarray:
    """float32 feature matrix in spec order (NULL -> NaN, which XGBoost treats as missing)."""
    n = table.num_rows
    out = np.empty((n, len(spec["features"])), np.float32)
    hashed_at = None
    for j, name in enumerate(spec["features"]):
        if name.startswith("hashed_"):
            hashed_at = j if hashed_at is None else hashed_at
            continue
        out[:, j] = pc.cast(table[name], pa.float32()).to_numpy(zero_copy_only=False)
    if hashed_at is not None:
        flat = table["hashed"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
        out[:, hashed_at:hashed_at + spec["buckets"]] = flat.reshape(n, spec["buckets"])
    return out


def labels(table: pa.Table) -> np.ndarray:
    return pc.index_in(table["label"], value_set=pa.array(CLASSES)).to_numpy(zero_copy_only=False).astype(np.int32)


def choose_cutoff(con, settings: Settings, cutoff: str | None) -> dt.date:
    """The given day, the configured one, or the first day from which the last valid_fraction of lines fall."""
    cutoff = cutoff or settings.cutoff
    if cutoff:
        try:
            return dt.date.fromisoformat(cutoff)
        except ValueError:
            raise TrainingError(f"cut-off {cutoff!r} is not a date; write it as YYYY-MM-DD") from None
    row = first_row(con, "SELECT quantile_disc(sale_day, ?) FROM usable_lines", [1 - settings.valid_fraction])
    if row is None or row[0] is None:
        raise TrainingError("the database has no usable invoice lines; load some with `sales-sql load` first")
    return row[0]


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
    from .duck import batches_of
    from .lookups import Batch, HistoryIndex, LayoutError

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
    """One side of the cut-off, batch by batch, for an ExtMemQuantileDMatrix (which reads it twice: sketch, then
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
    """One retrain's data: XGBoost's binned matrices of both sides of the cut-off, built batch by batch and kept in
    files (neither the lines, nor the float matrix, nor the bins are ever whole in memory), their labels, and a
    seeded sample of the training lines with their features (for the drift baseline)."""
    cutoff: dt.date
    spec: dict
    dtrain: xgb.DMatrix
    dvalid: xgb.DMatrix
    y_train: np.ndarray
    y_valid: np.ndarray
    sample: pa.Table
    X_sample: np.ndarray
    last_line_id: int
    cache: tempfile.TemporaryDirectory | None = None  # the binned pages' files (XGBoost maps them while training)

    def close(self) -> None:
        """Free both matrices (XGBoost removes their page files), then their folder."""
        self.dtrain = self.dvalid = None
        if self.cache is not None:
            self.cache.cleanup()


def load_dataset(con, settings: Settings, cutoff: str | None = None) -> Dataset:
    """Split the usable lines by time and build both sides' matrices from batches; refuse data that cannot train a
    model."""
    from .monitor import BASELINE_ROWS

    day = choose_cutoff(con, settings, cutoff)
    spec = feature_spec(settings)
    label = definition.label_sql("quantity_sold", settings.low_max, settings.medium_max)
    sides = dict(con.execute("SELECT sale_day < ?, count(*) FROM usable_lines GROUP BY ALL", [day]).fetchall())
    if not sides.get(True):
        raise TrainingError(f"no usable lines before the cut-off {day}; choose a later --cutoff")
    if not sides.get(False):
        raise TrainingError(f"no usable lines on or after the cut-off {day}; choose an earlier --cutoff")
    by_class = dict(con.execute(f"SELECT {label}, count(*) FROM usable_lines WHERE sale_day < ? GROUP BY ALL",
                                [day]).fetchall())
    if len(by_class) < 2:
        raise TrainingError(f"the lines before {day} hold only class {sorted(by_class)}; a classifier needs at least "
                            "two classes: load more data or move the cut-off")
    n = sides[True]
    keep = np.sort(np.random.default_rng(settings.seed).choice(n, BASELINE_ROWS, replace=False)) \
        if n > BASELINE_ROWS else np.arange(n)
    weights = class_weights([by_class.get(c, 0) for c in CLASSES], settings.class_weight)
    from .lookups import HistoryIndex, LayoutError

    try:  # one index for the four passes (two per side)
        index = HistoryIndex.of(settings.definition, con)
    except LayoutError:
        index = None
    # the bins of every line (4 bytes a value: 3 GB for 10M lines) go to files in the temporary folder, which
    # XGBoost reads page by page while boosting: the same model as in memory, a quarter of the peak memory
    cache = tempfile.TemporaryDirectory(prefix="sales_sql-retrain-")
    train = _Side(lambda: batches(con, settings, spec, "sale_day < ?", [day], index), spec["features"],
                  os.path.join(cache.name, "train"), weights, keep)
    valid = _Side(lambda: batches(con, settings, spec, "sale_day >= ?", [day], index), spec["features"],
                  os.path.join(cache.name, "valid"))
    threads = os.cpu_count() or 1
    dtrain = xgb.ExtMemQuantileDMatrix(train, max_bin=settings.max_bin, nthread=threads)
    dvalid = xgb.ExtMemQuantileDMatrix(valid, ref=dtrain, max_bin=settings.max_bin, nthread=threads)
    last = first_row(con, "SELECT max(line_id) FROM usable_lines")[0]
    return Dataset(day, spec, dtrain, dvalid, np.concatenate(train.labels), np.concatenate(valid.labels),
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
    """Read and split the training data of a database file and score both baselines on its validation rows. (The
    file opens for writing: a history built for other settings or another feature definition is rebuilt first.)"""
    from .db import opened

    with opened(db_path, settings=settings) as con:
        data = load_dataset(con, settings, cutoff)
        baselines = {name: evaluate(data.y_valid, pred) for name, pred in baseline_predictions(con, settings, data).items()}
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
    """A one-line progress bar on stderr: iteration and validation log loss."""

    def __init__(self, total: int, stream=sys.stderr):
        super().__init__()
        self.total, self.stream = total, stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def after_iteration(self, model, epoch, evals_log):
        done = model.num_boosted_rounds()
        loss = evals_log.get("valid", {}).get("mlogloss", [float("nan")])[-1]
        if self.tty or done % 20 == 0 or done == self.total:
            bar = "#" * int(30 * done / self.total)
            end = "\r" if self.tty else "\n"
            self.stream.write(f"[{bar:<30}] iteration {done}/{self.total}  valid mlogloss {loss:.4f}{end}")
            self.stream.flush()
        return False

    def after_training(self, model):
        if self.tty:
            self.stream.write("\n")
        return model


def run_key(db_path: str, data: Dataset, params: dict, settings: Settings) -> str:
    """Identifies one training job, so that --resume only continues the same job on the same data."""
    key = json.dumps({"db": str(Path(db_path).resolve()), "cutoff": str(data.cutoff), "params": params,
                      "rows": [len(data.y_train), len(data.y_valid)], "spec": data.spec,
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
    """Train with early stopping on the validation rows, saving checkpoints; resume from the latest one."""
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
    if settings.early_stopping_rounds:
        callbacks.append(xgb.callback.EarlyStopping(rounds=settings.early_stopping_rounds, save_best=False))
    history: dict = {}
    booster = xgb.train(params, data.dtrain, num_boost_round=max(settings.num_boost_round - done, 0),
                        evals=[(data.dvalid, "valid")], evals_result=history, callbacks=callbacks,
                        xgb_model=start_model, verbose_eval=False)
    rounds = booster.num_boosted_rounds()
    # early stopping only names a best iteration when this call trained at least one round
    best = booster.best_iteration if settings.early_stopping_rounds and rounds > done else rounds - 1
    return TrainResult(booster[: best + 1], done, rounds, best, history)


# ---- evaluation -------------------------------------------------------------------------------------------

def evaluate(y_true: np.ndarray, proba_or_pred: np.ndarray) -> dict:
    """accuracy, macro-F1, per-class precision/recall/F1, log loss (when probabilities are given)."""
    pred = proba_or_pred.argmax(axis=1) if proba_or_pred.ndim == 2 else proba_or_pred
    k = len(CLASSES)
    cm = np.bincount(y_true * k + pred, minlength=k * k).reshape(k, k)
    log_loss = None
    if proba_or_pred.ndim == 2:
        log_loss = float(-np.log(np.clip(proba_or_pred[np.arange(len(y_true)), y_true], 1e-15, 1.0)).mean())
    return confusion_metrics(cm, log_loss)


def confusion_metrics(cm: np.ndarray, log_loss: float | None = None) -> dict:
    """evaluate()'s metrics from a confusion matrix (rows: the true class, columns: the predicted one)."""
    cm = np.asarray(cm)
    tp = np.diag(cm).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(cm.sum(0) > 0, tp / cm.sum(0), 0.0)
        recall = np.where(cm.sum(1) > 0, tp / cm.sum(1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    out = {"accuracy": float(tp.sum() / max(cm.sum(), 1)), "macro_f1": float(f1.mean())}
    for i, c in enumerate(CLASSES):
        out |= {f"precision_{c}": float(precision[i]), f"recall_{c}": float(recall[i]), f"f1_{c}": float(f1[i])}
    if log_loss is not None:
        out["log_loss"] = log_loss
    out["confusion"] = cm.tolist()
    return out


def baseline_predictions(con, settings: Settings, data: Dataset) -> dict[str, np.ndarray]:
    """Two baselines on the validation rows: the majority class before the cut-off, and the most frequent
    class of the same branch x item before the cut-off, else of the item, else the majority class."""
    majority = int(np.bincount(data.y_train, minlength=len(CLASSES)).argmax())
    label = definition.label_sql("quantity_sold", settings.low_max, settings.medium_max)
    # ties go to the lower class (LOW before MEDIUM before HIGH), so the baseline is deterministic
    modes = con.sql(f"""
        WITH lines AS (SELECT line_id, branch_id, item_code, sale_day < ? AS before, {label} AS label
                       FROM usable_lines),
             counts AS (SELECT branch_id, item_code, label, count(*) AS n,
                               CASE label WHEN 'LOW' THEN 2 WHEN 'MEDIUM' THEN 1 ELSE 0 END AS tie
                        FROM lines WHERE before GROUP BY branch_id, item_code, label),
             bi AS (SELECT branch_id, item_code, arg_max(label, (n, tie)) AS label FROM counts
                    GROUP BY branch_id, item_code),
             it AS (SELECT item_code, arg_max(label, (n, tie)) AS label FROM
                      (SELECT item_code, label, sum(n) AS n, any_value(tie) AS tie FROM counts
                       GROUP BY item_code, label)
                    GROUP BY item_code)
        SELECT coalesce(bi.label, it.label) AS label FROM lines v
        LEFT JOIN bi USING (branch_id, item_code) LEFT JOIN it USING (item_code)
        WHERE NOT v.before ORDER BY v.line_id""", params=[data.cutoff]).to_arrow_table()["label"]
    mode_pred = pc.index_in(modes, value_set=pa.array(CLASSES)).fill_null(majority).to_numpy().astype(np.int32)
    return {"majority": np.full(len(mode_pred), majority, np.int32), "branch_item_mode": mode_pred}
