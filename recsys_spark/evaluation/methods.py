"""The method registry: every recommender the evaluation can run, by name.

A method is a callable ``fn(spark, train, users, k, context)`` where

- ``train`` is the summed train interactions ``user_id, track_id, weight, last_ts, n_events``
  (:attr:`Split.train`);
- ``users`` is ``user_id`` of the users to recommend for (the test users);
- ``context`` is a :class:`MethodContext` (raw train events, seeds, heard set, the data set's
  optional tracks / embeddings, per-method params, seed);

and returns either a DataFrame ``user_id, track_id, score, rank`` (rank 1 = best, at most ``k``
rows per user, never a train track of the user) or a :class:`StagedResult` (the full pipeline:
the final playlist plus the candidate sets of each stage, for the funnel).

A method that cannot run (a module not written yet, no audio embeddings on this data set, an
optional package missing) raises :class:`~recsys_spark.evaluation.peers.MethodUnavailable`; the
evaluation records it under ``"skipped"`` with the reason instead of failing.

Registering another method (e.g. from a notebook)::

    from recsys_spark.evaluation.methods import register_method
    register_method("my_model", lambda spark, train, users, k, ctx: ...)

The ``pipeline`` method is the real weekly job (:mod:`recsys_spark.evaluation.weekly_path`): the
train part becomes the platform's tables, ``run_weekly`` writes week W's playlists, and those are
scored.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from . import peers
from .peers import MethodUnavailable

log = logging.getLogger(__name__)


@dataclass
class StagedResult:
    """What the pipeline returns to the evaluation.

    Attributes
    ----------
    final : DataFrame
        ``user_id, track_id, score, rank``: the playlist (the metrics @K are computed on it).
    channels : list of (str, DataFrame)
        Each recall channel's candidates alone (``user_id, track_id``, any number per user).
    stages : list of (str, DataFrame)
        Later candidate sets in funnel order, e.g. ``("after quality filter", df)``,
        ``("after DIN", df)``. The union of ``channels`` (the recall ceiling) is added by the
        evaluation between the channels and these stages, and ``final`` at the end.
    notes : dict
        Anything to report (skipped channels and why, timings).
    candidates : DataFrame, optional
        Every channel's candidates before fusion, ``user_id, track_id, channel, score, rank``, plus
        ``din_score`` (null when DIN did not run): optional diagnostics (tuning does not re-fuse
        them: :mod:`recsys_spark.evaluation.tuning` runs the weekly job per setting).
    entry : dict
        Merged into the method's metrics entry (the weekly path's ``"path": "weekly"``, stage
        log, data coverage).
    """

    final: DataFrame
    channels: List[Tuple[str, DataFrame]] = field(default_factory=list)
    stages: List[Tuple[str, DataFrame]] = field(default_factory=list)
    notes: Dict[str, Any] = field(default_factory=dict)
    candidates: Optional[DataFrame] = None
    entry: Dict[str, Any] = field(default_factory=dict)

    def funnel_stages(self) -> List[Tuple[str, DataFrame]]:
        """Channels, their union, the later stages and the final playlist, in funnel order."""
        out = list(self.channels)
        if self.channels:
            union = None
            for _, df in self.channels:
                part = df.select("user_id", "track_id")
                union = part if union is None else union.unionByName(part)
            out.append(("union of channels", union.distinct()))
        out.extend(self.stages)
        out.append(("final playlist", self.final))
        return out


@dataclass
class MethodContext:
    """Everything a method may need besides ``train`` and ``users``.

    Attributes
    ----------
    spark : SparkSession
    dataset : EvalDataset
    split : Split
    k : int
    params : dict
        ``{method name: {param: value}}``.
    seed : int
    history_last_n : int
        Seeds per user for seed-based channels (50, as in the pipeline).
    cfg : Config, optional
        The configuration the evaluation job loaded (``conf/base.yaml`` + overlay + ``--set``):
        what the ``pipeline`` method runs the weekly job with.
    """

    spark: SparkSession
    dataset: Any
    split: Any
    k: int
    params: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    seed: int = 0
    history_last_n: int = 50
    history_this_week_share: float = 0.5
    history_half_life_days: float = 21.0
    cfg: Any = None
    _seeds: Optional[DataFrame] = None

    @property
    def train_events(self) -> DataFrame:
        """Raw interactions before the cutoff (interactions contract)."""
        return self.split.train_events

    @property
    def heard(self) -> DataFrame:
        """``user_id, track_id``: every train pair (excluded from recommendations)."""
        return self.split.train.select("user_id", "track_id")

    @property
    def week(self) -> dt.date:
        """The Monday on or after the cutoff: every train event lies before it, so history rules
        that work on weeks (``history.build_history``) see exactly the train events."""
        c = self.split.cutoff
        d = c.date() if isinstance(c, dt.datetime) else c
        if isinstance(c, dt.datetime) and c.time() != dt.time(0):
            d = d + dt.timedelta(days=1)
        return d + dt.timedelta(days=(7 - d.weekday()) % 7)

    @property
    def seeds(self) -> DataFrame:
        """The seeds of every train user, built with the pipeline's rule (cached once)."""
        if self._seeds is None:
            self._seeds = build_seeds(self.train_events, self.week, self.history_last_n,
                                      self.history_this_week_share, self.history_half_life_days).cache()
        return self._seeds

    def method_params(self, name: str) -> Dict[str, Any]:
        return dict(self.params.get(name, {}) or {})


def build_seeds(train_events: DataFrame, week: dt.date, last_n: int = 50, this_week_share: float = 0.5,
                half_life_days: float = 21.0) -> DataFrame:
    """Seeds with the pipeline's rule: ``recsys_spark.history.build_history`` on the train events.

    ``week`` must be a Monday after every train event (:attr:`MethodContext.week`).
    """
    from recsys_spark.history import build_history

    return build_history(train_events, week, last_n=last_n, this_week_share=this_week_share,
                         half_life_days=half_life_days)


MethodFn = Callable[[SparkSession, DataFrame, DataFrame, int, MethodContext], Any]

REGISTRY: Dict[str, MethodFn] = {}

CHANNELS = ("item_cf", "als", "content", "prompt")
PEERS = ("popularity", "implicit_als", "implicit_item", "implicit_cosine", "ease")
DEFAULT_ORDER = ("popularity", "implicit_als", "implicit_item", "implicit_cosine", "ease",
                 "item_cf", "als", "content", "prompt", "recall_union", "pipeline")


def register_method(name: str, fn: MethodFn) -> MethodFn:
    """Add or replace a method in the registry."""
    REGISTRY[name] = fn
    return fn


def get_method(name: str) -> MethodFn:
    if name not in REGISTRY:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def _import(module: str, what: str):
    """Import ``module`` lazily; a missing module or attribute means "not available yet"."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise MethodUnavailable(f"{module} is not available yet ({exc})") from exc
    if not hasattr(mod, what):
        raise MethodUnavailable(f"{module}.{what} is not available yet")
    return getattr(mod, what)


def _as_recs(cands: DataFrame) -> DataFrame:
    return cands.select("user_id", "track_id", F.col("score").cast("double"), F.col("rank").cast("int"))


# -- channel adapters ---------------------------------------------------------------------------


def item_cf_method(spark, train, users, k, context: MethodContext) -> DataFrame:
    """The ``item_cf`` channel alone: ``ItemCF(**params).fit(train_events)``, seeds as the pipeline.

    Params (``context.params['item_cf']``): the ``ItemCF`` constructor's, plus ``per_seed``.
    """
    ItemCF = _import("recsys_spark.recall.item_cf", "ItemCF")
    p = context.method_params("item_cf")
    rec_kw = {key: p.pop(key) for key in ("per_seed",) if key in p}
    p.setdefault("seed", context.seed)
    model = ItemCF(**p).fit(context.train_events)
    seeds = context.seeds.join(users.select("user_id"), "user_id", "left_semi")
    return _as_recs(model.recommend(seeds, context.heard, n=k, **rec_kw))


def als_method(spark, train, users, k, context: MethodContext) -> DataFrame:
    """The ``als`` channel alone (Spark MLlib ALS): ``ALSRecall(**params).fit(train_events)``."""
    ALSRecall = _import("recsys_spark.recall.als", "ALSRecall")
    p = context.method_params("als")
    p.setdefault("seed", context.seed)
    model = ALSRecall(**p).fit(context.train_events)
    return _as_recs(model.recommend(users.select("user_id"), context.heard, n=k))


def content_method(spark, train, users, k, context: MethodContext) -> DataFrame:
    """The ``content`` channel alone (needs CLAP audio embeddings)."""
    if not context.dataset.has_audio:
        raise MethodUnavailable(f"data set {context.dataset.name!r} has no audio embeddings "
                                "(the content channel needs track_embeddings)")
    ContentRecall = _import("recsys_spark.recall.content", "ContentRecall")
    p = context.method_params("content")
    p.setdefault("seed", context.seed)
    model = ContentRecall(**p).fit(context.dataset.track_embeddings)
    seeds = context.seeds.join(users.select("user_id"), "user_id", "left_semi")
    return _as_recs(model.recommend(seeds, context.heard, n=k))


def prompt_method(spark, train, users, k, context: MethodContext) -> DataFrame:
    """The ``prompt`` channel alone (CLAP text embeddings of the users' prompts vs track audio).

    Only prompts written before the cutoff are used (no leakage).
    """
    ds = context.dataset
    if not ds.has_prompts or not ds.has_audio:
        raise MethodUnavailable(f"data set {ds.name!r} has no user prompts with embeddings "
                                "and track audio embeddings (the prompt channel needs both)")
    PromptRecall = _import("recsys_spark.recall.prompt", "PromptRecall")
    p = context.method_params("prompt")
    p.setdefault("seed", context.seed)
    model = PromptRecall(**p).fit(ds.track_embeddings)
    prompts = ds.user_prompts.where(F.col("created_at") < F.lit(context.split.cutoff)) \
        .join(users.select("user_id"), "user_id", "left_semi")
    seeds = context.seeds.join(users.select("user_id"), "user_id", "left_semi")
    return _as_recs(model.recommend(seeds, context.heard, n=k, prompts=prompts,
                                    prompt_embeddings=ds.prompt_embeddings, week=context.week))


def recall_union_method(spark, train, users, k, context: MethodContext) -> StagedResult:
    """Diagnostic: the collaborative channels' funnel.

    Runs ``item_cf`` and ``als`` with ``candidates`` (200) per user, reports each alone and
    their union (the recall ceiling of these channels), and fuses them by reciprocal rank
    (``sum 1 / (60 + rank)``) into the final top-``k``. Params (``context.params['recall_union']``):
    ``candidates`` (200), ``channels`` (``["item_cf", "als"]``), ``rrf_k`` (60).
    """
    p = {"candidates": 200, "channels": ["item_cf", "als"], "rrf_k": 60.0}
    p.update(context.method_params("recall_union"))
    fns = {"item_cf": item_cf_method, "als": als_method, "content": content_method, "prompt": prompt_method}
    chans, notes = [], {}
    for name in p["channels"]:
        try:
            c = fns[name](spark, train, users, int(p["candidates"]), context).cache()
            c.count()
            chans.append((name, c))
        except MethodUnavailable as exc:
            notes[name] = f"skipped: {exc}"
    if not chans:
        raise MethodUnavailable("no recall channel available: " + "; ".join(notes.values()))
    fused = None
    for _, c in chans:
        part = c.select("user_id", "track_id", (F.lit(1.0) / (F.lit(float(p["rrf_k"])) + F.col("rank"))).alias("s"))
        fused = part if fused is None else fused.unionByName(part)
    fused = fused.groupBy("user_id", "track_id").agg(F.sum("s").alias("score"))
    from pyspark.sql import Window

    w = Window.partitionBy("user_id").orderBy(F.col("score").desc(), F.col("track_id"))
    final = fused.withColumn("rank", F.row_number().over(w)).where(F.col("rank") <= k)
    return StagedResult(final=final, channels=[(f"{n} ({p['candidates']}/user)", c) for n, c in chans],
                        notes=notes)


from .weekly_path import weekly_method  # noqa: E402 (it imports StagedResult / MethodContext above)

for _name, _fn in (("popularity", peers.popularity), ("implicit_als", peers.implicit_als),
                   ("implicit_item", peers.implicit_item), ("implicit_cosine", peers.implicit_cosine),
                   ("ease", peers.ease), ("item_cf", item_cf_method), ("als", als_method),
                   ("content", content_method), ("prompt", prompt_method), ("pipeline", weekly_method),
                   ("recall_union", recall_union_method)):
    register_method(_name, _fn)
