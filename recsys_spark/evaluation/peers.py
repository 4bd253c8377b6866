"""Peer recommenders evaluated side by side with the project's channels.

``popularity`` runs in Spark. ``implicit_als``, ``implicit_item`` (BM25 / cosine item-item of
benfred/implicit, the optional ``[bench]`` extra, imported lazily) and ``ease`` (Steck 2019, a
dense item-item closed form for catalogs up to ~20K items) are single-node libraries: they
collect the *train* pairs to the driver, fit there, score the test users there and hand the
top-K back as a DataFrame. That is fine for peers on evaluation-sized data; the project's own
channels never do it.

Every peer has the method signature of :mod:`recsys_spark.evaluation.methods`:
``fn(spark, train, users, k, context) -> DataFrame[user_id, track_id, score, rank]``, never
recommends a train item of the user, and is deterministic given ``context.seed``.
"""

from __future__ import annotations

import logging
import time
from typing import Dict, Optional, Tuple

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

log = logging.getLogger(__name__)

RECS_SCHEMA = T.StructType([
    T.StructField("user_id", T.StringType(), False),
    T.StructField("track_id", T.StringType(), False),
    T.StructField("score", T.DoubleType(), False),
    T.StructField("rank", T.IntegerType(), False),
])


class MethodUnavailable(RuntimeError):
    """Raised by a method that cannot run on this data set / installation; the reason is reported."""


# -- popularity (Spark) --------------------------------------------------------------------------


def popularity(spark: SparkSession, train: DataFrame, users: DataFrame, k: int, context=None) -> DataFrame:
    """Most popular train tracks (distinct train users; ties by ``track_id``) not in the user's train.

    The pool of top tracks starts at ``2k`` and doubles until every user has ``k`` unseen ones
    (or the catalog is exhausted): a cross join of the test users with a small pool, never a
    per-user loop.
    """
    pop = train.groupBy("track_id").agg(F.countDistinct("user_id").cast("double").alias("score"))
    n_items = pop.count()
    ordered = pop.withColumn("prank", F.row_number().over(Window.orderBy(F.col("score").desc(), F.col("track_id"))))
    ordered = ordered.cache()
    u = users.select("user_id").distinct()
    pool = 2 * k
    while True:
        top = ordered.where(F.col("prank") <= pool)
        cand = u.crossJoin(F.broadcast(top)).join(train.select("user_id", "track_id"), ["user_id", "track_id"],
                                                   "left_anti")
        w = Window.partitionBy("user_id").orderBy("prank")
        recs = cand.withColumn("rank", F.row_number().over(w)).where(F.col("rank") <= k)
        short = recs.groupBy("user_id").count().where(F.col("count") < k).limit(1).count()
        if short == 0 or pool >= n_items:
            break
        pool *= 2
    return recs.select("user_id", "track_id", "score", F.col("rank").cast("int"))


# -- single-node peers ---------------------------------------------------------------------------


def _confidence(w: np.ndarray, weighting: str) -> np.ndarray:
    if weighting == "binary":
        return np.ones_like(w, dtype=np.float32)
    if weighting == "log":
        return np.log1p(w).astype(np.float32)
    if weighting == "raw":
        return w.astype(np.float32)
    raise ValueError(f"weighting must be binary | log | raw, got {weighting!r}")


class _Matrix:
    """Train pairs as a CSR user x item matrix plus the id maps (driver side)."""

    def __init__(self, train: DataFrame, weighting: str):
        import scipy.sparse as sp

        pdf = train.select("user_id", "track_id", "weight").toPandas()
        self.user_ids, u_idx = np.unique(pdf["user_id"].to_numpy(dtype=object).astype(str), return_inverse=True)
        self.item_ids, i_idx = np.unique(pdf["track_id"].to_numpy(dtype=object).astype(str), return_inverse=True)
        vals = _confidence(pdf["weight"].to_numpy(dtype=np.float64), weighting)
        keep = vals > 0
        self.X = sp.csr_matrix((vals[keep], (u_idx[keep], i_idx[keep])),
                               shape=(len(self.user_ids), len(self.item_ids)), dtype=np.float32)
        self.X.sum_duplicates()
        self._pos = {u: i for i, u in enumerate(self.user_ids)}

    def rows_of(self, users: DataFrame) -> Tuple[np.ndarray, np.ndarray]:
        """(user ids, row indices) of the requested users that have train history."""
        wanted = [r[0] for r in users.select("user_id").distinct().collect()]
        pairs = sorted((u, self._pos[u]) for u in wanted if u in self._pos)
        return (np.array([p[0] for p in pairs], dtype=object), np.array([p[1] for p in pairs], dtype=np.int64))


def _to_frame(spark: SparkSession, user_ids: np.ndarray, ids: np.ndarray, scores: np.ndarray,
              item_ids: np.ndarray, liked=None) -> DataFrame:
    """(n_users x k) index / score arrays -> recs DataFrame.

    Dropped: invalid ids (< 0), non-finite scores and, when ``liked`` (the users' CSR rows, same
    order) is given, the users' train items: ``implicit`` pads short lists with already-liked
    items scored 0 even with ``filter_already_liked_items=True``.
    """
    n, kk = ids.shape if ids.ndim == 2 else (0, 0)
    if n == 0:
        return spark.createDataFrame([], RECS_SCHEMA)
    users = np.repeat(user_ids, kk)
    ranks = np.tile(np.arange(1, kk + 1, dtype=np.int32), n)
    flat_ids = ids.reshape(-1)
    flat_scores = scores.reshape(-1).astype(np.float64)
    ok = (flat_ids >= 0) & np.isfinite(flat_scores)
    if liked is not None:
        rows = np.repeat(np.arange(n), kk)
        seen = np.zeros(len(flat_ids), dtype=bool)
        seen[ok] = np.asarray(liked[rows[ok], flat_ids[ok]]).ravel() != 0
        if seen.any():
            log.info("dropped %d already-liked items padded into the lists", int(seen.sum()))
        ok &= ~seen
    pdf = pd.DataFrame({"user_id": users[ok].astype(str), "track_id": item_ids[flat_ids[ok]].astype(str),
                        "score": flat_scores[ok], "rank": ranks[ok]})
    # re-number ranks contiguously after dropping invalid rows
    pdf["rank"] = pdf.groupby("user_id").cumcount().astype(np.int32) + 1
    return spark.createDataFrame(pdf, RECS_SCHEMA)


def _params(context, name: str) -> Dict[str, object]:
    if context is None:
        return {}
    return dict((getattr(context, "params", None) or {}).get(name, {}))


def _seed(context) -> int:
    return int(getattr(context, "seed", 0) or 0)


def _implicit():
    try:
        import implicit  # noqa: F401
        from implicit.cpu.als import AlternatingLeastSquares  # noqa: F401
    except ImportError as exc:  # optional [bench] extra
        raise MethodUnavailable(f"the optional 'implicit' package is not installed ({exc}); "
                                "pip install 'recsys-spark[bench]'") from exc
    return implicit


def implicit_als(spark: SparkSession, train: DataFrame, users: DataFrame, k: int, context=None) -> DataFrame:
    """benfred/implicit ALS (CPU, conjugate gradient). Params (``context.params['implicit_als']``):
    ``factors`` (64), ``regularization`` (0.05), ``alpha`` (1.0), ``iterations`` (15),
    ``weighting`` (``binary`` | ``log`` | ``raw``; default ``binary``)."""
    _implicit()
    from implicit.cpu.als import AlternatingLeastSquares

    p = {"factors": 64, "regularization": 0.05, "alpha": 1.0, "iterations": 15, "weighting": "binary"}
    p.update(_params(context, "implicit_als"))
    m = _Matrix(train, str(p.pop("weighting")))
    model = AlternatingLeastSquares(factors=int(p["factors"]), regularization=float(p["regularization"]),
                                    alpha=float(p["alpha"]), iterations=int(p["iterations"]),
                                    random_state=_seed(context), num_threads=0,
                                    calculate_training_loss=False)
    model.fit(m.X, show_progress=False)
    uids, rows = m.rows_of(users)
    if len(rows) == 0:
        return spark.createDataFrame([], RECS_SCHEMA)
    ids, scores = model.recommend(rows, m.X[rows], N=k, filter_already_liked_items=True)
    return _to_frame(spark, uids, np.asarray(ids), np.asarray(scores), m.item_ids, liked=m.X[rows])


def implicit_item(spark: SparkSession, train: DataFrame, users: DataFrame, k: int, context=None,
                  similarity: Optional[str] = None) -> DataFrame:
    """benfred/implicit item-item kNN. Params (``context.params['implicit_item']``):
    ``similarity`` (``bm25`` | ``cosine`` | ``tfidf``; default ``bm25``), ``K`` neighbours (100),
    ``K1`` (1.2), ``B`` (0.75), ``weighting`` (``binary``)."""
    _implicit()
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender, TFIDFRecommender

    p = {"similarity": "bm25", "K": 100, "K1": 1.2, "B": 0.75, "weighting": "binary"}
    name = "implicit_item" if similarity is None else f"implicit_{similarity}"
    p.update(_params(context, "implicit_item"))
    p.update(_params(context, name))
    if similarity is not None:
        p["similarity"] = similarity
    m = _Matrix(train, str(p["weighting"]))
    sim = str(p["similarity"])
    if sim == "bm25":
        model = BM25Recommender(K=int(p["K"]), K1=float(p["K1"]), B=float(p["B"]), num_threads=0)
    elif sim == "cosine":
        model = CosineRecommender(K=int(p["K"]), num_threads=0)
    elif sim == "tfidf":
        model = TFIDFRecommender(K=int(p["K"]), num_threads=0)
    else:
        raise ValueError(f"implicit_item similarity must be bm25 | cosine | tfidf, got {sim!r}")
    model.fit(m.X, show_progress=False)
    uids, rows = m.rows_of(users)
    if len(rows) == 0:
        return spark.createDataFrame([], RECS_SCHEMA)
    ids, scores = model.recommend(rows, m.X[rows], N=k, filter_already_liked_items=True)
    return _to_frame(spark, uids, np.asarray(ids), np.asarray(scores), m.item_ids, liked=m.X[rows])


def implicit_cosine(spark, train, users, k, context=None) -> DataFrame:
    """:func:`implicit_item` with cosine similarity."""
    return implicit_item(spark, train, users, k, context, similarity="cosine")


def ease_scores(X, lam: float) -> np.ndarray:
    """EASE item-item weights ``B`` (items x items, zero diagonal) for a sparse user x item ``X``.

    ``G = X^T X + lam I; P = G^-1; B = -P / diag(P); diag(B) = 0`` (Steck, WWW 2019). Computed
    in float32 and in place (one dense items x items matrix at a time: 0.56 GB at 12K items).
    """
    import scipy.linalg

    G = (X.T @ X).toarray().astype(np.float32)
    G[np.diag_indices_from(G)] += np.float32(lam)
    P = scipy.linalg.inv(G, overwrite_a=True, check_finite=False)
    del G
    d = -np.diag(P).copy()
    P /= d[np.newaxis, :]
    P[np.diag_indices_from(P)] = 0.0
    return P


def ease(spark: SparkSession, train: DataFrame, users: DataFrame, k: int, context=None) -> DataFrame:
    """EASE (dense closed form). Params (``context.params['ease']``): ``lambda`` (250),
    ``weighting`` (``binary``), ``max_items`` (20000: larger catalogs are skipped)."""
    p = {"lambda": 250.0, "weighting": "binary", "max_items": 20000}
    p.update(_params(context, "ease"))
    n_items = train.select("track_id").distinct().count()
    if n_items > int(p["max_items"]):
        raise MethodUnavailable(f"EASE needs a dense {n_items}x{n_items} matrix; catalog above max_items="
                                f"{p['max_items']}")
    m = _Matrix(train, str(p["weighting"]))
    t0 = time.perf_counter()
    B = ease_scores(m.X, float(p["lambda"]))
    log.info("EASE: %d items, lambda %.1f, inverse in %.1fs", B.shape[0], float(p["lambda"]), time.perf_counter() - t0)
    uids, rows = m.rows_of(users)
    if len(rows) == 0:
        return spark.createDataFrame([], RECS_SCHEMA)
    ids_all, sc_all = [], []
    kk = min(k, B.shape[0])
    for start in range(0, len(rows), 1024):
        part = rows[start:start + 1024]
        Xu = m.X[part]
        S = np.asarray(Xu @ B)
        S[Xu.nonzero()] = -np.inf  # never a train item
        idx = np.argpartition(-S, kk - 1, axis=1)[:, :kk]
        sc = np.take_along_axis(S, idx, axis=1)
        # order by score desc (rounded: float noise must not break ties), then item index
        order = np.lexsort((idx, -np.round(sc, 6)), axis=1)
        ids_all.append(np.take_along_axis(idx, order, axis=1))
        sc_all.append(np.take_along_axis(sc, order, axis=1))
    return _to_frame(spark, uids, np.vstack(ids_all), np.vstack(sc_all), m.item_ids)
