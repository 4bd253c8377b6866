"""``aggregate.creators``: creator pooling (mean or trained attention) of track embeddings -> creator_embeddings[W]."""

from __future__ import annotations

import datetime as dt
import os
from typing import Optional

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ...tables import Tables
from ..context import RunContext
from ..stage import Stage, StageReport, recorded_output_present


def creators_for_diversity(tables: Tables, week: dt.date) -> Optional[DataFrame]:
    """``creator_id, embedding`` of week W's ``creator_embeddings`` partition, or None when absent."""
    if not tables.exists("creator_embeddings"):
        return None
    part = tables.read("creator_embeddings").where(F.col("week_start") == F.lit(week))
    if part.limit(1).count() == 0:
        return None
    from ...aggregation.creators import for_diversity

    return for_diversity(part)


class AggregateCreatorsStage(Stage):
    name = "aggregate.creators"
    reads = ("interactions", "tracks (creator_id)", "track_embeddings")
    persists = ("creator_embeddings[W]", "<model_dir>/week=<W>/creator_pooling")
    after = ("embed",)

    def skip_reason(self, ctx: RunContext) -> Optional[str]:
        if not ctx.cfg.aggregation.enabled:
            return "disabled in config"
        if ctx.emb_version is None:
            return "no track embeddings (embeddings disabled)"
        if not ctx.has_creators:
            return "tracks have no creator_id"
        if not ctx.has_audio:
            return "no track embeddings (no audio in the data set)"
        return None

    def done(self, ctx: RunContext) -> bool:
        return recorded_output_present(ctx, self.name, lambda: ctx.partition("creator_embeddings").count())

    def run(self, ctx: RunContext) -> StageReport:
        from ...aggregation.creators import aggregate_creators

        ag, inp = ctx.cfg.aggregation, ctx.inputs
        rep = aggregate_creators(ctx.spark, ctx.tables, inp.interactions, inp.tracks, ctx.track_embeddings, ctx.week,
                                 method=ag.method, train_weeks=ag.train_weeks, max_tracks=ag.max_tracks,
                                 n_negatives=ag.n_negatives, proj_dim=ag.proj_dim, hidden=ag.hidden,
                                 epochs=ag.epochs, lr=ag.lr, max_users=ag.max_users, seed=ag.seed,
                                 model_version=ctx.emb_version,
                                 model_path=os.path.join(ctx.model_dir, "creator_pooling"))
        out = StageReport(rows_out=int(rep.pop("creators")))
        out.message = f"method {rep.pop('method')}" + (f"; {rep.pop('fallback')}" if "fallback" in rep else "")
        out.counts.update({k: float(v) for k, v in rep.items()})
        return out
