"""``train.ranker`` on the hand-made platform: the label window, the label users and the skip when
the candidates as of L hold too few plays (known answers; the ranker itself: tests/ranking/test_ranker.py)."""

import datetime as dt

import pytest

from stage_fixtures import W, log_runs, make_cfg, make_ctx, write_platform

from recsys_spark.pipeline.stages import TrainRankerStage
from recsys_spark.pipeline.stages.train_ranker import inputs_as_of, ranker_for_week


def test_disabled_in_the_shipped_config(spark, tmp_path):
    ctx = make_ctx(spark, make_cfg(tmp_path, "embeddings.enabled=false"))
    assert TrainRankerStage().skip_reason(ctx) == "disabled in config"


def test_label_window_users_and_skip_on_too_few_plays(spark, tmp_path):
    ctx = make_ctx(spark, make_cfg(tmp_path, "embeddings.enabled=false", "ranker.enabled=true"))
    write_platform(spark, ctx.tables)
    # events before W: 1 in the week of 11-09, 4 in the week of 11-16; 10% of 5 -> the last week
    cut = W - dt.timedelta(weeks=1)
    inp = inputs_as_of(ctx, cut)
    assert sorted(tuple(r) for r in inp.heard.collect()) == [("u1", "t1")]
    stage = TrainRankerStage()
    assert stage.skip_reason(ctx) is None
    rec = log_runs(ctx, [stage])["train.ranker"]
    assert rec.status == "skipped"  # ran, and said why it trained nothing
    assert rec.message == f"label window [{cut}, {W})"
    # u1 (t1 before L) played t2 in the window; u2 played t1 and t3 but had no history before L
    assert rec.counts["label_weeks"] == 1.0 and rec.counts["label_users"] == 1.0
    # as of L only u1-t1 exists: the popularity channel's genre pool proposes t2 (rock, like t1) and
    # nothing else, and u1 played it: one candidate, one positive, nothing to learn a ranking from
    assert rec.skipped == (f"only 1 of 1 candidates of the label window [{cut}, {W}) were played "
                           "(min_positives 20)")
    assert not stage.done(make_ctx(spark, ctx.cfg, "run-2"))
    ctx.finished.add("train.ranker")
    assert ranker_for_week(ctx) is None


def test_channel_inputs_carry_the_configured_history_settings(spark, tmp_path):
    """Both the week's channel inputs and those as of an earlier week L carry the run's history
    settings, so a content channel trained there rebuilds its examples' seeds with them."""
    from recsys_spark.pipeline.stages.recall import week_inputs

    ctx = make_ctx(spark, make_cfg(tmp_path, "embeddings.enabled=false", "history.this_week_share=0.25",
                                   "history.recency_half_life_days=7.0"))
    write_platform(spark, ctx.tables)
    want = {"this_week_share": 0.25, "half_life_days": 7.0}
    assert week_inputs(ctx).history == want
    inp = inputs_as_of(ctx, W - dt.timedelta(weeks=1))
    assert inp.history == want
    # as of L = 11-16 u1's only seed is t1 (11-10 12:00): 5.5 days old, half-life 7 days
    (row,) = inp.seeds.collect()
    assert (row.user_id, row.track_id) == ("u1", "t1") and row.recency == pytest.approx(0.5 ** (5.5 / 7))
