"""``embed``: CLAP audio embeddings of new tracks and text embeddings of new prompts, and (with
``aesthetics.enabled``) Audiobox Aesthetics scores of new tracks' audio (all incremental)."""

from __future__ import annotations

import datetime as dt
from typing import Optional

from pyspark.sql import functions as F

from ..context import RunContext
from ..stage import Stage, StageReport


def _aesthetics_spec(ctx: RunContext):
    from ...embeddings.aesthetics import AestheticsSpec

    return AestheticsSpec.from_conf(ctx.cfg.aesthetics) if ctx.cfg.aesthetics.enabled else None


def _vector_counts(ctx: RunContext) -> dict:
    v = ctx.emb_version
    out = {"track_vectors": ctx.tables.read("track_embeddings").where(F.col("model_version") == v).count(),
           "text_vectors": ctx.tables.read("prompt_embeddings").where(F.col("model_version") == v).count()}
    aes = _aesthetics_spec(ctx)
    if aes is not None:
        out["aesthetics_rows"] = ctx.tables.read("track_aesthetics").where(
            F.col("model_version") == aes.resolved_model_version()).count()
    return out


class EmbedStage(Stage):
    name = "embed"
    reads = ("tracks (audio_uri, prompt)", "user_prompts", "track_embeddings", "prompt_embeddings", "track_aesthetics")
    persists = ("track_embeddings[model_version]", "prompt_embeddings[model_version]",
                "track_aesthetics[model_version] (aesthetics.enabled)")

    def _track_prompts(self, ctx: RunContext) -> bool:
        p = ctx.cfg.recall.prompt
        return p.enabled and p.target == "track_prompt"

    def skip_reason(self, ctx: RunContext) -> Optional[str]:
        if not ctx.cfg.embeddings.enabled:
            return "embeddings disabled in config"
        if not (ctx.has_audio or ctx.has_prompts or (self._track_prompts(ctx) and ctx.has_track_prompts)):
            return "no audio and no prompts in the data set: nothing to embed"
        return None

    def done(self, ctx: RunContext) -> bool:
        """A succeeded run of W with this fingerprint, and the vectors it counted are still there."""
        row = ctx.succeeded(self.name)
        if row is None:
            return False
        counts = row["counts"] or {}
        if "track_vectors" not in counts or (ctx.cfg.aesthetics.enabled and "aesthetics_rows" not in counts):
            return False
        now = _vector_counts(ctx)
        return all(now[k] >= counts.get(k, 0.0) for k in now)

    def run(self, ctx: RunContext) -> StageReport:
        from ...embeddings.clap import EncoderSpec
        from ...embeddings.jobs import run_embedding_stage

        ec = ctx.cfg.embeddings
        spec = EncoderSpec.from_conf(ec)
        counts = run_embedding_stage(ctx.spark, ctx.tables, spec, batch_size=ec.batch_size, run_id=ctx.run_id,
                                     as_of=dt.datetime.combine(ctx.week, dt.time()),
                                     track_prompts=self._track_prompts(ctx), aesthetics=_aesthetics_spec(ctx),
                                     aesthetics_batch_size=ctx.cfg.aesthetics.batch_size)
        rep = StageReport(rows_out=int(counts.get("tracks_embedded", 0)) + int(counts.get("texts_embedded", 0)))
        rep.counts.update({k: float(v) for k, v in counts.items() if isinstance(v, (int, float, bool))})
        rep.counts.update({k: float(v) for k, v in _vector_counts(ctx).items()})
        untrained = []
        if counts.get("untrained"):
            untrained.append("CONTENT EMBEDDINGS ARE UNTRAINED: no CLAP checkpoint at embeddings.checkpoint_path; "
                             "audio/text vectors come from random weights")
        if counts.get("aesthetics_untrained"):
            untrained.append("AESTHETICS SCORES ARE UNTRAINED: no Audiobox Aesthetics checkpoint at "
                             "aesthetics.checkpoint_path; CE/CU/PC/PQ come from random weights")
        if untrained:
            rep.skipped = "; ".join(untrained)
        return rep
