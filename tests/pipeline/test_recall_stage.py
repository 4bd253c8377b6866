"""``recall.<channel>`` on the hand-made platform: what it writes, when it skips, when it is done."""

import pytest
from stage_fixtures import log_runs, make_cfg, make_ctx, write_platform
from stage_fixtures import hand_platform  # noqa: F401 (fixture)
from pyspark.sql import functions as F

from recsys_spark.pipeline.stages import RecallStage
from recsys_spark.pipeline.stages.recall import active_channels, channel_skip_reason


def test_popular_writes_its_partition_without_heard_tracks_and_is_then_done(spark, hand_platform):
    cfg, ctx = hand_platform
    stage = RecallStage("popular")
    assert not stage.done(ctx)
    recs = log_runs(ctx, [stage])
    assert recs["recall.popular"].status == "succeeded"
    part = stage.output(ctx).persist()
    # candidates for served users only (u1's taste, rock, has no unheard track: the taste-aware
    # popularity may leave it out); none they heard, none created after W (t7)
    assert {"u2"} <= {r["user_id"] for r in part.select("user_id").distinct().collect()} <= {"u1", "u2", "u3"}
    got = {(r["user_id"], r["track_id"]) for r in part.collect()}
    heard = {("u1", "t1"), ("u1", "t2"), ("u2", "t1"), ("u2", "t3"), ("u3", "t5")}
    assert not got & heard
    assert {t for _, t in got} <= {"t1", "t2", "t3", "t4", "t5", "t6"}
    assert recs["recall.popular"].rows_out == part.count() == len(got)
    # ranks are 1..n per user
    bad = part.groupBy("user_id").agg(F.min("rank").alias("lo"), F.max("rank").alias("hi"), F.count("*").alias("n")) \
        .where((F.col("lo") != 1) | (F.col("hi") != F.col("n")))
    assert bad.count() == 0
    part.unpersist()

    again = make_ctx(spark, cfg, "run-2")
    assert stage.done(again)
    recs = log_runs(again, [stage])
    assert recs["recall.popular"].status == "skipped"
    assert recs["recall.popular"].skipped == "already done by run run-1 (resume; --force reruns it)"
    # the partition is gone: not done any more
    ctx.tables.replace_partition("recall_candidates", stage.output(ctx).limit(0), "week_start", ctx.week,
                                 channel="popular")
    assert not stage.done(make_ctx(spark, cfg, "run-3"))
    # another configuration: its own output, not this one
    assert not stage.done(make_ctx(spark, cfg.replace(**{"recall.popularity.candidates": 7}), "run-4"))


def test_item_cf_records_the_blocks_it_used(spark, hand_platform):
    # history before W with weight > 0: u1 {t1, t2}, u2 {t1, t3} (u3's skip weighs 0, u1's t3 is
    # after W): 4 entries in rows of 2; the default parallelism (2) blocks expect 2 * 1.5 = 3 rows each
    cfg, ctx = hand_platform
    rec = log_runs(ctx, [RecallStage("item_cf")])["recall.item_cf"]
    assert rec.status == "succeeded"
    assert {k: v for k, v in rec.counts.items() if k.startswith("item_cf_")} == {
        "item_cf_matrix_rows": 4.0, "item_cf_blocks": 2.0, "item_cf_block_rows": 3.0}


def test_channels_skip_with_the_same_reasons(spark, tmp_path):
    ctx = make_ctx(spark, make_cfg(tmp_path / "a", "embeddings.enabled=false", "recall.als.enabled=false"))
    write_platform(spark, ctx.tables)
    assert channel_skip_reason("als", ctx) == "disabled in config"
    assert channel_skip_reason("content", ctx) == "no embeddings (embeddings disabled)"
    assert channel_skip_reason("prompt", ctx) == "no embeddings (embeddings disabled)"
    assert active_channels(ctx) == ["popular", "item_cf"]

    ctx = make_ctx(spark, make_cfg(tmp_path / "b"))
    write_platform(spark, ctx.tables, audio=False, prompts=False)
    assert channel_skip_reason("content", ctx) == "no audio in the data set: no track embeddings"
    assert channel_skip_reason("prompt", ctx) == "no user prompts in the data set"
    assert RecallStage("content").skip_reason(ctx) == "no audio in the data set: no track embeddings"

    ctx = make_ctx(spark, make_cfg(tmp_path / "c"))
    write_platform(spark, ctx.tables)
    assert active_channels(ctx) == ["popular", "item_cf", "als", "content", "prompt"]
    with pytest.raises(ValueError, match="unknown recall channel"):
        RecallStage("nope")
