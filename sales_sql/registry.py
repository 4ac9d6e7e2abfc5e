"""MLflow runs, registered versions and the @production alias, and the deployed copy in the database file.

MLflow is the governance record; the database file holds what predictions use. Promote and rollback change
both or neither. Only the CLI's lifecycle commands import this module (the query path never does).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xgboost as xgb
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from . import db, duck
from .config import Settings
from .monitor import baseline_table, store_baseline
from .serving import history_index, load_deployment
from .training import CLASSES, TrainingError, evaluate, prepare, run_key, train, xgb_params
from .trees import depths

ALIAS = "production"
COMPLETE = "macro_f1"  # the version tag written last: a version without it did not finish registering
TRAINED_THROUGH = "trained_through_line_id"  # sales_sql_meta: the last line_id the latest retrain read
BASELINE_ARTIFACT = "drift_baseline.parquet"


class RegistryError(ValueError):
    """A lifecycle step was refused or failed; production is unchanged."""


class GateRefused(RegistryError):
    """promote's gate refused a version (worse than production on the same lines, unable to serve, or without
    metrics); production is unchanged."""


def tracking_uri(db_path: str | os.PathLike) -> str:
    """MLFLOW_TRACKING_URI, else a sqlite store beside the database file (MLflow 3's own default kind)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(db_path).resolve().parent / 'mlflow.db'}"


def _store_missing(db_path) -> Path | None:
    """The sqlite file of the tracking URI when it does not exist (MLflow would create an empty store there)."""
    uri = tracking_uri(db_path)
    path = Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None
    return path if path is not None and not path.exists() else None


def mlflow_client(db_path, *, existing: bool = False) -> MlflowClient:
    """The MLflow client of db_path's store; with existing=True a missing sqlite store is refused, not created."""
    missing = _store_missing(db_path) if existing else None
    if missing is not None:
        raise RegistryError(f"there is no MLflow store at {missing}: run `sales-sql retrain` first, or set "
                            "MLFLOW_TRACKING_URI to the store the models were trained in")
    uri = tracking_uri(db_path)
    chosen = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    # MLflow also writes the URI into MLFLOW_TRACKING_URI, which tracking_uri() reads as the user's choice: without
    # this, every later file in this process (a notebook's second database) would use the first one's store
    if chosen is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = chosen
    return MlflowClient(uri)


def _experiment_id(client: MlflowClient, db_path, settings: Settings) -> str:
    exp = client.get_experiment_by_name(settings.experiment)
    if exp is not None:
        return exp.experiment_id
    artifacts = (Path(db_path).resolve().parent / "mlartifacts").as_uri()
    return client.create_experiment(settings.experiment, artifact_location=artifacts)


def _plots(metrics: dict, booster: xgb.Booster, directory: Path) -> list[Path]:
    import matplotlib

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
    import matplotlib.pyplot  # noqa: F401

    _experiment_id(mlflow_client(db_path), db_path, settings)


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
    experiment_id = _experiment_id(client, db_path, settings)
    run_dir.mkdir(parents=True, exist_ok=True)
    with mlflow.start_run(run_id=state.get("run_id"), experiment_id=None if state else experiment_id) as run:
        state_file.write_text(json.dumps({"run_id": run.info.run_id}))
        mlflow.log_params({**{k: v for k, v in params.items() if k != "nthread"}, "class_weight": settings.class_weight,
                           "num_boost_round": settings.num_boost_round,
                           "early_stopping_rounds": settings.early_stopping_rounds,
                           "database_file": str(Path(db_path).resolve())})
        mlflow.log_dict(vars(settings), "config.json")
        mlflow.log_dict(data.spec, "feature_spec.json")
        started = time.perf_counter()
        result = train(data, settings, run_dir, resume=resume, progress=progress)
        mlflow.log_metrics(cost(result, time.perf_counter() - started))
        now = int(time.time() * 1000)
        curve = [Metric("stop_mlogloss", loss, now, result.resumed_from + step)
                 for step, loss in enumerate(result.history.get("stop", {}).get("mlogloss", []))]
        for at in range(0, len(curve), 1000):  # batches of MLflow's maximum (one call per round: 1.7 s for 140)
            client.log_batch(run.info.run_id, metrics=curve[at:at + 1000])
        mlflow.log_metrics({"best_iteration": result.best_iteration, "resumed_from": result.resumed_from})
        stop = evaluate(data.y_stop, result.booster.predict(data.dstop)) if data.dstop is not None else None
        version, metrics = register_version(db_path, settings, client, result.booster, data.spec,
                                            evaluate(data.y_test, result.booster.predict(data.dtest)), baselines,
                                            lambda: baseline_table(data, result.booster), data.slices,
                                            data.last_line_id, stop)
    state_file.write_text(json.dumps({"run_id": run.info.run_id, "finished": True, "version": version}))
    return RetrainResult(version, run.info.run_id, metrics, baselines, result.resumed_from, result.rounds, stop,
                         data.slices)


def cost(result, seconds: float) -> dict:
    """What a setting costs: training seconds (in all, per round this run trained), the trees kept, the levels a line
    walks through them (node visits per line: the cost of every prediction), the process's peak memory."""
    import resource

    levels = depths(result.booster)
    trained = max(result.rounds - result.resumed_from, 1)
    return {"train_seconds": seconds, "seconds_per_round": seconds / trained, "trees": len(levels),
            "node_visits_per_line": int(levels.sum()),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def register_version(db_path, settings: Settings, client: MlflowClient, booster: xgb.Booster, spec: dict,
                     metrics: dict, baselines: dict, baseline, slices: dict, last_line_id: int,
                     stop: dict | None) -> tuple[int, dict]:
    """Inside the active MLflow run: the slices (each one's first and last day and lines), the test slice's metrics
    (training.evaluate's; and each baseline's, and the lift over it), the early-stopping slice's beside them as
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
    from .pyfunc import log_model, mark_version

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
    except Exception:  # noqa: BLE001  the first failure is the one to report; doctor flags what stays behind
        pass


def unfinished(versions) -> list[int]:
    """The versions without test metrics: registered by a retrain that stopped (a release before 2026-12-06 could
    leave one)."""
    return [int(v.version) for v in versions if COMPLETE not in v.tags]


def read_version(settings: Settings, version) -> tuple[bytes, dict, dict, pa.Table | None]:
    """(booster UBJSON, feature spec, test-slice metrics, drift baseline or None) of a registered version (an
    MLflow ModelVersion) from the current MLflow store."""
    uri = f"models:/{settings.model_name}/{version.version}"
    try:
        spec = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/feature_spec.json")
        folder = Path(mlflow.artifacts.download_artifacts(uri))
        if (folder / "artifacts" / "booster.ubj").is_file():  # a pyfunc over invoice lines (sales_sql.pyfunc)
            raw = (folder / "artifacts" / "booster.ubj").read_bytes()
        else:  # a version registered before, with MLflow's xgboost flavor
            raw = bytes(mlflow.xgboost.load_model(uri).save_raw("ubj"))
    except (MlflowException, OSError) as e:
        raise RegistryError(f"cannot read version {version.version} from MLflow: {e}") from None
    try:
        baseline = pq.read_table(mlflow.artifacts.download_artifacts(f"runs:/{version.run_id}/{BASELINE_ARTIFACT}"))
    except (MlflowException, OSError):
        baseline = None  # a version registered before baselines were logged: drift checks will say so
    metrics = {k: float(v) for k, v in version.tags.items() if k in ("macro_f1", "accuracy")}
    return raw, spec, metrics, baseline


def find_version(client: MlflowClient, settings: Settings, version: int | str = ALIAS):
    """A registered version by number, or the one with alias `version` (default: @production)."""
    try:
        if isinstance(version, str) and not version.isdigit():
            return client.get_model_version_by_alias(settings.model_name, version)
        return client.get_model_version(settings.model_name, str(version))
    except MlflowException as e:
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise RegistryError(f"model {settings.model_name!r} has no version {version!r} in the MLflow store at "
                                f"{mlflow.get_tracking_uri()}; `sales-sql models DB` lists them") from None
        raise store_failed(e) from None


# ---- promote, rollback, list ------------------------------------------------------------------------------

def store_failed(e: MlflowException) -> RegistryError:
    """An MLflow store error as a one-line RegistryError naming the store."""
    return RegistryError(f"the MLflow store at {mlflow.get_tracking_uri()} failed: {str(e).splitlines()[0][:300]}. "
                         "Check MLFLOW_TRACKING_URI (default: the mlflow.db beside the database file); the database "
                         "file is unchanged")


def registered_versions(client: MlflowClient, name: str) -> list:
    try:
        return sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST":
            return []
        raise store_failed(e) from None


def production_version(client: MlflowClient, name: str) -> int | None:
    try:
        return int(client.get_model_version_by_alias(name, ALIAS).version)
    except MlflowException as e:
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):  # no model, or no alias yet
            return None
        raise store_failed(e) from None


def _macro_f1(version) -> float:
    return float(version.tags.get("macro_f1", "nan"))


def _set_alias(client: MlflowClient, name: str, version: int | None) -> None:
    if version is None:
        client.delete_registered_model_alias(name, ALIAS)
    else:
        client.set_registered_model_alias(name, ALIAS, str(version))


def _write_deployment(con, settings: Settings, version, booster_raw: bytes, spec: dict, metrics: dict,
                      new_status_of_active: str) -> None:
    """Inside the caller's transaction: retire (or roll back) the active row and add the new active one."""
    con.execute("UPDATE deployed_models SET status = ? WHERE status = 'active' AND model_name = ?",
                [new_status_of_active, settings.model_name])
    con.execute("""INSERT INTO deployed_models (model_name, version, run_id, booster, feature_spec, metrics, status)
                   VALUES (?, ?, ?, ?, ?, ?, 'active')""",
                [settings.model_name, int(version.version), version.run_id, booster_raw, json.dumps(spec),
                 json.dumps(metrics)])


def _export_bundle(models_dir: Path, settings: Settings, version: int, booster_raw: bytes, spec: dict,
                   metrics: dict) -> None:
    """models/NAME-vN.ubj and NAME-vN.json (spec + metrics), each written whole then renamed."""
    models_dir.mkdir(parents=True, exist_ok=True)
    stem = models_dir / f"{settings.model_name}-v{version}"
    for path, payload in ((stem.with_suffix(".ubj"), booster_raw),
                          (stem.with_suffix(".json"),
                           json.dumps({"version": version, "feature_spec": spec, "metrics": metrics}, indent=1).encode())):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(payload)
        os.replace(tmp, path)


def _deploy(db_path, settings: Settings, client: MlflowClient, version, models_dir: Path,
            status_of_replaced: str, read: tuple | None = None) -> None:
    """Alias + database row + exported bundle, all or nothing. `read`: what read_version gave, when the caller has it."""
    raw, spec, metrics, baseline = read or read_version(settings, version)
    try:
        _export_bundle(models_dir, settings, int(version.version), raw, spec, metrics)
    except OSError as e:
        raise RegistryError(f"cannot write the model bundle to {models_dir}: {e}; production is unchanged") from None
    previous = production_version(client, settings.model_name)
    with db.opened(db_path, settings=settings) as con:
        _set_alias(client, settings.model_name, int(version.version))
        try:
            with duck.transaction(con):
                _write_deployment(con, settings, version, raw, spec, metrics, status_of_replaced)
                if baseline is not None:
                    store_baseline(con, settings, int(version.version), baseline)
            duck.invalidate()  # the next prediction in this process uses the new version
            load_deployment(con, settings)  # checks the compiled trees and builds the history index once, here
        except BaseException:
            _set_alias(client, settings.model_name, previous)
            raise


def promote(db_path: str, settings: Settings, version: int | None = None, *, best: bool = False,
            force: bool = False, models_dir: str | os.PathLike = "models", say=lambda line: None) -> int:
    """Make a version production: the gate, then alias + deployed copy in the file + bundle in models/.

    The gate scores the candidate and the production version as SQL would serve them now (current settings, this
    file's history) on the candidate's test slice, and refuses the candidate when gate.require says so (figures and
    interval go to the candidate's run and tags, and to `say`). A production version that cannot serve counts as
    absent; a candidate that cannot serve is refused. --force skips the gate."""
    from . import gate

    client = mlflow_client(db_path, existing=True)
    versions = registered_versions(client, settings.model_name)
    if not versions:
        raise RegistryError(f"model {settings.model_name!r} has no versions yet; run `sales-sql retrain` first")
    read = {}

    def deployment_of(v):
        if v.version not in read:
            read[v.version] = read_version(settings, v)
        raw, spec, _, _ = read[v.version]
        return gate.served(settings, index, unservable, int(v.version), raw, spec)

    with db.opened(db_path, settings=settings) as con:
        index, unservable = history_index(con, settings.definition)
        newest = duck.first_row(con, "SELECT coalesce(max(line_id), 0) FROM usable_lines")[0]
        test = lambda v: (dt.date.fromisoformat(v.tags["cutoff"]), int(v.tags.get(TRAINED_THROUGH, newest)))  # noqa: E731
        if best:
            scored = [v for v in versions if not np.isnan(_macro_f1(v)) and "cutoff" in v.tags]
            can = {v.version: dep for v in scored
                   if (dep := deployment_of(v)).source == gate.MODEL}
            if not can:
                raise RegistryError(f"no version of {settings.model_name!r} has test metrics and can serve under the "
                                    "current settings; run `sales-sql retrain`")
            ranked = [v for v in scored if v.version in can]
            common = max(test(v)[0] for v in ranked)  # lines no ranked version trained or stopped on
            y, preds = gate.predictions(con, settings, [can[v.version] for v in ranked], common, newest)
            f1s = [gate.macro_f1(y, p) for p in preds]
            say("--best on the " + f"{len(y):,} lines from {common}: " +
                ", ".join(f"v{v.version} {f:.4f}" for v, f in zip(ranked, f1s)))
            candidate = ranked[int(np.argmax(f1s))]
        elif version is None:
            candidate = versions[-1]
        else:
            matches = [v for v in versions if int(v.version) == version]
            if not matches:
                raise RegistryError(f"version {version} of {settings.model_name!r} does not exist; existing: "
                                    f"{', '.join(str(v.version) for v in versions)}")
            candidate = matches[0]
        if np.isnan(_macro_f1(candidate)) and not force:
            raise GateRefused(f"version {candidate.version} has no test metrics: the retrain that registered it did "
                              "not finish. Retrain again, promote another version, or use --force to promote it "
                              "anyway")
        current = production_version(client, settings.model_name)
        if not force:
            mine = deployment_of(candidate)
            if mine.source != gate.MODEL:
                raise GateRefused(f"version {candidate.version} cannot serve under the current settings: {mine.reason}."
                                  " Retrain under these settings, or use --force to promote it anyway")
            if current is not None and current != int(candidate.version):
                champion = next(v for v in versions if int(v.version) == current)
                theirs = deployment_of(champion)
                if theirs.source != gate.MODEL:
                    say(f"production version {current} cannot serve under the current settings ({theirs.reason}); "
                        "it counts as absent")
                else:
                    _gate(client, settings, candidate, current, say, *gate.predictions(
                        con, settings, [mine, theirs], *test(candidate)))
    _deploy(db_path, settings, client, candidate, Path(models_dir), "retired", read.get(candidate.version))
    return int(candidate.version)


def _gate(client: MlflowClient, settings: Settings, candidate, current: int, say, y, preds) -> None:
    """Compare on the same lines, record the figures on the candidate (run metrics and version tags), decide."""
    from . import gate

    figures = gate.compare(y, *preds, settings.gate_confidence)
    line = (f"version {candidate.version} macro-F1 {figures['candidate_macro_f1']:.4f} against production version "
            f"{current} {figures['champion_macro_f1']:.4f} on the {figures['lines']:,} lines of its test slice: "
            f"difference {figures['difference']:+.4f} ({settings.gate_confidence:.0%} interval "
            f"{figures['low']:+.4f} .. {figures['high']:+.4f})")
    client.log_batch(candidate.run_id, metrics=[Metric(f"gate_{k}", float(v), int(time.time() * 1000), 0)
                                                for k, v in figures.items()])
    for k in ("candidate_macro_f1", "champion_macro_f1", "low", "high"):
        client.set_model_version_tag(settings.model_name, candidate.version, f"gate_{k}", f"{figures[k]:.6f}")
    client.set_model_version_tag(settings.model_name, candidate.version, "gate_champion_version", str(current))
    if not gate.passes(figures, settings.gate_require):
        rule = "worse than" if settings.gate_require == "not_worse" else "not better than"
        raise GateRefused(f"{line}: {rule} production beyond the interval (gate.require = "
                          f"{settings.gate_require!r}); not promoted. Use --force to promote it anyway")
    say(line)


def rollback(db_path: str, settings: Settings, models_dir: str | os.PathLike = "models") -> int:
    """Put back the version that was production before the current one, in MLflow and in the file."""
    with db.opened(db_path, read_only=True, settings=settings) as con:
        rows = con.execute("""SELECT version, status FROM deployed_models WHERE model_name = ?
                              ORDER BY deployment_id DESC""", [settings.model_name]).fetchall()
    active = next((v for v, s in rows if s == "active"), None)
    previous = next((v for v, s in rows if s == "retired" and v != active), None)
    if active is None or previous is None:
        raise RegistryError("there is no earlier production version in this database file to roll back to")
    client = mlflow_client(db_path, existing=True)
    version = next((v for v in registered_versions(client, settings.model_name) if int(v.version) == previous), None)
    if version is None:
        raise RegistryError(f"version {previous} is no longer in the MLflow registry at {tracking_uri(db_path)}")
    _deploy(db_path, settings, client, version, Path(models_dir), "rolled_back")
    return previous


def list_models(db_path: str, settings: Settings) -> list[dict]:
    """Every registered version with its metrics, whether it is @production and whether this file runs it."""
    if _store_missing(db_path) is not None:
        return []  # nothing trained yet (and no empty store created)
    client = mlflow_client(db_path)
    with db.opened(db_path, read_only=True, settings=settings) as con:
        row = duck.active_deployment(con, settings.model_name)
    deployed = row[0] if row else None
    production = production_version(client, settings.model_name)
    return [{"version": int(v.version), "macro_f1": _macro_f1(v), "accuracy": float(v.tags.get("accuracy", "nan")),
             "cutoff": v.tags.get("cutoff", ""), "production": int(v.version) == production,
             "deployed_here": int(v.version) == deployed, "run_id": v.run_id}
            for v in registered_versions(client, settings.model_name)]


__all__ = ["GateRefused", "MlflowException", "RegistryError", "TrainingError", "list_models", "promote", "retrain", "rollback",
           "store_failed", "tracking_uri"]
