"""Fusion tuning: the numpy replica ranks exactly as fuse + final_score + top-k in Spark; metrics by hand."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from recsys_spark.evaluation.metrics import ranking_metrics
from recsys_spark.evaluation.split import split_at
from recsys_spark.evaluation.tuning import CandidateTable, FusionGrid, FusionParams, best_shared, validation_split
from recsys_spark.ranking.fusion import final_score, fuse
from recsys_spark.recall.popularity import top_n_per_user

CANDS = "user_id string, track_id string, channel string, score double, rank int, seed_track_id string"


def _hand_cands():
    # u1: x is first for item_cf, y first for als; z only popular; DIN prefers z
    rows = [("u1", "x", "item_cf", 1.0, 1, None, 0.2), ("u1", "y", "item_cf", 0.5, 2, None, 0.5),
            ("u1", "y", "als", 0.9, 1, None, 0.5), ("u1", "x", "als", 0.1, 3, None, 0.2),
            ("u1", "z", "popular", 5.0, 1, None, 0.9), ("u1", "w", "als", 0.2, 2, None, None),
            ("u2", "x", "als", 1.0, 1, None, 0.3), ("u2", "q", "item_cf", 1.0, 1, None, 0.8)]
    return pd.DataFrame(rows, columns=["user_id", "track_id", "channel", "score", "rank", "seed_track_id", "din_score"])


def test_metrics_by_hand():
    cands = _hand_cands()
    truth = pd.DataFrame([("u1", "z"), ("u1", "y"), ("u2", "q"), ("u3", "a")], columns=["user_id", "track_id"])
    users = pd.DataFrame([("u1", 2), ("u2", 1), ("u3", 1)], columns=["user_id", "n_truth"])
    t = CandidateTable(cands, truth, users)
    # score: u1 z > y > x > w ; u2 x > q
    score = np.zeros(t.n)
    order = {("u1", "z"): 4, ("u1", "y"): 3, ("u1", "x"): 2, ("u1", "w"): 1, ("u2", "x"): 2, ("u2", "q"): 1}
    keys = cands.drop_duplicates(["user_id", "track_id"]).sort_values(["user_id", "track_id"])
    for i, (u, tr) in enumerate(zip(keys["user_id"], keys["track_id"])):
        score[i] = order[(u, tr)]
    m = t.metrics(score, k=2)
    # u1: both truths at 1, 2 -> ndcg 1, recall 1; u2: q at 2 -> dcg 1/log2(3), idcg 1; u3: nothing
    assert m["ndcg@2"] == pytest.approx((1.0 + 1.0 / np.log2(3)) / 3)
    assert m["recall@2"] == pytest.approx(2.0 / 3)
    assert m["hit@2"] == pytest.approx(2.0 / 3)
    m1 = t.metrics(score, k=1)
    assert m1["recall@1"] == pytest.approx(1.0 / 3) and m1["ndcg@1"] == pytest.approx(1.0 / 3)


@pytest.mark.parametrize("p", [FusionParams({"item_cf": 1.0, "als": 1.0, "popular": 0.2}, 60.0, 1.0),
                               FusionParams({"item_cf": 3.0, "als": 1.0, "popular": 0.0}, 2.0, 0.25),
                               FusionParams({"item_cf": 0.5, "als": 1.0, "popular": 2.0}, 10.0, 0.0)])
def test_replica_ranks_like_spark(spark, p):
    rng = np.random.default_rng(3)
    rows = []
    for u in range(6):
        for ch, n in (("item_cf", 12), ("als", 15), ("popular", 8)):
            tracks = rng.choice(30, n, replace=False)
            for r, tr in enumerate(tracks):
                rows.append((f"u{u}", f"t{tr:02d}", ch, float(n - r), r + 1, None))
    cands = pd.DataFrame(rows, columns=["user_id", "track_id", "channel", "score", "rank", "seed_track_id"])
    din = cands[["user_id", "track_id"]].drop_duplicates()
    din["din_score"] = rng.random(len(din))
    din.loc[din.index[::7], "din_score"] = np.nan          # DIN missing for some rows
    truth = pd.DataFrame([(f"u{u}", f"t{t:02d}") for u in range(6) for t in rng.choice(30, 5, replace=False)],
                         columns=["user_id", "track_id"])
    users = truth.groupby("user_id").size().rename("n_truth").reset_index()

    sdf = spark.createDataFrame(cands, CANDS)
    fused = fuse(sdf, p.channel_weights, method="rank", rrf_k=p.rrf_k)
    fused = fused.join(spark.createDataFrame(din, "user_id string, track_id string, din_score double"),
                       ["user_id", "track_id"], "left")
    fs = final_score(fused, din_weight=p.din_weight, recall_weight=p.recall_weight)
    top = top_n_per_user(fs.withColumnRenamed("final_score", "score"), 10).select("user_id", "track_id", "rank")
    truth_df = spark.createDataFrame(truth)
    users_df = spark.createDataFrame(users)
    want = ranking_metrics(top, truth_df, users_df, 10)

    t = CandidateTable(cands.merge(din, on=["user_id", "track_id"]), truth, users)
    got = t.evaluate(p, k=10)
    assert got["ndcg@10"] == pytest.approx(want["ndcg@10"], abs=1e-9)
    assert got["recall@10"] == pytest.approx(want["recall@10"], abs=1e-9)
    # and the exact lists
    score = t.final_score(p)
    keys = cands[["user_id", "track_id"]].drop_duplicates().sort_values(["user_id", "track_id"], ignore_index=True)
    keys["s"] = score
    mine = {(r.user_id, r.track_id) for r in keys.sort_values(["user_id", "s", "track_id"], ascending=[True, False, True])
            .groupby("user_id").head(10).itertuples()}
    theirs = {(r["user_id"], r["track_id"]) for r in top.collect()}
    assert mine == theirs


def test_grid_and_shared_choice():
    g = FusionGrid({"item_cf": (0.5, 2.0)}, rrf_k=(5.0, 60.0), din_weight=(0.0, 1.0), fixed_weights={"als": 1.0})
    pts = g.points()
    assert len(pts) == 8 and all(pt.channel_weights["als"] == 1.0 for pt in pts)
    a, b = pts[0], pts[1]
    res = {"d1": [dict(params=a, **{"ndcg@30": 0.2}), dict(params=b, **{"ndcg@30": 0.1})],
           "d2": [dict(params=a, **{"ndcg@30": 0.05}), dict(params=b, **{"ndcg@30": 0.1})]}
    # a: (1 + .5) / 2 = .75 ; b: (.5 + 1) / 2 = .75 -> tie; make d2 favour b less
    res["d2"][1]["ndcg@30"] = 0.06
    assert best_shared(res)["params"] == a
    assert pts[0].overrides()["fusion.channel_weights.item_cf"] == 0.5


def test_validation_split_never_sees_the_test_period(spark):
    ts = dt.datetime(2024, 1, 1)
    rows = [(f"u{u}", f"t{(u + i) % 9}", ts + dt.timedelta(days=i + u), 1.0) for u in range(5) for i in range(10)]
    inter = spark.createDataFrame(rows, "user_id string, track_id string, event_ts timestamp, weight double")
    test = split_at(inter, dt.datetime(2024, 1, 10))
    val = validation_split(test)
    assert val.cutoff < test.cutoff
    last = val.truth.join(inter, ["user_id", "track_id"]).agg(F.max("event_ts")).first()[0]
    assert last < test.cutoff


def test_truncated_and_preranked_equal_tables_built_from_shallower_channels():
    """Truncating a deep table at depth d must equal the table of channels that returned d rows;
    pre-ranking must keep each user's best N rows by fused recall score (pipeline.prerank)."""
    rng = np.random.default_rng(11)
    rows = []
    for u in range(8):
        for ch, n in (("item_cf", 20), ("als", 25), ("popular", 15)):
            for r, tr in enumerate(rng.choice(40, n, replace=False)):
                rows.append((f"u{u}", f"t{tr:02d}", ch, float(n - r), r + 1, None, float(rng.random())))
    cands = pd.DataFrame(rows, columns=["user_id", "track_id", "channel", "score", "rank", "seed_track_id", "din_score"])
    cands["din_score"] = cands.groupby(["user_id", "track_id"])["din_score"].transform("max")
    truth = pd.DataFrame([(f"u{u}", f"t{t:02d}") for u in range(8) for t in rng.choice(40, 6, replace=False)],
                         columns=["user_id", "track_id"])
    users = truth.groupby("user_id").size().rename("n_truth").reset_index()
    p = FusionParams({"item_cf": 2.0, "als": 1.0, "popular": 0.5}, 60.0, 0.25)
    deep = CandidateTable(cands, truth, users)
    depths = {"item_cf": 20, "als": 6, "popular": 3}
    shallow = CandidateTable(cands[cands["rank"] <= cands["channel"].map(depths)], truth, users)
    cut = deep.truncated(depths)
    assert cut.n == shallow.n < deep.n
    assert cut.keys.equals(shallow.keys)
    for k in (5, 30):
        assert cut.evaluate(p, k) == pytest.approx(shallow.evaluate(p, k))
    assert deep.evaluate(p) != pytest.approx(cut.evaluate(p))

    pre = deep.preranked(p, 10)
    assert pre.n == 8 * 10
    rs = deep.recall_score(p)
    frame = deep.keys.assign(rs=rs)
    best = (frame.sort_values(["user_id", "rs", "track_id"], ascending=[True, False, True])
            .groupby("user_id").head(10).sort_values(["user_id", "track_id"]).reset_index(drop=True))
    assert pre.keys.equals(best[["user_id", "track_id"]])
    assert deep.preranked(p, 0) is deep
