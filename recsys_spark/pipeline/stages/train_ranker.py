"""``train.ranker``: the learned ranker, trained on the candidates it will rank -> ``<model_dir>/week=<W>/ranker``.

The recall channels that run for W are fitted as of a label cutoff L (:func:`~recsys_spark.ranking.ranker.label_window`)
on the events before L and asked for the users with a new positive play in [L, W); their candidates
get the same features as W's candidates in the ``rank`` stage (one function), labelled by those plays.
When an earlier weekly run wrote ``recall_candidates[L]`` for a channel (and ``ranker.reuse_recall``),
those candidates are used instead of refitting the channel.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Dict, Optional, Tuple

from pyspark.sql import functions as F

from ... import history as hist
from ... import schema as C
from ...artifacts import exists, join
from ...recall import registry as recall_registry
from ...recall.base import ChannelInputs
from ..context import RunContext
from ..stage import Stage, StageReport
from .recall import RECALL_CHANNELS, active_channels, fit_channel

log = logging.getLogger(__name__)


def ranker_path(ctx: RunContext) -> str:
    return join(ctx.model_dir, "ranker")


def ranker_for_week(ctx: RunContext) -> Optional[Tuple[Any, Dict[str, Any]]]:
    """``(model, metadata)`` of W's ranker when it was trained (or resumed) in this run with this
    configuration and is to be used (its held-out check passed or ``require_gain`` is off); else None."""
    def build():
        if "train.ranker" not in ctx.finished or not exists(join(ranker_path(ctx), "metadata"), ctx.spark):
            return None
        from ...ranking.ranker import load_ranker

        model, meta = load_ranker(ctx.spark, ranker_path(ctx))
        if meta.get("config_fingerprint") != ctx.fingerprint:  # another configuration's model of W
            log.info("[%s] ranker of %s is another configuration's: not used", ctx.run_id, ctx.week)
            return None
        if ctx.cfg.ranker.require_gain and not meta.get("use", False):
            log.info("[%s] ranker of %s not used: %s", ctx.run_id, ctx.week, meta.get("verdict"))
            return None
        return model, meta
    return ctx.memo("ranker", build)


def inputs_as_of(ctx: RunContext, cut: dt.date) -> ChannelInputs:
    """The recall channels' inputs as of ``cut`` (< W), cut from W's inputs."""
    end = dt.datetime.combine(cut, dt.time())
    inp, h = ctx.inputs, ctx.cfg.history
    inter = inp.interactions.where(F.col(C.TS) < F.lit(end))
    tracks = inp.tracks.where(F.coalesce(F.col("created_at"), F.lit(end)) <= F.lit(end))
    prompts = inp.prompts.where(F.coalesce(F.col("created_at"), F.lit(end)) < F.lit(end))
    seeds = hist.build_history(inter, cut, last_n=h.last_n, **h.seed_settings())
    return ChannelInputs(ctx.spark, week=cut, tracks=tracks, interactions=inter, prompts=prompts, seeds=seeds,
                         heard=hist.heard_tracks(inter, cut), track_embeddings=ctx.track_embeddings,
                         prompt_embeddings=ctx.prompt_embeddings, model_version=ctx.emb_version,
                         history=h.seed_settings())


class TrainRankerStage(Stage):
    name = "train.ranker"
    reads = ("interactions", "tracks", "embeddings (content / prompt channels)",
             "recall_candidates[L] (when an earlier run wrote them)")
    persists = ("<model_dir>/week=<W>/ranker",)
    after = ("embed",)

    def skip_reason(self, ctx: RunContext) -> Optional[str]:
        return None if ctx.cfg.ranker.enabled else "disabled in config"

    def done(self, ctx: RunContext) -> bool:
        if ctx.succeeded(self.name) is None or not exists(join(ranker_path(ctx), "metadata"), ctx.spark):
            return False
        from ...common import read_metadata

        return read_metadata(ctx.spark, join(ranker_path(ctx), "metadata")).get("config_fingerprint") == ctx.fingerprint

    def run(self, ctx: RunContext) -> StageReport:
        from ...ranking.fusion import fuse
        from ...history import label_positives
        from ...ranking.ranker import (candidate_features, fit_ranker, label_window, ranker_gain, save_ranker,
                                       weekly_event_counts)

        rc, fc, week = ctx.cfg.ranker, ctx.cfg.fusion, ctx.week
        rep = StageReport()
        inter = ctx.inputs.interactions
        cut = label_window(weekly_event_counts(inter), week, rc.label_share, rc.min_label_events, rc.max_label_weeks)
        if cut is None:
            rep.skipped = f"no events before a label window of {week}"
            return rep
        rep.message = f"label window [{cut}, {week})"
        pos = label_positives(inter, cut, week)
        known = inter.where(F.col(C.TS) < F.lit(dt.datetime.combine(cut, dt.time()))).select(C.USER).distinct()
        users = pos.select(C.USER).distinct().join(known, C.USER, "left_semi")
        n_users = users.count()
        rep.counts.update(label_weeks=float((week - cut).days // 7), label_users=float(n_users))
        if n_users > rc.max_train_users:
            frac = rc.max_train_users / float(n_users)
            bucket = (F.abs(F.xxhash64(F.col(C.USER), F.lit(int(rc.seed)))) % 100000) / 100000.0
            users = users.where(bucket < F.lit(frac))
            rep.counts["user_fraction"] = round(frac, 4)
        users = ctx.cache(users)
        inputs = inputs_as_of(ctx, cut).for_users(users)
        parts = []
        stored = ctx.tables.read("recall_candidates").where(F.col("week_start") == F.lit(cut)) \
            if rc.reuse_recall else None
        reused = []
        for name in active_channels(ctx):
            if stored is not None:
                have = stored.where(F.col(C.CHANNEL) == name)
                if have.limit(1).count() > 0:
                    parts.append(have.join(users, C.USER, "left_semi").drop("week_start"))
                    reused.append(name)
                    continue
            model, why = fit_channel(name, ctx.cfg, inputs)
            if model is None:
                log.warning("train.ranker: channel %s as of %s: %s", name, cut, why)
                continue
            parts.append(model.recommend(inputs, recall_registry.candidates_per_user(ctx.cfg.recall, name)))
        if reused:
            rep.counts["reused_channels"] = float(len(reused))
        if not parts:
            rep.skipped = f"no recall channel produced candidates as of {cut}"
            return rep
        recall = parts[0]
        for p in parts[1:]:
            recall = recall.unionByName(p.select(*recall.columns))
        recall = ctx.cache(recall)
        fused = fuse(recall, fc.channel_weights, method=fc.method, rrf_k=fc.rrf_k,
                     default_weight=fc.default_channel_weight,
                     cold_user_weights=fc.cold_user_channel_weights)
        feats = candidate_features(recall, fused, inputs.interactions, inputs.tracks, cut)
        train = ctx.cache(feats.join(pos.withColumn("label", F.lit(1.0)), [C.USER, C.TRACK], "left")
                          .fillna(0.0, subset=["label"]))
        stats = train.agg(F.count(F.lit(1)).alias("n"), F.sum("label").alias("p")).first()
        rep.rows_in, n_pos = int(stats["n"]), int(stats["p"] or 0)
        rep.counts["positives"] = float(n_pos)
        if n_pos < rc.min_positives or n_pos == rep.rows_in:
            rep.skipped = (f"only {n_pos} of {rep.rows_in} candidates of the label window [{cut}, {week}) were "
                           f"played (min_positives {rc.min_positives})")
            return rep
        model, report = fit_ranker(train, model=rc.model, max_iter=rc.max_iter, max_depth=rc.max_depth,
                                   step_size=rc.step_size, reg_param=rc.reg_param, seed=rc.seed,
                                   holdout_share=rc.holdout_share, k=ctx.cfg.rerank.playlist_size,
                                   max_rows=rc.max_train_rows, blend_weights=rc.blend_weights, blend_alone=rc.blend_alone,
                                   pair_negatives=rc.pair_negatives, scale=fc.final_scale, rrf_k=fc.rrf_k)
        k = ctx.cfg.rerank.playlist_size
        gain = ranker_gain(report, k)
        use = gain is not None and gain > 0
        cross = report.get(f"holdout_crossfit_ndcg@{k}")
        verdict = (f"{report.get('blend')} held-out NDCG@{k} {'n/a' if cross is None else f'{cross:.4f}'} "
                   f"(cross-fitted; ranker alone {report[f'holdout_ndcg@{k}']:.4f}) vs fused order "
                   f"{report[f'holdout_fusion_ndcg@{k}']:.4f} on {report.get('holdout_users')} users"
                   if gain is not None else "no held-out positives")
        meta = {**report, "label_cutoff": cut.isoformat(), "week": week.isoformat(), "use": bool(use),
                "verdict": verdict, "reused_channels": reused,
                "config_fingerprint": ctx.fingerprint}
        save_ranker(ctx.spark, model, ranker_path(ctx), meta)
        log.info("[%s] train.ranker (%s): %d rows, %d positives, %s -> %s", ctx.run_id, rc.model, rep.rows_in,
                 n_pos, verdict, "used" if use or not rc.require_gain else "not used")
        log.info("[%s] train.ranker feature weights (largest first): %s", ctx.run_id,
                 dict(list(report["feature_weights"].items())[:8]))
        rep.rows_out = report["rows"]
        rep.message = f"{rep.message}; {verdict}; {'used' if use or not rc.require_gain else 'not used'}"
        rep.counts.update({kk: float(v) for kk, v in report.items() if isinstance(v, (int, float))})
        rep.counts["used"] = float(use or not rc.require_gain)
        return rep


__all__ = ["TrainRankerStage", "ranker_for_week", "ranker_path", "RECALL_CHANNELS"]
