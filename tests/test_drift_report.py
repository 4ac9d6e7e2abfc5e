"""sql/drift.sql through `sales-sql drift`: the report, its decisions, exit codes, drift_report and the plot."""
import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
import xgboost as xgb
from conftest import run_cli, run_here
from test_lifecycle import make_db
from test_predict import deploy

import sales_sql
from sales_sql.monitor import store_baseline
from sales_sql.training import baseline_table
from sales_sql.training import choose_stop, load_dataset, xgb_params

DRIFT_AFTER = "2024-06-01"  # make_db's demo data runs from 2024-01-01 for 200 days


@pytest.fixture(scope="module")
def monitored(tmp_path_factory):
    """Demo data drifting from DRIFT_AFTER on; a model trained before 2024-04-15, deployed, with its baseline."""
    settings = sales_sql.load_settings()
    folder = tmp_path_factory.mktemp("drift")
    db = make_db(folder, settings, lines=40_000, days=200, drift_after=DRIFT_AFTER)
    con = sales_sql.connect(db, settings=settings)
    data = load_dataset(con, settings, "2024-04-15")
    booster = xgb.train(xgb_params(settings) | {"max_depth": 4},
                        data.dtrain, 20)
    deploy(con, booster, data.spec, 1)
    con.execute("UPDATE deployed_models SET metrics = ?", [json.dumps({"accuracy": 0.6, "macro_f1": 0.55})])
    store_baseline(con, settings, 1, baseline_table(data, booster))
    data.close()
    sales_sql.close(db)
    return db


@pytest.fixture
def db(monitored, tmp_path):
    path = tmp_path / "d.duckdb"
    shutil.copy(monitored, path)
    return path


def last_day(db):
    con = sales_sql.connect(db, read_only=True)
    day = con.execute("SELECT max(sale_day) FROM usable_lines").fetchall()[0][0]
    sales_sql.close(db)
    return day


def report_rows(db):
    con = sales_sql.connect(db, read_only=True)
    rows = con.sql("SELECT * FROM drift_report ORDER BY run_id, feature").to_arrow_table().to_pylist()
    sales_sql.close(db)
    return rows


def test_a_window_before_the_drift_passes_and_is_saved(db):
    out = run_cli("drift", db, "--end", "2024-05-31", "--window", "30d", check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("no drift")
    rows = report_rows(db)
    assert {r["feature"] for r in rows} == {"quantity_sold", "unit_price", "branch_id", "item_code",
                                            "day_of_week", "predicted_class", "model_accuracy", "model_macro_f1"}
    assert {(str(r["window_start"]), str(r["window_end"]), r["model_version"]) for r in rows} == {
        ("2024-05-02", "2024-05-31", 1)}
    assert not any(r["is_drift"] for r in rows)


def test_a_drifted_window_is_flagged_explained_and_plotted(db, tmp_path):
    png = tmp_path / "drift.png"
    out = run_here("drift", db, "--format", "json", "--plot", png, check=False)
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    drifted = {r["feature"] for r in report["rows"] if r["is_drift"]}
    assert {"quantity_sold", "unit_price"} <= drifted
    assert report["drift"] and report["window_end"] == str(last_day(db))
    assert png.stat().st_size > 10_000
    rows = {r["feature"]: r for r in report["rows"]}
    q = rows["quantity_sold"]
    assert q["test"] == "ks" and q["effect_size"] > q["threshold"] and q["p_adjusted"] < 0.05


def test_holm_adjustment_and_window_accuracy_are_what_they_say(db):
    run_here("drift", db, check=False)
    rows = [r for r in report_rows(db) if r["test"] != "performance"]
    order = sorted(rows, key=lambda r: r["p_value"])
    m, running = len(order), 0.0
    for k, r in enumerate(order):
        running = max(running, min(1.0, (m - k) * r["p_value"]))
        assert r["p_adjusted"] == pytest.approx(running, rel=1e-12, abs=1e-300)
    end = last_day(db)
    con = sales_sql.connect(db, read_only=True)
    acc = con.execute("""SELECT avg(CAST(predict_sales_class(sale_time, branch_id, item_code, unit_price, customer_id)
                                      = label AS INTEGER))
                         FROM training_set WHERE sale_day BETWEEN ?::DATE - 29 AND ?""", [end, end]).fetchall()[0][0]
    sales_sql.close(db)
    perf = {r["feature"]: r for r in report_rows(db) if r["test"] == "performance"}
    assert perf["model_accuracy"]["statistic"] == pytest.approx(acc, abs=1e-12)
    assert perf["model_accuracy"]["effect_size"] == pytest.approx(0.6 - acc, abs=1e-12)


def test_no_save_opens_read_only_and_appends_nothing(db):
    out = run_here("drift", db, "--no-save", check=False)
    assert out.returncode == 1 and "saved as run" not in out.stdout
    assert report_rows(db) == []


@pytest.mark.parametrize("args, message", [
    (["--end", "1999-01-01"], "holds no usable invoice lines"),
    (["--window", "thirty"], "is not a number of days"),
    (["--end", "yesterday"], "yesterday"),
])
def test_a_check_that_cannot_run_exits_2_with_a_clear_message(db, args, message):
    out = run_here("drift", db, *args, check=False)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert report_rows(db) == []


def test_without_a_production_model_or_baseline_the_check_exits_2(db):
    con = sales_sql.connect(db)
    con.execute("DELETE FROM drift_baseline")
    sales_sql.close(db)
    out = run_here("drift", db, check=False)
    assert out.returncode == 2 and "no training baseline is stored" in out.stderr
    con = sales_sql.connect(db)
    con.execute("DELETE FROM deployed_models")
    sales_sql.close(db)
    out = run_here("drift", db, check=False)
    assert out.returncode == 2 and "sales-sql promote" in out.stderr


def test_the_baseline_is_a_seeded_sample_with_the_models_predictions(monitored):
    con = sales_sql.connect(monitored, read_only=True)
    n, classes, last = con.execute("""SELECT count(*), count(DISTINCT predicted), max(month)
                                      FROM drift_baseline WHERE version = 1""").fetchall()[0]
    # the training slice: the lines before the early-stopping slice, which ends at the cut-off
    stop_from = choose_stop(con, sales_sql.load_settings(), dt.date(2024, 4, 15))
    train_rows = con.execute("SELECT count(*) FROM training_set WHERE sale_day < ?", [stop_from]).fetchall()[0][0]
    sales_sql.close(monitored)
    assert n == min(train_rows, 100_000) and classes >= 2 and last <= 4


def test_a_plot_that_cannot_be_written_exits_2_in_one_line_and_saves_no_report(db):
    """The drift was found, but the command failed: 2 (not 1, which a scheduler would skip), nothing saved."""
    before = report_rows(db)
    out = run_here("drift", db, "--plot", "/no/such/dir/x.png", check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "drift failed while writing the plot" in out.stderr
    assert report_rows(db) == before and not list(Path("/no/such/dir").parent.glob("x.png*"))
