"""``train.din``: skipped with its reason when there are too few labelled examples; ``done`` needs
a succeeded run with this configuration and the saved model."""

import os

from stage_fixtures import W, make_cfg, make_ctx, write_platform
from stage_fixtures import hand_platform  # noqa: F401 (fixture)

from recsys_spark.pipeline.stages import TrainDinStage
from recsys_spark.pipeline.stages.train_din import din_model_ready
from recsys_spark.runlog import RunLog


def test_too_few_examples_skip_training_and_leave_no_model(spark, hand_platform):
    _, ctx = hand_platform
    stage = TrainDinStage()
    assert stage.skip_reason(ctx) is None
    rep = stage.run(ctx)
    # label weeks 11-02, 11-09, 11-16 hold 4 positive (user, track) plays (u1 t1, u1 t2, u2 t1, u2 t3;
    # u3's skip weighs 0): at most 4 x (1 + 4 negatives) = 20 examples, below the 50 DIN needs, so
    # nothing else is built
    assert rep.counts["estimated_rows"] == 20.0
    assert rep.rows_out is None and rep.rows_in == 0
    assert rep.skipped == f"only 4 positive plays (at most 20 labelled examples) in the 3 weeks before {W}"
    assert not os.path.exists(ctx.din_path)
    assert not din_model_ready(ctx) and not stage.done(ctx)


def test_exact_positive_count_skips_before_building(spark, tmp_path):
    # 20 negatives per positive: the bound 4 x 21 = 84 passes, so the positives are counted exactly:
    # u1 t1 (11-10) and u2 t1 / t3 (11-18) come from users without a history before their label
    # week; u1 t2 (11-17) is the one new play of a user with a history (t1): 1 x 21 = 21 < 50
    cfg = make_cfg(tmp_path, "embeddings.enabled=false", "din.negatives_per_positive=20")
    ctx = make_ctx(spark, cfg)
    write_platform(spark, ctx.tables)
    rep = TrainDinStage().run(ctx)
    assert rep.counts["estimated_rows"] == 84.0 and rep.counts["positives"] == 1.0
    assert rep.skipped == (f"only 1 new positive plays by users with a history (at most 21 labelled examples) "
                           f"in the 3 weeks before {W}")
    assert not os.path.exists(ctx.din_path)


def test_built_set_below_the_minimum_skips_training(spark, tmp_path):
    # 60 negatives per positive: 1 x 61 passes the exact bound, so the set is built; it holds 1 row
    # (u1 t2): the popularity sampler's only track before 11-16 is t1, which u1 has heard
    cfg = make_cfg(tmp_path, "embeddings.enabled=false", "din.negatives_per_positive=60")
    ctx = make_ctx(spark, cfg)
    write_platform(spark, ctx.tables)
    rep = TrainDinStage().run(ctx)
    assert rep.counts["positives"] == 1.0
    assert rep.rows_in == 1 and rep.rows_out is None
    assert rep.skipped == f"only 1 labelled examples in the 3 weeks before {W}"
    assert not os.path.exists(ctx.din_path)


def test_disabled_and_done(spark, tmp_path):
    off = make_ctx(spark, make_cfg(tmp_path / "a", "din.enabled=false"))
    assert TrainDinStage().skip_reason(off) == "disabled in config"

    cfg = make_cfg(tmp_path / "b", "embeddings.enabled=false")
    ctx = make_ctx(spark, cfg)
    write_platform(spark, ctx.tables)
    os.makedirs(ctx.din_path)
    with open(os.path.join(ctx.din_path, "din_state.pt"), "wb") as fh:
        fh.write(b"state")
    assert not TrainDinStage().done(ctx)                      # a model file but no succeeded run
    with RunLog(ctx.tables, "din-run", W, "weekly", ctx.fingerprint, progress_seconds=0).stage("train.din") as st:
        st.rows_out = 60
    ctx = make_ctx(spark, cfg, "rerun")
    assert TrainDinStage().done(ctx)
    assert not din_model_ready(ctx)                           # not resumed by the runner yet
    ctx.finished.add("train.din")
    assert din_model_ready(ctx)
    os.remove(os.path.join(ctx.din_path, "din_state.pt"))
    assert not TrainDinStage().done(make_ctx(spark, cfg, "rerun-2"))
