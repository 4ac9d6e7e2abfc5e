"""trees.py: the compiled trees give XGBoost's inplace_predict answers bit for bit, or are not used."""
import logging

import numpy as np
import pytest
import xgboost as xgb
from hypothesis import given, settings as hsettings, strategies as st

from sales_sql.trees import Trees

WIDTH = 6


def booster(depth, rounds=12, classes=3, seed=0, **params):
    """A quick booster on random rows with missing values, so that splits send missing values both ways."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(3000, WIDTH)).astype(np.float32)
    X[rng.random(X.shape) < 0.15] = np.nan
    y = (np.nan_to_num(X[:, 0]) > 0) + (np.nan_to_num(X[:, 1]) > 0.5) + np.isnan(X[:, 2])
    params = {"objective": "multi:softprob", "num_class": classes, "max_depth": depth, "seed": seed} | params
    return xgb.train(params, xgb.DMatrix(X, np.minimum(y, classes - 1)), rounds)


BOOSTERS = {"depth 1": booster(1), "depth 8": booster(8, 30), "4 classes": booster(5, classes=4),
            "lossguide": booster(0, 8, grow_policy="lossguide", max_leaves=40, tree_method="hist"),
            "base score": booster(3, base_score=0.3), "leaves only": booster(3, 4, gamma=1e9)}
TREES = {name: Trees(b) for name, b in BOOSTERS.items()}


def test_every_test_model_passes_the_check_on_load():
    assert all(Trees.of(b) is not None for b in BOOSTERS.values())


@hsettings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(BOOSTERS)), rows=st.integers(1, 300), seed=st.integers(0, 2**32 - 1),
       threads=st.sampled_from([1, 2, 3]))
def test_probabilities_are_xgboosts_bit_for_bit(name, rows, seed, threads):
    """Rows of split values, values just below them, missing values, infinities, zeros of both signs and
    ordinary numbers: every edge a split has."""
    b, trees = BOOSTERS[name], TREES[name]
    rng = np.random.default_rng(seed)
    edges = np.concatenate([trees.probe_rows(WIDTH, 50).ravel(), [np.nan, np.inf, -np.inf, 0.0, -0.0],
                            rng.normal(size=50)]).astype(np.float32)
    X = rng.choice(edges, (rows, WIDTH))
    got = trees.proba(X, threads)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, b.inplace_predict(X))


def test_a_model_it_cannot_reproduce_keeps_xgboosts_predictor(caplog):
    X = np.random.default_rng(1).normal(size=(200, 3)).astype(np.float32)
    binary = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(X, X[:, 0] > 0), 3)
    linear = xgb.train({"objective": "multi:softprob", "num_class": 3, "booster": "gblinear"},
                       xgb.DMatrix(X, np.arange(200) % 3), 3)
    cats = xgb.DMatrix(np.c_[X[:, :2], np.arange(200) % 4], np.arange(200) % 3, enable_categorical=True,
                       feature_types=["q", "q", "c"])
    categorical = xgb.train({"objective": "multi:softprob", "num_class": 3, "tree_method": "hist",
                             "max_cat_to_onehot": 1}, cats, 3)
    with caplog.at_level(logging.INFO, "sales_sql"):
        assert Trees.of(binary) is None and Trees.of(linear) is None and Trees.of(categorical) is None
    assert "binary:logistic" in caplog.text and "gblinear" in caplog.text and "categorical" in caplog.text


def test_trees_that_disagree_with_xgboost_on_the_probe_rows_are_not_used(monkeypatch, caplog):
    b = BOOSTERS["depth 8"]
    monkeypatch.setattr(Trees, "proba", lambda self, X, threads=1: np.full((len(X), 3), 1 / 3, np.float32))
    with caplog.at_level(logging.WARNING, "sales_sql"):
        assert Trees.of(b) is None
    assert "disagree" in caplog.text


@pytest.mark.parametrize("damage", ["split", "missing_right", "leaf", "base"])
def test_the_probe_rows_catch_a_wrong_node(damage):
    """The check Trees.of makes is sharp enough to see one wrong field of one node."""
    b = BOOSTERS["depth 8"]
    trees = Trees(b)
    inner = np.flatnonzero(~np.isnan(trees.nodes["split"]))
    if damage == "split":
        trees.nodes["split"][inner[0]] = np.nextafter(trees.nodes["split"][inner[0]], np.float32(np.inf))
    elif damage == "missing_right":
        trees.nodes["missing_right"][inner[0]] ^= 1
    elif damage == "leaf":
        trees.leaf[np.flatnonzero(np.isnan(trees.nodes["split"]))[0]] += 1e-3
    else:
        trees.base[0] = np.nextafter(trees.base[0], np.float32(1))
    probe = trees.probe_rows(b.num_features())
    assert not np.array_equal(trees.proba(probe), b.inplace_predict(probe))
