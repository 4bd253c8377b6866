"""The cold-item and cold-user protocols of ``benchmarks/suite_two_tower.py`` on a hand-made split:
which events they drop, what they keep."""

import datetime as dt
import importlib.util
import os

import pytest
from pyspark.sql import functions as F

from recsys_spark.evaluation.loaders import EvalDataset
from recsys_spark.evaluation.split import Split

CUT = dt.datetime(2026, 11, 23)
OLD = dt.datetime(2026, 1, 1)


@pytest.fixture(scope="module")
def suite():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "suite_two_tower.py")
    spec = importlib.util.spec_from_file_location("suite_two_tower", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _case(spark):
    # u1 and u2 are test users; u1 and u3 wrote prompts before the cutoff, u2 only after it
    ev = spark.createDataFrame([("u1", "a", 1.0), ("u1", "b", 1.0), ("u2", "a", 1.0), ("u3", "b", 1.0)],
                               "user_id string, track_id string, weight double")
    train = ev.groupBy("user_id", "track_id").agg(F.sum("weight").alias("weight"))
    truth = spark.createDataFrame([("u1", "c"), ("u2", "b")], "user_id string, track_id string")
    users = truth.groupBy("user_id").agg(F.count(F.lit(1)).alias("n_truth"))
    split = Split(cutoff=CUT, end=None, train_events=ev, train=train, truth=truth, test_users=users)
    prompts = spark.createDataFrame(
        [("p1", "u1", "lofi", OLD), ("p2", "u2", "jazz", CUT + dt.timedelta(days=1)), ("p3", "u3", "rock", OLD)],
        "prompt_id string, user_id string, prompt_text string, created_at timestamp")
    tracks = spark.createDataFrame([(t, OLD, 10) for t in "abc"], "track_id string, created_at timestamp, "
                                   "play_count long")
    return EvalDataset(name="t", interactions=ev, tracks=tracks, user_prompts=prompts), split


def _users(df):
    return sorted(r["user_id"] for r in df.select("user_id").distinct().collect())


def test_cold_users_are_test_users_with_prompts_and_lose_every_training_event(spark, suite):
    ds, split = _case(spark)
    _, new, cold = suite.cold_user_holdout(ds, split, 1.0)
    assert _users(cold) == ["u1"]               # u2 wrote no prompt before the cutoff, u3 is no test user
    assert _users(new.train_events) == ["u2", "u3"] and _users(new.train) == ["u2", "u3"]
    assert new.truth.count() == 2 and new.test_users.count() == 2    # truth and test users kept
    _, same, none = suite.cold_user_holdout(ds, split, 0.0)
    assert none.count() == 0 and same.train_events.count() == 4


def test_cold_tracks_lose_their_plays_and_counts_and_may_become_new_uploads(spark, suite):
    ds, split = _case(spark)
    ds2, warm, cold = suite.cold_holdout(ds, split, 1.0, new_days=7)
    assert sorted(r["track_id"] for r in cold.collect()) == ["a", "b", "c"]
    assert warm.train_events.count() == 0 and warm.truth.count() == 2
    rows = ds2.tracks.collect()
    assert all(r["play_count"] == 0 for r in rows)
    assert all(CUT - dt.timedelta(days=7) <= r["created_at"] < CUT for r in rows)
    ds3, _, _ = suite.cold_holdout(ds, split, 1.0)          # new_days 0: their age is kept
    assert all(r["created_at"] == OLD for r in ds3.tracks.collect())


def test_shipped_pooling_drops_only_the_candidates_creator_pooling_override(suite):
    cands = {"a": {"recall.content.model": "similarity", "aggregation.method": "attention"},
             "b": {"recall.content.model": "two_tower", "aggregation.method": "attention", "rerank.fresh_lane": 10}}
    assert suite.with_pooling(cands, "attention") == cands
    assert suite.with_pooling(cands, "shipped") == {"a": {"recall.content.model": "similarity"},
                                                   "b": {"recall.content.model": "two_tower", "rerank.fresh_lane": 10}}
    assert cands["a"]["aggregation.method"] == "attention"  # the module's candidate tables are not changed


class _Tables:
    def __init__(self, **frames):
        self.frames = frames

    def read(self, name):
        return self.frames[name]


def test_fresh_slots_split_the_playlists_into_new_unplayed_and_played_tracks_with_their_hits(spark, suite):
    week = CUT.date()
    # a, d: old and played before the cutoff; b: old, never played; c: uploaded 3 days before W
    tracks = spark.createDataFrame([("a", OLD), ("b", OLD), ("c", CUT - dt.timedelta(days=3)), ("d", OLD)],
                                   "track_id string, created_at timestamp")
    played = spark.createDataFrame([("a",), ("d",)], "track_id string")
    dw = spark.createDataFrame(
        [(u, t, 1.0, i + 1, week) for u, ts in (("u1", "abc"), ("u2", "bd"), ("u3", "c")) for i, t in enumerate(ts)],
        "user_id string, track_id string, score double, position int, week_start date")
    truth = spark.createDataFrame([("u1", "c"), ("u1", "b"), ("u2", "d"), ("u3", "c")],
                                  "user_id string, track_id string")
    users = spark.createDataFrame([("u1", 2), ("u2", 1)], "user_id string, n_truth long")   # u3 is no test user
    split = Split(cutoff=CUT, end=None, train_events=None, train=None, truth=truth, test_users=users)
    rc = spark.createDataFrame([("u1", "c", "content"), ("u1", "c", "item_cf"), ("u1", "b", "content"),
                                ("u1", "a", "als")], "user_id string, track_id string, channel string")
    out = suite.fresh_slot_figures(_Tables(tracks=tracks, discover_weekly=dw), week, split, played, 14, rc)
    assert (out["slots"], out["hits"], out["playlists"]) == (5, 3, 2)
    k = out["kinds"]
    assert {n: (e["slots"], e["hits"], e["users"]) for n, e in k.items()} == {
        "new": (1, 1, 1), "unplayed": (2, 1, 2), "played": (2, 1, 2)}
    assert (k["new"]["hit_rate"], k["unplayed"]["hit_rate"], k["played"]["hit_rate"]) == (1.0, 0.5, 0.5)
    assert k["unplayed"]["slot_share"] == 0.4 and k["new"]["hit_share"] == round(1 / 3, 4)
    assert k["new"]["hit_rate_ci95"] == [1.0, 1.0]
    assert out["fresh_slot_channels"] == {"new": {"content": {"slots": 1, "hits": 1},
                                                  "item_cf": {"slots": 1, "hits": 1}},
                                          "unplayed": {"content": {"slots": 1, "hits": 1},
                                                       "none": {"slots": 1, "hits": 0}}}
    # older than fresh_days, c counts as unplayed (nobody played it), not as new
    out = suite.fresh_slot_figures(_Tables(tracks=tracks, discover_weekly=dw), week, split, played, 2)
    assert (out["kinds"]["new"]["slots"], out["kinds"]["unplayed"]["slots"]) == (0, 3)
    assert "hit_rate" not in out["kinds"]["new"] and "fresh_slot_channels" not in out
