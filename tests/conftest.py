import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import sales_sql
from sales_sql.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
UCI_FILES = [SHARED_DATA / "uci_online_retail_II_2009_2010.parquet", SHARED_DATA / "uci_online_retail_2010_2011.parquet"]
SAMPLE_CSV = ROOT / "data" / "sample_invoices.csv"
SALES_SQL = str(Path(sys.executable).parent / "sales-sql")


# `make test` runs two files at a time (-n 2 --dist loadfile --no-loadscope-reorder), handing out files in collection
# order: the longest first (seconds on 2 cores, 2026-12-06), so that the short ones fill the end instead of one long
# file running alone
LONGEST_FIRST = ("test_lifecycle.py", "test_ops.py", "test_spark.py", "test_faults.py", "test_failures.py",
                 "test_serving.py", "test_predict.py", "test_install.py", "test_notebook.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FIRST)))  # stable: a file's order stays


def need_uci():
    """Skip, saying how to get the data, when ../shared/data is not beside the project."""
    missing = [str(p) for p in UCI_FILES if not p.is_file()]
    if missing:
        pytest.skip(f"UCI Online Retail II files not found ({', '.join(missing)}): put the shared/ folder beside "
                    "the project (../shared/data), or download both files from https://doi.org/10.24432/C5CG6D "
                    "and save them as Parquet under those names")
    return UCI_FILES


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind():
    """After the suite no sales_sql temporary folder of this test process or of a process it started remains: each
    command and Spark session removes its own, and those of processes the tests killed go with the next sales_sql
    process (scratch.sweep, run here last). (Under pytest-xdist each worker checks its own.)"""
    from sales_sql import scratch

    def ours():
        return {p for p in Path(tempfile.gettempdir()).glob(f"{scratch.PREFIX}*-*-*")
                if _started_here(p.name.split("-")[2])}

    before = ours()
    yield
    scratch.sweep()
    left = sorted(str(p) for p in ours() - before)
    assert not left, f"the suite left temporary folders behind: {left}"


def _started_here(pid: str) -> bool:
    """Whether process `pid` is this one or one it started (its parents, read from /proc)."""
    while pid.isdigit() and int(pid) > 1:
        if int(pid) == os.getpid():
            return True
        try:
            pid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
        except OSError:
            return False
    return False


@pytest.fixture(scope="session")
def settings():
    return load_settings()


@pytest.fixture
def con(settings):
    c = sales_sql.connect(settings=settings)
    yield c
    c.close()


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory):
    """One sqlite MLflow store with its schema migrations done; tests copy it (migrating takes seconds)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(tmp_path, migrated_store, monkeypatch):
    path = tmp_path / "mlflow.db"
    shutil.copy(migrated_store, path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{path}")
    return f"sqlite:///{path}"


def run_cli(*args, check=True, cwd=None):
    """Run the sales-sql command as a user would; returns the CompletedProcess."""
    proc = subprocess.run([SALES_SQL, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if check and proc.returncode != 0:
        raise AssertionError(f"sales-sql {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def run_here(*args, check=True):
    """The command as a user types it, run in this process (a subprocess spends seconds importing MLflow and XGBoost
    each time): the exit code as `returncode`, `stdout` and `stderr` apart. For tests of what a command does; the
    command as a process (its exit code, signals, its one line on stderr) has tests with run_cli."""
    from click.testing import CliRunner

    from sales_sql.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # what a process would end in with a traceback: never an answer a test may accept
    if check and result.exit_code != 0:
        raise AssertionError(f"sales-sql {' '.join(map(str, args))} failed ({result.exit_code}):\n{result.output}")
    result.returncode = result.exit_code
    return result


@pytest.fixture(scope="session")
def uci_load(tmp_path_factory, settings):
    """(database file, load reports): both UCI files loaded once for the whole run (skips, saying how to get them,
    when they are missing). The first pytest-xdist worker to need them loads them, under a lock in the run's shared
    temporary folder; the others read its file and reports."""
    import fcntl
    import pickle

    from sales_sql.loader import load_files

    files = need_uci()
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "uci"  # the workers' common folder
    shared.mkdir(exist_ok=True)
    path, saved = shared / "uci.duckdb", shared / "reports.pickle"
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not saved.exists():  # loaded beside, then renamed: a load that failed leaves nothing a worker would reuse
            loading = shared / "loading.duckdb"
            loading.unlink(missing_ok=True)
            con = sales_sql.connect(loading, settings=settings)
            reports = load_files(con, files, preset="uci", settings=settings)
            sales_sql.close(loading)
            loading.rename(path)
            saved.write_bytes(pickle.dumps(reports))
    return path, pickle.loads(saved.read_bytes())


@pytest.fixture
def uci_db(uci_load):
    return uci_load[0]
