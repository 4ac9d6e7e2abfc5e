"""training_set: labels from configs/, point-in-time history features, no leakage."""
import datetime as dt
import math

from hypothesis import given, settings as hsettings, strategies as st

import sales_sql
from sales_sql.db import rebuild_history

DAY0 = dt.date(2024, 3, 1)
line = st.tuples(
    st.integers(0, 9),                              # day offset
    st.sampled_from(["1", "2"]),                    # branch
    st.sampled_from(["a", "b", "c"]),               # item
    st.sampled_from([None, "x", "y"]),              # customer
    st.integers(-3, 15),                            # quantity (<= 0: returns)
    st.sampled_from([None, 0.0, 1.0, 2.5]),         # unit price
)


def insert(con, lines, settings):
    for n, (day, branch, item, cust, q, p) in enumerate(lines):
        con.execute("""INSERT INTO invoices (sale_time, branch_id, invoice_number, item_code, quantity_sold,
                       unit_price, customer_id, line_key, source_file, source_line)
                       VALUES (?, ?, 'I', ?, ?, ?, ?, ?, 't', ?)""",
                    [DAY0 + dt.timedelta(days=day, hours=n % 12), branch, item, q, p, cust, n, n])
    rebuild_history(con, settings)


def features(con, before_day):
    """Every feature of the lines dated before before_day (the line's own quantity and label left out)."""
    day = DAY0 + dt.timedelta(days=before_day)
    return con.execute(f"SELECT * EXCLUDE (quantity_sold, label) FROM training_set WHERE sale_day < DATE '{day}' "
                       "ORDER BY line_id").fetchall()


def test_labels_follow_the_configured_thresholds(con, settings):
    insert(con, [(0, "1", "a", None, q, 1.0) for q in (1, 3, 4, 8, 9, 100)], settings)
    got = con.execute("SELECT quantity_sold, label FROM training_set ORDER BY quantity_sold").fetchall()
    assert got == [(1, "LOW"), (3, "LOW"), (4, "MEDIUM"), (8, "MEDIUM"), (9, "HIGH"), (100, "HIGH")]


@hsettings(max_examples=40, deadline=None)
@given(st.lists(line, max_size=25), st.lists(line, max_size=25), st.integers(1, 9))
def test_no_feature_sees_the_line_itself_or_any_later_day(settings, base, noise, d):
    """Changing, adding or removing lines dated on or after day d changes no feature of a line before d,
    and no line's features depend on quantities sold on its own day (here: the quantities of day d-1)."""
    early = [ln for ln in base if ln[0] < d]
    same_day_changed = [ln[:4] + (ln[4] + 7 if ln[4] > 0 else ln[4],) + ln[5:] if ln[0] == d - 1 else ln
                        for ln in early]
    late_a = [ln for ln in base if ln[0] >= d]
    late_b = [(max(ln[0], d),) + ln[1:] for ln in noise]
    a, b = sales_sql.connect(settings=settings), sales_sql.connect(settings=settings)
    insert(a, early + late_a, settings)
    insert(b, same_day_changed + late_b, settings)
    assert features(a, d) == features(b, d)
    a.close(), b.close()


@hsettings(max_examples=40, deadline=None)
@given(st.lists(line, min_size=1, max_size=30))
def test_history_features_equal_a_plain_recount(settings, lines):
    con = sales_sql.connect(settings=settings)
    insert(con, lines, settings)
    usable = [ln for ln in lines if ln[4] > 0]
    rows = con.execute("""SELECT sale_day, branch_id, item_code, customer_id, unit_price, bi_n, bi_log_qty_mean,
                                 bi_share_low, bi_share_high, bi_days_since, item_n, customer_n, ci_n,
                                 price_vs_item FROM training_set ORDER BY line_id""").fetchall()
    assert len(rows) == len(usable)
    for row, (day, branch, item, cust, q, p) in zip(rows, usable):
        before = [u for u in usable if u[0] < day]
        bi = [u for u in before if (u[1], u[2]) == (branch, item)]
        if bi:
            assert row[5] == len(bi)
            assert math.isclose(row[6], sum(math.log(u[4]) for u in bi) / len(bi), rel_tol=1e-9, abs_tol=1e-12)
            assert math.isclose(row[7], sum(u[4] <= settings.low_max for u in bi) / len(bi))
            assert math.isclose(row[8], sum(u[4] > settings.medium_max for u in bi) / len(bi))
            assert row[9] == day - max(u[0] for u in bi)
        else:
            assert row[5:10] == (None,) * 5
        assert row[10] == (len([u for u in before if u[2] == item]) or None)
        assert row[11] == (len([u for u in before if cust is not None and u[3] == cust]) or None)
        assert row[12] == (len([u for u in before if cust is not None and (u[3], u[2]) == (cust, item)]) or None)
        item_prices = [u[5] for u in before if u[2] == item and u[5] is not None and u[5] > 0]
        if p is None or not item_prices:
            assert row[13] is None
        else:
            assert math.isclose(row[13], p / (sum(item_prices) / len(item_prices)))
    con.close()
