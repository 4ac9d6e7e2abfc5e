"""Stable feature hashing over Arrow string arrays (engine-agnostic: Arrow in, numpy/Arrow out).

Each row gets a FLOAT[buckets] vector made of three signed one-hot terms (the hashing trick):
branch, item and the branch x item cross. The hash is defined here, byte for byte, so it is the
same in every process, on every machine and under any Python or DuckDB version:

    key_hash(s, seed) = fmix64(FNV-1a-64 over the UTF-8 bytes of s, started from 0xcbf29ce484222325 ^ seed)
    branch term:  h = key_hash(branch, 1)      item term: h = key_hash(item, 2)
    cross term:   h = fmix64(h_branch * 0x9E3779B97F4A7C15 + h_item)   (mod 2**64)
    bucket = ((h & 0xFFFFFFFF) * buckets) >> 32      sign = +1 if the top bit of h is set else -1

A NULL or empty branch (or item) adds no term, and the cross needs both, so NULL/NULL is all zeros.
Strings are hashed as given: no trimming or Unicode normalisation (the loader trims keys).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from numba import njit

BRANCH_SEED = 1
ITEM_SEED = 2
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
_GOLDEN = 0x9E3779B97F4A7C15


@njit(nogil=True, cache=True, inline="always")
def fmix64(h):
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


@njit(nogil=True, cache=True, inline="always")
def fnv(h, off, data, r):
    """FNV-1a-64 from state h over the bytes of string r of an Arrow column (offsets, data)."""
    prime = np.uint64(FNV_PRIME)
    for k in range(off[r], off[r + 1]):
        h = (h ^ np.uint64(data[k])) * prime
    return h


@njit(nogil=True, cache=True, inline="always")
def same_bytes(data, s, e, ps, pe):
    if e - s != pe - ps:
        return False
    for k in range(e - s):
        if data[s + k] != data[ps + k]:
            return False
    return True


@njit(nogil=True, cache=True)
def _column_hashes(offsets, data, valid, seed, out, present):
    """key_hash of every string of one Arrow column; a run of equal strings is hashed once."""
    prev_s = np.int64(-1)
    prev_e = np.int64(-1)
    prev_h = np.uint64(0)
    for r in range(out.shape[0]):
        s = np.int64(offsets[r])
        e = np.int64(offsets[r + 1])
        present[r] = valid[r] and e > s
        if prev_s >= 0 and same_bytes(data, s, e, prev_s, prev_e):
            out[r] = prev_h
            continue
        h = fmix64(fnv(np.uint64(FNV_OFFSET) ^ seed, offsets, data, r))
        out[r] = h
        prev_s, prev_e, prev_h = s, e, h


@njit(nogil=True, cache=True, inline="always")
def _add_term(out, r, h, buckets):
    bucket = np.int64(((h & np.uint64(0xFFFFFFFF)) * np.uint64(buckets)) >> np.uint64(32))
    out[r, bucket] += np.float32(1.0) if (h >> np.uint64(63)) else np.float32(-1.0)


@njit(nogil=True, cache=True)
def hash_kernel(b_off, b_data, b_valid, i_off, i_data, i_valid, buckets, out):
    n = out.shape[0]
    hb = np.empty(n, np.uint64)
    hi = np.empty(n, np.uint64)
    has_b = np.empty(n, np.bool_)
    has_i = np.empty(n, np.bool_)
    _column_hashes(b_off, b_data, b_valid, np.uint64(BRANCH_SEED), hb, has_b)
    _column_hashes(i_off, i_data, i_valid, np.uint64(ITEM_SEED), hi, has_i)
    for r in range(n):
        if has_b[r]:
            _add_term(out, r, hb[r], buckets)
        if has_i[r]:
            _add_term(out, r, hi[r], buckets)
        if has_b[r] and has_i[r]:
            _add_term(out, r, fmix64(hb[r] * np.uint64(_GOLDEN) + hi[r]), buckets)


_ALL_VALID = np.ones(4096, np.bool_)
_EMPTY_DATA = np.zeros(1, np.uint8)


def string_buffers(arr) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zero-copy (offsets, bytes, validity) of an Arrow string column."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()
    if arr.type != pa.string():
        arr = arr.cast(pa.string())
    n = len(arr)
    _, offsets, data = arr.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int32, count=n + 1 + arr.offset)[arr.offset:]
    data = _EMPTY_DATA if data is None or data.size == 0 else np.frombuffer(data, dtype=np.uint8)
    if arr.null_count:
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
    else:
        valid = _ALL_VALID[:n] if n <= _ALL_VALID.size else np.ones(n, np.bool_)
    return offsets, data, valid


def hash_matrix(branch, item, buckets: int = 20) -> np.ndarray:
    """float32 matrix (rows x buckets) of hashed branch, item and branch x item terms.

    `branch` and `item` are Arrow string arrays (or anything pyarrow turns into one).
    """
    if not isinstance(branch, (pa.Array, pa.ChunkedArray)):
        branch = pa.array(branch, pa.string())
    if not isinstance(item, (pa.Array, pa.ChunkedArray)):
        item = pa.array(item, pa.string())
    if len(branch) != len(item):
        raise ValueError(f"branch has {len(branch)} rows but item has {len(item)}")
    out = np.zeros((len(branch), buckets), np.float32)
    hash_kernel(*string_buffers(branch), *string_buffers(item), buckets, out)
    return out


def hash_features_arrow(branch, item, buckets: int = 20) -> pa.FixedSizeListArray:
    """hash_matrix as an Arrow FixedSizeList<float>[buckets] (DuckDB's FLOAT[buckets])."""
    out = hash_matrix(branch, item, buckets)
    return pa.FixedSizeListArray.from_arrays(pa.array(out.ravel()), buckets)
