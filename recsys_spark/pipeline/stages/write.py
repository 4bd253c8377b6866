"""``write``: plug-in re-ranker -> rules (exclusions, creator cap, MMR with creator embeddings, fresh
share, exactly ``playlist_size``) -> reasons -> week W's ``discover_weekly`` partition (one commit)."""

from __future__ import annotations

import logging
from typing import Optional

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ...rerank import rules
from ..context import RunContext
from ..stage import Stage, StageReport
from .aggregate_creators import creators_for_diversity

log = logging.getLogger(__name__)

NO_CREATORS = "creator cap skipped: catalog has no creators"


def creator_cap(ctx: RunContext) -> Optional[int]:
    """The cap per creator for this data set: ``rerank.creator_cap``, or None (no cap) when no
    track has a creator (every track would share one "missing" creator, and a cap of 2 would
    leave 2 tracks per playlist before the back-fill)."""
    return ctx.cfg.rerank.creator_cap if ctx.has_creators else None


class WriteStage(Stage):
    name = "write"
    reads = ("candidates[W]", "users", "heard set", "tracks", "track_embeddings", "creator_embeddings[W]")
    persists = ("discover_weekly[W] (the runner's claimed commit)",)

    def build(self, ctx: RunContext, rep: StageReport) -> DataFrame:
        """Week W's playlists ``user_id, position, track_id, score, sources, seed_track_id, reason``."""
        rr, inp = ctx.cfg.rerank, ctx.inputs
        cands = ctx.partition("candidates").drop("week_start")
        rep.rows_in = cands.count()
        if rr.plugin:
            from ...rerank.plugins import apply_reranker

            cands = apply_reranker(cands, rr.plugin, inp.tracks, inp.seeds, top_n=rr.plugin_top_n,
                                   score_col="final_score", options=rr.plugin_options)
            rep.counts["plugin"] = 1.0
        track_emb = ctx.track_embeddings
        emb_for_div = track_emb.select("track_id", "embedding") if (rr.diversity_enabled and track_emb is not None) \
            else None
        cap = creator_cap(ctx)
        if cap is None:
            log.warning("[%s] %s", ctx.run_id, NO_CREATORS)
            rep.note_skip(NO_CREATORS)
        size = rr.playlist_size
        playlists = rules.build_playlists(
            cands, inp.users, inp.heard, inp.tracks, ctx.week, size=size,
            creator_cap=size if cap is None else cap,  # a cap of the playlist size never binds
            backfill_pool=4 * size * max(rr.creator_cap, 1),
            diversity_lambda=rr.diversity_lambda, diversity=rr.diversity_enabled, fresh_share=rr.fresh_share,
            fresh_days=rr.fresh_days, max_candidates=rr.max_candidates, embeddings=emb_for_div,
            creator_embeddings=creators_for_diversity(ctx.tables, ctx.week) if (
                rr.diversity_enabled and rr.creator_similarity_weight > 0) else None,
            creator_weight=rr.creator_similarity_weight, interactions=inp.interactions,
            played=ctx.played_tracks if rr.fresh_unplayed and rr.fresh_share > 0 else None,
            fresh_unplayed=rr.fresh_unplayed, fresh_lane=rr.fresh_lane)
        return rules.add_reasons(playlists, inp.tracks, inp.prompts, content_trained=ctx.content_trained)

    def run(self, ctx: RunContext) -> StageReport:
        rep = StageReport()
        playlists = ctx.cache(self.build(ctx, rep))
        n_rows = playlists.count()
        per_user = playlists.groupBy("user_id").count()
        n_users = per_user.count()
        n_short = per_user.where(F.col("count") < ctx.cfg.rerank.playlist_size).count()
        out = playlists.select(
            F.lit(ctx.week).alias("week_start"), "user_id", "position", "track_id", "score", "sources", "reason",
            F.lit(ctx.cfg.pipeline.model_version).alias("model_version"), F.lit(ctx.run_id).alias("run_id"),
            F.lit(ctx.generated_at).alias("generated_at"))
        version = ctx.commit(out)
        rep.rows_out = n_rows
        rep.counts.update(users=n_users, short_users=n_short, table_version=float(version))
        mix = playlists.select(F.explode("sources").alias("s")).groupBy("s").count().collect()  # <= 6 rows
        rep.counts.update({f"source.{r['s']}": float(r["count"]) for r in mix})
        if ctx.cfg.rerank.fresh_share > 0:  # slots holding a track the fresh share counts as fresh (new, or unplayed)
            rep.counts["fresh_slots"] = float(playlists.join(ctx.fresh_tracks, "track_id", "left_semi").count())
        return rep
