"""The package's floors are a checked contract (pyproject.toml's [tool.importlinter]): import-linter's lint-imports
keeps it on this code and breaks it on a copy with one import that climbs a floor."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = str(Path(sys.executable).parent / "lint-imports")


def lint(cwd: Path, package_parent: Path) -> subprocess.CompletedProcess:
    return subprocess.run([LINT, "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          env={"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(package_parent)})


def test_every_module_imports_only_from_the_floors_below_it():
    proc = lint(ROOT, ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 kept, 0 broken" in proc.stdout


def test_an_import_that_climbs_a_floor_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "sales_sql", tmp_path / "sales_sql", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / "sales_sql" / "duck.py", "a") as f:
        f.write("\n\ndef _climbs():\n    from . import registry  # noqa: F401\n")
    proc = lint(tmp_path, tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "sales_sql.duck is not allowed to import sales_sql.registry" in proc.stdout
