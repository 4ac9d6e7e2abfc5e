"""The quality figures of a model's answers (accuracy, macro-F1, per-class precision, recall and F1, log loss),
from numpy alone: training and the gate grade with them, and the commands that only grade or list (promote,
models, rollback, doctor) do not import XGBoost (and scikit-learn, which XGBoost imports: seconds) for them."""
from __future__ import annotations

import numpy as np

from .definition import CLASSES


def evaluate(y_true: np.ndarray, proba_or_pred: np.ndarray) -> dict:
    """accuracy, macro-F1, per-class precision/recall/F1, log loss (when probabilities are given)."""
    pred = proba_or_pred.argmax(axis=1) if proba_or_pred.ndim == 2 else proba_or_pred
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
