"""Taste-aware popularity: the baseline channel and the back-fill source.

A track's popularity is ``log1p(plays) + 2 log1p(upvotes) + 3 log1p(comments)`` (platform
counts). A user's taste is the share of their seed weight (weight x recency) per genre; the
channel offers the most popular unheard tracks of the user's top genres, scored
``taste_share x popularity``; users without seeds get the platform's top tracks. Rows per user are
bounded by ``top_genres x per_genre_pool`` (never users x catalog).
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

CHANNEL = "popular"


def track_popularity(tracks: DataFrame) -> DataFrame:
    """``track_id, genre, creator_id, popularity`` (higher is more popular)."""
    pop = (F.log1p(F.coalesce(F.col("play_count"), F.lit(0)).cast("double"))
           + 2.0 * F.log1p(F.coalesce(F.col("upvote_count"), F.lit(0)).cast("double"))
           + 3.0 * F.log1p(F.coalesce(F.col("comment_count"), F.lit(0)).cast("double")))
    return tracks.select("track_id", F.coalesce(F.col("genre"), F.lit("unknown")).alias("genre"), "creator_id",
                         pop.alias("popularity"))


def top_n_per_user(df: DataFrame, n: int, score_col: str = "score", tie_col: str = "track_id") -> DataFrame:
    """Keep the best ``n`` rows per user by ``score_col`` (ties broken by ``tie_col``), adding ``rank``."""
    w = Window.partitionBy("user_id").orderBy(F.col(score_col).desc(), F.col(tie_col))
    return df.withColumn("rank", F.row_number().over(w)).where(F.col("rank") <= n)


def popularity_candidates(users: DataFrame, seeds: DataFrame, tracks: DataFrame, heard: DataFrame,
                          n: int = 200, top_genres: int = 3, per_genre_pool: int = 100,
                          global_pool: int = 200) -> DataFrame:
    """Taste-aware popular candidates for every user in ``users``.

    Parameters
    ----------
    users : DataFrame
        ``user_id`` of every user to serve (with or without seeds).
    seeds : DataFrame
        The seeds contract (``user_id, track_id, weight, recency``).
    tracks : DataFrame
        ``track_id, genre, creator_id, play_count, upvote_count, comment_count``.
    heard : DataFrame
        ``user_id, track_id`` to exclude.

    Returns
    -------
    DataFrame
        ``user_id, track_id, channel, score, rank, seed_track_id`` (seed null), at most ``n`` per user.
    """
    pop = track_popularity(tracks)
    max_pop = F.max("popularity").over(Window.partitionBy())
    pop = pop.withColumn("pop_norm", F.col("popularity") / F.greatest(max_pop, F.lit(1e-9)))
    by_genre = Window.partitionBy("genre").orderBy(F.col("popularity").desc(), F.col("track_id"))
    genre_pool = pop.withColumn("g_rank", F.row_number().over(by_genre)).where(F.col("g_rank") <= per_genre_pool)
    glob = (pop.withColumn("p_rank", F.row_number().over(Window.orderBy(F.col("popularity").desc(), F.col("track_id"))))
            .where(F.col("p_rank") <= global_pool))

    taste = (seeds.join(pop.select("track_id", "genre"), "track_id")
             .groupBy("user_id", "genre").agg(F.sum(F.col("weight") * F.col("recency")).alias("w")))
    taste = taste.withColumn("share", F.col("w") / F.sum("w").over(Window.partitionBy("user_id")))
    taste = top_n_per_user(taste.withColumnRenamed("genre", "g"), top_genres, "share", "g").drop("rank")
    by_taste = (taste.join(F.broadcast(genre_pool), taste["g"] == genre_pool["genre"])
                .select("user_id", "track_id", (F.col("share") * F.col("pop_norm")).alias("score")))
    # users without seeds (new users) get the platform's popular tracks; users with seeds whose
    # genres run dry are back-filled by the re-ranking stage, so no users x pool cross join here
    cold = users.select("user_id").distinct().join(seeds.select("user_id").distinct(), "user_id", "left_anti")
    everyone = cold.crossJoin(F.broadcast(glob.select("track_id", (0.1 * F.col("pop_norm")).alias("score"))))
    # (user, track) is unique without a de-duplicating aggregation: a track has one genre, a
    # user's genres are distinct, and cold users (no seeds) have no taste rows
    cands = by_taste.unionByName(everyone)
    cands = cands.join(heard, ["user_id", "track_id"], "left_anti")
    return (top_n_per_user(cands, n)
            .select("user_id", "track_id", F.lit(CHANNEL).alias("channel"), F.col("score").cast("double"),
                    F.col("rank").cast("int"), F.lit(None).cast("string").alias("seed_track_id")))
