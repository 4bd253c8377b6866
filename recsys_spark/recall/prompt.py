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
>>> inputs = ChannelInputs(spark, week=week, tracks=tracks, prompts=user_prompts, heard=heard,
...                        track_embeddings=track_embeddings, prompt_embeddings=prompt_embeddings,
...                        model_version=version)                                     # doctest: +SKIP
>>> cands = PromptRecall(max_prompts=20).fit(inputs).recommend(inputs, n=100)      # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Dict, Optional

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from ..common import Timer
from ..config import ContentConf, PromptConf
from .base import ChannelInputs, RecallChannel
from .content import SEED_WEIGHTINGS, IndexedRecallModel, seed_lists, select_vectors
from .faiss_index import INDEX_KINDS, TrackIndex, heard_lists, search_users

log = logging.getLogger(__name__)

CHANNEL = "prompt"
TARGETS = ("audio", "track_prompt")
_D = PromptConf()  # the one source of default hyper-parameters
_DC = ContentConf()  # defaults of the index / history-vector parameters shared with the content channel


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


class PromptRecall(RecallChannel):
    """Estimator: builds the faiss index the prompt vectors are searched against.

    Defaults are :class:`recsys_spark.config.PromptConf`'s (the index and history-vector
    parameters: :class:`~recsys_spark.config.ContentConf`'s).

    Parameters
    ----------
    max_prompts : int
    half_life_days : float
    combine_with_history : bool
    history_weight : float
        In [0, 1]; weight of the audio-history vector when combining.
    target : {"audio", "track_prompt"}
        Which track vectors to index (see module docstring): ``inputs.track_embeddings`` or the
        ``track_prompt`` rows of ``inputs.prompt_embeddings``.
    n_seeds, seed_weighting
        History vector (only with ``combine_with_history``), as in the content channel.
    index, ivf_nlist, ivf_nprobe, hnsw_m, hnsw_ef_search, batch_size, seed
        As in :class:`~recsys_spark.recall.content.ContentRecall`.
    """

    name = CHANNEL
    conf_class = PromptConf

    def __init__(self, max_prompts: int = _D.max_prompts, half_life_days: float = _D.half_life_days,
                 combine_with_history: bool = _D.combine_with_history, history_weight: float = _D.history_weight,
                 target: str = _D.target, n_seeds: int = _DC.n_seeds, seed_weighting: str = _DC.seed_weighting,
                 index: str = _DC.index, ivf_nlist: int = _DC.ivf_nlist, ivf_nprobe: int = _DC.ivf_nprobe,
                 hnsw_m: int = _DC.hnsw_m, hnsw_ef_search: int = _DC.hnsw_ef_search,
                 batch_size: int = _DC.batch_size, seed: int = _DC.seed):
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
        self._params = dict(max_prompts=int(max_prompts), half_life_days=float(half_life_days),
                            combine_with_history=bool(combine_with_history), history_weight=float(history_weight),
                            target=target, n_seeds=int(n_seeds), seed_weighting=seed_weighting, index=index,
                            ivf_nlist=ivf_nlist, ivf_nprobe=ivf_nprobe, hnsw_m=hnsw_m, hnsw_ef_search=hnsw_ef_search,
                            batch_size=int(batch_size), seed=int(seed))

    def params(self) -> Dict[str, Any]:
        return dict(self._params)

    @property
    def needs(self):
        vectors = "track_embeddings" if self._params["target"] == "audio" else "prompt_embeddings"
        return ("week", "prompts", "prompt_embeddings", vectors)

    def fit(self, inputs: ChannelInputs) -> "PromptRecallModel":
        """Index the track vectors of ``inputs.model_version`` (restricted to ``inputs.tracks``):
        ``target="audio"``: ``track_embeddings``; ``target="track_prompt"``: the ``prompt_embeddings``
        rows of kind ``track_prompt`` (``id`` = track). :class:`~recsys_spark.recall.base.ChannelUnavailable`
        when there is none."""
        p = self._params
        if p["target"] == "track_prompt":
            tv = inputs.prompt_embeddings.where(F.col("kind") == "track_prompt")
            vecs = select_vectors(tv, inputs.model_version, id_col="id", tracks=inputs.tracks)
        else:
            vecs = select_vectors(inputs.track_embeddings, inputs.model_version, tracks=inputs.tracks)
        with Timer("prompt: build faiss index", log):
            idx = TrackIndex.from_dataframe(vecs, kind=p["index"], nlist=p["ivf_nlist"], nprobe=p["ivf_nprobe"],
                                            hnsw_m=p["hnsw_m"], ef_search=p["hnsw_ef_search"], seed=p["seed"])
        return PromptRecallModel(inputs.spark, idx, {**p, "model_version": inputs.model_version})


class PromptRecallModel(IndexedRecallModel):
    """Fitted prompt channel (see module docstring)."""

    channel = CHANNEL

    def recommend(self, inputs: ChannelInputs, n: int) -> DataFrame:
        """Candidates for every user with at least one embedded prompt written before ``inputs.week``.

        Parameters
        ----------
        inputs : ChannelInputs
            ``prompts`` (``prompt_id, user_id, created_at``: the ``user_prompts`` table; only prompts
            created before ``week`` count, ages are measured from ``week``), ``prompt_embeddings``
            (``id, kind, model_version, embedding``; rows of kind ``user_prompt`` of
            ``model_version``), ``heard`` (optional) never to return, ``seeds`` (used only with
            ``combine_with_history``).
        n : int

        Returns
        -------
        DataFrame
            ``user_id, track_id, channel ("prompt"), score double (cosine), rank int, seed_track_id
            (null)``; at most ``n`` per user, none heard.
        """
        if inputs.prompts is None or inputs.prompt_embeddings is None or inputs.week is None:
            raise ValueError("the prompt channel needs prompts, prompt_embeddings and week")
        p = self.params
        version = inputs.model_version if inputs.model_version is not None else p.get("model_version")
        q = prompt_lists(inputs.prompts, inputs.prompt_embeddings, inputs.week, p["max_prompts"],
                         p["half_life_days"], version)
        seeds = inputs.seeds
        combine = p["combine_with_history"] and seeds is not None and p["history_weight"] > 0
        if combine:
            q = q.join(seed_lists(seeds, p["n_seeds"], p["seed_weighting"]), "user_id", "left")
        else:
            q = q.withColumn("seeds", F.lit(None).cast("array<struct<track_id:string,w:double>>"))
        h = heard_lists(inputs.heard)
        q = q.join(h, "user_id", "left") if h is not None else q.withColumn("heard", F.lit(None).cast("array<string>"))
        hw = p["history_weight"] if combine else 0.0
        return search_users(q, self.shipped, n, CHANNEL, seed_weight=hw, extra_weight=1.0 - hw,
                            attribute_seed=False, batch_size=p["batch_size"])
