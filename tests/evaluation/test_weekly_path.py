"""The ``pipeline`` method is the weekly job: materialisation of a data set into the platform's
tables (known rows), and one tiny weekly run whose playlists are exactly what gets scored."""

import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys_spark.evaluation import methods as M
from recsys_spark.evaluation.evaluate import evaluate
from recsys_spark.evaluation.loaders import EvalDataset
from recsys_spark.evaluation.split import temporal_split
from recsys_spark.evaluation.weekly_path import materialise
from recsys_spark.tables import Tables

SCHEMA = "user_id string, track_id string, event_ts timestamp, event_type string, weight double, event_date date"


def _d(day, hour=12):
    return dt.datetime(2024, 2, day, hour)


@pytest.fixture(scope="module")
def small(spark):
    """Six users, tracks A..H; train events on Feb 1-24, test events on Monday Feb 26 (the cutoff)."""
    train = [("u1", "A", 1), ("u1", "B", 2), ("u1", "C", 8), ("u2", "A", 3), ("u2", "B", 5), ("u2", "D", 9),
             ("u3", "B", 4), ("u3", "C", 6), ("u3", "E", 12), ("u4", "A", 7), ("u4", "D", 13), ("u4", "E", 15),
             ("u5", "C", 10), ("u5", "E", 16), ("u5", "F", 19), ("u6", "F", 11), ("u6", "A", 20), ("u6", "B", 22),
             ("u1", "F", 23), ("u2", "E", 24), ("u3", "F", 24), ("u4", "B", 24), ("u5", "A", 24), ("u6", "C", 24),
             ("u1", "E", 17), ("u2", "F", 18), ("u3", "A", 14)]
    test = [("u1", "D", 26), ("u2", "C", 26), ("u4", "F", 26), ("u5", "H", 26)]   # H never in train
    rows = [(u, t, _d(day, 0 if day == 26 else 12), "rating", 1.0, dt.date(2024, 2, day)) for u, t, day in train + test]
    inter = spark.createDataFrame(rows, SCHEMA)
    # a partial catalogue: titles/genres for some tracks; G created before the cutoff without events
    # (kept), Z created after it (dropped)
    tracks = spark.createDataFrame(
        [("A", "Song A", "rock", None), ("B", "Song B", None, None), ("G", "Song G", "jazz", _d(20)),
         ("Z", "Song Z", "pop", _d(27))], "track_id string, title string, genre string, created_at timestamp")
    return EvalDataset("small", inter, tracks=tracks, source="hand-made")


def test_materialise_writes_train_only_and_leaves_unknowns_null(spark, small, tmp_path):
    split = temporal_split(small.interactions)
    assert split.cutoff == dt.datetime(2024, 2, 26)
    tables = Tables(spark, warehouse=str(tmp_path / "wh"))
    cov = materialise(spark, small, split, tables)
    inter = tables.read("interactions")
    assert inter.count() == 27 and inter.where(F.col("event_ts") >= F.lit(split.cutoff)).count() == 0
    got = tables.read("tracks").select("track_id", "creator_id", "title", "genre", "play_count", "audio_uri",
                                       "created_at")
    want_rows = [("A", "", "Song A", "rock", None, None, None),
                 ("B", "", "Song B", None, None, None, None),
                 ("C", "", None, None, None, None, None),
                 ("D", "", None, None, None, None, None),
                 ("E", "", None, None, None, None, None),
                 ("F", "", None, None, None, None, None),
                 ("G", "", "Song G", "jazz", None, None, _d(20))]
    want = spark.createDataFrame(want_rows, got.schema)
    assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)
    assert cov["tracks"] == 7 and cov["tracks_with_creator"] == 0 and cov["tracks_with_stats"] == 0
    assert cov["tracks_with_genre"] == 2 and cov["tracks_with_audio_uri"] == 0 and cov["user_prompts"] == 0


@pytest.mark.slow  # one whole weekly run
def test_pipeline_method_scores_the_weekly_jobs_playlists(spark, small, tmp_path):
    """One weekly run (tiny settings): the metrics entry says path "weekly", its recs are the
    discover_weekly rows written for the test users, and missing inputs skip with the run's reason."""
    from conftest import TINY_OVERRIDES

    from recsys_spark.config import load_config

    # embeddings.enabled=false (a data set without audio): the content, prompt and creator stages
    # skip with the weekly run's own reason
    # (ALS off keeps its three weekly runs short: ALS runs in the tiny chain's weekly runs)
    cfg = load_config(overrides=TINY_OVERRIDES + ["rerank.playlist_size=3", "embeddings.enabled=false",
                                                  "recall.als.enabled=false"])
    res = evaluate(spark, small, ["pipeline"], k=3, beyond=False, cfg=cfg, n_resamples=100, fail_fast=True)
    m = res["methods"]["pipeline"]
    assert m["path"] == "weekly" and m["week"] == "2024-02-26"
    stages = {r["stage"]: r for r in m["stage_log"]}
    for stage in ("embed", "recall.content", "recall.prompt", "aggregate.creators"):
        assert stages[stage]["status"] == "skipped" and "embeddings disabled" in stages[stage]["skipped"], stage
    for stage in ("recall.popular", "recall.item_cf", "rank", "write"):
        assert stages[stage]["status"] == "succeeded", stage
    assert stages["recall.als"]["status"] == "skipped" and stages["recall.als"]["skipped"] == "disabled in config"
    # 27 train events: too few labelled examples for the DIN (the rank stage then fuses without it)
    assert stages["train.din"]["status"] == "skipped" and "labelled examples" in stages["train.din"]["skipped"]
    # steady state (the default): the DIN's pre-check passes on its 2 label weeks (only the set it
    # builds is too small), so their recall stages ran first, each as of its own Monday, and W's
    # DIN drew its exposure negatives from them
    assert m["steady_state"] is True and [w["week"] for w in m["warm_up"]] == ["2024-02-12", "2024-02-19"]
    assert stages["train.din"]["counts"]["exposure_negative_weeks"] == 2.0
    assert stages["write"]["counts"]["users"] == 6.0   # the stage's own counts travel with the figure
    # what was scored is what the weekly job wrote for the test users (u1, u2, u4; u5's H is unknown)
    wh = Tables(spark, warehouse=m["warehouse"])
    assert wh.read("creator_embeddings").count() == 0   # the write stage did without them
    assert sorted(r["week_start"] for r in wh.read("recall_candidates").select("week_start").distinct().collect()) == [
        dt.date(2024, 2, 12), dt.date(2024, 2, 19), dt.date(2024, 2, 26)]
    dw = wh.read("discover_weekly").where(F.col("week_start") == F.lit(dt.date(2024, 2, 26)))
    rows = {}
    for r in dw.select("user_id", "position", "track_id").collect():
        rows.setdefault(r.user_id, {})[r.position] = r.track_id
    assert set(rows) == {"u1", "u2", "u3", "u4", "u5", "u6"}   # every user gets a playlist
    truth = {"u1": {"D"}, "u2": {"C"}, "u4": {"F"}, "u5": {"H"}}
    recalls = [sum(1 for p in range(1, 4) if rows[u].get(p) in t) / min(3, len(t)) for u, t in sorted(truth.items())]
    assert res["test_users"] == 4
    assert m["recall@3"] == pytest.approx(sum(recalls) / 4)
    assert m["recall@3_ci95"][0] <= m["recall@3"] <= m["recall@3_ci95"][1]
    assert m["train_items_recommended"] == 0
    # the funnel reads the same run's tables
    assert [r["stage"] for r in res["funnel"]["pipeline"]][-1] == "final playlist"
