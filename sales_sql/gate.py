"""The champion/challenger gate's figures: model versions scored as SQL serves them (serving.py, under the current
settings), on the same lines, and a paired bootstrap interval of their macro-F1 difference. Nothing here imports
MLflow; registry.promote decides with these figures.
"""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import definition, inputs
from .config import Settings
from .definition import CLASSES
from .duck import batches_of
from .serving import MODEL, Given, LoadedModel, Predictor, load
from .metrics import evaluate, scores

BOOTSTRAP_ROUNDS = 4000
BATCH_ROWS = 200_000
LINES = (f"SELECT {', '.join(inputs.NAMES)}, {{label}} AS label FROM usable_lines "
         "WHERE sale_day >= ? AND line_id <= ? ORDER BY line_id")


def candidate(settings: Settings, index, unservable: str, version: int, raw: bytes, spec: dict) -> LoadedModel:
    """A registered version as the prediction functions would serve it from this file's history now; its `source` is
    MODEL when it can serve, else the fallback's cause (and `reason` says why)."""
    return load(settings, index, unservable, version, json.dumps(spec), lambda: raw)


def predictions(con, settings: Settings, candidates: list[LoadedModel], cutoff, last_line_id: int):
    """(true class, [each candidate's predicted class]) of the usable lines from the day `cutoff` up to line
    `last_line_id`, in line order, batch by batch through serving's Predictor (the features and trees of SQL)."""
    label = definition.label_sql("quantity_sold", settings.low_max, settings.medium_max)
    reader = con.cursor()
    answering = [Predictor(Given(model)) for model in candidates]
    truth, predicted = [], [[] for _ in candidates]
    try:
        rows = reader.sql(LINES.format(label=label), params=[cutoff, last_line_id]).to_arrow_reader(BATCH_ROWS)
        for rb in batches_of(rows, BATCH_ROWS):
            truth.append(pc.index_in(rb.column("label"), value_set=pa.array(CLASSES)).to_numpy(zero_copy_only=False))
            for out, predictor in zip(predicted, answering):
                out.append(predictor.predict(*rb.columns[:len(inputs.NAMES)])[0])
    finally:
        reader.close()
    join = lambda parts: np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)  # noqa: E731
    return join(truth), [join(p) for p in predicted]


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:

    return evaluate(y, pred)["macro_f1"]


def compare(y: np.ndarray, candidate: np.ndarray, champion: np.ndarray, confidence: float, seed: int = 0) -> dict:
    """Both versions' macro-F1 on the same lines and the difference (candidate - champion) with its paired bootstrap
    interval at `confidence`. The lines fall into 27 cells (true class, candidate's class, champion's class), which
    is all either macro-F1 depends on, so a bootstrap resample of the lines is a multinomial draw over the cells."""

    k = len(CLASSES)
    cells = np.bincount((y * k + candidate) * k + champion, minlength=k ** 3)
    n = int(cells.sum())
    if n == 0:
        raise ValueError("no lines to compare the versions on")
    draws = np.random.default_rng(seed).multinomial(n, cells / n, size=BOOTSTRAP_ROUNDS).reshape(-1, k, k, k)
    differences = scores(draws.sum(3))[2].mean(-1) - scores(draws.sum(2))[2].mean(-1)
    low, high = np.quantile(differences, [(1 - confidence) / 2, (1 + confidence) / 2])
    cube = cells.reshape(k, k, k)
    ours, theirs = float(scores(cube.sum(2))[2].mean()), float(scores(cube.sum(1))[2].mean())
    return {"candidate_macro_f1": ours, "champion_macro_f1": theirs, "difference": ours - theirs,
            "low": float(low), "high": float(high), "lines": n, "confidence": confidence}


def passes(figures: dict, require: str) -> bool:
    """The gate's rule (the gate.require setting): "not_worse" refuses a candidate worse beyond the interval;
    "better" promotes only one better beyond it."""
    return figures["high"] >= 0 if require == "not_worse" else figures["low"] > 0


__all__ = ["MODEL", "candidate", "compare", "passes", "predictions"]
