"""``train.din``: DIN trained on the weeks before W -> ``<model_dir>/week=<W>/din``."""

from __future__ import annotations

import logging
from typing import Optional, Tuple

from pyspark.sql import functions as F

from ...artifacts import exists, join
from ...weeks import previous_weeks
from ..context import RunContext
from ..stage import Stage, StageReport

log = logging.getLogger(__name__)

#: fewer labelled examples than this in the training weeks: DIN is not trained for W
MIN_TRAIN_ROWS = 50
#: an upper bound of the training set below this is made exact before anything is built
EXACT_BOUND_BELOW = 100 * MIN_TRAIN_ROWS


def din_model_ready(ctx: RunContext) -> bool:
    """A DIN for W, trained with this configuration, is there (trained or resumed in this run)."""
    return "train.din" in ctx.finished and exists(join(ctx.din_path, "din_state.pt"), ctx.spark)


def training_size(interactions, label_weeks, dc) -> Tuple[int, Optional[int], Optional[str]]:
    """``(estimated rows, exact positives or None, skip reason or None)`` of the DIN's training set
    on ``label_weeks``, without building it (``dc``: the ``din`` config section).

    One pass over the label weeks' events gives an upper bound of the set (positive pairs x
    (1 + negatives), before removing tracks heard earlier): below :data:`MIN_TRAIN_ROWS` nothing more
    is built (histories and negatives are the costly part). A bound below :data:`EXACT_BOUND_BELOW`
    is then made exact (``count_positives``: one anti-join per label week; MovieLens' 3 weeks before
    W bound 220 examples, and the set built from them held 3). The bound also sizes the user sample
    *before* building when the set would exceed the cap (it is collected to the driver for
    training); ``train_din`` still enforces the cap."""
    from ...ranking.din_spark import count_positives, estimate_training_rows

    per_pos = 1 + dc.negatives_per_positive
    est = estimate_training_rows(interactions, label_weeks, dc.negatives_per_positive)
    if est < MIN_TRAIN_ROWS:
        return est, None, f"only {est // per_pos} positive plays (at most {est} labelled examples)"
    if est < EXACT_BOUND_BELOW:
        n_pos = count_positives(interactions, label_weeks)
        if n_pos * per_pos < MIN_TRAIN_ROWS:
            return est, n_pos, (f"only {n_pos} new positive plays by users with a history (at most "
                                f"{n_pos * per_pos} labelled examples)")
        return est, n_pos, None
    return est, None, None


class TrainDinStage(Stage):
    name = "train.din"
    reads = ("interactions", "recall_candidates of the training weeks (exposure negatives)",
             "track_embeddings (content features)")
    persists = ("<model_dir>/week=<W>/din",)
    after = ("embed",)

    def skip_reason(self, ctx: RunContext) -> Optional[str]:
        return None if ctx.cfg.din.enabled else "disabled in config"

    def done(self, ctx: RunContext) -> bool:
        return (ctx.succeeded(self.name) is not None
                and exists(join(ctx.din_path, "din_state.pt"), ctx.spark))

    def run(self, ctx: RunContext) -> StageReport:
        from ...ranking.din_spark import build_training_set, train_din

        dc, week, inp = ctx.cfg.din, ctx.week, ctx.inputs
        rep = StageReport()
        label_weeks = previous_weeks(week, dc.train_weeks)
        pool = ctx.tables.read("recall_candidates").where(F.col("week_start").isin(*label_weeks)) \
            .select("user_id", "track_id", "week_start")
        est, n_pos, why = training_size(inp.interactions, label_weeks, dc)
        rep.counts["estimated_rows"] = float(est)
        if n_pos is not None:
            rep.counts["positives"] = float(n_pos)
        if why is not None:
            rep.rows_in = 0
            rep.skipped = f"{why} in the {dc.train_weeks} weeks before {week}"
            return rep
        frac = min(1.0, dc.max_train_rows / est) if dc.max_train_rows else 1.0
        rep.counts["user_fraction"] = round(frac, 4)
        if frac < 1.0:
            log.info("train.din: ~%d examples estimated > max_train_rows %d: building them for %.1f%% of "
                     "the users", est, dc.max_train_rows, 100 * frac)
        h = ctx.cfg.history
        train = ctx.cache(build_training_set(
            ctx.spark, inp.interactions, label_weeks, negatives_pool_df=pool, n_negatives=dc.negatives_per_positive,
            seed=dc.seed, max_history=dc.max_history, popularity_share=dc.popularity_share,
            user_fraction=frac, **h.seed_settings()))
        n_train = train.count()
        rep.rows_in = n_train
        rep.counts["exposure_negative_weeks"] = float(pool.select("week_start").distinct().count())
        if n_train < MIN_TRAIN_ROWS:
            rep.skipped = f"only {n_train} labelled examples in the {dc.train_weeks} weeks before {week}"
            return rep
        track_emb = ctx.track_embeddings
        feats = track_emb.select("track_id", "embedding") if (dc.use_content and track_emb is not None) else None
        artifact, metrics = train_din(
            train, track_embeddings=feats, embedding_dim=dc.embedding_dim,
            attention_hidden=dc.attention_hidden, mlp_hidden=dc.mlp_hidden,
            softmax_attention=dc.softmax_attention, use_content=dc.use_content and feats is not None,
            max_history=dc.max_history, epochs=dc.epochs, batch_size=dc.batch_size, lr=dc.lr,
            patience=dc.patience, seed=dc.seed, device=dc.device, min_count=dc.min_count,
            max_rows=dc.max_train_rows, use_torch_distributor=dc.use_torch_distributor,
            num_processes=dc.num_processes, loss=dc.loss)
        artifact.save(ctx.din_path, root=ctx.model_dir, spark=ctx.spark)
        rep.rows_out = n_train
        rep.counts.update({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
        return rep
