"""Matrix factorisation recall: Spark MLlib ALS with implicit preferences (the ``als`` channel).

:class:`ALSRecall` (Estimator) fits an :class:`ALSRecallModel`:

1. Interactions are summed per (user, track) and mapped to a preference ``r`` (``log1p`` / raw /
   binary of the summed weight); MLlib's implicit ALS turns it into confidence ``1 + alpha * r``.
2. String ids become contiguous ints without collecting ids to the driver: the distinct ids are
   range-sorted, each row gets ``monotonically_increasing_id`` inside its partition, and a table
   of per-partition offsets (one row per *partition*, not per user) turns that into the global
   sorted position (the DataFrame equivalent of ``zipWithIndex``). The index is deterministic and
   fails loudly beyond 2^31 - 1 ids (MLlib's limit).
3. ``pyspark.ml.recommendation.ALS`` with ``rank``, ``maxIter``, ``regParam``, ``alpha``,
   ``numUserBlocks = numItemBlocks = num_blocks`` and ``seed``.

Recommendation never builds a users x items cross join. Two exact top-K paths (``topk``):

* ``faiss`` (default): the item factors (catalog-sized: 100K tracks x rank 64 = 25 MB) are
  collected once, sorted by track id and broadcast; each Python worker wraps them in a faiss
  ``IndexFlatIP`` (blocked GEMM + heap) and searches its users' factors ``batch_size`` at a time
  inside ``mapInPandas``, removing heard tracks there. Users are never collected, and no per-user
  list of ``k`` results is shuffled: the output rows leave the task already final.
* ``mllib``: MLlib's ``recommendForUserSubset`` (GEMM on ``blockSize`` blocks of factors, a bounded
  priority queue per user and block, merged through a shuffle), then an anti join on heard and a
  window. For catalogs too large to broadcast. At 100K users x 30K tracks it shuffled 5.6 GB
  (``benchmarks/README.md``).

Both remove the heard tracks *after* the top-K, so a user needs ``n + |heard|`` raw results; users
are bucketed by that need rounded up to a power of two and each bucket asks for its own ``k``, so
a handful of heavy users does not make every user pay for a huge ``k``. Users or tracks absent
from training get no factors and therefore no candidates (other channels cover them).

Examples
--------
>>> model = ALSRecall(rank=64, max_iter=10, seed=0).fit(ChannelInputs(spark, interactions=inter))  # doctest: +SKIP
>>> cands = model.recommend(ChannelInputs(spark, users=users, heard=heard), n=200)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np
import pandas as pd

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from .. import schema as C
from ..common import Timer
from ..config import ALSConf
from .base import (
    CANDIDATE_SCHEMA,
    WEIGHTINGS,
    ChannelInputs,
    RecallChannel,
    RecallChannelModel,
    empty_candidates,
    finalize_candidates,
    user_item_matrix,
)

log = logging.getLogger(__name__)

_D = ALSConf()  # the one source of default hyper-parameters

USER_IDX = "user_idx"
ITEM_IDX = "item_idx"
MAX_INT = 2**31 - 1
TOPK_METHODS = ("faiss", "mllib")


def index_ids(df: DataFrame, col: str, idx_col: str) -> DataFrame:
    """Map the distinct values of ``col`` to contiguous ints 0..n-1 in sorted order.

    Parameters
    ----------
    df : DataFrame
        Any DataFrame holding ``col``.
    col, idx_col : str
        Id column and the name of the int column to add.

    Returns
    -------
    DataFrame
        ``col, idx_col int`` (persisted), one row per distinct value; ``idx_col`` = rank of the
        value in ascending order, starting at 0. Only per-partition counts reach the driver.
    """
    spark = df.sparkSession
    ids = (df.select(col).where(F.col(col).isNotNull()).distinct().orderBy(col)
           .select(col, F.spark_partition_id().alias("_pid"), F.monotonically_increasing_id().alias("_mid"))
           .persist())
    parts = ids.groupBy("_pid").agg(F.count(F.lit(1)).alias("_n"), F.min("_mid").alias("_m0")).collect()
    offsets, total = [], 0
    for row in sorted(parts, key=lambda r: r["_pid"]):
        offsets.append((row["_pid"], total, row["_m0"]))
        total += row["_n"]
    if total > MAX_INT:
        raise ValueError(f"{total} distinct {col} values exceed MLlib ALS's int id range")
    off = spark.createDataFrame(offsets or [(0, 0, 0)], "_pid int, _off long, _m0 long")
    out = (ids.join(F.broadcast(off), "_pid")
           .select(col, (F.col("_off") + F.col("_mid") - F.col("_m0")).cast("int").alias(idx_col))
           .persist())
    out.count()
    ids.unpersist()
    return out


class ALSRecall(RecallChannel):
    """Estimator: implicit-feedback ALS on the weighted user x track matrix.

    Defaults are :class:`recsys_spark.config.ALSConf`'s.

    Parameters
    ----------
    rank : int
        Latent factors.
    max_iter : int
        ALS iterations (each solves users then items).
    reg_param : float
        L2 regularisation (MLlib scales it by the number of ratings of each user / item).
    alpha : float
        Confidence slope: ``c = 1 + alpha * r``.
    weighting : {"log", "raw", "binary"}
        Map from summed interaction weight to preference ``r``.
    block_size : int
        MLlib ``blockSize``: rows per factor block in the blocked top-K GEMM.
    num_blocks : int
        ``numUserBlocks`` and ``numItemBlocks``; 0 = ``spark.sql.shuffle.partitions``.
    seed : int
        Random seed of the factor initialisation.
    checkpoint_interval : int
        MLlib ``checkpointInterval`` (used only when a checkpoint dir is set).
    topk : {"faiss", "mllib"}
        Exact top-K path of :meth:`ALSRecallModel.recommend` (module docstring).
    topk_batch_size : int
        Users per faiss search call (``faiss`` only).
    """

    name = "als"
    conf_class = ALSConf
    needs = ("interactions",)

    def __init__(self, rank: int = _D.rank, max_iter: int = _D.max_iter, reg_param: float = _D.reg_param,
                 alpha: float = _D.alpha, weighting: str = _D.weighting, block_size: int = _D.block_size,
                 num_blocks: int = _D.num_blocks, seed: int = 0, checkpoint_interval: int = 10,
                 topk: str = _D.topk, topk_batch_size: int = _D.topk_batch_size):
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        if rank < 1 or max_iter < 1:
            raise ValueError("rank and max_iter must be >= 1")
        if topk not in TOPK_METHODS:
            raise ValueError(f"topk must be one of {TOPK_METHODS}, got {topk!r}")
        self.rank = int(rank)
        self.max_iter = int(max_iter)
        self.reg_param = float(reg_param)
        self.alpha = float(alpha)
        self.weighting = weighting
        self.block_size = int(block_size)
        self.num_blocks = int(num_blocks)
        self.seed = int(seed)
        self.checkpoint_interval = int(checkpoint_interval)
        self.topk = topk
        self.topk_batch_size = int(topk_batch_size)

    def params(self) -> Dict[str, Any]:
        return {"rank": self.rank, "max_iter": self.max_iter, "reg_param": self.reg_param, "alpha": self.alpha,
                "weighting": self.weighting, "block_size": self.block_size, "num_blocks": self.num_blocks,
                "seed": self.seed, "topk": self.topk, "topk_batch_size": self.topk_batch_size}

    def ratings(self, interactions: DataFrame):
        """Indexed ratings: ``(ratings DataFrame user_idx, item_idx, rating), user index, item index``."""
        ui = user_item_matrix(interactions, self.weighting).select(C.USER, C.TRACK, F.col("value").alias("rating"))
        ui = ui.persist()
        users = index_ids(ui, C.USER, USER_IDX)
        items = index_ids(ui, C.TRACK, ITEM_IDX)
        ratings = (ui.join(users, C.USER).join(items, C.TRACK)
                   .select(USER_IDX, ITEM_IDX, F.col("rating").cast("float").alias("rating")))
        return ratings, users, items, ui

    def fit(self, inputs: ChannelInputs) -> "ALSRecallModel":
        """Fit ALS on ``inputs.interactions`` (the interactions contract).

        Returns
        -------
        ALSRecallModel
        """
        from pyspark.ml.recommendation import ALS

        interactions = inputs.interactions
        spark = interactions.sparkSession
        with Timer("als: aggregate + index ids", log) as t_idx:
            ratings, users, items, ui = self.ratings(interactions)
            ratings = ratings.persist()
            n_ratings = ratings.count()
        ui.unpersist()
        n_blocks = self.num_blocks or int(spark.conf.get("spark.sql.shuffle.partitions", "8"))
        log.info("als: %d ratings, %d users, %d tracks indexed in %.2fs; %d blocks", n_ratings,
                 users.count(), items.count(), t_idx.seconds, n_blocks)
        als = ALS(rank=self.rank, maxIter=self.max_iter, regParam=self.reg_param, alpha=self.alpha,
                  implicitPrefs=True, userCol=USER_IDX, itemCol=ITEM_IDX, ratingCol="rating",
                  numUserBlocks=n_blocks, numItemBlocks=n_blocks, seed=self.seed, nonnegative=False,
                  coldStartStrategy="drop", blockSize=self.block_size,
                  checkpointInterval=self.checkpoint_interval)
        with Timer("als: fit", log) as t_fit:
            model = als.fit(ratings)
            model.userFactors.count()
        ratings.unpersist()
        log.info("als: rank %d, %d iterations fitted in %.2fs", self.rank, self.max_iter, t_fit.seconds)
        return ALSRecallModel(model, users, items, self.params())


class ALSRecallModel(RecallChannelModel):
    """Fitted ALS; the ``als`` recall channel.

    Attributes
    ----------
    als_model : pyspark.ml.recommendation.ALSModel
        Factors keyed by ``user_idx`` / ``item_idx``.
    user_index, item_index : DataFrame
        ``user_id, user_idx int`` and ``track_id, item_idx int``.
    params : dict
    """

    channel = "als"

    def __init__(self, als_model, user_index: DataFrame, item_index: DataFrame, params: dict):
        self.als_model = als_model
        self.user_index = user_index
        self.item_index = item_index
        self.params = dict(params)

    def item_factors(self) -> DataFrame:
        """``track_id string, features array<float>``."""
        return self.als_model.itemFactors.join(
            self.item_index, F.col("id") == F.col(ITEM_IDX)).select(C.TRACK, "features")

    def user_factors(self) -> DataFrame:
        """``user_id string, features array<float>``."""
        return self.als_model.userFactors.join(
            self.user_index, F.col("id") == F.col(USER_IDX)).select(C.USER, "features")

    def recommend(self, inputs: ChannelInputs, n: int) -> DataFrame:
        """Top ``n`` unheard tracks by ``user_factor . item_factor`` for every user to serve.

        Parameters
        ----------
        inputs : ChannelInputs
            ``users`` (else the users of ``seeds``); ``heard`` (optional) to exclude.
        n : int
            Candidates per user.

        The top-K path is the ``topk`` parameter (module docstring; both give the same tracks up
        to float ties), faiss searching ``topk_batch_size`` users at a time.

        Returns
        -------
        DataFrame
            :data:`recsys_spark.recall.base.CANDIDATE_SCHEMA`, ``channel = "als"``,
            ``seed_track_id`` null, ties broken by ``track_id``. Users unknown to the model get no
            rows.
        """
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        users = inputs.served_users(inputs.seeds)
        if users is None:
            raise ValueError("the als channel needs inputs.users or inputs.seeds (who to serve)")
        topk = self.params.get("topk", _D.topk)
        if topk == "faiss":
            return self._recommend_faiss(users, inputs.heard, n, int(self.params.get("topk_batch_size",
                                                                                      _D.topk_batch_size)))
        return self._recommend_mllib(users, inputs.heard, n)

    def _recommend_faiss(self, seeds: DataFrame, heard: Optional[DataFrame], n: int, batch_size: int) -> DataFrame:
        from .faiss_index import heard_lists

        spark = seeds.sparkSession
        t0 = time.perf_counter()
        items = self.item_factors().toPandas().sort_values(C.TRACK, kind="mergesort")  # the catalog, not users
        if items.empty:
            return empty_candidates(spark)
        ids = items[C.TRACK].to_numpy(dtype=object)
        factors = np.ascontiguousarray(np.stack(items["features"].map(
            lambda a: np.asarray(a, dtype=np.float32)).to_numpy()), dtype=np.float32)
        bc = spark.sparkContext.broadcast((ids, factors))
        log.info("als: %d item factors (%d-d, %.1f MB) broadcast for faiss top-%d in %.2fs", len(ids),
                 factors.shape[1], factors.nbytes / 2**20, n, time.perf_counter() - t0)
        users = seeds.select(C.USER).distinct().join(self.user_factors(), C.USER)
        hl = heard_lists(heard)
        if hl is not None:
            users = users.join(hl, C.USER, "left")
        else:
            users = users.withColumn("heard", F.lit(None).cast("array<string>"))
        fn = _faiss_topk_fn(bc, uuid.uuid4().hex, int(n), self.channel, int(batch_size))
        return users.select(C.USER, "features", "heard").mapInPandas(fn, CANDIDATE_SCHEMA)

    def _recommend_mllib(self, seeds: DataFrame, heard: Optional[DataFrame], n: int) -> DataFrame:
        spark = seeds.sparkSession
        users = seeds.select(C.USER).distinct().join(self.user_index, C.USER)
        if heard is not None:
            known_heard = heard.select(C.USER, C.TRACK).distinct().join(self.item_index.select(C.TRACK), C.TRACK)
            hc = known_heard.groupBy(C.USER).agg(F.count(F.lit(1)).alias("_h"))
            users = users.join(hc, C.USER, "left").fillna({"_h": 0})
        else:
            users = users.withColumn("_h", F.lit(0))
        base = 1 << max(0, math.ceil(math.log2(max(n, 1))))
        # k for a user: smallest power of two >= n + heard, at least `base`
        need = F.col("_h") + F.lit(n)
        level = F.greatest(F.lit(base), F.pow(F.lit(2), F.ceil(F.log2(need))).cast("long"))
        users = users.withColumn("_k", level)
        ks = sorted(r["_k"] for r in users.select("_k").distinct().collect())  # a few powers of two
        if not ks:
            return empty_candidates(spark)
        n_items = self.item_index.count()
        parts = []
        for k in ks:
            sub = users.where(F.col("_k") == k).select(USER_IDX)
            recs = self.als_model.recommendForUserSubset(sub, int(min(k, max(n_items, 1))))
            parts.append(recs)
        log.info("als: recommendForUserSubset with k in %s", ks)
        recs = parts[0]
        for p in parts[1:]:
            recs = recs.unionByName(p)
        exploded = recs.select(USER_IDX, F.explode("recommendations").alias("_r")).select(
            USER_IDX, F.col(f"_r.{ITEM_IDX}").alias(ITEM_IDX), F.col("_r.rating").cast("double").alias(C.SCORE))
        scored = (exploded.join(self.user_index, USER_IDX).join(self.item_index, ITEM_IDX)
                  .select(C.USER, C.TRACK, C.SCORE))
        out = finalize_candidates(scored, heard, n, self.channel)
        return out

    def unpersist(self) -> None:
        """Release the cached id indexes."""
        self.user_index.unpersist()
        self.item_index.unpersist()

    def _spark(self) -> SparkSession:
        return self.user_index.sparkSession

    def _save_state(self, path: str) -> None:
        """The MLlib model under ``path/als`` and both id indexes (parquet)."""
        self.als_model.write().overwrite().save(f"{path}/als")
        self.user_index.write.mode("overwrite").parquet(f"{path}/user_index")
        self.item_index.write.mode("overwrite").parquet(f"{path}/item_index")

    @classmethod
    def _load_state(cls, spark: SparkSession, path: str, params: Dict[str, Any]) -> "ALSRecallModel":
        from pyspark.ml.recommendation import ALSModel

        return cls(ALSModel.load(f"{path}/als"), spark.read.parquet(f"{path}/user_index"),
                   spark.read.parquet(f"{path}/item_index"), params)


_FACTOR_CACHE: Dict[str, Tuple[np.ndarray, Dict[str, int], object]] = {}
_FACTOR_LOCK = threading.Lock()


def _shipped_factors(bc, token: str) -> Tuple[np.ndarray, Dict[str, int], object]:
    """``(ids, position by id, faiss IndexFlatIP)`` of a broadcast, built once per Python worker."""
    with _FACTOR_LOCK:
        hit = _FACTOR_CACHE.get(token)
        if hit is None:
            import faiss

            ids, factors = bc.value
            index = faiss.IndexFlatIP(int(factors.shape[1]))
            index.add(factors)
            hit = (ids, {t: i for i, t in enumerate(ids)}, index)
            _FACTOR_CACHE.clear()  # one model per run: drop the previous run's copy
            _FACTOR_CACHE[token] = hit
        return hit


def _faiss_topk_fn(bc, token: str, n: int, channel: str, batch_size: int):
    """The ``mapInPandas`` function of :meth:`ALSRecallModel._recommend_faiss`.

    Rows of the index are sorted by track id, so "ties broken by track id" is "ties broken by
    position"; heard tracks are masked with one vectorised ``isin`` per bucket of users."""

    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import faiss

        faiss.omp_set_num_threads(1)  # tasks already run in parallel
        ids, pos, index = _shipped_factors(bc, token)
        n_items = len(ids)
        for pdf in batches:
            for s in range(0, len(pdf), max(1, batch_size)):
                chunk = pdf.iloc[s:s + batch_size]
                q = np.ascontiguousarray(np.stack([np.asarray(v, dtype=np.float32) for v in chunk["features"]]))
                heard_pos = [np.fromiter((p for p in (pos.get(t) for t in h) if p is not None), np.int64)
                             if h is not None else np.zeros(0, np.int64) for h in chunk["heard"]]
                need = np.asarray([n + len(h) for h in heard_pos], dtype=np.int64)
                k_of = np.minimum(np.maximum(1 << max(0, math.ceil(math.log2(n))),
                                             2 ** np.ceil(np.log2(need)).astype(np.int64)), n_items)
                users = chunk["user_id"].to_numpy(dtype=object)
                for k in np.unique(k_of):
                    rows = np.flatnonzero(k_of == k)
                    scores, found = index.search(q[rows], int(k))
                    code = np.arange(len(rows))[:, None] * n_items + found
                    hcode = np.concatenate([r * n_items + heard_pos[u] for r, u in enumerate(rows)] or
                                           [np.zeros(0, np.int64)])
                    bad = (found < 0) | ~np.isfinite(scores) | np.isin(code, hcode)
                    key = np.where(bad, np.inf, -scores.astype(np.float64))
                    order = np.lexsort((found, key), axis=-1)[:, :n]  # best first, ties: track id
                    take_f = np.take_along_axis(found, order, axis=1)
                    take_s = np.take_along_axis(scores, order, axis=1).astype(np.float64)
                    ok = ~np.take_along_axis(bad, order, axis=1)
                    r_idx, c_idx = np.nonzero(ok)
                    if len(r_idx) == 0:
                        continue
                    yield pd.DataFrame({
                        "user_id": users[rows[r_idx]], "track_id": ids[take_f[r_idx, c_idx]], "channel": channel,
                        "score": take_s[r_idx, c_idx], "rank": (c_idx + 1).astype(np.int32),
                        "seed_track_id": None})

    return fn
