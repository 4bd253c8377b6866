"""Offline metrics @K: one Spark join/aggregate per method, then numpy on one row per test user.

Accuracy (EVALUATION.md), averaged over *all* test users (a test user without recommendations
scores 0), each with a per-user bootstrap 95% interval (``<metric>_ci95``):

- ``recall@K`` = hits / min(K, |truth|);
- ``ndcg@K`` binary relevance, gain ``1 / log2(pos + 1)``, ideal DCG over min(K, |truth|)
  positions (the definition of Spark's ``RankingEvaluator`` ``ndcgAtK``);
- ``precision@K`` = hits / K;
- ``hit@K`` = share of test users with at least one hit.

How: :func:`per_user_hits` (one Spark join/aggregate) gives each test user's hit positions; those
rows, one per test user (bounded by the test set), are collected and :func:`per_user_vectors` /
:func:`bootstrap_ci` work in numpy. Everything that scales with the train data or the catalogue
stays in Spark.

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
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple  # noqa: F401

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


def per_user_hits(recs: DataFrame, truth: DataFrame, test_users: DataFrame, k: int,
                  top: Optional[DataFrame] = None) -> DataFrame:
    """One row per test user with the positions of the hits (``top``: :func:`top_k` of ``recs``
    for the test users, when the caller has it already).

    Returns
    -------
    DataFrame
        ``user_id, n_truth long, n_recs long, hit_pos array<int>`` (sorted positions of the
        recommended tracks that are in the truth), for every test user (left join: a user
        without recommendations has ``n_recs = 0`` and an empty ``hit_pos``).
    """
    if top is None:
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


def per_user_vectors(hit_pos: Sequence[Sequence[int]], n_truth: Sequence[int], n_recs: Sequence[int], k: int,
                     curve_ks: Sequence[int] = ()) -> Dict[str, "np.ndarray"]:
    """Per-user accuracy @``k`` (EVALUATION.md) from each user's hit positions, in numpy.

    Parameters
    ----------
    hit_pos : sequence of sequences of int
        1-based positions (<= ``k``) of the recommended tracks that are in the user's truth.
    n_truth, n_recs : sequences of int
        |truth| (>= 1) and the list length of each user.

    Returns
    -------
    dict of numpy arrays, one value per user
        ``recall`` = hits / min(k, |truth|); ``ndcg`` = DCG / ideal DCG over min(k, |truth|)
        positions (binary relevance, gain 1 / log2(pos + 1)); ``precision`` = hits / k; ``hit``
        (0/1); ``recall@c`` for each cut-off ``c`` of ``curve_ks``.
    """
    import numpy as np

    n = len(n_truth)
    nt = np.asarray(n_truth, dtype=np.float64)
    if n and nt.min() < 1:
        raise ValueError("every test user needs at least one truth item")
    disc = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))       # gain at positions 1..k
    ideal = np.cumsum(disc)                                            # ideal DCG of 1..k hits
    hits = np.zeros(n)
    dcg = np.zeros(n)
    curve = {int(c): np.zeros(n) for c in curve_ks}
    for u, pos in enumerate(hit_pos):
        p = np.asarray([q for q in (pos or []) if 1 <= q <= k], dtype=np.int64)
        if p.size:
            hits[u] = p.size
            dcg[u] = disc[p - 1].sum()
            for c in curve:
                curve[c][u] = np.count_nonzero(p <= c)
    denom = np.minimum(nt, k)
    out = {"recall": hits / denom, "ndcg": dcg / ideal[denom.astype(np.int64) - 1],
           "precision": hits / k, "hit": (hits > 0).astype(np.float64),
           "has_recs": (np.asarray(n_recs, dtype=np.int64) > 0).astype(np.float64)}
    for c, v in curve.items():
        out[f"recall@{c}"] = v / np.minimum(nt, c)
    return out


def bootstrap_ci(values, n_resamples: int = 1000, seed: int = 0, level: float = 0.95,
                 chunk: int = 50_000_000) -> Tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampling users with replacement).

    Deterministic given ``seed`` (numpy ``default_rng``). Resamples are drawn in chunks so that
    ``n_resamples x len(values)`` indices never exceed ``chunk`` at once.
    """
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("bootstrap of an empty vector")
    rng = np.random.default_rng(seed)
    per = max(1, chunk // v.size)
    means = []
    done = 0
    while done < n_resamples:
        b = min(per, n_resamples - done)
        means.append(v[rng.integers(0, v.size, size=(b, v.size))].mean(axis=1))
        done += b
    m = np.concatenate(means)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(m, [a, 1.0 - a])
    return float(lo), float(hi)


def paired_bootstrap_ci(a, b, n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> Tuple[float, float]:
    """Interval of mean(a) - mean(b) over the same users (the same resamples for both)."""
    import numpy as np

    return bootstrap_ci(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64), n_resamples, seed, level)


def collect_per_user(recs: DataFrame, truth: DataFrame, test_users: DataFrame, k: int,
                     top: Optional[DataFrame] = None):
    """``(user_ids, hit_pos, n_truth, n_recs)``: ONE row per test user collected (bounded by the
    test set, never by the catalogue or the train data), sorted by ``user_id``."""
    rows = per_user_hits(recs, truth, test_users, k, top).orderBy("user_id").collect()
    return ([r["user_id"] for r in rows], [list(r["hit_pos"] or []) for r in rows],
            [int(r["n_truth"]) for r in rows], [int(r["n_recs"]) for r in rows])


def accuracy_summary(users: Sequence[str], hit_pos: Sequence[Sequence[int]], n_truth: Sequence[int],
                     n_recs: Sequence[int], k: int, curve_ks: Sequence[int], n_resamples: int, seed: int,
                     return_per_user: bool = False) -> Dict[str, object]:
    """The accuracy entries of :func:`ranking_metrics` from each test user's hit positions (both the
    Spark and the driver path end here): means, bootstrap intervals, recall curve, per-user values."""
    ks = sorted({int(c) for c in curve_ks if 0 < int(c) <= k} | {k})
    v = per_user_vectors(hit_pos, n_truth, n_recs, k, ks)
    out: Dict[str, object] = {
        f"recall@{k}": float(v["recall"].mean()), f"ndcg@{k}": float(v["ndcg"].mean()),
        f"precision@{k}": float(v["precision"].mean()), f"hit@{k}": float(v["hit"].mean()),
        f"recall@{k}_ci95": list(bootstrap_ci(v["recall"], n_resamples, seed)),
        f"ndcg@{k}_ci95": list(bootstrap_ci(v["ndcg"], n_resamples, seed)),
        "bootstrap": {"resamples": int(n_resamples), "seed": int(seed), "unit": "test user", "level": 0.95},
        "users_with_recs": int(v["has_recs"].sum()),
        "recall_curve": {int(c): float(v[f"recall@{c}"].mean()) for c in ks},
    }
    if return_per_user:
        out["_per_user"] = {"user_id": list(users), "recall": v["recall"], "ndcg": v["ndcg"]}
    return out


def ranking_metrics(recs: DataFrame, truth: DataFrame, test_users: DataFrame, k: int,
                    curve_ks: Sequence[int] = DEFAULT_CURVE_KS, n_resamples: int = 1000, seed: int = 0,
                    return_per_user: bool = False, top: Optional[DataFrame] = None) -> Dict[str, object]:
    """Accuracy metrics @``k`` over all test users, with per-user bootstrap 95% intervals.

    One Spark join/aggregate gives each test user's hit positions (:func:`per_user_hits`); those
    rows (one per test user) are collected and the metrics and intervals computed in numpy.

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
    n_resamples, seed : int
        Bootstrap resamples of the test users and their seed.
    return_per_user : bool
        Also return ``"_per_user"``: ``{"user_id": [...], "recall": array, "ndcg": array}``
        (for paired comparisons; not JSON).
    top : DataFrame, optional
        :func:`top_k` of ``recs`` for the test users, when the caller computed it already.

    Returns
    -------
    dict
        ``recall@k, ndcg@k, precision@k, hit@k`` (floats), ``recall@k_ci95``, ``ndcg@k_ci95``
        (``[low, high]``), ``users_with_recs`` (int), ``recall_curve`` ({cut-off: recall}),
        ``bootstrap`` (resamples, seed).
    """
    t0 = time.perf_counter()
    users, hit_pos, n_truth, n_recs = collect_per_user(recs, truth, test_users, k, top)
    if not users:
        raise ValueError("no test users: cannot compute ranking metrics")
    out = accuracy_summary(users, hit_pos, n_truth, n_recs, k, curve_ks, n_resamples, seed, return_per_user)
    log.info("ranking metrics @%d over %d test users in %.2fs: recall %.4f %s ndcg %.4f %s", k, len(users),
             time.perf_counter() - t0, out[f"recall@{k}"], out[f"recall@{k}_ci95"], out[f"ndcg@{k}"],
             out[f"ndcg@{k}_ci95"])
    return out


@dataclass
class TrainStats:
    """What the beyond-accuracy metrics need of the train pairs, computed once per split and shared
    by every method: distinct tracks and users, and each track's distinct train users (cached)."""

    n_tracks: int
    n_users: int
    popularity: DataFrame  # track_id, n_users
    pairs: DataFrame       # user_id, track_id (distinct)

    @classmethod
    def of(cls, train: DataFrame) -> "TrainStats":
        pairs = train.select("user_id", "track_id").distinct().cache()
        pop = item_popularity(pairs).cache()
        n_tracks = pop.count()
        n_users = pairs.select("user_id").distinct().count()
        return cls(int(n_tracks), int(n_users), pop, pairs)

    def release(self) -> None:
        self.popularity.unpersist()
        self.pairs.unpersist()


def coverage(recs: DataFrame, train: DataFrame, k: int, stats: Optional[TrainStats] = None,
             top: Optional[DataFrame] = None) -> float:
    """Distinct tracks in the top-``k`` lists / distinct tracks in ``train`` (``stats``, ``top``:
    precomputed :class:`TrainStats` and :func:`top_k`)."""
    n_train = stats.n_tracks if stats is not None else train.select("track_id").distinct().count()
    if n_train == 0:
        return 0.0
    n_rec = (top if top is not None else top_k(recs, k)).select("track_id").distinct().count()
    return n_rec / n_train


def item_popularity(train: DataFrame) -> DataFrame:
    """``track_id, n_users``: distinct train users per track."""
    return train.groupBy("track_id").agg(F.countDistinct("user_id").alias("n_users"))


def novelty(recs: DataFrame, train: DataFrame, k: int, stats: Optional[TrainStats] = None,
            top: Optional[DataFrame] = None) -> Optional[float]:
    """Mean self-information (bits) of the recommended tracks; ``None`` without recommendations."""
    n_users = stats.n_users if stats is not None else train.select("user_id").distinct().count()
    if n_users == 0:
        return None
    pop = stats.popularity if stats is not None else item_popularity(train)
    top = top if top is not None else top_k(recs, k)
    si = top.join(pop, "track_id", "left").select(
        "user_id", (-F.log2(F.greatest(F.coalesce("n_users", F.lit(1)), F.lit(1)) / F.lit(float(n_users)))).alias("si"))
    row = si.groupBy("user_id").agg(F.avg("si").alias("si")).agg(F.avg("si").alias("v")).first()
    return None if row["v"] is None else float(row["v"])


def _ild_from_sums(per_list: DataFrame) -> Optional[float]:
    """Mean over lists of ``1 - (sq - n_nonzero) / (n (n - 1))``; lists with n < 2 are skipped."""
    ild = per_list.where(F.col("n") >= 2).select(
        (F.lit(1.0) - (F.col("sq") - F.col("n_nonzero")) / (F.col("n") * (F.col("n") - 1))).alias("ild"))
    row = ild.agg(F.avg("ild").alias("v")).first()
    return None if row["v"] is None else float(row["v"])


def diversity_embeddings(recs: DataFrame, embeddings: DataFrame, k: int,
                         top: Optional[DataFrame] = None) -> Optional[float]:
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
    top = top if top is not None else top_k(recs, k)
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


def diversity_cooccurrence(recs: DataFrame, train: DataFrame, k: int, stats: Optional[TrainStats] = None,
                           top: Optional[DataFrame] = None) -> Optional[float]:
    """Intra-list distance ``1 - cos`` on co-occurrence (binary train user-vectors of tracks).

    ``cos(i, j) = |U_i & U_j| / sqrt(|U_i| |U_j|)``. Cost grows with the train popularity of the
    recommended tracks (one row per list x track x train user); sample the lists for huge runs.
    """
    pairs = stats.pairs if stats is not None else train.select("user_id", "track_id").distinct()
    pop = stats.popularity if stats is not None else item_popularity(train)
    top = (top if top is not None else top_k(recs, k)).withColumnRenamed("user_id", "list_id")
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


def creator_diversity(recs: DataFrame, tracks: DataFrame, k: int, top: Optional[DataFrame] = None) -> Optional[float]:
    """Mean over lists of distinct creators / list length (tracks without a creator count apart)."""
    top = (top if top is not None else top_k(recs, k)).join(tracks.select("track_id", "creator_id"), "track_id", "left")
    creator = F.coalesce(F.col("creator_id"), F.concat(F.lit("\u0000track:"), F.col("track_id")))
    per = top.groupBy("user_id").agg((F.countDistinct(creator) / F.count(F.lit(1))).alias("cd"))
    row = per.agg(F.avg("cd").alias("v")).first()
    return None if row["v"] is None else float(row["v"])


def beyond_accuracy(recs: DataFrame, train: DataFrame, k: int, embeddings: Optional[DataFrame] = None,
                    tracks: Optional[DataFrame] = None, stats: Optional[TrainStats] = None,
                    top: Optional[DataFrame] = None) -> Dict[str, object]:
    """``coverage, novelty, diversity, diversity_basis, creator_diversity`` of the top-``k`` lists.

    ``stats`` (:class:`TrainStats` of ``train``) and ``top`` (:func:`top_k` of ``recs``, cached):
    computed once by the caller when it scores several methods on one split."""
    own = top is None
    if own:
        top = top_k(recs, k).cache()
    try:
        out: Dict[str, object] = {"coverage": coverage(recs, train, k, stats, top),
                                  "novelty": novelty(recs, train, k, stats, top)}
        if embeddings is not None:
            out["diversity"] = diversity_embeddings(recs, embeddings, k, top)
            out["diversity_basis"] = "embeddings"
        else:
            out["diversity"] = diversity_cooccurrence(recs, train, k, stats, top)
            out["diversity_basis"] = "co-occurrence"
        if tracks is not None and "creator_id" in tracks.columns:
            out["creator_diversity"] = creator_diversity(recs, tracks, k, top)
    finally:
        if own:
            top.unpersist()
    return out


# -- funnel -------------------------------------------------------------------------------------


def funnel_metrics(stages: Iterable[Tuple[str, DataFrame]], truth: DataFrame, test_users: DataFrame,
                   k: int, truthset: Optional["TruthSet"] = None,
                   max_rows: Optional[int] = None) -> List[Dict[str, object]]:
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

    With ``truthset`` (:class:`TruthSet`, the split's truth collected) the test users' candidate
    pairs of every stage are collected in one job and counted on the driver when they are at most
    ``max_rows`` (:data:`LOCAL_MAX_ROWS`); otherwise everything is computed in Spark.
    """
    stages = list(stages)
    if not stages:
        return []
    tu = test_users.select("user_id", "n_truth")
    # every stage in one job: the test users' candidate pairs of each stage tagged with its index
    cand = None
    for i, (_, df) in enumerate(stages):
        part = df.select("user_id", "track_id").join(tu.select("user_id"), "user_id", "left_semi") \
            .withColumn("_stage", F.lit(i))
        cand = part if cand is None else cand.unionByName(part)
    cand = cand.distinct()
    if truthset is not None:
        rows = _funnel_local(cand, truthset, stages, k, LOCAL_MAX_ROWS if max_rows is None else max_rows)
        if rows is not None:
            return rows
    n_c = cand.groupBy("_stage", "user_id").agg(F.count(F.lit(1)).alias("n_cand"))
    hits = cand.join(truth.select("user_id", "track_id"), ["user_id", "track_id"], "inner") \
        .groupBy("_stage", "user_id").agg(F.count(F.lit(1)).alias("hits"))
    every = tu.withColumn("_stage", F.explode(F.array(*[F.lit(i) for i in range(len(stages))])))
    per = every.join(n_c, ["_stage", "user_id"], "left").join(hits, ["_stage", "user_id"], "left").select(
        "_stage", "n_truth", F.coalesce("n_cand", F.lit(0)).alias("n_cand"), F.coalesce("hits", F.lit(0)).alias("hits"))
    agg = {r["_stage"]: r for r in per.groupBy("_stage").agg(
        F.avg("n_cand").alias("mean_candidates"),
        F.avg(F.col("hits") / F.col("n_truth")).alias("truth_recall"),
        F.avg(F.least(F.col("hits"), F.lit(k)) / F.least(F.col("n_truth"), F.lit(k))).alias("recall_capped"),
        F.avg(F.when(F.col("hits") > 0, 1.0).otherwise(0.0)).alias("hit_rate"),
        F.sum("hits").alias("truth_kept"),
    ).collect()}  # one row per stage
    rows = []
    for i, (name, _) in enumerate(stages):
        r = agg.get(i)
        get = (lambda c: r[c]) if r is not None else (lambda c: None)
        rows.append({"stage": name,
                     "mean_candidates": float(get("mean_candidates") or 0.0),
                     "truth_recall": float(get("truth_recall") or 0.0),
                     "recall_capped": float(get("recall_capped") or 0.0),
                     "hit_rate": float(get("hit_rate") or 0.0),
                     "truth_kept": int(get("truth_kept") or 0)})
        log.info("funnel stage %-22s candidates/user %.1f truth recall %.4f", name,
                 rows[-1]["mean_candidates"], rows[-1]["truth_recall"])
    return rows


# -- the same metrics from the test users' lists collected once (small test sets) ----------------

#: at most this many recommendation rows of the test users (and truth pairs) are collected for
#: :func:`local_list_metrics`; beyond it every metric stays in Spark (the functions above)
LOCAL_MAX_ROWS = 1_000_000
#: at most this many train (user, track) pairs of the recommended tracks for the co-occurrence
#: diversity on the driver; beyond it :func:`diversity_cooccurrence` runs in Spark
LOCAL_MAX_PAIRS = 5_000_000


@dataclass
class TruthSet:
    """The test users (sorted) and their truth, collected once per split: bounded by the test set."""

    users: List[str]
    n_truth: "np.ndarray"
    truth: "pd.DataFrame"  # user_id, track_id

    @classmethod
    def collect(cls, truth: DataFrame, test_users: DataFrame, max_rows: int = LOCAL_MAX_ROWS) -> Optional["TruthSet"]:
        """``None`` when the truth holds more than ``max_rows`` pairs (the metrics stay in Spark)."""
        import numpy as np

        t = truth.select("user_id", "track_id").limit(max_rows + 1).toPandas()
        if len(t) > max_rows:
            return None
        tu = test_users.select("user_id", "n_truth").toPandas().sort_values("user_id", kind="stable")
        return cls(list(tu["user_id"]), tu["n_truth"].to_numpy(np.int64), t)


def _top_k_frame(rows: "pd.DataFrame", k: int) -> "pd.DataFrame":
    """:func:`top_k` in pandas: best rank per (user, track), ties by ``track_id``, ``pos`` 1..k."""
    best = rows.sort_values(["user_id", "rank", "track_id"], kind="stable") \
        .drop_duplicates(["user_id", "track_id"], keep="first")
    best = best.assign(pos=best.groupby("user_id", sort=False).cumcount() + 1)
    return best[best["pos"] <= k]


def _ild(n: "np.ndarray", n_nonzero: "np.ndarray", sq: "np.ndarray") -> Optional[float]:
    """:func:`_ild_from_sums` in numpy."""
    keep = n >= 2
    if not keep.any():
        return None
    return float((1.0 - (sq[keep] - n_nonzero[keep]) / (n[keep] * (n[keep] - 1))).mean())


def _cooccurrence_ild_local(top: "pd.DataFrame", pairs: "pd.DataFrame") -> Optional[float]:
    """:func:`diversity_cooccurrence` on the driver: ``top`` (user_id, track_id, n_users) and
    ``pairs`` (the train pairs of the recommended tracks). Sparse products, no pairwise loop."""
    import numpy as np
    import scipy.sparse as sp

    lists, list_idx = np.unique(top["user_id"].to_numpy(object), return_inverse=True)
    n = np.bincount(list_idx, minlength=len(lists)).astype(np.float64)
    known = top["n_users"].notna().to_numpy()
    items, item_idx = np.unique(top["track_id"].to_numpy(object)[known], return_inverse=True)
    n_nonzero = np.bincount(list_idx[known], minlength=len(lists)).astype(np.float64)
    pr = pairs[pairs["track_id"].isin(items)]
    users, user_idx = np.unique(pr["user_id"].to_numpy(object), return_inverse=True)
    row = np.searchsorted(items, pr["track_id"].to_numpy(object))
    x = sp.csr_matrix((np.ones(len(pr)), (row, user_idx)), shape=(len(items), len(users)))
    norm = np.sqrt(np.asarray(x.sum(axis=1)).ravel())           # |U_i| = the track's train users
    xn = sp.diags(1.0 / np.maximum(norm, 1e-12)) @ x
    m = sp.csr_matrix((np.ones(len(item_idx)), (list_idx[known], item_idx)), shape=(len(lists), len(items)))
    v = m @ xn
    sq = np.asarray(v.multiply(v).sum(axis=1)).ravel()
    return _ild(n, n_nonzero, sq)


def local_list_metrics(recs: DataFrame, testset: TruthSet, k: int, curve_ks: Sequence[int] = DEFAULT_CURVE_KS,
                       n_resamples: int = 1000, seed: int = 0, return_per_user: bool = False,
                       beyond: bool = True, stats: Optional["TrainStats"] = None,
                       tracks: Optional[DataFrame] = None, embeddings: Optional[DataFrame] = None,
                       max_rows: int = LOCAL_MAX_ROWS,
                       max_pairs: int = LOCAL_MAX_PAIRS) -> Optional[Dict[str, object]]:
    """:func:`ranking_metrics` and (with ``beyond`` and ``stats``) coverage, novelty, co-occurrence
    diversity and creator diversity, from the test users' recommendation rows collected in ONE job
    (with each track's train popularity and creator joined on): the same values as the Spark
    functions, in seconds for thousands of test users.

    Returns ``None`` (nothing computed; use the Spark functions) when the test users hold more than
    ``max_rows`` recommendation rows. The co-occurrence diversity collects the train pairs of the
    recommended tracks when there are at most ``max_pairs`` of them, else it runs in Spark; with
    ``embeddings`` the diversity is :func:`diversity_embeddings` (Spark) on the collected lists.
    """
    import numpy as np
    import pandas as pd

    t0 = time.perf_counter()
    spark = recs.sparkSession
    users_df = spark.createDataFrame(pd.DataFrame({"user_id": pd.Series(testset.users, dtype=object)}), "user_id string")
    mine = recs.select("user_id", "track_id", F.col("rank").cast("int").alias("rank")) \
        .join(F.broadcast(users_df), "user_id", "left_semi")
    if beyond and stats is not None:
        mine = mine.join(stats.popularity, "track_id", "left")
    if beyond and tracks is not None and "creator_id" in tracks.columns:
        mine = mine.join(tracks.select("track_id", "creator_id").dropDuplicates(["track_id"]), "track_id", "left")
    rows = mine.limit(max_rows + 1).toPandas()
    if len(rows) > max_rows:
        return None
    top = _top_k_frame(rows, k)
    hit = top.merge(testset.truth, on=["user_id", "track_id"], how="inner")
    hit_pos = hit.groupby("user_id")["pos"].apply(lambda s: sorted(int(p) for p in s)).to_dict()
    n_recs = top.groupby("user_id").size().to_dict()
    out = accuracy_summary(testset.users, [hit_pos.get(u, []) for u in testset.users], testset.n_truth,
                           [n_recs.get(u, 0) for u in testset.users], k, curve_ks, n_resamples, seed,
                           return_per_user)
    if beyond and stats is not None:
        out["coverage"] = (top["track_id"].nunique() / stats.n_tracks) if stats.n_tracks else 0.0
        if stats.n_users and len(top):
            si = -np.log2(np.maximum(top["n_users"].fillna(1).to_numpy(np.float64), 1.0) / float(stats.n_users))
            out["novelty"] = float(pd.Series(si, index=top.index).groupby(top["user_id"]).mean().mean())
        else:
            out["novelty"] = None
        n_pairs = int(top.drop_duplicates("track_id")["n_users"].fillna(0).sum())
        top_df = None
        if embeddings is not None or n_pairs > max_pairs:
            top_df = spark.createDataFrame(top[["user_id", "track_id", "pos"]].astype({"pos": "int64"}),
                                           "user_id string, track_id string, pos long")
        if embeddings is not None:
            out["diversity"] = diversity_embeddings(top_df, embeddings, k, top_df)
            out["diversity_basis"] = "embeddings"
        else:
            if top_df is None:
                rec_tracks = spark.createDataFrame(
                    pd.DataFrame({"track_id": pd.Series(sorted(top["track_id"].unique()), dtype=object)}),
                    "track_id string")
                pairs = stats.pairs.join(F.broadcast(rec_tracks), "track_id", "left_semi").toPandas()
                out["diversity"] = _cooccurrence_ild_local(top, pairs) if len(top) else None
            else:
                out["diversity"] = diversity_cooccurrence(top_df, None, k, stats, top_df)
            out["diversity_basis"] = "co-occurrence"
        if "creator_id" in top.columns:
            creator = top["creator_id"].where(top["creator_id"].notna(), "\u0000track:" + top["track_id"])
            per = creator.groupby(top["user_id"]).nunique() / top.groupby("user_id").size()
            out["creator_diversity"] = float(per.mean()) if len(per) else None
    log.info("list metrics @%d over %d test users (%d rows, on the driver) in %.2fs: recall %.4f ndcg %.4f", k,
             len(testset.users), len(rows), time.perf_counter() - t0, out[f"recall@{k}"], out[f"ndcg@{k}"])
    return out


def _funnel_local(cand: DataFrame, truthset: TruthSet, stages: Sequence[Tuple[str, DataFrame]], k: int,
                  max_rows: int) -> Optional[List[Dict[str, object]]]:
    """:func:`funnel_metrics` from the collected ``_stage, user_id, track_id`` rows (``None``: more
    than ``max_rows`` of them)."""
    import numpy as np
    import pandas as pd

    got = cand.limit(max_rows + 1).toPandas()
    if len(got) > max_rows:
        return None
    users = pd.Index(truthset.users)
    n_truth = truthset.n_truth.astype(np.float64)
    hit = got.merge(truthset.truth, on=["user_id", "track_id"], how="inner")
    rows = []
    for i, (name, _) in enumerate(stages):
        n_c = got[got["_stage"] == i].groupby("user_id").size().reindex(users, fill_value=0).to_numpy(np.float64)
        h = hit[hit["_stage"] == i].groupby("user_id").size().reindex(users, fill_value=0).to_numpy(np.float64)
        rows.append({"stage": name,
                     "mean_candidates": float(n_c.mean()) if len(users) else 0.0,
                     "truth_recall": float((h / n_truth).mean()) if len(users) else 0.0,
                     "recall_capped": float((np.minimum(h, k) / np.minimum(n_truth, k)).mean()) if len(users) else 0.0,
                     "hit_rate": float((h > 0).mean()) if len(users) else 0.0,
                     "truth_kept": int(h.sum())})
        log.info("funnel stage %-22s candidates/user %.1f truth recall %.4f (on the driver)", name,
                 rows[-1]["mean_candidates"], rows[-1]["truth_recall"])
    return rows
