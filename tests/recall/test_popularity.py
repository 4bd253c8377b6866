"""Taste-aware popularity channel on a hand-made catalog with known scores."""

import math

import pytest

from recsys_spark.config import PopularityConf
from recsys_spark.recall.base import ChannelInputs
from recsys_spark.recall.popularity import PopularityRecall

TRACKS = "track_id string, genre string, creator_id string, play_count long, upvote_count long, comment_count long"


@pytest.fixture()
def inputs(spark):
    plays = {"a1": ("A", 100), "a2": ("A", 50), "a3": ("A", 10), "b1": ("B", 80), "b2": ("B", 5), "c1": ("C", 1000)}
    tracks = spark.createDataFrame([(t, g, "k", p, 0, 0) for t, (g, p) in plays.items()], TRACKS)
    # u1's taste: A 3/4, B 1/4 (weight x recency); u2 has no seeds (cold)
    seeds = spark.createDataFrame([("u1", "a1", 3.0, 1.0), ("u1", "b2", 1.0, 1.0)],
                                  "user_id string, track_id string, weight double, recency double")
    heard = spark.createDataFrame([("u1", "a1"), ("u1", "b2"), ("u2", "c1")], "user_id string, track_id string")
    users = spark.createDataFrame([("u1",), ("u2",)], "user_id string")
    return ChannelInputs(spark, users=users, seeds=seeds, tracks=tracks, heard=heard)


def popular(inputs, n, **params):
    return PopularityRecall(**params).fit(inputs).recommend(inputs, n)


def _norm(plays):
    return math.log1p(plays) / math.log1p(1000)


def test_popular_candidates_known_scores(inputs):
    rows = popular(inputs, 3, top_genres=2, per_genre_pool=10, global_pool=10).collect()
    got = {(r.user_id, r.rank): (r.track_id, r.score) for r in rows}
    assert {k: v[0] for k, v in got.items()} == {
        ("u1", 1): "a2", ("u1", 2): "a3", ("u1", 3): "b1",     # unheard tracks of u1's genres, by share x pop
        ("u2", 1): "a1", ("u2", 2): "b1", ("u2", 3): "a2"}     # cold: the platform's top, minus heard c1
    assert got[("u1", 1)][1] == pytest.approx(0.75 * _norm(50))
    assert got[("u1", 3)][1] == pytest.approx(0.25 * _norm(80))
    assert got[("u2", 1)][1] == pytest.approx(0.1 * _norm(100))
    assert {r.channel for r in rows} == {"popular"} and all(r.seed_track_id is None for r in rows)


def test_popular_candidates_top_genres_only(inputs):
    rows = popular(inputs, 5, top_genres=1, per_genre_pool=10).where("user_id = 'u1'").collect()
    assert sorted((r.rank, r.track_id) for r in rows) == [(1, "a2"), (2, "a3")]  # genre B is not in the top 1


def test_popular_defaults_come_from_the_config():
    conf, est = PopularityConf(), PopularityRecall()
    assert (est.top_genres, est.per_genre_pool) == (conf.top_genres, conf.per_genre_pool)


def test_a_catalog_without_counts_ranks_by_plays_in_the_interactions(spark):
    """A public data set's item table has no counts: popularity = log1p(positive events before W)."""
    from recsys_spark.recall.popularity import track_popularity

    tracks = spark.createDataFrame([("x", "A"), ("y", "A"), ("z", "A"), ("w", "B")], "track_id string, genre string")
    events = spark.createDataFrame(
        [("u1", "x", 1.0), ("u2", "x", 2.0), ("u3", "x", 1.0), ("u1", "y", 1.0), ("u2", "y", 0.0), ("u9", "z", 0.0)],
        "user_id string, track_id string, weight double")
    pop = {r.track_id: r.popularity for r in track_popularity(tracks, events).collect()}
    assert pop == pytest.approx({"x": math.log1p(3), "y": math.log1p(1), "z": 0.0, "w": 0.0})  # skips count 0
    assert {r.creator_id for r in track_popularity(tracks).collect()} == {None}
    # catalog counts win over plays for tracks that have them
    mixed = spark.createDataFrame([("x", "A", None), ("y", "A", 100)], "track_id string, genre string, play_count long")
    pop = {r.track_id: r.popularity for r in track_popularity(mixed, events).collect()}
    assert pop == pytest.approx({"x": math.log1p(3), "y": math.log1p(100)})

    seeds = spark.createDataFrame([("u5", "w", 1.0, 1.0), ("u5", "x", 1.0, 1.0)],
                                  "user_id string, track_id string, weight double, recency double")
    heard = spark.createDataFrame([("u5", "w"), ("u5", "x")], "user_id string, track_id string")
    inp = ChannelInputs(spark, seeds=seeds, tracks=tracks, heard=heard, interactions=events)
    assert PopularityRecall().missing_inputs(inp) is None
    rows = PopularityRecall(top_genres=1, per_genre_pool=10).fit(inp).recommend(inp, 5).collect()
    # u5's genres tie (A, B: 1/2 each) -> A by name; x heard; y (1 play) before z (0 plays)
    assert [(r.rank, r.track_id) for r in sorted(rows, key=lambda r: r.rank)] == [(1, "y"), (2, "z")]
