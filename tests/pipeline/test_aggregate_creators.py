"""``aggregate.creators``: skip reasons, mean pooling of hand-made track vectors, ``done``."""

import datetime as dt

import pytest
from stage_fixtures import W, log_runs, make_cfg, make_ctx, write_platform

from recsys_spark.pipeline.stages import AggregateCreatorsStage
from recsys_spark.pipeline.stages.aggregate_creators import creators_for_diversity
from recsys_spark.tables import ALL_TABLES

VECTORS = {"t1": [1.0, 0.0], "t3": [0.0, 1.0], "t5": [0.6, 0.8]}  # unit vectors; t1 by c1, t3 by c2, t5 by c3


def _ctx(spark, tmp_path, *overrides, **platform):
    ctx = make_ctx(spark, make_cfg(tmp_path, "embeddings.model_version=clap-test", "aggregation.method=mean",
                                   *overrides))
    write_platform(spark, ctx.tables, **platform)
    rows = [(t, ctx.emb_version or "none", v, 1, dt.datetime(2026, 11, 1)) for t, v in VECTORS.items()]
    ctx.tables.overwrite("track_embeddings", spark.createDataFrame(rows, ALL_TABLES["track_embeddings"].schema))
    return ctx


def test_skip_reasons(spark, tmp_path):
    stage = AggregateCreatorsStage()
    full = _ctx(spark, tmp_path / "e")
    assert stage.skip_reason(full) is None

    def on_full(*overrides):
        """A run over the same complete platform (``full``'s tables) with other settings."""
        return make_ctx(spark, make_cfg(tmp_path / "e", "embeddings.model_version=clap-test", "aggregation.method=mean",
                                        *overrides))

    assert stage.skip_reason(on_full("aggregation.enabled=false")) == "disabled in config"
    assert stage.skip_reason(on_full("embeddings.enabled=false")) == "no track embeddings (embeddings disabled)"
    assert stage.skip_reason(_ctx(spark, tmp_path / "c", creators=False)) == "tracks have no creator_id"
    assert stage.skip_reason(_ctx(spark, tmp_path / "d", audio=False)) == "no track embeddings (no audio in the data set)"


def test_mean_pooling_writes_one_row_per_embedded_creator_and_is_then_done(spark, tmp_path):
    ctx = _ctx(spark, tmp_path)
    stage = AggregateCreatorsStage()
    assert creators_for_diversity(ctx.tables, W) is None and not stage.done(ctx)
    rec = log_runs(ctx, [stage])["aggregate.creators"]
    assert rec.status == "succeeded" and rec.rows_out == 3 and rec.message == "method mean"
    rows = {r["creator_id"]: r for r in ctx.partition("creator_embeddings").collect()}
    assert set(rows) == {"c1", "c2", "c3"}
    for creator, track in (("c1", "t1"), ("c2", "t3"), ("c3", "t5")):
        assert rows[creator]["n_tracks"] == 1
        assert list(rows[creator]["embedding"]) == pytest.approx(VECTORS[track], abs=1e-6)
    assert creators_for_diversity(ctx.tables, W).count() == 3
    assert stage.done(make_ctx(spark, ctx.cfg, "run-2"))
    ctx.tables.replace_partition("creator_embeddings", ctx.partition("creator_embeddings").limit(0),
                                 "week_start", W)
    assert not stage.done(make_ctx(spark, ctx.cfg, "run-3"))
