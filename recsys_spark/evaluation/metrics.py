"""Offline metrics @K, computed in Spark (nothing per user is collected to the driver).

Accuracy (EVALUATION.md), averaged over *all* test users (a test user without recommendations
scores 0):

- ``recall@K`` = hits / min(K, |truth|)  (hand-written: ``RankingEvaluator``'s ``recallAtK``
  divides by |truth|, which is not the protocol);
- ``ndcg@K`` binary relevance, ideal DCG over min(K, |truth|) positions: Spark's
  ``RankingEvaluator(metricName="ndcgAtK")``, whose definition is exactly this (verified in
  ``tests/evaluation/test_eval_metrics.py``);
- ``precision@K`` = hits / K: ``RankingEvaluator(metricName="precisionAtK")``;
- ``hit@K`` = share of test users with at least one hit.

``RankingEvaluator`` needs ``array<double>`` ids. Instead of a global track index we number the
items of each user locally: the recommended item at position ``p`` becomes ``p``; a truth item
that was hit becomes its position, a missed one ``K + j``. This encoding is exact for every
ranking metric and needs no driver-side or single-partition step.

Beyond accuracy:

- ``coverage`` = distinct recommended tracks / distinct tracks in train;
- ``novelty`` = mean self-information ``-log2(n_users(i) / n_train_users)`` of the recommended
  tracks (``n_users(i)`` = train users of track ``i``; a track no train user touched counts as 1),
  averaged per list then over users;
- ``diversity`` = intra-list distance, mean pairwise ``1 - cos`` within a list; on embeddings when
  given, else on the binary train user-vectors of the tracks (co-occurrence cosine). Computed
  without a pairwise self-join: for L2-normalised vectors ``sum_{i != j} cos(i, j) =
  ||sum_i v_i||^2 - sum_i ||v_i||^2``;
- ``creator_diversity`` = distinct creators / list length (needs ``tracks.creator_id``).
"""

from __future__ import annotations

import logging
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

log = logging.getLogger(__name__)

DEFAULT_CURVE_KS = (1, 5, 10, 20, 30)


def top_k(recs: DataFrame, k: int) -> DataFrame:
    """``user_id, track_id, pos`` : the first ``k`` distinct tracks of each user's list by ``rank``.

    Duplicates (same track twice for a user) keep their best rank; ``pos`` is 1..n contiguous
    (ties of ``rank`` broken by ``track_id``).
    """
    best = recs.groupBy("user_id", "track_id").agg(F.min("rank").alias("rank"))
    w = Window.partitionBy("user_id").orderBy(F.col("rank").asc(), F.col("track_id").asc())
    return best.withColumn("pos", F.row_number().over(w)).where(F.col("pos") <= k) \
        .select("user_id", "track_id", "pos")


def per_user_hits(recs: DataFrame, truth: DataFrame, test_users: DataFrame, k: int) -> DataFrame:
    """One row per test user with the positions of the hits.

    Returns
    -------
    DataFrame
        ``user_id, n_truth long, n_recs long, hit_pos array<int>`` (sorted positions of the
        recommended tracks that are in the truth), for every test user (left join: a user
        without recommendations has ``n_recs = 0`` and an empty ``hit_pos``).
    """
    top = top_k(recs.join(test_users.select("user_id"), "user_id", "left_semi"), k)
    n_recs = top.groupBy("user_id").agg(F.count(F.lit(1)).alias("n_recs"))
    hits = top.join(truth.select("user_id", "track_id"), ["user_id", "track_id"], "inner") \
        .groupBy("user_id").agg(F.sort_array(F.collect_list(F.col("pos").cast("int"))).alias("hit_pos"))
    return (
        test_users.select("user_id", "n_truth")
        .join(n_recs, "user_id", "left")
        .join(hits, "user_id", "left")
        .select("user_id", "n_truth", F.coalesce("n_recs", F.lit(0)).cast("long").alias("n_recs"),
                F.coalesce("hit_pos", F.array().cast("array<int>")).alias("hit_pos"))
    )


def _evaluator_frame(per_user: DataFrame, k: int) -> DataFrame:
    """``prediction array<double>, label array<double>`` with per-user local ids (module doc)."""
    n_miss = F.col("n_truth") - F.size("hit_pos")
    pred = F.when(F.col("n_recs") > 0, F.sequence(F.lit(1), F.col("n_recs").cast("int"))) \
        .otherwise(F.array().cast("array<int>"))
    missed = F.when(n_miss > 0, F.sequence(F.lit(k + 1), (F.lit(k) + n_miss).cast("int"))) \
        .otherwise(F.array().cast("array<int>"))
    return per_user.select(
        pred.cast("array<double>").alias("prediction"),
        F.concat(F.col("hit_pos"), missed).cast("array<double>").alias("label"),
    )


def ranking_metrics(recs: DataFrame, truth: DataFrame, test_users: DataFrame, k: int,
                    curve_ks: Sequence[int] = DEFAULT_CURVE_KS) -> Dict[str, object]:
    """Accuracy metrics @``k`` over all test users.

    Parameters
    ----------
    recs : DataFrame
        ``user_id, track_id, rank`` (1 = best); other columns ignored.
    truth : DataFrame
        ``user_id, track_id``.
    test_users : DataFrame
        ``user_id, n_truth`` (:attr:`Split.test_users`).
    k : int
    curve_ks : sequence of int
        Cut-offs (<= k) of the recall curve.

    Returns
    -------
    dict
        ``recall@k, ndcg@k, precision@k, hit@k`` (floats), ``users_with_recs`` (int),
        ``recall_curve`` ({cut-off: recall}).
    """
    from pyspark.ml.evaluation import RankingEvaluator

    t0 = time.perf_counter()
    per_user = per_user_hits(recs, truth, test_users, k).cache()
    ks = sorted({int(c) for c in curve_ks if 0 < int(c) <= k} | {k})
    aggs = [F.count(F.lit(1)).alias("users"),
            F.sum(F.when(F.col("n_recs") > 0, 1).otherwise(0)).alias("users_with_recs"),
            F.avg(F.when(F.size("hit_pos") > 0, 1.0).otherwise(0.0)).alias("hit")]
    for c in ks:
        n_hits = F.size(F.filter("hit_pos", lambda p: p <= c))
        aggs.append(F.avg(n_hits / F.least(F.lit(c), F.col("n_truth"))).alias(f"recall_{c}"))
    row = per_user.agg(*aggs).first()
    out: Dict[str, object] = {}
    n_users = int(row["users"] or 0)
    if n_users == 0:
        per_user.unpersist()
        raise ValueError("no test users: cannot compute ranking metrics")
    ev_df = _evaluator_frame(per_user, k)
    ev = RankingEvaluator(predictionCol="prediction", labelCol="label", k=k)
    out[f"recall@{k}"] = float(row[f"recall_{k}"])
    out[f"ndcg@{k}"] = float(ev.evaluate(ev_df, {ev.metricName: "ndcgAtK"}))
    out[f"precision@{k}"] = float(ev.evaluate(ev_df, {ev.metricName: "precisionAtK"}))
    out[f"hit@{k}"] = float(row["hit"])
    out["users_with_recs"] = int(row["users_with_recs"] or 0)
    out["recall_curve"] = {int(c): float(row[f"recall_{c}"]) for c in ks}
    per_user.unpersist()
    log.info("ranking metrics @%d over %d test users in %.2fs: recall %.4f ndcg %.4f", k, n_users,
             time.perf_counter() - t0, out[f"recall@{k}"], out[f"ndcg@{k}"])
    return out


def coverage(recs: DataFrame, train: DataFrame, k: int) -> float:
    """Distinct tracks in the top-``k`` lists / distinct tracks in ``train``."""
    n_train = train.select("track_id").distinct().count()
    if n_train == 0:
        return 0.0
    n_rec = top_k(recs, k).select("track_id").distinct().count()
    return n_rec / n_train


def item_popularity(train: DataFrame) -> DataFrame:
    """``track_id, n_users``: distinct train users per track."""
    return train.groupBy("track_id").agg(F.countDistinct("user_id").alias("n_users"))


def novelty(recs: DataFrame, train: DataFrame, k: int) -> Optional[float]:
    """Mean self-information (bits) of the recommended tracks; ``None`` without recommendations."""
    n_users = train.select("user_id").distinct().count()
    if n_users == 0:
        return None
    pop = item_popularity(train)
    si = top_k(recs, k).join(pop, "track_id", "left").select(
        "user_id", (-F.log2(F.greatest(F.coalesce("n_users", F.lit(1)), F.lit(1)) / F.lit(float(n_users)))).alias("si"))
    row = si.groupBy("user_id").agg(F.avg("si").alias("si")).agg(F.avg("si").alias("v")).first()
    return None if row["v"] is None else float(row["v"])


def _ild_from_sums(per_list: DataFrame) -> Optional[float]:
    """Mean over lists of ``1 - (sq - n_nonzero) / (n (n - 1))``; lists with n < 2 are skipped."""
    ild = per_list.where(F.col("n") >= 2).select(
        (F.lit(1.0) - (F.col("sq") - F.col("n_nonzero")) / (F.col("n") * (F.col("n") - 1))).alias("ild"))
    row = ild.agg(F.avg("ild").alias("v")).first()
    return None if row["v"] is None else float(row["v"])


def diversity_embeddings(recs: DataFrame, embeddings: DataFrame, k: int) -> Optional[float]:
    """Intra-list distance ``1 - cos`` on embeddings (``track_id, embedding array<float>``).

    Tracks without an embedding count as vectors orthogonal to every other (distance 1).
    """
    from pyspark.ml.functions import array_to_vector, vector_to_array
    from pyspark.ml.stat import Summarizer

    if "model_version" in embeddings.columns:  # the platform table: one vector per track (latest version)
        order = [F.col(c).desc_nulls_last() for c in ("created_at", "model_version") if c in embeddings.columns]
        w = Window.partitionBy("track_id").orderBy(*order)
        embeddings = embeddings.withColumn("_r", F.row_number().over(w)).where("_r = 1")
    emb = embeddings.select("track_id", F.col("embedding").cast("array<double>").alias("e"))
    norm = F.sqrt(F.aggregate("e", F.lit(0.0), lambda acc, x: acc + x * x))
    emb = emb.select("track_id", F.transform("e", lambda x: x / F.greatest(norm, F.lit(1e-12))).alias("u"),
                     (norm > 0).alias("nz"))
    top = top_k(recs, k)
    n = top.groupBy("user_id").agg(F.count(F.lit(1)).alias("n"))
    joined = top.join(emb, "track_id", "inner").where("nz")
    sums = joined.groupBy("user_id").agg(
        vector_to_array(Summarizer.sum(array_to_vector("u"))).alias("s"),
        F.count(F.lit(1)).alias("n_nonzero"))
    sums = sums.select("user_id", "n_nonzero",
                       F.aggregate("s", F.lit(0.0), lambda acc, x: acc + x * x).alias("sq"))
    per_list = n.join(sums, "user_id", "left").select(
        "user_id", "n", F.coalesce("n_nonzero", F.lit(0)).alias("n_nonzero"), F.coalesce("sq", F.lit(0.0)).alias("sq"))
    return _ild_from_sums(per_list)


def diversity_cooccurrence(recs: DataFrame, train: DataFrame, k: int) -> Optional[float]:
    """Intra-list distance ``1 - cos`` on co-occurrence (binary train user-vectors of tracks).

    ``cos(i, j) = |U_i & U_j| / sqrt(|U_i| |U_j|)``. Cost grows with the train popularity of the
    recommended tracks (one row per list x track x train user); sample the lists for huge runs.
    """
    pairs = train.select("user_id", "track_id").distinct()
    pop = item_popularity(train)
    top = top_k(recs, k).withColumnRenamed("user_id", "list_id")
    n = top.groupBy("list_id").agg(F.count(F.lit(1)).alias("n"))
    nz = top.join(pop, "track_id", "inner").groupBy("list_id").agg(F.count(F.lit(1)).alias("n_nonzero"))
    contrib = (top.join(pop, "track_id", "inner")
               .join(pairs, "track_id", "inner")
               .select("list_id", "user_id", (F.lit(1.0) / F.sqrt(F.col("n_users").cast("double"))).alias("v")))
    sq = contrib.groupBy("list_id", "user_id").agg(F.sum("v").alias("s")) \
        .groupBy("list_id").agg(F.sum(F.col("s") * F.col("s")).alias("sq"))
    per_list = n.join(nz, "list_id", "left").join(sq, "list_id", "left").select(
        "n", F.coalesce("n_nonzero", F.lit(0)).alias("n_nonzero"), F.coalesce("sq", F.lit(0.0)).alias("sq"))
    return _ild_from_sums(per_list)


def creator_diversity(recs: DataFrame, tracks: DataFrame, k: int) -> Optional[float]:
    """Mean over lists of distinct creators / list length (tracks without a creator count apart)."""
    top = top_k(recs, k).join(tracks.select("track_id", "creator_id"), "track_id", "left")
    creator = F.coalesce(F.col("creator_id"), F.concat(F.lit("\u0000track:"), F.col("track_id")))
    per = top.groupBy("user_id").agg((F.countDistinct(creator) / F.count(F.lit(1))).alias("cd"))
    row = per.agg(F.avg("cd").alias("v")).first()
    return None if row["v"] is None else float(row["v"])


def beyond_accuracy(recs: DataFrame, train: DataFrame, k: int, embeddings: Optional[DataFrame] = None,
                    tracks: Optional[DataFrame] = None) -> Dict[str, object]:
    """``coverage, novelty, diversity, diversity_basis, creator_diversity`` of the top-``k`` lists."""
    out: Dict[str, object] = {"coverage": coverage(recs, train, k), "novelty": novelty(recs, train, k)}
    if embeddings is not None:
        out["diversity"] = diversity_embeddings(recs, embeddings, k)
        out["diversity_basis"] = "embeddings"
    else:
        out["diversity"] = diversity_cooccurrence(recs, train, k)
        out["diversity_basis"] = "co-occurrence"
    if tracks is not None and "creator_id" in tracks.columns:
        out["creator_diversity"] = creator_diversity(recs, tracks, k)
    return out


# -- funnel -------------------------------------------------------------------------------------


def funnel_metrics(stages: Iterable[Tuple[str, DataFrame]], truth: DataFrame, test_users: DataFrame,
                   k: int) -> List[Dict[str, object]]:
    """Where does the truth get lost? Recall of the truth by each stage's candidate set.

    Parameters
    ----------
    stages : iterable of (name, DataFrame)
        In funnel order; each DataFrame has ``user_id, track_id`` (a candidate set: any size per
        user; other columns ignored; duplicates ignored).
    truth, test_users : DataFrame
        As in :class:`~recsys_spark.evaluation.split.Split`.
    k : int
        Only for ``recall_capped``.

    Returns
    -------
    list of dict
        One per stage, in order: ``stage``; ``mean_candidates`` (per test user, users without
        candidates count 0); ``truth_recall`` = mean of hits / |truth| (the recall ceiling of the
        set); ``recall_capped`` = mean of min(hits, k) / min(k, |truth|) (equals recall@k for a
        list of at most ``k``); ``hit_rate`` = share of test users with a hit; ``truth_kept`` =
        total truth pairs still present.
    """
    rows = []
    tu = test_users.select("user_id", "n_truth")
    for name, df in stages:
        cand = df.select("user_id", "track_id").distinct().join(tu.select("user_id"), "user_id", "left_semi")
        n_c = cand.groupBy("user_id").agg(F.count(F.lit(1)).alias("n_cand"))
        hits = cand.join(truth.select("user_id", "track_id"), ["user_id", "track_id"], "inner") \
            .groupBy("user_id").agg(F.count(F.lit(1)).alias("hits"))
        per = tu.join(n_c, "user_id", "left").join(hits, "user_id", "left").select(
            "n_truth", F.coalesce("n_cand", F.lit(0)).alias("n_cand"), F.coalesce("hits", F.lit(0)).alias("hits"))
        r = per.agg(
            F.avg("n_cand").alias("mean_candidates"),
            F.avg(F.col("hits") / F.col("n_truth")).alias("truth_recall"),
            F.avg(F.least(F.col("hits"), F.lit(k)) / F.least(F.col("n_truth"), F.lit(k))).alias("recall_capped"),
            F.avg(F.when(F.col("hits") > 0, 1.0).otherwise(0.0)).alias("hit_rate"),
            F.sum("hits").alias("truth_kept"),
        ).first()
        rows.append({"stage": name,
                     "mean_candidates": float(r["mean_candidates"] or 0.0),
                     "truth_recall": float(r["truth_recall"] or 0.0),
                     "recall_capped": float(r["recall_capped"] or 0.0),
                     "hit_rate": float(r["hit_rate"] or 0.0),
                     "truth_kept": int(r["truth_kept"] or 0)})
        log.info("funnel stage %-22s candidates/user %.1f truth recall %.4f", name,
                 rows[-1]["mean_candidates"], rows[-1]["truth_recall"])
    return rows
