"""Faults: `sales-sql load` and `promote` killed with SIGKILL at several moments leave the file holding the old
or the new state (never a mix), and running the command again finishes the job. (retrain: test_lifecycle.)"""
import dataclasses
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import SALES_SQL, run_cli, run_here
from test_lifecycle import QUICK, make_db

import sales_sql
from sales_sql.demo import generate, write

pytestmark = pytest.mark.slow
KILL_AT = (0.2, 0.55, 0.9)  # fractions of the command's uninterrupted run time (import, open, read, write)


def state(db):
    """What a user would check: counts of every table a load or promote writes, and history's consistency."""
    con = sales_sql.connect(db)
    counts = con.execute("""SELECT (SELECT count(*) FROM invoices), (SELECT count(*) FROM load_log),
                                   (SELECT count(*) FROM history),
                                   (SELECT list(version ORDER BY deployment_id) FROM deployed_models
                                    WHERE status = 'active'),
                                   (SELECT count(*) FROM drift_baseline)""").fetchall()[0]
    # history must be the one the invoices give (rebuilt in the same transaction as the lines)
    rebuilt = con.execute("""SELECT count(*) FROM (SELECT DISTINCT kind, key, sale_day FROM history)""").fetchall()[0][0]
    sales_sql.close(db)
    assert rebuilt == counts[2]
    return counts


def killed(args, after, env=None):
    proc = subprocess.Popen([SALES_SQL, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env)
    time.sleep(after)
    proc.send_signal(signal.SIGKILL)
    return proc.wait()


def test_a_killed_load_leaves_old_or_new_and_runs_again(tmp_path, settings):
    base = make_db(tmp_path, settings, lines=20_000, days=100)
    more = write(generate(lines=120_000, days=400, seed=3), tmp_path / "more.parquet")
    old = state(base)
    full = tmp_path / "full.duckdb"
    shutil.copy(base, full)
    t = time.perf_counter()
    run_cli("load", full, more)
    whole = time.perf_counter() - t
    new = state(full)
    assert new[0] > old[0]
    seen = []
    for after in (f * whole for f in KILL_AT):
        db = tmp_path / f"k{after}.duckdb"
        shutil.copy(base, db)
        killed(["load", db, more], after)
        now = state(db)
        assert now in (old, new), (after, now)
        seen.append("old" if now == old else "new")
        run_cli("load", db, more)
        again = state(db)  # load_log gains a row for the re-run (all duplicates when the killed load committed)
        assert again[0] == new[0] and again[2:] == new[2:] and again[1] == new[1] + (now == new)
    print(f"load ({whole:.1f} s uninterrupted) killed at", [f"{f * whole:.1f} s" for f in KILL_AT], "->", seen)


def test_a_killed_promote_leaves_one_production_model_and_runs_again(tmp_path, settings, store):  # noqa: F811
    from sales_sql.registry import promote, retrain

    db = make_db(tmp_path, settings)
    quick = dataclasses.replace(settings, **QUICK)
    first = retrain(str(db), quick, tmp_path / "models", progress=False)
    second = retrain(str(db), quick, tmp_path / "models", progress=False)
    promote(str(db), quick, first.version, models_dir=tmp_path / "models")
    sales_sql.close(db)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    t = time.perf_counter()
    run_cli("models", db)  # about what promote takes to start (MLflow import and store)
    start = time.perf_counter() - t
    for after in (0.8 * start, 1.3 * start):
        copy = tmp_path / f"p{after}.duckdb"
        shutil.copy(db, copy)
        killed(["promote", copy, second.version, "--force", "--models-dir", tmp_path / "models"], after, env)
        active = state(copy)[3]
        assert active in ([first.version], [second.version]), (after, active)
        run_here("promote", copy, second.version, "--force", "--models-dir", tmp_path / "models")  # runs again
        assert state(copy)[3] == [second.version]


def test_a_damaged_bundle_or_missing_store_gets_a_clear_message_and_production_stays(tmp_path, settings, store,  # noqa: F811
                                                                                      monkeypatch):
    from sales_sql.registry import promote, retrain

    db = make_db(tmp_path, settings, lines=8000, days=80)
    quick = dataclasses.replace(settings, **QUICK)
    first = retrain(str(db), quick, tmp_path / "models", progress=False)
    promote(str(db), quick, first.version, models_dir=tmp_path / "models")
    before = state(db)
    # models/ cannot be written (here: the path is a file; root ignores read-only permissions)
    blocked = tmp_path / "blocked"
    blocked.write_text("not a folder")
    # (the commands in this process, as test_failures' fault matrix runs them; test_cli.py runs them as processes)
    out = run_here("promote", db, first.version, "--models-dir", blocked / "models", check=False)
    assert out.returncode == 2 and "cannot write the model bundle" in out.stderr and "unchanged" in out.stderr
    assert state(db) == before
    # the MLflow store is gone (moved away): promote must say so and leave the file as it was
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'nowhere' / 'mlflow.db'}")
    out = run_here("promote", db, first.version, "--models-dir", tmp_path / "models", check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert state(db) == before
    # the store cannot be reached at all: every lifecycle command says which store failed, in one line
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    for args in (["models", db], ["promote", db, "--models-dir", tmp_path / "models"]):
        out = run_here(*args, check=False)
        assert out.returncode == 2 and "the MLflow store at http://127.0.0.1:9 failed" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
    assert state(db) == before
    # the deployed bundle in the file is damaged: predictions fall back and say why, nothing fails
    for damage in ("booster[1:50]", "'\\x00\\xff garbage'::BLOB"):
        con = sales_sql.connect(db)
        con.execute(f"UPDATE deployed_models SET booster = {damage}")
        sales_sql.close(db)
        out = run_cli("query", db, "SELECT predict_sales(DATE '2024-03-01', '1', '10001').source AS s")
        assert "fallback:bundle_unreadable" in out.stdout and "promote" in out.stderr
