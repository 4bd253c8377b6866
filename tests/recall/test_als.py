"""ALS recall on a hand-made two-community matrix with a known top-k.

Community A: users a1..a3 played p, q, r; a4 played only p, q.
Community B: users b1..b3 played x, y, z; b4 played only x, y.
Any rank >= 2 factorisation separates the communities, so a4's best unheard track is r and
b4's is z; with 6 tracks in total, a4 has exactly 4 unheard ones (r, x, y, z).
"""

import datetime as dt

import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F

from recsys_spark.config import ALSConf
from recsys_spark.recall.als import ALSRecall, ALSRecallModel, index_ids
from recsys_spark.recall.base import ChannelInputs

T0 = dt.datetime(2026, 1, 1)


def make_interactions(spark):
    rows = []
    for com, tracks in (("a", "pqr"), ("b", "xyz")):
        for i in (1, 2, 3):
            for t in tracks:
                rows.append((f"{com}{i}", t, 2.0))
        for t in tracks[:2]:
            rows.append((f"{com}4", t, 2.0))
    rows.append(("a1", "p", 3.0))  # a second event on the same pair: summed
    data = [(u, t, T0 + dt.timedelta(minutes=i), "play", w, T0.date()) for i, (u, t, w) in enumerate(rows)]
    return spark.createDataFrame(
        data, "user_id string, track_id string, event_ts timestamp, event_type string, weight double, event_date date")


def fit(est, inter):
    return est.fit(ChannelInputs(inter.sparkSession, interactions=inter))


def recommend(model, users, heard, n, topk="faiss", batch_size=1024):
    """``model.recommend`` for ``users`` with the given top-K path (a model parameter)."""
    m = ALSRecallModel(model.als_model, model.user_index, model.item_index,
                       {**model.params, "topk": topk, "topk_batch_size": batch_size})
    return m.recommend(ChannelInputs(users.sparkSession, users=users, heard=heard), n)


@pytest.fixture(scope="module")
def inter(spark):
    return make_interactions(spark)


@pytest.fixture(scope="module")
def model(inter):
    return fit(ALSRecall(rank=4, max_iter=10, reg_param=0.01, alpha=10.0, num_blocks=2, seed=3), inter)


def heard_of(inter):
    return inter.select("user_id", "track_id").distinct()


def test_index_ids_sorted_contiguous(spark):
    df = spark.createDataFrame([("c",), ("a",), ("b",), ("a",), ("e",), (None,)], "id string").repartition(3)
    got = index_ids(df, "id", "idx").orderBy("id")
    expected = spark.createDataFrame([("a", 0), ("b", 1), ("c", 2), ("e", 3)], "id string, idx int")
    assert_df_equality(got, expected, ignore_nullable=True)


@pytest.mark.parametrize("topk", ["faiss", "mllib"])
def test_known_top1_and_heard_exclusion(spark, inter, model, topk):
    seeds = spark.createDataFrame([("a4",), ("b4",), ("a4",)], "user_id string")
    top1 = recommend(model, seeds, heard_of(inter), n=1, topk=topk)
    got = sorted((r.user_id, r.track_id, r.channel, r.rank) for r in top1.collect())
    assert got == [("a4", "r", "als", 1), ("b4", "z", "als", 1)]

    all_unheard = recommend(model, seeds.where("user_id = 'a4'"), heard_of(inter), n=10, topk=topk)
    rows = all_unheard.orderBy("rank").collect()
    assert [r.track_id for r in rows][:1] == ["r"]
    assert sorted(r.track_id for r in rows) == ["r", "x", "y", "z"]
    assert [r.rank for r in rows] == [1, 2, 3, 4]


@pytest.mark.parametrize("topk", ["faiss", "mllib"])
def test_cold_users_and_tracks(spark, inter, model, topk):
    # "newbie" is unknown to the model; "fresh" is a track nobody played before training
    seeds = spark.createDataFrame([("newbie", "fresh"), ("a4", "fresh")], "user_id string, track_id string")
    heard = heard_of(inter).unionByName(seeds)
    got = recommend(model, seeds, heard, n=10, topk=topk)
    assert got.where("user_id = 'newbie'").count() == 0
    assert got.where("track_id = 'fresh'").count() == 0
    assert got.where(F.isnan("score") | F.col("score").isNull()).count() == 0
    assert got.where("user_id = 'a4'").count() == 4


@pytest.mark.parametrize("topk", ["faiss", "mllib"])
def test_no_heard_means_top_n_over_all_tracks(spark, model, topk):
    seeds = spark.createDataFrame([("a1",)], "user_id string")
    got = recommend(model, seeds, None, n=3, topk=topk)
    assert sorted(r.track_id for r in got.collect()) == ["p", "q", "r"]


def test_deterministic_with_seed(spark, inter, model):
    again = fit(ALSRecall(rank=4, max_iter=10, reg_param=0.01, alpha=10.0, num_blocks=2, seed=3), inter)
    a = model.item_factors().orderBy("track_id")
    b = again.item_factors().orderBy("track_id")
    assert_approx_df_equality(a, b, 1e-6)


def test_save_load_round_trip(spark, inter, model, tmp_path):
    path = str(tmp_path / "als")
    model.save(path)
    loaded = ALSRecallModel.load(spark, path)
    assert loaded.params == model.params
    seeds = spark.createDataFrame([("a4",), ("b1",)], "user_id string")
    before = recommend(model, seeds, heard_of(inter), n=3).orderBy("user_id", "rank")
    after = recommend(loaded, seeds, heard_of(inter), n=3).orderBy("user_id", "rank")
    assert_approx_df_equality(before, after, 1e-6, ignore_nullable=True)


def test_invalid_params(spark, model):
    with pytest.raises(ValueError):
        ALSRecall(weighting="sqrt")
    with pytest.raises(ValueError, match="topk"):
        ALSRecall(topk="annoy")


def test_defaults_come_from_the_config():
    conf, est = ALSConf(), ALSRecall()
    for name in ("rank", "max_iter", "reg_param", "alpha", "weighting", "block_size", "num_blocks", "topk",
                 "topk_batch_size"):
        assert getattr(est, name) == getattr(conf, name), name


def test_faiss_topk_equals_brute_force_and_mllib(spark):
    """40 users x 60 tracks of random taste, heavy users with many heard tracks (buckets of k
    differ within one batch of 7 users): the faiss path must equal a numpy brute force over the
    fitted factors (tracks, order, ranks, scores) and list the same tracks as MLlib's path."""
    import numpy as np

    rng = np.random.default_rng(5)
    rows = []
    for u in range(40):
        n_heard = 45 if u % 9 == 0 else int(rng.integers(2, 12))
        for t in rng.choice(60, size=n_heard, replace=False):
            rows.append((f"u{u:02d}", f"t{t:02d}", T0, "play", float(rng.integers(1, 5)), T0.date()))
    inter = spark.createDataFrame(
        rows, "user_id string, track_id string, event_ts timestamp, event_type string, weight double, event_date date")
    m = fit(ALSRecall(rank=6, max_iter=5, reg_param=0.1, alpha=5.0, num_blocks=2, seed=1), inter)
    seeds = inter.select("user_id").distinct()
    heard = inter.select("user_id", "track_id").distinct()
    n = 10
    got = recommend(m, seeds, heard, n=n, topk="faiss", batch_size=7).toPandas()

    items = m.item_factors().toPandas().sort_values("track_id")
    users = m.user_factors().toPandas().set_index("user_id")
    ivec = np.stack(items["features"].map(np.asarray))
    heard_pd = heard.toPandas().groupby("user_id")["track_id"].apply(set)
    expected = []
    for u, f in users["features"].items():
        sc = ivec @ np.asarray(f, dtype=np.float32)
        cand = [(-float(s), t) for s, t in zip(sc, items["track_id"]) if t not in heard_pd[u]]
        for r, (s, t) in enumerate(sorted(cand)[:n]):
            expected.append((u, t, r + 1, -s))
    got_rows = sorted(zip(got.user_id, got.track_id, got["rank"], got.score))
    assert [r[:3] for r in got_rows] == sorted(r[:3] for r in sorted(expected))
    assert np.allclose([r[3] for r in got_rows], [r[3] for r in sorted(expected)], atol=1e-5)
    assert set(got["channel"]) == {"als"} and got["seed_track_id"].isna().all()
    heavy = got[got.user_id == "u00"]
    assert len(heavy) == n and not set(heavy.track_id) & heard_pd["u00"]

    mllib = recommend(m, seeds, heard, n=n, topk="mllib").toPandas()
    assert set(zip(mllib.user_id, mllib.track_id)) == set(zip(got.user_id, got.track_id))
