"""Recall-only runs and the weeks a weekly run reads: ``run_recall`` writes exactly week L's
``recall_candidates`` (as of L), a weekly run of L resumes them, and the steady-state evaluation
(``warm_up``) gives W's DIN the exposure weeks a platform running every Monday has."""

import datetime as dt

import pytest
from stage_fixtures import W, make_cfg, make_ctx, write_platform

from pyspark.sql import functions as F

from recsys_spark.pipeline import completed_stages, exposure_weeks, warm_up, week_is_complete
from recsys_spark.pipeline.stages import TrainDinStage

L = dt.date(2026, 11, 16)  # the hand platform's last label week before W; only u1 played before it


@pytest.fixture
def platform(spark, tmp_path):
    def build(*overrides):
        cfg = make_cfg(tmp_path, "embeddings.enabled=false", *overrides)
        tables = make_ctx(spark, cfg).tables
        write_platform(spark, tables)
        return cfg, tables
    return build


def test_exposure_weeks_are_the_weeks_the_runs_stages_read(spark, platform):
    # too few labelled plays for the DIN (it would skip): no earlier week is read
    cfg, tables = platform()
    assert exposure_weeks(spark, cfg, tables, W) == []
    # 60 negatives per positive: the DIN trains on (reads) its label weeks 11-02, 11-09, 11-16; only
    # 11-16 has an event before it (u1 t1 on 11-10)
    cfg = cfg.replace(**{"din.negatives_per_positive": 60})
    assert exposure_weeks(spark, cfg, tables, W) == [L]
    assert exposure_weeks(spark, cfg.replace(**{"din.enabled": False}), tables, W) == []
    # the ranker reuses recall_candidates of its label cutoff: 11-16 holds 4 of the 5 events before W
    ranker = cfg.replace(**{"din.enabled": False, "ranker.enabled": True})
    assert exposure_weeks(spark, ranker, tables, W) == [L]
    assert exposure_weeks(spark, ranker.replace(**{"ranker.reuse_recall": False}), tables, W) == []


def test_weekly_warm_up_runs_week_ls_recall_only_and_gives_ws_din_its_exposure_negatives(
        spark, tmp_path, platform, monkeypatch, capsys):
    """One recall-only run (the costly part, so one test), started as ``recsys weekly --warm-up``
    (W's own run faked): what it writes and logs, that a weekly run of L would resume it, W's DIN
    before and after it, and that a second warm-up leaves L alone."""
    import recsys_spark.pipeline as pipeline
    from recsys_spark.cli import weekly_main
    from recsys_spark.evaluation.weekly_path import stage_log

    # 60 negatives per positive: the DIN trains (exposure_weeks: [L]); ALS off keeps the test short
    more = ["din.negatives_per_positive=60", "recall.als.enabled=false"]
    cfg, tables = platform(*more)
    first = TrainDinStage().run(make_ctx(spark, cfg))
    assert first.counts["exposure_negative_weeks"] == 0.0   # a warehouse's first run
    built = []
    monkeypatch.setattr(pipeline, "run_weekly", lambda spark, cfg, week, **kw: built.append(week) or
                        pipeline.WeeklyResult("fake", week, 0, 0, 0, summary="W's run (faked)"))
    sets = [f"storage.warehouse={tmp_path / 'warehouse'}", f"storage.model_dir={tmp_path / 'models'}",
            "spark.shuffle_partitions=2", "embeddings.enabled=false", *more]  # make_cfg's: the same config
    assert weekly_main(["--week", str(W), "--warm-up", *[a for x in sets for a in ("--set", x)]]) == 0
    assert built == [W] and "warm-up: recall stages of 2026-11-16 (recall-2026-11-16" in capsys.readouterr().out
    runs = tables.read("runs").where(F.col("job") == "recall")
    (run_id, config_hash), = {(r["run_id"], r["config_hash"]) for r in runs.collect()}
    assert config_hash == cfg.fingerprint()
    assert [s["stage"] for s in stage_log(tables, run_id)] == ["load", "embed", "recall.popular", "recall.item_cf",
                                                                "recall.als", "recall.content", "recall.prompt", "run"]
    rc = tables.read("recall_candidates")
    assert {r["week_start"] for r in rc.select("week_start").distinct().collect()} == {L}
    # as of L only u1 has a history (t1, 11-10): t1 is heard, so never a candidate; item_cf ran and
    # found no co-played track
    assert {r["user_id"] for r in rc.select("user_id").distinct().collect()} == {"u1"}
    assert rc.where(F.col("track_id") == "t1").count() == 0
    assert {r["channel"] for r in rc.select("channel").distinct().collect()} == {"popular"}
    assert tables.read("discover_weekly").count() == 0
    assert not week_is_complete(tables, L)          # a recall-only run is not a finished week
    done = completed_stages(tables, L, cfg.fingerprint())   # what a weekly run of L resumes
    assert {s for s in done if s.startswith("recall.")} == {"recall.popular", "recall.item_cf"}
    assert set(done.values()) == {run_id}
    assert completed_stages(tables, L, cfg.replace(**{"rerank.creator_cap": 1}).fingerprint()) == {}

    steady = TrainDinStage().run(make_ctx(spark, cfg, run_id="run-2"))
    assert steady.counts["exposure_negative_weeks"] == 1.0
    # past weeks are not rewritten: L has candidates now, under any configuration
    assert warm_up(spark, cfg.replace(**{"recall.popularity.candidates": 5}), W, tables) == []
    assert tables.read("runs").where(F.col("job") == "recall").select("run_id").distinct().count() == 1
