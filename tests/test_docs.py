"""Docs that cannot drift: every command and option is in docs/cli.md, every SQL name that `register` creates is in
docs/sql.md, and every ```sql example in README.md and docs/sql.md runs against a demo database."""
import dataclasses
import re
import shutil

import duckdb
import pytest
from test_lifecycle import QUICK, make_db

import sales_sql
from conftest import ROOT
from sales_sql.cli import main

CLI_DOC = (ROOT / "docs" / "cli.md").read_text()
SQL_DOC = (ROOT / "docs" / "sql.md").read_text()
README = (ROOT / "README.md").read_text()
COMMON_OPTIONS = ("--help", "--config")  # documented once, in the table every command shares


def sections(text: str) -> dict[str, str]:
    """'## sales-sql NAME' heading -> the text up to the next '## ' heading."""
    parts = re.split(r"^## ", text, flags=re.M)
    return {p.split("\n", 1)[0].strip(): p for p in parts[1:]}


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_and_option_is_in_the_cli_reference(name):
    section = sections(CLI_DOC).get(f"sales-sql {name}")
    assert section is not None, f"docs/cli.md has no '## sales-sql {name}' section"
    for param in main.commands[name].params:
        for opt in param.opts:
            if opt.startswith("--") and opt not in COMMON_OPTIONS:
                assert f"`{opt}" in section, f"docs/cli.md, sales-sql {name}: option {opt} is not documented"
    assert all(f"`{opt}" in CLI_DOC for opt in COMMON_OPTIONS if opt != "--help")
    assert f"sales-sql {name}" in README, f"README.md's command table lacks sales-sql {name}"


def created_by_register() -> set[str]:
    """The functions, macros, views and tables that register adds to an empty database."""
    def names(con):
        return {r[0] for r in con.execute("""SELECT function_name FROM duckdb_functions() UNION
                                             SELECT view_name FROM duckdb_views() WHERE NOT internal UNION
                                             SELECT table_name FROM duckdb_tables()""").fetchall()}

    plain = names(duckdb.connect())
    con = sales_sql.register(duckdb.connect())
    return names(con) - plain


def test_every_sql_name_that_register_creates_is_in_the_sql_reference():
    made = created_by_register()
    assert {"predict_sales", "predict_sales_class", "hash_features", "ks_drift", "training_set"} <= made
    missing = sorted(n for n in made if f"`{n}`" not in SQL_DOC)
    assert not missing, f"docs/sql.md does not document {missing}"


def sql_examples() -> list:
    return [pytest.param(block, id=f"{doc}#{i + 1}") for doc in ("README.md", "docs/sql.md")
            for i, block in enumerate(re.findall(r"^```sql\n(.*?)^```", (ROOT / doc).read_text(), flags=re.M | re.S))]


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory, settings, migrated_store):
    """A demo database (2024-2025, as `make demo` makes) with a quick model retrained, promoted and deployed, and
one drift check saved."""
    from sales_sql.monitor import check
    from sales_sql.registry import promote, retrain

    folder = tmp_path_factory.mktemp("docs")
    shutil.copy(migrated_store, folder / "mlflow.db")
    db = make_db(folder, settings, lines=30_000, days=731)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        retrain(str(db), dataclasses.replace(settings, **QUICK), folder / "models", progress=False)
        promote(str(db), settings, models_dir=folder / "models")
    with sales_sql.db.opened(db, settings=settings) as con:
        check(con, settings)  # a drift report, as `make demo` ends with
    return db


@pytest.mark.parametrize("block", sql_examples())
def test_every_sql_example_runs_against_the_demo_database(block, demo_db):
    con = sales_sql.connect(demo_db, read_only=True)
    try:
        expected = re.search(r"-- error: (.+)", block)
        if expected:
            with pytest.raises(duckdb.Error, match=re.escape(expected.group(1).strip())):
                con.execute(block).fetchall()
        else:
            for statement in filter(str.strip, re.sub(r"--[^\n]*", "", block).split(";")):
                rows = con.execute(statement).fetchall()
                assert rows, f"the example returned no rows: {statement}"
                assert "fallback" not in repr(rows), f"answered by the fallback, not the model: {statement}"
    finally:
        con.close()
        sales_sql.close(demo_db)
