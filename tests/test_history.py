"""History mixing on hand-made logs with known answers."""

import datetime as dt

from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys_spark.history import build_history, heard_tracks

W = dt.date(2026, 11, 23)  # this week = [11-16, 11-23)


def _events(spark, rows):
    return spark.createDataFrame(
        [(u, t, dt.datetime.fromisoformat(ts), "play", float(w)) for u, t, ts, w in rows],
        "user_id string, track_id string, event_ts timestamp, event_type string, weight double")


def _seed_set(df):
    return {(r["user_id"], r["track_id"]) for r in df.select("user_id", "track_id").collect()}


def test_half_this_week_half_before(spark):
    # user a: 4 tracks this week (t1..t4, t4 newest), 4 before (o1..o4, o4 newest); last_n = 4 -> 2 + 2
    rows = [("a", f"t{i}", f"2026-11-{16 + i}T10:00:00", 1) for i in range(1, 5)]
    rows += [("a", f"o{i}", f"2026-11-0{i}T10:00:00", 1) for i in range(1, 5)]
    seeds = build_history(_events(spark, rows), W, last_n=4)
    assert _seed_set(seeds) == {("a", "t4"), ("a", "t3"), ("a", "o4"), ("a", "o3")}
    ranks = {r["track_id"]: (r["seed_rank"], r["is_this_week"]) for r in seeds.collect()}
    assert ranks == {"t4": (1, True), "t3": (2, True), "o4": (3, False), "o3": (4, False)}


def test_this_week_backfills_when_old_side_is_short(spark):
    # 5 this week, 1 before; last_n 4 -> old side has 1, this week fills 3
    rows = [("b", f"t{i}", f"2026-11-{16 + i}T10:00:00", 1) for i in range(1, 6)]
    rows += [("b", "o1", "2026-10-01T00:00:00", 1)]
    seeds = build_history(_events(spark, rows), W, last_n=4)
    assert _seed_set(seeds) == {("b", "t5"), ("b", "t4"), ("b", "t3"), ("b", "o1")}


def test_old_side_backfills_when_this_week_is_short(spark):
    rows = [("c", "t1", "2026-11-20T10:00:00", 1)]
    rows += [("c", f"o{i}", f"2026-11-0{i}T10:00:00", 1) for i in range(1, 6)]
    seeds = build_history(_events(spark, rows), W, last_n=4)
    assert _seed_set(seeds) == {("c", "t1"), ("c", "o5"), ("c", "o4"), ("c", "o3")}


def test_inactive_this_week_gets_last_n(spark):
    rows = [("d", f"o{i}", f"2026-11-0{i}T10:00:00", 1) for i in range(1, 7)]
    seeds = build_history(_events(spark, rows), W, last_n=4)
    assert _seed_set(seeds) == {("d", "o6"), ("d", "o5"), ("d", "o4"), ("d", "o3")}


def test_events_from_week_w_and_later_are_ignored_and_repeats_aggregate(spark):
    rows = [("e", "x", "2026-11-10T00:00:00", 1), ("e", "x", "2026-11-17T00:00:00", 2),
            ("e", "future", "2026-11-23T00:00:00", 5), ("e", "skip", "2026-11-18T00:00:00", 0)]
    seeds = build_history(_events(spark, rows), W, last_n=50)
    expected = spark.createDataFrame(
        [("e", "x", 3.0, dt.datetime(2026, 11, 17), 2, True, 1)],
        "user_id string, track_id string, weight double, last_ts timestamp, n_events long, "
        "is_this_week boolean, seed_rank int")
    assert_df_equality(seeds.drop("recency"), expected, ignore_nullable=True)
    rec = seeds.first()["recency"]
    assert abs(rec - 0.5 ** (6 / 21.0)) < 1e-9  # 6 days old, half-life 21 days
    # skips are heard (excluded from recommendations) but never seeds; the future event is neither
    assert _seed_set(heard_tracks(_events(spark, rows), W)) == {("e", "x"), ("e", "skip")}


def test_odd_last_n_rounds_this_week_share(spark):
    rows = [("f", f"t{i}", f"2026-11-{16 + i}T10:00:00", 1) for i in range(1, 5)]
    rows += [("f", f"o{i}", f"2026-11-0{i}T10:00:00", 1) for i in range(1, 5)]
    seeds = build_history(_events(spark, rows), W, last_n=3, this_week_share=0.5)
    # round(1.5) = 2 from this week, 1 from before
    assert seeds.where(F.col("is_this_week")).count() == 2
    assert seeds.count() == 3
