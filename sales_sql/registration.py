"""Retrain and register: train on the file's training_set, log the run (parameters, the learning curve, the cost, the
test slice's metrics against the baselines, plots) and register the version whole or not at all, with its drift
baseline. Both engines' retrains register here.
"""
from __future__ import annotations

import json
import logging
import os
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import mlflow
import numpy as np
import pyarrow.parquet as pq
import xgboost as xgb
from mlflow import MlflowClient
from mlflow.entities import Metric

from . import db, duck
from .config import Settings
from .db import TRAINED_THROUGH
from .definition import CLASSES
from .metrics import WEIGHTS, decision_weights, evaluate
from .monitor import store_baseline
from .pyfunc import log_model, mark_version
from .store import BASELINE_ARTIFACT, COMPLETE, RegistryError, experiment_id, mlflow_client
from .training import baseline_table, prepare, run_key, train, xgb_params
from .trees import depths


def _plots(metrics: dict, booster: xgb.Booster, directory: Path) -> list[Path]:
    import matplotlib  # seconds (warm_up imports it early, in a thread)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.array(metrics["confusion"])
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(3), CLASSES)
    ax.set_yticks(range(3), CLASSES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, f"{v:,}", ha="center", va="center", color="black")
    ax.set_title(f"test slice: accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}")
    fig.tight_layout()
    confusion = directory / "confusion_matrix.png"
    fig.savefig(confusion, dpi=100)
    plt.close(fig)

    gain = sorted(booster.get_score(importance_type="total_gain").items(), key=lambda kv: kv[1])[-20:]
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.barh([k for k, _ in gain], [v for _, v in gain])
    ax.set_xlabel("total gain")
    ax.set_title("feature importance (top 20)")
    fig.tight_layout()
    importance = directory / "feature_importance.png"
    fig.savefig(importance, dpi=100)
    plt.close(fig)
    return [confusion, importance]


@dataclass
class RetrainResult:
    version: int
    run_id: str
    metrics: dict
    baselines: dict
    resumed_from: int
    rounds: int
    stop: dict | None = None  # the early-stopping slice's metrics (optimistic: it chose the rounds)
    slices: dict | None = None  # {slice: (first day, last day, lines)}


def warm_up(db_path: str, settings: Settings) -> None:
    """The slow first steps of MLflow logging (store connection and migrations check, experiment, plotting
    library), which the CLI runs in a thread while DuckDB reads the training data."""
    import matplotlib.pyplot  # noqa: F401  (seconds: warmed up here, in the thread, so the plots do not wait)

    experiment_id(mlflow_client(db_path), db_path, settings)


def retrain(db_path: str, settings: Settings, models_dir: str | os.PathLike = "models", *,
            cutoff: str | None = None, resume: bool = False, progress: bool = True,
            prepared: tuple | None = None) -> RetrainResult:
    """Train on training_set, log everything to MLflow and register a new version of the model.

    `prepared` is what training.prepare() returned, when the caller has read the data already."""
    data, baselines = prepared or prepare(db_path, settings, cutoff)
    try:
        return _retrain(db_path, settings, models_dir, data, baselines, resume, progress)
    finally:
        data.close()


def _retrain(db_path, settings: Settings, models_dir, data, baselines: dict, resume: bool,
             progress: bool) -> RetrainResult:
    params = xgb_params(settings)
    key = run_key(db_path, data, params, settings)
    run_dir = Path(models_dir) / "checkpoints" / key
    state_file = run_dir / "state.json"
    state = json.loads(state_file.read_text()) if resume and state_file.is_file() else {}

    client = mlflow_client(db_path)
    experiment = experiment_id(client, db_path, settings)
    run_dir.mkdir(parents=True, exist_ok=True)
    with mlflow.start_run(run_id=state.get("run_id"), experiment_id=None if state else experiment) as run:
        state_file.write_text(json.dumps({"run_id": run.info.run_id}))
        log_settings(settings, data.spec, database_file=str(Path(db_path).resolve()))
        started = time.perf_counter()
        result = train(data, settings, run_dir, resume=resume, progress=progress)
        mlflow.log_metrics(cost(result, time.perf_counter() - started))
        now = int(time.time() * 1000)
        curve = [Metric("stop_mlogloss", loss, now, result.resumed_from + step)
                 for step, loss in enumerate(result.history.get("stop", {}).get("mlogloss", []))]
        for at in range(0, len(curve), 1000):  # batches of MLflow's maximum (one call per round: 1.7 s for 140)
            client.log_batch(run.info.run_id, metrics=curve[at:at + 1000])
        mlflow.log_metrics({"best_iteration": result.best_iteration, "resumed_from": result.resumed_from})
        proba = result.booster.predict(data.dstop) if data.dstop is not None else None
        weights = decision_weights(data.y_stop, proba, settings.decision) if proba is not None else None
        spec = decided(data.spec, weights)
        stop = evaluate(data.y_stop, proba, weights) if proba is not None else None
        version, metrics = register_version(db_path, settings, client, result.booster, spec,
                                            evaluate(data.y_test, result.booster.predict(data.dtest), weights),
                                            baselines, lambda: baseline_table(data, result.booster, weights),
                                            data.slices, data.last_line_id, stop)
    state_file.write_text(json.dumps({"run_id": run.info.run_id, "finished": True, "version": version}))
    return RetrainResult(version, run.info.run_id, metrics, baselines, result.resumed_from, result.rounds, stop,
                         data.slices)


def log_settings(settings: Settings, spec: dict, **extra) -> None:
    """Into the active run: what the retrain ran with (XGBoost's parameters, the class weights, the rounds, and
    `extra`), the settings and the feature spec. Both engines' retrains log here."""
    mlflow.log_params({**{k: v for k, v in xgb_params(settings).items() if k != "nthread"},
                       "class_weight": settings.class_weight, "num_boost_round": settings.num_boost_round,
                       "early_stopping_rounds": settings.early_stopping_rounds, **extra})
    mlflow.log_dict(vars(settings), "config.json")
    mlflow.log_dict(spec, "feature_spec.json")


def decided(spec: dict, weights: list[float] | None) -> dict:
    """The spec a version is registered with: the feature spec and the decision weights its retrain chose
    (metrics.decide; logged as a parameter too; None without an early-stopping slice to choose them on: argmax).
    Both engines' retrains call this."""
    if weights is None:
        return spec
    mlflow.log_param(WEIGHTS, ", ".join(f"{c} {w:.4g}" for c, w in zip(CLASSES, weights)))
    spec = spec | {WEIGHTS: weights}
    mlflow.log_dict(spec, "feature_spec.json")  # log_settings logged it before training, without them
    return spec


def cost(result, seconds: float) -> dict:
    """What a setting costs: training seconds (in all, per round this run trained), the trees kept, the levels a line
    walks through them (node visits per line: the cost of every prediction), the process's peak memory."""
    levels = depths(result.booster)
    trained = max(result.rounds - result.resumed_from, 1)
    return {"train_seconds": seconds, "seconds_per_round": seconds / trained, "trees": len(levels),
            "node_visits_per_line": int(levels.sum()),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def register_version(db_path, settings: Settings, client: MlflowClient, booster: xgb.Booster, spec: dict,
                     metrics: dict, baselines: dict, baseline, slices: dict, last_line_id: int,
                     stop: dict | None) -> tuple[int, dict]:
    """Inside the active MLflow run: the slices (each one's first and last day and lines), the test slice's metrics
    (metrics.evaluate's; and each baseline's, and the lift over it), the early-stopping slice's beside them as
    stop_* (optimistic: that slice chose the rounds), the plots, the booster as a new version, its drift baseline
    (also stored in db_path) and last its tags (promote refuses a version without metrics). `baseline()` gives the
    drift baseline table, once the version exists. Both engines' retrains end here. Returns (version, metrics)."""
    mlflow.log_params({f"{name}_{part}": str(value) for name, (first, last, n) in slices.items()
                       for part, value in (("from", first), ("through", last), ("rows", n))})
    mlflow.log_metrics({k: v for k, v in metrics.items() if k != "confusion"})
    if stop is not None:
        mlflow.log_metrics({f"stop_{k}": v for k, v in stop.items() if k != "confusion"})
    for name, m in baselines.items():
        mlflow.log_metrics({f"baseline_{name}_{k}": v for k, v in m.items() if k != "confusion"})
        mlflow.log_metric(f"lift_macro_f1_over_{name}", metrics["macro_f1"] - m["macro_f1"])
    with tempfile.TemporaryDirectory() as tmp:
        for png in _plots(metrics, booster, Path(tmp)):
            mlflow.log_artifact(str(png))
    # the version as an MLflow pyfunc over raw invoice lines (sales_sql.pyfunc), which answers with its number
    info = log_model(bytes(booster.save_raw("ubj")), spec)
    try:  # a version is registered whole (metrics last) or not at all: one left behind by a failure is deleted
        version = int(mlflow.register_model(info.model_uri, settings.model_name).version)
        mark_version(client, info.model_id, version)
        # the training distribution travels with the version (promote copies it into the file it deploys to) and goes
        # into this file below
        baseline = baseline()
        with tempfile.TemporaryDirectory() as tmp:
            pq.write_table(baseline, Path(tmp) / BASELINE_ARTIFACT)
            mlflow.log_artifact(str(Path(tmp) / BASELINE_ARTIFACT))
        tags = {"cutoff": str(slices["test"][0]), TRAINED_THROUGH: str(last_line_id),
                "accuracy": f"{metrics['accuracy']:.6f}", COMPLETE: f"{metrics['macro_f1']:.6f}"}
        for tag, value in tags.items():
            client.set_model_version_tag(settings.model_name, str(version), tag, value)
    except BaseException:
        _unregister_unfinished(client, settings, mlflow.active_run().info.run_id)
        raise
    try:
        with db.opened(db_path, settings=settings) as con, duck.transaction(con):
            store_baseline(con, settings, version, baseline)
            # what `sales-sql pipeline` compares with the file's newest usable line
            con.execute("INSERT OR REPLACE INTO sales_sql_meta VALUES (?, ?)", [TRAINED_THROUGH, str(last_line_id)])
    except duckdb.Error as e:
        raise RegistryError(f"version {version} is registered, but its drift baseline could not be written to "
                            f"{db_path}: {e}; `sales-sql promote` will copy it there") from None
    return version, metrics


def _unregister_unfinished(client: MlflowClient, settings: Settings, run_id: str) -> None:
    """Delete the versions of this run that lack their metrics (registration stopped part way)."""
    try:
        for v in client.search_model_versions(f"name='{settings.model_name}' and run_id='{run_id}'"):
            if COMPLETE not in v.tags:
                client.delete_model_version(settings.model_name, v.version)
    except Exception as e:  # noqa: BLE001  the first failure is the one raised; doctor flags what stays behind
        logging.getLogger("sales_sql").warning("the unfinished versions of run %s could not be deleted (%s: %s); "
                                               "`sales-sql doctor` lists them", run_id, type(e).__name__, e)


