"""The load stage on the hand-made platform (tests/pipeline/stage_fixtures.py): known counts."""

import pytest
from chispa import assert_df_equality
from stage_fixtures import make_ctx, write_platform
from stage_fixtures import hand_platform  # noqa: F401 (fixture)

from recsys_spark.pipeline.stages import LoadStage


def test_load_counts_only_what_happened_before_w(spark, hand_platform):
    _, ctx = hand_platform
    rep = LoadStage().run(ctx)
    # t7 is created after W; u1's play of t3 on 11-24 is after W; u3's skip is history but no seed
    assert rep.counts == {"tracks": 6, "seeds": 4, "users": 3, "prompts": 1}
    assert (rep.rows_in, rep.rows_out) == (5, 4)
    seeds = ctx.inputs.seeds.select("user_id", "track_id", "seed_rank")
    expected = spark.createDataFrame([("u1", "t2", 1), ("u1", "t1", 2), ("u2", "t3", 1), ("u2", "t1", 2)],
                                     seeds.schema)
    assert_df_equality(seeds, expected, ignore_row_order=True)
    heard = ctx.inputs.heard.select("user_id", "track_id")
    assert sorted(tuple(r) for r in heard.collect()) == [("u1", "t1"), ("u1", "t2"), ("u2", "t1"), ("u2", "t3"),
                                                         ("u3", "t5")]
    assert not LoadStage().done(ctx)  # nothing persisted: it always runs


def test_load_refuses_a_week_without_users(spark, tmp_path):
    from stage_fixtures import make_cfg

    ctx = make_ctx(spark, make_cfg(tmp_path, "embeddings.enabled=false"))
    write_platform(spark, ctx.tables, prompts=False)
    ctx.tables.overwrite("interactions", ctx.tables.read("interactions").limit(0))
    with pytest.raises(RuntimeError, match="no users with history or prompts before 2026-11-23"):
        LoadStage().run(ctx)


def test_released_frames_are_unpersisted(spark, hand_platform):
    _, ctx = hand_platform
    seeds, inter = ctx.inputs.seeds, ctx.inputs.interactions
    assert seeds.is_cached
    assert inter.is_cached  # a small interactions table (< pipeline.cache_interactions_mb) is read once
    ctx.release()
    assert not seeds.is_cached and not inter.is_cached


def test_interactions_are_read_per_stage_above_the_cache_limit(spark, hand_platform):
    from recsys_spark.pipeline import RunContext

    cfg, ctx = hand_platform
    big = RunContext(spark, cfg.replace(**{"pipeline.cache_interactions_mb": 0}), ctx.tables, ctx.week, "run-nocache")
    assert not big.cache_interactions and not big.inputs.interactions.is_cached
    assert big.inputs.seeds.is_cached  # seeds, heard set and users are cached either way
    assert sorted(map(tuple, big.inputs.seeds.select("user_id", "track_id").collect())) == \
        sorted(map(tuple, ctx.inputs.seeds.select("user_id", "track_id").collect()))
    assert cfg.replace(**{"pipeline.cache_interactions_mb": 0}).fingerprint() == cfg.fingerprint()
    big.release()


def test_load_refuses_a_week_far_after_the_data(spark, tmp_path):
    import datetime as dt

    from stage_fixtures import make_cfg

    from recsys_spark.pipeline import RunContext
    from recsys_spark.tables import Tables
    from recsys_spark.validation import InputError

    cfg = make_cfg(tmp_path, "embeddings.enabled=false", "pipeline.max_days_after_data=14")
    tables = write_platform(spark, Tables.from_config(spark, cfg.storage))
    # the last event before W is u1's play on 11-24: W = 2026-12-14 is 20 days later (<= 7 + 14), accepted
    assert LoadStage().run(RunContext(spark, cfg, tables, dt.date(2026, 12, 14), "run-ok")).counts["users"] == 3
    with pytest.raises(InputError, match="days after the last interaction"):
        LoadStage().run(RunContext(spark, cfg, tables, dt.date(2027, 6, 7), "run-far"))
