"""``rank``: fusion -> quality filter -> DIN scores -> final score -> ``candidates[W]``."""

from __future__ import annotations

from typing import Optional

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ...rerank.rules import top_n_with_fresh_lane
from ...spark import SORTED_AGGREGATION, shuffle_partitions, sql_conf
from ..context import RunContext
from ..stage import Stage, StageReport, recorded_output_present
from .recall import RECALL_CHANNELS, active_channels
from .train_din import din_model_ready
from .train_ranker import ranker_for_week

NO_STATISTICS = "quality filter skipped: no track statistics"


def prerank(fused: DataFrame, top_n: int, score_col: str = "recall_score", fresh: Optional[DataFrame] = None,
            fresh_lane: int = 0) -> DataFrame:
    """Pre-ranking: keep each user's best ``top_n`` candidates by ``score_col`` (the fused recall
    score, or the learned ranker's when it is used; 0 = all), and their best ``fresh_lane`` among
    ``fresh`` tracks (``rerank.fresh_lane``, :func:`~recsys_spark.rerank.rules.top_n_with_fresh_lane`).

    The fine ranker (DIN) costs O(candidates x history) per user; the candidates below the
    cut rarely reach the final 30 (the re-ranking rules look at ``rerank.max_candidates``)."""
    if top_n <= 0:
        return fused
    return top_n_with_fresh_lane(fused, top_n, score_col, fresh, fresh_lane)


def score_din(spark: SparkSession, cands: DataFrame, seeds: DataFrame, din_path: str, dc) -> DataFrame:
    """DIN click probability for every candidate (pandas UDF; CUDA when the executor has one).

    Content features come from the table saved with the model at training time."""
    from ...ranking.din_spark import score_candidates

    return score_candidates(spark, cands, seeds, din_path, batch_size=dc.score_batch_size, device=dc.device,
                            precision=dc.score_precision)


class RankStage(Stage):
    name = "rank"
    reads = ("recall_candidates[W, active channels]", "tracks (statistics)", "seeds", "interactions (ranker features)",
             "DIN and ranker of W")
    persists = ("candidates[W]",)
    after = tuple(f"recall.{c}" for c in RECALL_CHANNELS) + ("train.din", "train.ranker")

    def output(self, ctx: RunContext) -> DataFrame:
        return ctx.partition("candidates")

    def done(self, ctx: RunContext) -> bool:
        return recorded_output_present(ctx, self.name, lambda: self.output(ctx).count())

    @staticmethod
    def fresh_lane(ctx: RunContext):
        """``(fresh track ids or None, lane)`` for :func:`prerank`: ``rerank.fresh_lane`` > 0 (and a
        fresh share) keeps each user's best fresh candidates past the cut, the same tracks the
        write stage's fresh share counts as fresh."""
        rr = ctx.cfg.rerank
        if rr.fresh_lane <= 0 or rr.fresh_share <= 0:
            return None, 0
        return ctx.fresh_tracks, rr.fresh_lane

    def quality_skip_reason(self, ctx: RunContext) -> Optional[str]:
        """Why the quality filter does not run (None: it runs)."""
        if not ctx.cfg.quality.enabled:
            return "quality filter disabled in config"
        if not ctx.has_track_statistics:
            return NO_STATISTICS
        return None

    def aesthetics_scores(self, ctx: RunContext, rep: StageReport) -> Optional[DataFrame]:
        """``track_id, aesthetics`` for the quality blend (None when ``quality.aesthetics_weight`` is 0):
        ``quality.aesthetics_table`` when set, else the ``quality.aesthetics_axis`` column of this
        model version's ``track_aesthetics`` rows (the config refuses a weight without a source)."""
        qc = ctx.cfg.quality
        if qc.aesthetics_weight <= 0:
            return None
        if qc.aesthetics_table:
            return ctx.tables.read(qc.aesthetics_table)
        from ...embeddings.aesthetics import AestheticsSpec

        spec = AestheticsSpec.from_conf(ctx.cfg.aesthetics)
        if not spec.has_checkpoint:
            rep.note_skip("quality blends UNTRAINED aesthetics scores (no aesthetics.checkpoint_path) at weight "
                          f"{qc.aesthetics_weight}")
        return (ctx.tables.read("track_aesthetics").where(F.col("model_version") == spec.resolved_model_version())
                .select("track_id", F.col(qc.aesthetics_axis.lower()).alias("aesthetics")))

    def run(self, ctx: RunContext) -> StageReport:
        with sql_conf(ctx.spark, SORTED_AGGREGATION):  # fusion's second aggregation reuses its sort
            return self._run(ctx)

    def _run(self, ctx: RunContext) -> StageReport:
        from ...filtering.quality import apply_quality_filter, quality_scores
        from ...ranking.fusion import final_score, fuse

        cfg, week = ctx.cfg, ctx.week
        fc, qc, dc = cfg.fusion, cfg.quality, cfg.din
        recall_all = ctx.partition("recall_candidates").where(F.col("channel").isin(*active_channels(ctx)))
        rep = StageReport(rows_in=recall_all.count())
        fused = fuse(recall_all.drop("week_start"), fc.channel_weights, method=fc.method, rrf_k=fc.rrf_k,
                     default_weight=fc.default_channel_weight,
                     cold_user_weights=fc.cold_user_channel_weights, num_partitions=shuffle_partitions(ctx.spark))
        q = quality_scores(ctx.inputs.tracks, prior_strength=qc.prior_strength, upvote_weight=qc.upvote_weight,
                           comment_weight=qc.comment_weight, mapping=qc.mapping,
                           aesthetics_df=self.aesthetics_scores(ctx, rep), aesthetics_weight=qc.aesthetics_weight)
        why = self.quality_skip_reason(ctx)
        if why is None:
            fused = apply_quality_filter(fused, q, threshold=qc.threshold, min_per_user=cfg.rerank.playlist_size,
                                         score_col="recall_score")
        else:
            fused = fused.join(q, "track_id", "left")
            rep.note_skip(why)
        ranker = ranker_for_week(ctx)
        if ranker is not None:
            from ...ranking.ranker import FEATURES, candidate_features, score

            feats = candidate_features(recall_all, fused, ctx.inputs.interactions, ctx.inputs.tracks, week)
            fused = score(ranker[0], feats).drop(*[f for f in FEATURES if f != "recall_score"])
            rep.counts["ranker_used"] = 1.0
        else:
            fused = fused.withColumn("ranker_score", F.lit(None).cast("double"))
            if cfg.ranker.enabled:
                rep.note_skip("learned ranker not used for this week (see train.ranker)")
        cached = None
        if din_model_ready(ctx):
            # scoring reads the candidates twice (grouped by user for the UDF, then joined back):
            # persist them so fusion and the quality filter run once
            cached = prerank(fused, dc.prerank_top_n, "recall_score" if ranker is None else "ranker_score",
                             *self.fresh_lane(ctx)).persist(StorageLevel.MEMORY_AND_DISK)
            fused = score_din(ctx.spark, cached, ctx.inputs.seeds, ctx.din_path, dc)
        else:
            fused = fused.withColumn("din_score", F.lit(None).cast("double"))
            rep.note_skip("DIN not trained for this week")
        # the ranker enters as its train.ranker stage chose on held-out users: blended with the recall
        # score (recall weight 1, ranker weight w) or alone (recall weight 0), scaled by recall_weight
        wr, wk = (1.0, 0.0) if ranker is None else (ranker[1]["blend_recall_weight"], ranker[1]["blend_ranker_weight"])
        scored = final_score(fused, din_weight=fc.din_weight, recall_weight=fc.recall_weight * wr,
                             quality_weight=fc.quality_weight, ranker_weight=fc.recall_weight * wk,
                             scale=fc.final_scale, rrf_k=fc.rrf_k)
        out = scored.select(F.lit(week).alias("week_start"), "user_id", "track_id", "channels", "recall_score",
                            "din_score", "quality", "final_score", "seed_track_id", "ranker_score")
        try:
            ctx.tables.replace_partition("candidates", out, "week_start", week)
        finally:
            if cached is not None:  # the write stage reads the table, not this cache
                cached.unpersist()
        rep.rows_out = self.output(ctx).count()
        return rep
