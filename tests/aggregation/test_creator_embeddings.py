"""Creator embeddings on Spark: mean pooling by hand, attention == direct torch, affinity pairs."""

import datetime as dt

import numpy as np
import pytest
import torch

from recsys_spark.aggregation import attention as A
from recsys_spark.aggregation.creators import (affinity_examples, creator_embeddings, for_diversity,
                                               load_pooling, save_pooling, user_vectors)

TRACKS = "track_id string, creator_id string, play_count long"
EMBS = "track_id string, embedding array<float>"
W = dt.date(2024, 1, 8)


@pytest.fixture()
def catalog(spark):
    tracks = spark.createDataFrame([("a", "k1", 10), ("b", "k1", 5), ("c", "k1", 1), ("d", "k2", 3),
                                    ("e", "k3", 7)], TRACKS)
    embs = spark.createDataFrame([("a", [1.0, 0.0, 0.0]), ("b", [0.0, 1.0, 0.0]), ("c", [0.0, 0.0, 1.0]),
                                  ("d", [2.0, 2.0, 2.0])], EMBS)   # e (k3) has no embedding
    return tracks, embs


def test_mean_creator_embeddings_by_hand(spark, catalog, tables):
    tracks, embs = catalog
    out = creator_embeddings(spark, tracks, embs, method="mean", max_tracks=2, model_version="clap-x", week=W)
    got = {r.creator_id: (r.embedding, r.n_tracks, r.method, r.model_version) for r in out.collect()}
    # k1: the two most played (a, b) -> [.5, .5, 0]; k2: d alone; k3: no embedded track -> absent
    assert got == {"k1": ([0.5, 0.5, 0.0], 2, "mean", "clap-x+mean"), "k2": ([2.0, 2.0, 2.0], 1, "mean", "clap-x+mean")}
    tables.replace_partition("creator_embeddings", out, "week_start", W)
    assert tables.read("creator_embeddings").count() == 2
    assert for_diversity(out).columns == ["creator_id", "embedding"]


def test_attention_creator_embeddings_match_torch(spark, catalog, tmp_path):
    tracks, embs = catalog
    torch.manual_seed(0)
    model = A.CreatorAffinityModel(3, proj_dim=2, hidden=4, pooling="attention")
    model = load_pooling(save_pooling(model, str(tmp_path / "pool")))
    out = creator_embeddings(spark, tracks, embs, model=model, method="attention", max_tracks=3)
    got = {r.creator_id: np.array(r.embedding) for r in out.collect()}
    x = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]])       # k1's tracks, most played first
    with torch.no_grad():
        w = model.pool.weights(x, torch.ones(1, 3, dtype=torch.bool))[0].numpy()
    assert got["k1"] == pytest.approx(w, abs=1e-6)   # one-hot tracks: the embedding IS the weights
    assert w.sum() == pytest.approx(1.0) and len(set(np.round(w, 6))) == 3
    assert got["k2"] == pytest.approx([2.0, 2.0, 2.0])
    with pytest.raises(ValueError):
        creator_embeddings(spark, tracks, embs, method="attention")


def test_user_vectors_mean_seed_embeddings_for_the_given_users(spark, catalog):
    _, embs = catalog
    ts = dt.datetime.fromisoformat
    inter = spark.createDataFrame([
        ("u1", "a", ts("2024-01-02 09:00"), "play", 1.0),
        ("u1", "b", ts("2024-01-03 09:00"), "play", 1.0),
        ("u1", "e", ts("2024-01-04 09:00"), "play", 1.0),   # e has no embedding: left out of the mean
        ("u1", "c", ts("2024-01-09 09:00"), "play", 1.0),   # in week W: not history
        ("u2", "d", ts("2024-01-05 09:00"), "play", 1.0),
        ("u3", "c", ts("2024-01-10 09:00"), "play", 1.0),   # nothing before W: no vector
    ], "user_id string, track_id string, event_ts timestamp, event_type string, weight double")
    got = {r.user_id: r.user_vec for r in user_vectors(inter, embs, W).collect()}
    assert got == {"u1": pytest.approx([0.5, 0.5, 0.0]), "u2": pytest.approx([2.0, 2.0, 2.0])}
    users = spark.createDataFrame([("u1",), ("u3",), ("u1",)], "user_id string")
    only = {r.user_id: r.user_vec for r in user_vectors(inter, embs, W, users=users).collect()}
    assert only == {"u1": pytest.approx([0.5, 0.5, 0.0])}


def test_affinity_examples(spark, catalog):
    tracks, _ = catalog
    ts = dt.datetime.fromisoformat
    inter = spark.createDataFrame([
        ("u1", "a", ts("2024-01-02 09:00"), 1.0),   # u1 knows k1
        ("u1", "b", ts("2024-01-09 09:00"), 1.0),   # k1 again: known, not a positive
        ("u1", "d", ts("2024-01-10 09:00"), 2.0),   # k2: new creator -> positive
        ("u1", "e", ts("2024-01-16 09:00"), 1.0),   # after the label week
        ("u2", "e", ts("2024-01-09 09:00"), 1.0),   # no history before W: no example
    ], "user_id string, track_id string, event_ts timestamp, weight double")
    rows = affinity_examples(inter, tracks, W, n_negatives=1, seed=0).collect()
    pos = sorted((r.user_id, r.creator_id) for r in rows if r.label == 1)
    neg = [(r.user_id, r.creator_id) for r in rows if r.label == 0]
    assert pos == [("u1", "k2")]
    assert len(neg) == 1 and neg[0] == ("u1", "k3")   # k1 known, k2 positive: only k3 is left
    assert {r.label_week for r in rows} == {W}


def test_affinity_examples_only_label_given_creators(spark, catalog):
    # creators without an embedded track cannot be pooled: with creators=[k1, k3] the k2 positive
    # is not an example (the attention training would have no index for it)
    tracks, _ = catalog
    ts = dt.datetime.fromisoformat
    inter = spark.createDataFrame([("u1", "a", ts("2024-01-02 09:00"), 1.0), ("u1", "d", ts("2024-01-10 09:00"), 2.0),
                                   ("u1", "e", ts("2024-01-11 09:00"), 1.0)],
                                  "user_id string, track_id string, event_ts timestamp, weight double")
    creators = spark.createDataFrame([("k1",), ("k3",)], "creator_id string")
    rows = affinity_examples(inter, tracks, W, n_negatives=1, seed=0, creators=creators).collect()
    assert sorted((r.creator_id, r.label) for r in rows) == [("k3", 1)]
    rows_all = affinity_examples(inter, tracks, W, n_negatives=1, seed=0).collect()
    assert sorted((r.creator_id, r.label) for r in rows_all if r.label == 1) == [("k2", 1), ("k3", 1)]
