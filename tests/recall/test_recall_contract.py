"""The recall candidate contract, checked on the shared helper and on every collaborative channel.

Other channel authors can add their fitted model to ``CHANNEL_FACTORIES`` to run the same checks.
"""

import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys_spark.recall.base import CANDIDATE_SCHEMA, RecallModel, finalize_candidates, user_item_matrix

T0 = dt.datetime(2026, 1, 1)
INTER_SCHEMA = "user_id string, track_id string, event_ts timestamp, event_type string, weight double, event_date date"


def test_finalize_candidates_known(spark):
    scored = spark.createDataFrame(
        [("u", "a", 0.9, "s1"), ("u", "b", float("nan"), "s1"), ("u", "c", 0.5, None), ("u", "d", 0.5, "s2"),
         ("u", "e", None, "s1"), ("u", "h", 5.0, "s1"), ("v", "a", 0.1, "s3")],
        "user_id string, track_id string, score double, seed_track_id string")
    heard = spark.createDataFrame([("u", "h"), ("v", "zz")], "user_id string, track_id string")
    got = finalize_candidates(scored, heard, n=2, channel="test").orderBy("user_id", "rank")
    # h heard, b NaN, e null; c and d tie at .5 -> c first by track_id, and n=2 cuts d
    expected = spark.createDataFrame(
        [("u", "a", "test", 0.9, 1, "s1"), ("u", "c", "test", 0.5, 2, None), ("v", "a", "test", 0.1, 1, "s3")],
        CANDIDATE_SCHEMA)
    assert_df_equality(got, expected, ignore_nullable=True)


def test_finalize_adds_null_seed_and_rejects_bad_n(spark):
    scored = spark.createDataFrame([("u", "a", 1.0)], "user_id string, track_id string, score double")
    got = finalize_candidates(scored, None, n=5, channel="x").collect()
    assert [tuple(r) for r in got] == [("u", "a", "x", 1.0, 1, None)]
    with pytest.raises(ValueError):
        finalize_candidates(scored, None, n=0, channel="x")


def test_user_item_matrix_weightings(spark):
    rows = [("u", "a", T0, "play", 1.0, T0.date()), ("u", "a", T0 + dt.timedelta(hours=1), "upvote", 2.0, T0.date()),
            ("u", "b", T0, "skip", 0.0, T0.date())]
    inter = spark.createDataFrame(rows, INTER_SCHEMA)
    for weighting, value in (("raw", 3.0), ("log", 1.3862944), ("binary", 1.0)):
        got = user_item_matrix(inter, weighting).collect()
        assert len(got) == 1  # b only skipped: dropped
        r = got[0]
        assert (r.user_id, r.track_id, r.weight, r.n_events) == ("u", "a", 3.0, 2)
        assert r.value == pytest.approx(value)
        assert r.last_ts == T0 + dt.timedelta(hours=1)
    with pytest.raises(ValueError):
        user_item_matrix(inter, "sqrt")


# -- the same contract for every fitted channel -----------------------------------------------


def _interactions(spark):
    # two taste groups over 8 tracks, users with different history lengths
    rows = []
    groups = {"g1": "abcd", "g2": "efgh"}
    for g, tracks in groups.items():
        for i in range(5):
            for j, t in enumerate(tracks[: 2 + (i % 3)]):
                ts = T0 + dt.timedelta(days=i, minutes=j)
                rows.append((f"{g}u{i}", t, ts, "play", 1.0 + j, ts.date()))
    return spark.createDataFrame(rows, INTER_SCHEMA)


def _item_cf(inter):
    from recsys_spark.recall.item_cf import ItemCF

    return ItemCF(k=5, min_support=1).fit(inter)


def _als(inter):
    from recsys_spark.recall.als import ALSRecall

    return ALSRecall(rank=3, max_iter=3, num_blocks=2, seed=1).fit(inter)


CHANNEL_FACTORIES = {"item_cf": _item_cf, "als": _als}


@pytest.mark.parametrize("name", sorted(CHANNEL_FACTORIES))
def test_channel_contract(spark, name):
    inter = _interactions(spark)
    model = CHANNEL_FACTORIES[name](inter)
    assert isinstance(model, RecallModel) and model.channel == name
    heard = inter.select("user_id", "track_id").distinct()
    seeds = (inter.groupBy("user_id", "track_id").agg(F.sum("weight").alias("weight"))
             .withColumn("recency", F.lit(1.0))
             .unionByName(spark.createDataFrame([("cold_user", "cold_track", 1.0, 1.0)],
                                                "user_id string, track_id string, weight double, recency double")))
    n = 3
    cands = model.recommend(seeds, heard, n=n).persist()
    assert [(f.name, f.dataType) for f in cands.schema.fields] == \
        [(f.name, f.dataType) for f in CANDIDATE_SCHEMA.fields]
    rows = cands.collect()
    assert rows, "the channel produced no candidates at all"
    assert {r.channel for r in rows} == {name}
    heard_set = {(r.user_id, r.track_id) for r in heard.collect()}
    assert not [r for r in rows if (r.user_id, r.track_id) in heard_set]
    by_user = {}
    for r in rows:
        assert r.score == r.score, "NaN score"
        by_user.setdefault(r.user_id, []).append(r)
    assert "cold_user" not in by_user
    for user, rs in by_user.items():
        rs.sort(key=lambda r: r.rank)
        assert [r.rank for r in rs] == list(range(1, len(rs) + 1)) and len(rs) <= n
        assert len({r.track_id for r in rs}) == len(rs)
        assert all(a.score >= b.score for a, b in zip(rs, rs[1:]))
    cands.unpersist()
