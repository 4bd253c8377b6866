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
from typing import Iterator, Optional

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

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


def backfill_candidates(users: DataFrame, tracks: DataFrame, heard: DataFrame, pool_size: int) -> DataFrame:
    """``pool_size`` most popular tracks for each user in ``users``, heard and own tracks removed.

    Scores are negative (below every real candidate); ``channels = [popular_backfill]``.
    """
    pop = track_popularity(tracks)
    pool = (pop.withColumn("p", F.row_number().over(Window.orderBy(F.col("popularity").desc(), F.col("track_id"))))
            .where(F.col("p") <= pool_size)
            .select("track_id", (-F.col("p").cast("double")).alias("final_score")))
    rows = users.select("user_id").crossJoin(F.broadcast(pool))
    rows = exclude_unwanted(rows, heard, tracks)
    return rows.select("user_id", "track_id", F.array(F.lit(BACKFILL)).alias("channels"), "final_score",
                       F.lit(None).cast("string").alias("seed_track_id"))


def _unit_rows(values: pd.Series):
    """``(matrix, has)``: L2-normalised rows of a column of arrays (zeros and ``False`` where missing)."""
    has = values.map(lambda e: e is not None and len(e) > 0).to_numpy()
    if not has.any():
        return None, has
    rows = np.stack([np.asarray(v, dtype=np.float32) for v in values.to_numpy()[has]])
    mat = np.zeros((len(values), rows.shape[1]), dtype=np.float32)
    mat[has] = rows / (np.linalg.norm(rows, axis=1, keepdims=True) + 1e-12)
    return mat, has


def _similarity(genres: np.ndarray, embeddings, creator_embeddings, use_diversity: bool,
                creator_weight: float, creator_code: np.ndarray) -> Optional[np.ndarray]:
    """The [n, n] MMR similarity of a user's candidates (see :func:`_mmr_select`), computed once."""
    if not use_diversity:
        return None
    genre_code = pd.factorize(genres)[0]
    sim = np.where(genre_code[:, None] == genre_code[None, :], 0.5, 0.0)
    if embeddings is not None:
        emb, has = _unit_rows(embeddings)
        if emb is not None:
            sim = np.maximum(sim, np.where(has[:, None] & has[None, :], emb @ emb.T, 0.0))
    if creator_weight > 0 and creator_embeddings is not None:
        cemb, has = _unit_rows(creator_embeddings)
        if cemb is not None:
            sim = np.maximum(sim, np.where(has[:, None] & has[None, :], creator_weight * (cemb @ cemb.T), 0.0))
    return np.maximum(sim, np.where(creator_code[:, None] == creator_code[None, :], 1.0, 0.0))


def _mmr_select(pdf: pd.DataFrame, size: int, creator_cap: int, lam: float, fresh_min: int,
                use_diversity: bool, creator_weight: float = 0.0) -> pd.DataFrame:
    """Greedy MMR selection for one user's candidates (pure pandas/numpy).

    The similarity of candidate ``j`` to a picked track ``i`` is the maximum of: the cosine of
    their track embeddings (``embedding``), 0.5 for the same genre, 1 for the same creator, and
    ``creator_weight`` x the cosine of their creators' embeddings (``creator_embedding``, when
    both creators have one). The similarity matrix is computed once per user (one matmul), the
    creator cap is tracked with integer codes and the frame is handled as numpy columns, so each
    greedy step is a few vector operations.
    """
    backfill = pdf["is_backfill"].to_numpy(dtype=bool)
    scores_all = pdf["final_score"].to_numpy(dtype=float)
    tracks_all = pdf["track_id"].to_numpy().astype(str)
    order = np.lexsort((tracks_all, -scores_all, backfill))       # back-fill last, best score, track id
    _, first = np.unique(tracks_all[order], return_index=True)     # one row per track: its best
    order = order[np.sort(first)]
    n = len(order)
    real = ~backfill[order]
    scores = scores_all[order]
    rel = np.zeros(n)
    if real.any():
        lo, hi = scores[real].min(), scores[real].max()
        rel[real] = 1.0 if hi - lo < 1e-12 else (scores[real] - lo) / (hi - lo)
    creator_code = pd.factorize(pdf["creator_id"].to_numpy()[order])[0]
    per_creator = np.zeros(creator_code.max() + 1 if n else 0, dtype=np.int64)
    fresh = pdf["is_fresh"].to_numpy(dtype=bool)[order]

    def col(name):
        return pd.Series(pdf[name].to_numpy()[order]) if name in pdf.columns else None

    sim = _similarity(pdf["genre"].to_numpy()[order], col("embedding"), col("creator_embedding"), use_diversity,
                      creator_weight, creator_code)
    max_sim = np.zeros(n)
    chosen, used = [], np.zeros(n, dtype=bool)
    fresh_left = min(fresh_min, int((fresh & real).sum()))
    while len(chosen) < size:
        slots_left = size - len(chosen)
        ok = ~used & (per_creator[creator_code] < creator_cap)
        if fresh_left >= slots_left:
            ok_fresh = ok & (fresh | ~real)  # remaining slots reserved for fresh tracks while any are left
            if (ok_fresh & real).any():
                ok = ok_fresh
            else:
                fresh_left = 0
        tier = ok & real
        if not tier.any():
            tier = ok & ~real
            if not tier.any():
                break
            # back-fill: popularity order
            i = int(np.flatnonzero(tier)[0])
        else:
            obj = lam * rel - (1.0 - lam) * max_sim if sim is not None else rel
            obj = np.where(tier, obj, -np.inf)
            i = int(np.argmax(obj))
        chosen.append(i)
        used[i] = True
        per_creator[creator_code[i]] += 1
        if fresh[i] and real[i]:
            fresh_left = max(0, fresh_left - 1)
        if sim is not None:
            max_sim = np.maximum(max_sim, sim[i])
    sel = order[np.asarray(chosen, dtype=np.int64)]
    return pd.DataFrame({
        "user_id": pdf["user_id"].to_numpy()[sel],
        "position": np.arange(1, len(chosen) + 1, dtype=np.int32),
        "track_id": tracks_all[sel].astype(object),
        "score": scores_all[sel],
        "sources": [list(c) for c in pdf["channels"].to_numpy()[sel]],
        "seed_track_id": pdf["seed_track_id"].to_numpy()[sel],
    })


def select_playlists(cands: DataFrame, size: int = 30, creator_cap: int = 2, diversity_lambda: float = 0.8,
                     fresh_share: float = 0.0, diversity: bool = True, creator_weight: float = 0.0) -> DataFrame:
    """Per-user greedy selection (see module doc). ``cands`` needs ``user_id, track_id, final_score,
    channels, seed_track_id, creator_id, genre, is_fresh, is_backfill`` and optionally ``embedding``
    and ``creator_embedding``."""
    fresh_min = int(math.ceil(size * fresh_share))
    cols = ["user_id", "track_id", "final_score", "channels", "seed_track_id", "creator_id", "genre",
            "is_fresh", "is_backfill"] + [c for c in ("embedding", "creator_embedding") if c in cands.columns]

    def select(pdf: pd.DataFrame) -> pd.DataFrame:
        return _mmr_select(pdf, size, creator_cap, diversity_lambda, fresh_min, diversity, creator_weight)

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
                yield pd.concat([select(g) for _, g in done.groupby("user_id", sort=False)], ignore_index=True)
        if carry is not None and len(carry):
            yield select(carry)

    # one mapInPandas call per partition (not one Python call and Arrow batch per user, as
    # groupBy().applyInPandas does): the per-user overhead dominated at 100K+ users
    return (cands.select(*cols).repartition("user_id").sortWithinPartitions("user_id")
            .mapInPandas(fn, SELECTED_SCHEMA))


def _decorate(cands: DataFrame, tracks: DataFrame, week: dt.date, fresh_days: int,
              embeddings: Optional[DataFrame], creator_embeddings: Optional[DataFrame] = None) -> DataFrame:
    start = dt.datetime.combine(week, dt.time()) - dt.timedelta(days=fresh_days)
    meta = tracks.select("track_id", "creator_id", F.coalesce(F.col("genre"), F.lit("unknown")).alias("genre"),
                         (F.coalesce(F.col("created_at"), F.lit(dt.datetime(1970, 1, 1))) >= F.lit(start))
                         .alias("is_fresh"))
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
                    creator_weight: float = 0.8) -> DataFrame:
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

    Returns
    -------
    DataFrame
        ``user_id, position (1..size), track_id, score, sources, seed_track_id``.
    """
    n_catalog = tracks.count()
    cands = cands.select("user_id", "track_id", "channels", "final_score", "seed_track_id")
    eligible = exclude_unwanted(cands, heard, tracks)
    w = Window.partitionBy("user_id").orderBy(F.col("final_score").desc(), F.col("track_id"))
    eligible = eligible.withColumn("_r", F.row_number().over(w)).where(F.col("_r") <= max_candidates).drop("_r")
    eligible = eligible.persist()
    counts = eligible.groupBy("user_id").agg(F.count("*").alias("n"))
    needy = users.select("user_id").distinct().join(counts, "user_id", "left") \
        .where(F.coalesce(F.col("n"), F.lit(0)) < 2 * size).select("user_id")
    pool = backfill_pool or 4 * size * max(creator_cap, 1)
    pool = min(pool, n_catalog)
    allc = eligible.unionByName(backfill_candidates(needy, tracks, heard, pool))
    result = select_playlists(_decorate(allc, tracks, week, fresh_days, embeddings, creator_embeddings), size,
                              creator_cap, diversity_lambda, fresh_share, diversity, creator_weight).persist()
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
        redo_c = eligible.join(short, "user_id").unionByName(backfill_candidates(short, tracks, heard, pool))
        redo = select_playlists(_decorate(redo_c, tracks, week, fresh_days, embeddings, creator_embeddings), size,
                                creator_cap, diversity_lambda, fresh_share, diversity, creator_weight)
        new_result = result.join(short, "user_id", "left_anti").unionByName(redo).persist()
        new_result.count()
        result.unpersist()
        short.unpersist()
        result = new_result
    eligible.unpersist()
    return result


def add_reasons(playlists: DataFrame, tracks: DataFrame, prompts: Optional[DataFrame] = None) -> DataFrame:
    """Add ``reason``: "because you played “X”", "matches your prompt “…”", etc."""
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
    reason = (
        F.when(has("item_cf") & F.col("_seed_title").isNotNull(),
               F.format_string("because you played “%s”", F.col("_seed_title")))
        .when(has("content") & F.col("_seed_title").isNotNull(),
              F.format_string("sounds like “%s”, which you played", F.col("_seed_title")))
        .when(has("prompt") & F.col("_prompt").isNotNull(),
              F.format_string("matches your prompt “%s”", short_prompt))
        .when(has("als"), F.lit("listeners with your taste play it"))
        .when(has("content"), F.lit("sounds like what you play"))
        .when(has("popular"), F.format_string("popular in %s, which you play", F.col("_genre")))
        .otherwise(F.lit("popular on the platform"))
    )
    return out.withColumn("reason", reason).drop("_seed_title", "_genre", "_prompt")
