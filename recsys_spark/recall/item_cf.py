"""Item-item collaborative filtering: top-K neighbours per track, and the ``item_cf`` recall channel.

:class:`ItemCF` (Estimator) fits an :class:`ItemCFModel` whose :attr:`ItemCFModel.neighbors`
DataFrame (``track_id, neighbor_id, score, rank``) is the ``item_neighbors`` table of week W minus
``week_start``. :meth:`ItemCFModel.recommend` turns each user's seeds into candidates.

Similarity
----------
Interactions are summed per (user, track) and mapped to a preference ``r`` (``log1p`` / raw /
binary of the summed weight). Each track is the sparse vector of its users' (re-weighted) ``r``:

* ``cosine``: ``v_ui = r_ui``; ``sim(i, j) = v_i . v_j / (|v_i| |v_j|)``.
* ``tfidf``: ``v_ui = sqrt(r_ui) * idf_u``, cosine of those vectors.
* ``bm25``: ``v_ui = r_ui (k1 + 1) / (k1 L_i + r_ui) * idf_u`` with ``L_i = 1 - b + b |r_i|_1 / mean|r|_1``;
  ``sim = v_i . v_j`` (no normalisation), as in ``implicit``'s ``BM25Recommender``.

``idf_u = log(n_items) - log(1 + n_items_of_u)`` down-weights heavy users (their co-occurrences
say less about two tracks); entries with ``v <= 0`` (a user who touched nearly every track) are
dropped. A pair needs ``support`` (users who have both) ``>= min_support``; with ``shrinkage > 0``
the similarity is shrunk towards 0 as ``sim * support / (support + shrinkage)`` so that pairs seen
by a handful of users do not crowd out well-supported ones. The self pair is never a neighbour.

How it scales (no dense matrices, nothing collected to the driver)
-----------------------------------------------------------------
1. **Bound on the pair explosion.** Each user keeps at most ``max_items_per_user`` (M, default
   200) tracks, the most recent first (ties: larger weight, then ``track_id``). Without the cap a
   user with ``n`` tracks contributes ``n^2/2`` pairs; with it the total work is bounded by
   ``sum_u min(n_u, M)^2 / 2 <= U * M^2 / 2`` multiply-adds and no single user can dominate a task.
   **Cost in accuracy:** co-occurrences between a heavy user's older tracks are not counted, so
   similarities of tracks mostly heard by heavy users in the past are estimated from fewer
   (lighter, more recent) users. Recent taste is what Discover Weekly serves, so the recency order
   is the cheap, defensible choice; ``benchmarks/README.md`` (recall section) measures the effect of M on quality.
2. **Item-partitioned sparse products.** Tracks are hashed into ``num_blocks`` blocks. Each user's
   (capped) row is sent to every block that holds one of the user's tracks (at most
   ``min(n_u, M, num_blocks)`` copies), so block ``b`` holds every user vector needed for the
   rows ``b`` of ``X^T X``. A grouped pandas UDF computes those rows with scipy sparse products
   (in chunks of ``chunk_items`` tracks, bounding memory by ``chunk_items x tracks_in_block_users``),
   applies support / shrinkage and keeps the top K per track: only ``n_tracks * K`` rows leave the
   UDF, instead of one row per co-occurring pair as in a self join. Shuffle volume is at most
   ``sum_u min(n_u, M) * min(n_u, M, num_blocks)`` rows.
3. **How many blocks.** A block's input is every row of every user who touched one of its
   tracks, so blocks beyond the typical row length are what bound a block's memory, and every
   block more multiplies the shuffle until then (up to ``min(n_u, B)`` copies of a row). With
   ``num_blocks=0`` the job counts users per row length (at most M numbers reach the driver) and
   takes the fewest blocks, at least the default parallelism, whose expected input is at
   most ``max_block_rows`` rows (:func:`choose_num_blocks`).
4. **Skew from popular tracks.** A popular track is a single row of one block; its cost is its
   users' row lengths (bounded by M), not a hot shuffle key, and nothing is keyed by pair. Every
   block holds most users' rows until blocks outnumber row lengths, so blocks cost about the same;
   a block with several popular tracks is a short straggler, not the whole job.

Examples
--------
>>> model = ItemCF(k=50, similarity="cosine").fit(ChannelInputs(spark, interactions=inter))  # doctest: +SKIP
>>> model.neighbors.show()  # doctest: +SKIP
>>> cands = model.recommend(ChannelInputs(spark, seeds=seeds, heard=heard), n=200)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from .. import schema as C
from ..common import Timer
from ..config import ItemCFConf
from ..spark import default_parallelism, shuffle_partitions
from .base import (
    WEIGHTINGS,
    ChannelInputs,
    RecallChannel,
    RecallChannelModel,
    finalize_candidates,
    transform_weight,
    user_item_matrix,
)

log = logging.getLogger(__name__)

_D = ItemCFConf()  # the one source of default hyper-parameters
SIMILARITIES = ("cosine", "bm25", "tfidf")

NEIGHBORS_SCHEMA = T.StructType([
    T.StructField(C.TRACK, T.StringType(), False),
    T.StructField("neighbor_id", T.StringType(), False),
    T.StructField(C.SCORE, T.DoubleType(), False),
    T.StructField(C.RANK, T.IntegerType(), False),
])


# --------------------------------------------------------------------------------------------
# The numeric kernel (pure numpy / scipy; also the single-node baseline of the benchmark)
# --------------------------------------------------------------------------------------------


def topk_rows(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    values: np.ndarray,
    norms: np.ndarray,
    rows: np.ndarray,
    n_users: int,
    n_items: int,
    k: int,
    min_support: int = 1,
    shrinkage: float = 0.0,
    normalize: bool = True,
    chunk_items: int = 512,
) -> tuple:
    """Top-``k`` neighbours of the item indices ``rows`` from a sparse user x item matrix.

    Parameters
    ----------
    user_idx, item_idx, values : ndarray
        COO entries of the (already weighted) user x item matrix, one per (user, item).
    norms : ndarray, shape (n_items,)
        L2 norm of every item column (used when ``normalize``).
    rows : ndarray of int
        Items whose neighbours are wanted.
    k, min_support, shrinkage, normalize
        See :class:`ItemCF`.
    chunk_items : int
        Rows of ``X^T X`` computed at once (bounds memory).

    Returns
    -------
    (item, neighbor, score, rank) : tuple of ndarray
        ``rank`` is 1-based; per item sorted by score descending, ties by neighbour index
        ascending (indices follow sorted ids, so ties break by id).
    """
    import scipy.sparse as sp

    X = sp.csr_matrix((values.astype(np.float64), (user_idx, item_idx)), shape=(n_users, n_items))
    B = X.copy()
    B.data = np.ones_like(B.data)
    XT = X.T.tocsr()
    BT = B.T.tocsr()
    outs = []
    rows = np.asarray(rows, dtype=np.int64)
    for start in range(0, len(rows), chunk_items):
        chunk = rows[start:start + chunk_items]
        D = (XT[chunk] @ X).tocsr()
        S = (BT[chunk] @ B).tocsr()
        D.sort_indices()
        S.sort_indices()
        if not (np.array_equal(D.indptr, S.indptr) and np.array_equal(D.indices, S.indices)):
            raise AssertionError("dot and support products differ in structure")
        r_local = np.repeat(np.arange(len(chunk)), np.diff(D.indptr))
        r = chunk[r_local]
        c = D.indices
        support = S.data
        score = D.data
        if normalize:
            denom = norms[r] * norms[c]
            score = np.divide(score, denom, out=np.zeros_like(score), where=denom > 0)
        if shrinkage > 0:
            score = score * support / (support + shrinkage)
        keep = (c != r) & (support >= min_support) & (score > 0)
        r, c, score = r[keep], c[keep], score[keep]
        if len(r) == 0:
            continue
        order = np.lexsort((c, -score, r))
        r, c, score = r[order], c[order], score[order]
        first = np.r_[0, np.flatnonzero(np.diff(r)) + 1]
        counts = np.diff(np.r_[first, len(r)])
        rank = np.arange(len(r)) - np.repeat(first, counts) + 1
        top = rank <= k
        outs.append((r[top], c[top], score[top], rank[top]))
    if not outs:
        e = np.array([], dtype=np.int64)
        return e, e, np.array([], dtype=np.float64), e
    return tuple(np.concatenate([o[i] for o in outs]) for i in range(4))


def expected_block_rows(lengths: Dict[int, int], n_blocks: int) -> int:
    """Expected rows of one item block's input when tracks hash uniformly into ``n_blocks`` blocks.

    A user whose (capped) row has ``n`` tracks sends the whole row to a block when at least one of
    the ``n`` tracks lands there: ``n * (1 - (1 - 1/B)^n)`` rows per block on average.

    Parameters
    ----------
    lengths : dict
        Row length ``n`` -> number of users with that length.
    n_blocks : int
        ``B``.
    """
    if not lengths:
        return 0
    n = np.fromiter(lengths.keys(), dtype=np.float64)
    users = np.fromiter(lengths.values(), dtype=np.float64)
    hit = 1.0 - np.power(1.0 - 1.0 / n_blocks, n)
    return int(round(float(np.sum(users * n * hit))))


def choose_num_blocks(lengths: Dict[int, int], min_blocks: int, max_block_rows: int, limit: int = 1 << 20) -> int:
    """The fewest item blocks (at least ``min_blocks``) whose expected input per block is at most
    ``max_block_rows`` rows (:func:`expected_block_rows`).

    Every block a user touches receives the user's whole row, so more blocks than needed multiply
    the rows shuffled into the block products (by up to ``min(n_u, B)``) without bounding memory any
    better until ``B`` exceeds the typical row length: the smallest sufficient ``B`` is the cheapest.
    ``min_blocks`` keeps every core busy (the default parallelism in :meth:`ItemCF.fit`).
    The expected rows per block fall as ``B`` grows, so a binary search finds it; ``limit`` caps
    ``B`` (a single row longer than ``max_block_rows`` cannot be split).
    """
    lo = max(1, int(min_blocks))
    if expected_block_rows(lengths, lo) <= max_block_rows:
        return lo
    hi = lo
    while hi < limit and expected_block_rows(lengths, hi) > max_block_rows:
        lo, hi = hi, min(hi * 2, limit)
    while hi - lo > 1:  # expected_block_rows(lo) > max_block_rows >= expected_block_rows(hi)
        mid = (lo + hi) // 2
        if expected_block_rows(lengths, mid) > max_block_rows:
            lo = mid
        else:
            hi = mid
    return hi


# --------------------------------------------------------------------------------------------
# Estimator
# --------------------------------------------------------------------------------------------


class ItemCF(RecallChannel):
    """Estimator of item-item neighbours (see the module docstring for the maths and the bounds).

    Defaults are :class:`recsys_spark.config.ItemCFConf`'s.

    Parameters
    ----------
    k : int
        Neighbours kept per track (``item_neighbors`` rows per track).
    similarity : {"cosine", "bm25", "tfidf"}
    min_support : int
        Minimum number of users who interacted with both tracks.
    max_items_per_user : int
        Cap M on each user's tracks (most recent first); bounds the pair explosion.
    weighting : {"log", "raw", "binary"}
        Map from summed interaction weight to preference.
    shrinkage : float
        ``sim * support / (support + shrinkage)``; 0 disables.
    bm25_k1, bm25_b : float
        BM25 saturation and length normalisation.
    num_blocks : int
        Item blocks of the distributed product; 0 = the fewest (at least the default
        parallelism) whose expected input is at most ``max_block_rows`` rows each
        (:func:`choose_num_blocks`).
    max_block_rows : int
        Memory bound of one block's pandas UDF, in user-track rows (with ``num_blocks=0``).
    chunk_items : int
        Tracks whose rows of ``X^T X`` are computed at once inside a block.
    seed : int
        Seed of the track-to-block hash (results do not depend on it; only the work layout does).
    per_seed : int
        Neighbours used per seed when recommending.
    n_seeds : int
        Seeds per user used when recommending (by ``seed_rank``, when the seeds have it).
    broadcast_rows : int
        When recommending, the ``per_seed`` neighbour rows of every track are broadcast when there
        are at most this many (0 = never): the seeds, partitioned by user, then expand without a
        shuffle of the expanded rows (see :meth:`ItemCFModel.recommend`).
    """

    name = "item_cf"
    conf_class = ItemCFConf
    needs = ("interactions", "seeds")

    def __init__(
        self,
        k: int = _D.k,
        similarity: str = _D.similarity,
        min_support: int = _D.min_support,
        max_items_per_user: int = _D.max_items_per_user,
        weighting: str = _D.weighting,
        shrinkage: float = _D.shrinkage,
        bm25_k1: float = _D.bm25_k1,
        bm25_b: float = _D.bm25_b,
        num_blocks: int = _D.num_blocks,
        max_block_rows: int = _D.max_block_rows,
        chunk_items: int = 512,
        seed: int = 0,
        per_seed: int = _D.per_seed,
        n_seeds: int = _D.n_seeds,
        broadcast_rows: int = _D.broadcast_rows,
    ):
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        if k < 1 or min_support < 1 or max_items_per_user < 2 or per_seed < 1 or n_seeds < 1:
            raise ValueError("k, min_support, per_seed and n_seeds must be >= 1 and max_items_per_user >= 2")
        if num_blocks < 0 or max_block_rows < 1 or broadcast_rows < 0:
            raise ValueError(f"num_blocks and broadcast_rows must be >= 0 (0 = chosen / never) and max_block_rows "
                             f">= 1, got {num_blocks}, {broadcast_rows} and {max_block_rows}")
        self.k = int(k)
        self.similarity = similarity
        self.min_support = int(min_support)
        self.max_items_per_user = int(max_items_per_user)
        self.weighting = weighting
        self.shrinkage = float(shrinkage)
        self.bm25_k1 = float(bm25_k1)
        self.bm25_b = float(bm25_b)
        self.num_blocks = int(num_blocks)
        self.max_block_rows = int(max_block_rows)
        self.chunk_items = int(chunk_items)
        self.seed = int(seed)
        self.per_seed = int(per_seed)
        self.n_seeds = int(n_seeds)
        self.broadcast_rows = int(broadcast_rows)

    def params(self) -> Dict[str, Any]:
        return {
            "k": self.k, "similarity": self.similarity, "min_support": self.min_support,
            "max_items_per_user": self.max_items_per_user, "weighting": self.weighting,
            "shrinkage": self.shrinkage, "bm25_k1": self.bm25_k1, "bm25_b": self.bm25_b,
            "num_blocks": self.num_blocks, "max_block_rows": self.max_block_rows,
            "chunk_items": self.chunk_items, "seed": self.seed, "per_seed": self.per_seed, "n_seeds": self.n_seeds,
            "broadcast_rows": self.broadcast_rows,
        }

    # -- steps ---------------------------------------------------------------------------------
    def capped_matrix(self, interactions: DataFrame) -> DataFrame:
        """Per (user, track) preferences, each user capped to the ``max_items_per_user`` most recent.

        Returns ``user_id, track_id, value`` (value > 0).
        """
        ui = user_item_matrix(interactions, self.weighting)
        w = Window.partitionBy(C.USER).orderBy(F.col("last_ts").desc(), F.col("value").desc(), F.col(C.TRACK))
        return (ui.withColumn("_pos", F.row_number().over(w))
                .where(F.col("_pos") <= self.max_items_per_user)
                .select(C.USER, C.TRACK, "value"))

    def weighted_matrix(self, capped: DataFrame) -> DataFrame:
        """Apply the similarity's re-weighting; returns ``user_id, track_id, v, norm`` (v > 0).

        ``norm`` is the L2 norm of the track's vector (1.0 for bm25, which is not normalised).
        Only scalars (track count, mean track length) are computed as aggregates; everything per
        user or track stays in DataFrames.
        """
        df = capped
        if self.similarity in ("tfidf", "bm25"):
            n_items = capped.select(C.TRACK).distinct().count()
            per_user = capped.groupBy(C.USER).agg(F.count(F.lit(1)).alias("_nu"))
            idf = (F.log(F.lit(float(max(n_items, 1)))) - F.log1p(F.col("_nu").cast("double")))
            df = df.join(per_user, C.USER).withColumn("_idf", idf)
            if self.similarity == "tfidf":
                df = df.withColumn("v", F.sqrt("value") * F.col("_idf"))
            else:
                lens = capped.groupBy(C.TRACK).agg(F.sum("value").alias("_len"))
                avg_len = lens.agg(F.avg("_len")).first()[0] or 1.0
                k1, b = self.bm25_k1, self.bm25_b
                df = (df.join(lens, C.TRACK)
                      .withColumn("_ln", F.lit(1.0 - b) + F.lit(b) * F.col("_len") / F.lit(float(avg_len)))
                      .withColumn("v", F.col("value") * F.lit(k1 + 1.0) / (F.lit(k1) * F.col("_ln") + F.col("value"))
                                  * F.col("_idf")))
        else:
            df = df.withColumn("v", F.col("value"))
        df = df.where(F.col("v") > 0).select(C.USER, C.TRACK, "v")
        if self.similarity == "bm25":
            return df.withColumn("norm", F.lit(1.0))
        norms = df.groupBy(C.TRACK).agg(F.sqrt(F.sum(F.col("v") * F.col("v"))).alias("norm"))
        return df.join(norms, C.TRACK)

    def fit(self, inputs: ChannelInputs) -> "ItemCFModel":
        """Compute the top-K neighbours of every track from ``inputs.interactions``.

        Parameters
        ----------
        inputs : ChannelInputs
            ``interactions`` (the interactions contract: ``user_id, track_id, event_ts, weight``, ...).

        Returns
        -------
        ItemCFModel
            Holding ``neighbors`` (persisted): ``track_id string, neighbor_id string,
            score double, rank int`` (rank 1..K per track; ``track_id != neighbor_id``).
        """
        interactions = inputs.interactions
        spark = interactions.sparkSession
        with Timer("item_cf: prepare weighted matrix", log) as t_prep:
            wm = self.weighted_matrix(self.capped_matrix(interactions)).persist()
            # users per row length (at most max_items_per_user rows reach the driver)
            lengths = {int(r[0]): int(r[1]) for r in
                       wm.groupBy(C.USER).count().groupBy("count").count().collect()}
        nnz = sum(n * users for n, users in lengths.items())
        min_blocks = default_parallelism(spark)
        n_blocks = self.num_blocks or choose_num_blocks(lengths, min_blocks, self.max_block_rows)
        fit_info = {"matrix_rows": nnz, "blocks": n_blocks, "block_rows": expected_block_rows(lengths, n_blocks)}
        log.info("item_cf: %d user-track entries of %d users after cap M=%d (%.2fs); %d item blocks "
                 "(%s; about %d rows per block)", nnz, sum(lengths.values()), self.max_items_per_user,
                 t_prep.seconds, n_blocks, "set" if self.num_blocks else
                 f"the fewest >= {min_blocks} with at most {self.max_block_rows} rows each", fit_info["block_rows"])

        # each user's rows go to every block that holds one of the user's tracks (one shuffle by user)
        wm_b = wm.withColumn("_item_block", F.pmod(F.xxhash64(C.TRACK, F.lit(self.seed)), F.lit(n_blocks)).cast("int"))
        replicated = (wm_b.withColumn("_blocks", F.collect_set("_item_block").over(Window.partitionBy(C.USER)))
                      .select("*", F.explode("_blocks").alias("_block"))
                      .select("_block", C.USER, C.TRACK, "v", "norm",
                              (F.col("_item_block") == F.col("_block")).alias("_in_block")))

        k, min_support, shrinkage = self.k, self.min_support, self.shrinkage
        normalize = self.similarity != "bm25"
        chunk_items = self.chunk_items

        def block_topk(pdf: pd.DataFrame) -> pd.DataFrame:
            users, uidx = np.unique(pdf[C.USER].to_numpy(dtype=object).astype(str), return_inverse=True)
            items, iidx = np.unique(pdf[C.TRACK].to_numpy(dtype=object).astype(str), return_inverse=True)
            norms = np.zeros(len(items))
            norms[iidx] = pdf["norm"].to_numpy()
            rows = np.unique(iidx[pdf["_in_block"].to_numpy()])
            i, j, s, r = topk_rows(uidx, iidx, pdf["v"].to_numpy(), norms, rows, len(users), len(items),
                                   k, min_support, shrinkage, normalize, chunk_items)
            return pd.DataFrame({C.TRACK: items[i], "neighbor_id": items[j], C.SCORE: s.astype(np.float64),
                                 C.RANK: r.astype(np.int32)})

        with Timer("item_cf: block products + top-K", log) as t_fit:
            neighbors = (replicated.groupBy("_block").applyInPandas(block_topk, schema=NEIGHBORS_SCHEMA)
                         .persist())
            n_rows = neighbors.count()
        wm.unpersist()
        log.info("item_cf: %d neighbour rows (K=%d, %s, min_support=%d) in %.2fs",
                 n_rows, self.k, self.similarity, self.min_support, t_fit.seconds)
        return ItemCFModel(neighbors, self.params(), fit_info)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


class ItemCFModel(RecallChannelModel):
    """Fitted item-item neighbours; the ``item_cf`` recall channel.

    Attributes
    ----------
    neighbors : DataFrame
        ``track_id string, neighbor_id string, score double, rank int`` (``tables.ITEM_NEIGHBORS``
        without ``week_start``).
    params : dict
        The estimator's parameters (``weighting`` is reused to weight seeds; ``per_seed`` and
        ``n_seeds`` are used when recommending).
    fit_info : dict
        What :meth:`ItemCF.fit` did: ``matrix_rows`` (user-track entries after the cap),
        ``blocks`` (item blocks used) and ``block_rows`` (expected input rows per block); empty
        for a model built from saved neighbours.
    """

    channel = "item_cf"

    def __init__(self, neighbors: DataFrame, params: dict, fit_info: Optional[dict] = None):
        self.neighbors = neighbors
        self.params = dict(params)
        self.fit_info = dict(fit_info or {})

    def recommend(self, inputs: ChannelInputs, n: int) -> DataFrame:
        """Candidates from the top ``per_seed`` neighbours of each of a user's ``n_seeds`` seeds.

        ``score(u, t) = sum over seeds s of sim(s, t) * w(s) * recency(s)`` where ``w`` is the
        seed's summed weight through the model's weighting (log1p / raw / binary) and
        ``recency`` comes from the seeds (1.0 when the column is absent). ``seed_track_id`` is
        the seed with the largest single contribution (ties: the larger id). Tracks in ``heard``
        and the seeds themselves are excluded.

        The expansion (seeds x ``per_seed`` neighbours, the largest intermediate: ~50 x 20 rows per
        user) is never shuffled when the neighbour rows fit ``broadcast_rows``: the seeds and the
        excluded tracks are hash-partitioned by user once, the neighbours are broadcast, and the
        exclusion is part of the per-(user, track) aggregation (excluded pairs carry a flag)
        instead of an anti join, so the aggregation and the per-user top ``n`` run where the rows
        are.

        Parameters
        ----------
        inputs : ChannelInputs
            ``seeds``: ``user_id, track_id`` and optionally ``weight``, ``recency``, ``seed_rank``
            (history contract); ``heard`` (optional): ``user_id, track_id`` to exclude.
        n : int
            Candidates per user (at most).

        Returns
        -------
        DataFrame
            :data:`recsys_spark.recall.base.CANDIDATE_SCHEMA` with ``channel = "item_cf"``.
        """
        seeds, heard = inputs.seeds, inputs.heard
        per_seed = int(self.params.get("per_seed", _D.per_seed))
        if "seed_rank" in seeds.columns:
            seeds = seeds.where(F.col("seed_rank") <= int(self.params.get("n_seeds", _D.n_seeds)))
        w = (transform_weight(F.col(C.WEIGHT), self.params.get("weighting", "log"))
             if C.WEIGHT in seeds.columns else F.lit(1.0))
        rec = F.col("recency").cast("double") if "recency" in seeds.columns else F.lit(1.0)
        parts = shuffle_partitions(self._spark()) or default_parallelism(self._spark())
        s = seeds.select(C.USER, F.col(C.TRACK).alias("_seed"), (w * rec).alias("_sw")).where(F.col("_sw") > 0)
        nb = self.neighbors.where(F.col(C.RANK) <= per_seed).select(
            F.col(C.TRACK).alias("_seed"), F.col("neighbor_id").alias(C.TRACK), F.col(C.SCORE).alias("_sim"))
        limit = int(self.params.get("broadcast_rows", _D.broadcast_rows))
        n_nb = nb.count() if limit > 0 else None
        broadcast = n_nb is not None and n_nb <= limit
        log.info("item_cf recommend: %s neighbour rows (per_seed %d) %s; seeds and exclusions in %d partitions by user",
                 "not counted" if n_nb is None else f"{n_nb:,}", per_seed,
                 "broadcast" if broadcast else f"joined by a shuffle (broadcast_rows {limit:,})", parts)
        if broadcast:  # the seeds are partitioned by user once; the join keeps that
            contrib = s.repartition(parts, C.USER).join(F.broadcast(nb), "_seed")
        else:  # the shuffle join partitions by seed: back to users after it
            contrib = s.join(nb, "_seed").repartition(parts, C.USER)
        contrib = contrib.select(C.USER, C.TRACK, "_seed", (F.col("_sim") * F.col("_sw")).alias("_c"),
                                 F.lit(False).alias("_x"))
        exclude = seeds.select(C.USER, C.TRACK)
        if heard is not None:
            exclude = exclude.unionByName(heard.select(C.USER, C.TRACK))
        exclude = exclude.select(C.USER, C.TRACK, F.lit(None).cast("string").alias("_seed"),
                                 F.lit(None).cast("double").alias("_c"), F.lit(True).alias("_x"))
        # sorted by seed within each (user, track): the sum adds the same terms in the same order
        # whatever order the seeds arrived in (float addition is not associative; a different
        # order moves scores in the 16th digit and can swap tied candidates between two runs)
        scored = (contrib.unionByName(exclude.repartition(parts, C.USER))
                  .sortWithinPartitions(C.USER, C.TRACK, "_seed")
                  .groupBy(C.USER, C.TRACK).agg(
                      F.sum("_c").alias(C.SCORE),
                      F.max(F.struct(F.col("_c"), F.col("_seed"))).getField("_seed").alias(C.SEED),
                      F.max("_x").alias("_x"))
                  .where(~F.col("_x") & F.col(C.SCORE).isNotNull()).drop("_x"))
        return finalize_candidates(scored, None, n, self.channel)

    def _spark(self) -> SparkSession:
        return self.neighbors.sparkSession

    def _save_state(self, path: str) -> None:
        """``neighbors`` as parquet under ``path/neighbors``."""
        self.neighbors.write.mode("overwrite").parquet(f"{path}/neighbors")

    @classmethod
    def _load_state(cls, spark: SparkSession, path: str, params: Dict[str, Any]) -> "ItemCFModel":
        return cls(spark.read.schema(NEIGHBORS_SCHEMA).parquet(f"{path}/neighbors"), params)

    def unpersist(self) -> None:
        self.neighbors.unpersist()
