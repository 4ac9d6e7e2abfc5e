"""`sales-sql retrain` end to end vs a plain xgboost.train on the same prepared matrix, in one run.

The first time is the whole command as a user runs it (process start, reading training_set through Arrow,
the split, checkpoints, progress, evaluation, baselines, plots and MLflow logging and registration). The
second is xgboost.train alone, with the same parameters, weights, validation set and early stopping, on the
binned matrices the command builds (their construction, from the batches of lines, not included: the plain side
is XGBoost's boosting alone). Target: ratio <= 1.3.

Each side runs twice, interleaved (this machine's speed drifts between runs); the ratio is of the best times.

    python bench/train.py
"""
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


def main():
    db = uci_database()
    fresh_mlflow_store()
    settings = load_settings()
    command = [str(Path(sys.executable).parent / "sales-sql"), "retrain", str(db), "--cutoff", CUTOFF]
    with sales_sql.db.opened(db, settings=settings) as con:
        data = load_dataset(con, settings, CUTOFF)

    def plain():
        return xgb.train(xgb_params(settings), data.dtrain, settings.num_boost_round, evals=[(data.dstop, "stop")],
                         early_stopping_rounds=settings.early_stopping_rounds or None, verbose_eval=False)

    runs_command, runs_plain = [], []
    for _ in range(RUNS):  # interleaved: this machine's speed drifts between runs
        t = time.perf_counter()
        out = subprocess.run([*command, "--models-dir", str(scratch.folder("models"))],
                             capture_output=True, text=True)
        runs_command.append(time.perf_counter() - t)
        if out.returncode:
            sys.exit(out.stderr)
        t = time.perf_counter()
        booster = plain()
        runs_plain.append(time.perf_counter() - t)

    print(out.stdout.strip())  # the version, and its test-slice metrics beside the baselines
    print(f"train rows {len(data.y_train):,}, early-stopping rows {len(data.y_stop):,}, test rows {len(data.y_test):,}, "
          f"plain xgboost rounds {booster.num_boosted_rounds()}")
    for name, runs in (("sales-sql retrain (end to end)", runs_command),
                       ("xgboost.train (same matrix)   ", runs_plain)):
        print(f"{name}: {min(runs):.1f} s  (runs: {', '.join(f'{t:.1f}' for t in runs)})")
    pairs = [c / p for c, p in zip(runs_command, runs_plain)]
    print(f"ratio: {min(runs_command) / min(runs_plain):.2f}  (target <= 1.3; best of {RUNS} each; run by run "
          f"{', '.join(f'{r:.2f}' for r in pairs)})")


if __name__ == "__main__":
    main()
