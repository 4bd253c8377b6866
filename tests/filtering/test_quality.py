"""Quality score on hand-made counts and the filter with back-fill."""

import pytest
from chispa import assert_df_equality
from pyspark.sql import types as T

from recsys_spark.filtering.quality import apply_quality_filter, quality_scores

COUNTS = T.StructType([
    T.StructField("track_id", T.StringType()),
    T.StructField("play_count", T.LongType()),
    T.StructField("upvote_count", T.LongType()),
    T.StructField("comment_count", T.LongType()),
])
# engagement = upvotes + 2 * comments; mu = (10 + 3 + 0 + 4) / (100 + 3 + 1000 + 97) = 17 / 1200
ROWS = [("t1", 100, 10, 0), ("t2", 3, 3, 0), ("t3", 1000, 0, 0), ("t4", None, None, None),
        ("t5", 97, 2, 1)]


def _q(spark, **kw):
    df = quality_scores(spark.createDataFrame(ROWS, COUNTS), prior_strength=20.0, **kw)
    return {r.track_id: r.quality for r in df.collect()}


def test_quality_ratio_mapping_hand_computed(spark):
    q = _q(spark)
    # s = (eng + 20 mu) / (plays + 20); q = s / (s + mu)
    assert q == pytest.approx({"t1": 0.8581, "t2": 0.9097, "t3": 0.0192, "t4": 0.5, "t5": 0.7210},
                              abs=1e-4)
    # 3 plays and 3 upvotes (raw rate 1.0) is not "perfect"
    assert q["t2"] < 0.95


def test_quality_percentile_mapping(spark):
    # smoothed order: t3 < t4 (= mu) < t5 < t1 < t2 -> mid-rank percentiles
    q = _q(spark, mapping="percentile")
    assert q == pytest.approx({"t3": 0.1, "t4": 0.3, "t5": 0.5, "t1": 0.7, "t2": 0.9})


def test_quality_aesthetics_blend(spark):
    aes = spark.createDataFrame([("t1", 2.0), ("t2", 5.0), ("t3", 8.0)], "track_id string, aesthetics double")
    q = _q(spark, aesthetics_df=aes, aesthetics_weight=0.5)
    # aesthetics min-max scaled over the table: t1 0, t2 0.5, t3 1; t4/t5 keep engagement only
    assert q == pytest.approx({"t1": 0.4291, "t2": 0.7049, "t3": 0.5096, "t4": 0.5, "t5": 0.7210},
                              abs=1e-4)


def test_filter_backfills_in_score_order(spark):
    quality = spark.createDataFrame([("a", 0.9), ("b", 0.1), ("c", 0.2), ("d", 0.8), ("e", 0.05)],
                                    "track_id string, quality double")
    cands = spark.createDataFrame(
        [("u1", "a", 5.0), ("u1", "b", 4.0), ("u1", "c", 3.0), ("u1", "d", 2.0), ("u1", "e", 1.0),
         ("u2", "a", 1.0), ("u2", "b", 9.0), ("u2", "d", 2.0), ("u2", "f", 3.0),  # f: no quality -> 0.5
         ("u3", "b", 1.0), ("u3", "c", 2.0), ("u3", "e", 3.0)],
        "user_id string, track_id string, score double")
    out = apply_quality_filter(cands, quality, threshold=0.3, min_per_user=3)
    expected = spark.createDataFrame(
        [("u1", "a", 5.0, 0.9), ("u1", "b", 4.0, 0.1), ("u1", "d", 2.0, 0.8),   # 2 pass + best below (b)
         ("u2", "a", 1.0, 0.9), ("u2", "d", 2.0, 0.8), ("u2", "f", 3.0, 0.5),   # 3 pass: b dropped
         ("u3", "b", 1.0, 0.1), ("u3", "c", 2.0, 0.2), ("u3", "e", 3.0, 0.05)],  # none pass: all kept
        "user_id string, track_id string, score double, quality double")
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_filter_without_backfill_drops_all_below(spark):
    quality = spark.createDataFrame([("a", 0.9), ("b", 0.1)], "track_id string, quality double")
    cands = spark.createDataFrame([("u1", "a", 1.0), ("u1", "b", 2.0)], "user_id string, track_id string, score double")
    out = apply_quality_filter(cands, quality, threshold=0.3, min_per_user=0)
    assert [r.track_id for r in out.collect()] == ["a"]
