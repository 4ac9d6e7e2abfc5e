"""The wheel, installed into a new virtual environment outside the repository, runs the whole flow on its own."""
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow

SHIPPED = ["sql/drift.sql", "sql/history.sql", "sql/predict.sql", "sql/schema.sql", "sql/training_set.sql",
           "configs/sales_sql.toml"]


def run(*args, cwd, env=None):
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The wheel and the sdist of this checkout, built offline with the test environment's setuptools."""
    dist = tmp_path_factory.mktemp("dist")
    had_build = (ROOT / "build").exists()
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, ROOT, cwd=ROOT)
    run(sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(dist)!r})", cwd=ROOT)
    if not had_build:  # setuptools builds in ROOT/build: the tests leave nothing in the checkout
        shutil.rmtree(ROOT / "build", ignore_errors=True)
    (wheel,), (sdist,) = dist.glob("*.whl"), dist.glob("*.tar.gz")
    return wheel, sdist


def test_the_wheel_and_the_sdist_carry_the_sql_and_the_settings(built):
    wheel, sdist = built
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert {f"sales_sql/{name}" for name in SHIPPED} <= in_wheel
    with tarfile.open(sdist) as tar:
        in_sdist = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert set(SHIPPED) <= in_sdist


def test_the_installed_wheel_works_outside_the_checkout(built, tmp_path):
    wheel, _ = built
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip()
    # the dependencies come from the test environment (no network); sales_sql itself only from the wheel
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (venv / site / "test_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel,
        cwd=tmp_path)

    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SALES_SQL_CONFIG", "PYTHONPATH")}
    imported = run(python, "-c", "import sales_sql; print(sales_sql.__file__)", cwd=work, env=env)
    assert imported.startswith(str(venv)), imported
    cli = venv / "bin" / "sales-sql"

    def sales_sql(*args):
        return run(cli, *args, cwd=work, env=env)

    sales_sql("generate", "invoices.parquet", "--lines", 20_000, "--days", 200)
    sales_sql("load", "shop.duckdb", "invoices.parquet")
    sales_sql("config", "--init", "settings.toml")
    assert "[training]" in (work / "settings.toml").read_text()
    (work / "quick.toml").write_text("[training]\nnum_boost_round = 30\nearly_stopping_rounds = 0\nmax_depth = 4\n")
    assert "30 rounds" in sales_sql("retrain", "shop.duckdb", "--config", "quick.toml")
    assert (work / "mlflow.db").is_file()  # the MLflow store sits beside the database file
    sales_sql("promote", "shop.duckdb", "--config", "quick.toml")
    assert (work / "models" / "sales_sql_class-v1.ubj").is_file()  # --models-dir defaults to ./models
    shown = sales_sql("query", "shop.duckdb",
                      "SELECT predict_sales_class(sale_day, branch_id, item_code) AS c, "
                      "predict_sales(sale_day, branch_id, item_code).source AS s, count(*) AS n "
                      "FROM training_set GROUP BY ALL ORDER BY n DESC")
    assert "model" in shown and "fallback" not in shown and ("LOW" in shown or "HIGH" in shown)
    drift = subprocess.run([cli, "drift", "shop.duckdb", "--window", "30d", "--format", "json"], cwd=work, env=env,
                           capture_output=True, text=True)
    assert drift.returncode in (0, 1), drift.stderr  # 2 would mean the check could not run
    assert '"model_version": 1' in drift.stdout
