"""A deterministic generator of realistic invoice lines for demos, tests and benchmarks.

Same seed and options, same lines, on any machine. What it models:
- branches '1'..'N' with Zipf-like traffic, customers with a home branch (20% of invoices anonymous),
  25% of customers wholesale buyers who order about 3x more;
- items '10001'.. with long-tailed (Zipf) popularity, each with a base quantity, price and a
  branch x item effect; 15% of items are Christmas items;
- weekly (Saturday peak, quiet Sunday) and yearly seasonality, holiday peaks (late November to
  Christmas) on both traffic and quantities;
- price effects: 8% of lines on promotion (25% off, 1.6x quantity), a bulk price tier (15% off from 12 units);
- returns: 2% of lines come back 1-20 days later as a 'C' invoice with a negative quantity.
- drift (drift_after): from that date on, quantities grow by 80% x strength, prices by 15% x strength,
  and traffic moves towards the smaller branches.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

COLUMNS = ["Date", "BranchID", "InvoiceNumber", "ItemCode", "QuantitySold", "UnitPrice", "CustomerID"]


def generate(lines: int = 220_000, seed: int = 7, start: str = "2024-01-01", days: int = 731,
             branches: int = 30, items: int = 3000, customers: int = 4000,
             drift_after: str | None = None, drift_strength: float = 1.0) -> pa.Table:
    """Invoice lines as an Arrow table with the seed system's column names (see module docstring)."""
    if lines < 1 or days < 1 or branches < 1 or items < 1 or customers < 1:
        raise ValueError("lines, days, branches, items and customers must all be >= 1")
    rng = np.random.default_rng(seed)
    start_day = np.datetime64(start, "D")
    day_index = np.arange(days)
    dates = start_day + day_index
    doy = (dates - dates.astype("datetime64[Y]")).astype(int) + 1
    weekday = (dates.astype(int) + 3) % 7  # 0 = Monday
    month = dates.astype("datetime64[M]").astype(int) % 12 + 1
    holiday = ((month == 11) & (doy >= 324)) | ((month == 12) & (doy <= 358))
    day_weight = (np.array([1.0, 1.0, 1.05, 1.1, 1.2, 1.35, 0.55])[weekday]
                  * (1 + 0.25 * np.sin(2 * np.pi * (doy - 100) / 365.25)) * np.where(holiday, 1.8, 1.0))
    drift_day = None if drift_after is None else int((np.datetime64(drift_after, "D") - start_day).astype(int))

    # the cast
    branch_pop = 1.0 / np.arange(1, branches + 1) ** 0.8
    branch_factor = rng.lognormal(0, 0.3, branches)
    item_pop = 1.0 / np.arange(1, items + 1) ** 1.05
    item_pop = item_pop[rng.permutation(items)]
    item_qty = rng.lognormal(1.0, 0.8, items)
    item_price = np.round(rng.lognormal(1.0, 0.7, items), 2) + 0.05
    christmas_item = rng.random(items) < 0.15
    branch_item = rng.lognormal(0, 0.4, (branches, items))
    cust_branch = rng.choice(branches, customers, p=branch_pop / branch_pop.sum())
    cust_factor = np.where(rng.random(customers) < 0.25, 3.0, 1.0) * rng.lognormal(0, 0.3, customers)
    by_branch = np.argsort(cust_branch, kind="stable")
    cust_count = np.bincount(cust_branch, minlength=branches)
    cust_offset = np.concatenate([[0], np.cumsum(cust_count)[:-1]])

    # invoices
    n_inv = max(1, int(lines / 7.5))
    inv_day = rng.choice(days, n_inv, p=day_weight / day_weight.sum())
    inv_drifted = np.zeros(n_inv, bool) if drift_day is None else inv_day >= drift_day
    late_pop = branch_pop[::-1] * (1 + drift_strength) + branch_pop
    inv_branch = np.where(inv_drifted, rng.choice(branches, n_inv, p=late_pop / late_pop.sum()),
                          rng.choice(branches, n_inv, p=branch_pop / branch_pop.sum()))
    has_cust = (rng.random(n_inv) < 0.8) & (cust_count[inv_branch] > 0)
    pick = cust_offset[inv_branch] + (rng.random(n_inv) * np.maximum(cust_count[inv_branch], 1)).astype(int)
    inv_cust = np.where(has_cust, by_branch[np.minimum(pick, customers - 1)], -1)
    inv_minute = rng.integers(8 * 60, 18 * 60, n_inv)
    order = np.lexsort((inv_minute, inv_day))
    inv_day, inv_branch, inv_cust, inv_minute, inv_drifted = (
        a[order] for a in (inv_day, inv_branch, inv_cust, inv_minute, inv_drifted))

    # lines
    per_inv = 1 + rng.geometric(1 / 6.5, n_inv)
    line_inv = np.repeat(np.arange(n_inv), per_inv)[:lines]
    if line_inv.size < lines:  # top up the last invoice
        line_inv = np.concatenate([line_inv, np.full(lines - line_inv.size, n_inv - 1)])
    item = rng.choice(items, line_inv.size, p=item_pop / item_pop.sum())
    first = np.sort(np.unique(line_inv.astype(np.int64) * items + item, return_index=True)[1])
    line_inv, item = line_inv[first], item[first]  # an item appears once per invoice
    n = line_inv.size
    branch = inv_branch[line_inv]
    cust = inv_cust[line_inv]
    day = inv_day[line_inv]
    drifted = inv_drifted[line_inv]
    promo = rng.random(n) < 0.08
    season = np.where(christmas_item[item], np.where(holiday[day], 3.0, 0.6), 1.0)
    mu = (item_qty[item] * branch_factor[branch] * branch_item[branch, item] * season
          * np.where(weekday[day] >= 5, 1.1, 1.0) * np.where(holiday[day], 1.2, 1.0)
          * np.where(cust >= 0, cust_factor[np.maximum(cust, 0)], 0.8)
          * np.where(promo, 1.6, 1.0) * np.where(drifted, 1 + 0.8 * drift_strength, 1.0))
    mu = np.maximum(mu, 1.01)
    # own streams: the negative binomial draws a varying amount of randomness per line, so lines before a
    # drift date stay identical only if nothing drawn later shares its stream
    rng_quantity, rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    quantity = 1 + rng_quantity.negative_binomial(2, 2 / (2 + mu - 1))
    price = (item_price[item] * np.where(promo, 0.75, 1.0) * np.where(quantity >= 12, 0.85, 1.0)
             * np.where(drifted, 1 + 0.15 * drift_strength, 1.0))
    price = np.round(price, 2)
    price_valid = rng.random(n) >= 0.005

    # returns: a later 'C' invoice with part of the quantity back
    ret = np.flatnonzero(rng.random(n) < 0.02)
    ret_day = np.minimum(day[ret] + rng.integers(1, 21, ret.size), days - 1)
    ret_qty = -np.maximum(1, (quantity[ret] * rng.uniform(0.2, 1.0, ret.size)).astype(int))

    all_day = np.concatenate([day, ret_day])
    minutes = np.concatenate([inv_minute[line_inv], rng.integers(8 * 60, 18 * 60, ret.size)])
    stamp = (start_day + all_day).astype("datetime64[m]") + minutes.astype("timedelta64[m]")
    inv_no = np.char.add(np.concatenate([np.full(n, ""), np.full(ret.size, "C")]),
                         (100000 + np.concatenate([line_inv, line_inv[ret]])).astype(str))
    cust_all = np.concatenate([cust, cust[ret]])
    table = pa.table({
        "Date": pa.array(stamp.astype("datetime64[s]")),
        "BranchID": pa.array((np.concatenate([branch, branch[ret]]) + 1).astype(str)),
        "InvoiceNumber": pa.array(inv_no),
        "ItemCode": pa.array((10001 + np.concatenate([item, item[ret]])).astype(str)),
        "QuantitySold": pa.array(np.concatenate([quantity, ret_qty]).astype(np.int32)),
        "UnitPrice": pa.array(np.concatenate([price, price[ret]]),
                              mask=~np.concatenate([price_valid, price_valid[ret]])),
        "CustomerID": pa.array(np.char.add("C", (10000 + cust_all).astype(str)), mask=cust_all < 0),
    })
    return table.sort_by([("Date", "ascending"), ("InvoiceNumber", "ascending")])


def write(table: pa.Table, path: str | Path) -> Path:
    """Write to .parquet or .csv (by the file's suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    elif path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        raise ValueError(f"{path}: write .parquet or .csv")
    return path


def last_day(table: pa.Table) -> dt.date:
    return table["Date"].to_numpy().max().astype("datetime64[D]").item()
