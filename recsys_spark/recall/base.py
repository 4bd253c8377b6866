"""The contract every recall channel follows, and the helpers that enforce it.

A recall channel is an Estimator / Model pair in the style of ``pyspark.ml``:

* :class:`ChannelInputs` holds everything any channel may read for week W (lazy DataFrames:
  ``tracks``, ``interactions``, ``prompts``, ``seeds``, ``heard``, ``users``, the embedding tables
  and their ``model_version``). Every field but ``spark`` is optional; a channel says which ones it
  needs (:attr:`RecallChannel.needs`) and :meth:`RecallChannel.missing_inputs` gives the reason to
  skip it when one is absent.
* :class:`RecallChannel` (the Estimator) is built from its config dataclass
  (:meth:`RecallChannel.from_conf`; the config dataclasses of :mod:`recsys_spark.config` are the one
  source of default hyper-parameters, constructor defaults are read from them) and ``fit(inputs)``
  returns a :class:`RecallChannelModel`.
* :class:`RecallChannelModel` (the Model): ``recommend(inputs, n)`` returns candidates with the
  schema :data:`CANDIDATE_SCHEMA` for the users of ``inputs`` (see :meth:`RecallChannelModel.recommend`);
  ``save(path)`` / ``load(spark, path)`` are the same for every channel (a JSON metadata document
  naming the channel and its parameters, plus the channel's own state).

The channels are registered by name in :mod:`recsys_spark.recall.registry`.

=============== ======= ===========================================================
column          type    meaning
=============== ======= ===========================================================
user_id         string  the user
track_id        string  the candidate track (never in the user's ``heard`` set)
channel         string  the channel's name (``RecallChannelModel.channel``)
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

import dataclasses
import datetime as dt
import inspect
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, Optional, Tuple

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from .. import schema as C
from ..common import read_metadata, write_metadata

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




# -- the channel contract ----------------------------------------------------------------------


@dataclass
class ChannelInputs:
    """What any recall channel may read for week W (all DataFrames lazily evaluated).

    Attributes
    ----------
    spark : SparkSession
    week : datetime.date, optional
        Week start W; every input holds only what happened before W.
    tracks : DataFrame, optional
        The catalog (``tracks`` table columns).
    interactions : DataFrame, optional
        The interactions contract (``user_id, track_id, event_ts, weight``, ...).
    prompts : DataFrame, optional
        ``prompt_id, user_id, created_at`` (the ``user_prompts`` table).
    seeds : DataFrame, optional
        The seeds contract (``user_id, track_id, weight, recency, seed_rank``).
    heard : DataFrame, optional
        ``user_id, track_id`` never to recommend.
    users : DataFrame, optional
        ``user_id`` of the users to serve. The other user-keyed inputs (seeds, prompts, heard)
        hold no other users (:meth:`for_users` restricts them); ``None`` = every user in them.
    track_embeddings, prompt_embeddings : DataFrame, optional
        The CLAP embedding tables (``None`` when embeddings are disabled or the data set has none).
    model_version : str, optional
        The CLAP model version to read from the embedding tables.
    history : dict, optional
        The run's history settings (:func:`recsys_spark.history.build_history` keyword arguments
        ``this_week_share``, ``half_life_days``) for channels that rebuild seeds as of earlier weeks
        to train on; ``None``: that function's defaults.
    """

    spark: SparkSession
    week: Optional[dt.date] = None
    tracks: Optional[DataFrame] = None
    interactions: Optional[DataFrame] = None
    prompts: Optional[DataFrame] = None
    seeds: Optional[DataFrame] = None
    heard: Optional[DataFrame] = None
    users: Optional[DataFrame] = None
    track_embeddings: Optional[DataFrame] = None
    prompt_embeddings: Optional[DataFrame] = None
    model_version: Optional[str] = None
    history: Optional[Dict[str, Any]] = None

    def for_users(self, users: DataFrame) -> "ChannelInputs":
        """A copy serving only ``users`` (``user_id``): seeds and prompts restricted with a semi join.

        ``heard`` and ``interactions`` are kept whole (the models train on everyone; excluding
        other users' heard tracks costs nothing)."""
        u = users.select(C.USER).distinct()

        def only(df):
            return None if df is None else df.join(u, C.USER, "left_semi")

        return dataclasses.replace(self, users=u, seeds=only(self.seeds), prompts=only(self.prompts))

    def served_users(self, fallback: Optional[DataFrame] = None) -> Optional[DataFrame]:
        """``user_id`` of the users to serve: ``users``, else the distinct users of ``fallback``."""
        if self.users is not None:
            return self.users.select(C.USER).distinct()
        return None if fallback is None else fallback.select(C.USER).distinct()


class ChannelUnavailable(ValueError):
    """A channel cannot run on these inputs (e.g. no embedding of the requested model version);
    the message is the reason to log. Callers skip the channel instead of failing."""


_NOT_PARAMS = ("enabled", "candidates")  # config fields that are not estimator parameters
#: how a missing input is named in a skip reason
INPUT_NAMES = {"tracks": "track catalog (tracks)", "track_embeddings": "audio embeddings (track_embeddings)",
               "prompt_embeddings": "text embeddings (prompt_embeddings)", "prompts": "user prompts (prompts)"}


class RecallChannel(ABC):
    """Estimator of a recall channel (see the module docstring).

    Subclasses set :attr:`name`, :attr:`conf_class` (the config dataclass whose field defaults are
    the constructor's defaults), :attr:`needs`, and implement :meth:`fit` and :meth:`params`.
    """

    #: channel name (the ``channel`` column, the registry key, ``recall.<name>`` stage)
    name: ClassVar[str]
    #: config dataclass of the channel (:mod:`recsys_spark.config`)
    conf_class: ClassVar[type]
    #: :class:`ChannelInputs` fields that ``fit`` and ``recommend`` read (``heard`` is optional)
    needs: ClassVar[Tuple[str, ...]] = ()

    @classmethod
    def from_conf(cls, conf: Any = None, seed: int = 0, **overrides) -> "RecallChannel":
        """Build from the channel's config dataclass (``None``: its defaults).

        Every field of ``conf`` except ``enabled`` and ``candidates`` (the caller's ``n``) is a
        constructor parameter of the same name; ``seed`` is the run's seed unless the conf has its
        own ``seed`` field; ``overrides`` (constructor parameters) win over both.
        """
        conf = cls.conf_class() if conf is None else conf
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        kwargs: Dict[str, Any] = {"seed": seed} if "seed" in accepted else {}
        for f in dataclasses.fields(conf):
            if f.name not in _NOT_PARAMS and f.name in accepted:
                kwargs[f.name] = getattr(conf, f.name)
        unknown = set(overrides) - accepted
        if unknown:
            raise TypeError(f"{cls.__name__} has no parameter(s) {sorted(unknown)}; known: {sorted(accepted)}")
        kwargs.update(overrides)
        return cls(**kwargs)

    def missing_inputs(self, inputs: ChannelInputs) -> Optional[str]:
        """Why this channel cannot run on ``inputs`` (``None``: it can). Cheap: no Spark job."""
        absent = list(dict.fromkeys(INPUT_NAMES.get(f, f) for f in self.needs if getattr(inputs, f) is None))
        return f"no {', '.join(absent)}" if absent else None

    @abstractmethod
    def params(self) -> Dict[str, Any]:
        """The estimator's parameters (saved with the model)."""

    @abstractmethod
    def fit(self, inputs: ChannelInputs) -> "RecallChannelModel":
        """Fit on ``inputs``; raises :class:`ChannelUnavailable` when they hold nothing to fit on."""


class RecallChannelModel(ABC):
    """A fitted recall channel: one ``recommend`` signature and one save / load for all channels.

    Subclasses set :attr:`channel`, hold ``params`` (a dict) and implement :meth:`recommend`,
    :meth:`_save_state` and :meth:`_load_state`. A contract test
    (``tests/recall/test_recall_contract.py``) runs the same checks on every channel.
    """

    #: value of the ``channel`` column of this model's candidates
    channel: ClassVar[str]
    params: Dict[str, Any]

    @abstractmethod
    def recommend(self, inputs: ChannelInputs, n: int) -> DataFrame:
        """Candidates for the users of ``inputs`` (:data:`CANDIDATE_SCHEMA`): at most ``n`` per user,
        ranks 1..k contiguous, never a track of ``inputs.heard``. Users the channel knows nothing
        about (no seeds, no factors, no prompts) get no rows."""

    def unpersist(self) -> None:
        """Release cached state (no-op unless the model caches)."""

    # -- one save / load for every channel ------------------------------------------------------
    def save(self, path: str) -> None:
        """Persist under ``path`` (any Hadoop-compatible URI; overwrites): the channel's state and
        ``metadata`` (``{"class", "channel", "params"}``)."""
        p = path.rstrip("/")
        self._save_state(p)
        write_metadata(self._spark(), f"{p}/metadata",
                       {"class": type(self).__name__, "channel": self.channel, "params": self.params})

    @classmethod
    def load(cls, spark: SparkSession, path: str) -> "RecallChannelModel":
        """Load a model written by :meth:`save` (refuses another channel's model)."""
        p = path.rstrip("/")
        meta = read_metadata(spark, f"{p}/metadata")
        if meta.get("class") != cls.__name__:
            raise ValueError(f"{path} does not hold a {cls.__name__} (found {meta.get('class')})")
        return cls._load_state(spark, p, meta["params"])

    @abstractmethod
    def _spark(self) -> SparkSession:
        """The session the model's state lives in."""

    @abstractmethod
    def _save_state(self, path: str) -> None:
        """Write the channel's own state under ``path`` (not ``path/metadata``)."""

    @classmethod
    @abstractmethod
    def _load_state(cls, spark: SparkSession, path: str, params: Dict[str, Any]) -> "RecallChannelModel":
        """Read what :meth:`_save_state` wrote."""

