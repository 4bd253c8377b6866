"""Taste-aware popularity: the baseline channel and the back-fill source (the ``popular`` channel).

A track's popularity is ``log1p(plays) + 2 log1p(upvotes) + 3 log1p(comments)`` (platform
counts), normalised by the catalog's maximum. A user's taste is the share of their seed weight
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
STAT_COLUMNS = ("genre", "creator_id", "play_count", "upvote_count", "comment_count")

POPULARITY_SCHEMA = T.StructType([
    T.StructField("track_id", T.StringType(), False),
    T.StructField("genre", T.StringType(), False),
    T.StructField("popularity", T.DoubleType(), False),
    T.StructField("pop_norm", T.DoubleType(), False),
])


def track_popularity(tracks: DataFrame) -> DataFrame:
    """``track_id, genre, creator_id, popularity`` (higher is more popular)."""
    pop = (F.log1p(F.coalesce(F.col("play_count"), F.lit(0)).cast("double"))
           + 2.0 * F.log1p(F.coalesce(F.col("upvote_count"), F.lit(0)).cast("double"))
           + 3.0 * F.log1p(F.coalesce(F.col("comment_count"), F.lit(0)).cast("double")))
    return tracks.select("track_id", F.coalesce(F.col("genre"), F.lit("unknown")).alias("genre"), "creator_id",
                         pop.alias("popularity"))


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

    def missing_inputs(self, inputs: ChannelInputs) -> Optional[str]:
        """Also needs the catalog's statistics (a public data set's item table may lack them)."""
        reason = super().missing_inputs(inputs)
        if reason is None:
            lacking = [c for c in STAT_COLUMNS if c not in inputs.tracks.columns]
            if lacking:
                reason = f"no track statistics in the catalog ({', '.join(lacking)})"
        return reason

    def params(self) -> Dict[str, Any]:
        return {"top_genres": self.top_genres, "per_genre_pool": self.per_genre_pool, "global_pool": self.global_pool}

    def fit(self, inputs: ChannelInputs) -> "PopularityModel":
        """Every catalog track's popularity (``inputs.tracks``), normalised by the maximum."""
        pop = track_popularity(inputs.tracks)
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
