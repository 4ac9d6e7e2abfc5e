"""Honest evaluation: three slices by time, every recorded metric from the test slice, and a gate that compares the
candidate with production on the same lines, as SQL serves them under the current settings."""
import dataclasses
import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from conftest import run_here
from test_lifecycle import QUICK, config_file, make_db

import sales_sql
from sales_sql import gate
from sales_sql.metrics import WEIGHTS


def served_on(db, settings, version, cutoff, last_line_id):
    """(truth, predictions) of a registered version on the lines of a test slice, through serving (as SQL answers)."""
    from sales_sql.registry import find_version, mlflow_client, read_version
    from sales_sql.serving import history_index

    raw, spec, _, _ = read_version(settings, find_version(mlflow_client(db), settings, version))
    with sales_sql.db.opened(db, read_only=True, settings=settings) as con:
        index, why = history_index(con, settings.definition)
        dep = gate.candidate(settings, index, why, version, raw, spec)
        assert dep.source == gate.MODEL, dep.reason
        y, (pred,) = gate.predictions(con, settings, [dep], cutoff, last_line_id)
    return y, pred


def test_the_slices_are_disjoint_by_date_and_every_metric_comes_from_the_test_slice(tmp_path, settings, store):
    from mlflow import MlflowClient

    from sales_sql.registry import retrain
    from sales_sql.metrics import evaluate

    db = make_db(tmp_path, settings)
    quick = dataclasses.replace(settings, **{**QUICK, "num_boost_round": 300, "early_stopping_rounds": 10,
                                             "max_depth": 6})
    r = retrain(str(db), quick, tmp_path / "models", progress=False)
    run = MlflowClient(store).get_run(r.run_id)
    p, m = run.data.params, run.data.metrics
    day = dt.date.fromisoformat
    assert day(p["train_through"]) < day(p["stop_from"]) <= day(p["stop_through"]) < day(p["test_from"])
    assert int(p["train_rows"]) + int(p["stop_rows"]) + int(p["test_rows"]) > 0
    version = MlflowClient(store).get_model_version(settings.model_name, str(r.version))
    cutoff, last = day(version.tags["cutoff"]), int(version.tags["trained_through_line_id"])
    assert cutoff == day(p["test_from"])
    # the logged metrics are the test slice's: served on those lines, the version scores exactly them
    y, pred = served_on(db, quick, r.version, cutoff, last)
    assert len(y) == int(p["test_rows"])
    assert evaluate(y, pred)["macro_f1"] == pytest.approx(m["macro_f1"], abs=1e-9)
    assert evaluate(y, pred)["accuracy"] == pytest.approx(m["accuracy"], abs=1e-9)
    # early stopping chose the rounds on its own slice: the best of that slice's curve, not the test slice's
    curve = sorted(MlflowClient(store).get_metric_history(r.run_id, "stop_mlogloss"), key=lambda x: x.step)
    assert int(m["best_iteration"]) == int(np.argmin([x.value for x in curve]))
    assert m["stop_macro_f1"] != m["macro_f1"]  # the slice that chose is graded apart, as stop_*
    # the decision weights were chosen there too, logged, and are what the version answers with (above)
    assert p[WEIGHTS].startswith("LOW 1, MEDIUM ") and ", HIGH " in p[WEIGHTS]


@hsettings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(20, 400))
def test_decision_weights_are_the_candidate_with_the_best_macro_f1_on_the_lines_given(seed, n):
    from sales_sql.metrics import candidates, decide, decision_weights, evaluate

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    proba = rng.dirichlet([1, 1, 1], n).astype(np.float32)
    proba[np.arange(n), y] += rng.random(n).astype(np.float32)  # informative, not perfect
    chosen = decision_weights(y, proba)
    f1 = [evaluate(y, proba, w)["macro_f1"] for w in candidates()]
    assert chosen[0] == 1.0 and evaluate(y, proba, chosen)["macro_f1"] == max(f1)
    assert list(candidates()[f1.index(max(f1))]) == chosen  # the first of equals: nearest to all ones
    assert max(f1) >= evaluate(y, proba)["macro_f1"]  # never worse than the argmax on the lines that chose
    assert (decide(proba) == proba.argmax(1)).all() and (decide(proba, [1.0, 1.0, 1.0]) == proba.argmax(1)).all()


def test_a_production_version_that_cannot_serve_counts_as_absent_and_the_gate_compares_on_the_same_lines(
        tmp_path, settings, store):
    from mlflow import MlflowClient

    from sales_sql.metrics import evaluate

    db = make_db(tmp_path, settings)
    md = ["--models-dir", tmp_path / "models"]
    # v1 trained and promoted under other class thresholds
    other = config_file(tmp_path, settings, **QUICK, low_max=1, medium_max=12)
    run_here("retrain", db, *md, "--config", other)
    run_here("promote", db, *md, "--config", other)
    # back to the shipped thresholds: v1 cannot serve (spec mismatch); the pipeline's gate must not keep it
    quick = config_file(tmp_path, settings, **QUICK)
    (tmp_path / "quick.toml").write_text(quick.read_text())
    out = run_here("pipeline", db, "--force", *md, "--format", "json", "--config", tmp_path / "quick.toml",
                   check=False)
    assert out.returncode in (0, 1), out.stderr  # 1 only for drift
    assert "production version 1 cannot serve under the current settings" in out.stdout, out.stdout
    con = sales_sql.connect(db, read_only=True, settings=settings)
    source, version = con.execute("SELECT p.source, p.model_version FROM (SELECT predict_sales(sale_time, branch_id, "
                                  "item_code) AS p FROM invoices LIMIT 1)").fetchone()
    sales_sql.close(db)
    assert (source, version) == ("model", 2)
    # with unchanged settings, v3 is compared with v2 on v3's test lines; the logged champion score is v2's there
    run_here("retrain", db, *md, "--config", tmp_path / "quick.toml")
    promoted = run_here("promote", db, *md, "--config", tmp_path / "quick.toml", check=False)
    assert promoted.returncode in (0, 1) and "against production version 2" in promoted.stderr, promoted.stderr
    client = MlflowClient(store)
    v3 = client.get_model_version(settings.model_name, "3")
    quick_settings = dataclasses.replace(settings, **QUICK)
    y, pred = served_on(db, quick_settings, 2, dt.date.fromisoformat(v3.tags["cutoff"]),
                        int(v3.tags["trained_through_line_id"]))
    logged = client.get_run(v3.run_id).data.metrics
    assert logged["gate_champion_macro_f1"] == pytest.approx(evaluate(y, pred)["macro_f1"], abs=1e-12)
    assert float(v3.tags["gate_champion_macro_f1"]) == pytest.approx(evaluate(y, pred)["macro_f1"], abs=1e-6)
    assert logged["gate_lines"] == len(y) and logged["gate_candidate_macro_f1"] == pytest.approx(
        float(v3.tags["macro_f1"]), abs=1e-6)


def test_a_candidate_that_cannot_serve_is_refused_unless_forced(tmp_path, settings, store):
    db = make_db(tmp_path, settings, lines=12_000, days=120)
    md = ["--models-dir", tmp_path / "models"]
    other = config_file(tmp_path, settings, **QUICK, low_max=1, medium_max=12)
    run_here("retrain", db, *md, "--config", other)
    refused = run_here("promote", db, *md, check=False)  # the shipped thresholds: v1 cannot serve under them
    assert refused.returncode == 1 and "cannot serve under the current settings" in refused.stderr, refused.stderr
    best = run_here("promote", db, "--best", *md, check=False)
    assert best.returncode == 2 and "can serve under the current settings" in best.stderr, best.stderr
    run_here("promote", db, "1", "--force", *md)


@hsettings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)), min_size=30, max_size=300),
       st.sampled_from([0.8, 0.9, 0.95]))
def test_the_bootstrap_interval_holds_the_difference_and_the_rule_follows_it(lines, confidence):
    y, a, b = (np.array(c) for c in zip(*lines))
    figures = gate.compare(y, a, b, confidence)
    assert figures["low"] <= figures["high"] and figures["lines"] == len(y)
    assert figures["difference"] == pytest.approx(figures["candidate_macro_f1"] - figures["champion_macro_f1"])
    same = gate.compare(y, a, a, confidence)  # a version against itself: no difference, promoted under not_worse
    assert same["low"] == same["high"] == 0 and gate.passes(same, "not_worse") and not gate.passes(same, "better")
    assert gate.passes(figures, "better") <= gate.passes(figures, "not_worse")


def test_a_clearly_worse_or_better_candidate_is_decided_as_before():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 20_000)
    good = np.where(rng.random(len(y)) < 0.8, y, rng.integers(0, 3, len(y)))
    poor = np.where(rng.random(len(y)) < 0.5, y, rng.integers(0, 3, len(y)))
    assert not gate.passes(gate.compare(y, poor, good, 0.95), "not_worse")  # clearly worse: refused, as before
    assert gate.passes(gate.compare(y, good, poor, 0.95), "better")  # clearly better: promoted, under either rule
