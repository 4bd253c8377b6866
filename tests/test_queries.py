"""Downstream query helpers and SQL views on hand-made tables with hand-computed answers."""

import datetime as dt

import pytest
from pyspark.sql import functions as F

from recsys_spark import queries as Q
from recsys_spark.tables import RUNS, Tables

W_PREV = dt.date(2026, 11, 16)
W = dt.date(2026, 11, 23)
GEN = dt.datetime(2026, 11, 23, 6, 0)
TRACKS = [("t1", "c1", "Neon Rain"), ("t2", "c1", "Glass Tide"), ("t3", "c2", "Low Sun"),
          ("t4", "c3", "Paper Moon"), ("t5", "c3", "Dust"), ("t6", "c4", "Hollow")]


def _dw(spark, week, rows, run_id):
    data = [(week, u, pos, t, 1.0 / pos, src, f"why {t}", "dw-test", run_id, GEN) for u, pos, t, src in rows]
    return spark.createDataFrame(data, "week_start date, user_id string, position int, track_id string, score double, "
                                       "sources array<string>, reason string, model_version string, run_id string, "
                                       "generated_at timestamp")


def _stage(run, week, stage, status, minute, rows_out=None, counts=None, skipped=None, message=None):
    start = dt.datetime(2026, 11, 23, 6, minute) if week == W else dt.datetime(2026, 11, 16, 6, minute)
    return (run, week, "weekly", stage, status, start, start + dt.timedelta(seconds=30), 30.0, None, rows_out,
            counts or {}, skipped, message, "cfg")


VERSIONS = {}


@pytest.fixture(scope="module")
def qt(spark, tmp_path_factory):
    tables = Tables(spark, warehouse=str(tmp_path_factory.mktemp("queries") / "warehouse"))
    tables.append("tracks", spark.createDataFrame(
        [(t, c, title, None, [], "pop", 120.0, None, None, 0, 0, 0, None) for t, c, title in TRACKS],
        tables.spec("tracks").schema))
    # VERSIONS: last week's run ("prev"), this week's run ("this"), an unrecorded rewrite of last
    # week's partition ("rewrite"); read from the Delta log (creating the table adds its CHECK
    # constraints in commits of their own)
    tables.replace_partition("discover_weekly", _dw(spark, W_PREV, [("u1", 1, "t5", ["popular"]),
                                                                    ("u1", 2, "t6", ["als"])], "run-a"),
                             "week_start", W_PREV)
    VERSIONS["prev"] = tables.version("discover_weekly")
    tables.replace_partition("discover_weekly", _dw(spark, W, [
        ("u1", 1, "t1", ["item_cf", "popular"]), ("u1", 2, "t3", ["als"]), ("u1", 3, "t4", ["popular"]),
        ("u2", 1, "t2", ["item_cf"]), ("u2", 2, "t5", ["popular"])], "run-b"), "week_start", W)
    VERSIONS["this"] = tables.version("discover_weekly")
    tables.replace_partition("discover_weekly", _dw(spark, W_PREV, [("u1", 1, "t6", ["als"]),
                                                                    ("u1", 2, "t2", ["item_cf"])], "backfill"),
                             "week_start", W_PREV)
    VERSIONS["rewrite"] = tables.version("discover_weekly")
    assert VERSIONS["prev"] < VERSIONS["this"] < VERSIONS["rewrite"]
    tables.append("candidates", spark.createDataFrame(
        [(W, "u1", "t1", ["item_cf", "popular"], 0.9, None, 0.7, 0.95, "t2", None),
         (W, "u1", "t3", ["als"], 0.5, None, 0.6, 0.55, None, None)], tables.spec("candidates").schema))
    q_rows = [("interactions:file:/raw/a.csv", "interactions", "{}", "future_timestamp", "h1", "i1",
               dt.datetime(2026, 11, 22, 1), dt.date(2026, 11, 22)),
              ("interactions:file:/raw/a.csv", "interactions", "{}", "future_timestamp", "h2", "i1",
               dt.datetime(2026, 11, 22, 1), dt.date(2026, 11, 22)),
              ("interactions:file:/raw/b.csv", "interactions", "{}", "future_timestamp", "h3", "i1",
               dt.datetime(2026, 11, 22, 2), dt.date(2026, 11, 22)),
              ("tracks:file:/raw/t.json", "tracks", "{}", "malformed_record", "h4", "i1",
               dt.datetime(2026, 11, 22, 1), dt.date(2026, 11, 22)),
              ("tracks:file:/raw/t.json", "tracks", "{}", "malformed_record", "h5", "i0",
               dt.datetime(2026, 11, 15, 1), dt.date(2026, 11, 15))]
    tables.append("quarantine", spark.createDataFrame(q_rows, tables.spec("quarantine").schema))
    runs = [
        _stage("run-a", W_PREV, "load", "succeeded", 0, 100),
        _stage("run-a", W_PREV, "write", "succeeded", 5, 2, {"table_version": float(VERSIONS["prev"])}),
        _stage("run-a", W_PREV, "run", "succeeded", 6, 2, {"users": 1.0, "short_users": 1.0, "total_seconds": 400.0}),
        _stage("run-b", W, "load", "succeeded", 0, 250, {"users": 2.0}),
        _stage("run-b", W, "recall.popular", "succeeded", 1, 400),
        _stage("run-b", W, "recall.item_cf", "skipped", 2, skipped="channel not available in this build"),
        _stage("run-b", W, "rerank", "succeeded", 3, 5, {"users": 2.0, "short_users": 2.0}),
        _stage("run-b", W, "write", "succeeded", 4, 5, {"table_version": float(VERSIONS["this"])}),
        _stage("run-b", W, "run", "succeeded", 5, 5, {"users": 2.0, "short_users": 2.0, "total_seconds": 330.0}),
        _stage("run-c", W_PREV, "load", "succeeded", 30, 100),
        _stage("run-c", W_PREV, "rerank", "failed", 31, message="RuntimeError: boom"),
    ]
    tables.append("runs", spark.createDataFrame(runs, RUNS.schema))
    return tables


def _ids(df):
    return [(r["position"], r["track_id"]) for r in df.collect()]


def test_this_weeks_playlist(spark, qt):
    rows = Q.playlist(spark, qt, "u1", W).collect()
    assert [(r["position"], r["track_id"], r["title"], r["creator_id"]) for r in rows] == [
        (1, "t1", "Neon Rain", "c1"), (2, "t3", "Low Sun", "c2"), (3, "t4", "Paper Moon", "c3")]
    assert _ids(Q.playlist(spark, qt, "u2", "2026-11-23")) == [(1, "t2"), (2, "t5")]
    assert Q.playlist(spark, qt, "nobody", W).count() == 0


@pytest.mark.parametrize("evil", ["x' OR '1'='1", "u1' OR '1'='1", "u1' --", "u1'; DROP TABLE runs; --",
                                  "' UNION SELECT * FROM runs --", "u1\\", ":user_id"])
def test_injection_through_user_id_matches_nobody(spark, qt, evil):
    assert Q.playlist(spark, qt, evil, W).count() == 0
    assert Q.why_picked(spark, qt, evil, W).count() == 0
    assert Q.why_picked(spark, qt, "u1", W, track_id=evil).count() == 0
    assert qt.read("runs").count() == 11 and qt.read("discover_weekly").count() == 7


def test_bad_week_and_values_are_rejected(spark, qt):
    with pytest.raises(ValueError):
        Q.playlist(spark, qt, "u1", "2026-11-23' OR '1'='1")
    with pytest.raises(ValueError):
        Q.playlist(spark, qt, "u1", "2026-11-24")  # not a Monday
    with pytest.raises(TypeError):
        Q.playlist(spark, qt, 42, W)
    with pytest.raises(ValueError):
        Q.playlist_as_of(spark, qt, "u1", W, version="1; DROP TABLE runs")
    with pytest.raises(ValueError):
        Q.playlist_as_of(spark, qt, "u1", W, timestamp="yesterday' OR 1=1")
    with pytest.raises(ValueError):
        Q.create_views(spark, qt, prefix="x; DROP VIEW y")


def test_last_week_through_partition_and_time_travel(spark, qt):
    # the partition holds the later rewrite; time travel returns what last week's run published
    assert _ids(Q.last_week_playlist(spark, qt, "u1", W)) == [(1, "t6"), (2, "t2")]
    assert Q.version_for_week(spark, qt, W_PREV) == VERSIONS["prev"]
    assert Q.version_for_week(spark, qt, dt.date(2026, 11, 9)) is None
    assert _ids(Q.last_week_playlist_time_travel(spark, qt, "u1", W)) == [(1, "t5"), (2, "t6")]
    assert _ids(Q.playlist_as_of(spark, qt, "u1", W_PREV, version=VERSIONS["rewrite"])) == [(1, "t6"), (2, "t2")]
    hist = {r["version"]: r["timestamp"] for r in qt.delta("discover_weekly").history().collect()}
    ts = hist[VERSIONS["prev"]]
    assert _ids(Q.playlist_as_of(spark, qt, "u1", W_PREV, timestamp=ts)) == [(1, "t5"), (2, "t6")]
    assert _ids(Q.playlist_as_of(spark, qt, "u1", W_PREV, timestamp=ts.isoformat())) == [(1, "t5"), (2, "t6")]
    with pytest.raises(LookupError):
        Q.last_week_playlist_time_travel(spark, qt, "u1", W_PREV)


def test_why_picked_joins_candidates_and_seed(spark, qt):
    rows = Q.why_picked(spark, qt, "u1", W).collect()
    got = [(r["position"], r["track_id"], r["channels"], r["final_score"], r["seed_track_id"], r["seed_title"],
            r["reason"]) for r in rows]
    assert got == [(1, "t1", ["item_cf", "popular"], 0.95, "t2", "Glass Tide", "why t1"),
                   (2, "t3", ["als"], 0.55, None, None, "why t3"),
                   (3, "t4", None, None, None, None, "why t4")]
    one = Q.why_picked(spark, qt, "u1", W, track_id="t3").collect()
    assert [(r["track_id"], r["quality"]) for r in one] == [("t3", 0.6)]


def test_channel_mix(spark, qt):
    got = [(r["channel"], r["slots"], r["users"], r["only_source_slots"], round(r["share_of_slots"], 6))
           for r in Q.channel_mix(spark, qt, since=W).collect()]
    assert got == [("popular", 3, 2, 2, 0.6), ("item_cf", 2, 2, 1, 0.4), ("als", 1, 1, 1, 0.2)]
    weeks = sorted({r["week_start"] for r in Q.channel_mix(spark, qt).collect()})
    assert weeks == [W_PREV, W]
    assert Q.channel_mix(spark, qt, until=W_PREV).select("week_start").distinct().count() == 1


def test_creator_exposure(spark, qt):
    got = [(r["creator_id"], r["slots"], r["tracks"], r["users"], r["share_of_users"])
           for r in Q.creator_exposure(spark, qt, W).collect()]
    assert got == [("c1", 2, 2, 2, 1.0), ("c3", 2, 2, 2, 1.0), ("c2", 1, 1, 1, 0.5)]
    assert [r["creator_id"] for r in Q.creator_exposure(spark, qt, W, top=2).collect()] == ["c1", "c3"]


def test_quarantine_summary(spark, qt):
    got = [(r["entity"], r["reason"], r["ingest_date"], r["records"], r["files"])
           for r in Q.quarantine_summary(spark, qt).collect()]
    assert got == [("interactions", "future_timestamp", dt.date(2026, 11, 22), 3, 2),
                   ("tracks", "malformed_record", dt.date(2026, 11, 22), 1, 1),
                   ("tracks", "malformed_record", dt.date(2026, 11, 15), 1, 1)]
    assert Q.quarantine_summary(spark, qt, since="2026-11-20").count() == 2


def test_last_run_summary_answers_what_happened(spark, qt):
    s = Q.last_run_summary(spark, qt)
    assert (s.run_id, s.week, s.status, s.users_served, s.users_short, s.rows_written) == ("run-b", W, "succeeded", 2, 2, 5)
    assert [st["stage"] for st in s.stages] == ["load", "recall.popular", "recall.item_cf", "rerank", "write", "run"]
    assert s.skipped == {"recall.item_cf": "channel not available in this build"}
    assert s.failed == {}
    assert s.seconds == 330.0  # 06:00:00 -> 06:05:30
    text = s.format()
    assert "run run-b (weekly, week 2026-11-23): SUCCEEDED" in text
    assert "recall.item_cf" in text and "channel not available in this build" in text
    assert "users served 2, users short of a full playlist 2" in text
    prev = Q.last_run_summary(spark, qt, week=W_PREV)   # the later, failed run of that week
    assert (prev.run_id, prev.status, prev.failed) == ("run-c", "failed", {"rerank": "RuntimeError: boom"})
    assert Q.last_run_summary(spark, qt, week=dt.date(2026, 11, 2)) is None
    over = [(r["run_id"], r["status"], r["users_served"], r["skipped_stages"], r["errors"])
            for r in Q.runs_overview(spark, qt).collect()]
    assert over == [("run-b", "succeeded", 2.0, 1, ""), ("run-c", "failed", None, 0, "rerank: RuntimeError: boom"),
                    ("run-a", "succeeded", 1.0, 0, "")]


def test_create_views_path_mode(spark, qt):
    created = Q.create_views(spark, qt)
    assert sorted(created) == sorted(f"dw_{v}" for v in Q.VIEWS)
    assert spark.sql("SELECT track_id FROM dw_playlists WHERE user_id = 'u2' AND week_start = DATE'2026-11-23' "
                     "ORDER BY position").collect() == [("t2",), ("t5",)]
    assert spark.sql("SELECT status FROM dw_runs_overview WHERE run_id = 'run-b'").first()[0] == "succeeded"
    assert spark.sql("SELECT SUM(records) FROM dw_quarantine_summary").first()[0] == 5
    assert f"delta.`{qt.path('discover_weekly')}`" in created["dw_playlists"]
    # the latest-week view: only week W (the newest), both users, in position order
    latest = spark.sql("SELECT week_start, user_id, position, track_id FROM dw_latest_playlists "
                       "ORDER BY user_id, position").collect()
    assert {r["week_start"] for r in latest} == {W}
    assert [(r["user_id"], r["track_id"]) for r in latest if r["user_id"] == "u2"] == [("u2", "t2"), ("u2", "t5")]


def test_create_views_catalog_mode(spark, tmp_path):
    ct = Tables(spark, mode="catalog", schema="ops_views_test")
    try:
        created = Q.create_views(spark, ct, prefix="v_")
        assert "`ops_views_test`.`v_playlists`" in created
        assert spark.sql("SELECT COUNT(*) FROM ops_views_test.v_channel_mix").first()[0] == 0
        assert "`ops_views_test`.`runs`" in created["`ops_views_test`.`v_runs_overview`"]
    finally:
        spark.sql("DROP SCHEMA IF EXISTS ops_views_test CASCADE")
