"""The learned ranker: label window, labels, features, list NDCG, fit / save / load / score, and the
ranker's component of the final score, on hand-made data with known answers."""

import datetime as dt
import math

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys_spark.ranking.fusion import final_score
from recsys_spark.history import label_positives
from recsys_spark.ranking.ranker import (FEATURES, blend_options, candidate_features, choose_blend, fit_ranker,
                                         label_window, list_ndcg, load_ranker, pairwise_frame, ranker_gain,
                                         save_ranker, score)

W = dt.date(2024, 3, 4)  # a Monday
INTER = "user_id string, track_id string, event_ts timestamp, weight double"


def _ts(days_before_w, hour=12):
    return dt.datetime.combine(W, dt.time()) - dt.timedelta(days=days_before_w) + dt.timedelta(hours=hour)


def test_label_window_takes_the_fewest_weeks_reaching_the_share_or_the_event_count():
    weeks = [(W - dt.timedelta(weeks=k), n) for k, n in ((1, 10), (2, 10), (3, 30), (4, 50))]  # 100 events
    # 10% of 100 = 10 events: the last week holds them
    assert label_window(weeks, W, 0.1, 10**6, 52) == W - dt.timedelta(weeks=1)
    # 25%: two weeks hold 20 < 25, three hold 50
    assert label_window(weeks, W, 0.25, 10**6, 52) == W - dt.timedelta(weeks=3)
    # the event count is reached first (20 events: two weeks)
    assert label_window(weeks, W, 0.9, 20, 52) == W - dt.timedelta(weeks=2)
    # capped by max_label_weeks
    assert label_window(weeks, W, 0.9, 10**6, 2) == W - dt.timedelta(weeks=2)
    # every event inside the window: no history before L -> no window
    assert label_window(weeks, W, 1.0, 10**6, 52) is None
    assert label_window([], W, 0.1, 100, 52) is None
    # weeks at or after W are ignored
    assert label_window([(W, 100), (W - dt.timedelta(weeks=1), 5), (W - dt.timedelta(weeks=2), 5)], W, 0.5,
                        10**6, 52) == W - dt.timedelta(weeks=1)


def test_label_positives_are_new_positive_plays_in_the_window(spark):
    cut = W - dt.timedelta(days=7)
    inter = spark.createDataFrame([
        ("u1", "a", _ts(10), 1.0),   # before the window: heard
        ("u1", "a", _ts(3), 2.0),    # re-play of a heard track: not a label
        ("u1", "b", _ts(3), 1.0),    # new, positive: label
        ("u1", "c", _ts(2), 0.0),    # skip only: weight 0, not a label
        ("u2", "c", _ts(1), 1.0),    # new for u2: label
        ("u2", "d", _ts(0, hour=30), 1.0),  # at or after W: outside the window
    ], INTER)
    got = sorted(tuple(r) for r in label_positives(inter, cut, W).collect())
    assert got == [("u1", "b"), ("u2", "c")]


def test_candidate_features_known_values(spark):
    recall = spark.createDataFrame([
        ("u1", "x", "item_cf", 0.9, 1), ("u1", "y", "item_cf", 0.3, 2), ("u1", "x", "als", 2.0, 2),
        ("u1", "y", "als", 4.0, 1), ("u1", "z", "popular", 5.0, 1),
    ], "user_id string, track_id string, channel string, score double, rank int")
    fused = spark.createDataFrame([("u1", "x", 0.5), ("u1", "y", 0.4), ("u1", "z", 0.1)],
                                  "user_id string, track_id string, recall_score double")
    inter = spark.createDataFrame([
        ("u1", "h1", _ts(40), 1.0), ("u1", "h2", _ts(3), 1.0),            # u1: 2 tracks, 1 event recent
        ("u2", "x", _ts(2), 1.0), ("u3", "x", _ts(100), 1.0),             # x: 2 listeners, 1 recent
        ("u2", "y", _ts(50), 1.0), ("u2", "z", _ts(5), 0.0),              # y: 1 old listener; z: a skip only
    ], INTER)
    tracks = spark.createDataFrame([("x", "c1"), ("y", "c2"), ("z", None), ("h1", "c1"), ("h2", "c2")],
                                   "track_id string, creator_id string")
    out = candidate_features(recall, fused, inter, tracks, W)
    assert set(FEATURES) <= set(out.columns) and out.count() == 3
    f = {r["track_id"]: r for r in out.collect()}
    # per channel: reciprocal rank, min-max scaled score within (user, channel); 0 = not retrieved
    assert (f["x"]["rr_item_cf"], f["x"]["ns_item_cf"], f["x"]["rr_als"], f["x"]["ns_als"]) == (1.0, 1.0, 0.5, 0.0)
    assert (f["y"]["rr_item_cf"], f["y"]["ns_item_cf"], f["y"]["rr_als"], f["y"]["ns_als"]) == (0.5, 0.0, 1.0, 1.0)
    assert (f["z"]["rr_popular"], f["z"]["ns_popular"], f["z"]["rr_item_cf"]) == (1.0, 1.0, 0.0)
    assert [f[t]["n_channels"] for t in "xyz"] == [2.0, 2.0, 1.0]
    assert [f[t]["recall_rank_pct"] for t in "xyz"] == [0.0, 0.5, 1.0]
    # popularity: log1p(listeners) / log1p(max listeners); x has the most (2)
    assert f["x"]["track_pop"] == pytest.approx(1.0)
    assert f["y"]["track_pop"] == pytest.approx(math.log1p(1) / math.log1p(2))
    assert f["z"]["track_pop"] == 0.0  # skips are no listeners
    assert (f["x"]["track_trend"], f["y"]["track_trend"]) == (0.5, 0.0)
    assert f["x"]["track_age_log"] == pytest.approx(math.log1p(100 - 0.5))
    # the user: 2 heard tracks, 1 event in the last 28 days, last play 2.5 days before W
    assert f["x"]["user_hist_log"] == pytest.approx(math.log1p(2))
    assert f["x"]["user_recent_log"] == pytest.approx(math.log1p(1))
    assert f["x"]["user_idle_log"] == pytest.approx(math.log1p(2.5))
    # creator affinity: half of u1's heard tracks are by c1 (x's creator), half by c2; z has none
    assert (f["x"]["creator_affinity"], f["y"]["creator_affinity"], f["z"]["creator_affinity"]) == (0.5, 0.5, 0.0)


def test_list_ndcg_known_answer(spark):
    df = spark.createDataFrame([
        ("u1", "a", 0.9, 1.0), ("u1", "b", 0.8, 0.0), ("u1", "c", 0.7, 1.0),
        ("u2", "a", 0.9, 0.0), ("u2", "b", 0.1, 1.0),
        ("u3", "a", 0.5, 0.0),   # no positive: not counted
    ], "user_id string, track_id string, s double, label double")
    got, users = list_ndcg(df, "s", k=2)
    # u1: hits at 1 (and 3, beyond k=2): DCG 1, IDCG 1 + 1/log2(3); u2: hit at 2: 1/log2(3) over IDCG 1
    expect = (1 / (1 + 1 / math.log2(3)) + 1 / math.log2(3)) / 2
    assert users == 2 and got == pytest.approx(expect)


def test_choose_blend_picks_the_blend_that_ranks_the_hit_first(spark):
    # every user: c is the hit. fused order a c b, ranker order b c a; scaled recall a 1 b 0 c .6,
    # ranker a 0 b 1 c .8 -> 1:1 blend a .5 b .5 c .7 (c first); 1:4 blend a .2 b .8 c .76 (b first)
    rows = [(f"u{i}", t, r, k, 1.0 if t == "c" else 0.0)
            for i in range(8) for t, r, k in (("a", 1.0, 0.0), ("b", 0.0, 1.0), ("c", 0.6, 0.8))]
    rows.append(("nohit", "a", 1.0, 1.0, 0.0))  # no positive: not counted
    df = spark.createDataFrame(rows, "user_id string, track_id string, recall_score double, ranker_score double, "
                                     "label double")
    opts = blend_options([1.0, 4.0, 0.0])
    assert opts == [("blend_1", 1.0, 1.0), ("blend_4", 1.0, 4.0), ("ranker", 0.0, 1.0)]
    got = choose_blend(df, opts, k=1)
    assert got["holdout_options@1"] == {"blend_1": 1.0, "blend_4": 0.0, "ranker": 0.0}
    assert (got["blend"], got["blend_recall_weight"], got["blend_ranker_weight"]) == ("blend_1", 1.0, 1.0)
    assert got["holdout_crossfit_ndcg@1"] == 1.0
    # no option gains: the earlier option wins the tie; a fold without users: no cross-fitted figure
    flat = choose_blend(df.where("user_id = 'u0'").withColumn("ranker_score", F.lit(0.5)), opts, k=1)
    assert flat["blend"] == "blend_1" and flat["holdout_crossfit_ndcg@1"] is None
    assert ranker_gain({"holdout_crossfit_ndcg@1": None, "holdout_ndcg@1": 0.3, "holdout_fusion_ndcg@1": 0.1},
                       1) == pytest.approx(0.2)
    # too few users to cross-fit: the chosen option's own held-out NDCG, not the ranker alone's
    assert ranker_gain({"holdout_crossfit_ndcg@1": None, "holdout_ndcg@1": 0.3, "holdout_fusion_ndcg@1": 0.1,
                        "blend": "blend_1", "holdout_options@1": {"blend_1": 0.15, "ranker": 0.3}},
                       1) == pytest.approx(0.05)
    # without the alone option (the shipped ranker.blend_alone: false) only blends compete;
    # with no blend weight at all the ranker alone is the only way left
    assert blend_options([1.0, 4.0], alone=False) == [("blend_1", 1.0, 1.0), ("blend_4", 1.0, 4.0)]
    assert blend_options([], alone=False) == [("ranker", 0.0, 1.0)]


def _train_frame(spark, n_users=60):
    """Each user has 20 candidates; the three with the lowest fused recall score are the ones played:
    a ranker learns it, the fused order puts them last."""
    rows = []
    for u in range(n_users):
        for i in range(20):
            feats = {f: 0.0 for f in FEATURES}
            feats["track_pop"] = 0.01 * (u % 3)
            feats["recall_score"] = (20 - i) / 20.0
            label = 1.0 if i >= 17 else 0.0   # the three lowest fused scores were played
            rows.append((f"u{u}", f"t{i}", label, *[feats[f] for f in FEATURES]))
    schema = "user_id string, track_id string, label double, " + ", ".join(f"{f} double" for f in FEATURES)
    return spark.createDataFrame(rows, schema)


@pytest.mark.parametrize("model", ["gbt", "logistic", "pairwise"])
def test_fit_ranker_learns_what_the_fused_order_misses_and_round_trips(spark, tmp_path, model):
    train = _train_frame(spark)
    fitted, rep = fit_ranker(train, model=model, max_iter=10, max_depth=3, seed=0, holdout_share=0.3, k=3)
    assert rep["model"] == model and rep["holdout_users"] > 0 and rep["rows"] + rep["holdout_rows"] == 1200
    assert rep["holdout_fusion_ndcg@3"] == 0.0           # the fused order puts the hits last
    assert rep["holdout_ndcg@3"] > 0.9                    # the ranker puts them first
    # what it learned from: recall_score is the only feature that tells hits apart
    assert next(iter(rep["feature_weights"])) == "recall_score" and len(rep["feature_weights"]) == len(FEATURES)
    if model != "gbt":
        assert rep["feature_weights"]["recall_score"] < 0   # lower fused score -> played
    else:
        assert rep["feature_weights"]["recall_score"] > 0.9
    # ranked alone or weighted 2:1 over the fused score, the hits come first; the gain is cross-fitted
    assert rep["blend"] in ("blend_2", "ranker") and rep["holdout_crossfit_ndcg@3"] > 0.9
    assert ranker_gain(rep, 3) == pytest.approx(rep["holdout_crossfit_ndcg@3"])
    path = str(tmp_path / "ranker")
    save_ranker(spark, fitted, path, {**rep, "use": True})
    loaded, meta = load_ranker(spark, path)
    assert meta["use"] is True and meta["features"] == list(FEATURES)
    a = score(fitted, train).select("user_id", "track_id", "ranker_score")
    b = score(loaded, train).select("user_id", "track_id", "ranker_score")
    assert_df_equality(a, b, ignore_row_order=True)
    assert "_p" not in score(loaded, train).columns


def test_pairwise_frame_pairs_each_positive_with_the_users_own_negatives(spark):
    feats = {"a": 3.0, "b": 1.0, "c": 2.0, "d": 5.0}
    rows = [(u, t, lab, *[feats[t] if f == "recall_score" else 0.0 for f in FEATURES])
            for u, t, lab in (("u1", "a", 1.0), ("u1", "b", 0.0), ("u1", "c", 0.0), ("u2", "d", 1.0))]
    schema = "user_id string, track_id string, label double, " + ", ".join(f"{f} double" for f in FEATURES)
    df = spark.createDataFrame(rows, schema)
    pairs = pairwise_frame(df, negatives_per_positive=5).collect()
    # u1: a against b and c; u2 has no negative, so no pair; the difference is signed by the label
    assert sorted((r["_pt"], r["_nt"]) for r in pairs) == [("a", "b"), ("a", "c")]
    for r in pairs:
        diff = feats[r["_pt"]] - feats[r["_nt"]]
        assert r["recall_score"] == (diff if r["label"] == 1.0 else -diff)
        assert r["n_channels"] == 0.0
    assert len(pairwise_frame(df, negatives_per_positive=1).collect()) == 1


def test_fit_ranker_samples_negatives_above_max_rows(spark):
    train = _train_frame(spark, n_users=20)
    _, rep = fit_ranker(train, model="logistic", max_iter=5, seed=1, holdout_share=0.0, k=3, max_rows=200)
    # the report counts the fitting users' rows before sampling; every positive is kept
    assert rep["rows"] == 400 and rep["positives"] == 60 and "holdout_ndcg@3" not in rep


def test_load_refuses_a_model_of_other_features(spark, tmp_path):
    from recsys_spark.common import read_metadata, write_metadata

    fitted, rep = fit_ranker(_train_frame(spark, 10), model="logistic", max_iter=5, holdout_share=0.0)
    path = str(tmp_path / "r")
    save_ranker(spark, fitted, path, rep)
    meta = read_metadata(spark, f"{path}/metadata")
    write_metadata(spark, f"{path}/metadata", {**meta, "features": ["something_else"]})
    with pytest.raises(ValueError, match="other features"):
        load_ranker(spark, path)


def test_final_score_blends_the_ranker_score(spark):
    df = spark.createDataFrame([("u", "a", 1.0, 0.2), ("u", "b", 0.0, 0.6), ("u", "c", 0.5, 1.0)],
                               "user_id string, track_id string, recall_score double, ranker_score double")
    got = {r.track_id: r.final_score for r in final_score(df, ranker_weight=3.0).collect()}
    # recall scaled a 1, b 0, c .5; ranker scaled a 0, b .5, c 1; (1 * recall + 3 * ranker) / 4
    assert got == pytest.approx({"a": 0.25, "b": 0.375, "c": 0.875})
    only = {r.track_id: r.final_score for r in final_score(df, recall_weight=0.0, ranker_weight=1.0).collect()}
    assert only == pytest.approx({"a": 0.0, "b": 0.5, "c": 1.0})
    ignored = {r.track_id: r.final_score for r in final_score(df).collect()}  # ranker weight 0 by default
    assert ignored == pytest.approx({"a": 1.0, "b": 0.0, "c": 0.5})


def test_final_score_rank_scale_keeps_the_weights_meaning(spark):
    # a skewed ranker probability (one high, the rest near 0) and an evenly spread DIN score at a
    # quarter of its weight: min-max scaling lets the DIN reorder the ranker's c and d; the rank
    # scale (a weighted reciprocal-rank fusion of the two orders) keeps the ranker's order
    df = spark.createDataFrame(
        [("u", "a", 0.90, 0.0), ("u", "b", 0.05, 1.0), ("u", "c", 0.04, 0.5), ("u", "d", 0.01, 0.9)],
        "user_id string, track_id string, ranker_score double, din_score double").withColumn("recall_score", F.lit(1.0))
    kw = dict(recall_weight=0.0, ranker_weight=1.0, din_weight=0.25)
    mm = {r.track_id: r.final_score for r in final_score(df, **kw).collect()}
    assert mm["d"] > mm["c"]
    got = {r.track_id: r.final_score for r in final_score(df, scale="rank", rrf_k=1.0, **kw).collect()}
    # ranker ranks a..d -> 1/2, 1/3, 1/4, 1/5 -> scaled 1, 4/9, 1/6, 0; DIN ranks b, d, c, a -> a 0, b 1,
    # c 1/6, d 4/9; (ranker + .25 DIN) / 1.25
    want = {"a": 1 / 1.25, "b": (4 / 9 + 0.25) / 1.25, "c": (1 / 6 + 0.25 / 6) / 1.25, "d": (0.25 * 4 / 9) / 1.25}
    assert got == pytest.approx(want)
    assert sorted(got, key=got.get, reverse=True) == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="scale"):
        final_score(df, scale="softmax")


def test_final_score_rank_scale_ties_and_nulls(spark):
    # equal values share a rank (a constant component scales to 1 for every row); a null (DIN did not
    # score the candidate) leaves the row to the other components
    df = spark.createDataFrame([("u", "a", 0.5, None), ("u", "b", 0.5, 0.2), ("u", "c", 0.5, 0.7)],
                               "user_id string, track_id string, recall_score double, din_score double")
    got = {r.track_id: r.final_score for r in final_score(df, din_weight=1.0, scale="rank").collect()}
    assert got == pytest.approx({"a": 1.0, "b": 0.5, "c": 1.0})
