"""Drift checks: recent invoices against the production model's training baseline (sql/drift.sql), results
appended to drift_report, and a plot of what drifted. The statistics are drift.py's, through the ks_drift /
chi2_drift SQL functions. Nothing here imports MLflow.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .config import Settings
from .duck import deployed_row, first_row, is_read_only, quote_literal, sql_text, transaction
from .inputs import NAMES

TOP_CATEGORIES = 20
COLUMNS = ("feature", "test", "statistic", "p_value", "p_adjusted", "effect_size", "threshold", "is_drift",
           "n_window", "n_baseline")


class DriftError(ValueError):
    """A drift check could not run (no production model, no baseline, an empty window); nothing was saved."""


def store_baseline(con, settings: Settings, version: int, table: pa.Table) -> None:
    """Replace the baseline of one model version (inside the caller's transaction, if any)."""
    con.register("_baseline", table)
    try:
        con.execute("DELETE FROM drift_baseline WHERE model_name = ? AND version = ?", [settings.model_name, version])
        con.execute("""INSERT INTO drift_baseline SELECT ?, ?, quantity_sold, unit_price, branch_id, item_code,
                       day_of_week, day_of_month, month, predicted FROM _baseline""", [settings.model_name, version])
    finally:
        con.unregister("_baseline")


@dataclass
class DriftReport:
    run_id: int | None
    window_start: dt.date | None
    window_end: dt.date | None
    model_version: int
    rows: list[dict] = field(default_factory=list)

    @property
    def drifted(self) -> list[dict]:
        return [r for r in self.rows if r["is_drift"]]


def drift_values(settings: Settings, version: int, metrics: dict) -> dict:
    """What sql/drift.sql is filled in with (on either engine): the model and version whose baseline the window is
    compared with, its test-slice metrics (NULL when unknown), the thresholds and the family-wise level."""
    return {"model_name": quote_literal(settings.model_name), "version": int(version),
            **{k: float(metrics[k]) if k in metrics else "NULL" for k in ("accuracy", "macro_f1")},
            "top": TOP_CATEGORIES, "ks_threshold": float(settings.ks_effect_threshold),
            "chi2_threshold": float(settings.chi2_effect_threshold), "alpha": float(settings.drift_alpha),
            "performance_drop": float(settings.performance_drop)}


def check(con, settings: Settings, *, window_days: int | None = None, end: dt.date | None = None,
          window_sql: str | None = None, save: bool = True) -> DriftReport:
    """Run sql/drift.sql on a window of usable lines (the `window_days` days up to `end`, default: up to the
    latest sale) or on the lines of `window_sql`, against the production model's baseline; append the rows
    to drift_report unless `save` is False or the connection is read-only."""
    row = deployed_row(con, settings.model_name)
    if row is None:
        raise DriftError(f"no production model {settings.model_name!r} is deployed in this database; drift is "
                         "measured against the production model's training baseline: run `sales-sql promote`")
    version = row[0]
    n_base = first_row(con, "SELECT count(*) FROM drift_baseline WHERE model_name = ? AND version = ?",
                       [settings.model_name, version])[0]
    if not n_base:
        raise DriftError(f"no training baseline is stored for {settings.model_name} version {version}; retrain "
                         "(each retrain stores one) and promote the new version")
    start = None
    if window_sql is None:
        days = window_days or settings.drift_window_days
        if end is None:
            end = first_row(con, "SELECT max(sale_day) FROM usable_lines")[0]
            if end is None:
                raise DriftError("the database has no usable invoice lines to check")
        start = end - dt.timedelta(days=days - 1)
        window_sql = (f"SELECT * FROM usable_lines WHERE sale_day BETWEEN DATE '{start.isoformat()}' "
                      f"AND DATE '{end.isoformat()}'")
    con.execute(f"CREATE OR REPLACE TEMP VIEW drift_window AS SELECT *, predict_sales_class({', '.join(NAMES)}) "
                f"AS predicted FROM ({window_sql})")
    if not first_row(con, "SELECT count(*) FROM drift_window")[0]:
        raise DriftError(f"the window {start} .. {end} holds no usable invoice lines; choose another --end or a "
                         "longer --window")
    validation = json.loads(first_row(con, """SELECT metrics FROM deployed_models WHERE model_name = ? AND version = ?
                                             ORDER BY deployment_id DESC LIMIT 1""",
                                      [settings.model_name, version])[0])
    sql = sql_text("drift", settings, **drift_values(settings, version, validation))
    rows = [dict(zip(COLUMNS, r)) for r in con.execute(sql).fetchall()]
    report = DriftReport(None, start, end, version, rows)
    if save:
        save_report(con, settings, report)
    return report


def save_report(con, settings: Settings, report: DriftReport) -> None:
    """Append a check's rows to drift_report as one run (nothing on a read-only connection)."""
    if is_read_only(con):
        return
    run_id = first_row(con, "SELECT nextval('drift_run_seq')")[0]
    with transaction(con):
        con.executemany(
            "INSERT INTO drift_report VALUES (?, current_localtimestamp(), ?, ?, ?, ?, " +
            ", ".join("?" * len(COLUMNS)) + ")",
            [[run_id, report.window_start, report.window_end, settings.model_name, report.model_version,
              *[r[c] for c in COLUMNS]] for r in report.rows])
    report.run_id = run_id


def plot(con, settings: Settings, report: DriftReport, path) -> int:
    """Per drifted ks / chi2 feature, baseline and window distributions side by side (PNG). Uses the window
    of the check just run on `con`. Returns the number of panels."""
    import matplotlib  # seconds: only when a plot is asked for

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drifted = [r for r in report.drifted if r["test"] in ("ks", "chi2")]
    if not drifted:
        return 0
    column = {"predicted_class": "predicted"}
    fig, axes = plt.subplots(len(drifted), 1, figsize=(8, 3 * len(drifted)), squeeze=False)
    for ax, r in zip(axes[:, 0], drifted):
        col = column.get(r["feature"], r["feature"])
        window = con.sql(f"SELECT {col} FROM drift_current_rows WHERE {col} IS NOT NULL").to_arrow_table()[0]
        base = con.sql(f"SELECT {col} FROM drift_baseline WHERE model_name = ? AND version = ? AND {col} IS NOT NULL",
                       params=[settings.model_name, report.model_version]).to_arrow_table()[0]
        if r["test"] == "ks":
            w, b = window.to_numpy().astype(float), base.to_numpy().astype(float)
            hi = np.quantile(np.r_[w, b], 0.99)
            bins = np.linspace(min(w.min(), b.min()), hi if hi > min(w.min(), b.min()) else hi + 1, 40)
            ax.hist(b, bins=bins, density=True, alpha=0.5, label="baseline (training)")
            ax.hist(w, bins=bins, density=True, alpha=0.5, label="window")
        else:
            wc, bc = pc.value_counts(pc.cast(window, pa.string())), pc.value_counts(pc.cast(base, pa.string()))
            shares_w = {d["values"]: d["counts"] / len(window) for d in wc.to_pylist()}
            shares_b = {d["values"]: d["counts"] / len(base) for d in bc.to_pylist()}
            cats = sorted(set(shares_w) | set(shares_b), key=lambda c: -(shares_b.get(c, 0) + shares_w.get(c, 0)))[:15]
            x = np.arange(len(cats))
            ax.bar(x - 0.2, [shares_b.get(c, 0) for c in cats], 0.4, label="baseline (training)")
            ax.bar(x + 0.2, [shares_w.get(c, 0) for c in cats], 0.4, label="window")
            ax.set_xticks(x, cats, rotation=45, ha="right", fontsize=7)
        ax.set_title(f"{r['feature']} ({r['test']}): effect {r['effect_size']:.3f} > {r['threshold']}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = Path(f"{path}.tmp.png")  # whole or not at all
    try:
        fig.savefig(tmp, dpi=90)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return len(drifted)
