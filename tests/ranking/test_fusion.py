"""Fusion (rank and min-max) and the final score, against hand-computed values."""

import pytest
from chispa import assert_df_equality

from recsys_spark.ranking.fusion import final_score, fuse

SCHEMA = "user_id string, track_id string, channel string, score double, rank int, seed_track_id string"
ROWS = [
    ("u1", "x", "item_cf", 0.9, 1, "s1"),
    ("u1", "y", "item_cf", 0.5, 2, "s2"),
    ("u1", "x", "als", 3.0, 2, None),
    ("u1", "y", "als", 4.0, 1, None),
    ("u1", "z", "content", 0.7, 1, "s3"),
    ("u1", "z", "mystery", 1.0, 1, "s9"),   # not in the weights -> weight 0, still listed
]
WEIGHTS = {"item_cf": 1.0, "als": 2.0, "content": 0.5}
OUT = "user_id string, track_id string, channels array<string>, recall_score double, seed_track_id string"


def test_fuse_rank(spark):
    out = fuse(spark.createDataFrame(ROWS, SCHEMA), WEIGHTS, method="rank", rrf_k=10)
    expected = spark.createDataFrame([
        ("u1", "x", ["als", "item_cf"], 2 / 12 + 1 / 11, "s1"),   # als has no seed -> item_cf's
        ("u1", "y", ["als", "item_cf"], 2 / 11 + 1 / 12, "s2"),
        ("u1", "z", ["content", "mystery"], 0.5 / 11, "s3"),     # content outweighs mystery
    ], OUT)
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True,
                       allow_nan_equality=True)


def test_fuse_minmax(spark):
    out = fuse(spark.createDataFrame(ROWS, SCHEMA), WEIGHTS, method="minmax")
    got = {r.track_id: (r.recall_score, r.channels) for r in out.collect()}
    # item_cf: x 1, y 0; als: x 0, y 1 (x2); content: single -> 1 (x0.5)
    assert got == {"x": (1.0, ["item_cf", "als"]), "y": (2.0, ["als", "item_cf"]),
                   "z": (0.5, ["content", "mystery"])}


def test_fuse_rejects_unknown_method(spark):
    with pytest.raises(ValueError):
        fuse(spark.createDataFrame(ROWS, SCHEMA), WEIGHTS, method="sum")


def test_final_score(spark):
    df = spark.createDataFrame(
        [("u1", "a", 0.2, 0.9), ("u1", "b", 0.1, 0.1), ("u1", "c", 0.3, None), ("u2", "d", 5.0, 0.5)],
        "user_id string, track_id string, recall_score double, din_score double")
    got = {r.track_id: r.final_score for r in final_score(df, din_weight=1.0).collect()}
    # u1 recall scaled a .5 b 0 c 1; din scaled a 1 b 0 c null -> a .75, b 0, c 1 (recall only)
    assert got == pytest.approx({"a": 0.75, "b": 0.0, "c": 1.0, "d": 1.0})
    got3 = {r.track_id: r.final_score for r in final_score(df, din_weight=3.0).collect()}
    assert got3["a"] == pytest.approx(0.875)
    # without a din column: recall only
    got0 = {r.track_id: r.final_score for r in final_score(df.drop("din_score"), din_weight=1.0).collect()}
    assert got0 == pytest.approx({"a": 0.5, "b": 0.0, "c": 1.0, "d": 1.0})


def test_fuse_partitioned_by_user_gives_the_same_rows(spark):
    # the weekly job hash-partitions by user before fusing; duplicates of a channel keep the best rank
    rows = ROWS + [("u1", "x", "item_cf", 0.1, 7, "s7"),     # worse duplicate of (u1, x, item_cf): ignored
                   ("u2", "x", "als", 1.0, 1, None), ("u2", "q", "content", 0.2, 3, "s4")]
    df = spark.createDataFrame(rows, SCHEMA)
    plain = fuse(df, WEIGHTS, method="rank", rrf_k=10)
    split = fuse(df, WEIGHTS, method="rank", rrf_k=10, num_partitions=3)
    assert_df_equality(split, plain, ignore_row_order=True, ignore_nullable=True)
    got = {(r.user_id, r.track_id): (round(r.recall_score, 12), r.seed_track_id) for r in split.collect()}
    assert got[("u1", "x")] == (round(2 / 12 + 1 / 11, 12), "s1")
    assert got[("u2", "q")] == (round(0.5 / 13, 12), "s4")


def test_fuse_streams_its_second_aggregation_over_the_sort(spark):
    # the rank stage fuses under SORTED_AGGREGATION: (user, track) is aggregated over the rows as
    # the (user, track, channel) de-duplication left them, with no object hash map; same rows
    from recsys_spark.spark import SORTED_AGGREGATION, sql_conf

    df = spark.createDataFrame(ROWS + [("u2", "x", "als", 1.0, 1, None), ("u2", "x", "item_cf", 0.3, 2, "s4")],
                               SCHEMA)

    def run():
        out = fuse(df, WEIGHTS, method="rank", rrf_k=10, num_partitions=3)
        rows = out.collect()
        return rows, out._jdf.queryExecution().executedPlan().toString()

    hashed, hashed_plan = run()
    with sql_conf(spark, SORTED_AGGREGATION):
        streamed, streamed_plan = run()
    assert "ObjectHashAggregate" in hashed_plan
    assert "ObjectHashAggregate" not in streamed_plan and "SortAggregate" in streamed_plan
    assert_df_equality(spark.createDataFrame(streamed, OUT), spark.createDataFrame(hashed, OUT),
                       ignore_row_order=True, ignore_nullable=True)


def test_users_no_history_channel_reached_get_the_cold_user_weights(spark):
    # u1 has item_cf (a history channel); u2 only prompt and popular (a new user): with prompt 2.0 for
    # users without history, u2's prompt track outranks its popular one; u1 keeps channel_weights
    rows = [("u1", "a", "item_cf", 0.9, 1, "s1"), ("u1", "p", "prompt", 0.8, 1, None),
            ("u1", "q", "popular", 9.0, 1, None),
            ("u2", "p", "prompt", 0.8, 3, None), ("u2", "q", "popular", 9.0, 1, None),
            ("u2", "r", "mystery", 1.0, 1, None)]
    df = spark.createDataFrame(rows, SCHEMA)
    weights = {"item_cf": 2.0, "prompt": 0.5, "popular": 0.5}
    cold = {"prompt": 2.0}
    out = fuse(df, weights, method="rank", rrf_k=10, num_partitions=2, cold_user_weights=cold)
    expected = spark.createDataFrame([
        ("u1", "a", ["item_cf"], 2.0 / 11, "s1"),
        ("u1", "p", ["prompt"], 0.5 / 11, None),
        ("u1", "q", ["popular"], 0.5 / 11, None),
        ("u2", "p", ["prompt"], 2.0 / 13, None),      # the cold weight
        ("u2", "q", ["popular"], 0.5 / 11, None),     # not listed in the cold weights: channel_weights'
        ("u2", "r", ["mystery"], 0.0, None),          # neither: default_weight
    ], OUT)
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)
    # without cold weights (None or {}), u2 is weighted like everyone
    for none in (None, {}):
        got = {(r.user_id, r.track_id): r.recall_score
               for r in fuse(df, weights, method="rank", rrf_k=10, cold_user_weights=none).collect()}
        assert got[("u2", "p")] == pytest.approx(0.5 / 13)
    # the history channels are a parameter: with prompt among them, u2 counts as reached
    got = {(r.user_id, r.track_id): r.recall_score
           for r in fuse(df, weights, method="rank", rrf_k=10, cold_user_weights=cold,
                         history_channels=("item_cf", "prompt")).collect()}
    assert got[("u2", "p")] == pytest.approx(0.5 / 13)
