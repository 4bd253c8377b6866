"""Metrics on hand-made lists whose values were computed by hand (literals below)."""

import numpy as np
import pytest
from pyspark.ml.evaluation import RankingEvaluator
from pyspark.sql import functions as F

from recsys_spark.evaluation.metrics import (
    TrainStats, beyond_accuracy, bootstrap_ci, coverage, creator_diversity, diversity_cooccurrence,
    diversity_embeddings, funnel_metrics, novelty, paired_bootstrap_ci, per_user_hits, per_user_vectors,
    ranking_metrics, top_k)

REC = "user_id string, track_id string, rank int"


@pytest.fixture(scope="module")
def case(spark):
    # truth: a {t1, t2, t3}; b {t4..t8} (|truth| = 5 > K = 3); c {t9} (no recommendations)
    truth = spark.createDataFrame(
        [("a", "t1"), ("a", "t2"), ("a", "t3"), ("b", "t4"), ("b", "t5"), ("b", "t6"), ("b", "t7"), ("b", "t8"),
         ("c", "t9")], "user_id string, track_id string")
    test_users = spark.createDataFrame([("a", 3), ("b", 5), ("c", 1)], "user_id string, n_truth long")
    recs = spark.createDataFrame(
        [("a", "t1", 1), ("a", "x1", 2), ("a", "t2", 3), ("a", "t3", 4),   # t3 at rank 4: beyond K
         ("b", "x2", 1), ("b", "x3", 2), ("b", "t4", 3),
         ("z", "t1", 1)],                                                   # not a test user: ignored
        REC)
    return recs, truth, test_users


def test_ranking_metrics_hand_computed(case):
    recs, truth, test_users = case
    m = ranking_metrics(recs, truth, test_users, k=3, curve_ks=(1, 2, 3))
    # a: hits at 1 and 3 -> recall 2/3; b: hit at 3 -> 1/min(3,5) = 1/3; c: 0
    assert m["recall@3"] == pytest.approx(1 / 3)
    # a: (1 + 1/log2 4) / (1 + 1/log2 3 + 1/log2 4) = 0.70392; b: (1/log2 4) / same = 0.23464; c: 0
    assert m["ndcg@3"] == pytest.approx(0.31285248401517096)
    assert m["precision@3"] == pytest.approx(1 / 3)   # (2/3 + 1/3 + 0) / 3
    assert m["hit@3"] == pytest.approx(2 / 3)
    assert m["users_with_recs"] == 2
    # K=1: a hit (1/1), b 0, c 0; K=2: a 1/2
    assert m["recall_curve"] == {1: pytest.approx(1 / 3), 2: pytest.approx(1 / 6), 3: pytest.approx(1 / 3)}


def _evaluator_frame(per_user, k):
    """Spark RankingEvaluator input with per-user local ids: recommended position p -> p, a missed
    truth item -> K + j (exact for every ranking metric)."""
    n_miss = F.col("n_truth") - F.size("hit_pos")
    pred = F.when(F.col("n_recs") > 0, F.sequence(F.lit(1), F.col("n_recs").cast("int"))) \
        .otherwise(F.array().cast("array<int>"))
    missed = F.when(n_miss > 0, F.sequence(F.lit(k + 1), (F.lit(k) + n_miss).cast("int"))) \
        .otherwise(F.array().cast("array<int>"))
    return per_user.select(pred.cast("array<double>").alias("prediction"),
                           F.concat(F.col("hit_pos"), missed).cast("array<double>").alias("label"))


def test_numpy_metrics_match_spark_ranking_evaluator(case):
    """NDCG / precision in numpy equal Spark's RankingEvaluator; its recallAtK divides by |truth|
    (not min(K, |truth|), the protocol), which is why recall is computed by hand."""
    recs, truth, test_users = case
    frame = _evaluator_frame(per_user_hits(recs, truth, test_users, 3), 3)
    m = ranking_metrics(recs, truth, test_users, k=3)
    ev = RankingEvaluator(k=3)
    assert m["ndcg@3"] == pytest.approx(ev.evaluate(frame, {ev.metricName: "ndcgAtK"}))
    assert m["precision@3"] == pytest.approx(ev.evaluate(frame, {ev.metricName: "precisionAtK"}))
    spark_recall = RankingEvaluator(metricName="recallAtK", k=3).evaluate(frame)
    assert spark_recall == pytest.approx((2 / 3 + 1 / 5 + 0) / 3)  # 0.28889 != the protocol's 1/3


def test_per_user_vectors_hand_computed():
    # u0: truth 2, hits at 1 and 4 (K = 3: the 4 is beyond K); u1: truth 5 > K, hit at 2; u2: no recs
    v = per_user_vectors([[1, 4], [2], []], [2, 5, 1], [4, 3, 0], k=3, curve_ks=(1, 3))
    assert v["recall"].tolist() == pytest.approx([1 / 2, 1 / 3, 0.0])
    idcg2, idcg3 = 1 + 1 / np.log2(3), 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert v["ndcg"].tolist() == pytest.approx([1 / idcg2, (1 / np.log2(3)) / idcg3, 0.0])
    assert v["precision"].tolist() == pytest.approx([1 / 3, 1 / 3, 0.0])
    assert v["hit"].tolist() == [1.0, 1.0, 0.0]
    assert v["recall@1"].tolist() == pytest.approx([1.0, 0.0, 0.0])
    assert v["has_recs"].tolist() == [1.0, 1.0, 0.0]


def test_bootstrap_interval_known_answers():
    # a constant vector: every resample has the same mean
    assert bootstrap_ci([0.25] * 40, 200, seed=1) == pytest.approx((0.25, 0.25))
    # 0/1 with p = 0.5 over n = 400 users: mean's sd = sqrt(.25 / 400) = .025, 95% ~ +-1.96 sd = +-.049
    v = np.array([0.0, 1.0] * 200)
    lo, hi = bootstrap_ci(v, 2000, seed=0)
    assert lo == pytest.approx(0.5 - 0.049, abs=0.01) and hi == pytest.approx(0.5 + 0.049, abs=0.01)
    assert bootstrap_ci(v, 2000, seed=0) == (lo, hi)              # seeded: deterministic
    assert bootstrap_ci(v, 2000, seed=0, chunk=1000) == (lo, hi)  # chunking does not change the draws
    # paired: b = a - 0.1 for every user -> the difference is exactly 0.1 in every resample
    a = np.linspace(0, 1, 50)
    assert paired_bootstrap_ci(a, a - 0.1, 300) == pytest.approx((0.1, 0.1))
    with pytest.raises(ValueError):
        bootstrap_ci([], 10)


def test_ranking_metrics_intervals(case):
    recs, truth, test_users = case
    m = ranking_metrics(recs, truth, test_users, k=3, n_resamples=500, seed=3)
    lo, hi = m["recall@3_ci95"]
    # per-user recall (2/3, 1/3, 0): resampled means lie in [0, 2/3] and around the mean 1/3
    assert 0.0 <= lo < m["recall@3"] < hi <= 2 / 3
    assert m["ndcg@3_ci95"][0] < m["ndcg@3"] < m["ndcg@3_ci95"][1]
    assert m["bootstrap"] == {"resamples": 500, "seed": 3, "unit": "test user", "level": 0.95}


def test_per_user_hits_rows(spark, case):
    recs, truth, test_users = case
    rows = {r["user_id"]: (r["n_truth"], r["n_recs"], list(r["hit_pos"]))
            for r in per_user_hits(recs, truth, test_users, 3).collect()}
    assert rows == {"a": (3, 3, [1, 3]), "b": (5, 3, [3]), "c": (1, 0, [])}


def test_coverage_and_novelty(spark):
    # train users u1..u4; A touched by 4 users, B by 2, C by 1; E is in train too (1 user)
    train = spark.createDataFrame(
        [("u1", "A"), ("u2", "A"), ("u3", "A"), ("u4", "A"), ("u1", "B"), ("u2", "B"), ("u3", "C"), ("u4", "E")],
        "user_id string, track_id string")
    recs = spark.createDataFrame([("x", "A", 1), ("x", "B", 2), ("y", "C", 1), ("y", "D", 2)], REC)
    # self-information: A -log2(4/4)=0, B 1, C 2, D unseen counts as 1 user -> 2; lists 0.5 and 2
    assert novelty(recs, train, 30) == pytest.approx(1.25)
    # recommended A, B, C, D (4 distinct) over 4 train items (A, B, C, E)
    assert coverage(recs, train, 30) == pytest.approx(1.0)
    assert coverage(recs, train, 1) == pytest.approx(0.5)  # top-1: A and C
    # the evaluation's shared path: train statistics once per split, the top-k once per method
    stats = TrainStats.of(train)
    assert (stats.n_tracks, stats.n_users) == (4, 4)
    got = beyond_accuracy(recs, train, 30, stats=stats, top=top_k(recs, 30))
    assert got["novelty"] == pytest.approx(1.25) and got["coverage"] == pytest.approx(1.0)
    assert got == beyond_accuracy(recs, train, 30)


def test_diversity_cooccurrence(spark):
    # A = {u1,u2,u3}, B = {u1,u2}, C = {u3,u4}: cos(A,B)=2/sqrt6, cos(A,C)=1/sqrt6, cos(B,C)=0
    train = spark.createDataFrame(
        [("u1", "A"), ("u2", "A"), ("u3", "A"), ("u1", "B"), ("u2", "B"), ("u3", "C"), ("u4", "C")],
        "user_id string, track_id string")
    recs = spark.createDataFrame(
        [("x", "A", 1), ("x", "B", 2), ("x", "C", 3),
         ("y", "B", 1), ("y", "D", 2),   # D has no train user: distance 1 to everything
         ("z", "A", 1)],                  # a one-item list has no pairs: skipped
        REC)
    # x: 1 - (0.81650 + 0.40825 + 0) / 3 = 0.59175; y: 1.0
    assert diversity_cooccurrence(recs, train, 30) == pytest.approx(0.7958758547680684)


def test_diversity_embeddings_and_creators(spark):
    emb = spark.createDataFrame([("A", [1.0, 0.0]), ("B", [2.0, 2.0]), ("C", [0.0, 3.0])],
                                "track_id string, embedding array<float>")
    recs = spark.createDataFrame([("x", "A", 1), ("x", "B", 2), ("x", "C", 3), ("y", "A", 1), ("y", "C", 2)], REC)
    # x: cos AB = cos BC = 0.70711, cos AC = 0 -> 1 - 1.41421/3 = 0.52860; y: 1.0
    assert diversity_embeddings(recs, emb, 30) == pytest.approx(0.7642977396044842)
    tracks = spark.createDataFrame([("A", "c1"), ("B", "c1"), ("C", "c2")], "track_id string, creator_id string")
    # x: 2 creators / 3 tracks; y: 2 / 2
    assert creator_diversity(recs, tracks, 30) == pytest.approx((2 / 3 + 1.0) / 2)


def test_funnel_metrics_hand_made_stages(spark, case):
    _, truth, test_users = case
    uc = "user_id string, track_id string"
    ch1 = spark.createDataFrame([("a", "t1"), ("a", "x1")], uc)
    ch2 = spark.createDataFrame([("a", "t2"), ("b", "t4"), ("zz", "t1")], uc)
    union = ch1.unionByName(ch2)
    filtered = spark.createDataFrame([("a", "t1"), ("b", "t4")], uc)
    final = spark.createDataFrame([("a", "t1"), ("a", "t1")], uc)   # duplicate ignored
    from recsys_spark.evaluation.metrics import TruthSet

    stages = [("ch1", ch1), ("ch2", ch2), ("union", union), ("filtered", filtered), ("final", final)]
    in_spark = funnel_metrics(stages, truth, test_users, k=3)
    # on the driver (the split's truth collected once), and in Spark when the rows exceed the bound
    truthset = TruthSet.collect(truth, test_users)
    assert funnel_metrics(stages, truth, test_users, k=3, truthset=truthset, max_rows=2) == in_spark
    rows = funnel_metrics(stages, truth, test_users, k=3, truthset=truthset)
    for r, s in zip(rows, in_spark):
        assert r == {key: pytest.approx(v) if isinstance(v, float) else v for key, v in s.items()}
    got = [(r["stage"], round(r["mean_candidates"], 5), round(r["truth_recall"], 5), round(r["recall_capped"], 5),
            round(r["hit_rate"], 5), r["truth_kept"]) for r in rows]
    assert got == [
        ("ch1", 0.66667, 0.11111, 0.11111, 0.33333, 1),        # a: 1/3
        ("ch2", 0.66667, 0.17778, 0.22222, 0.66667, 2),        # a: 1/3, b: 1/5 (capped: 1/3)
        ("union", 1.33333, 0.28889, 0.33333, 0.66667, 3),      # a: 2/3, b: 1/5
        ("filtered", 0.66667, 0.17778, 0.22222, 0.66667, 2),
        ("final", 0.33333, 0.11111, 0.11111, 0.33333, 1),
    ]


def test_driver_metrics_equal_the_spark_metrics(spark):
    """evaluate_recs on the driver (the test users' lists collected once) gives the Spark path's
    values, the hand-computed ones included; the co-occurrence fallback to Spark too."""
    from types import SimpleNamespace

    from recsys_spark.evaluation.evaluate import evaluate_recs
    from recsys_spark.evaluation.metrics import TruthSet, local_list_metrics
    from recsys_spark.evaluation.split import Split

    # train: A = {u1,u2,u3}, B = {u1,u2}, C = {u3,u4}; x and y are test users and u1 too
    uc = "user_id string, track_id string"
    train = spark.createDataFrame(
        [("u1", "A"), ("u2", "A"), ("u3", "A"), ("u1", "B"), ("u2", "B"), ("u3", "C"), ("u4", "C")], uc)
    train = train.withColumn("weight", F.lit(1.0))
    truth = spark.createDataFrame([("x", "C"), ("y", "D"), ("y", "E"), ("u1", "C")], uc)
    test_users = spark.createDataFrame([("u1", 1), ("x", 1), ("y", 2)], "user_id string, n_truth long")
    recs = spark.createDataFrame(
        [("x", "A", 1), ("x", "B", 2), ("x", "C", 3), ("x", "A", 5),   # duplicate A: best rank kept
         ("y", "B", 1), ("y", "D", 2),
         ("u1", "A", 1),                                                 # a train pair: counted
         ("zz", "A", 1)],                                                # not a test user
        REC)
    tracks = spark.createDataFrame([("A", "c1"), ("B", "c1"), ("C", "c2"), ("D", None)],
                                   "track_id string, creator_id string")
    split = Split(cutoff=None, end=None, train_events=train, train=train, truth=truth, test_users=test_users)
    ds = SimpleNamespace(tracks=tracks, track_embeddings=None)
    on_driver = evaluate_recs(recs, split, 30, ds, (1, 2, 3), local=True, n_resamples=200, return_per_user=True)
    in_spark = evaluate_recs(recs, split, 30, ds, (1, 2, 3), local=False, n_resamples=200, return_per_user=True)
    pu_d, pu_s = on_driver.pop("_per_user"), in_spark.pop("_per_user")
    assert pu_d["user_id"] == pu_s["user_id"] == ["u1", "x", "y"]
    np.testing.assert_allclose(pu_d["ndcg"], pu_s["ndcg"])
    assert on_driver.keys() == in_spark.keys()
    for key, value in in_spark.items():
        assert on_driver[key] == (pytest.approx(value) if not isinstance(value, (dict, list)) else value), key
    # by hand: x hit C at 3 -> recall 1, y hit D at 2 -> 1/2, u1 none
    assert on_driver["recall@30"] == pytest.approx(0.5)
    # co-occurrence: x {A,B,C} 0.59175, y {B, D(no users)} 1.0, u1 one item skipped
    assert on_driver["diversity"] == pytest.approx(0.7958758547680684)
    # creators: x {c1,c1,c2} 2/3, y {c1, D alone} 1, u1 1
    assert on_driver["creator_diversity"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert on_driver["train_items_recommended"] == 1
    # more train pairs than the bound: the diversity runs in Spark, same value
    stats = TrainStats.of(train)
    ts = TruthSet.collect(truth, test_users)
    fallback = local_list_metrics(recs, ts, 30, (30,), n_resamples=10, stats=stats, max_pairs=0)
    assert fallback["diversity"] == pytest.approx(0.7958758547680684)
    # more rows than the bound: nothing computed on the driver
    assert local_list_metrics(recs, ts, 30, (30,), stats=stats, max_rows=3) is None
    stats.release()
