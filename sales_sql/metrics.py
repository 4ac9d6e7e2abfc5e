"""The quality figures of a model's answers (accuracy, macro-F1, per-class precision, recall and F1, log loss),
from numpy alone: training and the gate grade with them, and the commands that only grade or list (promote,
models, rollback, doctor) do not import XGBoost (and scikit-learn, which XGBoost imports: seconds) for them."""
from __future__ import annotations

import numpy as np

from .definition import CLASSES

WEIGHTS = "decision_weights"  # the key of a model's spec that holds them (a version without: argmax)
# the decision weights a retrain chooses among (MEDIUM's and HIGH's; LOW's is 1): eighth-octave steps from 1/4 to 4
STEPS = 2.0 ** (np.arange(-16, 17) / 8)


def decide(proba: np.ndarray, weights=None) -> np.ndarray:
    """Each line's class: the highest probability, each class's multiplied by its decision weight first (None: all 1,
    XGBoost's argmax); ties go to the lower class. Every answer's class and every grade of one comes from here."""
    return proba.argmax(axis=1) if weights is None else (proba * np.asarray(weights, proba.dtype)).argmax(axis=1)


def candidates(decision: str = "macro_f1") -> np.ndarray:
    """The decision weights a retrain tries, (n, 3), under the `training.decision` setting: "macro_f1", every pair of
    STEPS, the nearest to all ones first (so that a tie keeps the smallest change to XGBoost's argmax); "argmax": all
    ones alone."""
    if decision == "argmax":
        return np.ones((1, len(CLASSES)))
    medium, high = np.meshgrid(STEPS, STEPS, indexing="ij")
    weights = np.column_stack([np.ones(medium.size), medium.ravel(), high.ravel()])
    return weights[np.argsort(np.abs(np.log(weights)).sum(axis=1), kind="stable")]


def confusions(y_true: np.ndarray, proba: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The confusion matrix (k x k) of the probabilities' classes under each row of `weights`: (len(weights), k, k).
    Sums of batches' are the whole slice's (Spark adds them up on its executors)."""
    k = proba.shape[1]
    out = np.empty((len(weights), k * k), np.int64)
    for i, w in enumerate(weights):
        out[i] = np.bincount(y_true * k + decide(proba, w), minlength=k * k)
    return out.reshape(-1, k, k)


def best(cms: np.ndarray) -> int:
    """Which of the confusion matrices (confusions()'s) has the highest macro-F1 (the first of equals)."""
    return int(np.argmax(scores(cms)[2].mean(axis=-1)))


def decision_weights(y_true: np.ndarray, proba: np.ndarray, decision: str = "macro_f1") -> list[float]:
    """The decision weights (LOW's 1, MEDIUM's, HIGH's) of candidates(decision) that give the highest macro-F1 on
    these lines: a retrain chooses them on its early-stopping slice, never on the test slice."""
    tried = candidates(decision)
    return tried[best(confusions(y_true, proba, tried))].tolist()


def evaluate(y_true: np.ndarray, proba_or_pred: np.ndarray, weights=None) -> dict:
    """accuracy, macro-F1, per-class precision/recall/F1, log loss (when probabilities are given: their classes are
    decide()'s under `weights`)."""
    pred = decide(proba_or_pred, weights) if proba_or_pred.ndim == 2 else proba_or_pred
    k = len(CLASSES)
    cm = np.bincount(y_true * k + pred, minlength=k * k).reshape(k, k)
    log_loss = None
    if proba_or_pred.ndim == 2:
        log_loss = float(-np.log(np.clip(proba_or_pred[np.arange(len(y_true)), y_true], 1e-15, 1.0)).mean())
    return confusion_metrics(cm, log_loss)


def scores(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 of confusion matrices (rows: the true class, columns: the predicted one;
    any leading axes: many matrices at once, as the gate's bootstrap gives)."""
    cm = np.asarray(cm, np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    predicted, actual = cm.sum(-2), cm.sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return precision, recall, f1


def confusion_metrics(cm: np.ndarray, log_loss: float | None = None) -> dict:
    """evaluate()'s metrics from a confusion matrix (rows: the true class, columns: the predicted one)."""
    cm = np.asarray(cm)
    precision, recall, f1 = scores(cm)
    out = {"accuracy": float(np.trace(cm) / max(cm.sum(), 1)), "macro_f1": float(f1.mean())}
    for i, c in enumerate(CLASSES):
        out |= {f"precision_{c}": float(precision[i]), f"recall_{c}": float(recall[i]), f"f1_{c}": float(f1[i])}
    if log_loss is not None:
        out["log_loss"] = log_loss
    out["confusion"] = cm.tolist()
    return out
