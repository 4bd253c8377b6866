"""Engagement quality of tracks and the quality filter on candidates.

Score
-----
Engagement of a track = ``upvote_weight * upvotes + comment_weight * comments`` per play. Raw
rates are unreliable for small counts (3 plays and 3 upvotes is a rate of 1.0), so the rate is
smoothed towards the catalog mean ``mu`` with a Beta-like prior worth ``prior_strength`` plays::

    smoothed = (engagement + prior_strength * mu) / (plays + prior_strength)
    mu       = sum(engagement) / sum(plays)          over tracks with plays > 0

``plays`` is ``max(play_count, upvotes, comments)`` so that an upvote without a recorded play
still counts as an exposure. Tracks without statistics (null or zero counts) get ``mu``.

The smoothed rate is mapped to ``[0, 1]`` by the **ratio transform** ``q = s / (s + mu)``
(default, ``mapping="ratio"``): monotone, no global sort, stable from week to week, and the prior
maps to exactly 0.5. With the default threshold 0.3 a track is filtered when its smoothed
engagement is below ``0.3 / 0.7 = 43%`` of the catalog mean. ``mapping="percentile"`` instead gives
the mid-rank percentile of the smoothed rate over the catalog (one global sort; the threshold then
removes a fixed share of the catalog).

An optional external aesthetics score (e.g. Audiobox Aesthetics, supplied as a table
``track_id, aesthetics``) is min-max scaled over the supplied tracks and blended in:
``quality = (1 - w) * q + w * aesthetics`` (tracks without an aesthetics score keep ``q``).

Filter
------
:func:`apply_quality_filter` keeps candidates with ``quality >= threshold`` and back-fills users
left with fewer than ``min_per_user`` candidates with their best-scored below-threshold
candidates, in score order (window functions only; nothing is collected).
"""

from __future__ import annotations

import logging
from typing import Optional

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

log = logging.getLogger(__name__)

PRIOR_QUALITY = 0.5  # what a track without statistics gets under the ratio mapping


def quality_scores(
    tracks_df: DataFrame,
    prior_strength: float = 20.0,
    upvote_weight: float = 1.0,
    comment_weight: float = 2.0,
    aesthetics_df: Optional[DataFrame] = None,
    aesthetics_weight: float = 0.0,
    mapping: str = "ratio",
) -> DataFrame:
    """Bayesian-smoothed engagement quality of every track, in ``[0, 1]``.

    Parameters
    ----------
    tracks_df : DataFrame
        ``track_id`` plus ``play_count``, ``upvote_count``, ``comment_count`` (nullable longs).
    prior_strength : float
        Pseudo-plays of the prior (larger = more smoothing).
    upvote_weight, comment_weight : float
        Engagement value of one upvote / one comment.
    aesthetics_df : DataFrame, optional
        ``track_id, aesthetics`` (any numeric scale; min-max scaled over this table).
    aesthetics_weight : float
        Blend weight of the aesthetics score in ``[0, 1]``; 0 ignores it.
    mapping : {"ratio", "percentile"}
        How the smoothed rate is mapped to ``[0, 1]`` (see the module docstring).

    Returns
    -------
    DataFrame
        ``track_id string, quality double`` (one row per distinct track of ``tracks_df``).

    Examples
    --------
    >>> q = quality_scores(tracks, prior_strength=20.0)  # doctest: +SKIP
    """
    if prior_strength <= 0:
        raise ValueError("prior_strength must be positive")
    if mapping not in ("ratio", "percentile"):
        raise ValueError(f"mapping must be 'ratio' or 'percentile', got {mapping!r}")
    if not 0.0 <= aesthetics_weight <= 1.0:
        raise ValueError("aesthetics_weight must be in [0, 1]")

    up = F.coalesce(F.col("upvote_count"), F.lit(0)).cast("double")
    com = F.coalesce(F.col("comment_count"), F.lit(0)).cast("double")
    plays = F.coalesce(F.col("play_count"), F.lit(0)).cast("double")
    base = (
        tracks_df.select("track_id", "play_count", "upvote_count", "comment_count")
        .dropDuplicates(["track_id"])
        .select(
            "track_id",
            (F.lit(float(upvote_weight)) * F.greatest(up, F.lit(0.0))
             + F.lit(float(comment_weight)) * F.greatest(com, F.lit(0.0))).alias("eng"),
            F.greatest(plays, up, com, F.lit(0.0)).alias("n"),
        )
    )
    stats = base.where(F.col("n") > 0).agg(
        (F.sum("eng") / F.sum("n")).alias("mu"))
    # mu is one number; a cross join with a one-row frame keeps it lazy (no driver round trip).
    smoothed = (
        base.crossJoin(F.broadcast(stats))
        .withColumn("mu", F.coalesce(F.col("mu"), F.lit(0.0)))
        .withColumn(
            "s",
            (F.col("eng") + F.lit(float(prior_strength)) * F.col("mu"))
            / (F.col("n") + F.lit(float(prior_strength))),
        )
    )
    if mapping == "ratio":
        q = F.when(F.col("s") + F.col("mu") > 0, F.col("s") / (F.col("s") + F.col("mu"))).otherwise(
            F.lit(PRIOR_QUALITY))
        scored = smoothed.withColumn("q", q)
    else:
        # mid-rank percentile: (#strictly lower + 0.5 * #equal) / n  -- ties share one value
        counts = smoothed.groupBy("s").agg(F.count(F.lit(1)).alias("c"))
        w = Window.orderBy("s").rowsBetween(Window.unboundedPreceding, -1)
        ranks = (counts.withColumn("below", F.coalesce(F.sum("c").over(w), F.lit(0)))
                 .withColumn("total", F.sum("c").over(Window.partitionBy()))
                 .select("s", ((F.col("below") + 0.5 * F.col("c")) / F.col("total")).alias("q")))
        scored = smoothed.join(ranks, "s")

    if aesthetics_df is not None and aesthetics_weight > 0:
        a = aesthetics_df.select("track_id", F.col("aesthetics").cast("double").alias("a")).where(
            F.col("a").isNotNull()).groupBy("track_id").agg(F.avg("a").alias("a"))
        rng = a.agg(F.min("a").alias("a_min"), F.max("a").alias("a_max"))
        a = a.crossJoin(F.broadcast(rng)).select(
            "track_id",
            F.when(F.col("a_max") > F.col("a_min"),
                   (F.col("a") - F.col("a_min")) / (F.col("a_max") - F.col("a_min")))
            .otherwise(F.lit(0.5)).alias("a_scaled"),
        )
        scored = scored.join(a, "track_id", "left").withColumn(
            "q",
            F.when(F.col("a_scaled").isNull(), F.col("q")).otherwise(
                F.lit(1.0 - aesthetics_weight) * F.col("q") + F.lit(float(aesthetics_weight)) * F.col("a_scaled")),
        )
    out = scored.select("track_id", F.least(F.greatest(F.col("q"), F.lit(0.0)), F.lit(1.0)).alias("quality"))
    log.info("quality scores defined (prior_strength=%s, mapping=%s, aesthetics=%s)",
             prior_strength, mapping, aesthetics_df is not None and aesthetics_weight > 0)
    return out


def apply_quality_filter(
    candidates_df: DataFrame,
    quality_df: DataFrame,
    threshold: float = 0.3,
    min_per_user: int = 30,
    score_col: str = "score",
    default_quality: float = PRIOR_QUALITY,
) -> DataFrame:
    """Drop low-quality candidates without leaving any user short.

    A candidate passes when ``quality >= threshold``. A user with fewer than ``min_per_user``
    passing candidates gets back the best below-threshold candidates (highest ``score_col`` first,
    ties by ``track_id``) until ``min_per_user`` is reached or none are left.

    Parameters
    ----------
    candidates_df : DataFrame
        ``user_id, track_id, <score_col>, ...`` (one row per user and track).
    quality_df : DataFrame
        ``track_id, quality`` (from :func:`quality_scores`).
    threshold : float
    min_per_user : int
    score_col : str
        Column ordering the back-fill.
    default_quality : float
        Quality of a candidate missing from ``quality_df`` (the prior).

    Returns
    -------
    DataFrame
        The input columns plus ``quality double``, restricted to the kept rows.
    """
    q = quality_df.select("track_id", F.col("quality").cast("double").alias("_q"))
    # the quality table has one row per catalog track: broadcast it, so the candidates (many rows
    # per popular track) are not shuffled by track, which skews, and keep their user partitioning
    cand = candidates_df.drop("quality").join(F.broadcast(q), "track_id", "left").withColumn(
        "quality", F.coalesce(F.col("_q"), F.lit(float(default_quality)))).drop("_q")
    passed = F.col("quality") >= F.lit(float(threshold))
    by_user = Window.partitionBy("user_id")
    below_order = Window.partitionBy("user_id", "_pass").orderBy(F.col(score_col).desc_nulls_last(),
                                                                  F.col("track_id"))
    ranked = (
        cand.withColumn("_pass", passed)
        .withColumn("_n_pass", F.sum(F.col("_pass").cast("int")).over(by_user))
        .withColumn("_r", F.row_number().over(below_order))
    )
    kept = ranked.where(
        F.col("_pass") | (F.col("_r") <= F.lit(int(min_per_user)) - F.col("_n_pass"))
    ).drop("_pass", "_n_pass", "_r")
    cols = [c for c in candidates_df.columns if c != "quality"] + ["quality"]
    log.info("quality filter defined (threshold=%s, min_per_user=%d)", threshold, min_per_user)
    return kept.select(*cols)
