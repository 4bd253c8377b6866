"""User history for week W: the seeds (last-n distinct tracks with weekly mixing) and the heard set.

Rules (DESIGN.md):
- Only interactions strictly before W count.
- Interactions are first aggregated per (user, track): ``weight`` = sum of weights, ``last_ts`` =
  latest event, ``n_events``. A track counts as "this week" when its latest event is in
  ``[W-7d, W)``. Seeds are distinct tracks: a track played ten times takes one slot, with ten
  times the weight.
- A user with this-week activity gets ``round(last_n * this_week_share)`` seeds from this week and
  the rest from before; each side back-fills the other when short. A user without this-week
  activity gets their last ``last_n`` tracks.
- Zero-weight interactions (skips) are kept in the heard set but never used as seeds.

Everything is Spark window functions: no per-user Python, nothing collected to the driver.
"""

from __future__ import annotations

import datetime as dt
import logging
import math

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from .weeks import require_monday, this_week_window

log = logging.getLogger(__name__)


def before_week(interactions: DataFrame, week: dt.date) -> DataFrame:
    """Interactions strictly before week ``week`` (Monday 00:00 UTC)."""
    _, end = this_week_window(week)
    return interactions.where(F.col("event_ts") < F.lit(end))


def heard_tracks(interactions: DataFrame, week: dt.date) -> DataFrame:
    """``user_id, track_id``: every track the user interacted with before ``week`` (distinct)."""
    return before_week(interactions, week).select("user_id", "track_id").distinct()


def aggregate_user_tracks(interactions: DataFrame) -> DataFrame:
    """``user_id, track_id, weight, last_ts, n_events`` summed over events."""
    return interactions.groupBy("user_id", "track_id").agg(
        F.sum("weight").alias("weight"),
        F.max("event_ts").alias("last_ts"),
        F.count(F.lit(1)).alias("n_events"),
    )


def build_history(
    interactions: DataFrame,
    week: dt.date,
    last_n: int = 50,
    this_week_share: float = 0.5,
    half_life_days: float = 21.0,
) -> DataFrame:
    """Seeds of every user with history before ``week``.

    Parameters
    ----------
    interactions : DataFrame
        ``user_id, track_id, event_ts, event_type, weight``.
    week : datetime.date
        The Monday of the week being built.
    last_n : int
        Seeds per user.
    this_week_share : float
        Share of seeds from ``[W-7d, W)`` when the user was active then.
    half_life_days : float
        Half life of the ``recency`` weight.

    Returns
    -------
    DataFrame
        ``user_id string, track_id string, weight double, last_ts timestamp, n_events long,
        is_this_week boolean, seed_rank int, recency double`` with at most ``last_n`` rows per
        user; ``seed_rank`` 1 is the most recent seed.

    Examples
    --------
    >>> seeds = build_history(interactions, dt.date(2026, 11, 23), last_n=50)  # doctest: +SKIP
    """
    w = require_monday(week)
    if last_n <= 0:
        raise ValueError("last_n must be positive")
    tw_start, end = this_week_window(w)
    n_this = int(math.floor(last_n * this_week_share + 0.5))

    agg = aggregate_user_tracks(before_week(interactions, w)).where(F.col("weight") > 0)
    agg = agg.withColumn("is_this_week", F.col("last_ts") >= F.lit(tw_start))

    by_side = Window.partitionBy("user_id", "is_this_week").orderBy(
        F.col("last_ts").desc(), F.col("weight").desc(), F.col("track_id"))
    by_user_side = Window.partitionBy("user_id", "is_this_week")
    by_user = Window.partitionBy("user_id")
    ranked = (
        agg.withColumn("side_rank", F.row_number().over(by_side))
        .withColumn("side_count", F.count(F.lit(1)).over(by_user_side))
        .withColumn("n_tw", F.sum(F.when(F.col("is_this_week"), 1).otherwise(0)).over(by_user))
        .withColumn("n_old", F.sum(F.when(F.col("is_this_week"), 0).otherwise(1)).over(by_user))
    )
    # quota_tw = min(n_tw, max(n_this, last_n - n_old)); quota_old = min(n_old, last_n - quota_tw)
    quota_tw = F.least(F.col("n_tw"), F.greatest(F.lit(n_this), F.lit(last_n) - F.col("n_old")))
    quota_tw = F.when(F.col("n_tw") == 0, F.lit(0)).otherwise(quota_tw)
    quota_old = F.least(F.col("n_old"), F.lit(last_n) - quota_tw)
    kept = ranked.where(
        (F.col("is_this_week") & (F.col("side_rank") <= quota_tw))
        | (~F.col("is_this_week") & (F.col("side_rank") <= quota_old))
    )
    age_days = (F.lit(end).cast("long") - F.col("last_ts").cast("long")) / 86400.0
    decay = math.log(2.0) / max(half_life_days, 1e-9)
    seeds = (
        kept.withColumn(
            "seed_rank",
            F.row_number().over(Window.partitionBy("user_id").orderBy(
                F.col("last_ts").desc(), F.col("weight").desc(), F.col("track_id"))).cast("int"),
        )
        .withColumn("recency", F.exp(-F.lit(decay) * F.greatest(age_days, F.lit(0.0))))
        .select("user_id", "track_id", F.col("weight").cast("double"), "last_ts",
                F.col("n_events").cast("long"), "is_this_week", "seed_rank", "recency")
    )
    return seeds


def label_positives(interactions: DataFrame, start: dt.date, end: dt.date) -> DataFrame:
    """``user_id, track_id``: plays with a positive summed weight in [start, end) of tracks the user
    had not heard before ``start`` (a Discover Weekly hit)."""
    s, e = dt.datetime.combine(start, dt.time()), dt.datetime.combine(end, dt.time())
    window = (interactions.where((F.col("event_ts") >= F.lit(s)) & (F.col("event_ts") < F.lit(e)))
              .groupBy("user_id", "track_id").agg(F.sum(F.col("weight").cast("double")).alias("w"))
              .where(F.col("w") > 0).select("user_id", "track_id"))
    before = interactions.where(F.col("event_ts") < F.lit(s)).select("user_id", "track_id")
    return window.join(before, ["user_id", "track_id"], "left_anti")
