"""Predictions at query time: the deployed booster (or the documented fallback) over features built as of the
prediction day from the `history` table that training reads.

Features are those of the training_set view, row for row: calendar and price from the arguments, hashed keys
as features.py defines them, and history as of the day before (the latest history row of each key strictly
before the prediction day, what the view's ASOF joins pick). The view stays the definition; tests check that this
module gives identical matrices for every line of a database.

History look-ups run on an in-memory copy of `history` (one per process and database, loaded on first use and
again after a load, promote, rollback or register in this process). Keys are found by a 64-bit hash of the same
key string the view joins on; the copy refuses to load if two keys of one kind ever share a hash.

Nothing here imports MLflow; XGBoost (2 s with the scikit-learn it imports) is imported when predictions first run.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from .config import CLASSES, Settings
from .features import _FNV_OFFSET, _FNV_PRIME, _fmix64, _fnv, _hash_kernel, _same_bytes, _string_buffers
from .trees import Trees

if TYPE_CHECKING:
    import xgboost as xgb

log = logging.getLogger("sales_sql")

STATS = ("n", "log_qty_mean", "share_low", "share_high")
# what answered a row (the `source` field); fallback causes are documented in the README
MODEL, NO_MODEL, UNREADABLE, MISMATCH, INVALID_DATE = (
    "model", "fallback:no_model", "fallback:bundle_unreadable", "fallback:spec_mismatch", "invalid_date")
SOURCES = (MODEL, NO_MODEL, UNREADABLE, MISMATCH, INVALID_DATE)
FIRST_DAY, LAST_DAY = -719_162, 2_932_896  # 0001-01-01 and 9999-12-31 in days from 1970; outside is invalid
EXPLAIN_TOP = 5

PREDICT_TYPE = ("STRUCT(label VARCHAR, proba STRUCT(low DOUBLE, medium DOUBLE, high DOUBLE), source VARCHAR, "
                "model_version INTEGER)")
EXPLAIN_TYPE = "STRUCT(feature VARCHAR, value DOUBLE, contribution DOUBLE)[]"
_PROBA = pa.struct([("low", pa.float64()), ("medium", pa.float64()), ("high", pa.float64())])
_CLASS_NAMES = pa.array(CLASSES)
_SOURCE_NAMES = pa.array(SOURCES)
_EXPLAIN_ARROW = pa.list_(pa.struct([("feature", pa.string()), ("value", pa.float64()),
                                     ("contribution", pa.float64())]))

_generation = 0  # bumped whenever a database may have new invoices or a new deployed model


def invalidate() -> None:
    """Make every predictor in this process reload its model and history before its next batch."""
    global _generation
    _generation += 1


# ---- as-of look-ups over history -------------------------------------------------------------------------
# The key hash is FNV-1a-64 (+ fmix64) of one byte naming the kind followed by the key string the view joins
# on. Each kind has its own open-addressing table and its own block of history rows,
# so the small kinds (branch, item) stay in cache.

@njit(nogil=True, cache=True, inline="always")
def _seed(kind):
    """FNV-1a state after the kind's prefix byte."""
    return (np.uint64(_FNV_OFFSET) ^ np.uint64(kind + 1)) * np.uint64(_FNV_PRIME)


@njit(nogil=True, cache=True)
def _key_hashes(kind, offsets, data, out):
    """The hash of each key of history (two-part keys are stored as the view joins them, a || chr(31) || b)."""
    for r in range(out.shape[0]):
        out[r] = _fmix64(_fnv(_seed(kind), offsets, data, r))


@njit(nogil=True, cache=True)
def _build_table(key_hash, key_start, key_count, table):
    """Open addressing (linear probing): table[slot] = (key hash, start << 32 | row count); count 0 = empty."""
    mask = table.shape[0] - 1
    for k in range(key_hash.shape[0]):
        slot = np.int64(key_hash[k] & np.uint64(mask))
        while table[slot, 1] != 0:
            slot = (slot + 1) & mask
        table[slot, 0] = key_hash[k]
        table[slot, 1] = (np.uint64(key_start[k]) << np.uint64(32)) | np.uint64(key_count[k])


@njit(nogil=True, cache=True, inline="always")
def _civil(z):
    """(year, month, day) of a day number from 1970-01-01 (proleptic Gregorian; H. Hinnant's algorithm)."""
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if m <= 2 else 0), m, d


@njit(nogil=True, cache=True, inline="always")
def _jan1(y):
    """Day number of January 1st of year y."""
    y -= 1
    era = y // 400
    yoe = y - era * 400
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + 306 - 719468


# the key kinds, in the order of Batch.rows
KIND_ORDER = ("branch_item", "item", "branch", "customer", "customer_item")
_CALENDAR = ("day_of_week", "day_of_month", "month", "day_of_year")
_PRICE = ("unit_price", "price_vs_item", "price_vs_branch_item")
_PREFIXES = ("bi", "item", "branch", "customer", "ci")  # feature-name prefixes, in KIND_ORDER
_LAYOUT_STATS = STATS + ("days_since",)
_PER_KIND = len(_LAYOUT_STATS)
_STAT_AT = 7  # layout: 4 calendar columns, unit_price, price_vs_item, price_vs_branch_item, 5 x 5 statistics, buckets
_HASHED_AT = _STAT_AT + len(KIND_ORDER) * _PER_KIND


def plan(spec: dict) -> np.ndarray:
    """The matrix column of each computable feature (-1 where the spec lacks it), laid out as _fill reads
    it; KeyError for a feature name this module cannot compute."""
    layout = np.full(_HASHED_AT + spec["buckets"], -1, np.int64)
    for j, name in enumerate(spec["features"]):
        prefix, _, rest = name.partition("_")
        if name in _CALENDAR:
            layout[_CALENDAR.index(name)] = j
        elif name in _PRICE:
            layout[len(_CALENDAR) + _PRICE.index(name)] = j
        elif prefix == "hashed" and rest.isdigit() and int(rest) < spec["buckets"]:
            layout[_HASHED_AT + int(rest)] = j
        elif prefix in _PREFIXES and rest in _LAYOUT_STATS:
            layout[_STAT_AT + _PREFIXES.index(prefix) * _PER_KIND + _LAYOUT_STATS.index(rest)] = j
        else:
            raise KeyError(name)
    return layout


@njit(nogil=True, cache=True)
def _lookups(day, ok, b_off, b_data, b_valid, i_off, i_data, i_valid, c_off, c_data, c_valid, tables, days, rows):
    """The as-of look-ups of the five key kinds into rows (in KIND_ORDER): the row of each key's latest history
    entry strictly before the day, or -1.

    A pass per kind keeps that kind's table in cache, and each pass has three loops (hash, probe, bisect) whose
    iterations do not wait for one another, so the memory reads of many rows are under way at once."""
    sep, prime = np.uint64(31), np.uint64(_FNV_PRIME)
    n = day.shape[0]
    hashes, todo, lo, hi = np.empty(n, np.uint64), np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    for kind in range(len(KIND_ORDER)):
        two = kind == 0 or kind == 4
        a_off, a_data, a_valid = (b_off, b_data, b_valid) if kind == 0 or kind == 2 else \
            (c_off, c_data, c_valid) if kind == 3 or kind == 4 else (i_off, i_data, i_valid)
        state = h = np.uint64(0)
        prev_s = prev_e = np.int64(-1)
        prev_ok = False  # whether the row before had a key of this kind
        m = 0
        for r in range(n):
            rows[kind, r] = -1
            if not (ok[r] and a_valid[r] and (i_valid[r] or not two)):
                prev_ok = False
                continue
            s, e = np.int64(a_off[r]), np.int64(a_off[r + 1])
            if prev_s < 0 or not _same_bytes(a_data, s, e, prev_s, prev_e):  # a branch or customer repeats
                state = _fnv(_seed(kind), a_off, a_data, r)
                prev_s, prev_e = s, e
            same = prev_ok and day[r] == day[r - 1]
            prev_h = h
            h = _fmix64(_fnv((state ^ sep) * prime, i_off, i_data, r) if two else state)
            prev_ok = True
            if same and h == prev_h:
                rows[kind, r] = -2  # the lines of one invoice repeat their branch and customer: as the row before
            else:
                hashes[m], todo[m] = h, r
                m += 1
        table = tables[kind]
        mask = table.shape[0] - 1
        for k in range(m):  # the key's run of history rows (open addressing, linear probing)
            slot = np.int64(hashes[k] & np.uint64(mask))
            lo[k] = hi[k] = 0
            while table[slot, 1] != 0:
                if table[slot, 0] == hashes[k]:
                    lo[k] = np.int64(table[slot, 1] >> np.uint64(32))
                    hi[k] = lo[k] + np.int64(table[slot, 1] & np.uint64(0xFFFFFFFF))
                    break
                slot = (slot + 1) & mask
        for k in range(m):  # the first day of the run not before the row's day; the row before it is the answer
            d, at, count = day[todo[k]], lo[k], hi[k] - lo[k]
            while count > 0:
                half = count >> 1
                if days[at + half] < d:
                    at, count = at + half + 1, count - half - 1
                else:
                    count = half
            rows[kind, todo[k]] = at - 1 if at > lo[k] else -1
        for r in range(n):
            if rows[kind, r] == -2:
                rows[kind, r] = rows[kind, r - 1]


@njit(nogil=True, cache=True)
def _fill(day, price, days, hist, hashed, layout, rows, out):
    """The feature matrix in the columns the layout from plan() gives (a loop per group of columns: small
    loop bodies let the history reads of many rows overlap)."""
    n = day.shape[0]
    nan = np.float32(np.nan)
    for kind in range(len(KIND_ORDER)):
        at = _STAT_AT + _PER_KIND * kind
        c = layout[at:at + _PER_KIND]
        if (c < 0).all():
            continue
        for r in range(n):
            row = rows[kind, r]
            if row < 0:
                for k in range(_PER_KIND):
                    if c[k] >= 0:
                        out[r, c[k]] = nan
                continue
            rec = hist[row]
            for k, v in enumerate((rec.n, rec.log_qty_mean, rec.share_low, rec.share_high)):
                if c[k] >= 0:
                    out[r, c[k]] = v
            if c[4] >= 0:
                out[r, c[4]] = day[r] - days[row]
    for r in range(n):
        d = np.int64(day[r])
        y, m, dd = _civil(d)
        for j, v in enumerate(((d + 3) % 7 + 1, dd, m, d - _jan1(y) + 1)):  # 1970-01-01 was a Thursday
            if layout[j] >= 0:
                out[r, layout[j]] = v
        if layout[4] >= 0:
            out[r, layout[4]] = price[r]
        for j, kind in ((5, 1), (6, 0)):  # price over the item's, then the branch x item's mean price
            if layout[j] >= 0:
                row = rows[kind, r]
                out[r, layout[j]] = price[r] / hist[row].price_mean if row >= 0 else np.nan  # in float64
        for k in range(hashed.shape[1]):
            if layout[_HASHED_AT + k] >= 0:
                out[r, layout[_HASHED_AT + k]] = hashed[r, k]


# one history row: the statistics as float32 (what the matrix holds) and the mean price as float64 (a divisor,
# as in the view), padded to 32 bytes so that a look-up touches one cache line; the days are in their own array
HISTORY_ROW = np.dtype({"names": [*STATS, "price_mean"], "formats": [np.float32] * len(STATS) + [np.float64],
                        "offsets": [4 * k for k in range(len(STATS))] + [16], "itemsize": 32})


class HistoryIndex:
    """The history table in numpy arrays for as-of look-ups (empty when con is None): per kind, a hash table
    from key to its run of rows in `hist`, sorted by day."""

    def __init__(self, con=None):
        total = con.sql("SELECT count(*) FROM history").fetchall()[0][0] if con is not None else 0
        self.hist = np.empty(total, HISTORY_ROW)
        self.days = np.empty(total, np.int32)  # apart from hist: bisecting a run of days reads fewer lines
        tables, at = [], 0
        for kind_id, kind in enumerate(KIND_ORDER):
            t = con.sql(f"""SELECT key, CAST(sale_day - DATE '1970-01-01' AS INTEGER) AS day,
                                   {', '.join(STATS)}, price_mean
                            FROM history WHERE kind = ?""", params=[kind]).to_arrow_table() if total else None
            n = t.num_rows if total else 0
            hashes = np.zeros(n, np.uint64)
            if n:
                _key_hashes(kind_id, *_string_buffers(t["key"])[:2], hashes)
            days = t["day"].to_numpy().astype(np.int32) if n else np.zeros(0, np.int32)
            order = np.lexsort((days, hashes))
            hashes = hashes[order]
            first = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]])[:n]
            if n and len(first) != pc.count_distinct(t["key"]).as_py():
                raise RuntimeError(f"two {kind} keys share a 64-bit hash; predictions cannot look history up")
            block = self.hist[at:at + n]
            self.days[at:at + n] = days[order]
            for name in STATS + ("price_mean",):
                block[name] = t[name].to_numpy(zero_copy_only=False)[order] if n else []
            table = np.zeros((1 << max(int(2 * len(first)).bit_length(), 4), 2), np.uint64)
            _build_table(hashes[first], first + at, np.diff(np.append(first, n)), table)
            tables.append(table)
            at += n
        self.tables = tuple(tables)


# ---- one batch of arguments -> features ------------------------------------------------------------------

SPLIT_ROWS = 100_000  # batches this long (bulk scoring) compute their features on two threads


class Batch:
    """The arguments of predict_sales for some rows; after matrix() or heuristic(), `rows` holds the history row
    found for each key kind (KIND_ORDER) and row, or -1."""

    def __init__(self, index: HistoryIndex, day, branch, item, price, customer):
        day = day.combine_chunks() if isinstance(day, pa.ChunkedArray) else day
        self.n = len(day)
        if day.type == pa.date32() and self.n:  # what DuckDB hands over: the day numbers as they are
            raw = np.frombuffer(day.buffers()[1], np.int32, self.n, day.offset * 4)
        else:
            raw = pc.cast(day, pa.int32()).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int32)
        valid = day.is_valid().to_numpy(zero_copy_only=False) if day.null_count else True
        self.ok_day = valid & (raw >= FIRST_DAY) & (raw <= LAST_DAY)
        self.day = np.where(self.ok_day, raw, 0).astype(np.int32)
        price = pc.cast(price, pa.float64()) if price.type != pa.float64() else price
        self.price = price.to_numpy(zero_copy_only=False)
        self.index = index
        self.keys = (*_string_buffers(branch), *_string_buffers(item), *_string_buffers(customer))
        self.rows = None

    def matrix(self, spec: dict, layout=None) -> np.ndarray:
        """float32 features in spec order, as training.to_matrix gives them from training_set."""
        return self._run(plan(spec) if layout is None else layout, len(spec["features"]))

    def _run(self, layout, width):
        out = np.empty((self.n, width), np.float32)
        self.rows = np.empty((len(KIND_ORDER), self.n), np.int64)
        index = self.index

        def part(a, b):
            keys = [k[a:b + 1] if j % 3 == 0 else k[a:b] if j % 3 == 2 else k for j, k in enumerate(self.keys)]
            rows = self.rows[:, a:b]
            _lookups(self.day[a:b], self.ok_day[a:b], *keys, index.tables, index.days, rows)
            if width:
                hashed = np.zeros((b - a, len(layout) - _HASHED_AT), np.float32)  # features.py's hashed terms
                _hash_kernel(*keys[:6], hashed.shape[1], hashed)
                _fill(self.day[a:b], self.price[a:b], index.days, index.hist, hashed, layout, rows, out[a:b])

        if self.n < SPLIT_ROWS:
            part(0, self.n)
        else:  # a bulk batch: both halves at once (the kernels release the GIL)
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(part, (0, self.n // 2), (self.n // 2, self.n)))
        return out

    def heuristic(self) -> np.ndarray:
        """The fallback's probabilities: the branch x item's class shares before the day, else the item's,
        else all on LOW (the seed system's safe mode)."""
        proba = np.zeros((self.n, 3), np.float32)
        proba[:, 0] = 1.0
        if self.rows is None:
            self._run(None, 0)  # look-ups alone
        for kind in (1, 0):  # item, then branch x item, which wins where both are known
            rows = self.rows[kind]
            found = self.index.hist[rows[rows >= 0]]
            sl, sh = found["share_low"], found["share_high"]
            proba[rows >= 0] = np.column_stack([sl, np.clip(1.0 - sl - sh, 0.0, 1.0), sh])
        return proba


# ---- the deployed model -----------------------------------------------------------------------------------

@dataclass
class Deployment:
    source: str                         # MODEL or a fallback cause
    version: int | None
    index: HistoryIndex
    generation: int
    reason: str = ""                    # why the fallback answers (empty for MODEL)
    booster: xgb.Booster | None = None  # all cores
    single: xgb.Booster | None = None   # the same model on one thread, for calls that run beside others
    trees: Trees | None = None          # the same model compiled (trees.py); None: XGBoost's predictor answers
    spec: dict | None = None
    plan: np.ndarray | None = None      # plan(spec), computed once


def load_deployment(con, settings: Settings) -> Deployment:
    """The active deployed model of this database, or the fallback with its cause."""
    import xgboost as xgb

    from .training import feature_spec

    try:
        index = HistoryIndex(con)
        rows = con.execute("""SELECT version, booster, feature_spec FROM deployed_models
                              WHERE status = 'active' AND model_name = ? ORDER BY deployment_id DESC LIMIT 1""",
                           [settings.model_name]).fetchall()
        current = feature_spec(con, settings)
    except duckdb.CatalogException:
        return Deployment(NO_MODEL, None, HistoryIndex(), _generation,
                          "this database lacks sales_sql tables; open it read-write once with sales_sql.connect(path)")
    if not rows:
        return Deployment(NO_MODEL, None, index, _generation,
                          f"no model {settings.model_name!r} is deployed in this database; run `sales-sql promote`")
    version, raw, spec_json = rows[0]
    try:
        spec = json.loads(spec_json)
        booster = xgb.Booster()
        booster.load_model(bytearray(raw))
        if booster.num_features() != len(spec["features"]):
            raise ValueError(f"the booster has {booster.num_features()} features, its spec {len(spec['features'])}")
        booster.set_param({"nthread": os.cpu_count() or 1})
        single = booster.copy()
        single.set_param({"nthread": 1})
    except (ValueError, KeyError, TypeError, xgb.core.XGBoostError) as e:
        return Deployment(UNREADABLE, version, index, _generation,
                          f"the deployed model v{version} cannot be read ({str(e).splitlines()[0][:200]}); "
                          "promote a version again with `sales-sql promote`")
    if spec != current:
        differ = sorted(k for k in current if spec.get(k) != current[k])
        return Deployment(MISMATCH, version, index, _generation,
                          f"the deployed model v{version} was trained with a different feature spec ({', '.join(differ)} "
                          "differ from the current config and SQL); retrain and promote a new version")
    return Deployment(MODEL, version, index, _generation, booster=booster, single=single, trees=Trees.of(booster),
                      spec=spec, plan=plan(spec))


class Predictor:
    """Answers predict_sales for one registered connection; loads the deployment lazily, once per generation."""

    def __init__(self, con, settings: Settings):
        self.con, self.settings = con, settings
        self._deployment: Deployment | None = None
        self._lock = threading.Lock()
        self._active = 0  # calls running now (DuckDB calls a UDF from several threads at once)
        self._warned: set[str] = set()

    def deployment(self) -> Deployment:
        dep = self._deployment
        if dep is not None and dep.generation == _generation:
            return dep
        with self._lock:
            if self._deployment is None or self._deployment.generation != _generation:
                cur = self.con.cursor()
                try:
                    self._deployment = load_deployment(cur, self.settings)
                finally:
                    cur.close()
                dep = self._deployment
                if dep.source != MODEL and dep.reason not in self._warned:
                    self._warned.add(dep.reason)
                    log.warning("sales_sql predictions use the fallback heuristic: %s", dep.reason)
            return self._deployment

    def predict(self, day, branch, item, price, customer):
        """(class index per row or -1, probabilities float32 (n, 3), source index per row, model version or None,
        the Batch)."""
        dep = self.deployment()
        with self._lock:
            self._active += 1
        try:
            batch = Batch(dep.index, day, branch, item, price, customer)
            if dep.booster is not None:
                X = batch.matrix(dep.spec, dep.plan)
                if dep.trees is not None:  # DuckDB's calls run side by side; a bulk batch splits over the cores
                    proba = dep.trees.proba(X, (os.cpu_count() or 1) if batch.n >= SPLIT_ROWS else 1)
                else:  # a call alone (one row, or the last batches) uses every core; calls side by side one each
                    proba = (dep.booster if self._active == 1 else dep.single).inplace_predict(X)
            else:
                proba = batch.heuristic()
        finally:
            with self._lock:
                self._active -= 1
        source = SOURCES.index(dep.source)
        label = proba.argmax(axis=1)  # ties go to the lower class
        label[~batch.ok_day] = -1
        sources = np.where(batch.ok_day, source, SOURCES.index(INVALID_DATE)).astype(np.int8)
        return label, proba, sources, dep.version if dep.booster is not None else None, batch

    def class_arrow(self, day, branch, item, price, customer) -> pa.DictionaryArray:
        label = self.predict(day, branch, item, price, customer)[0].astype(np.int8)
        # dictionary-encoded: DuckDB reads it as VARCHAR, and it is cheaper to build than strings
        return pa.DictionaryArray.from_arrays(pa.array(label, mask=label < 0), _CLASS_NAMES)

    def predict_arrow(self, day, branch, item, price, customer) -> pa.StructArray:
        label, p_low, p_medium, p_high, source, version = _columns(*self.predict(day, branch, item, price, customer))
        proba = pa.StructArray.from_arrays([p_low, p_medium, p_high], fields=list(_PROBA), mask=label.is_null())
        return pa.StructArray.from_arrays([label, proba, source, version],
                                          names=["label", "proba", "source", "model_version"])

    def explain_arrow(self, day, branch, item, price, customer) -> pa.ListArray:
        """Top contributions (XGBoost pred_contribs, log-odds of the predicted class) per row; hashed buckets
        are summed into one entry. Empty for fallback rows, NULL for invalid dates."""
        import xgboost as xgb

        dep = self.deployment()
        batch = Batch(dep.index, day, branch, item, price, customer)
        out = [None if not ok else [] for ok in batch.ok_day]
        if dep.booster is not None and batch.ok_day.any():
            X = batch.matrix(dep.spec, dep.plan)
            names = dep.spec["features"]
            # a DMatrix refuses inf (inplace_predict takes it); the largest float splits every tree the same way
            big = np.finfo(np.float32).max
            finite = np.nan_to_num(X, nan=np.nan, posinf=big, neginf=-big)
            contribs = dep.booster.predict(xgb.DMatrix(finite, feature_names=names), pred_contribs=True)
            label = dep.booster.inplace_predict(X).argmax(axis=1)
            hashed = [j for j, f in enumerate(names) if f.startswith("hashed_")]
            plain = [j for j, f in enumerate(names) if not f.startswith("hashed_")]
            for r in np.flatnonzero(batch.ok_day):
                c = contribs[r, label[r]]
                entries = [(readable(names[j]), float(X[r, j]), float(c[j])) for j in plain]
                if hashed:
                    entries.append(("branch x item (hashed keys)", None, float(c[hashed].sum())))
                entries.sort(key=lambda e: -abs(e[2]))
                out[r] = [{"feature": f, "value": None if v is None or np.isnan(v) else v, "contribution": c}
                          for f, v, c in entries[:EXPLAIN_TOP]]
        return pa.array(out, _EXPLAIN_ARROW)


def _columns(label, proba, sources, version, batch):
    """Arrow columns label, p_low, p_medium, p_high, source, model_version (NULL where the date is invalid)."""
    bad = label < 0
    p = proba.astype(np.float64)
    return [_CLASS_NAMES.take(pa.array(label, mask=bad)), *[pa.array(p[:, i], mask=bad) for i in range(3)],
            _SOURCE_NAMES.take(pa.array(sources)),
            pa.array(np.full(len(label), version or 0, np.int32), mask=bad | (version is None))]


_PREFIX_NAMES = {"bi": "branch x item", "item": "item", "branch": "branch", "customer": "customer",
                 "ci": "customer x item"}
_STAT_NAMES = {"n": "lines before", "log_qty_mean": "mean log quantity", "share_low": "share LOW",
               "share_high": "share HIGH", "days_since": "days since last sale"}


def readable(feature: str) -> str:
    """'bi_share_low' -> 'branch x item: share LOW'; calendar and price names lose their underscores."""
    prefix, _, stat = feature.partition("_")
    if prefix in _PREFIX_NAMES and stat in _STAT_NAMES:
        return f"{_PREFIX_NAMES[prefix]}: {_STAT_NAMES[stat]}"
    return {"price_vs_item": "price / item's mean price",
            "price_vs_branch_item": "price / branch x item mean price"}.get(feature, feature.replace("_", " "))


# ---- bulk scoring ------------------------------------------------------------------------------------------

SCORED = pa.schema([("line_id", pa.int64()), ("label", pa.string()), ("p_low", pa.float64()),
                    ("p_medium", pa.float64()), ("p_high", pa.float64()), ("source", pa.string()),
                    ("model_version", pa.int32())])


class ScoreError(ValueError):
    """Bulk scoring was refused; nothing was written."""


def scoring_query(where: str | None) -> str:
    """The invoice lines to score; `where` must be a filter expression only (one SELECT, nothing else)."""
    sql = ("SELECT line_id, CAST(sale_time AS DATE) AS sale_day, branch_id, item_code, unit_price, customer_id "
           "FROM invoices")
    if where:
        sql += f" WHERE ({where})"
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise ScoreError(f"--where {where!r} is not a filter expression: {str(e).splitlines()[0]}") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise ScoreError(f"--where {where!r} must be one filter expression over invoices columns, such as "
                         "\"sale_time >= DATE '2025-12-01'\"; it may not end the statement or start another")
    return sql


def batches_of(reader: pa.RecordBatchReader, rows: int):
    """The reader's lines in record batches of exactly `rows` (the last may be shorter): DuckDB's Arrow reader
    ends a batch at each row group (122,880 lines) however many lines are asked for."""
    held, count = [], 0
    for rb in reader:
        held.append(rb)
        count += rb.num_rows
        while count >= rows:
            table = pa.Table.from_batches(held, schema=reader.schema)
            yield table.slice(0, rows).combine_chunks().to_batches()[0]
            rest = table.slice(rows)
            held, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(held, schema=reader.schema).combine_chunks().to_batches()[0]


def score_into(con, settings: Settings, table: str, where: str | None = None, *, replace: bool = False,
               batch_rows: int = 250_000, progress=None) -> tuple[int, Deployment]:
    """Write one row of predictions per matching invoice line into `table` in one statement (all or nothing).

    Lines stream through in batches of `batch_rows` (DuckDB's Arrow reader), each predicted by one
    multi-threaded XGBoost call, so memory stays flat however many lines match.
    """
    from .db import first_row, quote_ident

    if batch_rows < 1:
        raise ScoreError(f"--batch-rows {batch_rows} must be at least 1 (lines per prediction batch)")
    sql = scoring_query(where)
    exists = first_row(con, "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND NOT temporary", [table])[0]
    if exists and not replace:
        raise ScoreError(f"table {table!r} already exists; pass --replace to overwrite it or choose another --into")
    try:
        total = first_row(con, f"SELECT count(*) FROM ({sql})")[0]
    except duckdb.Error as e:
        raise ScoreError(f"--where {where!r} does not work on invoices: {str(e).splitlines()[0]}") from None
    predictor = Predictor(con, settings)
    dep = predictor.deployment()
    reader = con.cursor()

    def batches():
        done = 0
        for rb in batches_of(reader.sql(sql).to_arrow_reader(batch_rows), batch_rows):
            yield pa.record_batch([rb.column(0), *_columns(*predictor.predict(*rb.columns[1:]))], schema=SCORED)
            done += rb.num_rows
            if progress:
                progress(done, total)

    con.register("_sales_sql_scored", pa.RecordBatchReader.from_batches(SCORED, batches()))
    try:
        con.execute(f"CREATE {'OR REPLACE ' if replace else ''}TABLE {quote_ident(table)} AS "
                    "FROM _sales_sql_scored")
    finally:
        con.unregister("_sales_sql_scored")
        reader.close()
    return total, dep
