"""Item-item CF on hand-made matrices whose neighbours were worked out by hand.

Matrix M1 (binary weights), users x tracks:

    u1: a b c      track vectors: a = {u1,u2} |a|=sqrt2, b = {u1,u2,u3} |b|=sqrt3,
    u2: a b                       c = {u1,u3,u4} |c|=sqrt3, d = {u4} |d|=1
    u3: b c        cosine: a-b 2/sqrt6 = .816497, a-c 1/sqrt6 = .408248, b-c 2/3 = .666667,
    u4: c d                c-d 1/sqrt3 = .577350, a-d = b-d = 0
"""

import datetime as dt

import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import functions as F

from recsys_spark.config import ItemCFConf
from recsys_spark.recall.base import ChannelInputs
from recsys_spark.recall.item_cf import NEIGHBORS_SCHEMA, ItemCF, ItemCFModel, choose_num_blocks, expected_block_rows

T0 = dt.datetime(2026, 1, 1)


def interactions(spark, rows):
    """rows: (user, track, minutes after T0, weight[, event_type])."""
    data = []
    for r in rows:
        u, t, m, w = r[:4]
        ts = T0 + dt.timedelta(minutes=m)
        data.append((u, t, ts, r[4] if len(r) > 4 else "play", float(w), ts.date()))
    return spark.createDataFrame(
        data, "user_id string, track_id string, event_ts timestamp, event_type string, weight double, event_date date")


M1 = [("u1", "a", 1, 1), ("u1", "b", 2, 1), ("u1", "c", 3, 1),
      ("u2", "a", 4, 1), ("u2", "b", 5, 1),
      ("u3", "b", 6, 1), ("u3", "c", 7, 1),
      ("u4", "c", 8, 1), ("u4", "d", 9, 1)]


def cf(**params):
    """ItemCF without shrinkage unless asked (the hand-computed cosines are unshrunk)."""
    return ItemCF(**{"shrinkage": 0.0, **params})


def fit(est, inter):
    return est.fit(ChannelInputs(inter.sparkSession, interactions=inter))


def recommend(model, seeds, heard, n):
    return model.recommend(ChannelInputs(seeds.sparkSession, seeds=seeds, heard=heard), n)


def neighbors_df(spark, rows):
    return spark.createDataFrame(rows, NEIGHBORS_SCHEMA)


def sorted_nb(df):
    return df.orderBy("track_id", "rank")


def test_cosine_neighbours_known(spark):
    model = fit(cf(k=2, similarity="cosine", min_support=1, weighting="binary"), interactions(spark, M1))
    expected = neighbors_df(spark, [
        ("a", "b", 0.816497, 1), ("a", "c", 0.408248, 2),
        ("b", "a", 0.816497, 1), ("b", "c", 0.666667, 2),
        ("c", "b", 0.666667, 1), ("c", "d", 0.577350, 2),
        ("d", "c", 0.577350, 1),
    ])
    assert_approx_df_equality(sorted_nb(model.neighbors), sorted_nb(expected), 1e-5, ignore_nullable=True)


def test_min_support_and_shrinkage(spark):
    inter = interactions(spark, M1)
    model = fit(cf(k=5, min_support=2, weighting="binary"), inter)
    expected = neighbors_df(spark, [
        ("a", "b", 0.816497, 1), ("b", "a", 0.816497, 1), ("b", "c", 0.666667, 2), ("c", "b", 0.666667, 1),
    ])
    assert_approx_df_equality(sorted_nb(model.neighbors), sorted_nb(expected), 1e-5, ignore_nullable=True)
    # shrinkage 2: sim * support / (support + 2): a-b .816497 * 2/4, b-c .666667 * 2/4, a-c .408248/3, c-d .577350/3
    shrunk = fit(cf(k=1, min_support=1, weighting="binary", shrinkage=2.0), inter)
    expected = neighbors_df(spark, [
        ("a", "b", 0.408248, 1), ("b", "a", 0.408248, 1), ("c", "b", 0.333333, 1), ("d", "c", 0.192450, 1),
    ])
    assert_approx_df_equality(sorted_nb(shrunk.neighbors), sorted_nb(expected), 1e-5, ignore_nullable=True)


def test_cap_keeps_most_recent_items_and_sums_events(spark):
    # M=2: u1 keeps c, b (its two most recent), dropping a; so a-c co-occurs nowhere.
    # u2's two events on a are summed; u5 only skipped a (weight 0): no preference, ignored.
    rows = M1 + [("u2", "a", 10, 1), ("u5", "a", 11, 0, "skip")]
    model = fit(cf(k=2, min_support=1, max_items_per_user=2, weighting="binary"), interactions(spark, rows))
    # a = {u2}, b = {u1,u2,u3}, c = {u1,u3,u4}, d = {u4}: a-b 1/sqrt3, b-c 2/3, c-d 1/sqrt3
    expected = neighbors_df(spark, [
        ("a", "b", 0.577350, 1),
        ("b", "c", 0.666667, 1), ("b", "a", 0.577350, 2),
        ("c", "b", 0.666667, 1), ("c", "d", 0.577350, 2),
        ("d", "c", 0.577350, 1),
    ])
    assert_approx_df_equality(sorted_nb(model.neighbors), sorted_nb(expected), 1e-5, ignore_nullable=True)


def test_bm25_known(spark):
    # 5 tracks; u1: a b (idf ln5-ln3), u2: a b c (idf ln5-ln4), u3: d e; track lengths a=b=2, c=d=e=1
    # (mean 1.4); k1=1.2, b=.75. Hand values: a.b = .224945, a.c = b.c = .047973, d.e = .334587.
    rows = [("u1", "a", 1, 1), ("u1", "b", 2, 1), ("u2", "a", 3, 1), ("u2", "b", 4, 1), ("u2", "c", 5, 1),
            ("u3", "d", 6, 1), ("u3", "e", 7, 1)]
    model = fit(cf(k=3, similarity="bm25", min_support=1, weighting="binary"), interactions(spark, rows))
    expected = neighbors_df(spark, [
        ("a", "b", 0.224945, 1), ("a", "c", 0.047973, 2),
        ("b", "a", 0.224945, 1), ("b", "c", 0.047973, 2),
        ("c", "a", 0.047973, 1), ("c", "b", 0.047973, 2),  # tie broken by neighbour id
        ("d", "e", 0.334587, 1), ("e", "d", 0.334587, 1),
    ])
    assert_approx_df_equality(sorted_nb(model.neighbors), sorted_nb(expected), 1e-5, ignore_nullable=True)


def test_block_layout_does_not_change_result(spark):
    inter = interactions(spark, M1)
    one = fit(cf(k=3, min_support=1, num_blocks=1, seed=1), inter).neighbors
    many = fit(cf(k=3, min_support=1, num_blocks=3, seed=2, chunk_items=1), inter).neighbors
    assert_approx_df_equality(sorted_nb(one), sorted_nb(many), 1e-12)


def with_params(model, **params):
    return ItemCFModel(model.neighbors, {**model.params, **params})


@pytest.fixture()
def m1_model(spark):
    return fit(cf(k=2, min_support=1, weighting="binary"), interactions(spark, M1))


@pytest.mark.parametrize("broadcast_rows", [5_000_000, 0])   # neighbours broadcast, or joined by a shuffle
def test_recommend_weights_recency_and_excludes_heard(spark, m1_model, broadcast_rows):
    m1_model = with_params(m1_model, broadcast_rows=broadcast_rows)
    seeds = spark.createDataFrame(
        [("x", "a", 3.0, 1.0), ("x", "d", 1.0, 0.5), ("y", "c", 2.0, 1.0)],
        "user_id string, track_id string, weight double, recency double")
    heard = spark.createDataFrame([("x", "a"), ("x", "d"), ("y", "c"), ("y", "b")], "user_id string, track_id string")
    got = recommend(with_params(m1_model, per_seed=2), seeds, heard, n=10)
    # x: b = .816497 (from a); c = .408248 (a) + .577350 * .5 (d) = .696923, seed a. y: b heard, d = .577350
    expected = spark.createDataFrame(
        [("x", "b", "item_cf", 0.816497, 1, "a"), ("x", "c", "item_cf", 0.696923, 2, "a"),
         ("y", "d", "item_cf", 0.577350, 1, "c")],
        "user_id string, track_id string, channel string, score double, rank int, seed_track_id string")
    assert_approx_df_equality(got.orderBy("user_id", "rank"), expected, 1e-5, ignore_nullable=True)

    # per_seed=1, n=1: x's c now comes only from d (.288675) and is cut by n; y's only neighbour
    # of c is now b, which y has heard, so y gets nothing
    top1 = recommend(with_params(m1_model, per_seed=1), seeds, heard, n=1)
    assert sorted(map(tuple, top1.select("user_id", "track_id", "seed_track_id").collect())) == [("x", "b", "a")]


def test_cold_seed_gives_no_candidates(spark, m1_model):
    seeds = spark.createDataFrame([("z", "unknown", 1.0, 1.0)],
                                  "user_id string, track_id string, weight double, recency double")
    assert recommend(m1_model, seeds, None, n=5).count() == 0


def test_save_load_round_trip(spark, m1_model, tmp_path):
    path = str(tmp_path / "item_cf")
    m1_model.save(path)
    loaded = ItemCFModel.load(spark, path)
    assert loaded.params == m1_model.params
    assert_approx_df_equality(sorted_nb(loaded.neighbors), sorted_nb(m1_model.neighbors), 0.0, ignore_nullable=True)


def test_neighbors_match_item_neighbors_table(spark, m1_model):
    from recsys_spark.tables import ITEM_NEIGHBORS

    want = [(f.name, f.dataType) for f in ITEM_NEIGHBORS.schema.fields if f.name != "week_start"]
    assert [(f.name, f.dataType) for f in m1_model.neighbors.schema.fields] == want


def test_defaults_come_from_the_config():
    conf = ItemCFConf()
    est = ItemCF()
    for name in ("k", "similarity", "min_support", "max_items_per_user", "weighting", "shrinkage", "bm25_k1",
                 "bm25_b", "num_blocks", "max_block_rows", "per_seed", "n_seeds", "broadcast_rows"):
        assert getattr(est, name) == getattr(conf, name), name
    assert ItemCF.from_conf(ItemCFConf(k=7, shrinkage=3.0), seed=4).params() == {
        **est.params(), "k": 7, "shrinkage": 3.0, "seed": 4}


def test_recommend_uses_n_seeds_by_seed_rank(spark, m1_model):
    # x's seeds: a (rank 1), d (rank 2); with n_seeds=1 only a counts, so c scores .408248 alone
    seeds = spark.createDataFrame([("x", "a", 1.0, 1.0, 1), ("x", "d", 1.0, 1.0, 2)],
                                  "user_id string, track_id string, weight double, recency double, seed_rank int")
    got = {r.track_id: r.score for r in recommend(with_params(m1_model, n_seeds=1, weighting="binary"), seeds,
                                                  None, n=5).collect()}
    assert got == pytest.approx({"b": 0.816497, "c": 0.408248}, abs=1e-5)


def test_expected_block_rows_known_answers():
    # one user with 2 tracks over 2 blocks: both tracks in one block with probability 1/2, so the
    # row (2 rows) reaches a given block with probability 1 - (1/2)^2 = 3/4: 1.5 rows per block
    assert expected_block_rows({2: 1}, 2) == 2  # round(1.5) with half to even is 2
    assert expected_block_rows({2: 4}, 2) == 6
    assert expected_block_rows({1: 10}, 5) == 2     # a single track lands in one block of 5
    assert expected_block_rows({3: 100}, 1) == 300  # one block holds everything
    assert expected_block_rows({}, 4) == 0


def test_choose_num_blocks_takes_the_fewest_within_the_row_bound():
    # 1,000 users of 10 tracks: 10,000 rows, each block gets 10,000 * (1 - (1 - 1/B)^10) of them
    lengths = {10: 1000}
    assert choose_num_blocks(lengths, min_blocks=4, max_block_rows=10_000) == 4   # the floor already fits
    for bound in (9_000, 5_000, 1_000, 300):
        b = choose_num_blocks(lengths, min_blocks=4, max_block_rows=bound)
        assert expected_block_rows(lengths, b) <= bound < expected_block_rows(lengths, b - 1), bound
    # rows of 10 fill every one of 4 blocks almost surely (94%): the bound is reached only once blocks
    # outnumber the row length (B = 10: 6,513 rows each; B = 20: 4,013)
    assert choose_num_blocks(lengths, 4, 6_513) == 10
    assert choose_num_blocks(lengths, 4, 4_013) == 20
    assert choose_num_blocks(lengths, 1, 10**9) == 1


def test_fit_uses_the_fewest_blocks_within_the_row_bound(spark):
    # M1 after the cap: rows of 3 (u1) and 2 (u2, u3, u4), 9 entries. Expected rows per block
    # (n (1 - (1 - 1/B)^n) per user): B=2 3*.875 + 3*1.5 = 7.125 -> 7; B=3 2.111 + 3.333 -> 5;
    # the test session's default parallelism (2) is the floor
    inter = interactions(spark, M1)
    one = fit(cf(k=3, min_support=1, num_blocks=1), inter)
    assert one.fit_info == {"matrix_rows": 9, "blocks": 1, "block_rows": 9}
    assert fit(cf(k=3, min_support=1), inter).fit_info == {"matrix_rows": 9, "blocks": 2, "block_rows": 7}
    bounded = fit(cf(k=3, min_support=1, max_block_rows=6), inter)
    assert bounded.fit_info == {"matrix_rows": 9, "blocks": 3, "block_rows": 5}
    assert_approx_df_equality(sorted_nb(one.neighbors), sorted_nb(bounded.neighbors), 1e-12)


def test_invalid_params():
    with pytest.raises(ValueError):
        ItemCF(similarity="jaccard")
    with pytest.raises(ValueError):
        ItemCF(weighting="sqrt")
    with pytest.raises(ValueError, match="max_block_rows >= 1"):
        ItemCF(max_block_rows=0)


def test_recommend_sums_in_seed_order_whatever_the_arrival_order(spark):
    # float addition is not associative: .1 + .2 + .3 is 0.6000000000000001 in seed order and 0.6
    # backwards; the score must not depend on the order the seeds arrive in (a resumed run reads
    # them from another layout than an uninterrupted one)
    nb = neighbors_df(spark, [("s1", "t", 1.0, 1), ("s2", "t", 1.0, 1), ("s3", "t", 1.0, 1)])
    model = ItemCFModel(nb, {**ItemCF(weighting="binary").params(), "per_seed": 1})
    rows = [("x", "s1", 1.0, 0.1), ("x", "s2", 1.0, 0.2), ("x", "s3", 1.0, 0.3)]
    schema = "user_id string, track_id string, weight double, recency double"
    scores = [recommend(model, spark.createDataFrame(r, schema).coalesce(1), None, n=5).first().score
              for r in (rows, rows[::-1])]
    assert scores == [0.1 + 0.2 + 0.3] * 2 and 0.1 + 0.2 + 0.3 != 0.3 + 0.2 + 0.1
