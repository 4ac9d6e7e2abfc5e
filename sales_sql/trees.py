"""The deployed booster's trees in flat arrays, walked by a numba kernel: XGBoost's own predictions
(`inplace_predict`), bit for bit, at less cost per row and per call.

DuckDB hands a UDF 2048 rows per call. XGBoost's predictor pays per call (its thread pool, a walk over every
tree for its depth) and costs more per row on one core than this kernel, which walks a block of rows through one
tree a level at a time so that the reads of many rows are under way at once (a few rows, as one REST request's
line, go through many trees at once: one line's walk takes half the time). Margins are summed in XGBoost's order
(its base score, then the trees in order, in float32) and turned into probabilities by its softmax, so the
answers are the same bits; `Trees.of` checks that on probe rows before it is used, and hands back None for a
model it cannot reproduce (then predictions keep XGBoost's predictor).
"""
from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

log = logging.getLogger("sales_sql")

# one node: its split value (NaN in a leaf, so that every row stays there), feature, left child (the leaf itself in
# a leaf; the right child follows the left) and 1 where a missing value goes right. Unsigned, so that numba
# indexes with them without a check for negative indices (a third of the time)
NODE = np.dtype([("split", np.float32), ("feature", np.uint32), ("left", np.uint32), ("missing_right", np.uint32)])
_BLOCK = 128  # rows walked together: their feature rows (26 KB here) and one tree's nodes stay in L1


@njit(nogil=True, cache=True, inline="always")
def _walk(nodes, rows, at, o, m):
    """One level down for rows 0..m-1, whose nodes are at[o:o + m]."""
    for r in range(m):
        node = nodes[at[o + r]]
        x = rows[r, node.feature]
        # XGBoost: missing -> the default child, else x < split -> left; NaN splits keep leaves still
        at[o + r] = node.left + ((x >= node.split) | ((x != x) & node.missing_right))


@njit(nogil=True, cache=True)
def _proba(X, nodes, leaf, roots, depth, group, base, out):
    """XGBoost's multi:softprob prediction of each row of X into out (rows x classes, float32)."""
    n, classes, trees = X.shape[0], base.shape[0], roots.shape[0]
    at = np.empty(_BLOCK, np.uint32)
    for a in range(0, n, _BLOCK):
        m = min(_BLOCK, n - a)
        k = _BLOCK // m  # trees walked together: a block of few rows (one line) keeps as many reads under way
        for r in range(a, a + m):
            for g in range(classes):
                out[r, g] = base[g]
        rows = X[a:a + m]
        if k == 1:  # the walk below with k = 1, kept apart: numba compiles this one about a third faster
            for t in range(trees):
                for r in range(m):
                    at[r] = roots[t]
                for _ in range(depth[t]):
                    _walk(nodes, rows, at, 0, m)
                g = group[t]
                for r in range(m):
                    out[a + r, g] += leaf[at[r]]
        else:  # few rows: k trees at once, their leaves added in the trees' order
            for t0 in range(0, trees, k):
                t1 = min(t0 + k, trees)
                levels = 0
                for t in range(t0, t1):
                    levels = max(levels, depth[t])
                    for r in range(m):
                        at[(t - t0) * m + r] = roots[t]
                for _ in range(levels):
                    for o in range(0, (t1 - t0) * m, m):
                        _walk(nodes, rows, at, o, m)
                for t in range(t0, t1):
                    g = group[t]
                    for r in range(m):
                        out[a + r, g] += leaf[at[(t - t0) * m + r]]
        for r in range(a, a + m):  # XGBoost's common::Softmax: float max, expf, a double sum, a float division
            w = out[r, 0]
            for g in range(1, classes):
                w = max(out[r, g], w)
            total = 0.0
            for g in range(classes):
                out[r, g] = np.exp(out[r, g] - w)
                total += out[r, g]
            for g in range(classes):
                out[r, g] /= np.float32(total)


# UBJSON's number markers (big-endian), and the length of one value of each
_UBJ = {b"i": ">i1", b"U": ">u1", b"I": ">i2", b"l": ">i4", b"L": ">i8", b"d": ">f4", b"D": ">f8", b"C": "S1"}


# per-node arrays of XGBoost's model that the kernel does not read: skipped, not copied
_UNREAD = frozenset({"loss_changes", "sum_hessian", "base_weights", "parents", "categories", "categories_nodes",
                     "categories_segments", "categories_sizes"})


def ubjson(raw) -> dict:
    """A UBJSON document (XGBoost's save_raw("ubj")) as Python values, each typed array as one numpy array (the
    per-node arrays the kernel does not read as None): the trees of a large model take their own size in memory,
    where json.loads of the same model takes ten times it."""
    buf = memoryview(raw).cast("B")
    pos = 0
    skip = False

    def take(n):  # markers as bytes, payloads as views
        nonlocal pos
        pos += n
        return bytes(buf[pos - n:pos]) if n <= 2 else buf[pos - n:pos]

    def number(marker):
        dtype = np.dtype(_UBJ[marker])
        return np.frombuffer(take(dtype.itemsize), dtype)[0].item()

    def text():
        return bytes(take(number(take(1)))).decode()

    def value(marker):
        nonlocal skip
        if marker in _UBJ:
            return number(marker)
        if marker in (b"S", b"H"):
            return text()
        if marker in (b"T", b"F", b"Z"):
            return {b"T": True, b"F": False, b"Z": None}[marker]
        if marker not in (b"[", b"{"):
            raise ValueError(f"UBJSON marker {marker!r} at byte {pos - 1}")
        kind = take(2)[1:] if buf[pos:pos + 1] == b"$" else None  # an optimized container: one type, a count
        count = number(take(2)[1:]) if buf[pos:pos + 1] == b"#" else None
        if marker == b"[" and kind in _UBJ and count is not None:  # a typed array: one numpy array
            dtype = np.dtype(_UBJ[kind])
            data = take(dtype.itemsize * count)
            return None if skip else np.frombuffer(data, dtype).astype(dtype.newbyteorder("="))
        out = [] if marker == b"[" else {}
        end = b"]" if marker == b"[" else b"}"
        while len(out) != count if count is not None else buf[pos:pos + 1] != end:
            if marker == b"[":
                out.append(value(kind or take(1)))
            else:
                key = text()
                skip = key in _UNREAD
                out[key] = value(kind or take(1))
                skip = False
        if count is None:
            take(1)
        return out

    return value(take(1))


def depths(booster) -> np.ndarray:
    """Each tree's depth (any tree kind): their sum is the levels a line walks through the model, its cost to
    predict."""
    return tree_depths(ubjson(booster.save_raw("ubj"))["learner"]["gradient_booster"]["model"]["trees"])


def tree_depths(trees: list[dict]) -> np.ndarray:
    """The depth of each tree of a model's JSON (its `trees` list)."""
    out = np.zeros(len(trees), np.int32)
    for t, tree in enumerate(trees):
        left, right = np.asarray(tree["left_children"]), np.asarray(tree["right_children"])
        level = np.zeros(len(left), np.int32)
        for i in np.flatnonzero(left >= 0):  # children always come after their parent
            level[left[i]] = level[right[i]] = level[i] + 1
        out[t] = level.max()
    return out


class Trees:
    """A multi:softprob gbtree booster's trees, ready for _proba."""

    def __init__(self, booster):
        """ValueError when the model uses something _proba does not reproduce."""
        model = ubjson(booster.save_raw("ubj"))["learner"]
        self.features = int(model["learner_model_param"]["num_feature"])
        gbm = model["gradient_booster"]
        if model["objective"]["name"] != "multi:softprob" or gbm["name"] != "gbtree":
            raise ValueError(f"objective {model['objective']['name']}, booster {gbm['name']}")
        trees, base = gbm["model"]["trees"], model["learner_model_param"]["base_score"]
        classes = int(model["learner_model_param"]["num_class"])
        base = json.loads(base) if base.startswith("[") else [float(base)] * classes  # a string in the model
        sizes = [len(t["left_children"]) for t in trees]
        self.nodes = np.empty(sum(sizes), NODE)
        self.leaf = np.zeros(sum(sizes), np.float32)
        self.roots = np.cumsum([0, *sizes[:-1]]).astype(np.uint32)
        self.depth = tree_depths(trees)
        self.group = np.array(gbm["model"]["tree_info"], np.int32)
        self.base = np.array(base, np.float32)
        for t, (tree, root, size) in enumerate(zip(trees, self.roots, sizes)):
            left, right = np.array(tree["left_children"]), np.array(tree["right_children"])
            feature, split = np.array(tree["split_indices"]), np.array(tree["split_conditions"], np.float32)
            inner = left >= 0
            if (any(tree["split_type"]) or int(tree["tree_param"]["size_leaf_vector"]) > 1
                    or (right[inner] != left[inner] + 1).any()):
                raise ValueError(f"tree {t} has categorical splits, vector leaves or a layout this kernel lacks")
            node = self.nodes[root:root + size]
            node["split"] = np.where(inner, split, np.nan)
            node["feature"] = np.where(inner, feature, 0)
            node["left"] = root + np.where(inner, left, np.arange(size))
            node["missing_right"] = inner & ~np.array(tree["default_left"], bool)
            self.leaf[root:root + size] = np.where(inner, 0, split)  # a leaf's value is in split_conditions

    ARRAYS = ("nodes", "leaf", "roots", "depth", "group", "base")

    def save(self, folder) -> None:
        """The arrays as .npy files in `folder` (for load)."""
        for name in self.ARRAYS:
            np.save(folder / f"{name}.npy", getattr(self, name))
        np.save(folder / "features.npy", np.int64(self.features))

    @classmethod
    def load(cls, folder) -> Trees:
        """Trees saved in `folder`, memory-mapped (the pages are shared by every process that predicts)."""
        trees = cls.__new__(cls)
        for name in cls.ARRAYS:
            setattr(trees, name, np.load(folder / f"{name}.npy", mmap_mode="r"))
        trees.features = int(np.load(folder / "features.npy"))
        return trees

    @classmethod
    def compile(cls, booster) -> tuple[Trees | None, str]:
        """(the booster's Trees, "") if they give its inplace_predict's answers bit for bit on probe rows, else
        (None, why not), saying why in the log."""
        try:
            trees = cls(booster)
            probe = trees.probe_rows(trees.features, 4096 + 3)  # the last 3 rows walk many trees at once
            why = "" if np.array_equal(trees.proba(probe), booster.inplace_predict(probe)) else \
                "its compiled trees disagree with it"
        except Exception as e:  # noqa: BLE001  a model the kernel does not reproduce, or numba failing: no failed query
            why = str(e) or type(e).__name__
        if why:
            log.warning("sales_sql predicts with XGBoost's own predictor: %s", why)
            return None, why
        return trees, ""

    @classmethod
    def of(cls, booster) -> Trees | None:
        """compile()'s Trees, or None."""
        return cls.compile(booster)[0]

    def probe_rows(self, width: int, rows: int = 4096) -> np.ndarray:
        """Rows whose every feature is one of the model's split values on it, the float just below one, a missing
        value, an infinity or zero: the edges of every split."""
        rng = np.random.default_rng(0)
        inner = ~np.isnan(self.nodes["split"])
        out = np.empty((rows, width), np.float32)
        for f in range(width):
            split = np.unique(self.nodes["split"][inner & (self.nodes["feature"] == f)])
            out[:, f] = rng.choice(np.concatenate([split, np.nextafter(split, np.float32(-np.inf)),
                                                   np.float32([np.nan, np.inf, -np.inf, 0.0])]), rows)
        return out

    def proba(self, X: np.ndarray, threads: int = 1) -> np.ndarray:
        """Class probabilities of each row of X (float32, contiguous), on `threads` threads."""
        X = np.ascontiguousarray(X, np.float32)
        out = np.empty((len(X), len(self.base)), np.float32)
        args = (self.nodes, self.leaf, self.roots, self.depth, self.group, self.base)
        if threads == 1:
            _proba(X, *args, out)
        else:
            parts = np.linspace(0, len(X), threads + 1).astype(int)
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(lambda a, b: _proba(X[a:b], *args, out[a:b]), parts[:-1], parts[1:]))
        return out
