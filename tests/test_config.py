import pytest

from sales_sql.config import ConfigError, load_settings, settings_from_dict

GOOD = {
    "classes": {"low_max": 3, "medium_max": 8},
    "invoices": {"time_zone": "UTC"},
    "hashing": {"buckets": 20},
    "drift": {"window_days": 30, "ks_effect_threshold": 0.1, "chi2_effect_threshold": 0.15, "alpha": 0.05,
              "performance_drop": 0.05},
    "training": {"cutoff": "", "valid_fraction": 0.2, "stop_fraction": 0.1, "num_boost_round": 1000, "early_stopping_rounds": 30,
                 "checkpoint_every": 20, "class_weight": "balanced",
                 "decision": "macro_f1", "max_depth": 6, "min_child_weight": 5.0, "learning_rate": 0.1,
                 "subsample": 0.8, "colsample_bytree": 0.8, "max_bin": 256, "seed": 7},
    "registry": {"experiment": "sales_sql", "model_name": "sales_sql_class"},
    "gate": {"require": "not_worse", "confidence": 0.95},
    "spark": {"index_max_rows": 5_000_000},
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
    ("training", "decision", "best", "training.decision = 'best'"),
    ("invoices", "time_zone", "Mars/Olympus", "invoices.time_zone = 'Mars/Olympus'"),
    ("gate", "require", "maybe", "gate.require = 'maybe'"),
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


def test_a_users_file_overrides_only_the_keys_it_sets(tmp_path, monkeypatch):
    mine = tmp_path / "mine.toml"
    mine.write_text("[training]\nmax_depth = 5\n[classes]\nmedium_max = 10\n")
    s = load_settings(mine)
    assert (s.max_depth, s.medium_max, s.low_max, s.buckets) == (5, 10, 3, 20) and s.source == str(mine)
    (tmp_path / "bad.toml").write_text("[training]\nmax_depht = 5\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: unknown key training\.max_depht"):
        load_settings(tmp_path / "bad.toml")
    (tmp_path / "flat.toml").write_text("max_depth = 5\n")
    with pytest.raises(ConfigError, match="max_depth = 5 is not a \\[section\\]"):
        load_settings(tmp_path / "flat.toml")
    monkeypatch.setenv("SALES_SQL_CONFIG", str(mine))
    assert load_settings().max_depth == 5
    other = tmp_path / "other.toml"
    other.write_text("[training]\nmax_depth = 3\n")
    assert load_settings(other).max_depth == 3  # a named file wins over the environment


def test_config_command_writes_the_defaults_and_every_command_takes_config(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from sales_sql.cli import main
    from sales_sql.config import DEFAULT_PATH

    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(main, ["config", "--init", "s.toml"]).exit_code == 0
    written = (tmp_path / "s.toml").read_text()
    assert written == DEFAULT_PATH.read_text()
    again = runner.invoke(main, ["config", "--init", "s.toml"])
    assert again.exit_code == 2 and "exists already" in again.output
    (tmp_path / "s.toml").write_text(written.replace("window_days = 30", "window_days = 9"))
    shown = runner.invoke(main, ["config", "--config", "s.toml"])
    assert "drift.window_days = 9" in shown.output and "from: s.toml" in shown.output
    (tmp_path / "s.toml").write_text("[hashing]\nbuckets = 1\n")
    (tmp_path / "x.duckdb").touch()
    bad = runner.invoke(main, ["query", "--config", "s.toml", "x.duckdb", "SELECT 1"])
    assert bad.exit_code == 2 and "hashing.buckets = 1 is not valid" in bad.output
    for name, command in main.commands.items():
        assert "--config" in [o for p in command.params for o in p.opts], name
