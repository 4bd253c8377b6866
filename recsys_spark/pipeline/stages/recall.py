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

from ..context import RunContext
from ..stage import Stage, StageReport, recorded_output_present

log = logging.getLogger(__name__)

RECALL_CHANNELS = ("popular", "item_cf", "als", "content", "prompt")


def _channel_conf(name: str, rc):
    return {"popular": rc.popularity, "item_cf": rc.item_cf, "als": rc.als, "content": rc.content,
            "prompt": rc.prompt}[name]


def channel_skip_reason(name: str, ctx: RunContext) -> Optional[str]:
    """Why channel ``name`` does not run for this configuration / data set (None: it runs)."""
    if not _channel_conf(name, ctx.cfg.recall).enabled:
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


def channel_candidates(name: str, ctx: RunContext) -> DataFrame:
    """Channel ``name``'s candidates ``user_id, track_id, score, rank, seed_track_id`` for week W."""
    rc, seed, inp = ctx.cfg.recall, ctx.cfg.pipeline.seed, ctx.inputs
    if name == "popular":
        from ...recall.popularity import popularity_candidates

        p = rc.popularity
        return popularity_candidates(inp.users, inp.seeds, inp.tracks, inp.heard, n=p.candidates,
                                     top_genres=p.top_genres, per_genre_pool=p.per_genre_pool)
    if name == "item_cf":
        from ...recall.item_cf import ItemCF

        c = rc.item_cf
        model = ItemCF.from_conf(c, seed=seed).fit(inp.interactions)
        nb = model.neighbors.select(F.lit(ctx.week).alias("week_start"), "track_id", "neighbor_id", "score", "rank")
        ctx.tables.replace_partition("item_neighbors", nb, "week_start", ctx.week)
        model.neighbors = ctx.partition("item_neighbors").drop("week_start")
        return model.recommend(inp.seeds.where(F.col("seed_rank") <= c.n_seeds), inp.heard, n=c.candidates,
                               per_seed=c.per_seed)
    if name == "als":
        from ...recall.als import ALSRecall

        c = rc.als
        model = ALSRecall.from_conf(c, seed=seed).fit(inp.interactions)
        try:
            model.save(os.path.join(ctx.model_dir, "als"))
        except Exception as exc:  # the candidates matter more than the saved copy
            log.warning("could not save the ALS model: %s", exc)
        return model.recommend(inp.seeds, inp.heard, n=c.candidates, topk=c.topk, batch_size=c.topk_batch_size)
    if name == "content":
        from ...recall.content import content_candidates

        c = rc.content
        return content_candidates(ctx.spark, inp.seeds, inp.heard, ctx.track_embeddings, tracks=inp.tracks,
                                  n=c.candidates, model_version=ctx.emb_version, n_seeds=c.n_seeds, index=c.index,
                                  ivf_nlist=c.ivf_nlist, ivf_nprobe=c.ivf_nprobe, hnsw_m=c.hnsw_m,
                                  hnsw_ef_search=c.hnsw_ef_search, seed_weighting=c.seed_weighting,
                                  batch_size=c.batch_size, seed=c.seed)
    if name == "prompt":
        from ...recall.prompt import prompt_candidates

        c = rc.prompt
        vectors = ctx.track_embeddings if c.target == "audio" else ctx.prompt_embeddings
        return prompt_candidates(ctx.spark, inp.prompts, ctx.prompt_embeddings, vectors, inp.heard, ctx.week,
                                 seeds=inp.seeds, tracks=inp.tracks, n=c.candidates, max_prompts=c.max_prompts,
                                 half_life_days=c.half_life_days, combine_with_history=c.combine_with_history,
                                 history_weight=c.history_weight, target=c.target, model_version=ctx.emb_version)
    raise ValueError(f"unknown recall channel {name!r} (one of {', '.join(RECALL_CHANNELS)})")


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
        cands = channel_candidates(self.channel, ctx)
        out = cands.select(F.lit(ctx.week).alias("week_start"), F.lit(self.channel).alias("channel"), "user_id",
                           "track_id", "score", "rank", "seed_track_id")
        ctx.tables.replace_partition("recall_candidates", out, "week_start", ctx.week, channel=self.channel)
        rep = StageReport(rows_out=self.output(ctx).count())
        if rep.rows_out == 0:
            rep.skipped = "channel produced no candidates (no inputs for it; see log)"
        else:
            rep.counts["users"] = self.output(ctx).select("user_id").distinct().count()
        return rep
