"""The contract every recall channel follows, and the helpers that enforce it.

A recall channel is an Estimator / Model pair in the style of ``pyspark.ml``: the Estimator's
``fit(interactions)`` returns a :class:`RecallModel`, whose ``recommend(seeds, heard, n)`` returns
candidates with the schema :data:`CANDIDATE_SCHEMA`:

=============== ======= ===========================================================
column          type    meaning
=============== ======= ===========================================================
user_id         string  the user
track_id        string  the candidate track (never in the user's ``heard`` set)
channel         string  the channel's name (``RecallModel.channel``)
score           double  channel score, larger is better, never NaN / null; scores of
                        different channels are not comparable (fusion normalises them)
rank            int     1 = best, contiguous per user, at most ``n`` rows per user
seed_track_id   string  the seed that contributed most (nullable; explanations)
=============== ======= ===========================================================

A channel only has to produce raw scored pairs ``(user_id, track_id, score[, seed_track_id])``
and hand them to :func:`finalize_candidates`, which drops NaN / null scores, removes heard
tracks (an anti join, never a driver-side set), keeps the top ``n`` per user with a window
(ties broken by ``track_id`` so the output is deterministic) and adds ``rank`` and ``channel``.

:func:`user_item_matrix` turns raw ``interactions`` (many rows per user-track pair) into one
weighted entry per pair, the input of the collaborative channels.
"""

from __future__ import annotations

import logging
import time
from typing import Optional

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from .. import schema as C

log = logging.getLogger(__name__)

CANDIDATE_SCHEMA = T.StructType([
    T.StructField(C.USER, T.StringType(), False),
    T.StructField(C.TRACK, T.StringType(), False),
    T.StructField(C.CHANNEL, T.StringType(), False),
    T.StructField(C.SCORE, T.DoubleType(), False),
    T.StructField(C.RANK, T.IntegerType(), False),
    T.StructField(C.SEED, T.StringType(), True),
])

WEIGHTINGS = ("log", "raw", "binary")


def empty_candidates(spark: SparkSession) -> DataFrame:
    """An empty DataFrame with :data:`CANDIDATE_SCHEMA` (a channel that has nothing to say)."""
    return spark.createDataFrame([], CANDIDATE_SCHEMA)


def transform_weight(col, weighting: str):
    """Column expression mapping a summed interaction weight to a preference value.

    ``log``: ``log1p(w)``; ``raw``: ``w``; ``binary``: 1 for ``w > 0``.
    """
    if weighting == "log":
        return F.log1p(col)
    if weighting == "raw":
        return col.cast("double")
    if weighting == "binary":
        return F.when(col > 0, F.lit(1.0)).otherwise(F.lit(0.0))
    raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")


def user_item_matrix(interactions: DataFrame, weighting: str = "log") -> DataFrame:
    """One row per (user, track) with a positive aggregated weight.

    Parameters
    ----------
    interactions : DataFrame
        ``user_id, track_id, event_ts, weight`` (the interactions contract; other columns ignored).
    weighting : {"log", "raw", "binary"}
        Applied to the per-pair sum of weights (see :func:`transform_weight`).

    Returns
    -------
    DataFrame
        ``user_id string, track_id string, value double (> 0), weight double (the raw sum),
        n_events long, last_ts timestamp``. Pairs whose weights sum to 0 (only skips) are dropped:
        they carry no positive preference.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    agg = (
        interactions.groupBy(C.USER, C.TRACK)
        .agg(
            F.sum(F.col(C.WEIGHT).cast("double")).alias("weight"),
            F.count(F.lit(1)).alias("n_events"),
            F.max(C.TS).alias("last_ts"),
        )
        .where(F.col("weight") > 0)
    )
    return agg.select(
        C.USER, C.TRACK, transform_weight(F.col("weight"), weighting).alias("value"),
        "weight", "n_events", "last_ts",
    )


def finalize_candidates(
    scored: DataFrame,
    heard: Optional[DataFrame],
    n: int,
    channel: str,
) -> DataFrame:
    """Enforce the candidate contract on raw scored pairs.

    Parameters
    ----------
    scored : DataFrame
        ``user_id, track_id, score`` and optionally ``seed_track_id``; at most one row per
        (user, track) is expected (callers aggregate first).
    heard : DataFrame or None
        ``user_id, track_id``: tracks each user already interacted with; removed with a left anti
        join. ``None`` excludes nothing.
    n : int
        Maximum candidates per user.
    channel : str
        Value of the ``channel`` column.

    Returns
    -------
    DataFrame
        :data:`CANDIDATE_SCHEMA`: the top ``n`` per user by ``score`` descending, ties broken by
        ``track_id`` ascending, ``rank`` 1..n contiguous; rows with a null or NaN score dropped.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if C.SEED not in scored.columns:
        scored = scored.withColumn(C.SEED, F.lit(None).cast("string"))
    df = scored.select(
        C.USER, C.TRACK, F.col(C.SCORE).cast("double").alias(C.SCORE), F.col(C.SEED).cast("string").alias(C.SEED)
    ).where(F.col(C.SCORE).isNotNull() & ~F.isnan(F.col(C.SCORE)))
    if heard is not None:
        df = df.join(heard.select(C.USER, C.TRACK), on=[C.USER, C.TRACK], how="left_anti")
    w = Window.partitionBy(C.USER).orderBy(F.col(C.SCORE).desc(), F.col(C.TRACK).asc())
    # row_number() <= n right after the window lets Spark (>= 3.5) apply a partial per-user limit
    # before the shuffle (WindowGroupLimit), so heavy users do not ship every scored pair.
    ranked = df.withColumn(C.RANK, F.row_number().over(w)).where(F.col(C.RANK) <= n)
    out = ranked.select(
        C.USER, C.TRACK, F.lit(channel).alias(C.CHANNEL), C.SCORE, F.col(C.RANK).cast("int").alias(C.RANK), C.SEED
    )
    return out


class RecallModel:
    """Base class of fitted recall channels (the contract; see the module docstring).

    Subclasses set :attr:`channel` and implement :meth:`recommend`, :meth:`save` and the class
    method :meth:`load`. A contract test (``tests/recall/test_recall_contract.py``) runs the same
    checks against every channel model.
    """

    #: value of the ``channel`` column of this model's candidates
    channel: str = "recall"

    def recommend(self, seeds: DataFrame, heard: Optional[DataFrame], n: int = 200) -> DataFrame:
        """Candidates for every user in ``seeds`` (schema :data:`CANDIDATE_SCHEMA`).

        Parameters
        ----------
        seeds : DataFrame
            At least ``user_id``; seed-based channels also read ``track_id, weight, recency``.
        heard : DataFrame or None
            ``user_id, track_id`` to exclude.
        n : int
            Maximum candidates per user.
        """
        raise NotImplementedError

    def save(self, path: str) -> None:
        """Persist the model under ``path`` (any Hadoop-compatible URI); overwrites."""
        raise NotImplementedError

    @classmethod
    def load(cls, spark: SparkSession, path: str) -> "RecallModel":
        """Load a model written by :meth:`save`."""
        raise NotImplementedError


# -- small shared utilities -------------------------------------------------------------------


def write_metadata(spark: SparkSession, path: str, meta: dict) -> None:
    """Write a small JSON metadata document next to a model (works on any Hadoop path)."""
    import json

    spark.createDataFrame([(json.dumps(meta, sort_keys=True),)], "json string").coalesce(1) \
        .write.mode("overwrite").text(path)


def read_metadata(spark: SparkSession, path: str) -> dict:
    """Read what :func:`write_metadata` wrote."""
    import json

    row = spark.read.text(path).first()
    if row is None:
        raise FileNotFoundError(f"no model metadata under {path}")
    return json.loads(row[0])


class Timer:
    """Context manager logging a step's wall time: ``with Timer("fit neighbours"): ...``."""

    def __init__(self, what: str, logger: logging.Logger = log):
        self.what = what
        self.logger = logger
        self.seconds = 0.0

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._t0
        self.logger.info("%s: %.2fs", self.what, self.seconds)
        return False
