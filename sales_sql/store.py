"""The MLflow store: where it is (beside the database file, or MLFLOW_TRACKING_URI), its registered versions, the
@production alias, and what a version holds (booster, feature spec, metrics, drift baseline). Every error of the store
becomes one RegistryError line that names it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from .config import Settings

ALIAS = "production"
COMPLETE = "macro_f1"  # the version tag written last: a version without it did not finish registering
BASELINE_ARTIFACT = "drift_baseline.parquet"


class RegistryError(ValueError):
    """A lifecycle step was refused or failed; production is unchanged."""


def tracking_uri(db_path: str | os.PathLike) -> str:
    """MLFLOW_TRACKING_URI, else a sqlite store beside the database file (MLflow 3's own default kind)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(db_path).resolve().parent / 'mlflow.db'}"


def store_missing(db_path) -> Path | None:
    """The sqlite file of the tracking URI when it does not exist (MLflow would create an empty store there)."""
    uri = tracking_uri(db_path)
    path = Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None
    return path if path is not None and not path.exists() else None


def mlflow_client(db_path, *, existing: bool = False) -> MlflowClient:
    """The MLflow client of db_path's store; with existing=True a missing sqlite store is refused, not created."""
    missing = store_missing(db_path) if existing else None
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


def experiment_id(client: MlflowClient, db_path, settings: Settings) -> str:
    exp = client.get_experiment_by_name(settings.experiment)
    if exp is not None:
        return exp.experiment_id
    artifacts = (Path(db_path).resolve().parent / "mlartifacts").as_uri()
    return client.create_experiment(settings.experiment, artifact_location=artifacts)


def unfinished(versions) -> list[int]:
    """The versions without test metrics: registered by a retrain that stopped (a release before 2026-12-06 could
    leave one)."""
    return [int(v.version) for v in versions if COMPLETE not in v.tags]


def read_version(settings: Settings, version) -> tuple[bytes, dict, dict, pa.Table | None]:
    """(booster UBJSON, feature spec, test-slice metrics, drift baseline or None) of a registered version (an
    MLflow ModelVersion) from the current MLflow store."""
    uri = f"models:/{settings.model_name}/{version.version}"
    try:
        folder = Path(mlflow.artifacts.download_artifacts(uri))
        if (folder / "artifacts" / "booster.ubj").is_file():  # a pyfunc over invoice lines (sales_sql.pyfunc): its
            raw = (folder / "artifacts" / "booster.ubj").read_bytes()  # spec holds the decision weights
            spec = json.loads((folder / "artifacts" / "spec.json").read_text(encoding="utf-8"))
        else:  # a version registered before, with MLflow's xgboost flavor
            raw = bytes(mlflow.xgboost.load_model(uri).save_raw("ubj"))
            spec = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/feature_spec.json")
    except (MlflowException, OSError, ValueError) as e:  # ValueError: a spec that is no JSON
        raise RegistryError(f"cannot read version {version.version} from MLflow: {e}") from None
    try:  # a version registered before baselines were logged has none: drift checks will say so
        logged = {a.path for a in MlflowClient().list_artifacts(version.run_id)}
        baseline = pq.read_table(mlflow.artifacts.download_artifacts(f"runs:/{version.run_id}/{BASELINE_ARTIFACT}")) \
            if BASELINE_ARTIFACT in logged else None
    except (MlflowException, OSError) as e:
        raise RegistryError(f"cannot read the drift baseline of version {version.version} from MLflow: "
                            f"{str(e).splitlines()[0][:300]}") from None
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


def macro_f1_of(version) -> float:
    return float(version.tags.get("macro_f1", "nan"))


def set_alias(client: MlflowClient, name: str, version: int | None) -> None:
    if version is None:
        client.delete_registered_model_alias(name, ALIAS)
    else:
        client.set_registered_model_alias(name, ALIAS, str(version))


