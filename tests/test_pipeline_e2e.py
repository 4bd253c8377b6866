"""End to end on a tiny synthetic platform: generate -> ingest -> weekly job -> invariants."""

import datetime as dt

import pytest
from pyspark.sql import Window
from pyspark.sql import functions as F

from recsys_spark.config import load_config
from recsys_spark.data.generator import PlatformSpec, generate_platform
from recsys_spark.data.ingest import Rules, ingest_all
from recsys_spark.pipeline import run_weekly
from recsys_spark.tables import Tables

W = dt.date(2026, 11, 23)
W_PREV = dt.date(2026, 11, 16)


@pytest.fixture(scope="module")
def platform(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    cfg = load_config(overrides=[
        f"storage.warehouse={root / 'warehouse'}", f"storage.model_dir={root / 'models'}",
        "generator.n_users=120", "generator.n_tracks=260", "generator.n_creators=40", "generator.n_weeks=4",
        "generator.events_per_user_week=8", "generator.audio_tracks=0", "generator.partitions=2",
        "generator.bad_row_rate=0.02",
        "recall.popularity.per_genre_pool=60", "din.epochs=2",
    ])
    spec = PlatformSpec.from_conf(cfg.generator)
    generate_platform(spark, str(root / "raw"), spec, W)
    tables = Tables.from_config(spark, cfg.storage)
    reports = ingest_all(spark, tables, str(root / "raw"), Rules.from_conf(cfg.ingest), "ingest-test",
                         now=dt.datetime(2026, 11, 23))
    res_prev = run_weekly(spark, cfg, W_PREV, tables=tables)
    res = run_weekly(spark, cfg, W, tables=tables)
    return cfg, tables, reports, res_prev, res


def test_ingestion_reconciles_and_quarantines(platform):
    _, tables, reports, _, _ = platform
    for r in reports.values():
        assert r.reconciles
        assert r.quarantined > 0
    reasons = {r["reason"] for r in tables.read("quarantine").select("reason").distinct().collect()}
    assert {"unknown_track_id", "future_timestamp", "broken_encoding", "malformed_record"} <= reasons


def test_playlist_invariants(spark, platform):
    cfg, tables, _, _, res = platform
    dw = tables.read("discover_weekly").where(F.col("week_start") == W).persist()
    users = tables.read("interactions").where(F.col("event_ts") < F.lit(dt.datetime(2026, 11, 23))) \
        .select("user_id").distinct()
    # every user with history has a playlist
    assert users.join(dw.select("user_id").distinct(), "user_id", "left_anti").count() == 0
    per_user = dw.groupBy("user_id").agg(F.count("*").alias("n"), F.min("position").alias("lo"),
                                         F.max("position").alias("hi"), F.countDistinct("track_id").alias("d"))
    assert per_user.where((F.col("n") != 30) | (F.col("lo") != 1) | (F.col("hi") != 30) | (F.col("d") != 30)).count() == 0
    assert res.short_users == 0 and res.users == per_user.count()
    heard = tables.read("interactions").where(F.col("event_ts") < F.lit(dt.datetime(2026, 11, 23))) \
        .select("user_id", "track_id").distinct()
    assert dw.join(heard, ["user_id", "track_id"]).count() == 0
    tracks = tables.read("tracks")
    own = dw.join(tracks.select("track_id", "creator_id"), "track_id").where(F.col("creator_id") == F.col("user_id"))
    assert own.count() == 0
    cap = dw.join(tracks.select("track_id", "creator_id"), "track_id").groupBy("user_id", "creator_id").count()
    assert cap.where(F.col("count") > cfg.rerank.creator_cap).count() == 0
    assert dw.where(F.col("reason").isNull() | (F.size("sources") == 0)).count() == 0
    dw.unpersist()


def test_rerun_replaces_only_that_week_and_runs_are_logged(spark, platform):
    cfg, tables, _, _, _ = platform
    before_prev = sorted(tuple(r) for r in tables.read("discover_weekly").where(F.col("week_start") == W_PREV)
                         .select("user_id", "position", "track_id").collect())
    n_before = tables.read("discover_weekly").where(F.col("week_start") == W).count()
    run_weekly(spark, cfg, W, tables=tables)
    dw = tables.read("discover_weekly")
    assert dw.where(F.col("week_start") == W).count() == n_before
    assert sorted(tuple(r) for r in dw.where(F.col("week_start") == W_PREV)
                  .select("user_id", "position", "track_id").collect()) == before_prev
    assert dw.select("run_id").distinct().count() == 2  # one run per week partition
    runs = tables.read("runs")
    assert runs.where((F.col("stage") == "run") & (F.col("status") == "succeeded")).count() == 3
    stages = {r["stage"] for r in runs.collect()}
    assert {"load", "recall.popular", "rerank", "write", "run"} <= stages


def test_other_engine_reads_the_table(platform):
    deltalake = pytest.importorskip("deltalake")
    _, tables, _, _, _ = platform
    dt_ = deltalake.DeltaTable(tables.path("discover_weekly"))
    pdf = dt_.to_pandas(filters=[("week_start", "=", W)])
    assert len(pdf) > 0 and pdf.groupby("user_id").size().eq(30).all()
    assert dt_.metadata().partition_columns == ["week_start"]
