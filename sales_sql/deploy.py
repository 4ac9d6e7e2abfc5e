"""Deploying a version: MLflow's @production alias, the deployed row in the database file (with the version's drift
baseline) and the bundle in models/, all or nothing. promote and rollback deploy through here.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from mlflow import MlflowClient

from . import db, duck
from .config import Settings
from .monitor import store_baseline
from .serving import load_from_file
from .store import RegistryError, production_version, read_version, set_alias


def write_row(con, settings: Settings, version, booster_raw: bytes, spec: dict, metrics: dict,
                      new_status_of_active: str) -> None:
    """Inside the caller's transaction: retire (or roll back) the active row and add the new active one."""
    con.execute("UPDATE deployed_models SET status = ? WHERE status = 'active' AND model_name = ?",
                [new_status_of_active, settings.model_name])
    con.execute("""INSERT INTO deployed_models (model_name, version, run_id, booster, feature_spec, metrics, status)
                   VALUES (?, ?, ?, ?, ?, ?, 'active')""",
                [settings.model_name, int(version.version), version.run_id, booster_raw, json.dumps(spec),
                 json.dumps(metrics)])


def export_bundle(models_dir: Path, settings: Settings, version: int, booster_raw: bytes, spec: dict,
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


def deploy(db_path, settings: Settings, client: MlflowClient, version, models_dir: Path,
            status_of_replaced: str, read: tuple | None = None) -> None:
    """Alias + database row + exported bundle, all or nothing. `read`: what read_version gave, when the caller has it."""
    raw, spec, metrics, baseline = read or read_version(settings, version)
    try:
        export_bundle(models_dir, settings, int(version.version), raw, spec, metrics)
    except OSError as e:
        raise RegistryError(f"cannot write the model bundle to {models_dir}: {e}; production is unchanged") from None
    previous = production_version(client, settings.model_name)
    with db.opened(db_path, settings=settings) as con:
        set_alias(client, settings.model_name, int(version.version))
        try:
            with duck.transaction(con):
                write_row(con, settings, version, raw, spec, metrics, status_of_replaced)
                if baseline is not None:
                    store_baseline(con, settings, int(version.version), baseline)
            duck.invalidate()  # the next prediction in this process uses the new version
            load_from_file(con, settings)  # checks the compiled trees and builds the history index once, here
        except BaseException:
            set_alias(client, settings.model_name, previous)
            raise


