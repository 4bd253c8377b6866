"""The global temporal split of EVALUATION.md, in Spark.

1. cutoff = the 90th percentile of ``event_ts`` over all interactions;
2. train = interactions strictly before the cutoff, summed per (user, track);
3. truth of a user = tracks the user touched at or after the cutoff with a positive weight (a
   platform skip, weight 0, is not a positive) that are *not* in the user's train history;
4. test users = users with train history and at least one truth track.

:func:`split_at` is the same with a given cutoff and an optional end (the weekly backtest uses
``[W, W+7d)`` as the truth window).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Optional

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

log = logging.getLogger(__name__)


@dataclass
class Split:
    """Result of a temporal split.

    Attributes
    ----------
    cutoff : datetime.datetime
        First instant of the test period (naive UTC).
    end : datetime.datetime or None
        End (exclusive) of the test period; ``None`` = open.
    train_events : DataFrame
        Raw interactions before the cutoff (the interactions contract): what channels and the
        pipeline fit on and build seeds from.
    train : DataFrame
        ``user_id, track_id, weight double (sum), last_ts timestamp, n_events long``: one row per
        (user, track) pair before the cutoff.
    truth : DataFrame
        ``user_id, track_id``: distinct, test users only, never a train pair.
    test_users : DataFrame
        ``user_id, n_truth long``.
    """

    cutoff: dt.datetime
    end: Optional[dt.datetime]
    train_events: DataFrame
    train: DataFrame
    truth: DataFrame
    test_users: DataFrame

    def cache(self) -> "Split":
        for name in ("train_events", "train", "truth", "test_users"):
            setattr(self, name, getattr(self, name).cache())
        return self


def temporal_cutoff(interactions: DataFrame, quantile: float = 0.9, accuracy: int = 1_000_000) -> dt.datetime:
    """The ``quantile`` of ``event_ts`` (``percentile_approx``; exact for up to ``accuracy`` rows).

    ``percentile_approx`` returns an observed timestamp (the smallest value whose rank reaches the
    quantile), so with fewer than ``accuracy`` distinct-ish rows it is the exact lower quantile.
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError("quantile must be in (0, 1)")
    row = interactions.agg(F.percentile_approx("event_ts", quantile, accuracy).alias("c")).first()
    if row is None or row["c"] is None:
        raise ValueError("cannot split an empty interactions DataFrame")
    return row["c"]


def split_at(interactions: DataFrame, cutoff: dt.datetime, end: Optional[dt.datetime] = None) -> Split:
    """Split ``interactions`` at ``cutoff``; truth from ``[cutoff, end)`` (open when ``end`` is None).

    Parameters
    ----------
    interactions : DataFrame
        ``user_id, track_id, event_ts, weight`` (+ the other contract columns, kept in
        ``train_events``).
    cutoff, end : datetime.datetime
        Naive UTC instants.

    Returns
    -------
    Split
    """
    t0 = time.perf_counter()
    ts = F.col("event_ts")
    train_events = interactions.where(ts < F.lit(cutoff))
    test_events = interactions.where(ts >= F.lit(cutoff))
    if end is not None:
        test_events = test_events.where(ts < F.lit(end))
    train = train_events.groupBy("user_id", "track_id").agg(
        F.sum(F.col("weight").cast("double")).alias("weight"),
        F.max("event_ts").alias("last_ts"),
        F.count(F.lit(1)).alias("n_events"),
    )
    train_users = train.select("user_id").distinct()
    # a skip (weight 0 on the platform) is not a positive: it never makes a truth item
    truth = (
        test_events.where(F.col("weight") > 0).select("user_id", "track_id").distinct()
        .join(train.select("user_id", "track_id"), ["user_id", "track_id"], "left_anti")
        .join(train_users, "user_id", "left_semi")
    )
    test_users = truth.groupBy("user_id").agg(F.count(F.lit(1)).alias("n_truth"))
    log.info("split at %s (end %s) planned in %.2fs", cutoff, end, time.perf_counter() - t0)
    return Split(cutoff, end, train_events, train, truth, test_users)


def temporal_split(interactions: DataFrame, quantile: float = 0.9, accuracy: int = 1_000_000) -> Split:
    """The global temporal split of EVALUATION.md (cutoff at the ``quantile`` of ``event_ts``)."""
    cutoff = temporal_cutoff(interactions, quantile, accuracy)
    log.info("temporal split: cutoff = %.0f%% quantile of event_ts = %s", quantile * 100, cutoff)
    return split_at(interactions, cutoff)
