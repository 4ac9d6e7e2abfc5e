import pytest

from sales_sql.config import ConfigError, load_settings, settings_from_dict

GOOD = {
    "classes": {"low_max": 3, "medium_max": 8},
    "hashing": {"buckets": 20},
    "drift": {"window_days": 30, "ks_effect_threshold": 0.1, "chi2_effect_threshold": 0.1, "alpha": 0.05},
}


def test_shipped_config_loads():
    s = load_settings()
    assert (s.low_max, s.medium_max, s.buckets) == (3, 8, 20)


@pytest.mark.parametrize("section,key,value,needle", [
    ("classes", "low_max", "three", "classes.low_max = 'three'"),
    ("classes", "medium_max", 2, "classes.medium_max = 2 must be greater than classes.low_max = 3"),
    ("hashing", "buckets", 1, "hashing.buckets = 1"),
    ("drift", "alpha", 1.5, "drift.alpha = 1.5"),
    ("hashing", "buckets", True, "hashing.buckets = True"),
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
