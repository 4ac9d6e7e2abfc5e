"""One typed settings object: the shipped defaults (configs/sales_sql.toml), overridden by the user's file."""
from __future__ import annotations

import datetime as dt
import os
import tomllib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from zoneinfo import ZoneInfo

from .definition import FEATURES, Definition


def shipped(name: str):
    """A file the package ships, as 'sql/history.sql' or 'configs/sales_sql.toml': the repository's top-level sql/
    and configs/, which pyproject.toml maps into the package (sales_sql.sql, sales_sql.configs)."""
    folder, _, leaf = name.partition("/")
    return files(f"sales_sql.{folder}") / leaf


DEFAULT_PATH = shipped("configs/sales_sql.toml")


class ConfigError(ValueError):
    """A settings file is missing a key or holds a value of the wrong kind."""


@dataclass(frozen=True)
class Settings:
    """Every setting of configs/sales_sql.toml (the file is the one place defaults live)."""

    low_max: int
    medium_max: int
    time_zone: str
    buckets: int
    drift_window_days: int
    ks_effect_threshold: float
    chi2_effect_threshold: float
    drift_alpha: float
    performance_drop: float
    cutoff: str
    valid_fraction: float
    stop_fraction: float
    num_boost_round: int
    early_stopping_rounds: int
    checkpoint_every: int
    class_weight: str
    decision: str
    max_depth: int
    min_child_weight: float
    learning_rate: float
    subsample: float
    colsample_bytree: float
    max_bin: int
    seed: int
    experiment: str
    model_name: str
    gate_require: str
    gate_confidence: float
    spark_index_max_rows: int
    source: str
    # the feature definition (not a settings-file key): the shipped one, or another for a test or an experiment
    definition: Definition = FEATURES


def _is_zone(value: str) -> bool:

    try:
        ZoneInfo(value)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        return False
    return True


def _is_day_or_empty(value: str) -> bool:
    if value == "":
        return True
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


# (section, key) -> (field name, type, check, what a good value looks like)
FIELDS = {
    ("classes", "low_max"): ("low_max", int, lambda v: v >= 0, "a whole number >= 0"),
    ("classes", "medium_max"): ("medium_max", int, lambda v: v >= 1, "a whole number >= 1"),
    ("invoices", "time_zone"): ("time_zone", str, _is_zone, 'an IANA time zone name such as "UTC" or '
                                                           '"Europe/London"'),
    ("hashing", "buckets"): ("buckets", int, lambda v: 3 <= v <= 4096, "a whole number from 3 to 4096"),
    ("drift", "window_days"): ("drift_window_days", int, lambda v: v >= 1, "a whole number of days >= 1"),
    ("drift", "ks_effect_threshold"): ("ks_effect_threshold", float, lambda v: v > 0, "a number > 0"),
    ("drift", "chi2_effect_threshold"): ("chi2_effect_threshold", float, lambda v: v > 0, "a number > 0"),
    ("drift", "alpha"): ("drift_alpha", float, lambda v: 0 < v < 1, "a number between 0 and 1"),
    ("drift", "performance_drop"): ("performance_drop", float, lambda v: 0 < v < 1, "a number between 0 and 1"),
    ("training", "cutoff"): ("cutoff", str, _is_day_or_empty, 'a date "YYYY-MM-DD" or "" for automatic'),
    ("training", "valid_fraction"): ("valid_fraction", float, lambda v: 0 < v < 1, "a number between 0 and 1"),
    ("training", "stop_fraction"): ("stop_fraction", float, lambda v: 0 < v < 1, "a number between 0 and 1"),
    ("training", "num_boost_round"): ("num_boost_round", int, lambda v: v >= 1, "a whole number >= 1"),
    ("training", "early_stopping_rounds"): ("early_stopping_rounds", int, lambda v: v >= 0, "a whole number >= 0"),
    ("training", "checkpoint_every"): ("checkpoint_every", int, lambda v: v >= 1, "a whole number >= 1"),
    ("training", "class_weight"): ("class_weight", str, lambda v: v in ("balanced", "none"), '"balanced" or "none"'),
    ("training", "decision"): ("decision", str, lambda v: v in ("macro_f1", "argmax"), '"macro_f1" or "argmax"'),
    ("training", "max_depth"): ("max_depth", int, lambda v: 1 <= v <= 16, "a whole number from 1 to 16"),
    ("training", "min_child_weight"): ("min_child_weight", float, lambda v: v >= 0, "a number >= 0"),
    ("training", "learning_rate"): ("learning_rate", float, lambda v: 0 < v <= 1, "a number in (0, 1]"),
    ("training", "subsample"): ("subsample", float, lambda v: 0 < v <= 1, "a number in (0, 1]"),
    ("training", "colsample_bytree"): ("colsample_bytree", float, lambda v: 0 < v <= 1, "a number in (0, 1]"),
    ("training", "max_bin"): ("max_bin", int, lambda v: 2 <= v <= 1024, "a whole number from 2 to 1024"),
    ("training", "seed"): ("seed", int, lambda v: v >= 0, "a whole number >= 0"),
    ("registry", "experiment"): ("experiment", str, bool, "a non-empty name"),
    ("registry", "model_name"): ("model_name", str, bool, "a non-empty name"),
    ("gate", "require"): ("gate_require", str, lambda v: v in ("not_worse", "better"), '"not_worse" or "better"'),
    ("gate", "confidence"): ("gate_confidence", float, lambda v: 0.5 <= v < 1, "a number from 0.5 to below 1"),
    ("spark", "index_max_rows"): ("spark_index_max_rows", int, lambda v: v >= 0, "a whole number >= 0"),
}


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    """The shipped defaults, with every key that the user's file sets replacing its default.

    The user's file is `path` (the commands' --config FILE), else $SALES_SQL_CONFIG, else none. It may set any
    subset of the keys; `sales-sql config --init FILE` writes a commented copy of all of them to start from."""
    raw = _read(DEFAULT_PATH)
    path = path or os.environ.get("SALES_SQL_CONFIG")
    if not path:
        return settings_from_dict(raw, source="defaults")
    for section, body in _read(Path(path)).items():
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: {section} = {body!r} is not a [section]; settings sit under sections such "
                              "as [training]")
        raw[section] = {**raw.get(section, {}), **body}
    return settings_from_dict(raw, source=str(path))


def _read(path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"settings file {path} does not exist; write one with `sales-sql config --init {path}`, "
                          "or leave the option out to use the shipped defaults") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"settings file {path} is not valid TOML: {e}") from None


def settings_from_dict(raw: dict, source: str = "<dict>") -> Settings:
    known_sections = {s for s, _ in FIELDS}
    for section, body in raw.items():
        if section not in known_sections:
            raise ConfigError(f"{source}: unknown section [{section}]; known: {sorted(known_sections)}")
        for key in body:
            if (section, key) not in FIELDS:
                raise ConfigError(f"{source}: unknown key {section}.{key}")
    values = {}
    for (section, key), (field, typ, check, want) in FIELDS.items():
        if key not in raw.get(section, {}):
            raise ConfigError(f"{source}: missing key {section}.{key} ({want})")
        value = raw[section][key]
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, typ) or isinstance(value, bool) or not check(value):
            raise ConfigError(f"{source}: {section}.{key} = {value!r} is not valid; expected {want}")
        values[field] = value
    if values["medium_max"] <= values["low_max"]:
        raise ConfigError(
            f"{source}: classes.medium_max = {values['medium_max']} must be greater than "
            f"classes.low_max = {values['low_max']}"
        )
    return Settings(**values, source=source)
