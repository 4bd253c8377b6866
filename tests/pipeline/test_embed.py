"""The embed stage's skip reasons and its ``done`` check (the vectors it counted are still there).

Running CLAP itself is tested in tests/embeddings/; here ``runs`` rows and vectors are written by
hand so that ``done`` is tested without a model."""

import datetime as dt

from stage_fixtures import W, make_cfg, make_ctx, write_platform

from recsys_spark.pipeline.stages import EmbedStage
from recsys_spark.runlog import RunLog
from recsys_spark.tables import ALL_TABLES

VERSION = "clap-test"  # embeddings.model_version; the resolved version says it is untrained


def _ctx(spark, tmp_path, *overrides, **platform):
    ctx = make_ctx(spark, make_cfg(tmp_path, f"embeddings.model_version={VERSION}", *overrides))
    write_platform(spark, ctx.tables, **platform)
    return ctx


def _vectors(spark, ctx, tracks):
    rows = [(t, ctx.emb_version, [1.0, 0.0], 1, dt.datetime(2026, 11, 1)) for t in tracks]
    ctx.tables.overwrite("track_embeddings", spark.createDataFrame(rows, ALL_TABLES["track_embeddings"].schema))


def _succeeded(ctx, track_vectors, run_id="embed-run"):
    rl = RunLog(ctx.tables, run_id, W, "weekly", ctx.fingerprint, progress_seconds=0)
    with rl.stage("embed") as st:
        st.rows_out = track_vectors
        st.counts.update(track_vectors=float(track_vectors), text_vectors=0.0)


def test_skip_reasons(spark, tmp_path):
    nothing = _ctx(spark, tmp_path / "b", "recall.prompt.target=audio", audio=False, prompts=False)
    assert EmbedStage().skip_reason(nothing) == "no audio and no prompts in the data set: nothing to embed"
    prompts_only = _ctx(spark, tmp_path / "c", audio=False)
    assert EmbedStage().skip_reason(prompts_only) is None
    # the same tables with embeddings off
    off = make_ctx(spark, prompts_only.cfg.replace(**{"embeddings.enabled": False}), "run-off")
    assert EmbedStage().skip_reason(off) == "embeddings disabled in config"
    audio_only = _ctx(spark, tmp_path / "d", "recall.prompt.target=audio", prompts=False)
    assert EmbedStage().skip_reason(audio_only) is None


def test_done_needs_a_succeeded_run_and_the_vectors_it_counted(spark, tmp_path):
    ctx = _ctx(spark, tmp_path)
    assert ctx.emb_version.startswith(VERSION)
    _vectors(spark, ctx, ["t1", "t2"])
    assert not EmbedStage().done(ctx)                        # no run recorded
    _succeeded(ctx, 2)
    ctx = make_ctx(spark, ctx.cfg, "rerun")                  # a new run reads runs afresh
    assert EmbedStage().done(ctx)
    _vectors(spark, ctx, ["t1"])                             # a vector was lost
    assert not EmbedStage().done(make_ctx(spark, ctx.cfg, "rerun-2"))
    other = make_ctx(spark, make_cfg(tmp_path, f"embeddings.model_version={VERSION}", "rerank.creator_cap=3"))
    _vectors(spark, other, ["t1", "t2"])
    assert other.fingerprint != ctx.fingerprint
    assert not EmbedStage().done(other)                       # succeeded with another configuration
