"""Prompt channel: what users say they want to hear, in CLAP's joint text-audio space.

A user's intent vector is the recency-weighted mean of the CLAP text embeddings of their own
generation prompts written before week W (the last ``max_prompts``; weight
``0.5 ** (age_days / half_life_days)``), L2-normalised, searched against the track index
(``target="audio"``: the tracks' CLAP *audio* embeddings, the design; ``target="track_prompt"``: the
CLAP text embeddings of the tracks' own prompts, useful while CLAP is untrained because text-text
similarity needs no aligned towers). Users who wrote prompts but listened to little get a full
list from it. With ``combine_with_history`` the query is
``normalize(history_weight * h + (1 - history_weight) * p)`` where ``h`` is the content channel's
mean of seed vectors (from the same index) and ``p`` the prompt vector; users with only one of
them use that one. ``seed_track_id`` is null.

Examples
--------
>>> model = PromptRecall(max_prompts=20).fit(track_embeddings, tracks)               # doctest: +SKIP
>>> cands = model.recommend(seeds, heard, n=100, prompts=user_prompts,
...                         prompt_embeddings=prompt_embeddings, week=week)            # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Optional

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from .base import RecallModel, Timer, empty_candidates, read_metadata, write_metadata
from .content import SEED_WEIGHTINGS, seed_lists, select_vectors
from .faiss_index import INDEX_KINDS, ShippedIndex, TrackIndex, heard_lists, search_users

log = logging.getLogger(__name__)

CHANNEL = "prompt"
TARGETS = ("audio", "track_prompt")


def prompt_lists(prompts: DataFrame, prompt_embeddings: DataFrame, week: dt.date, max_prompts: int,
                 half_life_days: float, model_version: Optional[str] = None) -> DataFrame:
    """``user_id, extra array<struct<w double, embedding array<float>>>``: each user's last
    ``max_prompts`` prompts written before ``week`` with their recency weights and embeddings."""
    end = dt.datetime.combine(week, dt.time())
    p = prompts.where(F.col("created_at").isNotNull() & (F.col("created_at") < F.lit(end)))
    w = Window.partitionBy("user_id").orderBy(F.col("created_at").desc(), F.col("prompt_id").desc())
    p = p.withColumn("_r", F.row_number().over(w)).where(F.col("_r") <= max_prompts)
    age_days = (F.lit(end).cast("long") - F.col("created_at").cast("long")) / 86400.0
    p = p.select(F.col("user_id").cast("string").alias("user_id"), F.col("prompt_id").cast("string").alias("id"),
                 F.pow(F.lit(0.5), age_days / F.lit(float(half_life_days))).alias("w"))
    e = prompt_embeddings.where(F.col("kind") == "user_prompt")
    if model_version is not None:
        e = e.where(F.col("model_version") == model_version)
    e = e.select(F.col("id").cast("string").alias("id"), "embedding")
    joined = p.join(e, "id")
    return joined.groupBy("user_id").agg(F.collect_list(F.struct("w", "embedding")).alias("extra"))


class PromptRecall:
    """Estimator: builds the faiss index the prompt vectors are searched against.

    Parameters
    ----------
    max_prompts : int
    half_life_days : float
    combine_with_history : bool
    history_weight : float
        In [0, 1]; weight of the audio-history vector when combining.
    target : {"audio", "track_prompt"}
        Which track vectors to index (see module docstring).
    n_seeds, seed_weighting
        History vector (only with ``combine_with_history``), as in the content channel.
    index, ivf_nlist, ivf_nprobe, hnsw_m, hnsw_ef_search, batch_size, seed
        As in :class:`~recsys_spark.recall.content.ContentRecall`.
    model_version : str, optional
        CLAP model version of both the track and the prompt embeddings.
    """

    def __init__(self, max_prompts: int = 20, half_life_days: float = 30.0, combine_with_history: bool = False,
                 history_weight: float = 0.5, target: str = "audio", n_seeds: int = 20,
                 seed_weighting: str = "recency_log_weight", index: str = "flat", ivf_nlist: int = 256,
                 ivf_nprobe: int = 16, hnsw_m: int = 32, hnsw_ef_search: int = 128, batch_size: int = 2048,
                 seed: int = 0, model_version: Optional[str] = None):
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        if index not in INDEX_KINDS:
            raise ValueError(f"index must be one of {INDEX_KINDS}, got {index!r}")
        if seed_weighting not in SEED_WEIGHTINGS:
            raise ValueError(f"seed_weighting must be one of {SEED_WEIGHTINGS}, got {seed_weighting!r}")
        if not 0.0 <= history_weight <= 1.0:
            raise ValueError(f"history_weight must be in [0, 1], got {history_weight}")
        if half_life_days <= 0 or max_prompts <= 0:
            raise ValueError("half_life_days and max_prompts must be positive")
        self.params = dict(max_prompts=int(max_prompts), half_life_days=float(half_life_days),
                           combine_with_history=bool(combine_with_history), history_weight=float(history_weight),
                           target=target, n_seeds=int(n_seeds), seed_weighting=seed_weighting, index=index,
                           ivf_nlist=ivf_nlist, ivf_nprobe=ivf_nprobe, hnsw_m=hnsw_m, hnsw_ef_search=hnsw_ef_search,
                           batch_size=int(batch_size), seed=int(seed), model_version=model_version)

    def fit(self, track_vectors: DataFrame, tracks: Optional[DataFrame] = None) -> "PromptRecallModel":
        """Index the track vectors.

        Parameters
        ----------
        track_vectors : DataFrame
            ``target="audio"``: the ``track_embeddings`` table; ``target="track_prompt"``: the
            ``prompt_embeddings`` table (rows of kind ``track_prompt`` are used, ``id`` = track).
        tracks : DataFrame, optional
            The week's catalog (``track_id``) to restrict the index to.
        """
        p = self.params
        if p["target"] == "track_prompt":
            tv = track_vectors.where(F.col("kind") == "track_prompt")
            vecs = select_vectors(tv, p["model_version"], id_col="id", tracks=tracks)
        else:
            vecs = select_vectors(track_vectors, p["model_version"], tracks=tracks)
        with Timer("prompt: build faiss index", log):
            idx = TrackIndex.from_dataframe(vecs, kind=p["index"], nlist=p["ivf_nlist"], nprobe=p["ivf_nprobe"],
                                            hnsw_m=p["hnsw_m"], ef_search=p["hnsw_ef_search"], seed=p["seed"])
        return PromptRecallModel(track_vectors.sparkSession, idx, p)


class PromptRecallModel(RecallModel):
    """Fitted prompt channel (see module docstring)."""

    channel = CHANNEL

    def __init__(self, spark: SparkSession, index: TrackIndex, params: dict, shipped: Optional[ShippedIndex] = None):
        self.spark = spark
        self.track_index = index
        self.params = dict(params)
        self._shipped = shipped

    @property
    def shipped(self) -> ShippedIndex:
        if self._shipped is None:
            self._shipped = ShippedIndex(self.spark, self.track_index)
        return self._shipped

    def recommend(self, seeds: Optional[DataFrame], heard: Optional[DataFrame], n: int = 100,
                  prompts: Optional[DataFrame] = None, prompt_embeddings: Optional[DataFrame] = None,
                  week: Optional[dt.date] = None) -> DataFrame:
        """Candidates for every user with at least one embedded prompt written before ``week``.

        Parameters
        ----------
        seeds : DataFrame or None
            The seeds contract; used only with ``combine_with_history``.
        heard : DataFrame or None
            ``user_id, track_id`` never to return.
        n : int
        prompts : DataFrame
            ``prompt_id, user_id, created_at`` (the ``user_prompts`` table).
        prompt_embeddings : DataFrame
            ``id, kind, model_version, embedding`` (rows of kind ``user_prompt`` are used).
        week : datetime.date
            Week start W: only prompts created before W count; ages are measured from W.

        Returns
        -------
        DataFrame
            ``user_id, track_id, channel ("prompt"), score double (cosine), rank int, seed_track_id
            (null)``; at most ``n`` per user, none heard.
        """
        if prompts is None or prompt_embeddings is None or week is None:
            raise ValueError("the prompt channel needs prompts, prompt_embeddings and week")
        p = self.params
        q = prompt_lists(prompts, prompt_embeddings, week, p["max_prompts"], p["half_life_days"], p["model_version"])
        combine = p["combine_with_history"] and seeds is not None and p["history_weight"] > 0
        if combine:
            q = q.join(seed_lists(seeds, p["n_seeds"], p["seed_weighting"]), "user_id", "left")
        else:
            q = q.withColumn("seeds", F.lit(None).cast("array<struct<track_id:string,w:double>>"))
        h = heard_lists(heard)
        q = q.join(h, "user_id", "left") if h is not None else q.withColumn("heard", F.lit(None).cast("array<string>"))
        hw = p["history_weight"] if combine else 0.0
        return search_users(q, self.shipped, n, CHANNEL, seed_weight=hw, extra_weight=1.0 - hw,
                            attribute_seed=False, batch_size=p["batch_size"])

    def save(self, path: str) -> None:
        self.track_index.save(self.spark, path.rstrip("/") + "/index")
        write_metadata(self.spark, path.rstrip("/") + "/metadata", {"channel": CHANNEL, "params": self.params})

    @classmethod
    def load(cls, spark: SparkSession, path: str) -> "PromptRecallModel":
        meta = read_metadata(spark, path.rstrip("/") + "/metadata")
        return cls(spark, TrackIndex.load(spark, path.rstrip("/") + "/index"), meta["params"])


def prompt_candidates(spark: SparkSession, prompts: DataFrame, prompt_embeddings: DataFrame,
                      track_vectors: DataFrame, heard: Optional[DataFrame], week: dt.date,
                      seeds: Optional[DataFrame] = None, tracks: Optional[DataFrame] = None, n: int = 100,
                      **params) -> DataFrame:
    """One-call channel for the pipeline: fit + recommend, or empty candidates (logged) when
    there are no track vectors to search."""
    try:
        model = PromptRecall(**params).fit(track_vectors, tracks)
    except ValueError as exc:
        log.warning("prompt channel skipped: %s", exc)
        return empty_candidates(spark)
    return model.recommend(seeds, heard, n, prompts=prompts, prompt_embeddings=prompt_embeddings, week=week)
