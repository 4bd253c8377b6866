"""Heavy re-ranker plug-in point: a configured class re-scores each user's top N candidates.

Contract
--------
A plug-in subclasses :class:`Reranker` and implements :meth:`Reranker.score`, which receives a
pandas DataFrame holding the top-N candidates of one *or more* users (a batch may hold any subset
of a user's rows, so a plug-in must score rows independently, using the per-row user context
columns) and returns one new score per row (higher = better)::

    user_id, track_id, score (incoming), score_norm (incoming, min-max scaled within the user's
    top N), creator_id, title, prompt, tags (list), genre, audio_uri,
    user_tags (dict tag -> weight), user_genres (dict genre -> weight)

``user_tags`` / ``user_genres`` summarise the user's seeds (weight = seed weight x recency,
normalised to sum 1). Expensive set-up (loading a model) goes in :meth:`Reranker.setup`, which runs
once per Python worker.

:func:`apply_reranker` runs the plug-in with ``mapInPandas`` over the top ``top_n`` per user and
*re-orders* those rows: the row the plug-in ranks k-th receives the k-th best original score, so
the re-ordered top N stays above every row outside it and score distributions do not drift.

Only classes from allowed module prefixes (``recsys_spark.`` by default, more may be listed in
conf) that subclass :class:`Reranker` can be loaded: configuration strings are never imported
blindly.

Plug-ins here: :class:`TagAffinityReranker` (real, lightweight, tested) and
:class:`MusicFlamingoReranker` (EXPERIMENTAL, UNTESTED: the weights are not available here).
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import re
from abc import ABC, abstractmethod
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

log = logging.getLogger(__name__)

DEFAULT_ALLOWED_PREFIXES = ("recsys_spark.",)
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


class PluginError(ValueError):
    """The configured plug-in cannot be loaded (bad path, not allowed, not a Reranker)."""


class PluginUnavailableError(RuntimeError):
    """The plug-in's dependency or weights are not available on this machine."""


class Reranker(ABC):
    """Base class of re-ranker plug-ins.

    Parameters
    ----------
    **options
        Plug-in specific options (``rerank.plugin_options`` in conf).
    """

    #: columns the plug-in needs besides user_id, track_id, score, score_norm
    required_columns: Sequence[str] = ()

    def __init__(self, **options: Any):
        self.options = dict(options)

    def setup(self) -> None:
        """Load heavy resources; called once per worker before the first :meth:`score`."""

    @abstractmethod
    def score(self, pdf: pd.DataFrame) -> pd.Series:
        """New scores for the rows of ``pdf`` (same length and index; higher = better)."""


def load_reranker(path: str, options: Optional[Mapping[str, Any]] = None,
                  allowed_prefixes: Sequence[str] = DEFAULT_ALLOWED_PREFIXES) -> Reranker:
    """Instantiate the :class:`Reranker` subclass named by dotted ``path`` after checking it.

    Raises
    ------
    PluginError
        If ``path`` is not a dotted identifier, not under an allowed prefix, cannot be imported,
        or is not a :class:`Reranker` subclass.
    """
    if not isinstance(path, str) or not _DOTTED.match(path):
        raise PluginError(f"re-ranker plug-in must be a dotted class path, got {path!r}")
    if not any(path.startswith(p) for p in allowed_prefixes):
        raise PluginError(f"re-ranker plug-in {path!r} is not under an allowed module prefix "
                          f"({', '.join(allowed_prefixes)}); add its prefix to the allowed list in conf")
    module_name, cls_name = path.rsplit(".", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(f"cannot import module {module_name!r} of re-ranker plug-in: {exc}") from exc
    cls = getattr(module, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Reranker)) or cls is Reranker:
        raise PluginError(f"{path!r} is not a Reranker subclass")
    if getattr(cls, "__abstractmethods__", None):
        raise PluginError(f"{path!r} is abstract")
    return cls(**dict(options or {}))


# --------------------------------------------------------------------------------------------
# A real lightweight re-ranker
# --------------------------------------------------------------------------------------------


class TagAffinityReranker(Reranker):
    """Blend the incoming score with the tag / genre affinity of the candidate to the user.

    ``new = (1 - alpha) * score_norm + alpha * affinity`` where
    ``affinity = (1 - genre_weight) * tag_cosine + genre_weight * genre_share``;
    ``tag_cosine`` is the cosine between the candidate's (binary) tag set and the user's weighted
    tag profile, ``genre_share`` the user's weight on the candidate's genre (0 when unknown).

    Options
    -------
    alpha : float, default 0.3
    genre_weight : float, default 0.3
    """

    required_columns = ("tags", "genre", "user_tags", "user_genres")

    def __init__(self, alpha: float = 0.3, genre_weight: float = 0.3, **options: Any):
        super().__init__(alpha=alpha, genre_weight=genre_weight, **options)
        if not 0 <= alpha <= 1 or not 0 <= genre_weight <= 1:
            raise ValueError("alpha and genre_weight must be in [0, 1]")
        self.alpha = float(alpha)
        self.genre_weight = float(genre_weight)

    @staticmethod
    def _as_dict(x) -> Dict[str, float]:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return {}
        if isinstance(x, dict):
            return x
        return dict(x)  # arrow maps arrive as lists of (key, value) pairs

    def affinity(self, tags, genre, user_tags, user_genres) -> float:
        ut = self._as_dict(user_tags)
        ug = self._as_dict(user_genres)
        tags = [] if tags is None else list(dict.fromkeys(tags))
        norm = math.sqrt(sum(v * v for v in ut.values()))
        cos = sum(ut.get(t, 0.0) for t in tags) / (math.sqrt(len(tags)) * norm) if tags and norm > 0 else 0.0
        gs = ug.get(genre, 0.0) if isinstance(genre, str) else 0.0
        return (1 - self.genre_weight) * cos + self.genre_weight * gs

    def score(self, pdf: pd.DataFrame) -> pd.Series:
        aff = np.array([self.affinity(t, g, ut, ug) for t, g, ut, ug in
                        zip(pdf["tags"], pdf["genre"], pdf["user_tags"], pdf["user_genres"])], dtype=np.float64)
        base = pdf["score_norm"].to_numpy(dtype=np.float64)
        return pd.Series((1 - self.alpha) * base + self.alpha * aff, index=pdf.index)


# --------------------------------------------------------------------------------------------
# Music Flamingo (EXPERIMENTAL, UNTESTED)
# --------------------------------------------------------------------------------------------


class MusicFlamingoReranker(Reranker):
    """EXPERIMENTAL and UNTESTED: re-score with NVIDIA Music Flamingo (audio-language model).

    The model listens to each candidate (``audio_uri``) and is asked whether it fits a listener
    described by the user's top tags; the score is ``P("yes") / (P("yes") + P("no"))`` of the next
    token, blended with the incoming score like :class:`TagAffinityReranker`. The weights cannot be
    obtained in this environment (no Hugging Face access), so this class has never been run: treat
    it as a sketch to validate on a GPU cluster with the checkpoint before use. ``setup`` fails
    with :class:`PluginUnavailableError` when ``transformers`` or the checkpoint is missing.

    Options
    -------
    checkpoint_path : str
        Local folder of a Music Flamingo checkpoint in Hugging Face format (required).
    alpha : float, default 0.5
    device : str, default "auto"
    max_tags : int, default 8
    """

    required_columns = ("audio_uri", "user_tags")
    PROMPT = ("A listener enjoys music described by these tags: {tags}. "
              "Would this listener enjoy this track? Answer yes or no.")

    def __init__(self, checkpoint_path: str = "", alpha: float = 0.5, device: str = "auto",
                 max_tags: int = 8, **options: Any):
        super().__init__(checkpoint_path=checkpoint_path, alpha=alpha, device=device, max_tags=max_tags, **options)
        self.checkpoint_path = checkpoint_path
        self.alpha = float(alpha)
        self.device = device
        self.max_tags = int(max_tags)
        self._model = None

    def setup(self) -> None:
        try:
            import transformers  # noqa: F401
            from transformers import AutoProcessor, MusicFlamingoForConditionalGeneration
        except ImportError as exc:
            raise PluginUnavailableError(
                "MusicFlamingoReranker needs transformers with Music Flamingo support "
                f"(MusicFlamingoForConditionalGeneration): {exc}") from exc
        if not self.checkpoint_path or not os.path.isdir(self.checkpoint_path):
            raise PluginUnavailableError(
                "MusicFlamingoReranker needs rerank.plugin_options.checkpoint_path pointing to a local "
                f"Music Flamingo checkpoint folder; got {self.checkpoint_path!r}. The weights are not "
                "available in this environment; disable the plug-in (rerank.plugin: '') or provide them.")
        from ..common import resolve_device

        dev = resolve_device(self.device)
        self._processor = AutoProcessor.from_pretrained(self.checkpoint_path)
        self._model = MusicFlamingoForConditionalGeneration.from_pretrained(self.checkpoint_path).to(dev).eval()
        tok = self._processor.tokenizer
        self._yes = tok.encode("yes", add_special_tokens=False)[0]
        self._no = tok.encode("no", add_special_tokens=False)[0]
        self._dev = dev

    def _p_yes(self, audio_uri: str, tags: Sequence[str]) -> float:
        import torch

        conv = [{"role": "user", "content": [
            {"type": "text", "text": self.PROMPT.format(tags=", ".join(tags) or "unknown")},
            {"type": "audio", "path": audio_uri}]}]
        inputs = self._processor.apply_chat_template(conv, tokenize=True, add_generation_prompt=True,
                                                     return_dict=True, return_tensors="pt").to(self._dev)
        with torch.no_grad():
            logits = self._model(**inputs).logits[0, -1]
        two = torch.softmax(logits[[self._yes, self._no]].float(), dim=0)
        return float(two[0])

    def score(self, pdf: pd.DataFrame) -> pd.Series:
        if self._model is None:
            self.setup()
        out = []
        for uri, ut, base in zip(pdf["audio_uri"], pdf["user_tags"], pdf["score_norm"]):
            tags = [t for t, _ in sorted(TagAffinityReranker._as_dict(ut).items(), key=lambda kv: -kv[1])]
            p = self._p_yes(uri, tags[: self.max_tags]) if isinstance(uri, str) and uri else 0.5
            out.append((1 - self.alpha) * float(base) + self.alpha * p)
        return pd.Series(out, index=pdf.index, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Spark glue
# --------------------------------------------------------------------------------------------

_PLUGIN_CACHE: Dict[str, Reranker] = {}


def _cached_plugin(path: str, options_json: str, allowed: Sequence[str]) -> Reranker:
    key = f"{path}|{options_json}"
    plugin = _PLUGIN_CACHE.get(key)
    if plugin is None:
        plugin = load_reranker(path, json.loads(options_json), allowed)
        plugin.setup()
        _PLUGIN_CACHE[key] = plugin
    return plugin


def user_profiles(seeds_df: DataFrame, tracks_df: DataFrame, max_tags: int = 50) -> DataFrame:
    """``user_id, user_tags map<string,double>, user_genres map<string,double>`` from the seeds.

    A seed contributes ``log1p(weight) * recency`` to each of its tags and to its genre; each map
    is normalised to sum 1 and the tag map keeps the ``max_tags`` heaviest tags.
    """
    s = seeds_df.select("user_id", "track_id",
                        (F.log1p(F.col("weight")) * F.coalesce(F.col("recency"), F.lit(1.0))).alias("w"))
    t = tracks_df.select("track_id", "tags", "genre")
    st = s.join(t, "track_id")
    tags = (st.select("user_id", "w", F.explode("tags").alias("tag"))
            .groupBy("user_id", "tag").agg(F.sum("w").alias("w"))
            .withColumn("_r", F.row_number().over(Window.partitionBy("user_id").orderBy(F.col("w").desc(), "tag")))
            .where(F.col("_r") <= max_tags)
            .withColumn("w", F.col("w") / F.sum("w").over(Window.partitionBy("user_id")))
            .groupBy("user_id").agg(F.map_from_entries(F.collect_list(F.struct("tag", "w"))).alias("user_tags")))
    genres = (st.where(F.col("genre").isNotNull()).groupBy("user_id", "genre").agg(F.sum("w").alias("w"))
              .withColumn("w", F.col("w") / F.sum("w").over(Window.partitionBy("user_id")))
              .groupBy("user_id").agg(F.map_from_entries(F.collect_list(F.struct("genre", "w"))).alias("user_genres")))
    return tags.join(genres, "user_id", "full")


def apply_reranker(
    candidates_df: DataFrame,
    plugin: str,
    tracks_df: DataFrame,
    seeds_df: DataFrame,
    top_n: int = 50,
    score_col: str = "final_score",
    options: Optional[Mapping[str, Any]] = None,
    allowed_prefixes: Sequence[str] = DEFAULT_ALLOWED_PREFIXES,
) -> DataFrame:
    """Re-order each user's top ``top_n`` candidates with the plug-in named ``plugin``.

    Parameters
    ----------
    candidates_df : DataFrame
        ``user_id, track_id, <score_col>, ...`` one row per user and track.
    plugin : str
        Dotted path of a :class:`Reranker` subclass (validated with :func:`load_reranker` on the
        driver before any Spark work, and again on each worker).
    tracks_df : DataFrame
        Track metadata (``track_id, creator_id, title, prompt, tags, genre, audio_uri``).
    seeds_df : DataFrame
        The week's seeds (``user_id, track_id, weight, recency``) for the user profiles.
    top_n : int
    score_col : str
    options : mapping, optional
        Keyword arguments of the plug-in (``rerank.plugin_options``); must be JSON-serialisable.
    allowed_prefixes : sequence of str

    Returns
    -------
    DataFrame
        ``candidates_df`` columns (``score_col`` permuted within each user's top N) plus
        ``plugin_score double`` (null outside the top N).
    """
    options_json = json.dumps(dict(options or {}), sort_keys=True)
    load_reranker(plugin, json.loads(options_json), allowed_prefixes)  # fail fast on the driver
    allowed = tuple(allowed_prefixes)
    cols = candidates_df.columns
    by_score = Window.partitionBy("user_id").orderBy(F.col(score_col).desc_nulls_last(), F.col("track_id"))
    ranked = candidates_df.withColumn("_r", F.row_number().over(by_score))
    top = ranked.where(F.col("_r") <= int(top_n))
    rest = ranked.where(F.col("_r") > int(top_n)).drop("_r").withColumn("plugin_score", F.lit(None).cast("double"))

    u = Window.partitionBy("user_id")
    lo, hi = F.min(score_col).over(u), F.max(score_col).over(u)
    meta_cols = [c for c in ("creator_id", "title", "prompt", "tags", "genre", "audio_uri")
                 if c in tracks_df.columns and c not in cols]
    feats = (top.withColumn("score", F.col(score_col).cast("double"))
             .withColumn("score_norm", F.when(hi > lo, (F.col(score_col) - lo) / (hi - lo)).otherwise(F.lit(1.0)))
             .join(tracks_df.select("track_id", *meta_cols), "track_id", "left")
             .join(user_profiles(seeds_df, tracks_df), "user_id", "left")
             .select("user_id", "track_id", "_r", "score", "score_norm", *meta_cols, "user_tags", "user_genres"))

    def _run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        rr = _cached_plugin(plugin, options_json, allowed)
        for pdf in batches:
            s = rr.score(pdf)
            yield pd.DataFrame({"user_id": pdf["user_id"], "track_id": pdf["track_id"], "_r": pdf["_r"],
                                "plugin_score": np.asarray(s, dtype=np.float64)})

    scored = feats.mapInPandas(_run, schema="user_id string, track_id string, _r int, plugin_score double")
    new_pos = scored.withColumn("_nr", F.row_number().over(
        Window.partitionBy("user_id").orderBy(F.col("plugin_score").desc(), F.col("_r"))))
    slot_scores = top.select("user_id", F.col("_r").alias("_nr"), F.col(score_col).alias("_slot"))
    reordered = (top.drop(score_col)
                 .join(new_pos.select("user_id", "_r", "_nr", "plugin_score"), ["user_id", "_r"])
                 .join(slot_scores, ["user_id", "_nr"])
                 .withColumn(score_col, F.col("_slot"))
                 .select(*cols, "plugin_score"))
    log.info("re-ranker plug-in %s applied to the top %d per user", plugin, top_n)
    return reordered.unionByName(rest.select(*cols, "plugin_score"))
