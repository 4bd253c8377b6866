"""``write`` on hand-made candidates: the creator cap, and its skip when the catalog has no creators."""

from stage_fixtures import W, make_cfg, make_ctx, write_platform
from pyspark.sql import functions as F

from recsys_spark.pipeline.stages import WriteStage
from recsys_spark.pipeline.stages.write import NO_CREATORS
from recsys_spark.tables import ALL_TABLES

# final scores per user; creators: t1 t2 -> c1, t3 t4 -> c2, t5 t6 -> c3 (tests/pipeline/stage_fixtures.py)
CANDS = {"u1": [("t3", 0.9), ("t4", 0.8), ("t5", 0.7), ("t6", 0.6)],
         "u2": [("t2", 0.9), ("t4", 0.8), ("t5", 0.7)],
         "u3": [("t6", 0.9), ("t1", 0.8), ("t2", 0.7)]}


def _ctx(spark, tmp_path, creators, *overrides):
    cfg = make_cfg(tmp_path, "embeddings.enabled=false", "rerank.playlist_size=2", "rerank.creator_cap=1",
                   "rerank.diversity_enabled=false", "rerank.fresh_share=0.0", *overrides)
    ctx = make_ctx(spark, cfg)
    write_platform(spark, ctx.tables, creators=creators)
    rows = [(W, u, t, ["item_cf"], s, None, 0.5, s, None, None) for u, ts in CANDS.items() for t, s in ts]
    ctx.tables.overwrite("candidates", spark.createDataFrame(rows, ALL_TABLES["candidates"].schema))
    return ctx


def _playlists(ctx):
    rows = ctx.tables.read("discover_weekly").where(F.col("week_start") == W).collect()
    out = {}
    for r in sorted(rows, key=lambda r: (r["user_id"], r["position"])):
        out.setdefault(r["user_id"], []).append(r["track_id"])
    return out, {r["run_id"] for r in rows}


def test_creator_cap_keeps_one_track_per_creator(spark, tmp_path):
    ctx = _ctx(spark, tmp_path, creators=True)
    rep = WriteStage().run(ctx)
    playlists, runs = _playlists(ctx)
    # u1: t4 scores above t5 but shares creator c2 with t3
    assert playlists == {"u1": ["t3", "t5"], "u2": ["t2", "t4"], "u3": ["t6", "t1"]}
    assert runs == {"run-1"}
    assert rep.skipped is None
    assert (rep.rows_in, rep.rows_out) == (10, 6)
    assert (rep.counts["users"], rep.counts["short_users"], rep.counts["source.item_cf"]) == (3, 0, 6)


def test_creator_cap_is_skipped_when_the_catalog_has_no_creators(spark, tmp_path):
    # every track's creator is missing: one shared cap would leave each user one track
    ctx = _ctx(spark, tmp_path, creators=False)
    rep = WriteStage().run(ctx)
    assert rep.skipped == NO_CREATORS
    playlists, _ = _playlists(ctx)
    assert playlists == {"u1": ["t3", "t4"], "u2": ["t2", "t4"], "u3": ["t6", "t1"]}


def test_the_fresh_share_takes_unplayed_tracks_and_the_run_counts_them(spark, tmp_path):
    # every track is older than fresh_days; t4 and t6 were never played before W (t1 t2 t3 t5 were).
    # One fresh slot of 2: u1's second slot goes to t6 (t4 shares t3's creator) instead of t5
    ctx = _ctx(spark, tmp_path, True, "rerank.fresh_share=0.5", "rerank.fresh_unplayed=true")
    rep = WriteStage().run(ctx)
    assert _playlists(ctx)[0] == {"u1": ["t3", "t6"], "u2": ["t2", "t4"], "u3": ["t6", "t1"]}
    assert rep.counts["fresh_slots"] == 3
    # the same tables, the fresh share by date only (a second run of W replaces the first's week)
    by_date = make_ctx(spark, ctx.cfg.replace(**{"rerank.fresh_unplayed": False}), "run-2")
    rep = WriteStage().run(by_date)
    assert _playlists(by_date) == ({"u1": ["t3", "t5"], "u2": ["t2", "t4"], "u3": ["t6", "t1"]}, {"run-2"})
    assert rep.counts["fresh_slots"] == 0
