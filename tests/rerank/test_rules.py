"""Playlist rules on hand-made candidates: exclusions, creator cap, exactly N, back-fill, MMR, reasons."""

import datetime as dt

import pandas as pd
from pyspark.sql import functions as F

from recsys_spark.rerank.rules import _mmr_select, add_reasons, build_playlists

W = dt.date(2026, 11, 23)
OLD = dt.datetime(2025, 1, 1)
NEW = dt.datetime(2026, 11, 20)

CANDS = "user_id string, track_id string, channels array<string>, final_score double, seed_track_id string"
TRACKS = ("track_id string, creator_id string, title string, genre string, created_at timestamp, "
          "play_count long, upvote_count long, comment_count long")


def _tracks(spark, rows):
    return spark.createDataFrame(rows, TRACKS)


def _catalog(spark, n=12):
    # track i by creator c(i % 4); popularity decreasing with i; t0 by user "u1" (own track)
    rows = [(f"t{i}", "u1" if i == 0 else f"c{i % 4}", f"Song {i}", "pop", OLD, 1000 - i, 10, 1) for i in range(n)]
    return _tracks(spark, rows)


def _playlist(df, user):
    return [r["track_id"] for r in df.where(F.col("user_id") == user).orderBy("position").collect()]


def test_exclusions_cap_and_exact_size(spark):
    tracks = _catalog(spark)
    cands = spark.createDataFrame(
        [("u1", f"t{i}", ["item_cf"], 10.0 - i, None) for i in range(12)], CANDS)
    heard = spark.createDataFrame([("u1", "t1")], "user_id string, track_id string")
    users = spark.createDataFrame([("u1",)], "user_id string")
    out = build_playlists(cands, users, heard, tracks, W, size=5, creator_cap=1, diversity=False,
                          fresh_share=0.0)
    # t0 own, t1 heard; cap 1 per creator: t2 (c2), t3 (c3), t4 (c0), t5 (c1); then creators exhausted
    # -> fewer than 5 real picks allowed: the catalog has only 4 creators besides u1, so 4 rows
    assert _playlist(out, "u1") == ["t2", "t3", "t4", "t5"]
    out2 = build_playlists(cands, users, heard, tracks, W, size=5, creator_cap=2, diversity=False, fresh_share=0.0)
    assert _playlist(out2, "u1") == ["t2", "t3", "t4", "t5", "t6"]
    assert [r["position"] for r in out2.orderBy("position").collect()] == [1, 2, 3, 4, 5]


def test_backfill_fills_to_exact_size_without_heard_or_own(spark):
    tracks = _catalog(spark)
    cands = spark.createDataFrame([("u2", "t9", ["item_cf"], 1.0, "t8")], CANDS)
    heard = spark.createDataFrame([("u2", "t1"), ("u2", "t2"), ("u2", "t8")], "user_id string, track_id string")
    users = spark.createDataFrame([("u2",), ("u3",)], "user_id string")  # u3: no candidates at all
    out = build_playlists(cands, users, heard, tracks, W, size=4, creator_cap=2, diversity=False, fresh_share=0.0,
                          backfill_pool=2)
    # u2: the real candidate first, then popular tracks (t0 is by u1, not u2, so allowed) minus heard
    assert _playlist(out, "u2") == ["t9", "t0", "t3", "t4"]
    assert out.where("user_id = 'u2' and position = 2").first()["sources"] == ["popular_backfill"]
    assert _playlist(out, "u3") == ["t0", "t1", "t2", "t3"]


def test_short_user_when_catalog_runs_out(spark):
    tracks = _catalog(spark, n=3)
    cands = spark.createDataFrame([], CANDS)
    heard = spark.createDataFrame([("u9", "t0")], "user_id string, track_id string")
    users = spark.createDataFrame([("u9",)], "user_id string")
    out = build_playlists(cands, users, heard, tracks, W, size=30, creator_cap=5, diversity=False, fresh_share=0.0)
    assert _playlist(out, "u9") == ["t1", "t2"]


def _pdf(rows):
    return pd.DataFrame(rows, columns=["user_id", "track_id", "final_score", "channels", "seed_track_id", "creator_id",
                                       "genre", "is_fresh", "is_backfill", "embedding"])


def test_mmr_prefers_diverse_embeddings():
    # a and b are near-duplicates; c is different and slightly less relevant
    rows = [("u", "a", 1.0, ["content"], None, "c1", "g", False, False, [1.0, 0.0]),
            ("u", "b", 0.95, ["content"], None, "c2", "g2", False, False, [0.99, 0.14]),
            ("u", "c", 0.9, ["content"], None, "c3", "g3", False, False, [0.0, 1.0])]
    plain = _mmr_select(_pdf(rows), 3, 5, 1.0, 0, True)
    assert list(plain["track_id"]) == ["a", "b", "c"]
    diverse = _mmr_select(_pdf(rows), 3, 5, 0.5, 0, True)
    assert list(diverse["track_id"]) == ["a", "c", "b"]


def test_creator_embeddings_make_sound_alike_creators_near_duplicates(spark):
    # a (creator ka) and b (creator kb) are by different creators whose pooled embeddings are almost
    # identical; c (creator kc) is by a creator who sounds different. Different genres and no track
    # embeddings: without creator embeddings nothing tells a and b apart from a and c.
    tracks = _tracks(spark, [("a", "ka", "A", "g1", OLD, 10, 1, 1), ("b", "kb", "B", "g2", OLD, 10, 1, 1),
                             ("c", "kc", "C", "g3", OLD, 10, 1, 1)])
    cands = spark.createDataFrame([("u", "a", ["als"], 1.0, None), ("u", "b", ["als"], 0.95, None),
                                   ("u", "c", ["als"], 0.9, None)], CANDS)
    heard = spark.createDataFrame([], "user_id string, track_id string")
    users = spark.createDataFrame([("u",)], "user_id string")
    cemb = spark.createDataFrame([("ka", [1.0, 0.0, 0.0]), ("kb", [0.99, 0.1, 0.0]), ("kc", [0.0, 0.0, 1.0])],
                                 "creator_id string, embedding array<float>")
    kw = dict(size=2, creator_cap=1, diversity_lambda=0.5, fresh_share=0.0)
    assert _playlist(build_playlists(cands, users, heard, tracks, W, **kw), "u") == ["a", "b"]
    assert _playlist(build_playlists(cands, users, heard, tracks, W, creator_embeddings=cemb, **kw), "u") == ["a", "c"]
    # when relevance dominates (lambda 1) the creator similarity does not matter
    kw1 = dict(kw, diversity_lambda=1.0)
    assert _playlist(build_playlists(cands, users, heard, tracks, W, creator_embeddings=cemb, **kw1), "u") == ["a", "b"]
    # creator_weight 0 turns it off
    assert _playlist(build_playlists(cands, users, heard, tracks, W, creator_embeddings=cemb, creator_weight=0.0,
                                     **kw), "u") == ["a", "b"]


def test_mmr_creator_similarity_is_weighted():
    rows = [("u", "a", 1.0, ["als"], None, "ka", "g1", False, False, None, [1.0, 0.0]),
            ("u", "b", 0.95, ["als"], None, "kb", "g2", False, False, None, [1.0, 0.05]),
            ("u", "c", 0.9, ["als"], None, "kc", "g3", False, False, None, None)]   # kc: no creator embedding
    pdf = pd.DataFrame(rows, columns=["user_id", "track_id", "final_score", "channels", "seed_track_id",
                                      "creator_id", "genre", "is_fresh", "is_backfill", "embedding",
                                      "creator_embedding"])
    # relevance after scaling: a 1, b .5, c 0; lambda .5: b's objective .25 - .5 * w * ~1 vs c's 0
    assert list(_mmr_select(pdf, 3, 5, 0.5, 0, True, creator_weight=0.8)["track_id"]) == ["a", "c", "b"]
    assert list(_mmr_select(pdf, 3, 5, 0.5, 0, True, creator_weight=0.3)["track_id"]) == ["a", "b", "c"]


def test_fresh_share_reserves_slots():
    rows = [("u", f"o{i}", 10.0 - i, ["als"], None, f"c{i}", "g", False, False, None) for i in range(4)]
    rows += [("u", "f1", 1.0, ["als"], None, "cf", "g", True, False, None)]
    out = _mmr_select(_pdf(rows), 3, 2, 1.0, 1, False)
    assert list(out["track_id"]) == ["o0", "o1", "f1"]


def test_unplayed_tracks_count_as_fresh_when_asked(spark):
    # o0..o3: old, played; cold: old but nobody played it before W (lowest score); new: a recent
    # upload. One fresh slot in 4 (share .25): new takes it by date; with fresh_unplayed the slot
    # goes to the better-scored of new and cold, and cold outranks new here
    tracks = _tracks(spark, [(f"o{i}", f"c{i}", f"O{i}", "g", OLD, 10, 1, 1) for i in range(4)]
                     + [("cold", "k1", "Cold", "g", OLD, 0, 0, 0), ("new", "k2", "New", "g", NEW, 0, 0, 0)])
    cands = spark.createDataFrame([("u", f"o{i}", ["als"], 10.0 - i, None) for i in range(4)]
                                  + [("u", "cold", ["content"], 2.0, None), ("u", "new", ["content"], 1.0, None)],
                                  CANDS)
    heard = spark.createDataFrame([], "user_id string, track_id string")
    users = spark.createDataFrame([("u",)], "user_id string")
    plays = spark.createDataFrame([("x", f"o{i}", 1.0) for i in range(4)],
                                  "user_id string, track_id string, weight double")
    kw = dict(size=4, creator_cap=1, diversity=False, fresh_share=0.25, interactions=plays)
    assert _playlist(build_playlists(cands, users, heard, tracks, W, **kw), "u") == ["o0", "o1", "o2", "new"]
    assert _playlist(build_playlists(cands, users, heard, tracks, W, fresh_unplayed=True, **kw), "u") == \
        ["o0", "o1", "o2", "cold"]
    # a max_candidates cut of 4 drops both fresh tracks (and the slot stays empty of fresh ones); a
    # fresh lane of 1 brings the best fresh one (cold, with fresh_unplayed) past the cut
    cut = dict(kw, max_candidates=4, fresh_unplayed=True)
    assert _playlist(build_playlists(cands, users, heard, tracks, W, **cut), "u") == ["o0", "o1", "o2", "o3"]
    assert _playlist(build_playlists(cands, users, heard, tracks, W, fresh_lane=1, **cut), "u") == \
        ["o0", "o1", "o2", "cold"]
    # a played set the caller computed (the weekly job's, once per run) is used instead of the plays':
    # with "cold" in it, only "new" is fresh
    played = spark.createDataFrame([(t,) for t in ("o0", "o1", "o2", "o3", "cold")], "track_id string")
    assert _playlist(build_playlists(cands, users, heard, tracks, W, fresh_unplayed=True, played=played, **kw),
                     "u") == ["o0", "o1", "o2", "new"]
    # without a fresh share nothing is reserved, and the flag changes nothing
    assert _playlist(build_playlists(cands, users, heard, tracks, W, fresh_unplayed=True,
                                     **dict(kw, fresh_share=0.0)), "u") == ["o0", "o1", "o2", "o3"]


def test_users_selected_together_equal_users_selected_alone(monkeypatch):
    # many users in one frame (the mapInPandas path), in chunks with padding: no cap, freshness
    # reservation or similarity may leak from one user to another
    import numpy as np

    from recsys_spark.rerank import rules

    g = np.random.default_rng(11)
    frames = []
    for u in range(9):
        n = int(g.integers(3, 40))
        emb = [None if g.random() < 0.3 else g.standard_normal(4).astype(np.float32) for _ in range(n)]
        frames.append(pd.DataFrame({
            "user_id": f"u{u}", "track_id": [f"t{i}" for i in g.integers(0, 30, n)],  # duplicates too
            "final_score": g.random(n).round(2), "channels": [["als"]] * n, "seed_track_id": None,
            "creator_id": [f"c{i}" for i in g.integers(0, 4, n)], "genre": [f"g{i}" for i in g.integers(0, 3, n)],
            "is_fresh": g.random(n) < 0.3, "is_backfill": g.random(n) < 0.2, "embedding": emb,
            "creator_embedding": [g.standard_normal(4).astype(np.float32) for _ in range(n)]}))
    frame = pd.concat(frames, ignore_index=True)
    args = (8, 2, 0.6, 2, True, 0.5)
    alone = pd.concat([_mmr_select(f, *args) for f in frames], ignore_index=True)
    monkeypatch.setattr(rules, "_CHUNK_CELLS", 3 * 40 * 40)  # a few users per chunk
    together = _mmr_select(frame, *args)
    pd.testing.assert_frame_equal(together, alone)
    assert set(together["user_id"]) == {f"u{u}" for u in range(9)}
    assert together.groupby("user_id")["position"].apply(lambda p: list(p) == list(range(1, len(p) + 1))).all()


def _reference_mmr(pdf, size, cap, lam, creator_weight):
    """The selection as the docstring defines it, one user at a time in plain Python (float64, no
    vectorisation, no freshness rule): the reference of the vectorised ``_mmr_select``."""
    import numpy as np

    def unit(v):
        return None if v is None else np.asarray(v, float) / np.linalg.norm(v)

    out = []
    for user, rows in pdf.groupby("user_id", sort=False):
        rows = rows.assign(_bf=rows["is_backfill"].astype(bool)).sort_values(
            ["_bf", "final_score", "track_id"], ascending=[True, False, True], kind="stable")
        rows = rows.drop_duplicates("track_id").to_dict("records")
        real = [r for r in rows if not r["_bf"]]
        lo, hi = min(r["final_score"] for r in real), max(r["final_score"] for r in real)
        for r in rows:
            r["rel"] = 1.0 if hi - lo < 1e-12 else (r["final_score"] - lo) / (hi - lo)
            r["e"], r["ce"] = unit(r["embedding"]), unit(r["creator_embedding"])

        def sim(a, b):
            s = max(0.5 if a["genre"] == b["genre"] else 0.0, 1.0 if a["creator_id"] == b["creator_id"] else 0.0)
            if a["e"] is not None and b["e"] is not None:
                s = max(s, float(a["e"] @ b["e"]))
            if a["ce"] is not None and b["ce"] is not None:
                s = max(s, creator_weight * float(a["ce"] @ b["ce"]))
            return s

        picked, per_creator = [], {}
        for _ in range(size):
            allowed = [r for r in rows if r not in picked and per_creator.get(r["creator_id"], 0) < cap]
            pool = [r for r in allowed if not r["_bf"]]
            if pool:
                best = max(pool, key=lambda r: (lam * r["rel"] - (1 - lam) * max(
                    [sim(r, p) for p in picked if not p["_bf"]], default=0.0), -pool.index(r)))
            elif allowed:
                best = allowed[0]
            else:
                break
            picked.append(best)
            per_creator[best["creator_id"]] = per_creator.get(best["creator_id"], 0) + 1
        out += [(user, r["track_id"]) for r in picked]
    return out


def test_vectorised_selection_equals_the_plain_definition_with_partial_embeddings(monkeypatch):
    """Random users whose candidates partly have track and creator embeddings (as when only some
    tracks have audio), same genres and creators within a user, back-fill rows, missing creators:
    the vectorised chunked selection picks what the plain per-user definition picks."""
    import numpy as np

    from recsys_spark.rerank import rules

    g = np.random.default_rng(5)
    frames = []
    for u in range(12):
        n = int(g.integers(2, 45))
        cover, ccover = g.choice([0.0, 0.1, 0.6, 1.0]), g.choice([0.0, 0.5, 1.0])
        frames.append(pd.DataFrame({
            "user_id": f"u{u:02d}", "track_id": [f"t{i}" for i in g.choice(200, n, replace=False)],
            "final_score": g.random(n), "channels": [["als"]] * n, "seed_track_id": None,
            "creator_id": [None if g.random() < 0.1 else f"c{i}" for i in g.integers(0, 6, n)],
            "genre": [f"g{i}" for i in g.integers(0, 3, n)], "is_fresh": False,
            "is_backfill": np.arange(n) >= n - min(int(g.integers(0, 4)), n - 1),
            "embedding": [g.standard_normal(6).astype(np.float32) if g.random() < cover else None for _ in range(n)],
            "creator_embedding": [g.standard_normal(6).astype(np.float32) if g.random() < ccover else None
                                  for _ in range(n)]}))
    frame = pd.concat(frames, ignore_index=True)
    monkeypatch.setattr(rules, "_CHUNK_CELLS", 4 * 45 * 45)  # several users per chunk
    got = _mmr_select(frame, 10, 2, 0.6, 0, True, creator_weight=0.7)
    want = _reference_mmr(frame, 10, 2, 0.6, 0.7)
    assert list(zip(got["user_id"], got["track_id"])) == want
    assert len(want) > 80


def test_large_backfill_pool_fills_after_real_candidates_in_popularity_order():
    # a short user's back-fill pool grows with each retry (up to the catalog); the real candidates
    # come first (MMR among them), then back-fill in popularity order (its scores: -rank)
    real = [("u", "r1", 0.9, ["als"], None, "k1", "g", False, False, [1.0, 0.0]),
            ("u", "r2", 0.8, ["als"], None, "k2", "g", False, False, [1.0, 0.0])]
    pool = [("u", f"b{p}", -float(p), ["popular_backfill"], None, f"k{p % 7}", "g", False, True, None)
            for p in range(1, 5001)]
    out = _mmr_select(_pdf(real + pool), 30, 1000, 0.5, 0, True)
    assert list(out["track_id"]) == ["r1", "r2"] + [f"b{p}" for p in range(1, 29)]
    assert list(out["position"]) == list(range(1, 31))


def test_creator_cap_counts_missing_creators_as_one():
    rows = [("u", "a", 3.0, ["als"], None, None, "g", False, False, None),
            ("u", "b", 2.0, ["als"], None, None, "g", False, False, None),
            ("u", "c", 1.0, ["als"], None, "k", "g", False, False, None)]
    assert list(_mmr_select(_pdf(rows), 3, 1, 1.0, 0, False)["track_id"]) == ["a", "c"]


def test_reasons(spark):
    tracks = _tracks(spark, [("s1", "c", "Seed Song", "rock", OLD, 1, 1, 1), ("x", "c", "X", "rock", OLD, 1, 1, 1),
                             ("y", "c", "Y", "jazz", OLD, 1, 1, 1), ("z", "c", "Z", "jazz", OLD, 1, 1, 1)])
    pl = spark.createDataFrame(
        [("u", 1, "x", 1.0, ["item_cf", "als"], "s1"), ("u", 2, "y", 0.5, ["prompt"], None),
         ("u", 3, "z", 0.1, ["popular"], None), ("u", 4, "x", 0.0, ["popular_backfill"], None)],
        "user_id string, position int, track_id string, score double, sources array<string>, seed_track_id string")
    prompts = spark.createDataFrame([("p1", "u", "old prompt", OLD), ("p2", "u", "dreamy synthwave at night", NEW)],
                                    "prompt_id string, user_id string, prompt_text string, created_at timestamp")
    got = {r["position"]: r["reason"] for r in add_reasons(pl, tracks, prompts).collect()}
    assert got == {1: "because you played “Seed Song”", 2: "matches your prompt “dreamy synthwave at night”",
                   3: "popular in jazz, which you play", 4: "popular on the platform"}


def test_reasons_say_when_content_embeddings_are_untrained(spark):
    tracks = _tracks(spark, [("s1", "c", "Seed Song", "rock", OLD, 1, 1, 1), ("x", "c", "X", "rock", OLD, 1, 1, 1),
                             ("y", "c", "Y", "jazz", OLD, 1, 1, 1), ("z", "c", "Z", "jazz", OLD, 1, 1, 1)])
    pl = spark.createDataFrame(
        [("u", 1, "x", 1.0, ["content"], "s1"), ("u", 2, "y", 0.5, ["prompt"], None),
         ("u", 3, "z", 0.1, ["content"], None)],
        "user_id string, position int, track_id string, score double, sources array<string>, seed_track_id string")
    prompts = spark.createDataFrame([("p2", "u", "dreamy synthwave", NEW)],
                                    "prompt_id string, user_id string, prompt_text string, created_at timestamp")
    trained = {r["position"]: r["reason"] for r in add_reasons(pl, tracks, prompts).collect()}
    assert trained == {1: "sounds like “Seed Song”, which you played", 2: "matches your prompt “dreamy synthwave”",
                       3: "sounds like what you play"}
    untrained = {r["position"]: r["reason"] for r in add_reasons(pl, tracks, prompts, content_trained=False).collect()}
    assert untrained == {1: "near “Seed Song”, which you played, in untrained audio embeddings",
                         2: "picked for your prompt “dreamy synthwave” by an untrained text model",
                         3: "near what you play in untrained audio embeddings"}


def test_selection_is_per_user_when_arrow_batches_split_users(spark):
    # mapInPandas gets user-clustered rows in Arrow batches of 7 here: users straddle batch
    # boundaries and must still be selected exactly as one pandas call per user would
    import numpy as np

    from recsys_spark.rerank.rules import select_playlists

    g = np.random.default_rng(3)
    rows = [(f"u{u}", f"t{int(t)}", ["als"], float(s), None, f"c{int(c)}", "pop", bool(f), False)
            for u in range(6) for t, s, c, f in zip(g.choice(40, 11, replace=False), g.random(11),
                                                     g.integers(0, 4, 11), g.random(11) < 0.2)]
    schema = ("user_id string, track_id string, channels array<string>, final_score double, seed_track_id string, "
              "creator_id string, genre string, is_fresh boolean, is_backfill boolean")
    df = spark.createDataFrame(rows, schema)
    prev = spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "7")
    try:
        got = {(r.user_id, r.position): r.track_id
               for r in select_playlists(df, size=5, creator_cap=2, diversity_lambda=0.7, fresh_share=0.2).collect()}
    finally:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", prev)
    pdf = pd.DataFrame(rows, columns=[c.split()[0] for c in schema.split(", ")])
    want = {}
    for u, part in pdf.groupby("user_id"):
        sel = _mmr_select(part, 5, 2, 0.7, 1, True)
        want.update({(u, int(p)): t for p, t in zip(sel["position"], sel["track_id"])})
    assert len(want) == 30 and got == want


def _catalog_frame(g, n_users=12, n_tracks=200, n_creators=6, dim=6):
    """Candidates whose vectors are the catalog's (one per track, one per creator; some missing),
    with the per-row columns of the column path and the catalog tables of the shipped path."""
    import numpy as np

    track_vec = {f"t{i}": g.standard_normal(dim).astype(np.float32) for i in range(n_tracks) if g.random() < 0.6}
    creator_vec = {f"c{i}": g.standard_normal(dim).astype(np.float32) for i in range(n_creators) if g.random() < 0.7}
    frames = []
    for u in range(n_users):
        n = int(g.integers(2, 45))
        tracks = [f"t{i}" for i in g.choice(n_tracks, n, replace=False)]
        creators = [None if g.random() < 0.1 else f"c{i}" for i in g.integers(0, n_creators, n)]
        frames.append(pd.DataFrame({
            "user_id": f"u{u:02d}", "track_id": tracks, "final_score": g.random(n), "channels": [["als"]] * n,
            "seed_track_id": None, "creator_id": creators, "genre": [f"g{i}" for i in g.integers(0, 3, n)],
            "is_fresh": False, "is_backfill": np.arange(n) >= n - min(int(g.integers(0, 4)), n - 1),
            "embedding": [track_vec.get(t) for t in tracks],
            "creator_embedding": [creator_vec.get(c) if c else None for c in creators]}))
    return pd.concat(frames, ignore_index=True), track_vec, creator_vec


def test_vectors_looked_up_by_key_pick_what_per_row_vectors_pick(monkeypatch):
    """The shipped path (``(keys, unit rows)`` looked up by track and creator id, in any key order,
    with keys no candidate has) selects exactly what the per-row ``embedding`` columns select, and
    both equal the plain definition."""
    import numpy as np

    from recsys_spark.rerank import rules

    g = np.random.default_rng(8)
    frame, track_vec, creator_vec = _catalog_frame(g)

    def lookup(vecs, extra):
        keys = list(vecs) + extra
        rows = np.stack([vecs[k] for k in vecs] + [g.standard_normal(6).astype(np.float32) for _ in extra])
        perm = g.permutation(len(keys))  # key order is the lookup's business
        return pd.Index(np.array(keys, dtype=object)[perm], dtype=object), rules._normalise(rows[perm])

    monkeypatch.setattr(rules, "_CHUNK_CELLS", 4 * 45 * 45)
    by_column = _mmr_select(frame, 10, 2, 0.6, 0, True, creator_weight=0.7)
    shipped = _mmr_select(frame.drop(columns=["embedding", "creator_embedding"]), 10, 2, 0.6, 0, True,
                          creator_weight=0.7, track_vectors=lookup(track_vec, ["t9999", "zz"]),
                          creator_vectors=lookup(creator_vec, ["c99"]))
    pd.testing.assert_frame_equal(shipped, by_column)
    assert list(zip(shipped["user_id"], shipped["track_id"])) == _reference_mmr(frame, 10, 2, 0.6, 0.7)
    # the vectors matter here: without them the picks differ
    plain = _mmr_select(frame.drop(columns=["embedding", "creator_embedding"]), 10, 2, 0.6, 0, True,
                        creator_weight=0.7)
    assert list(plain["track_id"]) != list(shipped["track_id"])


def test_shipped_vectors_select_what_per_row_arrays_select_through_spark(spark):
    """``select_playlists`` with :class:`ShippedVectors` (the weekly path) equals the per-row
    array columns, across Arrow batches; bad vectors are refused with the key named."""
    import numpy as np
    import pytest
    from chispa import assert_df_equality

    from recsys_spark.rerank.rules import ShippedVectors, select_playlists

    g = np.random.default_rng(9)
    frame, track_vec, creator_vec = _catalog_frame(g, n_users=8)
    schema = ("user_id string, track_id string, final_score double, channels array<string>, seed_track_id string, "
              "creator_id string, genre string, is_fresh boolean, is_backfill boolean, embedding array<float>, "
              "creator_embedding array<float>")
    rows = [tuple(v.tolist() if isinstance(v, np.ndarray) else v for v in r.values())
            for r in frame.to_dict("records")]
    df = spark.createDataFrame(rows, schema)
    tv = ShippedVectors(spark, spark.createDataFrame([(k, v.tolist()) for k, v in track_vec.items()]
                                                     + [("t0", None)], "track_id string, embedding array<float>"),
                        "track_id")
    cv = ShippedVectors(spark, spark.createDataFrame([(k, v.tolist()) for k, v in creator_vec.items()],
                                                     "creator_id string, embedding array<float>"), "creator_id")
    assert (tv.size, cv.size) == (len(track_vec), len(creator_vec))
    prev = spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "17")
    try:
        kw = dict(size=8, creator_cap=2, diversity_lambda=0.6, creator_weight=0.7)
        want = select_playlists(df, **kw)
        got = select_playlists(df.drop("embedding", "creator_embedding"), track_vectors=tv, creator_vectors=cv, **kw)
        assert_df_equality(got, want, ignore_row_order=True)
        without = select_playlists(df.drop("embedding", "creator_embedding"), **kw)  # the vectors matter
        assert without.exceptAll(want).count() > 0
    finally:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", prev)
    mixed = spark.createDataFrame([("a", [1.0, 0.0]), ("b", [1.0, 0.0, 0.0])], "track_id string, embedding array<float>")
    with pytest.raises(ValueError, match="mixed dimensions"):
        ShippedVectors(spark, mixed, "track_id")
    nan = spark.createDataFrame([("a", [float("nan"), 0.0])], "track_id string, embedding array<float>")
    with pytest.raises(ValueError, match="NaN"):
        ShippedVectors(spark, nan, "track_id")
