"""Taste-aware popularity: the baseline channel and the back-fill source (the ``popular`` channel).

A track's popularity is ``log1p(plays) + 2 log1p(upvotes) + 3 log1p(comments)`` (the catalog's
platform counts), normalised by the catalog's maximum. A track without any count in the catalog
(every track of a public data set's item table, a platform whose statistics job has not run yet)
gets ``log1p(plays)`` with ``plays`` = its positive-weight events in the interactions before W
(:func:`track_popularity` with ``interactions``), so the channel and the back-fill never rank a
catalog of nulls by track id. A user's taste is the share of their seed weight
(weight x recency) per genre; the channel offers the most popular unheard tracks of the user's
``top_genres`` genres (each genre's ``per_genre_pool`` most popular), scored
``taste_share x popularity``; users without seeds get the platform's ``global_pool`` top tracks
(scored ``0.1 x popularity``). Rows per user are bounded by ``top_genres x per_genre_pool``
(never users x catalog).

:class:`PopularityRecall` (Estimator) fits a :class:`PopularityModel` holding every track's
normalised popularity and genre (catalog-sized).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..common import top_n_per_user
from ..config import PopularityConf
from .base import ChannelInputs, RecallChannel, RecallChannelModel, finalize_candidates

CHANNEL = "popular"
_D = PopularityConf()
#: cold users' pool (not a tuned setting: users without seeds are few and back-filled anyway)
GLOBAL_POOL = 200
COUNT_COLUMNS = ("play_count", "upvote_count", "comment_count")

POPULARITY_SCHEMA = T.StructType([
    T.StructField("track_id", T.StringType(), False),
    T.StructField("genre", T.StringType(), False),
    T.StructField("popularity", T.DoubleType(), False),
    T.StructField("pop_norm", T.DoubleType(), False),
])


def _col(df: DataFrame, name: str, dtype: str) -> F.Column:
    return F.col(name).cast(dtype) if name in df.columns else F.lit(None).cast(dtype)


def track_popularity(tracks: DataFrame, interactions: Optional[DataFrame] = None) -> DataFrame:
    """``track_id, genre, creator_id, popularity`` (higher is more popular).

    Tracks with a catalog count use the catalog's counts (module docstring); tracks without any
    use ``log1p`` of their positive-weight events in ``interactions`` (0 when ``interactions`` is
    None). Missing ``genre`` is ``"unknown"``; missing ``creator_id`` is null.
    """
    counts = [_col(tracks, c, "long") for c in COUNT_COLUMNS]
    catalog = (F.log1p(F.coalesce(counts[0], F.lit(0)).cast("double"))
               + 2.0 * F.log1p(F.coalesce(counts[1], F.lit(0)).cast("double"))
               + 3.0 * F.log1p(F.coalesce(counts[2], F.lit(0)).cast("double")))
    has_counts = F.coalesce(*counts).isNotNull()
    if interactions is not None:
        plays = (interactions.where(F.col("weight") > 0).groupBy("track_id")
                 .agg(F.count(F.lit(1)).cast("double").alias("_plays")))
        tracks = tracks.join(plays, "track_id", "left")
        fallback = F.log1p(F.coalesce(F.col("_plays"), F.lit(0.0)))
    else:
        fallback = F.lit(0.0)
    return tracks.select("track_id", F.coalesce(_col(tracks, "genre", "string"), F.lit("unknown")).alias("genre"),
                         _col(tracks, "creator_id", "string").alias("creator_id"),
                         F.when(has_counts, catalog).otherwise(fallback).cast("double").alias("popularity"))


class PopularityRecall(RecallChannel):
    """Estimator of the ``popular`` channel (module docstring).

    Parameters
    ----------
    top_genres : int
        Genres of the user's taste that get candidates.
    per_genre_pool : int
        Most popular tracks per genre in the pool.
    global_pool : int
        Platform top tracks offered to users without seeds.
    """

    name = CHANNEL
    conf_class = PopularityConf
    needs = ("tracks", "seeds")

    def __init__(self, top_genres: int = _D.top_genres, per_genre_pool: int = _D.per_genre_pool,
                 global_pool: int = GLOBAL_POOL):
        if min(top_genres, per_genre_pool, global_pool) < 1:
            raise ValueError("top_genres, per_genre_pool and global_pool must be >= 1")
        self.top_genres, self.per_genre_pool, self.global_pool = int(top_genres), int(per_genre_pool), int(global_pool)

    def params(self) -> Dict[str, Any]:
        return {"top_genres": self.top_genres, "per_genre_pool": self.per_genre_pool, "global_pool": self.global_pool}

    def fit(self, inputs: ChannelInputs) -> "PopularityModel":
        """Every catalog track's popularity (``inputs.tracks``; ``inputs.interactions`` for tracks
        without catalog counts), normalised by the maximum."""
        pop = track_popularity(inputs.tracks, inputs.interactions)
        max_pop = F.max("popularity").over(Window.partitionBy())
        pop = pop.select("track_id", "genre", F.col("popularity").cast("double").alias("popularity"),
                         (F.col("popularity") / F.greatest(max_pop, F.lit(1e-9))).cast("double").alias("pop_norm"))
        return PopularityModel(pop, self.params())


class PopularityModel(RecallChannelModel):
    """Fitted ``popular`` channel.

    Attributes
    ----------
    popularity : DataFrame
        ``track_id, genre, popularity, pop_norm`` of every catalog track.
    """

    channel = CHANNEL

    def __init__(self, popularity: DataFrame, params: Dict[str, Any]):
        self.popularity = popularity
        self.params = dict(params)

    def recommend(self, inputs: ChannelInputs, n: int) -> DataFrame:
        """Taste-aware popular candidates for every user of ``inputs.users`` (users of ``seeds``
        when ``users`` is None); ``seed_track_id`` null."""
        p = self.params
        pop, seeds = self.popularity, inputs.seeds
        by_genre = Window.partitionBy("genre").orderBy(F.col("popularity").desc(), F.col("track_id"))
        genre_pool = (pop.withColumn("g_rank", F.row_number().over(by_genre))
                      .where(F.col("g_rank") <= p["per_genre_pool"]))
        glob = (pop.withColumn("p_rank", F.row_number().over(Window.orderBy(F.col("popularity").desc(),
                                                                            F.col("track_id"))))
                .where(F.col("p_rank") <= p["global_pool"]))
        taste = (seeds.join(pop.select("track_id", "genre"), "track_id")
                 .groupBy("user_id", "genre").agg(F.sum(F.col("weight") * F.col("recency")).alias("w")))
        taste = taste.withColumn("share", F.col("w") / F.sum("w").over(Window.partitionBy("user_id")))
        taste = top_n_per_user(taste.withColumnRenamed("genre", "g"), p["top_genres"], "share", "g").drop("rank")
        by_taste = (taste.join(F.broadcast(genre_pool), taste["g"] == genre_pool["genre"])
                    .select("user_id", "track_id", (F.col("share") * F.col("pop_norm")).alias("score")))
        # users without seeds (new users) get the platform's popular tracks; users with seeds whose
        # genres run dry are back-filled by the re-ranking stage, so no users x pool cross join here
        users = inputs.served_users(seeds)
        cold = users.join(seeds.select("user_id").distinct(), "user_id", "left_anti")
        everyone = cold.crossJoin(F.broadcast(glob.select("track_id", (0.1 * F.col("pop_norm")).alias("score"))))
        # (user, track) is unique without a de-duplicating aggregation: a track has one genre, a
        # user's genres are distinct, and cold users (no seeds) have no taste rows
        return finalize_candidates(by_taste.unionByName(everyone), inputs.heard, n, CHANNEL)

    def _spark(self) -> SparkSession:
        return self.popularity.sparkSession

    def _save_state(self, path: str) -> None:
        self.popularity.write.mode("overwrite").parquet(f"{path}/popularity")

    @classmethod
    def _load_state(cls, spark: SparkSession, path: str, params: Dict[str, Any]) -> "PopularityModel":
        return cls(spark.read.schema(POPULARITY_SCHEMA).parquet(f"{path}/popularity"), params)
