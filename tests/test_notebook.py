"""examples/quickstart.ipynb runs top to bottom on a real ipykernel, as a user would run it."""
import os
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"


def test_the_committed_notebook_has_no_outputs():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, cell.source[:60]


def test_the_quickstart_notebook_runs_without_an_error(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("SALES_SQL_CONFIG", raising=False)
    monkeypatch.setenv("PLOOMBER_STATS_ENABLED", "false")  # jupysql's usage statistics: no network here
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "registered sales_sql_class version 1" in text and "version 1 is production" in text
    assert "model" in text and "fallback" not in text  # the predictions came from the deployed model
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the inline drift plot
    assert (tmp_path / "quickstart" / "mlflow.db").is_file()
