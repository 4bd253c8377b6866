"""Re-ranking rules: from scored candidates to exactly ``size`` explained tracks per user.

Order of operations (per user, nothing collected to the driver):

1. **Exclusions** (Spark anti-joins): never a track the user heard before W, never the user's own
   tracks.
2. **Back-fill pool**: users with fewer than ``2 x size`` eligible candidates get the platform's
   most popular tracks (labelled ``popular_backfill``), again without heard or own tracks.
3. **Greedy selection** (``mapInPandas`` over rows clustered by user): maximal marginal relevance
   ``lambda x relevance - (1 - lambda) x max similarity to the tracks already picked``
   (cosine of CLAP embeddings when both tracks have one, otherwise same-creator / same-genre;
   with creator embeddings, also ``creator_weight x`` the cosine of the two tracks' creators'
   pooled embeddings, so two different creators who sound alike count as near-duplicates),
   a per-creator cap, a minimum share of fresh tracks (created in the last ``fresh_days``) when
   the candidates have them; back-fill tracks only once real candidates run out.
4. **Short users**: a user still below ``size`` (the cap or the heard set ate the pool) is
   re-selected with a pool four times larger, until full or the pool covers the catalog: fewer
   than ``size`` only when the catalog has fewer eligible tracks.
5. **Reasons**: each row gets its ``sources`` and a human-readable reason.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
import uuid
from typing import Iterator, Optional, Tuple

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..common import WorkerCache, collect_vectors, top_n_per_user
from ..recall.popularity import track_popularity

log = logging.getLogger(__name__)

BACKFILL = "popular_backfill"

SELECTED_SCHEMA = T.StructType([
    T.StructField("user_id", T.StringType(), False),
    T.StructField("position", T.IntegerType(), False),
    T.StructField("track_id", T.StringType(), False),
    T.StructField("score", T.DoubleType(), False),
    T.StructField("sources", T.ArrayType(T.StringType()), False),
    T.StructField("seed_track_id", T.StringType(), True),
])


def exclude_unwanted(cands: DataFrame, heard: DataFrame, tracks: DataFrame) -> DataFrame:
    """Drop heard tracks and the user's own tracks."""
    out = cands.join(heard.select("user_id", "track_id"), ["user_id", "track_id"], "left_anti")
    own = tracks.select("track_id", F.col("creator_id").alias("user_id"))
    return out.join(own, ["user_id", "track_id"], "left_anti")


def popularity_ranks(tracks: DataFrame, interactions: Optional[DataFrame] = None) -> DataFrame:
    """``track_id, p``: the catalog by the popular channel's popularity
    (:func:`~recsys_spark.recall.popularity.track_popularity`: catalog counts, else plays in
    ``interactions``), ``p`` 1 = most popular (ties by ``track_id``)."""
    pop = track_popularity(tracks, interactions)
    return pop.select("track_id", F.row_number().over(
        Window.orderBy(F.col("popularity").desc(), F.col("track_id"))).alias("p"))


def backfill_candidates(users: DataFrame, tracks: DataFrame, heard: DataFrame, pool_size: int,
                        interactions: Optional[DataFrame] = None, ranks: Optional[DataFrame] = None) -> DataFrame:
    """``pool_size`` most popular tracks for each user in ``users``, heard and own tracks removed.

    Popularity is :func:`popularity_ranks` of ``tracks`` / ``interactions`` (or ``ranks``, computed
    once by the caller when it back-fills several times). Scores are negative (below every real
    candidate); ``channels = [popular_backfill]``.
    """
    ranks = ranks if ranks is not None else popularity_ranks(tracks, interactions)
    pool = ranks.where(F.col("p") <= pool_size).select("track_id", (-F.col("p").cast("double")).alias("final_score"))
    rows = users.select("user_id").crossJoin(F.broadcast(pool))
    rows = exclude_unwanted(rows, heard, tracks)
    return rows.select("user_id", "track_id", F.array(F.lit(BACKFILL)).alias("channels"), "final_score",
                       F.lit(None).cast("string").alias("seed_track_id"))


def _unit_rows(values: np.ndarray) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """L2-normalised rows of an object array of vectors and, per row, its row in that matrix
    (-1 where missing); None when no row has one."""
    has = np.fromiter((e is not None and len(e) > 0 for e in values), dtype=bool, count=len(values))
    if not has.any():
        return None
    rows = np.stack([np.asarray(v, dtype=np.float32) for v in values[has]])
    key = np.full(len(values), -1, dtype=np.int64)
    key[has] = np.arange(int(has.sum()))
    return _normalise(rows), key


def _normalise(rows: np.ndarray) -> np.ndarray:
    return rows / (np.linalg.norm(rows, axis=1, keepdims=True) + 1e-12)


# -- vectors shipped once per executor ------------------------------------------------------------

#: per Python worker: track and creator vectors of this run and the one before
_VECTOR_CACHE = WorkerCache(max_items=4)


class ShippedVectors:
    """Unit vectors by key (the catalog's track embeddings, the creators' pooled embeddings),
    collected once on the driver and broadcast, so the selection's rows carry a key instead of a
    512-float array each (at M with every track embedded that was ~30 GB through the shuffle and
    Arrow). Executors rebuild ``(keys, matrix)`` once per Python worker (:meth:`get`).

    Driver and executor memory: ``keys x dim x 4`` bytes (30K tracks x 512: 61 MB); the same order
    as the content channel's faiss index, which the run already builds from the same table.
    Needs a classic session (``SparkContext.broadcast``): the weekly job's write stage is listed in
    ``recsys_spark.spark.CLASSIC_STAGES``.
    """

    def __init__(self, spark, df: DataFrame, key: str, column: str = "embedding"):
        t0 = time.perf_counter()
        keys, mat = collect_vectors(df, key, column, duplicates="first")
        self.size = len(keys)
        self.token = uuid.uuid4().hex
        if self.size:
            mat = np.ascontiguousarray(_normalise(mat), dtype=np.float32)
        self.nbytes = int(mat.nbytes)
        self.bc = spark.sparkContext.broadcast((keys, mat))
        log.info("rules: %d %s vectors (%.1f MB) broadcast for diversity in %.2fs", self.size, key,
                 self.nbytes / 2**20, time.perf_counter() - t0)

    def get(self) -> Tuple[pd.Index, np.ndarray]:
        return _VECTOR_CACHE.get(self.token, self._rebuild)

    def _rebuild(self) -> Tuple[pd.Index, np.ndarray]:
        keys, mat = self.bc.value
        return pd.Index(keys, dtype=object), mat


def _looked_up(lookup: Tuple[pd.Index, np.ndarray], keys: np.ndarray) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """``(matrix, row of each key or -1)`` for :func:`_greedy`; None when no key has a vector."""
    index, mat = lookup
    if len(index) == 0:
        return None
    row = index.get_indexer(keys.astype(object))
    return (mat, row.astype(np.int64)) if (row >= 0).any() else None


def _codes(values: np.ndarray) -> np.ndarray:
    """Integer codes for equality tests; missing values (None) share one code of their own."""
    return pd.factorize(values, use_na_sentinel=False)[0]


# cells of the [users, n, n] similarity tensor held at once (float32: 4 MB)
_CHUNK_CELLS = 1_000_000


def _mmr_select(pdf: pd.DataFrame, size: int, creator_cap: int, lam: float, fresh_min: int,
                use_diversity: bool, creator_weight: float = 0.0,
                track_vectors: Optional[Tuple[pd.Index, np.ndarray]] = None,
                creator_vectors: Optional[Tuple[pd.Index, np.ndarray]] = None) -> pd.DataFrame:
    """Greedy MMR selection for the candidates of one or more users, rows clustered by user
    (pure numpy; each user is selected independently of the others in the frame).

    Per user the candidates are ordered back-fill last, then by ``final_score`` and ``track_id``,
    one row per track (its best). The similarity of candidate ``j`` to a picked track ``i`` is the
    maximum of: the cosine of their track embeddings (``embedding``), 0.5 for the same genre, 1 for
    the same creator, and ``creator_weight`` x the cosine of their creators' embeddings
    (``creator_embedding``, when both creators have one; or looked up by ``track_id`` /
    ``creator_id`` in ``track_vectors`` / ``creator_vectors``, ``(keys, unit rows)`` from
    :class:`ShippedVectors`, when given). Each greedy step picks
    ``argmax(lam x relevance - (1 - lam) x max similarity to the picks)`` among the real
    candidates whose creator is under ``creator_cap`` (the remaining slots are kept for fresh
    tracks while ``fresh_min`` is not met and fresh ones are left), back-fill tracks in
    popularity order once the real ones run out.

    The users of a frame are handled together: the similarity matrices of a chunk of users are
    stacked into one ``[users, n, n]`` tensor and each greedy step is a handful of vector
    operations over the chunk, so the Python cost per user is a few microseconds, not a few
    hundred.
    """
    users_all = pdf["user_id"].to_numpy()
    n_rows = len(users_all)
    if n_rows == 0:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in (
            ("user_id", object), ("position", np.int32), ("track_id", object), ("score", float),
            ("sources", object), ("seed_track_id", object))})
    new_user = np.r_[True, users_all[1:] != users_all[:-1]]
    seg = np.cumsum(new_user) - 1                                   # user index of each row
    backfill = pdf["is_backfill"].to_numpy(dtype=bool)
    scores_all = pdf["final_score"].to_numpy(dtype=float)
    tracks_all = pdf["track_id"].to_numpy().astype(str)
    # per user: back-fill last, best score, track id; then one row per track (its best)
    order = np.lexsort((tracks_all, -scores_all, backfill, seg))
    dup = pd.DataFrame({"s": seg[order], "t": tracks_all[order]}).duplicated().to_numpy()
    order = order[~dup]
    oseg = seg[order]
    starts = np.flatnonzero(np.r_[True, oseg[1:] != oseg[:-1]])
    counts = np.diff(np.r_[starts, len(order)])
    pos = np.arange(len(order)) - np.repeat(starts, counts)

    creator_code = _codes(pdf["creator_id"].to_numpy())
    genre_code = _codes(pdf["genre"].to_numpy()) if use_diversity else None
    fresh_all = pdf["is_fresh"].to_numpy(dtype=bool)
    emb = cemb = None
    if use_diversity:
        if track_vectors is not None:
            emb = _looked_up(track_vectors, pdf["track_id"].to_numpy())
        elif "embedding" in pdf.columns:
            emb = _unit_rows(pdf["embedding"].to_numpy())
    if use_diversity and creator_weight > 0:
        if creator_vectors is not None:
            cemb = _looked_up(creator_vectors, pdf["creator_id"].to_numpy())
        elif "creator_embedding" in pdf.columns:
            cemb = _unit_rows(pdf["creator_embedding"].to_numpy())

    # back-fill rows come last per user and never need a similarity (see _greedy): the [n, n]
    # matrices cover the real candidates only, however large a short user's back-fill pool grows
    n_real = np.add.reduceat((~backfill[order]).astype(np.int64), starts)
    picks = []
    n_users = len(starts)
    u0 = 0
    while u0 < n_users:
        # as many users as fit the cell budget (at least one)
        u1 = u0 + 1
        width, rwidth = counts[u0], n_real[u0]
        while (u1 < n_users and (u1 - u0 + 1) * max(rwidth, n_real[u1]) ** 2 <= _CHUNK_CELLS
               and (u1 - u0 + 1) * max(width, counts[u1]) <= _CHUNK_CELLS):
            width, rwidth = max(width, counts[u1]), max(rwidth, n_real[u1])
            u1 += 1
        lo_row, hi_row = starts[u0], (starts[u1] if u1 < n_users else len(order))
        idx = np.full((u1 - u0, width), -1, dtype=np.int64)       # batch row of each (user, slot)
        idx[oseg[lo_row:hi_row] - oseg[lo_row], pos[lo_row:hi_row]] = order[lo_row:hi_row]
        picks.append(_greedy(idx, size, creator_cap, lam, fresh_min, backfill, scores_all, creator_code,
                             fresh_all, genre_code, emb, cemb, creator_weight))
        u0 = u1
    picked = np.concatenate(picks)                                  # [users, size], -1 = none
    _, slot = np.nonzero(picked >= 0)                                # row-major: user, then position
    sel = picked[picked >= 0]
    return pd.DataFrame({
        "user_id": users_all[sel],
        "position": (slot + 1).astype(np.int32),
        "track_id": tracks_all[sel].astype(object),
        "score": scores_all[sel],
        "sources": [list(c) for c in pdf["channels"].to_numpy()[sel]],
        "seed_track_id": pdf["seed_track_id"].to_numpy()[sel],
    })


def _greedy(idx, size, creator_cap, lam, fresh_min, backfill, scores_all, creator_code, fresh_all, genre_code,
            emb, cemb, creator_weight) -> np.ndarray:
    """The greedy selection of one chunk of users; ``idx`` ``[users, n]`` holds each user's
    candidate rows in preference order (-1 = padding). Returns ``[users, size]`` picked rows."""
    n_u, n = idx.shape
    valid = idx >= 0
    safe = np.where(valid, idx, 0)
    real = valid & ~backfill[safe]
    scores = np.where(valid, scores_all[safe], 0.0)
    fresh = valid & fresh_all[safe]
    cc = np.where(valid, creator_code[safe], -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(real, scores, np.inf).min(axis=1, keepdims=True)
        hi = np.where(real, scores, -np.inf).max(axis=1, keepdims=True)
        span = hi - lo
        rel = np.where(real, np.where(span < 1e-12, 1.0, (scores - lo) / span), 0.0)
    sim = None
    r = int(real.sum(axis=1).max())                                 # real candidates lead each row
    if genre_code is not None:
        # Only among real candidates: back-fill is picked in popularity order, and only once no
        # real candidate is allowed any more (used and capped only grow), so no real pick follows.
        # float32 holds every value exactly (0.5, 1, cosines), so picks equal a float64 matrix's.
        # Same genre (0.5) and same creator (1) for the whole chunk at once (slots past a user's real
        # candidates get code -1, which no real candidate has: their cells are never read), then
        # the cosines user by user, among the candidates that have a vector only (a missing vector's
        # cosine is 0, below every value already there; with few tracks embedded that skips most of
        # the arithmetic).
        real_r = real[:, :r]
        rows_r = np.where(real_r, idx[:, :r], 0)
        g = np.where(real_r, genre_code[rows_r], -1)
        c = np.where(real_r, cc[:, :r], -1)
        sim = np.where(g[:, :, None] == g[:, None, :], np.float32(0.5), np.float32(0.0)).astype(np.float32)
        sim[c[:, :, None] == c[:, None, :]] = np.float32(1.0)
        for vec, w in ((emb, None), (cemb, creator_weight)):
            if vec is None:
                continue
            mat, key = vec                                      # key: row of mat per batch row, -1 none
            vrow = key[rows_r]
            with_vec = real_r & (vrow >= 0)
            for u in np.flatnonzero(with_vec.sum(axis=1) >= 2):  # one vector: only its own cosine, 1 already
                k = np.flatnonzero(with_vec[u])
                e = mat[vrow[u, k]]
                cos = e @ e.T if w is None else w * (e @ e.T)
                block = np.ix_(k, k)
                sim[u][block] = np.maximum(sim[u][block], cos)
    ar = np.arange(n_u)
    max_sim = np.zeros((n_u, n))
    used = ~valid
    per_creator = np.zeros((n_u, n), dtype=np.int64)               # picks so far by each slot's creator
    fresh_left = np.minimum(fresh_min, (fresh & real).sum(axis=1))
    active = np.ones(n_u, dtype=bool)
    out = np.full((n_u, size), -1, dtype=np.int64)
    for step in range(size):
        slots_left = size - step
        ok = ~used & (per_creator < creator_cap)
        reserve = fresh_left >= slots_left                          # remaining slots kept for fresh
        ok_fresh = ok & (fresh | ~real)
        has_fresh = (ok_fresh & real).any(axis=1)
        ok = np.where((reserve & has_fresh)[:, None], ok_fresh, ok)
        fresh_left = np.where(reserve & ~has_fresh, 0, fresh_left)
        tier = ok & real
        any_real = tier.any(axis=1)
        tier_bf = ok & ~real & valid
        active &= any_real | tier_bf.any(axis=1)
        if not active.any():
            break
        obj = lam * rel - (1.0 - lam) * max_sim if sim is not None else rel
        i = np.where(any_real, np.argmax(np.where(tier, obj, -np.inf), axis=1),
                     np.argmax(tier_bf, axis=1))                    # back-fill: popularity order
        rows = ar[active]
        i = i[active]
        out[rows, step] = idx[rows, i]
        used[rows, i] = True
        per_creator[rows] += cc[rows] == cc[rows, i][:, None]
        took_fresh = fresh[rows, i] & real[rows, i]
        fresh_left[rows] = np.where(took_fresh, np.maximum(0, fresh_left[rows] - 1), fresh_left[rows])
        if sim is not None:
            took_real = real[rows, i]                                # (back-fill: see above)
            rr, ir = rows[took_real], i[took_real]
            max_sim[rr, :r] = np.maximum(max_sim[rr, :r], sim[rr, ir])
    return out


def select_playlists(cands: DataFrame, size: int = 30, creator_cap: int = 2, diversity_lambda: float = 0.8,
                     fresh_share: float = 0.0, diversity: bool = True, creator_weight: float = 0.0,
                     track_vectors: Optional[ShippedVectors] = None,
                     creator_vectors: Optional[ShippedVectors] = None) -> DataFrame:
    """Per-user greedy selection (see module doc). ``cands`` needs ``user_id, track_id, final_score,
    channels, seed_track_id, creator_id, genre, is_fresh, is_backfill``; the vectors for diversity
    come from ``track_vectors`` / ``creator_vectors`` (looked up by ``track_id`` / ``creator_id``
    on the executors) or else from optional per-row ``embedding`` / ``creator_embedding`` columns."""
    fresh_min = int(math.ceil(size * fresh_share))
    cols = ["user_id", "track_id", "final_score", "channels", "seed_track_id", "creator_id", "genre",
            "is_fresh", "is_backfill"]
    for shipped, column in ((track_vectors, "embedding"), (creator_vectors, "creator_embedding")):
        if shipped is None and column in cands.columns:
            cols.append(column)

    def select(pdf: pd.DataFrame) -> pd.DataFrame:
        return _mmr_select(pdf, size, creator_cap, diversity_lambda, fresh_min, diversity, creator_weight,
                           None if track_vectors is None else track_vectors.get(),
                           None if creator_vectors is None else creator_vectors.get())

    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        # rows arrive clustered by user; a user cut by an Arrow batch boundary is carried over
        carry = None
        for pdf in batches:
            if carry is not None:
                pdf = pd.concat([carry, pdf], ignore_index=True)
            if pdf.empty:
                continue
            users = pdf["user_id"].to_numpy()
            tail = users == users[-1]
            carry = pdf[tail]
            done = pdf[~tail]
            if len(done):
                yield select(done)
        if carry is not None and len(carry):
            yield select(carry)

    # one mapInPandas call per partition (not one Python call and Arrow batch per user, as
    # groupBy().applyInPandas does): the per-user overhead dominated at 100K+ users
    return (cands.select(*cols).repartition("user_id").sortWithinPartitions("user_id")
            .mapInPandas(fn, SELECTED_SCHEMA))


def _with_fresh(tracks: DataFrame, week: dt.date, fresh_days: int, played: Optional[DataFrame]):
    """``(tracks [+ _played], is_fresh column)``: created in the last ``fresh_days`` before W or, when
    ``played`` (the ``track_id`` of every track played before W) is given, never played."""
    start = dt.datetime.combine(week, dt.time()) - dt.timedelta(days=fresh_days)
    fresh = F.coalesce(F.col("created_at"), F.lit(dt.datetime(1970, 1, 1))) >= F.lit(start)
    if played is not None:
        # distinct: a caller may pass every play's track_id (cheap over an already distinct set)
        tracks = tracks.join(played.select("track_id").distinct().withColumn("_played", F.lit(True)),
                             "track_id", "left")
        fresh = fresh | F.col("_played").isNull()
    return tracks, fresh


def fresh_tracks(tracks: DataFrame, week: dt.date, fresh_days: int, played: Optional[DataFrame] = None) -> DataFrame:
    """``track_id`` of the catalogue's fresh tracks (the fresh share's): created in the last
    ``fresh_days`` before W or, with ``played``, never played before W."""
    t, fresh = _with_fresh(tracks, week, fresh_days, played)
    return t.where(fresh).select("track_id")


def top_n_with_fresh_lane(df: DataFrame, n: int, score_col: str, fresh: Optional[DataFrame] = None,
                          lane: int = 0) -> DataFrame:
    """Each user's best ``n`` rows by ``score_col`` (ties by ``track_id``) and, when ``fresh``
    (:func:`fresh_tracks`) and ``lane`` > 0 are given, also their best ``lane`` fresh rows below
    that cut: the fresh share's candidates (unplayed tracks, often found by the content channel
    alone) are not cut before the re-ranking rules can reserve them slots. Same columns as ``df``."""
    if fresh is None or lane <= 0:
        return top_n_per_user(df, n, score_col=score_col).drop("rank")
    w = Window.partitionBy("user_id").orderBy(F.col(score_col).desc(), F.col("track_id"))
    out = df.withColumn("_r", F.row_number().over(w)) \
        .join(fresh.select("track_id", F.lit(True).alias("_f")), "track_id", "left")
    wf = Window.partitionBy("user_id", "_f").orderBy(F.col(score_col).desc(), F.col("track_id"))
    out = out.withColumn("_rf", F.row_number().over(wf))
    return out.where((F.col("_r") <= n) | (F.col("_f").isNotNull() & (F.col("_rf") <= lane))) \
        .drop("_r", "_rf", "_f").select(*df.columns)


def _decorate(cands: DataFrame, tracks: DataFrame, week: dt.date, fresh_days: int,
              embeddings: Optional[DataFrame] = None, creator_embeddings: Optional[DataFrame] = None,
              played: Optional[DataFrame] = None) -> DataFrame:
    """The selection's input: catalog metadata per candidate (``creator_id, genre, is_fresh,
    is_backfill``), and per-row embedding arrays only when ``embeddings`` / ``creator_embeddings``
    are given (the column path of :func:`select_playlists`; :func:`build_playlists` ships the
    vectors with :class:`ShippedVectors` instead).

    ``is_fresh``: in :func:`fresh_tracks` of ``tracks`` (``played``: unplayed tracks count too)."""
    t, fresh = _with_fresh(tracks, week, fresh_days, played)
    meta = t.select("track_id", "creator_id", F.coalesce(F.col("genre"), F.lit("unknown")).alias("genre"),
                    fresh.alias("is_fresh"))
    out = cands.join(meta, "track_id").withColumn(
        "is_backfill", F.array_contains(F.col("channels"), BACKFILL) & (F.size("channels") == 1))
    if embeddings is not None:
        out = out.join(embeddings.select("track_id", "embedding"), "track_id", "left")
    if creator_embeddings is not None:
        ce = creator_embeddings.select("creator_id", F.col("embedding").alias("creator_embedding")) \
            .dropDuplicates(["creator_id"])
        out = out.join(F.broadcast(ce), "creator_id", "left")
    return out


def build_playlists(cands: DataFrame, users: DataFrame, heard: DataFrame, tracks: DataFrame, week: dt.date,
                    size: int = 30, creator_cap: int = 2, diversity_lambda: float = 0.8,
                    diversity: bool = True, fresh_share: float = 0.1, fresh_days: int = 14,
                    max_candidates: int = 150, embeddings: Optional[DataFrame] = None,
                    backfill_pool: Optional[int] = None, creator_embeddings: Optional[DataFrame] = None,
                    creator_weight: float = 0.8, interactions: Optional[DataFrame] = None,
                    fresh_unplayed: bool = False, fresh_lane: int = 0,
                    played: Optional[DataFrame] = None) -> DataFrame:
    """Exactly ``size`` tracks per user in ``users`` (fewer only if the catalog runs out).

    Parameters
    ----------
    cands : DataFrame
        ``user_id, track_id, channels array<string>, final_score double, seed_track_id``.
    users : DataFrame
        ``user_id`` of every user to serve.
    heard, tracks : DataFrame
        Exclusion set and catalog (``creator_id``, ``genre``, ``created_at``, counts).
    embeddings : DataFrame, optional
        ``track_id, embedding`` for embedding-based diversity.
    creator_embeddings : DataFrame, optional
        ``creator_id, embedding`` (``aggregation.creators.for_diversity`` of the week's
        ``creator_embeddings``) for creator-level diversity: two candidates are as similar as
        ``creator_weight`` x the cosine of their creators' embeddings (at least).
    creator_weight : float
        Weight of the creator similarity in the MMR similarity (0 turns it off).
    interactions : DataFrame, optional
        Events before the week: the back-fill's popularity for tracks without catalog counts.
    fresh_unplayed : bool
        Tracks nobody played before the week (no row in ``interactions``) count as fresh for the
        ``fresh_share`` whatever their age: the content channel's cold-start candidates.
    fresh_lane : int
        Besides the best ``max_candidates``, each user's best ``fresh_lane`` fresh candidates
        (:func:`top_n_with_fresh_lane`) enter the selection (0: none).
    played : DataFrame, optional
        ``track_id`` of the tracks played before the week, when the caller already has them (the
        weekly job computes them once per run); else ``fresh_unplayed`` derives them from
        ``interactions``.

    Returns
    -------
    DataFrame
        ``user_id, position (1..size), track_id, score, sources, seed_track_id``.
    """
    n_catalog = tracks.count()
    spark = cands.sparkSession
    # the vectors travel once per executor (a broadcast), not as an array on every candidate row
    tv = ShippedVectors(spark, embeddings, "track_id") if (diversity and embeddings is not None) else None
    cv = ShippedVectors(spark, creator_embeddings, "creator_id") if (
        diversity and creator_weight > 0 and creator_embeddings is not None) else None
    cands = cands.select("user_id", "track_id", "channels", "final_score", "seed_track_id")
    eligible = exclude_unwanted(cands, heard, tracks)
    own_played = False
    if not (fresh_unplayed and fresh_share > 0):
        played = None
    elif played is None:
        if interactions is None:
            raise ValueError("fresh_unplayed needs the week's interactions (which tracks were played before it)")
        played, own_played = interactions.select("track_id").distinct().persist(), True
    fresh = fresh_tracks(tracks, week, fresh_days, played) if (fresh_lane > 0 and fresh_share > 0) else None
    eligible = top_n_with_fresh_lane(eligible, max_candidates, "final_score", fresh, fresh_lane).persist()
    counts = eligible.groupBy("user_id").agg(F.count("*").alias("n"))
    needy = users.select("user_id").distinct().join(counts, "user_id", "left") \
        .where(F.coalesce(F.col("n"), F.lit(0)) < 2 * size).select("user_id")
    pool = backfill_pool or 4 * size * max(creator_cap, 1)
    pool = min(pool, n_catalog)
    # the catalog's popularity order, computed once: every back-fill round takes a longer prefix
    ranks = popularity_ranks(tracks, interactions).persist()
    allc = eligible.unionByName(backfill_candidates(needy, tracks, heard, pool, ranks=ranks))
    result = select_playlists(_decorate(allc, tracks, week, fresh_days, played=played), size, creator_cap,
                              diversity_lambda, fresh_share, diversity, creator_weight, tv, cv).persist()
    while True:
        short = result.groupBy("user_id").agg(F.count("*").alias("n")).where(F.col("n") < size).select("user_id")
        missing = users.select("user_id").distinct().join(result.select("user_id").distinct(), "user_id", "left_anti")
        short = short.unionByName(missing).distinct().persist()
        n_short = short.count()
        if n_short == 0 or pool >= n_catalog:
            if n_short:
                log.warning("%d users have fewer than %d eligible tracks in the whole catalog", n_short, size)
            short.unpersist()
            break
        pool = min(pool * 4, n_catalog)
        log.info("re-selecting %d short users with a back-fill pool of %d tracks", n_short, pool)
        redo_c = eligible.join(short, "user_id").unionByName(backfill_candidates(short, tracks, heard, pool, ranks=ranks))
        redo = select_playlists(_decorate(redo_c, tracks, week, fresh_days, played=played), size, creator_cap,
                                diversity_lambda, fresh_share, diversity, creator_weight, tv, cv)
        new_result = result.join(short, "user_id", "left_anti").unionByName(redo).persist()
        new_result.count()
        result.unpersist()
        short.unpersist()
        result = new_result
    eligible.unpersist()
    ranks.unpersist()
    if own_played:
        played.unpersist()
    return result  # tv / cv stay broadcast: a lost cached block of ``result`` recomputes from them


def add_reasons(playlists: DataFrame, tracks: DataFrame, prompts: Optional[DataFrame] = None,
                content_trained: bool = True) -> DataFrame:
    """Add ``reason``: "because you played “X”", "matches your prompt “…”", etc.

    ``content_trained=False`` (the CLAP model version is untrained: no checkpoint was loaded) keeps
    the reasons that rest on audio/text embeddings from promising what the model cannot know: they
    name the channel and say that its embeddings are untrained instead of "sounds like"/"matches".
    """
    titles = tracks.select(F.col("track_id").alias("seed_track_id"), F.col("title").alias("_seed_title"))
    genre = tracks.select("track_id", F.coalesce(F.col("genre"), F.lit("music")).alias("_genre"))
    out = playlists.join(titles, "seed_track_id", "left").join(genre, "track_id", "left")
    if prompts is not None:
        w = Window.partitionBy("user_id").orderBy(F.col("created_at").desc_nulls_last(), F.col("prompt_id"))
        last = (prompts.withColumn("_r", F.row_number().over(w)).where(F.col("_r") == 1)
                .select("user_id", F.col("prompt_text").alias("_prompt")))
        out = out.join(last, "user_id", "left")
    else:
        out = out.withColumn("_prompt", F.lit(None).cast("string"))
    has = lambda ch: F.array_contains(F.col("sources"), ch)  # noqa: E731
    short_prompt = F.when(F.length("_prompt") > 60, F.concat(F.substring("_prompt", 1, 57), F.lit("...")))\
        .otherwise(F.col("_prompt"))
    if content_trained:
        like_seed = "sounds like “%s”, which you played"
        like_prompt = "matches your prompt “%s”"
        like_history = "sounds like what you play"
    else:  # an untrained encoder: say which channel picked it, not what it "sounds like"
        like_seed = "near “%s”, which you played, in untrained audio embeddings"
        like_prompt = "picked for your prompt “%s” by an untrained text model"
        like_history = "near what you play in untrained audio embeddings"
    reason = (
        F.when(has("item_cf") & F.col("_seed_title").isNotNull(),
               F.format_string("because you played “%s”", F.col("_seed_title")))
        .when(has("content") & F.col("_seed_title").isNotNull(), F.format_string(like_seed, F.col("_seed_title")))
        .when(has("prompt") & F.col("_prompt").isNotNull(), F.format_string(like_prompt, short_prompt))
        .when(has("als"), F.lit("listeners with your taste play it"))
        .when(has("content"), F.lit(like_history))
        .when(has("popular"), F.format_string("popular in %s, which you play", F.col("_genre")))
        .otherwise(F.lit("popular on the platform"))
    )
    return out.withColumn("reason", reason).drop("_seed_title", "_genre", "_prompt")
