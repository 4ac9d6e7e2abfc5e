"""Prediction-time features: the history index and the numba kernels that build the model's matrix from the
prediction functions' arguments, laid out from the feature definition (sales_sql/definition.py).

Features are those of the training_set view, row for row: calendar and price from the arguments, hashed keys as
features.py defines them, and history as of the day before (the latest history row of each key strictly before
the prediction day, what the view's ASOF joins pick). The view stays the analysts' reference; tests check that
this module gives identical matrices for every line of a database.

History look-ups run on arrays built from `history` (HistoryIndex: memory-mapped files beside the database). Keys
are found by a 64-bit hash of the same key string the view joins on; the index refuses to build if two keys of one
kind ever share a hash.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from . import inputs
from .definition import FIRST_DAY, LAST_DAY, Definition
from .duck import history_built
from .features import FNV_OFFSET, FNV_PRIME, fmix64, fnv, hash_kernel, same_bytes, string_buffers

log = logging.getLogger("sales_sql")

# the prediction functions' key arguments, in the order Batch keeps their buffers
ARGUMENTS = inputs.KEYS
# the calendar functions the kernels compute (definition.CALENDAR_SQL gives their SQL)
CALENDAR_FUNCTIONS = ("isodow", "dayofmonth", "month", "dayofyear", "hour")
_DAY_US, _HOUR_US = 86_400_000_000, 3_600_000_000


class LayoutError(ValueError):
    """A feature spec or definition that these kernels cannot serve (the model then answers with the fallback)."""


# ---- the record layout of one history row, from the definition ----------------------------------------------

@dataclass(frozen=True)
class Layout:
    """Where things are: each kind's statistics in the float32 slots of a history row, the divisor of the price
    ratios in a float64 slot, and the kinds' key columns among ARGUMENTS."""
    definition: Definition
    stats: tuple[str, ...]          # float32 slots of a row, in order
    row: np.dtype                   # one history row: those slots, then the divisor as float64 (8-byte aligned)
    keys: np.ndarray                # (kinds, 2): argument index of each key column, -1 for none

    @classmethod
    def of(cls, definition: Definition) -> Layout:
        stats = tuple(dict.fromkeys(s for k in definition.kinds for s in k.stats))
        for s in (*stats, definition.divisor):
            try:
                definition.statistic(s)
            except KeyError as e:
                raise LayoutError(e.args[0]) from None
        f64_at = (4 * len(stats) + 7) // 8 * 8
        row = np.dtype({"names": [*stats, definition.divisor], "formats": [np.float32] * len(stats) + [np.float64],
                        "offsets": [4 * j for j in range(len(stats))] + [f64_at], "itemsize": f64_at + 8})
        keys = np.full((len(definition.kinds), 2), -1, np.int64)
        for k, kind in enumerate(definition.kinds):
            if not 1 <= len(kind.columns) <= 2 or any(c not in ARGUMENTS for c in kind.columns):
                raise LayoutError(f"key kind {kind.name!r} has columns {kind.columns}; the prediction functions "
                                  f"know one or two of {ARGUMENTS}")
            keys[k, :len(kind.columns)] = [ARGUMENTS.index(c) for c in kind.columns]
        if tuple(definition.hashed) != ("branch_id", "item_code"):
            raise LayoutError(f"hash_features of {definition.hashed}: the kernels hash branch_id and item_code")
        return cls(definition, stats, row, keys)

    def plan(self, spec: dict) -> Plan:
        """The matrix column of every feature of the spec, for the kernels; LayoutError for a name they cannot
        compute."""
        d = self.definition
        at = {name: j for j, name in enumerate(spec["features"])}
        cols = lambda names: np.array([at.get(n, -1) for n in names], np.int64)  # noqa: E731
        calendar = np.array([[CALENDAR_FUNCTIONS.index(fn), at.get(name, -1)] for name, fn in d.calendar
                             if fn in CALENDAR_FUNCTIONS], np.int64).reshape(-1, 2)
        unknown_fn = [fn for _, fn in d.calendar if fn not in CALENDAR_FUNCTIONS]
        if unknown_fn:
            raise LayoutError(f"calendar functions {unknown_fn}: the kernels compute {CALENDAR_FUNCTIONS}")
        kinds = [k.name for k in d.kinds]
        ratios = np.array([[kinds.index(kind), at.get(name, -1)] for name, kind in d.price_ratios], np.int64)
        stats = np.full((len(d.kinds), len(self.stats) + 1), -1, np.int64)  # the last column: days_since
        for k, kind in enumerate(d.kinds):
            for s in kind.stats:
                stats[k, self.stats.index(s)] = at.get(f"{kind.prefix}_{s}", -1)
            if kind.days_since:
                stats[k, -1] = at.get(f"{kind.prefix}_days_since", -1)
        plan = Plan(calendar, at.get("unit_price", -1), ratios.reshape(-1, 2), stats,
                    cols([f"hashed_{i}" for i in range(spec["buckets"])]), len(spec["features"]))
        known = {int(c) for part in (plan.calendar[:, 1], plan.ratios[:, 1], plan.stats.ravel(), plan.hashed)
                 for c in part} | {plan.unit_price}
        missing = [name for name, j in at.items() if j not in known]
        if missing:
            raise LayoutError(f"features {missing[:5]} are not in the feature definition these kernels serve")
        return plan


@dataclass(frozen=True)
class Plan:
    """Matrix columns (-1: not in the model) for the kernels: calendar (function, column) pairs, the raw price,
    price ratios (kind, column), statistics (kind x row slot, then days_since), hashed buckets."""
    calendar: np.ndarray
    unit_price: int
    ratios: np.ndarray
    stats: np.ndarray
    hashed: np.ndarray
    width: int


# ---- the kernels ----------------------------------------------------------------------------------------------
# The key hash is FNV-1a-64 (+ fmix64) of one byte naming the kind followed by the key string the view joins on.
# Each kind has its own open-addressing table and its own block of history rows, so the small kinds stay in cache.

@njit(nogil=True, cache=True, inline="always")
def _seed(kind):
    """FNV-1a state after the kind's prefix byte."""
    return (np.uint64(FNV_OFFSET) ^ np.uint64(kind + 1)) * np.uint64(FNV_PRIME)


@njit(nogil=True, cache=True)
def _key_hashes(kind, offsets, data, out):
    """The hash of each key of history (two-part keys are stored as the view joins them, a || chr(31) || b)."""
    for r in range(out.shape[0]):
        out[r] = fmix64(fnv(_seed(kind), offsets, data, r))


@njit(nogil=True, cache=True)
def _build_table(key_hash, key_start, key_count, table):
    """Open addressing (linear probing): table[slot] = (key hash, start << 32 | row count); count 0 = empty.
    False when two keys share a hash."""
    mask = table.shape[0] - 1
    for k in range(key_hash.shape[0]):
        slot = np.int64(key_hash[k] & np.uint64(mask))
        while table[slot, 1] != 0:
            if table[slot, 0] == key_hash[k]:
                return False
            slot = (slot + 1) & mask
        table[slot, 0] = key_hash[k]
        table[slot, 1] = (np.uint64(key_start[k]) << np.uint64(32)) | np.uint64(key_count[k])
    return True


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


@njit(nogil=True, cache=True)
def _lookups(day, ok, b_off, b_data, b_valid, i_off, i_data, i_valid, c_off, c_data, c_valid, keys, tables, days,
             rows):
    """The as-of look-ups of every key kind into rows: the row of each key's latest history entry strictly before
    the day, or -1. keys[kind] names the kind's one or two argument columns (ARGUMENTS: b, i, c).

    A pass per kind keeps that kind's table in cache, and each pass has three loops (hash, probe, bisect) whose
    iterations do not wait for one another, so the memory reads of many rows are under way at once."""
    sep, prime = np.uint64(31), np.uint64(FNV_PRIME)
    n = day.shape[0]
    hashes, todo, lo, hi = np.empty(n, np.uint64), np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    for kind in range(keys.shape[0]):
        a, z = keys[kind, 0], keys[kind, 1]
        two = z >= 0
        z = z if two else a
        a_off, a_data, a_valid = (b_off, b_data, b_valid) if a == 0 else (i_off, i_data, i_valid) if a == 1 else \
            (c_off, c_data, c_valid)
        z_off, z_data, z_valid = (b_off, b_data, b_valid) if z == 0 else (i_off, i_data, i_valid) if z == 1 else \
            (c_off, c_data, c_valid)
        state = h = np.uint64(0)
        prev_s = prev_e = np.int64(-1)
        prev_ok = False  # whether the row before had a key of this kind
        m = 0
        for r in range(n):
            rows[kind, r] = -1
            if not (ok[r] and a_valid[r] and z_valid[r]):
                prev_ok = False
                continue
            s, e = np.int64(a_off[r]), np.int64(a_off[r + 1])
            if prev_s < 0 or not same_bytes(a_data, s, e, prev_s, prev_e):  # a branch or customer repeats
                state = fnv(_seed(kind), a_off, a_data, r)
                prev_s, prev_e = s, e
            same = prev_ok and day[r] == day[r - 1]
            prev_h = h
            h = fmix64(fnv((state ^ sep) * prime, z_off, z_data, r) if two else state)
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
def _fill(day, hour, price, days, f32, f64, divisor, hashed, calendar, unit_price, ratios, stats, hashed_cols, rows,
          out):
    """The feature matrix in the plan's columns (a loop per group of columns: small loop bodies let the history
    reads of many rows overlap). f32 and f64 are views of the same history rows; the divisor is f64[:, divisor]."""
    n = day.shape[0]
    nan = np.float32(np.nan)
    slots = stats.shape[1] - 1
    for kind in range(stats.shape[0]):
        c = stats[kind]
        if (c < 0).all():
            continue
        for r in range(n):
            row = rows[kind, r]
            if row < 0:
                for k in range(slots + 1):
                    if c[k] >= 0:
                        out[r, c[k]] = nan
                continue
            for k in range(slots):
                if c[k] >= 0:
                    out[r, c[k]] = f32[row, k]
            if c[slots] >= 0:
                out[r, c[slots]] = day[r] - days[row]
    for r in range(n):
        d = np.int64(day[r])
        y, m, dd = _civil(d)
        for j in range(calendar.shape[0]):
            fn, col = calendar[j, 0], calendar[j, 1]
            if col >= 0:  # isodow (1970-01-01 was a Thursday), dayofmonth, month, dayofyear, hour (NaN: unknown)
                out[r, col] = (d + 3) % 7 + 1 if fn == 0 else dd if fn == 1 else m if fn == 2 else \
                    d - _jan1(y) + 1 if fn == 3 else hour[r]
        if unit_price >= 0:
            out[r, unit_price] = price[r]
        for j in range(ratios.shape[0]):  # the price over a key's mean earlier price, in float64 as in the view
            col = ratios[j, 1]
            if col >= 0:
                row = rows[ratios[j, 0], r]
                out[r, col] = price[r] / f64[row, divisor] if row >= 0 else np.nan
        for k in range(hashed.shape[1]):
            if hashed_cols[k] >= 0:
                out[r, hashed_cols[k]] = hashed[r, k]


# ---- the history index -------------------------------------------------------------------------------------------

class HistoryIndex:
    """The history table in numpy arrays for as-of look-ups (empty when con is None): per kind, a hash table from
    key to its run of rows in `hist` (the layout's rows, sorted by day within a key).

    For a database file the arrays are files in a folder beside it (FILE.index/), written by the first process
    that needs this version of history and memory-mapped by every process after: one copy in the page cache
    however many processes predict, nothing to build at start-up, and the memory of the pages a query touches
    only. A load or a rebuild makes a new version (the old one is removed); deleting the folder is always safe.
    In-memory databases, and files whose folder cannot be written, build the arrays in memory."""

    @classmethod
    def of(cls, definition: Definition, con=None) -> HistoryIndex:
        return cls(Layout.of(definition), con)

    def __init__(self, layout: Layout, con=None, arrays: dict[str, np.ndarray] | None = None):
        """`arrays`: those build() made (another engine's history, e.g. Spark's), instead of con's."""
        self.layout = layout
        kinds = len(layout.definition.kinds)
        if con is None and arrays is None:
            self.hist, self.days = np.zeros(0, layout.row), np.zeros(0, np.int32)
            self.tables = tuple(np.zeros((16, 2), np.uint64) for _ in range(kinds))
        else:
            arrays = arrays or _mapped(layout, con)
            self.hist, self.days = arrays["hist"], arrays["days"]
            self.tables = tuple(arrays[f"table_{k}"] for k in range(kinds))
        raw = self.hist.view(np.uint8).reshape(len(self.hist), layout.row.itemsize)
        self.f32 = raw.view(np.float32)  # the float32 slots by position, and the divisor's float64 one
        self.f64 = raw.view(np.float64)
        self.divisor = layout.row.fields[layout.definition.divisor][1] // 8


INDEX_FORMAT = 1  # of the files: a change makes every process build them again


def index_folder(con):
    """FILE.index beside con's database file (not made here), or None for an in-memory database or a folder that
    cannot be written."""

    path = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()[0][0]
    return Path(f"{path}.index") if path and os.access(Path(path).parent, os.W_OK) else None


def write_folder(done, write, earlier) -> OSError | None:
    """Make folder `done` in FILE.index/ with write(folder): whole or not at all (another process may finish first),
    then remove the folders there for which earlier(path) holds (processes that map their files keep the pages).
    The error when it cannot be written."""

    tmp = None
    try:
        done.parent.mkdir(exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=done.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the index is as readable as the database
        write(tmp)
        os.rename(tmp, done)
    except OSError as e:
        if not done.is_dir():
            return e
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    for old in done.parent.iterdir():
        if old != done and earlier(old):
            shutil.rmtree(old, ignore_errors=True)
    return None


def _mapped(layout: Layout, con) -> dict[str, np.ndarray]:
    """The index arrays of the history in con's database: mapped from their files, built into them first when
    this version of history has none, or built in memory when there is no file or folder to write."""

    meta = history_built(con)
    folder = index_folder(con) if meta else None
    if folder is None:
        return build(layout, con, None)
    digest = hashlib.sha256(json.dumps([INDEX_FORMAT, str(layout.row.descr), layout.definition.as_dict(),
                                        sorted(meta.items())], sort_keys=True).encode()).hexdigest()[:20]
    done = folder / digest
    if not done.is_dir():
        failed = write_folder(done, lambda tmp: build(layout, con, tmp),
                              lambda old: not old.name.startswith(("compiled-", ".building-")))  # compiled: serving's
        if failed:
            log.warning("the history index cannot be written beside the database (%s); building it in memory", failed)
            return build(layout, con, None)
    return mapped(done)


def mapped(folder) -> dict[str, np.ndarray]:
    """The index arrays build() wrote into a folder, memory-mapped."""
    return {f.stem: np.load(f, mmap_mode="r") for f in folder.glob("*.npy")}


def build(layout: Layout, con, folder) -> dict[str, np.ndarray]:
    """Read history kind by kind, in key and day order, in batches, into the arrays (files in `folder`, or
    memory): rows, days and one hash table per kind."""
    def array(name, shape, dtype):
        return np.zeros(shape, dtype) if folder is None else \
            np.lib.format.open_memmap(folder / f"{name}.npy", "w+", dtype, shape)

    kinds = layout.definition.kinds
    counts = {k: (n, d) for k, n, d in con.execute("SELECT kind, count(*), count(DISTINCT key) FROM history "
                                                    "GROUP BY kind").fetchall()}
    total = sum(counts.get(k.name, (0, 0))[0] for k in kinds)
    out = {"hist": array("hist", (total,), layout.row), "days": array("days", (total,), np.int32)}
    columns = ", ".join(layout.row.names)
    cur = con.cursor()
    at = 0
    for kind_id, kind in enumerate(kinds):
        n, distinct = counts.get(kind.name, (0, 0))
        hashes = np.empty(n, np.uint64)
        reader = cur.sql(f"""SELECT key, CAST(sale_day - DATE '1970-01-01' AS INTEGER) AS day, {columns}
                             FROM history WHERE kind = ? ORDER BY key, sale_day""",
                         params=[kind.name]).to_arrow_reader(1 << 20)
        i = 0
        for rb in reader:
            m, j = rb.num_rows, at + i
            _key_hashes(kind_id, *string_buffers(rb.column(0))[:2], hashes[i:i + m])
            out["days"][j:j + m] = rb.column(1).to_numpy()
            for name in layout.row.names:
                out["hist"][name][j:j + m] = rb.column(name).to_numpy(zero_copy_only=False)
            i += m
        first = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]])[:n]
        table = array(f"table_{kind_id}", (1 << max(int(2 * len(first)).bit_length(), 4), 2), np.uint64)
        if len(first) != distinct or not _build_table(hashes[first], first + at, np.diff(np.append(first, n)), table):
            raise RuntimeError(f"two {kind.name} keys share a 64-bit hash; predictions cannot look history up")
        out[f"table_{kind_id}"] = table
        at += n
    cur.close()
    for a in out.values():
        if isinstance(a, np.memmap):
            a.flush()
    return out


# ---- one batch of arguments -> features ----------------------------------------------------------------------

SPLIT_ROWS = 100_000  # batches this long (bulk scoring) compute their features on two threads, if they may


class Batch:
    """The arguments of predict_sales for some rows; after matrix() or heuristic(), `rows` holds the history row
    found for each key kind and row, or -1."""

    def __init__(self, index: HistoryIndex, day, branch, item, price, customer, threads: int = 2):
        """`day`: the sale times (TIMESTAMP, what the prediction functions hand over; midnight = no time of day) or
        days (DATE: the hour is unknown). `threads`: the cores a batch of SPLIT_ROWS or more may use (1: one)."""
        self.threads = threads
        day = day.combine_chunks() if isinstance(day, pa.ChunkedArray) else day
        self.n = len(day)
        self.hour = np.full(self.n, np.nan, np.float32)
        if pa.types.is_timestamp(day.type):
            us = pc.cast(day, pa.timestamp("us")).cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
            days, into = np.divmod(us, _DAY_US)
            raw = np.clip(days, FIRST_DAY - 1, LAST_DAY + 1).astype(np.int32)  # +-infinity: out of range
            self.hour[into != 0] = into[into != 0] // _HOUR_US
        elif day.type == pa.date32() and self.n:  # the day numbers as they are
            raw = np.frombuffer(day.buffers()[1], np.int32, self.n, day.offset * 4)
        else:
            raw = pc.cast(day, pa.int32()).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int32)
        valid = day.is_valid().to_numpy(zero_copy_only=False) if day.null_count else True
        self.ok_day = valid & (raw >= FIRST_DAY) & (raw <= LAST_DAY)
        self.day = np.where(self.ok_day, raw, 0).astype(np.int32)
        price = pc.cast(price, pa.float64()) if price.type != pa.float64() else price
        self.price = price.to_numpy(zero_copy_only=False)
        self.ok_price = ~inputs.not_a_price(price)  # NaN: given but no number (NULL: no price)
        self.ok = self.ok_day & self.ok_price
        self.index = index
        self.keys = [string_buffers(a) for a in (branch, item, customer)]  # in ARGUMENTS order
        self.rows = None

    def matrix(self, plan: Plan | dict) -> np.ndarray:
        """float32 features in spec order, as to_matrix gives them from training_set (`plan`: the index's
        layout's plan of a spec, or the spec itself)."""
        return self._run(self.index.layout.plan(plan) if isinstance(plan, dict) else plan)

    def _run(self, plan: Plan | None):
        out = np.empty((self.n, plan.width if plan else 0), np.float32)
        index = self.index
        self.rows = np.empty((len(index.tables), self.n), np.int64)

        def part(a, b):
            keys = [x for off, data, valid in self.keys for x in (off[a:b + 1], data, valid[a:b])]
            rows = self.rows[:, a:b]
            _lookups(self.day[a:b], self.ok_day[a:b], *keys, index.layout.keys, index.tables, index.days, rows)
            if plan is not None:
                hashed = np.zeros((b - a, len(plan.hashed)), np.float32)  # features.py's hashed terms
                hash_kernel(*keys[:6], hashed.shape[1], hashed)
                _fill(self.day[a:b], self.hour[a:b], self.price[a:b], index.days, index.f32, index.f64, index.divisor, hashed,
                      plan.calendar, plan.unit_price, plan.ratios, plan.stats, plan.hashed, rows, out[a:b])

        if self.n < SPLIT_ROWS or self.threads < 2:
            part(0, self.n)
        else:  # a bulk batch: both halves at once (the kernels release the GIL)
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(part, (0, self.n // 2), (self.n // 2, self.n)))
        return out

    def heuristic(self) -> np.ndarray:
        """The fallback's probabilities: the branch x item's class shares before the day, else the item's, else all
        on LOW (the seed system's safe mode; kinds or shares the definition lacks count as unknown)."""
        proba = np.zeros((self.n, 3), np.float32)
        proba[:, 0] = 1.0
        if self.rows is None:
            self._run(None)  # look-ups alone
        layout = self.index.layout
        kinds = [k.name for k in layout.definition.kinds]
        if not {"share_low", "share_high"} <= set(layout.stats):
            return proba
        for name in ("item", "branch_item"):  # branch x item wins where both are known
            if name not in kinds:
                continue
            rows = self.rows[kinds.index(name)]
            found = self.index.hist[rows[rows >= 0]]
            sl, sh = found["share_low"], found["share_high"]
            proba[rows >= 0] = np.column_stack([sl, np.clip(1.0 - sl - sh, 0.0, 1.0), sh])
        return proba


def to_matrix(table: pa.Table, spec: dict) -> np.ndarray:
    """float32 feature matrix in spec order from the columns of training_set (NULL -> NaN, which XGBoost treats as
    missing)."""
    n = table.num_rows
    out = np.empty((n, len(spec["features"])), np.float32)
    hashed_at = None
    for j, name in enumerate(spec["features"]):
        if name.startswith("hashed_"):
            hashed_at = j if hashed_at is None else hashed_at
            continue
        out[:, j] = pc.cast(table[name], pa.float32()).to_numpy(zero_copy_only=False)
    if hashed_at is not None:
        flat = table["hashed"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
        out[:, hashed_at:hashed_at + spec["buckets"]] = flat.reshape(n, spec["buckets"])
    return out
