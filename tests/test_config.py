import pytest

from sales_sql.config import ConfigError, load_settings, settings_from_dict

GOOD = {
    "classes": {"low_max": 3, "medium_max": 8},
    "hashing": {"buckets": 20},
    "drift": {"window_days": 30, "ks_effect_threshold": 0.1, "chi2_effect_threshold": 0.15, "alpha": 0.05,
              "performance_drop": 0.05},
    "training": {"cutoff": "", "valid_fraction": 0.2, "num_boost_round": 400, "early_stopping_rounds": 30,
                 "checkpoint_every": 20, "class_weight": "balanced", "max_depth": 8, "learning_rate": 0.1,
                 "subsample": 0.8, "colsample_bytree": 0.8, "max_bin": 256, "seed": 7},
    "registry": {"experiment": "sales_sql", "model_name": "sales_sql_class"},
}


def test_shipped_config_loads_and_matches_the_documented_defaults():
    assert load_settings() == settings_from_dict(GOOD, source=str(load_settings().source))


@pytest.mark.parametrize("section,key,value,needle", [
    ("classes", "low_max", "three", "classes.low_max = 'three'"),
    ("classes", "medium_max", 2, "classes.medium_max = 2 must be greater than classes.low_max = 3"),
    ("hashing", "buckets", 1, "hashing.buckets = 1"),
    ("drift", "alpha", 1.5, "drift.alpha = 1.5"),
    ("hashing", "buckets", True, "hashing.buckets = True"),
    ("training", "cutoff", "2011-13-01", "training.cutoff = '2011-13-01'"),
    ("training", "class_weight", "auto", "training.class_weight = 'auto'"),
])
def test_bad_values_name_the_key(section, key, value, needle):
    raw = {s: dict(v) for s, v in GOOD.items()}
    raw[section][key] = value
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.").replace("(", r"\(")):
        settings_from_dict(raw)


def test_missing_and_unknown_keys_are_named():
    raw = {s: dict(v) for s, v in GOOD.items()}
    del raw["hashing"]["buckets"]
    with pytest.raises(ConfigError, match="missing key hashing.buckets"):
        settings_from_dict(raw)
    raw = {s: dict(v) for s, v in GOOD.items()}
    raw["hashing"]["bucket"] = 20
    with pytest.raises(ConfigError, match="unknown key hashing.bucket"):
        settings_from_dict(raw)


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[classes\nlow_max = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)
