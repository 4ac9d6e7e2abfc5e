"""Promote through the gate, roll back, list: which version is production. The gate's figures come from gate.py
(the versions scored as SQL serves them); the deploying from deploy.py.
"""
from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric

from . import db, duck, gate
from .config import Settings
from .db import TRAINED_THROUGH
from .deploy import deploy
from .serving import history_index
from .store import (
    RegistryError,
    macro_f1_of,
    mlflow_client,
    production_version,
    read_version,
    registered_versions,
    store_missing,
    tracking_uri,
)


class GateRefused(RegistryError):
    """promote's gate refused a version (worse than production on the same lines, unable to serve, or without
    metrics); production is unchanged."""


def promote(db_path: str, settings: Settings, version: int | None = None, *, best: bool = False,
            force: bool = False, models_dir: str | os.PathLike = "models", say=lambda line: None) -> int:
    """Make a version production: the gate, then alias + deployed copy in the file + bundle in models/.

    The gate scores the candidate and the production version as SQL would serve them now (current settings, this
    file's history) on the candidate's test slice, and refuses the candidate when gate.require says so (figures and
    interval go to the candidate's run and tags, and to `say`). A production version that cannot serve counts as
    absent; a candidate that cannot serve is refused. --force skips the gate."""
    client = mlflow_client(db_path, existing=True)
    versions = registered_versions(client, settings.model_name)
    if not versions:
        raise RegistryError(f"model {settings.model_name!r} has no versions yet; run `sales-sql retrain` first")
    read = {}

    def candidate_of(v):
        if v.version not in read:
            read[v.version] = read_version(settings, v)
        raw, spec, _, _ = read[v.version]
        return gate.candidate(settings, index, unservable, int(v.version), raw, spec)

    with db.opened(db_path, settings=settings) as con:
        index, unservable = history_index(con, settings.definition)
        newest = duck.first_row(con, "SELECT coalesce(max(line_id), 0) FROM usable_lines")[0]
        test = lambda v: (dt.date.fromisoformat(v.tags["cutoff"]), int(v.tags.get(TRAINED_THROUGH, newest)))  # noqa: E731
        if best:
            scored = [v for v in versions if not np.isnan(macro_f1_of(v)) and "cutoff" in v.tags]
            can = {v.version: model for v in scored if (model := candidate_of(v)).source == gate.MODEL}
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
        if np.isnan(macro_f1_of(candidate)) and not force:
            raise GateRefused(f"version {candidate.version} has no test metrics: the retrain that registered it did "
                              "not finish. Retrain again, promote another version, or use --force to promote it "
                              "anyway")
        current = production_version(client, settings.model_name)
        if not force:
            mine = candidate_of(candidate)
            if mine.source != gate.MODEL:
                raise GateRefused(f"version {candidate.version} cannot serve under the current settings: {mine.reason}."
                                  " Retrain under these settings, or use --force to promote it anyway")
            if current is not None and current != int(candidate.version):
                champion = next(v for v in versions if int(v.version) == current)
                theirs = candidate_of(champion)
                if theirs.source != gate.MODEL:
                    say(f"production version {current} cannot serve under the current settings ({theirs.reason}); "
                        "it counts as absent")
                else:
                    _gate(client, settings, candidate, current, say, *gate.predictions(
                        con, settings, [mine, theirs], *test(candidate)))
    deploy(db_path, settings, client, candidate, Path(models_dir), "retired", read.get(candidate.version))
    return int(candidate.version)


def _gate(client: MlflowClient, settings: Settings, candidate, current: int, say, y, preds) -> None:
    """Compare on the same lines, record the figures on the candidate (run metrics and version tags), decide."""
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
    deploy(db_path, settings, client, version, Path(models_dir), "rolled_back")
    return previous


def list_models(db_path: str, settings: Settings) -> list[dict]:
    """Every registered version with its metrics, whether it is @production and whether this file runs it."""
    if store_missing(db_path) is not None:
        return []  # nothing trained yet (and no empty store created)
    client = mlflow_client(db_path)
    with db.opened(db_path, read_only=True, settings=settings) as con:
        row = duck.deployed_row(con, settings.model_name)
    deployed = row[0] if row else None
    production = production_version(client, settings.model_name)
    return [{"version": int(v.version), "macro_f1": macro_f1_of(v), "accuracy": float(v.tags.get("accuracy", "nan")),
             "cutoff": v.tags.get("cutoff", ""), "production": int(v.version) == production,
             "deployed_here": int(v.version) == deployed, "run_id": v.run_id}
            for v in registered_versions(client, settings.model_name)]


