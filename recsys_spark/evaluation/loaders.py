"""Load evaluation data sets into the interactions contract.

Every loader returns an :class:`EvalDataset` whose ``interactions`` DataFrame has the columns of
the project's interactions contract (``user_id string, track_id string, event_ts timestamp,
event_type string, weight double, event_date date``), so every method (peers, channels, the
pipeline) reads the same thing whatever the source.

Formats
-------
``movielens``
    ``ratings.csv`` of the current MovieLens releases (``userId,movieId,rating,timestamp`` with a
    header) or the tab-separated ``u.data`` of ML-100K (``user item rating timestamp``, no
    header); the layout is detected from the first line. ``path`` may be the file or its folder.
    Every rating is one interaction of weight 1 (``weight="rating"`` uses the rating instead).
``hetrec``
    Last.fm HetRec 2011 ``user_taggedartists.dat`` (``userID artistID tagID day month year``).
    As in EVALUATION.md an interaction is a (user, artist) pair dated by its *first* tag event
    at day precision, keeping tag events of years >= 2005, weighted by the number of tag events.
``csv``
    Any delimited file: ``sep``, ``user_col``, ``item_col``, ``time_col`` (unix seconds or an ISO
    date/time string, detected), optional ``weight_col`` (1.0 per row when absent).
``platform``
    The project's own Delta tables through :class:`recsys_spark.tables.Tables`: ``interactions``,
    ``tracks`` and, when present, ``track_embeddings``, ``prompt_embeddings``, ``user_prompts``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Dict, Optional

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

log = logging.getLogger(__name__)

FORMATS = ("platform", "movielens", "hetrec", "csv")

INTERACTION_COLUMNS = ["user_id", "track_id", "event_ts", "event_type", "weight", "event_date"]


@dataclass
class EvalDataset:
    """A data set ready for evaluation.

    Attributes
    ----------
    name : str
        Label used in reports (``movielens``, ``hetrec``, ``platform``, or a file name).
    interactions : DataFrame
        The interactions contract (see module docstring).
    tracks : DataFrame, optional
        ``track_id, creator_id, ...`` (platform; MovieLens: ``track_id, title, genre, tags`` from
        ``movies.csv``): the catalogue the ``pipeline`` method materialises; ``creator_id``
        enables creator diversity.
    track_embeddings : DataFrame, optional
        ``track_id, embedding array<float>`` (+ ``model_version``, ``created_at`` on the platform:
        the ``track_embeddings`` table as is): enables embedding diversity and the content channel.
    prompt_embeddings, user_prompts : DataFrame, optional
        Enable the prompt channel.
    source : str
        Where it was read from.
    extra : dict
        Anything else a method adapter may use (e.g. the ``Tables`` object on the platform).
    """

    name: str
    interactions: DataFrame
    tracks: Optional[DataFrame] = None
    track_embeddings: Optional[DataFrame] = None
    prompt_embeddings: Optional[DataFrame] = None
    user_prompts: Optional[DataFrame] = None
    source: str = ""
    extra: Dict[str, object] = field(default_factory=dict)

    @property
    def has_audio(self) -> bool:
        return self.track_embeddings is not None

    @property
    def has_prompts(self) -> bool:
        return self.prompt_embeddings is not None and self.user_prompts is not None


def _finish(df: DataFrame, event_type: str) -> DataFrame:
    """Cast to the interactions contract (strings for ids, double weight, event_date)."""
    return df.select(
        F.col("user_id").cast("string").alias("user_id"),
        F.col("track_id").cast("string").alias("track_id"),
        F.col("event_ts").cast("timestamp").alias("event_ts"),
        F.lit(event_type).alias("event_type"),
        F.col("weight").cast("double").alias("weight"),
        F.to_date(F.col("event_ts")).alias("event_date"),
    ).where(F.col("user_id").isNotNull() & F.col("track_id").isNotNull() & F.col("event_ts").isNotNull())


def _first_line(path: str) -> str:
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        return fh.readline()


def load_movielens(spark: SparkSession, path: str, weight: str = "one") -> EvalDataset:
    """MovieLens ``ratings.csv`` (current releases) or ML-100K ``u.data`` (auto-detected).

    Parameters
    ----------
    path : str
        The ratings file, or a folder holding ``ratings.csv`` or ``u.data``.
    weight : {"one", "rating"}
        Interaction weight: 1 per rating (default, the peers' protocol) or the rating value.

    Returns
    -------
    EvalDataset
        ``interactions`` with ``event_type = 'rating'``.
    """
    if os.path.isdir(path):
        for name in ("ratings.csv", "u.data"):
            if os.path.exists(os.path.join(path, name)):
                path = os.path.join(path, name)
                break
        else:
            raise FileNotFoundError(f"no ratings.csv or u.data under {path}")
    head = _first_line(path)
    if "\t" in head:  # ML-100K u.data: user \t item \t rating \t timestamp, no header
        schema = "user_id string, track_id string, rating double, ts long"
        raw = spark.read.csv(path, sep="\t", header=False, schema=schema)
        layout = "u.data"
    elif head.lower().startswith("userid"):
        raw = spark.read.csv(path, sep=",", header=True)
        raw = raw.select(*[F.col(c) for c in raw.columns[:4]]).toDF("user_id", "track_id", "rating", "ts")
        raw = raw.select("user_id", "track_id", F.col("rating").try_cast("double"), F.col("ts").try_cast("long"))
        layout = "ratings.csv"
    elif "::" in head:
        raise ValueError(f"{path}: the '::' layout of ML-1M/10M is not supported; convert to CSV and use --format csv")
    else:
        raise ValueError(f"{path}: not a MovieLens ratings.csv (header userId,...) or u.data (tab-separated)")
    if weight not in ("one", "rating"):
        raise ValueError("movielens weight must be 'one' or 'rating'")
    df = raw.select(
        "user_id", "track_id", F.timestamp_seconds("ts").alias("event_ts"),
        (F.lit(1.0) if weight == "one" else F.col("rating")).alias("weight"),
    )
    log.info("movielens: read %s (%s layout)", path, layout)
    tracks = _movielens_movies(spark, os.path.join(os.path.dirname(path), "movies.csv"))
    return EvalDataset("movielens", _finish(df, "rating"), tracks=tracks, source=path)


def _movielens_movies(spark: SparkSession, path: str) -> Optional[DataFrame]:
    """``track_id, title, genre, tags`` from ``movies.csv`` beside the ratings (None when absent).

    ``genre`` = the first listed genre, ``tags`` = all of them (lower case); nothing else is known
    (no creator, no statistics, no audio, no creation time).
    """
    if not os.path.exists(path) or not _first_line(path).lower().startswith("movieid"):
        return None
    raw = spark.read.csv(path, header=True, quote='"', escape='"')
    genres = F.when(F.col("genres") == "(no genres listed)", F.array().cast("array<string>")) \
        .otherwise(F.split(F.lower(F.col("genres")), r"\|"))
    out = raw.select(F.col("movieId").cast("string").alias("track_id"), F.col("title"), genres.alias("tags"))
    return out.select("track_id", "title", F.when(F.size("tags") > 0, F.col("tags")[0]).alias("genre"), "tags")


def load_hetrec(spark: SparkSession, path: str, min_year: int = 2005) -> EvalDataset:
    """Last.fm HetRec 2011 ``user_taggedartists.dat`` as (user, artist) interactions.

    Each (user, artist) pair becomes one interaction dated by its first tag event (day
    precision, midnight UTC), counting only tag events of ``year >= min_year``, with weight = the
    number of those tag events.

    Parameters
    ----------
    path : str
        ``user_taggedartists.dat`` or the folder holding it.
    min_year : int
        Tag events of earlier years are dropped (the file has a few with bogus years).
    """
    if os.path.isdir(path):
        path = os.path.join(path, "user_taggedartists.dat")
    raw = spark.read.csv(path, sep="\t", header=True)
    expected = ["userID", "artistID", "tagID", "day", "month", "year"]
    if raw.columns[:6] != expected:
        raise ValueError(f"{path}: expected HetRec columns {expected}, got {raw.columns}")
    raw = raw.select("userID", "artistID", *[F.col(c).try_cast("int").alias(c) for c in ("day", "month", "year")])
    ev = raw.where(F.col("year") >= min_year).select(
        F.col("userID").alias("user_id"), F.col("artistID").alias("track_id"),
        F.to_date(F.try_make_timestamp("year", "month", "day", F.lit(0), F.lit(0), F.lit(0))).alias("d"),
    ).where(F.col("d").isNotNull())
    pairs = ev.groupBy("user_id", "track_id").agg(
        F.min("d").alias("d"), F.count(F.lit(1)).cast("double").alias("weight"))
    df = pairs.select("user_id", "track_id", F.col("d").cast("timestamp").alias("event_ts"), "weight")
    log.info("hetrec: read %s (years >= %d, one interaction per user-artist pair)", path, min_year)
    return EvalDataset("hetrec", _finish(df, "tag"), source=path)


def load_csv(spark: SparkSession, path: str, sep: str = ",", user_col: str = "user_id",
             item_col: str = "item_id", time_col: str = "timestamp", weight_col: Optional[str] = None,
             header: bool = True, name: Optional[str] = None) -> EvalDataset:
    """Any delimited file of interactions.

    Parameters
    ----------
    sep : str
        Field separator (``\\t`` accepted for a tab).
    user_col, item_col, time_col : str
        Column names (or ``_c0``, ``_c1``... when ``header=False``).
    time_col
        Unix seconds (integers or decimals; values above 1e11 are read as milliseconds) or an ISO
        date / date-time string; detected per value.
    weight_col : str, optional
        Numeric weight; 1.0 per row when omitted.
    """
    if sep in ("\\t", "tab"):
        sep = "\t"
    raw = spark.read.csv(path, sep=sep, header=header, inferSchema=False)
    missing = [c for c in (user_col, item_col, time_col, weight_col) if c and c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; columns are {raw.columns}")
    t = F.trim(F.col(time_col).cast("string"))
    num = t.try_cast("double")
    ts = F.when(num.isNotNull() & (num > 1e11), F.timestamp_seconds((num / 1000.0))) \
        .when(num.isNotNull(), F.timestamp_seconds(num)) \
        .otherwise(t.try_cast("timestamp"))
    w = F.col(weight_col).try_cast("double") if weight_col else F.lit(1.0)
    df = raw.select(F.col(user_col).alias("user_id"), F.col(item_col).alias("track_id"),
                    ts.alias("event_ts"), w.alias("weight"))
    df = df.where(F.col("weight").isNotNull() & (F.col("weight") >= 0))
    log.info("csv: read %s (sep %r, user %s, item %s, time %s, weight %s)", path, sep, user_col, item_col,
             time_col, weight_col or "1.0")
    return EvalDataset(name or os.path.splitext(os.path.basename(path))[0], _finish(df, "interaction"), source=path)


def load_platform(spark: SparkSession, tables) -> EvalDataset:
    """The project's own Delta tables (``interactions``, ``tracks`` and the optional embeddings).

    Parameters
    ----------
    tables : recsys_spark.tables.Tables
    """
    inter = tables.read("interactions").select(*INTERACTION_COLUMNS)
    tracks = tables.read("tracks") if tables.exists("tracks") else None
    emb = tables.read("track_embeddings") if tables.exists("track_embeddings") else None
    pemb = tables.read("prompt_embeddings") if tables.exists("prompt_embeddings") else None
    prompts = tables.read("user_prompts") if tables.exists("user_prompts") else None
    return EvalDataset("platform", inter, tracks=tracks, track_embeddings=emb, prompt_embeddings=pemb,
                       user_prompts=prompts, source=tables.warehouse, extra={"tables": tables})


def load_dataset(spark: SparkSession, fmt: str, path: Optional[str] = None, tables=None,
                 **options) -> EvalDataset:
    """Dispatch on ``fmt`` (one of :data:`FORMATS`); ``options`` go to the format's loader."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "platform":
        if tables is None:
            raise ValueError("format 'platform' needs a Tables object")
        return load_platform(spark, tables)
    if not path:
        raise ValueError(f"format {fmt!r} needs a path")
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    if fmt == "movielens":
        return load_movielens(spark, path, **options)
    if fmt == "hetrec":
        return load_hetrec(spark, path, **options)
    return load_csv(spark, path, **options)


INTERACTIONS_SCHEMA = T.StructType([
    T.StructField("user_id", T.StringType()), T.StructField("track_id", T.StringType()),
    T.StructField("event_ts", T.TimestampType()), T.StructField("event_type", T.StringType()),
    T.StructField("weight", T.DoubleType()), T.StructField("event_date", T.DateType()),
])
