"""End to end on the tiny synthetic platform: ingest -> weekly job (all stages) -> invariants."""

import datetime as dt

import pytest
from pyspark.sql import functions as F

from recsys_spark.pipeline import run_weekly

W = dt.date(2026, 11, 23)
W_PREV = dt.date(2026, 11, 16)
END = dt.datetime(2026, 11, 23)


@pytest.fixture(scope="module")
def platform(tiny_platform, tiny_weeks):
    # weeks W-7 and W run once per session on a copy of the tiny platform (conftest)
    return (tiny_weeks["cfg"], tiny_weeks["tables"], tiny_platform["reports"], tiny_weeks["res_prev"],
            tiny_weeks["res"])


def test_ingestion_reconciles_and_quarantines(platform):
    _, tables, reports, _, _ = platform
    for r in reports.values():
        assert r.reconciles
        assert r.quarantined > 0
    reasons = {r["reason"] for r in tables.read("quarantine").select("reason").distinct().collect()}
    assert {"unknown_track_id", "future_timestamp", "broken_encoding", "malformed_record"} <= reasons


def test_every_stage_ran_and_channels_contributed(platform):
    _, tables, _, _, res = platform
    runs = tables.read("runs").where(F.col("run_id") == res.run_id)
    status = {r["stage"]: r["status"] for r in runs.collect()}
    for stage in ("load", "embed", "recall.popular", "recall.item_cf", "recall.als", "recall.content",
                  "recall.prompt", "train.din", "aggregate.creators", "rank", "write", "run"):
        assert status.get(stage) == "succeeded", (stage, status)
    # the creators with an embedded track have a pooled embedding for W (read by the re-ranking)
    ce = tables.read("creator_embeddings").where(F.col("week_start") == W)
    embedded_creators = tables.read("tracks").join(tables.read("track_embeddings"), "track_id") \
        .select("creator_id").distinct().count()
    assert ce.count() == embedded_creators > 0
    rc = tables.read("recall_candidates").where(F.col("week_start") == W)
    assert {r["channel"] for r in rc.select("channel").distinct().collect()} == \
        {"popular", "item_cf", "als", "content", "prompt"}
    # the embed stage says loudly that the content embeddings are untrained
    embed = runs.where(F.col("stage") == "embed").first()
    assert "UNTRAINED" in embed["skipped"]
    cands = tables.read("candidates").where(F.col("week_start") == W)
    assert cands.where(F.col("din_score").isNull()).count() == 0
    assert cands.where((F.col("quality") < 0) | (F.col("quality") > 1)).count() == 0


def test_a_week_without_embeddings(platform):
    # W-7 ran with embeddings.enabled=false (conftest.tiny_weeks): the content, prompt and creator
    # stages were skipped with their reason, the rest ran (the DIN without content), every user
    # still got exactly 30 and the write stage did without creator embeddings
    cfg, tables, _, res_prev, _ = platform
    assert cfg.rerank.diversity_enabled and cfg.rerank.creator_similarity_weight > 0
    assert res_prev.users > 100 and res_prev.short_users == 0 and res_prev.rows == 30 * res_prev.users
    runs = {r["stage"]: r for r in tables.read("runs").where(F.col("run_id") == res_prev.run_id).collect()}
    for stage in ("embed", "recall.content", "recall.prompt", "aggregate.creators"):
        assert runs[stage]["status"] == "skipped" and "embeddings disabled" in runs[stage]["skipped"], stage
    for stage in ("recall.popular", "recall.item_cf", "recall.als", "train.din", "rank", "write"):
        assert runs[stage]["status"] == "succeeded", stage
    assert runs["train.din"]["counts"]["use_content"] == 0.0
    assert tables.read("creator_embeddings").where(F.col("week_start") == W_PREV).count() == 0
    # week W (with embeddings) embedded every audio track of the catalogue, none of them in W-7
    embeds = tables.read("runs").where((F.col("stage") == "embed") & (F.col("status") == "succeeded")).collect()
    assert [r["week_start"] for r in embeds] == [W]
    assert embeds[0]["counts"]["tracks_embedded"] == tables.read("track_embeddings").count() > 0


def test_playlist_invariants(spark, platform):
    cfg, tables, _, _, res = platform
    dw = tables.read("discover_weekly").where(F.col("week_start") == W).persist()
    inter = tables.read("interactions").where(F.col("event_ts") < F.lit(END))
    prompt_users = tables.read("user_prompts").where(F.col("created_at") < F.lit(END)).select("user_id")
    users = inter.select("user_id").union(prompt_users).distinct()
    # every user with history or prompts has a playlist
    assert users.join(dw.select("user_id").distinct(), "user_id", "left_anti").count() == 0
    per_user = dw.groupBy("user_id").agg(F.count("*").alias("n"), F.min("position").alias("lo"),
                                         F.max("position").alias("hi"), F.countDistinct("track_id").alias("d"))
    assert per_user.where((F.col("n") != 30) | (F.col("lo") != 1) | (F.col("hi") != 30) | (F.col("d") != 30)).count() == 0
    assert res.short_users == 0 and res.users == per_user.count()
    heard = inter.select("user_id", "track_id").distinct()
    assert dw.join(heard, ["user_id", "track_id"]).count() == 0
    tracks = tables.read("tracks")
    own = dw.join(tracks.select("track_id", "creator_id"), "track_id").where(F.col("creator_id") == F.col("user_id"))
    assert own.count() == 0
    cap = dw.join(tracks.select("track_id", "creator_id"), "track_id").groupBy("user_id", "creator_id").count()
    assert cap.where(F.col("count") > cfg.rerank.creator_cap).count() == 0
    assert dw.where(F.col("reason").isNull() | (F.size("sources") == 0)).count() == 0
    # collaborative channels, not only the popularity back-fill, fill the playlists
    mix = {r["s"]: r["count"] for r in dw.select(F.explode("sources").alias("s")).groupBy("s").count().collect()}
    assert mix.get("item_cf", 0) + mix.get("als", 0) > 0.5 * dw.count()
    # a brand-new user who only wrote prompts gets 30 tracks
    new_users = prompt_users.join(inter.select("user_id"), "user_id", "left_anti").distinct()
    assert new_users.count() > 0
    assert new_users.join(per_user, "user_id").where(F.col("n") == 30).count() == new_users.count()
    dw.unpersist()


def test_rerun_replaces_only_that_week_and_runs_are_logged(spark, platform):
    cfg, tables, _, _, _ = platform
    before_prev = sorted(tuple(r) for r in tables.read("discover_weekly").where(F.col("week_start") == W_PREV)
                         .select("user_id", "position", "track_id").collect())
    n_before = tables.read("discover_weekly").where(F.col("week_start") == W).count()
    res = run_weekly(spark, cfg, W, tables=tables)
    # resumed: the persisted stages were skipped, the write ran again
    skipped = {r["stage"] for r in tables.read("runs").where((F.col("run_id") == res.run_id)
                                                             & (F.col("status") == "skipped")).collect()}
    assert {"embed", "recall.item_cf", "recall.als", "train.din", "aggregate.creators", "rank"} <= skipped
    dw = tables.read("discover_weekly")
    assert dw.where(F.col("week_start") == W).count() == n_before
    assert sorted(tuple(r) for r in dw.where(F.col("week_start") == W_PREV)
                  .select("user_id", "position", "track_id").collect()) == before_prev
    assert dw.select("run_id").distinct().count() == 2  # one run per week partition
    # --if-needed does nothing for a complete week
    again = run_weekly(spark, cfg, W, tables=tables, if_needed=True)
    assert again.skipped_run


def test_other_engine_reads_the_table(platform):
    deltalake = pytest.importorskip("deltalake")
    _, tables, _, _, _ = platform
    dt_ = deltalake.DeltaTable(tables.path("discover_weekly"))
    pdf = dt_.to_pandas(filters=[("week_start", "=", W)])
    assert len(pdf) > 0 and pdf.groupby("user_id").size().eq(30).all()
    assert dt_.metadata().partition_columns == ["week_start"]
