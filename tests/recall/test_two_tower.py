"""The content channel's two-tower on hand-made data whose style signal the raw embeddings hide.

Tracks belong to one of four styles; their embedding is noise plus a push along the style's own axis,
so the raw cosine is dominated by noise while a trained tower can find the style axes. Users listen to
one style only: a user's new plays are tracks of their style.
"""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from chispa import assert_df_equality

from recsys_spark.recall.base import ChannelInputs
from recsys_spark.recall.content import ContentRecall, ContentRecallModel
from recsys_spark.recall.registry import load_model
from recsys_spark.recall.two_tower import (MIN_GROUPS, build_tower, fit_two_tower, heldout_recall,
                                           heldout_recall_per_group, tag_vocabulary,
                                           tower_bytes, tower_from_bytes, tower_inputs, training_examples)

W = dt.date(2024, 3, 4)  # a Monday
MV = "clap-test"
S, N, D = 4, 12, 32


def _tracks():
    ids = [f"s{s}t{i:02d}" for s in range(S) for i in range(N)]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((len(ids), D)).astype(np.float32)
    for j, t in enumerate(ids):
        x[j, int(t[1])] += 1.2
    return ids, x


def _style(t: str) -> int:
    return int(t[1])


def _style_examples():
    """120 users, each listening to one style: 6 seeds and 3 new plays in each of two label weeks."""
    ids, x = _tracks()
    rng = np.random.default_rng(1)
    rows = []
    for u in range(120):
        mine = [t for t in ids if _style(t) == u % S]
        for wk in (W - dt.timedelta(weeks=2), W - dt.timedelta(weeks=1)):
            pick = rng.permutation(mine)
            seeds = [{"track_id": t, "w": 1.0} for t in pick[:6]]
            rows += [(f"u{u}", wk, t, seeds) for t in pick[6:9]]
    ex = pd.DataFrame(rows, columns=["user_id", "label_week", "track_id", "seeds"])
    return ex, pd.DataFrame({"track_id": ids, "embedding": list(x)})


STYLE_FIT = dict(hidden=16, out_dim=4, epochs=12, batch_size=48, lr=0.01, k=6, max_seeds=6, seed=3, device="cpu",
                 patience=12)


def _first_best_epoch(rep):
    return max(range(len(rep["history"])), key=lambda i: rep["history"][i]["valid_recall"]) + 1


def test_tower_learns_the_style_axes_the_raw_embeddings_hide():
    ex, emb = _style_examples()
    tower, rep = fit_two_tower(ex, emb, **STYLE_FIT)
    assert tower is not None
    assert rep["processes"] == 1
    assert rep["valid_split"] == f"label week {W - dt.timedelta(weeks=1)} held out"
    assert (rep["train_groups"], rep["valid_groups"], rep["tracks"]) == (120, 120, S * N)
    # a perfect style model's top-6 are the 6 non-seed tracks of the user's style, the 3 positives among
    # them: recall 1; the raw cosine is mostly noise
    assert rep["similarity_valid_recall"] < 0.5
    assert rep["valid_recall"] >= 0.9
    assert rep["best_epoch"] == _first_best_epoch(rep)
    # the held-out users' bootstrap intervals hold their means; the paired gain is far above zero
    assert rep["valid_users"] == 120
    lo, hi = rep["valid_recall_ci95"]
    assert lo <= rep["valid_recall"] <= hi < lo + 0.2
    lo, hi = rep["similarity_valid_recall_ci95"]
    assert lo <= rep["similarity_valid_recall"] <= hi
    lo, hi = rep["valid_recall_gain_ci95"]
    assert 0.3 < lo <= rep["valid_recall"] - rep["similarity_valid_recall"] <= hi


def test_style_tags_let_the_tower_find_what_the_audio_does_not_carry():
    # audio of pure noise (no style axis at all) followed by a one-hot of the track's style tag and an
    # always-zero tag column: the raw audio cannot rank the user's style, the tower over audio + tags can
    ex, emb = _style_examples()
    rng = np.random.default_rng(7)
    tags = np.zeros((len(emb), S + 1), dtype=np.float32)
    tags[np.arange(len(emb)), emb["track_id"].map(_style).to_numpy()] = 1.0
    noise = rng.standard_normal((len(emb), D)).astype(np.float32)
    emb = pd.DataFrame({"track_id": emb["track_id"], "embedding": list(np.hstack([noise, tags]))})
    tower, rep = fit_two_tower(ex, emb, **STYLE_FIT, similarity_dims=D)
    assert rep["in_dim"] == D + S + 1
    assert rep["similarity_valid_recall"] < 0.5
    assert rep["valid_recall"] >= 0.9
    # the constant column is not scaled up: a new track carrying that tag gets a bounded input
    assert float(tower.sigma[-1]) == 1.0 and float(tower.mu[-1]) == 0.0


def test_tag_vocabulary_and_tower_inputs_known_answer(spark):
    tracks = spark.createDataFrame([("a", [" Rock", "pop"]), ("b", ["rock"]), ("c", []), ("d", ["jazz"]),
                                    ("f", None)], "track_id string, tags array<string>")
    # rock is on two tracks; jazz and pop on one each (ties by tag); case and spaces folded
    assert tag_vocabulary(tracks, 2) == ["rock", "jazz"]
    assert tag_vocabulary(tracks, 10) == ["rock", "jazz", "pop"]
    vecs = spark.createDataFrame([("a", [1.0, 2.0]), ("b", [3.0, 4.0]), ("c", [5.0, 6.0]), ("e", [7.0, 8.0])],
                                 "track_id string, embedding array<float>")
    got = tower_inputs(vecs, tracks, ["rock", "pop"])
    want = spark.createDataFrame([("a", [1.0, 2.0, 1.0, 1.0]), ("b", [3.0, 4.0, 1.0, 0.0]),
                                  ("c", [5.0, 6.0, 0.0, 0.0]), ("e", [7.0, 8.0, 0.0, 0.0])],  # e: not in tracks
                                 "track_id string, embedding array<float>")
    assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)
    assert_df_equality(tower_inputs(vecs, tracks, []), vecs, ignore_row_order=True)


def test_torch_distributor_with_one_process_trains_the_same_tower(spark):
    # DDP over one process averages nothing: the same batches, steps and held-out scores as the plain loop
    ex, emb = _style_examples()
    fit = {**STYLE_FIT, "epochs": 3}
    plain, rp = fit_two_tower(ex, emb, **fit)
    ddp, rd = fit_two_tower(ex, emb, **fit, use_torch_distributor=True, num_processes=1)
    assert (rp["processes"], rd["processes"]) == (1, 1)
    assert [h["epoch"] for h in rd["history"]] == [1, 2, 3]
    assert [h["valid_recall"] for h in rd["history"]] == pytest.approx([h["valid_recall"] for h in rp["history"]],
                                                                       abs=1e-6)
    assert rd["best_epoch"] == rp["best_epoch"]
    for k, v in plain.state_dict().items():
        np.testing.assert_allclose(ddp.state_dict()[k].numpy(), v.numpy(), atol=1e-5)


def test_torch_distributor_with_two_processes_learns_the_style_axes(spark):
    # each process trains on every other example, gradients averaged; process 0 early-stops for both
    ex, emb = _style_examples()
    tower, rep = fit_two_tower(ex, emb, **{**STYLE_FIT, "epochs": 20, "patience": 4}, use_torch_distributor=True,
                               num_processes=2)
    assert tower is not None and rep["processes"] == 2
    assert rep["similarity_valid_recall"] < 0.5
    assert rep["valid_recall"] >= 0.9
    assert rep["best_epoch"] == _first_best_epoch(rep)
    assert rep["epochs_run"] <= 20


def test_too_few_groups_train_nothing_and_say_why():
    ids, x = _tracks()
    seeds = [{"track_id": ids[0], "w": 1.0}]
    ex = pd.DataFrame([("u1", W, ids[1], seeds), ("u2", W - dt.timedelta(weeks=1), ids[2], seeds)],
                      columns=["user_id", "label_week", "track_id", "seeds"])
    tower, rep = fit_two_tower(ex, pd.DataFrame({"track_id": ids, "embedding": list(x)}), device="cpu")
    assert tower is None
    assert rep["reason"].startswith(f"too few examples to train: 1 training and 1 held-out (user, week) groups "
                                    f"(need {MIN_GROUPS} and 2)")


def test_max_steps_stops_after_the_epoch_that_reaches_the_budget():
    ex, emb = _style_examples()
    _, full = fit_two_tower(ex, emb, **STYLE_FIT)
    # 360 training examples in batches of 48: 8 steps an epoch; a budget of 20 ends epoch 3 (24 steps)
    _, cut = fit_two_tower(ex, emb, **STYLE_FIT, max_steps=20)
    assert [h["steps"] for h in full["history"][:4]] == [8, 16, 24, 32]
    assert (cut["epochs_run"], cut["steps"], cut["stopped"]) == (3, 24, "max_steps")
    assert cut["history"] == full["history"][:3]  # the same epochs, only fewer of them
    assert cut["best_epoch"] == _first_best_epoch(cut)
    assert (full["stopped"], full["epochs_run"]) == ("epochs", STYLE_FIT["epochs"])


def test_heldout_recall_known_answer():
    vecs = np.eye(4, dtype=np.float32)
    # one group (two rows): seed track 0 (the padded second seed has weight 0), positives 1 and 2; the
    # user vector e0 scores every other track 0 and the seed is excluded: top-3 = {1, 2, 3}, recall 2/2
    hist, w = np.array([[0, 0]]), np.array([[1.0, 0.0]], dtype=np.float32)
    groups, pos = np.array([0, 0]), np.array([1, 2])
    assert heldout_recall(vecs, np.repeat(hist, 2, 0), np.repeat(w, 2, 0), groups, pos, k=3) == 1.0
    # seed 1 (e1): track 2 (= e1) is the top-1, the positive; seed 0 (e0): track 3 (= e0) is, a miss
    vecs2 = np.array([[1, 0], [0, 1], [0, 1], [1, 0]], dtype=np.float32)
    assert heldout_recall(vecs2, np.array([[1]]), np.array([[1.0]], dtype=np.float32), np.array([0]),
                          np.array([2]), k=1) == 1.0
    assert heldout_recall(vecs2, np.array([[0]]), np.array([[1.0]], dtype=np.float32), np.array([0]),
                          np.array([2]), k=1) == 0.0


def test_heldout_recall_matches_a_per_group_loop_across_blocks():
    # 1,500 groups (two blocks of 1,024), repeated positives, padded seeds: the vectorised scoring
    # gives the same value as the definition written as a plain loop over groups
    rng = np.random.default_rng(3)
    vecs = rng.normal(size=(200, 8)).astype(np.float32)
    n_rows = 4000
    groups = np.sort(rng.integers(0, 1500, size=n_rows))
    hist = rng.integers(0, 200, size=(1500, 5))[groups]
    w = (rng.random((1500, 5)) * (rng.random((1500, 5)) > 0.3)).astype(np.float32)
    w[:, 0] += 0.1  # every group has a seed (the trainer's groups always do)
    w = w[groups]
    pos = rng.integers(0, 200, size=n_rows)
    pos[1::7] = pos[::7][:len(pos[1::7])]  # some positives repeated within a group
    expected = []
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        h, wt = hist[rows[0]], w[rows[0]]
        u = (vecs[h] * wt[:, None]).sum(0)
        u = u / (np.linalg.norm(u) or 1.0)
        sc = vecs @ u
        sc[h[wt > 0]] = -np.inf
        top = set(np.argsort(-sc, kind="stable")[:10].tolist())
        positives = set(pos[rows].tolist())
        expected.append(len(top & positives) / min(len(positives), 10))
    assert heldout_recall(vecs, hist, w, groups, pos, k=10) == pytest.approx(float(np.mean(expected)), abs=1e-12)
    assert heldout_recall_per_group(vecs, hist, w, groups, pos, k=10) == pytest.approx(expected, abs=1e-12)


def test_tower_bytes_round_trip():
    import torch

    torch.manual_seed(0)
    tower = build_tower(D, 8, 3).eval()
    again = tower_from_bytes(tower_bytes(tower, {"in_dim": D, "hidden": 8, "out_dim": 3}))
    _, x = _tracks()
    with torch.no_grad():
        want = tower(torch.from_numpy(x)).numpy()
        assert np.allclose(again(torch.from_numpy(x)).numpy(), want)
    assert np.allclose(np.linalg.norm(want, axis=1), 1.0, atol=1e-5)


INTER = "user_id string, track_id string, event_ts timestamp, event_type string, weight double"


def _ts(week_offset, day, hour=12):
    return dt.datetime.combine(W - dt.timedelta(weeks=week_offset), dt.time()) + dt.timedelta(days=day, hours=hour)


def test_training_examples_known_answer(spark):
    emb = spark.createDataFrame([(t,) for t in ("a", "b", "c", "d")], "track_id string")
    inter = spark.createDataFrame([
        ("u1", "a", _ts(3, 0), "play", 2.0),      # before L2 = W-2w: a seed for L2 and L1
        ("u1", "b", _ts(2, 1), "play", 1.0),      # in [L2, L2+7d): new positive of L2; a seed for L1
        ("u1", "a", _ts(2, 2), "play", 1.0),      # heard before: not a positive
        ("u1", "c", _ts(1, 3), "skip", 0.0),      # weight 0: not a positive
        ("u1", "d", _ts(1, 4), "play", 1.0),      # positive of L1 = W-1w
        ("u1", "x", _ts(1, 4), "play", 1.0),      # no embedding: neither seed nor positive
        ("u2", "c", _ts(1, 1), "play", 1.0),      # no seed before L1: no example
    ], INTER)
    got = training_examples(inter, W, 2, 5, "uniform", emb)
    rows = sorted((r["user_id"], r["label_week"], r["track_id"], sorted(s["track_id"] for s in r["seeds"]))
                  for r in got.collect())
    assert rows == [("u1", W - dt.timedelta(weeks=2), "b", ["a"]),
                    ("u1", W - dt.timedelta(weeks=1), "d", ["a", "b"])]


@pytest.fixture(scope="module")
def styled(spark):
    """Interactions of 80 one-style users over 4 weeks, the track embeddings, and the seeds at W."""
    from recsys_spark.history import build_history

    ids, x = _tracks()
    rng = np.random.default_rng(5)
    rows = []
    for u in range(80):
        mine = rng.permutation([t for t in ids if _style(t) == u % S])
        for k, wk in enumerate((4, 3, 2, 1)):
            rows += [(f"u{u}", t, _ts(wk, d), "play", 1.0) for d, t in enumerate(mine[2 * k:2 * k + 2])]
    inter = spark.createDataFrame(rows, INTER)
    emb = spark.createDataFrame([(t, MV, [float(v) for v in x[i]]) for i, t in enumerate(ids)],
                                "track_id string, model_version string, embedding array<float>")
    seeds = build_history(inter, W, last_n=20)
    heard = inter.select("user_id", "track_id").distinct()
    return ChannelInputs(spark, week=W, interactions=inter, seeds=seeds, heard=heard, track_embeddings=emb,
                         model_version=MV)


def _style_share(cands):
    c = cands.toPandas()
    return float((c["track_id"].map(_style) == c["user_id"].map(lambda u: int(u[1:]) % S)).mean())


def test_content_two_tower_serves_the_tower_and_round_trips(styled, tmp_path):
    common = dict(seed_weighting="uniform", seed=1)
    sim = ContentRecall(model="similarity", **common).fit(styled)
    tt = ContentRecall(model="two_tower", tower_hidden=16, tower_dim=4, train_weeks=2, epochs=15,
                       train_batch_size=32, lr=0.01, patience=15, device="cpu", **common).fit(styled)
    rep = tt.params["two_tower"]
    assert rep["served"] == "two_tower", rep
    assert rep["valid_recall"] > rep["similarity_valid_recall"]
    assert isinstance(tt, ContentRecallModel) and tt.tower is not None
    assert tt.track_index.dim == 4 and sim.track_index.dim == D
    # the index holds the tower's vectors, computed by the pandas UDF: equal to the tower on the driver
    import torch

    ids, x = _tracks()
    with torch.no_grad():
        want = tower_from_bytes(tt.tower)(torch.from_numpy(x)).numpy()
    pos = tt.track_index.position_map()
    got = tt.track_index.vectors(np.asarray([pos[t] for t in ids], dtype=np.int64))
    assert np.allclose(got, want, atol=1e-5)
    cands_tt, cands_sim = tt.recommend(styled, 4), sim.recommend(styled, 4)
    # the tower's lists hold the user's style far more often than the raw cosine's
    assert _style_share(cands_tt) >= _style_share(cands_sim) + 0.2
    heard = {(r[0], r[1]) for r in styled.heard.collect()}
    assert not any((r["user_id"], r["track_id"]) in heard for r in cands_tt.collect())
    tt.save(str(tmp_path / "content"))
    back = load_model(styled.spark, str(tmp_path / "content"))
    assert back.tower == tt.tower and back.params["two_tower"]["served"] == "two_tower"
    assert_df_equality(back.recommend(styled, 4), cands_tt, ignore_row_order=True)


def test_content_two_tower_with_style_tags(styled):
    import dataclasses

    import torch

    ids, x = _tracks()
    # every track tagged with its style (and "music", on all of them); tower_tags 3 keeps "music" and
    # the two styles whose tags sort first among the ties
    tracks = styled.spark.createDataFrame([(t, [f"style{_style(t)}", "music"]) for t in ids],
                                          "track_id string, tags array<string>")
    inputs = dataclasses.replace(styled, tracks=tracks)
    tt = ContentRecall(model="two_tower", tower_tags=3, tower_hidden=16, tower_dim=4, train_weeks=2, epochs=15,
                       train_batch_size=32, lr=0.01, patience=15, device="cpu", seed_weighting="uniform",
                       seed=1).fit(inputs)
    rep = tt.params["two_tower"]
    assert rep["served"] == "two_tower", rep
    assert rep["tags"] == ["music", "style0", "style1"] and rep["in_dim"] == D + 3
    # the index holds the tower applied to audio + tags (training and serving build the input alike)
    hot = np.array([[1.0, float(_style(t) == 0), float(_style(t) == 1)] for t in ids], dtype=np.float32)
    with torch.no_grad():
        want = tower_from_bytes(tt.tower)(torch.from_numpy(np.hstack([x, hot]))).numpy()
    pos = tt.track_index.position_map()
    assert np.allclose(tt.track_index.vectors(np.asarray([pos[t] for t in ids], dtype=np.int64)), want, atol=1e-5)
    # a catalogue without tags: audio only, said in the report (no tag list)
    bare = ContentRecall(model="two_tower", tower_tags=3, tower_hidden=16, tower_dim=4, train_weeks=2, epochs=2,
                         device="cpu", seed_weighting="uniform").fit(styled)
    assert bare.params["two_tower"]["tags"] == [] and bare.params["two_tower"]["in_dim"] == D


def test_content_two_tower_without_interactions_serves_similarity(styled):
    import dataclasses

    bare = dataclasses.replace(styled, interactions=None)
    m = ContentRecall(model="two_tower", seed_weighting="uniform").fit(bare)
    assert m.params["two_tower"] == {"reason": "no interactions / week to train on", "served": "similarity"}
    assert m.tower is None and m.track_index.dim == D


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="model must be one of"):
        ContentRecall(model="towers")


def test_a_catalogue_of_at_most_k_embedded_tracks_trains_nothing(styled):
    import dataclasses

    ids, _ = _tracks()
    small = dataclasses.replace(styled, tracks=styled.spark.createDataFrame([(t,) for t in ids[:30]], "track_id string"))
    m = ContentRecall(model="two_tower", seed_weighting="uniform").fit(small)
    assert m.params["two_tower"] == {
        "reason": "only 30 tracks with an audio embedding (<= 30): a held-out recall@30 cannot tell a tower from "
                  "the raw vectors", "served": "similarity"}
    assert m.tower is None and len(m.track_index) == 30


def test_two_trainings_at_the_shipped_sizes_are_byte_identical(two_torch_threads):
    """With more than one torch thread the backward of ``t[idx]`` (repeated indices) adds in thread
    order: the shipped sizes (256 hidden, 64-d, batches of 512) trained a different tower each time
    until the loop ran under ``deterministic_torch``."""
    import torch

    ex, emb = _style_examples()
    fit = dict(STYLE_FIT, hidden=256, out_dim=64, batch_size=512, epochs=1)
    towers = [fit_two_tower(ex, emb, **fit)[0] for _ in range(3)]
    spec = {"in_dim": D, "hidden": 256, "out_dim": 64}
    assert len({tower_bytes(t, spec) for t in towers}) == 1
    assert not torch.are_deterministic_algorithms_enabled()  # the mode is restored after training


def test_the_same_examples_in_another_order_train_the_same_tower():
    """A collect returns the examples, and collect_list each seed list, in the order of the shuffle
    that produced them: the tower must come out the same, byte for byte, in any order."""
    ex, emb = _style_examples()
    fit = dict(STYLE_FIT, epochs=3)
    a, rep_a = fit_two_tower(ex, emb, **fit)
    shuffled = ex.sample(frac=1.0, random_state=7).reset_index(drop=True)
    shuffled["seeds"] = shuffled["seeds"].map(lambda s: list(reversed(s)))
    b, rep_b = fit_two_tower(shuffled, emb, **fit)
    assert a is not None and rep_a["history"] == rep_b["history"]
    spec = {"in_dim": D, "hidden": 16, "out_dim": 4}
    assert tower_bytes(a, spec) == tower_bytes(b, spec)
