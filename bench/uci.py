"""Shared by the benchmarks: a database holding both UCI files (built once, reused), and a fresh MLflow store."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UCI = [ROOT.parent / "shared" / "data" / f for f in
       ("uci_online_retail_II_2009_2010.parquet", "uci_online_retail_2010_2011.parquet")]
CUTOFF = "2011-09-01"


def uci_database() -> Path:
    """bench/.cache/uci.duckdb with both UCI files loaded (preset uci), made on first use."""
    missing = [str(p) for p in UCI if not p.is_file()]
    if missing:
        sys.exit(f"UCI files not found: {missing}. Put shared/ beside the project (../shared/data) or download "
                 "both files from https://doi.org/10.24432/C5CG6D as Parquet under those names.")
    path = ROOT / "bench" / ".cache" / "uci.duckdb"
    if not path.exists():
        import sales_sql
        from sales_sql.loader import load_files

        path.parent.mkdir(parents=True, exist_ok=True)
        con = sales_sql.connect(path)
        load_files(con, UCI, preset="uci")
        sales_sql.close(path)
    return path


def fresh_mlflow_store() -> str:
    """Point MLflow at a new sqlite store in a temporary folder, so benchmarks leave no runs behind."""
    from sales_sql import scratch

    folder = scratch.folder("bench")  # removed when the benchmark exits
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/mlflow.db"
    return folder
