"""retrain / promote / rollback / models against a temporary MLflow store, driven as a user would."""
import dataclasses
import json
import math
import os
import signal
import subprocess
import time

import pytest

from conftest import SALES_SQL, run_cli, run_here
from sales_sql import close, connect
from sales_sql.metrics import WEIGHTS
from sales_sql.demo import generate, write
from sales_sql.loader import load_file

QUICK = {"num_boost_round": 40, "early_stopping_rounds": 0, "max_depth": 4, "checkpoint_every": 20}


def make_db(tmp_path, settings, lines=30_000, days=200, **gen):
    db = tmp_path / "s.duckdb"
    data = write(generate(lines=lines, days=days, **gen), tmp_path / "inv.parquet")
    con = connect(db, settings=settings)
    load_file(con, data, settings=settings)
    close(db)
    return db


def config_file(tmp_path, settings, **changes):
    """A settings file for the CLI subprocess, from the shipped one with some training keys changed."""
    from sales_sql.config import DEFAULT_PATH

    text = DEFAULT_PATH.read_text()
    for key, value in changes.items():
        lines = [f"{key} = {json.dumps(value)}" if ln.split("=")[0].strip() == key else ln
                 for ln in text.splitlines()]
        text = "\n".join(lines)
    path = tmp_path / "settings.toml"
    path.write_text(text)
    return path


def test_retrain_logs_everything_and_registers_a_version(tmp_path, settings, store):
    from mlflow import MlflowClient

    from sales_sql.registry import retrain

    db = make_db(tmp_path, settings)
    r = retrain(str(db), dataclasses.replace(settings, **{**QUICK, "early_stopping_rounds": 30, "decision": "argmax"}),
                tmp_path / "models", progress=False)
    run = MlflowClient(store).get_run(r.run_id)
    assert run.data.params[WEIGHTS] == "LOW 1, MEDIUM 1, HIGH 1"  # decision = "argmax" (test_gate: weights chosen)
    m = run.data.metrics
    for key in ("accuracy", "macro_f1", "log_loss", "precision_LOW", "recall_HIGH", "f1_MEDIUM",
                "baseline_majority_accuracy", "baseline_branch_item_mode_macro_f1", "lift_macro_f1_over_majority",
                "train_seconds", "seconds_per_round", "trees", "node_visits_per_line", "peak_rss_gb"):
        assert key in m, key
    assert m["macro_f1"] > m["baseline_branch_item_mode_macro_f1"] > m["baseline_majority_macro_f1"]
    assert m["trees"] == 3 * (m["best_iteration"] + 1) and 0 < m["node_visits_per_line"] <= QUICK["max_depth"] * m["trees"]
    assert run.data.params["test_from"] and int(run.data.params["train_rows"]) > 0
    curve = sorted(MlflowClient(store).get_metric_history(r.run_id, "stop_mlogloss"), key=lambda p: p.step)
    assert [p.step for p in curve] == list(range(r.rounds)) and curve[0].value > curve[-1].value
    artifacts = {a.path for a in MlflowClient(store).list_artifacts(r.run_id)}
    assert {"confusion_matrix.png", "feature_importance.png", "feature_spec.json", "config.json",
            "drift_baseline.parquet"} <= artifacts
    con = connect(db, read_only=True, settings=settings)
    stored = con.execute("SELECT count(*), count(DISTINCT predicted) FROM drift_baseline WHERE version = ?",
                         [r.version]).fetchall()[0]
    close(db)
    assert stored[0] == int(run.data.params["train_rows"]) and stored[1] >= 2
    version = MlflowClient(store).get_model_version(settings.model_name, str(r.version))
    assert float(version.tags["macro_f1"]) == pytest.approx(r.metrics["macro_f1"], abs=1e-6)
    assert sorted(p.name for p in (tmp_path / "models" / "checkpoints").glob("*/iter_*.ubj"))[-1] == \
        f"iter_{r.rounds // 20 * 20:05d}.ubj"


def test_gate_force_rollback_and_models_listing(tmp_path, settings, store, monkeypatch):
    from sales_sql.registry import retrain

    db = make_db(tmp_path, settings)
    good = retrain(str(db), dataclasses.replace(settings, **QUICK), tmp_path / "models", progress=False)
    worse = dataclasses.replace(settings, **{**QUICK, "num_boost_round": 1, "max_depth": 1, "class_weight": "none"})
    bad = retrain(str(db), worse, tmp_path / "models", progress=False)
    assert bad.metrics["macro_f1"] < good.metrics["macro_f1"]
    md = ["--models-dir", tmp_path / "models"]

    run_here("promote", db, good.version, *md)
    refused = run_here("promote", db, bad.version, *md, check=False)
    assert refused.returncode == 1 and "worse than production" in refused.stderr and "--force" in refused.stderr
    assert "*    D" in run_here("models", db).stdout.splitlines()[good.version]

    run_here("promote", db, bad.version, "--force", *md)
    listing = run_here("models", db).stdout.splitlines()
    assert "*    D" in listing[bad.version] and "*" not in listing[good.version].split()[1:2]
    assert (tmp_path / "models" / f"{settings.model_name}-v{bad.version}.ubj").is_file()

    assert f"version {good.version} is production" in run_here("rollback", db, *md).stdout
    listing = run_here("models", db).stdout.splitlines()
    assert "*    D" in listing[good.version]
    with connect(db, read_only=True, settings=settings) as con:
        rows = con.execute("SELECT version, status FROM deployed_models ORDER BY deployment_id").fetchall()
    close(db)
    assert rows == [(good.version, "retired"), (bad.version, "rolled_back"), (good.version, "active")]
    again = run_here("rollback", db, *md, check=False)
    assert again.returncode == 2 and "no earlier production version" in again.stderr


@pytest.mark.slow  # a fault test: eight retrains
def test_a_retrain_stopped_at_any_step_of_registering_leaves_a_whole_version_or_none(tmp_path, settings, store,
                                                                                     monkeypatch):
    from mlflow import MlflowClient

    from sales_sql import registration, registry
    from sales_sql.registry import COMPLETE, RegistryError, promote, retrain

    db = make_db(tmp_path, settings, lines=8_000, days=100)
    quick = dataclasses.replace(settings, **QUICK)
    good = retrain(str(db), quick, tmp_path / "models", progress=False)
    client = MlflowClient(store)

    def versions():
        return client.search_model_versions(f"name='{settings.model_name}'")

    def after(target, name, calls=1):
        """Ctrl-C right after the `calls`-th call of target.name finished."""
        original, seen = getattr(target, name), []

        def step(*args, **kwargs):
            out = original(*args, **kwargs)
            seen.append(1)
            if len(seen) == calls:
                raise KeyboardInterrupt
            return out
        return step

    steps = [(registration.mlflow, "register_model", 1), (registration, "mark_version", 1),
             (registration, "baseline_table", 1), *((MlflowClient, "set_model_version_tag", n) for n in (1, 4)),
             (registration, "store_baseline", 1)]
    for target, name, calls in steps:
        before = len(versions())
        with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
            m.setattr(target, name, after(target, name, calls))
            retrain(str(db), quick, tmp_path / "models", progress=False)
        now = versions()
        assert all(COMPLETE in v.tags for v in now), (name, calls, [v.tags for v in now])
        assert len(now) - before == (1 if (name, calls) in (("set_model_version_tag", 4), ("store_baseline", 1))
                                     else 0), (name, calls)

    # a version an older release left without metrics: promote refuses it, --best passes over it, doctor names it
    cut = retrain(str(db), quick, tmp_path / "models", progress=False).version
    client.delete_model_version_tag(settings.model_name, str(cut), COMPLETE)
    assert [v["version"] for v in registry.list_models(str(db), settings) if math.isnan(v["macro_f1"])] == [cut]
    with pytest.raises(RegistryError, match=f"version {cut} has no test metrics"):
        promote(str(db), settings, cut, models_dir=tmp_path / "models")
    assert promote(str(db), settings, best=True, models_dir=tmp_path / "models") != cut
    doctor = run_cli("doctor", db, check=False)
    assert doctor.returncode == 1 and f"v{cut} of {settings.model_name!r} never finished registering" in doctor.stdout
    assert good.version != cut


def test_impossible_arguments_are_one_line_and_change_nothing(tmp_path, settings, store):
    from mlflow import MlflowClient

    from sales_sql.registry import retrain

    db = make_db(tmp_path, settings, lines=8_000, days=100)
    retrain(str(db), dataclasses.replace(settings, **QUICK), tmp_path / "models", progress=False)
    client = MlflowClient(store)

    def state():
        with connect(db, read_only=True, settings=settings) as con:
            tables = [con.execute(f"SELECT count(*) FROM {t}").fetchall() for t in
                      ("deployed_models", "drift_baseline", "invoices", "sales_sql_meta")]
        close(db)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        return tables, sorted((r.info.run_id, r.info.status) for r in runs), \
            [v.version for v in client.search_model_versions(f"name='{settings.model_name}'")]

    before = state()
    for args, says in ((("promote", db, 99), "version 99 of 'sales_sql_class' does not exist; existing: 1"),
                       (("promote", db, 0), "0 is not in the range x>=1"),
                       (("retrain", db, "--rounds", 0), "'--rounds': 0 is not in the range x>=1"),
                       (("retrain", db, "--rounds", -3), "is not in the range"),
                       (("retrain", db, "--engine", "spark", "--num-workers", 0), "'--num-workers'")):
        proc = run_cli(*args, check=False)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and says in proc.stderr, (args, proc.stderr)
        assert state() == before, args


def test_failure_between_alias_and_database_keeps_old_production(tmp_path, settings, store, monkeypatch):
    from mlflow import MlflowClient

    from sales_sql import registry

    db = make_db(tmp_path, settings)
    quick = dataclasses.replace(settings, **QUICK)
    first = registry.retrain(str(db), quick, tmp_path / "models", progress=False)
    second = registry.retrain(str(db), quick, tmp_path / "models", progress=False)
    registry.promote(str(db), quick, first.version, models_dir=tmp_path / "models")
    con = connect(db, settings=settings)  # an analyst's open connection, kept through the promotes below
    answered = "SELECT predict_sales(DATE '2024-05-01', '1', '10001').model_version"
    assert con.execute(answered).fetchall() == [(first.version,)]

    def crash(*args, **kwargs):
        raise OSError("disk unplugged")

    with monkeypatch.context() as m:
        m.setattr("sales_sql.deploy.write_row", crash)
        with pytest.raises(OSError, match="disk unplugged"):
            registry.promote(str(db), quick, second.version, force=True, models_dir=tmp_path / "models")
    alias = MlflowClient(store).get_model_version_by_alias(settings.model_name, "production")
    assert int(alias.version) == first.version
    assert con.execute("SELECT version, status FROM deployed_models").fetchall() == [(first.version, "active")]
    assert con.execute(answered).fetchall() == [(first.version,)]
    # a promote through the Python API reaches the open connection's next query, without registering again
    registry.promote(str(db), quick, second.version, force=True, models_dir=tmp_path / "models")
    assert con.execute(answered).fetchall() == [(second.version,)]
    close(db)


def test_retrain_refuses_data_that_cannot_train_and_registers_nothing(tmp_path, settings, store):
    from mlflow import MlflowClient

    db = make_db(tmp_path, settings, lines=3000, days=60)
    early = run_here("retrain", db, "--cutoff", "2020-01-01", check=False)
    assert early.returncode == 2 and "no usable lines before the cut-off 2020-01-01" in early.stderr
    late = run_here("retrain", db, "--cutoff", "2030-01-01", check=False)
    assert late.returncode == 2 and "no usable lines on or after the cut-off" in late.stderr
    con = connect(db, settings=settings)
    # a price the loader would reject, written by hand: named, instead of XGBoost's stack trace
    line = con.execute("UPDATE invoices SET unit_price = '-inf' WHERE line_id = (SELECT max(line_id) "
                       "FROM usable_lines) RETURNING line_id").fetchall()[0][0]
    close(db)
    infinite = run_here("retrain", db, check=False)
    assert infinite.returncode == 2
    assert (f"training_set has 1 line(s) with an infinite price_vs_branch_item, price_vs_customer, price_vs_item, "
            f"unit_price, e.g. "
            f"line_id {line} (unit_price -inf)") in infinite.stderr
    con = connect(db, settings=settings)
    con.execute("UPDATE invoices SET quantity_sold = 1 WHERE quantity_sold > 0")
    close(db)
    one_class = run_here("retrain", db, check=False)
    assert one_class.returncode == 2 and "only class ['LOW']" in one_class.stderr
    assert "Traceback" not in early.stderr + late.stderr + infinite.stderr + one_class.stderr
    assert MlflowClient(store).search_registered_models() == []


@pytest.mark.slow  # a fault test
def test_killed_retrain_resumes_from_its_last_checkpoint(tmp_path, settings, store):
    """SIGKILL once a checkpoint exists; --resume continues from the latest checkpoint's iteration."""
    import xgboost as xgb

    db = make_db(tmp_path, settings, lines=50_000, days=365)
    # depth 6: the 80 rounds in seconds, still a second apart from the first checkpoint to the last
    cfg = config_file(tmp_path, settings, num_boost_round=80, early_stopping_rounds=0, checkpoint_every=20,
                      max_depth=6)
    env = {**os.environ, "SALES_SQL_CONFIG": str(cfg)}
    models = tmp_path / "models"
    # killed while it starts and reads the data: nothing registered, nothing written to the file
    early = subprocess.Popen([SALES_SQL, "retrain", str(db), "--models-dir", str(models)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2.0)
    early.send_signal(signal.SIGKILL)
    early.wait()
    from mlflow import MlflowClient

    assert MlflowClient(store).search_model_versions(f"name='{settings.model_name}'") == []
    con = connect(db, read_only=True, settings=settings)
    assert con.execute("SELECT count(*) FROM drift_baseline").fetchall() == [(0,)]
    close(db)
    proc = subprocess.Popen([SALES_SQL, "retrain", str(db), "--models-dir", str(models)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list(models.glob("checkpoints/*/iter_*.ubj")):
        assert proc.poll() is None, "retrain ended before its first checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = sorted(models.glob("checkpoints/*/iter_*.ubj"))
    assert saved, "no checkpoint was written"
    at = int(saved[-1].stem.split("_")[1])
    assert 20 <= at < 80
    checkpoint = xgb.Booster(model_file=str(saved[-1]))

    out = subprocess.run([SALES_SQL, "retrain", str(db), "--resume", "--models-dir", str(models)], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"resumed from iteration {at}" in out.stdout
    final = xgb.Booster(model_file=str(sorted(models.glob("checkpoints/*/iter_*.ubj"))[-1]))
    assert final.num_boosted_rounds() == 80
    # the resumed model starts with exactly the trees of the checkpoint
    assert final[:at].get_dump() == checkpoint.get_dump()


def test_promote_and_models_do_not_create_a_missing_store(tmp_path, settings, monkeypatch):
    """A mistyped MLFLOW_TRACKING_URI gets an error naming the path, not a new empty store."""
    from click.testing import CliRunner

    from sales_sql.cli import main

    db = make_db(tmp_path, settings, lines=2_000, days=30)
    missing = tmp_path / "mlfow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{missing}")
    # the CLI in this process (a subprocess would spend about 10 s importing MLflow)
    refused = CliRunner().invoke(main, ["promote", str(db)])
    assert refused.exit_code == 2 and f"there is no MLflow store at {missing}" in refused.stderr, refused.output
    assert "no versions registered yet" in CliRunner().invoke(main, ["models", str(db)]).stdout
    assert not missing.exists()
