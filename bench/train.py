"""`sales-sql retrain` end to end vs a plain xgboost.train on the same prepared matrix, in one run.

The first time is the whole command as a user runs it (process start, reading training_set through Arrow,
the split, checkpoints, progress, evaluation, baselines, plots and MLflow logging and registration). The
second is xgboost.train alone, with the same parameters, weights, validation set and early stopping, on the
binned matrices the command builds (their construction, from the batches of lines, not included: the plain side
is XGBoost's boosting alone). Target: ratio <= 1.3.

Each side runs in a process of its own, as a user's would (`--plain`: this script builds the matrices, then times
xgb.train alone), twice, interleaved (this machine's speed drifts between runs); the ratio is of the best times.

    python bench/train.py
"""
import json
import subprocess
import sys
import time
from pathlib import Path

import xgboost as xgb
from uci import CUTOFF, fresh_mlflow_store, uci_database

from sales_sql import scratch
import sales_sql
from sales_sql.config import load_settings
from sales_sql.training import load_dataset, xgb_params

RUNS = 2


def plain():
    """The plain side, in this process: the command's matrices built, then xgb.train alone timed; printed as JSON."""
    settings = load_settings()
    with sales_sql.db.opened(uci_database(), settings=settings) as con:
        data = load_dataset(con, settings, CUTOFF)
    t = time.perf_counter()
    booster = xgb.train(xgb_params(settings), data.dtrain, settings.num_boost_round, evals=[(data.dstop, "stop")],
                        early_stopping_rounds=settings.early_stopping_rounds or None, verbose_eval=False)
    seconds = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "rounds": booster.num_boosted_rounds(), "train": len(data.y_train),
                      "stop": len(data.y_stop), "test": len(data.y_test)}))


def timed(args):
    t = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr)
    return time.perf_counter() - t, out.stdout


def main():
    db = uci_database()
    fresh_mlflow_store()
    command = [str(Path(sys.executable).parent / "sales-sql"), "retrain", str(db), "--cutoff", CUTOFF]
    runs_command, runs_plain = [], []
    for _ in range(RUNS):  # interleaved: this machine's speed drifts between runs
        seconds, printed = timed([*command, "--models-dir", str(scratch.folder("models"))])
        runs_command.append(seconds)
        plain_run = json.loads(timed([sys.executable, __file__, "--plain"])[1].strip().splitlines()[-1])
        runs_plain.append(plain_run["seconds"])

    print(printed.strip())  # the version, and its test-slice metrics beside the baselines
    print(f"train rows {plain_run['train']:,}, early-stopping rows {plain_run['stop']:,}, test rows "
          f"{plain_run['test']:,}, plain xgboost rounds {plain_run['rounds']}")
    for name, runs in (("sales-sql retrain (end to end)", runs_command),
                       ("xgboost.train (same matrix)   ", runs_plain)):
        print(f"{name}: {min(runs):.1f} s  (runs: {', '.join(f'{t:.1f}' for t in runs)})")
    pairs = [c / p for c, p in zip(runs_command, runs_plain)]
    print(f"ratio: {min(runs_command) / min(runs_plain):.2f}  (target <= 1.3; best of {RUNS} each; run by run "
          f"{', '.join(f'{r:.2f}' for r in pairs)})")


if __name__ == "__main__":
    plain() if sys.argv[1:] == ["--plain"] else main()
