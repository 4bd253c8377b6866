"""DIN on Spark: leakage-free training set, training driver, UDF scores == direct torch scores."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import torch
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys_spark.ranking import din as D
from recsys_spark.ranking.din_spark import (DINArtifact, build_training_set, estimate_training_rows,
                                            score_candidates, score_pandas, train_din, user_sample)

L1, L2 = dt.date(2024, 1, 8), dt.date(2024, 1, 15)
INTER = "user_id string, track_id string, event_ts timestamp, event_type string, weight double"


def _ts(s):
    return dt.datetime.fromisoformat(s)


@pytest.fixture()
def interactions(spark):
    rows = [
        ("u1", "t1", _ts("2024-01-02 10:00"), "play", 1.0),
        ("u1", "t2", _ts("2024-01-05 10:00"), "play", 1.0),
        ("u1", "t3", _ts("2024-01-09 10:00"), "play", 2.0),   # new in L1 -> positive of L1
        ("u1", "t1", _ts("2024-01-10 10:00"), "play", 1.0),   # re-play in L1: not new, not positive
        ("u1", "t4", _ts("2024-01-11 10:00"), "skip", 0.0),   # zero weight: never a positive
        ("u1", "t5", _ts("2024-01-16 10:00"), "play", 1.0),   # positive of L2
        ("u2", "t2", _ts("2024-01-03 10:00"), "play", 1.0),
        ("u2", "t6", _ts("2024-01-12 10:00"), "upvote", 3.0),  # positive of L1
        ("u3", "t5", _ts("2024-01-09 10:00"), "play", 1.0),   # no history before L1; nothing in L2
    ]
    return spark.createDataFrame(rows, INTER)


def test_training_set_has_no_leakage(spark, interactions):
    pool = spark.createDataFrame(
        [("u1", "t3", L1), ("u1", "t1", L1), ("u1", "t7", L1), ("u2", "t9", L1), ("u2", "t2", L1),
         ("u1", "t5", L2), ("u1", "t8", L2)],
        "user_id string, track_id string, week_start date")
    out = build_training_set(spark, interactions, [L2, L1], negatives_pool_df=pool, n_negatives=1,
                             popularity_share=0.0, seed=1, max_history=10)
    expected = spark.createDataFrame([
        # L1: history = events before Jan 8 only, most recent first; t3 (label) is not in it and
        # u1's replay of t1 on Jan 10 does not move t1 to the front
        ("u1", L1, "t3", 1, ["t2", "t1"]),
        ("u1", L1, "t7", 0, ["t2", "t1"]),   # pool minus heard (t1) minus positives (t3)
        ("u2", L1, "t6", 1, ["t2"]),
        ("u2", L1, "t9", 0, ["t2"]),
        # L2: the L1 week is now history (t4 was a skip: heard but never a seed)
        ("u1", L2, "t5", 1, ["t1", "t3", "t2"]),
        ("u1", L2, "t8", 0, ["t1", "t3", "t2"]),
    ], "user_id string, label_week date, track_id string, label int, hist_track_ids array<string>")
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_a_label_week_without_exposure_rows_draws_all_its_negatives_by_popularity(spark, interactions):
    # the pool has rows for L1 only (as in a warehouse whose weekly job first ran for L2): with
    # popularity_share 0, L2 would have had no negatives at all (and DIN training no 0 labels)
    pool = spark.createDataFrame([("u1", "t7", L1), ("u2", "t9", L1)], "user_id string, track_id string, week_start date")
    out = build_training_set(spark, interactions, [L1, L2], negatives_pool_df=pool, n_negatives=1,
                             popularity_share=0.0, seed=1, max_history=10)
    negs = sorted((r.label_week, r.user_id, r.track_id) for r in out.collect() if r.label == 0)
    # L1 from the pool; L2: the only track played before L2 that u1 has not heard and that is not
    # u1's positive of L2 (t5) is t6
    assert negs == [(L1, "u1", "t7"), (L1, "u2", "t9"), (L2, "u1", "t6")]


def test_popularity_negatives_are_never_heard_or_positive(spark, interactions):
    out = build_training_set(spark, interactions, [L1, L2], n_negatives=3, seed=3, max_history=10)
    rows = out.collect()
    heard_before = {L1: {("u1", "t1"), ("u1", "t2"), ("u2", "t2")},
                    L2: {("u1", "t1"), ("u1", "t2"), ("u1", "t3"), ("u1", "t4"), ("u2", "t2"),
                         ("u2", "t6"), ("u3", "t5")}}
    negs = [(r.label_week, r.user_id, r.track_id) for r in rows if r.label == 0]
    assert negs, "expected some popularity negatives"
    for week, user, track in negs:
        assert (user, track) not in heard_before[week]
        assert (week, user, track) not in {(L1, "u1", "t3"), (L1, "u2", "t6"), (L2, "u1", "t5")}
    # popularity pool before L1 is {t1, t2}: u1 heard both -> no negatives for u1 in L1
    assert not [n for n in negs if n[0] == L1 and n[1] == "u1"]
    # every negative of u2 in L1 is t1 (the only popular track u2 has not heard)
    assert {n[2] for n in negs if n[0] == L1 and n[1] == "u2"} == {"t1"}
    # deterministic given the seed
    again = build_training_set(spark, interactions, [L1], n_negatives=3, seed=3, max_history=10)
    assert sorted(map(tuple, again.collect())) == sorted(tuple(r) for r in rows if r.label_week == L1)


def test_user_fraction_builds_exactly_the_sampled_users_rows(spark):
    """Sampling users before the build must give the full set's rows of those users, no more and
    no other (popularity negatives still come from the whole platform); the estimate bounds it."""
    rng = np.random.default_rng(2)
    rows = []
    for u in range(60):
        for t in rng.choice(25, size=8, replace=False):
            day = int(rng.integers(0, 20))
            rows.append((f"u{u:02d}", f"t{t:02d}", dt.datetime(2024, 1, 1) + dt.timedelta(days=day, hours=u % 7),
                         "play", 1.0))
    inter = spark.createDataFrame(rows, INTER)
    pool = spark.createDataFrame([(f"u{u:02d}", f"t{t:02d}", w) for u in range(60) for t in range(25, 31)
                                  for w in (L1, L2)], "user_id string, track_id string, week_start date")
    kw = dict(negatives_pool_df=pool, n_negatives=2, popularity_share=0.5, seed=4, max_history=10)
    # each set is built once (cached): the assertions below read it five times
    full = build_training_set(spark, inter, [L1, L2], **kw).cache()
    part = build_training_set(spark, inter, [L1, L2], user_fraction=0.4, **kw).cache()
    want = full.where(user_sample(4, 0.4))
    n_full, n_part = full.count(), part.count()
    assert 0 < n_part < n_full
    assert part.select("user_id").distinct().count() < full.select("user_id").distinct().count()
    assert_df_equality(part, want, ignore_row_order=True, ignore_nullable=True)
    assert n_full <= estimate_training_rows(inter, [L1, L2], 2)
    full.unpersist()
    part.unpersist()
    with pytest.raises(ValueError, match="user_fraction"):
        build_training_set(spark, inter, [L1], user_fraction=0.0)


def _planted_pdf(rng, n_users, week, n_items=30, hist_len=5):
    """Tracks 'g<k>_<i>': group k in {0, 1}. A user likes one group; negatives from the other."""
    rows = []
    for u in range(n_users):
        g = u % 2
        mine = [f"g{g}_{i}" for i in range(n_items // 2)]
        other = [f"g{1 - g}_{i}" for i in range(n_items // 2)]
        hist = list(rng.choice(mine, size=hist_len, replace=False))
        rows.append((f"u{u}", week, str(rng.choice(mine)), 1, hist))
        rows.append((f"u{u}", week, str(rng.choice(other)), 0, hist))
    return pd.DataFrame(rows, columns=["user_id", "label_week", "track_id", "label", "hist_track_ids"])


def _content(n_items=30, dim=8, extra=()):
    rng = np.random.default_rng(5)
    centers = rng.normal(size=(2, dim))
    rows = []
    for g in (0, 1):
        for i in list(range(n_items // 2)) + list(extra):
            rows.append((f"g{g}_{i}", (centers[g] + 0.3 * rng.normal(size=dim)).astype(np.float32).tolist()))
    return pd.DataFrame(rows, columns=["track_id", "embedding"])


def test_train_din_learns_and_uses_content_for_unseen_tracks(tmp_path):
    rng = np.random.default_rng(0)
    pdf = pd.concat([_planted_pdf(rng, 300, L1), _planted_pdf(rng, 150, L2)], ignore_index=True)
    art, metrics = train_din(pdf, track_embeddings=_content(extra=[100, 101]), embedding_dim=8,
                             attention_hidden=[16], mlp_hidden=[16], max_history=5, epochs=12,
                             batch_size=64, lr=0.01, patience=4, seed=0, device="cpu")
    assert metrics["n_valid"] == 300 and metrics["n_train"] == 600  # L2 is the validation week
    assert metrics["auc"] > 0.85
    assert 0 < metrics["logloss"] < 0.6
    # g0_100 / g1_100 never appear in training: content-only vocabulary entries (ID -> OOV)
    assert "g0_100" in art.vocab and art.vocab.index("g0_100") >= metrics["n_id_items"]
    vocab = {t: i + 2 for i, t in enumerate(art.vocab)}
    cold = pd.DataFrame({"track_id": ["g0_100", "g1_100"], "hist_track_ids": [["g0_1", "g0_2", "g0_3"]] * 2})
    p = score_pandas(cold, art.model, vocab)
    assert p[0] > p[1] + 0.2
    art.save(str(tmp_path / "m"))
    again = DINArtifact.load(str(tmp_path / "m"))
    assert again.vocab == art.vocab and again.metrics["auc"] == pytest.approx(metrics["auc"])


def test_train_din_softmax_loss_ranks_each_users_list():
    rng = np.random.default_rng(0)
    pdf = pd.concat([_planted_pdf(rng, 300, L1), _planted_pdf(rng, 150, L2)], ignore_index=True)
    kw = dict(embedding_dim=8, attention_hidden=[16], mlp_hidden=[16], max_history=5, epochs=12,
              batch_size=64, lr=0.01, patience=4, seed=0, device="cpu", use_content=False)
    _, metrics = train_din(pdf, loss="softmax", **kw)
    assert metrics["loss"] == "softmax" and metrics["n_valid"] == 300
    # valid lists = the 150 users of L2, two examples each: NDCG@30 is 1 when the liked group's track
    # comes first, 1/log2(3) = .63 when not
    assert metrics["ndcg@30"] > 0.95
    best = metrics["history"][metrics["best_epoch"] - 1]["valid_ndcg@30"]
    assert best == pytest.approx(max(r["valid_ndcg@30"] for r in metrics["history"]))
    assert best == pytest.approx(metrics["ndcg@30"])
    with pytest.raises(ValueError, match="must be one of"):
        train_din(pdf, loss="lambdarank", **kw)


def test_udf_scores_equal_direct_torch_scores(spark, tmp_path):
    torch.manual_seed(0)
    ids = ["a", "b", "c", "d", "e"]
    cfg = D.DINConfig(n_items=5, n_id_items=4, embedding_dim=4, content_dim=3, attention_hidden=[8],
                      mlp_hidden=[8], max_history=3)
    content = torch.randn(7, 3)
    content[:2] = 0
    model = D.DIN(cfg, content=content).eval()
    path = str(tmp_path / "din")
    D.save(path, model, ids)

    seeds = spark.createDataFrame(
        [("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u1", "d", 4),  # cut to max_history=3
         ("u2", "zz", 1)], "user_id string, track_id string, seed_rank int")
    cands = spark.createDataFrame(
        [("u1", "d", 0.5), ("u1", "e", 0.1), ("u1", "unknown", 0.3), ("u2", "a", 1.0), ("u3", "b", 2.0)],
        "user_id string, track_id string, score double")
    out = score_candidates(spark, cands, seeds, path, batch_size=2, device="cpu")
    assert out.columns == ["user_id", "track_id", "score", "din_score"]
    got = {(r.user_id, r.track_id): r.din_score for r in out.collect()}

    # direct torch on hand-encoded rows: a=2 b=3 c=4 d=5 e=6 (content-only), unknown/zz = OOV (1)
    hist = torch.tensor([[2, 3, 4], [2, 3, 4], [2, 3, 4], [1, 0, 0], [0, 0, 0]])
    cand = torch.tensor([5, 6, 1, 2, 3])
    with torch.no_grad():
        direct = torch.sigmoid(model(hist, cand)).double().numpy()
    keys = [("u1", "d"), ("u1", "e"), ("u1", "unknown"), ("u2", "a"), ("u3", "b")]
    assert [got[k] for k in keys] == pytest.approx(direct.tolist(), abs=1e-6)
    assert len(set(np.round(direct, 6))) == 5  # the rows really differ
    # din.score_precision: bf16 on the executors stays within bf16 rounding of fp32 (and is not
    # fp32), auto resolves there; an unknown value stops before any work
    b16 = {(r.user_id, r.track_id): r.din_score
           for r in score_candidates(spark, cands, seeds, path, batch_size=2, device="cpu", precision="bf16").collect()}
    assert [b16[k] for k in keys] == pytest.approx(direct.tolist(), abs=0.01)
    assert [b16[k] for k in keys] != pytest.approx(direct.tolist(), abs=1e-7)
    auto = score_candidates(spark, cands, seeds, path, batch_size=2, device="cpu", precision="auto")
    assert auto.count() == 5
    with pytest.raises(ValueError, match="din.score_precision"):
        score_candidates(spark, cands, seeds, path, device="cpu", precision="fp16")


def test_train_din_with_torch_distributor(spark):
    rng = np.random.default_rng(0)
    pdf = pd.concat([_planted_pdf(rng, 300, L1), _planted_pdf(rng, 150, L2)], ignore_index=True)
    art, metrics = train_din(pdf, embedding_dim=8, attention_hidden=[16], mlp_hidden=[16], max_history=5,
                             epochs=8, batch_size=64, lr=0.01, seed=0, device="cpu",
                             use_torch_distributor=True, num_processes=2, loss="softmax")
    assert metrics["epochs_run"] == 8 and metrics["loss"] == "softmax"
    # (no AUC bound: the listwise loss ranks within each user's list and leaves scores across users
    # uncalibrated, so the AUC over all rows pooled is not what it optimises)
    assert metrics["ndcg@30"] > 0.9, metrics["history"]
    # rank 0 chose the epoch on validation NDCG@30 (the lists travelled to the processes)
    ndcgs = [r["valid_ndcg@30"] for r in metrics["history"]]
    assert metrics["best_epoch"] == int(np.argmax(ndcgs)) + 1
