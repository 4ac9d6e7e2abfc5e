"""The quality-cost frontier of the model's settings on UCI's three slices (or the demo data's, with --demo).

Every setting trains on the train slice and stops early on the early-stopping slice, exactly as `sales-sql retrain`
does (class weights, and the decision weights chosen on the early-stopping slice; checkpoints aside). The pick is
made on the early-stopping slices alone: the cheapest setting (the fewest node visits per line, the cost of every
prediction) that the compiled trees serve and whose early-stopping macro-F1 is within 0.003 of the best setting's
there, and with --also within 0.003 of the best on the other data's too. The test slice is read once per setting,
after training, and only reported.

For each setting: rounds, trees, node visits per line (the levels the compiled trees walk for one line), train
seconds (both cores), predictions per second on one core (the compiled trees over 100,000 test lines; XGBoost's own
predictor where the compiled trees cannot serve the model), and the macro-F1 on both slices and the test accuracy.

    python bench/frontier.py                 # UCI (bench/.cache/uci.duckdb), about an hour on 2 cores
    python bench/frontier.py --demo          # the demo data, the same grid
    python bench/frontier.py --plot docs/frontier.png
    python bench/frontier.py --json uci.json; python bench/frontier.py --demo --json demo.json
    python bench/frontier.py --rows uci.json --also demo.json --plot docs/frontier.png   # the pick, from both
"""
import argparse
import dataclasses
import json
import os
import time

import numpy as np
import xgboost as xgb
from uci import CUTOFF, uci_database

from sales_sql import scratch
from sales_sql.config import load_settings
from sales_sql.db import opened
from sales_sql.metrics import decision_weights, evaluate
from sales_sql.training import batches, load_dataset, slice_of, xgb_params
from sales_sql.trees import Trees, depths

# (name, settings overrides, extra XGBoost parameters); the first row is the setting shipped before this bench
GRID = [
    ("d10 lr.05 (until 2026-12-06)", dict(max_depth=10, learning_rate=0.05), {}),
    ("d12 lr.1", dict(max_depth=12, learning_rate=0.1), {}),
    ("d10 lr.075", dict(max_depth=10, learning_rate=0.075), {}),
    ("d10 lr.1", dict(max_depth=10, learning_rate=0.1), {}),
    ("d8 lr.1", dict(max_depth=8, learning_rate=0.1), {}),
    ("d8 lr.1 mcw20", dict(max_depth=8, learning_rate=0.1, min_child_weight=20.0), {}),
    ("d8 lr.1 col.5", dict(max_depth=8, learning_rate=0.1, colsample_bytree=0.5), {}),
    ("d8 lr.1 bin64", dict(max_depth=8, learning_rate=0.1, max_bin=64), {}),
    ("d6 lr.1", dict(max_depth=6, learning_rate=0.1), {}),
    ("d6 lr.2", dict(max_depth=6, learning_rate=0.2), {}),
    ("d4 lr.2", dict(max_depth=4, learning_rate=0.2), {}),
    ("d6 lr.1 vector leaves", dict(max_depth=6, learning_rate=0.1), {"multi_strategy": "multi_output_tree"}),
]
TOLERANCE = 0.003   # a setting within this of the best early-stopping macro-F1 counts as as good
SPEED_LINES = 100_000


def per_second(booster: xgb.Booster, X: np.ndarray) -> tuple[float, str]:
    """Lines per second on one core: the compiled trees, else XGBoost's predictor."""
    trees = Trees.of(booster)
    if trees is not None:
        trees.proba(X[:1000])  # compiled already; warm the caches
        t = time.perf_counter()
        trees.proba(X, threads=1)
        return len(X) / (time.perf_counter() - t), "compiled"
    booster.set_param({"nthread": 1})
    booster.inplace_predict(X[:1000])
    t = time.perf_counter()
    booster.inplace_predict(X)
    return len(X) / (time.perf_counter() - t), "xgboost"


def run(db, cutoff, only):
    base = load_settings()
    rows, datasets, X = [], {}, None  # datasets: one per max_bin (the matrices' bins); X: test lines to time
    with opened(str(db), settings=base) as con:
        for name, overrides, extra in GRID:
            if only and not any(o in name for o in only):
                continue
            settings = dataclasses.replace(base, **overrides)
            if settings.max_bin not in datasets:  # the bins are the matrices': one dataset per max_bin
                datasets[settings.max_bin] = load_dataset(con, settings, cutoff)
            data = datasets[settings.max_bin]
            if X is None:
                test = f"{slice_of(data.cutoff, data.stop_from)} = 'test'"
                X = next(batches(con, settings, data.spec, test))[1][:SPEED_LINES]
            params = xgb_params(settings) | extra
            t = time.perf_counter()
            try:
                booster = xgb.train(params, data.dtrain, num_boost_round=settings.num_boost_round,
                                    evals=[(data.dstop, "stop")], verbose_eval=False,
                                    callbacks=[xgb.callback.EarlyStopping(rounds=settings.early_stopping_rounds,
                                                                          save_best=False)])
            except xgb.core.XGBoostError as e:
                print(f"{name}: XGBoost refused it: {str(e).splitlines()[0]}", flush=True)
                continue
            seconds = time.perf_counter() - t
            booster = booster[: booster.best_iteration + 1]
            proba = booster.predict(data.dstop)  # the decision weights, chosen there as retrain does
            weights = decision_weights(data.y_stop, proba, settings.decision)
            stop = evaluate(data.y_stop, proba, weights)
            test = evaluate(data.y_test, booster.predict(data.dtest), weights)
            rate, how = per_second(booster, X)
            d = depths(booster)
            rows.append(dict(name=name, rounds=booster.num_boosted_rounds(), trees=len(d), visits=int(d.sum()),
                             seconds=seconds, per_second=rate, predictor=how, stop_f1=stop["macro_f1"],
                             test_f1=test["macro_f1"], test_accuracy=test["accuracy"]))
            print(line(rows[-1]), flush=True)
    for data in datasets.values():
        data.close()
    return rows


def line(r, mark=""):
    return (f"| {r['name']}{mark} | {r['rounds']} | {r['trees']:,} | {r['visits']:,} | {r['seconds']:.0f} | "
            f"{r['per_second']:,.0f} ({r['predictor']}) | {r['stop_f1']:.4f} | {r['test_f1']:.4f} | "
            f"{r['test_accuracy']:.4f} |")


def within(rows) -> set[str]:
    """The settings within TOLERANCE of the best early-stopping macro-F1 of these rows."""
    best = max(r["stop_f1"] for r in rows)
    return {r["name"] for r in rows if r["stop_f1"] >= best - TOLERANCE}


def pick(rows, also=None):
    """The cheapest setting (node visits per line) that the compiled trees serve (node visits are their cost; the
    product serves nothing else at that cost) within TOLERANCE of the best early-stopping macro-F1, and within it on
    the other data's early-stopping slice too when its rows are given (`also`: a setting worse there is not shipped)."""
    good = within(rows) if also is None else within(rows) & within(also)
    return min((r for r in rows if r["name"] in good and r["predictor"] == "compiled"),
               key=lambda r: (r["visits"], r["seconds"]))


def plot(rows, chosen, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for key, marker, label in (("stop_f1", "o", "early-stopping slice (chooses)"),
                               ("test_f1", "s", "test slice (reported)")):
        ax.scatter([r["visits"] for r in rows], [r[key] for r in rows], marker=marker, label=label)
    for r in rows:
        ax.annotate(r["name"].split(" (")[0], (r["visits"], r["test_f1"]), fontsize=7, xytext=(3, -9),
                    textcoords="offset points")
    ax.axvline(chosen["visits"], color="grey", linestyle=":", label=f"shipped: {chosen['name']}")
    ax.set_xscale("log")
    ax.set_xlabel("node visits per line (log scale): the cost of every prediction")
    ax.set_ylabel("macro-F1")
    ax.set_title("UCI: quality against cost, one point per setting")
    ax.legend(fontsize=8, loc="center left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def data(demo_data: bool):
    """(database, cut-off) of UCI (bench/.cache), or of the demo data (generated and loaded into a scratch folder)."""
    if not demo_data:
        return uci_database(), CUTOFF
    from sales_sql import demo
    from sales_sql.loader import load_files

    folder = scratch.folder("frontier")
    demo.write(demo.generate(), folder / "invoices.parquet")
    db = folder / "demo.duckdb"
    with opened(str(db)) as con:
        load_files(con, [folder / "invoices.parquet"])
    return db, None


def read(path):
    with open(path) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--demo", action="store_true", help="the demo data instead of UCI")
    ap.add_argument("--only", nargs="*", help="settings whose name contains one of these")
    ap.add_argument("--plot", help="a PNG of the frontier")
    ap.add_argument("--json", help="the rows as JSON")
    ap.add_argument("--rows", help="the rows of an earlier run (its --json) instead of training")
    ap.add_argument("--also", help="the other data's rows (a --json): the pick must be within the tolerance there too")
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    t = time.perf_counter()
    rows = read(args.rows) if args.rows else run(*data(args.demo), args.only)
    chosen = pick(rows, read(args.also) if args.also else None)
    print(f"\n{'demo' if args.demo else 'UCI'} data, {time.perf_counter() - t:.0f} s in all; cheapest within "
          f"{TOLERANCE} of the best early-stopping macro-F1 ({max(r['stop_f1'] for r in rows):.4f}): {chosen['name']}")
    print("| setting | rounds | trees | node visits per line | train s | lines/s, one core | macro-F1 stop | "
          "macro-F1 test | accuracy test |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(line(r, " **(shipped)**" if r is chosen else ""))
    if args.plot:
        plot(rows, chosen, args.plot)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
