"""``recall.<channel>``: one channel's candidates for every user -> ``recall_candidates[W, channel]``.

:func:`channel_candidates` and :func:`channel_skip_reason` are the only places of the pipeline
that know the channels' specifics (how each is fitted and asked, what input each needs);
:class:`RecallStage` is the same stage for all five.
"""

from __future__ import annotations

import logging
import os
from typing import List, Optional

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ...recall import registry as recall_registry
from ...recall.base import ChannelInputs, ChannelUnavailable, empty_candidates
from ..context import RunContext
from ..stage import Stage, StageReport, recorded_output_present

log = logging.getLogger(__name__)

#: the registry's channels, in the pipeline's order (one ``recall.<name>`` stage each)
RECALL_CHANNELS = tuple(recall_registry.CHANNELS)


def channel_skip_reason(name: str, ctx: RunContext) -> Optional[str]:
    """Why channel ``name`` does not run for this configuration / data set (None: it runs)."""
    if not recall_registry.channel_conf(ctx.cfg.recall, name).enabled:
        return "disabled in config"
    if name == "content":
        if ctx.emb_version is None:
            return "no embeddings (embeddings disabled)"
        if not ctx.has_audio:
            return "no audio in the data set: no track embeddings"
    if name == "prompt":
        if ctx.emb_version is None:
            return "no embeddings (embeddings disabled)"
        if not ctx.has_prompts:
            return "no user prompts in the data set"
    return None


def active_channels(ctx: RunContext) -> List[str]:
    """The channels that run for W (their partitions are the rank stage's input)."""
    return [c for c in RECALL_CHANNELS if channel_skip_reason(c, ctx) is None]


def fit_channel(name: str, cfg, inputs: ChannelInputs):
    """``(model, None)``: channel ``name`` built from ``cfg.recall`` and fitted on ``inputs``; or
    ``(None, reason)`` when its inputs lack what it needs (the weekly recall stage and the ranker's
    training both fit channels this way)."""
    channel = recall_registry.build_channel(name, cfg.recall, seed=cfg.pipeline.seed)
    reason = channel.missing_inputs(inputs)
    if reason is None:
        try:
            return channel.fit(inputs), None
        except ChannelUnavailable as exc:
            reason = str(exc)
    return None, reason


def week_inputs(ctx: RunContext) -> ChannelInputs:
    """The recall channels' inputs for week W: the load stage's inputs, the week's embeddings and
    the run's history settings (for channels that rebuild seeds as of earlier weeks)."""
    inp = ctx.inputs
    return ChannelInputs(ctx.spark, week=ctx.week, tracks=inp.tracks, interactions=inp.interactions,
                         prompts=inp.prompts, seeds=inp.seeds, heard=inp.heard, users=inp.users,
                         track_embeddings=ctx.track_embeddings, prompt_embeddings=ctx.prompt_embeddings,
                         model_version=ctx.emb_version, history=ctx.cfg.history.seed_settings())


def channel_candidates(name: str, ctx: RunContext, report: Optional[StageReport] = None) -> DataFrame:
    """Channel ``name``'s candidates (``recall.base.CANDIDATE_SCHEMA``) for week W, built and fitted
    through the recall registry with the channel's config section; empty (logged) when the channel
    finds nothing to fit on. item_cf's neighbours are persisted as ``item_neighbors[W]`` and the
    ALS model under the week's model folder. The content channel's two-tower verdict (which index
    it served, its held-out recall against the raw embeddings) goes into ``report``."""
    inputs = week_inputs(ctx)
    model, reason = fit_channel(name, ctx.cfg, inputs)
    if model is None:
        log.warning("recall.%s produced nothing: %s", name, reason)
        return empty_candidates(ctx.spark)
    if name == "item_cf":
        if report is not None:  # the item blocks fit chose (recall.item_cf.num_blocks: 0) and their size
            report.counts.update({f"item_cf_{k}": float(v) for k, v in model.fit_info.items()})
        nb = model.neighbors.select(F.lit(ctx.week).alias("week_start"), "track_id", "neighbor_id", "score", "rank")
        ctx.tables.replace_partition("item_neighbors", nb, "week_start", ctx.week)
        model.neighbors = ctx.partition("item_neighbors").drop("week_start")
    if name == "als":
        try:
            model.save(os.path.join(ctx.model_dir, "als"))
        except Exception as exc:  # the candidates matter more than the saved copy
            log.warning("could not save the ALS model: %s", exc)
    tt = model.params.get("two_tower") if name == "content" else None
    if tt is not None and report is not None:
        report.message = f"served {tt['served']}" + (f": {tt['reason']}" if tt.get("reason") else "")
        report.counts.update({f"two_tower_{k}": float(tt[k]) for k in
                              ("valid_recall", "similarity_valid_recall", "train_examples", "best_epoch", "epochs_run",
                               "steps", "seconds", "build_seconds")
                              if isinstance(tt.get(k), (int, float))})
        report.counts["two_tower_served"] = float(tt["served"] == "two_tower")
        if tt.get("valid_recall_gain_ci95"):  # 95% interval of the held-out gain over the raw vectors
            lo, hi = tt["valid_recall_gain_ci95"]
            report.counts.update(two_tower_gain_ci95_lo=float(lo), two_tower_gain_ci95_hi=float(hi))
    return model.recommend(inputs, recall_registry.candidates_per_user(ctx.cfg.recall, name))


class RecallStage(Stage):
    """``recall.<channel>`` (see the module doc)."""

    reads = ("seeds", "heard set", "tracks", "interactions / embeddings (per channel)")
    persists = ("recall_candidates[W, channel]",)

    def __init__(self, channel: str):
        if channel not in RECALL_CHANNELS:
            raise ValueError(f"unknown recall channel {channel!r}")
        self.channel = channel
        self.name = f"recall.{channel}"
        self.after = ("embed",) if channel in ("content", "prompt") else ()

    def skip_reason(self, ctx: RunContext) -> Optional[str]:
        return channel_skip_reason(self.channel, ctx)

    def output(self, ctx: RunContext) -> DataFrame:
        return ctx.partition("recall_candidates", channel=self.channel)

    def done(self, ctx: RunContext) -> bool:
        return recorded_output_present(ctx, self.name, lambda: self.output(ctx).count())

    def run(self, ctx: RunContext) -> StageReport:
        fit_report = StageReport()
        cands = channel_candidates(self.channel, ctx, fit_report)
        out = cands.select(F.lit(ctx.week).alias("week_start"), F.lit(self.channel).alias("channel"), "user_id",
                           "track_id", "score", "rank", "seed_track_id")
        ctx.tables.replace_partition("recall_candidates", out, "week_start", ctx.week, channel=self.channel)
        rep = StageReport(rows_out=self.output(ctx).count(), counts=fit_report.counts, message=fit_report.message)
        if rep.rows_out == 0:
            rep.skipped = "channel produced no candidates (no inputs for it; see log)"
        else:
            rep.counts["users"] = self.output(ctx).select("user_id").distinct().count()
        return rep
