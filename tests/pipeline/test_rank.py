"""``rank`` on hand-made recall candidates: fusion with known scores, inactive channels left out,
the quality filter skipped (with its reason) when tracks carry no statistics."""

import pytest
from stage_fixtures import W, log_runs, make_cfg, make_ctx, write_platform

from recsys_spark.pipeline.stages import RankStage
from recsys_spark.pipeline.stages.rank import NO_STATISTICS, prerank
from recsys_spark.tables import ALL_TABLES

RECALL = [  # channel, user, track, score, rank, seed
    ("popular", "u1", "t3", 0.9, 1, None), ("popular", "u1", "t4", 0.5, 2, None),
    ("popular", "u2", "t2", 0.8, 1, None),
    ("item_cf", "u1", "t3", 0.7, 1, "t1"),
    ("content", "u1", "t6", 0.9, 1, "t1"),   # content is inactive (embeddings off): never ranked
]


def _ctx(spark, tmp_path, stats):
    ctx = make_ctx(spark, make_cfg(tmp_path, "embeddings.enabled=false"))
    write_platform(spark, ctx.tables, stats=stats)
    rows = [(W, c, u, t, s, r, seed) for c, u, t, s, r, seed in RECALL]
    ctx.tables.overwrite("recall_candidates", spark.createDataFrame(rows, ALL_TABLES["recall_candidates"].schema))
    return ctx


def test_rank_fuses_active_channels_and_skips_the_quality_filter_without_statistics(spark, tmp_path):
    ctx = _ctx(spark, tmp_path, stats=False)
    stage = RankStage()
    assert stage.quality_skip_reason(ctx) == NO_STATISTICS
    recs = log_runs(ctx, [stage])
    rec = recs["rank"]
    assert rec.status == "succeeded" and (rec.rows_in, rec.rows_out) == (4, 3)
    assert rec.skipped == f"{NO_STATISTICS}; DIN not trained for this week"
    got = {(r["user_id"], r["track_id"]): r for r in stage.output(ctx).collect()}
    assert set(got) == {("u1", "t3"), ("u1", "t4"), ("u2", "t2")}
    # reciprocal-rank fusion, k = 60, weights item_cf 2.0 and popular 0.5 (conf/base.yaml)
    k = ctx.cfg.fusion.rrf_k
    assert got[("u1", "t3")]["recall_score"] == pytest.approx(2.0 / (k + 1) + 0.5 / (k + 1))
    assert got[("u1", "t4")]["recall_score"] == pytest.approx(0.5 / (k + 2))
    assert got[("u1", "t3")]["channels"] == ["item_cf", "popular"]
    # final score: the recall score min-max scaled per user (no DIN, quality weight 0)
    assert [got[x]["final_score"] for x in (("u1", "t3"), ("u1", "t4"), ("u2", "t2"))] == [1.0, 0.0, 1.0]
    # no statistics: every track has the prior quality and none is filtered
    assert {r["quality"] for r in got.values()} == {0.5} and all(r["din_score"] is None for r in got.values())
    assert stage.done(make_ctx(spark, ctx.cfg, "run-2"))
    ctx.tables.replace_partition("candidates", stage.output(ctx).limit(0), "week_start", W)
    assert not stage.done(make_ctx(spark, ctx.cfg, "run-3"))


def test_quality_filter_runs_when_tracks_have_statistics(spark, tmp_path):
    ctx = _ctx(spark, tmp_path, stats=True)
    assert RankStage().quality_skip_reason(ctx) is None
    rep = RankStage().run(ctx)
    assert rep.skipped == "DIN not trained for this week"
    off = make_ctx(spark, ctx.cfg.replace(**{"quality.enabled": False}))
    assert RankStage().quality_skip_reason(off) == "quality filter disabled in config"


def test_prerank_keeps_each_users_best_by_recall_score(spark):
    fused = spark.createDataFrame([("u1", "a", 0.3), ("u1", "b", 0.9), ("u1", "c", 0.5), ("u2", "a", 0.1)],
                                  "user_id string, track_id string, recall_score double")
    assert sorted(tuple(r) for r in prerank(fused, 2).collect()) == [("u1", "b", 0.9), ("u1", "c", 0.5),
                                                                      ("u2", "a", 0.1)]
    assert prerank(fused, 0) is fused
    # a fresh lane of 1: u1's best fresh track below the cut (a) comes along; u2's (a) was inside it
    fresh = spark.createDataFrame([("a",), ("d",)], "track_id string")
    assert sorted(tuple(r) for r in prerank(fused, 2, fresh=fresh, fresh_lane=1).collect()) == [
        ("u1", "a", 0.3), ("u1", "b", 0.9), ("u1", "c", 0.5), ("u2", "a", 0.1)]
    assert prerank(fused, 1, fresh=fresh, fresh_lane=1).count() == 3   # u1: b and a; u2: a (once)


def test_a_used_ranker_orders_the_candidates_as_train_ranker_chose(spark, tmp_path):
    from recsys_spark.pipeline.stages.train_ranker import ranker_for_week, ranker_path
    from recsys_spark.ranking.ranker import FEATURES, fit_ranker, save_ranker

    ctx = make_ctx(spark, make_cfg(tmp_path, "embeddings.enabled=false", "ranker.enabled=true"))
    write_platform(spark, ctx.tables, stats=False)
    rows = [(W, c, u, t, s, r, seed) for c, u, t, s, r, seed in RECALL]
    ctx.tables.overwrite("recall_candidates", spark.createDataFrame(rows, ALL_TABLES["recall_candidates"].schema))
    # a ranker that learned "a track one channel proposed gets played, one two channels proposed does not"
    train = [(f"u{i}", f"t{n}", 1.0 if n == 1 else 0.0, *[float(n) if f == "n_channels" else 0.0 for f in FEATURES])
             for i in range(20) for n in (1, 2)]
    schema = "user_id string, track_id string, label double, " + ", ".join(f"{f} double" for f in FEATURES)
    model, rep = fit_ranker(spark.createDataFrame(train, schema), model="logistic", max_iter=5, holdout_share=0.0)
    meta = {**rep, "use": True, "config_fingerprint": ctx.fingerprint, "blend": "ranker",
            "blend_recall_weight": 0.0, "blend_ranker_weight": 1.0}
    save_ranker(spark, model, ranker_path(ctx), meta)
    ctx.finished.add("train.ranker")
    rec = log_runs(ctx, [RankStage()])["rank"]
    assert rec.counts["ranker_used"] == 1.0
    got = {(r["user_id"], r["track_id"]): r for r in RankStage().output(ctx).collect()}
    # u1: t3 (item_cf + popular) leads the fused order, t4 (popular only) leads the ranker's
    assert got[("u1", "t4")]["ranker_score"] > got[("u1", "t3")]["ranker_score"]
    assert got[("u1", "t3")]["recall_score"] > got[("u1", "t4")]["recall_score"]
    assert [got[x]["final_score"] for x in (("u1", "t4"), ("u1", "t3"), ("u2", "t2"))] == [1.0, 0.0, 1.0]
    # the same model with another configuration's fingerprint is not used
    save_ranker(spark, model, ranker_path(ctx), {**meta, "config_fingerprint": "other"})
    other = make_ctx(spark, ctx.cfg, "run-2")
    other.finished.add("train.ranker")
    assert ranker_for_week(other) is None
    rep2 = RankStage().run(other)
    assert "learned ranker not used for this week (see train.ranker)" in rep2.skipped
    assert {r["ranker_score"] for r in RankStage().output(other).collect()} == {None}
