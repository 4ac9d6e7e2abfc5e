"""hash_features: a stable, documented hash; signed one-hot terms for branch, item and their cross."""
import numpy as np
import pyarrow as pa
from hypothesis import given, settings as hsettings, strategies as st

from sales_sql.features import hash_matrix

M64 = (1 << 64) - 1


def _fmix(h):
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & M64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & M64
    return h ^ (h >> 33)


def ref_key_hash(s: str, seed: int) -> int:
    """The hash as the features module documents it, written plainly."""
    h = 0xCBF29CE484222325 ^ seed
    for b in s.encode("utf-8"):
        h = ((h ^ b) * 0x100000001B3) & M64
    return _fmix(h)


def ref_row(branch, item, buckets=20):
    out = np.zeros(buckets, np.float32)
    hashes = []
    if branch:
        hashes.append(hb := ref_key_hash(branch, 1))
    if item:
        hashes.append(hi := ref_key_hash(item, 2))
    if branch and item:
        hashes.append(_fmix((hb * 0x9E3779B97F4A7C15 + hi) & M64))
    for h in hashes:
        out[((h & 0xFFFFFFFF) * buckets) >> 32] += 1.0 if h >> 63 else -1.0
    return out


# Pinned values: if any of these change, every stored model's features change. Never edit them.
KEY_VECTORS = [
    ("1", 1, 0x0C1E42AF088FF1B2C),
    ("10001", 2, 0x0147EE2657154734),
    ("United Kingdom", 1, 0x0F7E01100612788F),
    ("85123A", 2, 0x6D6A90FE6596E187),
    ("\u00c4\u00d6\u20ac\U0001f600", 2, 0x0767BFB650A49503),
]
ROW_VECTORS = [  # (branch, item) -> {bucket: value} with 20 buckets
    (("1", "10001"), {6: -1.0, 10: 1.0, 11: 1.0}),
    (("United Kingdom", "85123A"), {0: -1.0, 7: -1.0, 15: -1.0}),
    (("2", "10002"), {2: 1.0, 3: 1.0, 6: -1.0}),
    (("\u0395\u03bb\u03bb\u03ac\u03b4\u03b1", "\u00df"), {0: 1.0, 3: -1.0, 17: -1.0}),
]


def test_key_hash_matches_pinned_vectors():
    for text, seed, expected in KEY_VECTORS:
        assert ref_key_hash(text, seed) == expected, text


def test_hash_features_match_pinned_rows():
    m = hash_matrix([b for (b, _), _ in ROW_VECTORS], [i for (_, i), _ in ROW_VECTORS], 20)
    for row, (_, expected) in zip(m, ROW_VECTORS):
        assert {int(k): float(row[k]) for k in np.flatnonzero(row)} == expected


keys = st.one_of(st.none(), st.text(max_size=40))


@hsettings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(keys, keys), min_size=1, max_size=50), st.integers(3, 64))
def test_kernel_equals_the_documented_hash(rows, buckets):
    m = hash_matrix([b for b, _ in rows], [i for _, i in rows], buckets)
    assert m.shape == (len(rows), buckets)
    for got, (b, i) in zip(m, rows):
        np.testing.assert_array_equal(got, ref_row(b, i, buckets))


@hsettings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1), st.text(min_size=1)), min_size=1, max_size=30), st.integers(3, 64))
def test_every_row_has_three_unit_terms_in_range(rows, buckets):
    m = hash_matrix([b for b, _ in rows], [i for _, i in rows], buckets)
    # three terms of +-1 each: total absolute mass 3 (terms may cancel or stack in one bucket)
    assert np.all(np.abs(m).sum(axis=1) <= 3)
    assert np.all((np.abs(m).sum(axis=1) % 2) == 1)  # 3 or 1: an odd count of +-1 terms never sums to even
    assert np.all(np.abs(m) <= 3)


def test_null_and_empty_keys_add_no_term():
    m = hash_matrix(["1", None, "", "1", None], ["10001", "10001", "10001", None, None], 20)
    only_item = ref_row(None, "10001")
    np.testing.assert_array_equal(m[1], only_item)
    np.testing.assert_array_equal(m[2], only_item)  # empty is treated as missing, like NULL
    np.testing.assert_array_equal(m[3], ref_row("1", None))
    assert not m[4].any()
    assert np.abs(m[0]).sum() in (1, 3)


def test_sliced_and_chunked_arrays_hash_like_plain_ones():
    branches = pa.array(["a", "b", None, "c", "d", "e"])
    items = pa.array(["x", "y", "z", "", "w", "v"])
    whole = hash_matrix(branches, items)
    np.testing.assert_array_equal(hash_matrix(branches.slice(2), items.slice(2)), whole[2:])
    chunked_b = pa.chunked_array([branches.slice(0, 3), branches.slice(3)])
    chunked_i = pa.chunked_array([items.slice(0, 2), items.slice(2)])
    np.testing.assert_array_equal(hash_matrix(chunked_b, chunked_i), whole)
    np.testing.assert_array_equal(hash_matrix(branches.cast(pa.large_string()), items), whole)


def test_unicode_codes_hash_by_their_utf8_bytes_without_normalising():
    nfc, nfd = "\u00e9", "e\u0301"  # the same letter, two encodings
    m = hash_matrix([nfc, nfd], ["x", "x"])
    np.testing.assert_array_equal(m[0], ref_row(nfc, "x"))
    np.testing.assert_array_equal(m[1], ref_row(nfd, "x"))
    assert not np.array_equal(m[0], m[1])


def test_sql_udf_returns_float_array_and_handles_nulls(con):
    rows = con.sql("""
        SELECT hash_features(b, i) AS h, typeof(hash_features(b, i)) AS t
        FROM (VALUES ('1', '10001'), (NULL, '10001'), ('', ''), (NULL, NULL)) v(b, i)""").fetchall()
    assert rows[0][1] == "FLOAT[20]"
    np.testing.assert_array_equal(np.array(rows[0][0]), ref_row("1", "10001"))
    np.testing.assert_array_equal(np.array(rows[1][0]), ref_row(None, "10001"))
    assert not any(rows[2][0]) and not any(rows[3][0])


def test_sql_udf_over_many_batches_equals_the_kernel(con):
    got = con.sql("""SELECT hash_features(CAST(i % 37 AS VARCHAR), 'item' || CAST(i % 1009 AS VARCHAR))
                     FROM range(10000) t(i) ORDER BY i""").fetchall()
    expected = hash_matrix([str(i % 37) for i in range(10000)], [f"item{i % 1009}" for i in range(10000)])
    np.testing.assert_array_equal(np.array([r[0] for r in got]), expected)
