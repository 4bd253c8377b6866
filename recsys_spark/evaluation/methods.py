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
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ..common import top_n_per_user
from ..recall import registry
from ..recall.base import ChannelInputs
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
    history_this_week_share, history_half_life_days : float
        The seeds' other history settings (the pipeline's ``history`` section; :func:`.evaluate.evaluate`
        takes them from its config).
    cfg : Config, optional
        The configuration the evaluation job loaded (``conf/base.yaml`` + overlay + ``--set``):
        what the ``pipeline`` method runs the weekly job with.
    steady_state : bool
        The ``pipeline`` method runs the earlier weeks' recall stages that W's run reads first, as
        on a platform that runs every Monday (:mod:`.weekly_path`); False: W's run is the first.
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
    steady_state: bool = True
    _seeds: Optional[DataFrame] = None
    # fitted channel models by (name, parameters): a channel evaluated alone and again inside
    # ``recall_union`` is fitted once (same inputs, same settings); released by :meth:`release`
    _models: Dict[Tuple[str, str], Any] = field(default_factory=dict)

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
            self._seeds = build_seeds(self.train_events, self.week, self.history_last_n, **self.history).cache()
        return self._seeds

    @property
    def history(self) -> Dict[str, float]:
        """The seeds' history settings besides ``last_n`` (``build_history`` keyword arguments)."""
        return {"this_week_share": self.history_this_week_share, "half_life_days": self.history_half_life_days}

    def method_params(self, name: str) -> Dict[str, Any]:
        return dict(self.params.get(name, {}) or {})

    def release(self) -> None:
        """Unpersist the cached seeds and every fitted channel model."""
        for model in self._models.values():
            model.unpersist()
        self._models.clear()
        if self._seeds is not None:
            self._seeds.unpersist()
            self._seeds = None


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


def _as_recs(cands: DataFrame) -> DataFrame:
    return cands.select("user_id", "track_id", F.col("score").cast("double"), F.col("rank").cast("int"))


# -- channel adapters: every recall channel of the registry, alone ----------------------------


def channel_inputs(context: MethodContext, users: DataFrame) -> ChannelInputs:
    """The :class:`~recsys_spark.recall.base.ChannelInputs` of the split as of its cutoff, serving
    ``users``: train events, the pipeline's seeds, every train pair as heard, the data set's
    catalog, embeddings and the prompts written before the cutoff (no leakage)."""
    ds = context.dataset
    prompts = None
    if ds.has_prompts:
        prompts = ds.user_prompts.where(F.col("created_at") < F.lit(context.split.cutoff))
    # a data set without an item table: the catalogue is the tracks of the train events, as the
    # weekly path materialises it (weekly_path.materialise)
    tracks = ds.tracks if ds.tracks is not None else context.train_events.select("track_id").distinct()
    inputs = ChannelInputs(context.spark, week=context.week, tracks=tracks, interactions=context.train_events,
                           prompts=prompts, seeds=context.seeds, heard=context.heard,
                           track_embeddings=ds.track_embeddings, prompt_embeddings=ds.prompt_embeddings,
                           history=context.history)
    return inputs.for_users(users)


def channel_candidates(name: str, users: DataFrame, n: int, context: MethodContext) -> DataFrame:
    """Channel ``name`` of :data:`recsys_spark.recall.registry.CHANNELS`, fitted and asked for ``n``
    candidates per user, as the weekly job builds it: its settings are the evaluation's config
    (``context.cfg.recall``; the config defaults without one) with ``context.params[name]`` on top
    (constructor parameters, plus ``model_version`` of the embeddings). Raises
    :class:`MethodUnavailable` with the channel's reason when the data set lacks its inputs."""
    params = context.method_params(name)
    inputs = channel_inputs(context, users)
    if "model_version" in params:
        inputs.model_version = params.pop("model_version")
    recall_conf = context.cfg.recall if context.cfg is not None else None
    key = (name, json.dumps({"model_version": inputs.model_version, **params}, sort_keys=True, default=str))
    model = context._models.get(key)
    if model is not None:
        return model.recommend(inputs, n)
    channel = registry.build_channel(name, recall_conf, seed=context.seed, **params)
    model, cands, reason = registry.fit_recommend(channel, inputs, n)
    if reason:
        raise MethodUnavailable(f"data set {context.dataset.name!r}: the {name} channel cannot run ({reason})")
    context._models[key] = model
    return cands


def channel_method(name: str) -> MethodFn:
    """The evaluation method running channel ``name`` alone (``k`` candidates per test user)."""

    def method(spark, train, users, k, context: MethodContext) -> DataFrame:
        return _as_recs(channel_candidates(name, users, k, context))

    method.__name__ = f"{name}_method"
    method.__doc__ = f"The ``{name}`` recall channel alone (:func:`channel_candidates`)."
    return method


def recall_union_method(spark, train, users, k, context: MethodContext) -> StagedResult:
    """Diagnostic: the recall channels' funnel.

    Runs each channel of ``channels`` (``["item_cf", "als"]``) with ``candidates`` (200) per user,
    reports each alone and their union (the recall ceiling of these channels), and fuses them by
    reciprocal rank (``sum 1 / (rrf_k + rank)``, ``rrf_k`` 60) into the final top-``k``; params in
    ``context.params['recall_union']``. A channel that cannot run is noted and left out.
    """
    p = {"candidates": 200, "channels": ["item_cf", "als"], "rrf_k": 60.0}
    p.update(context.method_params("recall_union"))
    chans, notes = [], {}
    for name in p["channels"]:
        try:
            c = _as_recs(channel_candidates(name, users, int(p["candidates"]), context)).cache()
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
    final = top_n_per_user(fused, k)
    return StagedResult(final=final, channels=[(f"{n} ({p['candidates']}/user)", c) for n, c in chans],
                        notes=notes)


from .weekly_path import weekly_method  # noqa: E402 (it imports StagedResult / MethodContext above)

for _name, _fn in (("popularity", peers.popularity), ("implicit_als", peers.implicit_als),
                   ("implicit_item", peers.implicit_item), ("implicit_cosine", peers.implicit_cosine),
                   ("ease", peers.ease), ("pipeline", weekly_method), ("recall_union", recall_union_method)):
    register_method(_name, _fn)
for _name in registry.CHANNELS:
    register_method(_name, channel_method(_name))
