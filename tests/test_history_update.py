"""A load costs what it adds: history is updated for the keys and days the new lines touch, and equals a full
rebuild exactly after every load, whatever the files and their order (back-dated lines included)."""
from unittest import mock

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

import sales_sql
from sales_sql import db, demo
from sales_sql.duck import sql_text
from sales_sql.loader import load_file

LINES = demo.generate(lines=2_000, days=60, branches=3, items=40, customers=30, seed=3)


def rebuilt_differs(con, settings) -> int:
    """Rows of history and history_daily that a rebuild from invoices (into other tables) would not give, and
    the reverse."""
    con.execute(sql_text("history", settings).replace("history_daily", "rebuilt_daily")
                .replace("TABLE history AS", "TABLE rebuilt AS"))
    return sum(con.execute(f"SELECT count(*) FROM (FROM {a} EXCEPT ALL FROM {b})").fetchone()[0]
               for a, b in (("history", "rebuilt"), ("rebuilt", "history"), ("history_daily", "rebuilt_daily"),
                            ("rebuilt_daily", "history_daily")))


@hsettings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.integers(2, 5), seed=st.integers(0, 2**32 - 1), overlap=st.booleans())
def test_history_after_each_load_equals_a_rebuild(tmp_path_factory, settings, files, seed, overlap):
    rng = np.random.default_rng(seed)
    part = rng.integers(0, files, LINES.num_rows)  # lines of every date in every file: most loads are back-dated
    folder = tmp_path_factory.mktemp("files")
    con = sales_sql.connect(settings=settings)
    for f in rng.permutation(files):
        rows = np.flatnonzero(part == f)
        if overlap:  # some lines again, from another file: the loader drops them as duplicates
            rows = np.union1d(rows, rng.choice(LINES.num_rows, 50))
        path = demo.write(LINES.take(pa.array(rows)), folder / f"part{f}.parquet")
        assert load_file(con, path, settings=settings).loaded > 0
        assert rebuilt_differs(con, settings) == 0
    assert con.execute("SELECT count(*) FROM invoices").fetchone()[0] == LINES.num_rows
    con.close()


def test_a_hand_edit_makes_the_next_load_rebuild(tmp_path, settings):
    con = sales_sql.connect(settings=settings)
    files = [demo.write(LINES.slice(a, 600), tmp_path / f"{a}.parquet") for a in (0, 600, 1200)]
    with mock.patch("sales_sql.db.rebuild_history", wraps=db.rebuild_history) as rebuild:
        load_file(con, files[0], settings=settings)
        load_file(con, files[1], settings=settings)
        assert rebuild.call_count == 0  # history was current: updated for the new lines' keys
        con.execute("UPDATE invoices SET quantity_sold = quantity_sold + 7 WHERE line_id % 10 = 0")
        load_file(con, files[2], settings=settings)
        assert rebuild.call_count == 1  # an edit the update cannot see: rebuilt whole
    assert rebuilt_differs(con, settings) == 0
    con.close()
