"""``recsys_spark.common``: ``collect_vectors`` (the catalog's vectors on the driver, for faiss and
the rules) and ``WorkerCache`` (what a Python worker rebuilt from a broadcast)."""

import numpy as np
import pytest

from recsys_spark.common import WorkerCache, collect_vectors
from recsys_spark.recall.base import ChannelUnavailable
from recsys_spark.recall.faiss_index import TrackIndex

SCHEMA = "track_id string, embedding array<float>"


def test_vectors_come_sorted_by_key_without_rows_that_have_none(spark):
    df = spark.createDataFrame([("c", [0.0, 3.0]), ("a", [1.0, 2.0]), ("b", None), ("d", []), (None, [5.0, 5.0])],
                               SCHEMA)
    keys, mat = collect_vectors(df, "track_id", "embedding")
    assert keys.tolist() == ["a", "c"]
    assert mat.dtype == np.float32
    np.testing.assert_array_equal(mat, [[1.0, 2.0], [0.0, 3.0]])


def test_duplicate_keys_raise_or_keep_the_first_as_asked(spark):
    df = spark.createDataFrame([("a", [1.0, 0.0]), ("b", [0.0, 1.0]), ("a", [1.0, 0.0])], SCHEMA)
    with pytest.raises(ValueError, match="track_id must be unique: 'a'"):
        collect_vectors(df, "track_id", "embedding")
    keys, mat = collect_vectors(df, "track_id", "embedding", duplicates="first")
    assert keys.tolist() == ["a", "b"] and mat.shape == (2, 2)
    with pytest.raises(ValueError, match="duplicates must be"):
        collect_vectors(df, "track_id", "embedding", duplicates="last")


def test_bad_vectors_are_refused_by_name_and_no_vectors_give_empty_arrays(spark):
    mixed = spark.createDataFrame([("a", [1.0, 0.0]), ("b", [1.0, 0.0, 0.0])], SCHEMA)
    with pytest.raises(ValueError, match="embedding of track_id has mixed dimensions"):
        collect_vectors(mixed, "track_id", "embedding")
    inf = spark.createDataFrame([("a", [float("inf"), 0.0])], SCHEMA)
    with pytest.raises(ValueError, match="NaN / inf"):
        collect_vectors(inf, "track_id", "embedding")
    keys, mat = collect_vectors(spark.createDataFrame([("a", None)], SCHEMA), "track_id", "embedding")
    assert keys.size == 0 and mat.shape == (0, 0)


def test_the_faiss_index_is_built_over_the_collected_vectors(spark):
    df = spark.createDataFrame([("b", [0.0, 1.0]), ("a", [1.0, 0.0]), ("x", None)], SCHEMA)
    idx = TrackIndex.from_dataframe(df)
    assert idx.ids.tolist() == ["a", "b"]
    scores, pos = idx.search(np.array([[0.0, 1.0]], dtype=np.float32), 1)
    assert idx.ids[pos[0, 0]] == "b"
    with pytest.raises(ValueError, match="must be unique"):
        TrackIndex.from_dataframe(df.unionByName(df.limit(1)))
    with pytest.raises(ChannelUnavailable, match="no track vectors"):
        TrackIndex.from_dataframe(df.where("track_id = 'x'"))


def test_worker_cache_builds_once_per_token_and_drops_the_oldest():
    built = []

    def build(name):
        return lambda: built.append(name) or f"object {name}"

    cache = WorkerCache(max_items=2)
    assert cache.get("a", build("a")) == "object a"
    assert cache.get("a", build("a again")) == "object a"   # kept: not rebuilt
    cache.put("b", "driver's b")                            # the driver's own copy, never built
    assert cache.get("b", build("b")) == "driver's b"
    assert cache.get("c", build("c")) == "object c"         # a third token: "a", the oldest, goes
    assert built == ["a", "c"] and "a" not in cache and len(cache) == 2
    assert cache.get("a", build("a rebuilt")) == "object a rebuilt"
    assert "b" not in cache and "c" in cache                # "b" was then the oldest
    with pytest.raises(ValueError, match="max_items"):
        WorkerCache(0)
