"""The model lifecycle in one import (the CLI's lifecycle commands, ops.pipeline and users' scripts): retrain and
register (registration.py), promote through the gate, roll back and list (promote.py), over the MLflow store
(store.py); deploy.py writes the deployed row into the file. MLflow is the governance record; the database file holds
what predictions use. Importing it imports MLflow (seconds): the query path never does. The training names
(retrain, warm_up, RetrainResult, TrainingError) import XGBoost, and with it scikit-learn (seconds more), when first
used: promote, rollback and models do not wait for them.
"""
from mlflow.exceptions import MlflowException

from .db import TRAINED_THROUGH
from .promote import GateRefused, list_models, promote, rollback
from .store import (
                    ALIAS,
                    COMPLETE,
                    RegistryError,
                    find_version,
                    mlflow_client,
                    production_version,
                    read_version,
                    registered_versions,
                    store_failed,
                    tracking_uri,
                    unfinished,
)

__all__ = ["ALIAS", "COMPLETE", "GateRefused", "MlflowException", "RegistryError", "TRAINED_THROUGH", "find_version",
           "list_models", "mlflow_client", "production_version", "promote", "read_version", "registered_versions",
           "rollback", "store_failed", "tracking_uri", "unfinished"]  # and the training names, from __getattr__


def __getattr__(name: str):
    if name in ("RetrainResult", "retrain", "warm_up"):
        from . import registration
        return getattr(registration, name)
    if name == "TrainingError":
        from .training import TrainingError
        return TrainingError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
