"""Fusion of recall channels and the final ranking score.

Scores of different channels are not comparable (a cosine, an ALS dot product, a co-occurrence
count), so :func:`fuse` normalises each channel's evidence before summing it with per-channel
weights:

- ``method="rank"`` (default): weighted reciprocal-rank fusion,
  ``sum_c w_c / (rrf_k + rank_c)`` (Cormack et al., 2009). Only ranks are used, so outliers in one
  channel's scores cannot dominate.
- ``method="minmax"``: per (user, channel) min-max scaled scores, ``sum_c w_c * scaled_c``
  (a channel giving a user a single candidate, or all-equal scores, scales to 1).

:func:`final_score` then blends the fused recall score with the DIN click probability (when DIN
ran), the learned ranker's score and optionally the track quality into ``final_score`` in
``[0, 1]``. Each component is first put on a common per-user scale: its min-max scaled value
(``scale="minmax"``) or, with ``scale="rank"``, the min-max scaled reciprocal rank
``1 / (rrf_k + rank)`` of the candidate in the user's list ordered by that component, so the blend is
a weighted reciprocal-rank fusion of the components' orders (like :func:`fuse` for the channels).
Min-max scaling lets a component's calibration decide its real weight: a click probability that is
near 0 for most of a user's candidates and high for a few gives those few a big lead and leaves the
rest to whichever other component is spread evenly, whatever the weights say.
"""

from __future__ import annotations

import logging
from typing import Mapping, Optional

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

log = logging.getLogger(__name__)

# channels whose candidates come from the user's own plays: a user none of them reached has no
# usable history (a new user), and gets ``cold_user_weights`` in :func:`fuse` when those are given
HISTORY_CHANNELS = ("item_cf", "als", "content")


def _weight_expr(channel_weights: Mapping[str, float], default_weight: float):
    expr = F.lit(float(default_weight))
    for name, w in sorted(channel_weights.items()):
        expr = F.when(F.col("channel") == F.lit(name), F.lit(float(w))).otherwise(expr)
    return expr


def fuse(
    candidates_by_channel: DataFrame,
    channel_weights: Mapping[str, float],
    method: str = "rank",
    rrf_k: float = 60.0,
    default_weight: float = 0.0,
    num_partitions: int = 0,
    cold_user_weights: Optional[Mapping[str, float]] = None,
    history_channels=HISTORY_CHANNELS,
) -> DataFrame:
    """Combine per-channel candidates into one row per (user, track).

    Parameters
    ----------
    candidates_by_channel : DataFrame
        ``user_id, track_id, channel, score, rank, seed_track_id`` (the union of every channel's
        output; ``seed_track_id`` nullable).
    channel_weights : mapping
        Channel name -> weight. Channels not listed get ``default_weight`` (0: their candidates
        are kept and keep the channel in ``channels``, but add nothing to the score).
    method : {"rank", "minmax"}
    rrf_k : float
        Reciprocal-rank constant (``method="rank"``).
    num_partitions : int
        When > 0, hash-partition the candidates by ``user_id`` into this many partitions first
        (the weekly job does, so that the per-user steps after fusion need no further shuffle).
    cold_user_weights : mapping, optional
        Channel name -> weight for the users that none of ``history_channels`` reached (new users,
        served from their prompts and the popular pool); channels not listed keep
        ``channel_weights``. Empty or None: every user gets ``channel_weights`` (and no per-user
        window is computed).
    history_channels : sequence of str
        The channels whose candidates come from the user's own plays.

    Returns
    -------
    DataFrame
        ``user_id string, track_id string, channels array<string>, recall_score double,
        seed_track_id string``. ``channels`` lists the channels that proposed the track, strongest
        contribution first; ``seed_track_id`` comes from the highest-weighted channel that had one
        (ties: better rank, then channel name).

    Examples
    --------
    >>> fused = fuse(cands, {"item_cf": 1.0, "als": 1.0}, method="rank")  # doctest: +SKIP
    """
    if method not in ("rank", "minmax"):
        raise ValueError(f"fusion method must be 'rank' or 'minmax', got {method!r}")
    c = candidates_by_channel.select(
        "user_id", "track_id", "channel", F.col("score").cast("double").alias("score"),
        F.col("rank").cast("int").alias("rank"), "seed_track_id",
    )
    # Everything below is keyed by user: one shuffle by user_id here serves both aggregations
    # (and the per-user windows of the quality filter, pre-ranking and final score downstream)
    # instead of a sort for the de-duplication window plus a shuffle per aggregation.
    if num_partitions:
        c = c.repartition(int(num_partitions), "user_id")
    w = _weight_expr(channel_weights, default_weight)
    if cold_user_weights:
        reached = F.max(F.col("channel").isin(*history_channels).cast("int")).over(Window.partitionBy("user_id"))
        w = F.when(reached == 1, w).otherwise(_weight_expr({**channel_weights, **cold_user_weights}, default_weight))
    c = c.withColumn("w", w)
    if method == "rank":
        c = c.withColumn("contrib", F.col("w") / (F.lit(float(rrf_k)) + F.col("rank")))
    else:
        uc = Window.partitionBy("user_id", "channel")
        lo, hi = F.min("score").over(uc), F.max("score").over(uc)
        scaled = F.when(hi > lo, (F.col("score") - lo) / (hi - lo)).otherwise(F.lit(1.0))
        c = c.withColumn("contrib", F.col("w") * scaled)
    # a channel may (wrongly) emit a track twice: keep its best rank (then best score)
    c = (c.groupBy("user_id", "track_id", "channel")
         .agg(F.min(F.struct(F.col("rank"), (-F.col("score")).alias("neg"), F.col("seed_track_id").alias("seed"),
                             F.col("w"), F.col("contrib"))).alias("_b"))
         .select("user_id", "track_id", "channel", F.col("_b.rank").alias("rank"), F.col("_b.w").alias("w"),
                 F.col("_b.contrib").alias("contrib"), F.col("_b.seed").alias("seed_track_id")))

    seed_struct = F.struct(
        (-F.col("w")).alias("a"), F.col("rank").alias("b"), F.col("channel").alias("c"),
        F.col("seed_track_id").alias("seed"))
    fused = c.groupBy("user_id", "track_id").agg(
        F.sum("contrib").alias("recall_score"),
        F.sort_array(F.collect_list(F.struct((-F.col("contrib")).alias("k"), F.col("channel").alias("ch"))))
        .alias("_chs"),
        F.min(F.when(F.col("seed_track_id").isNotNull(), seed_struct)).alias("_seed"),
    )
    out = fused.select(
        "user_id", "track_id",
        F.transform("_chs", lambda s: s["ch"]).alias("channels"),
        F.col("recall_score").cast("double").alias("recall_score"),
        F.col("_seed.seed").alias("seed_track_id"),
    )
    log.info("fusion defined (method=%s, weights=%s, users without history: %s)", method, dict(channel_weights),
             dict(cold_user_weights or {}) or "the same")
    return out


def final_score(
    df: DataFrame,
    din_weight: float = 1.0,
    recall_weight: float = 1.0,
    quality_weight: float = 0.0,
    din_col: str = "din_score",
    ranker_weight: float = 0.0,
    ranker_col: str = "ranker_score",
    scale: str = "minmax",
    rrf_k: float = 60.0,
) -> DataFrame:
    """Blend the fused recall score, the DIN score and the quality into ``final_score``.

    Each component is put on a per-user scale (``scale``, see the module doc: min-max of the value,
    or min-max of ``1 / (rrf_k + rank)`` in the user's list by that component, equal values sharing
    a rank) and the weighted mean of the available components is taken. A row without a DIN
    score (DIN skipped for it, or ``din_col`` absent) uses the remaining components only; a constant
    component (one candidate, or all equal values) scales to 1. The learned ranker's ``ranker_col``
    is one more component (weight ``ranker_weight``) when the column is there.

    Parameters
    ----------
    df : DataFrame
        ``user_id, recall_score`` and optionally ``din_score``, ``ranker_score`` and ``quality``.
    din_weight, recall_weight, quality_weight, ranker_weight : float
        Non-negative weights.

    scale : {"minmax", "rank"}
    rrf_k : float
        The reciprocal-rank constant of ``scale="rank"``.

    Returns
    -------
    DataFrame
        ``df`` plus ``final_score double`` in ``[0, 1]``.
    """
    if min(din_weight, recall_weight, quality_weight, ranker_weight) < 0:
        raise ValueError("weights must be non-negative")
    if scale not in ("minmax", "rank"):
        raise ValueError(f"final score scale must be 'minmax' or 'rank', got {scale!r}")
    comps = [("recall_score", recall_weight)] if recall_weight > 0 else []
    if ranker_col in df.columns and ranker_weight > 0:
        comps.append((ranker_col, ranker_weight))
    if din_col in df.columns and din_weight > 0:
        comps.append((din_col, din_weight))
    if "quality" in df.columns and quality_weight > 0:
        comps.append(("quality", quality_weight))
    u = Window.partitionBy("user_id")
    num, den = F.lit(0.0), F.lit(0.0)
    for col, w in comps:
        x = F.col(col).cast("double")
        if scale == "rank":  # equal values share a rank (rank(), not row_number()): a constant component stays constant
            r = F.rank().over(u.orderBy(x.desc_nulls_last()))
            x = F.when(x.isNull(), F.lit(None)).otherwise(1.0 / (F.lit(float(rrf_k)) + r))
        lo, hi = F.min(x).over(u), F.max(x).over(u)
        scaled = F.when(x.isNull(), F.lit(None)).when(hi > lo, (x - lo) / (hi - lo)).otherwise(F.lit(1.0))
        num = num + F.coalesce(scaled * F.lit(float(w)), F.lit(0.0))
        den = den + F.when(scaled.isNotNull(), F.lit(float(w))).otherwise(F.lit(0.0))
    out = df.withColumn("final_score", F.when(den > 0, num / den).otherwise(F.lit(0.0)))
    log.info("final score defined from %s (scale %s)", [c for c, _ in comps], scale)
    return out

