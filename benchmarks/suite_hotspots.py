"""Suite "hotspots": before/after figures of the scale fixes (issue 8), same data, same process.

    python benchmarks/run.py --suite hotspots [--before=<git commit>]

"Before" is the code at ``--before`` (default: the commit before the fixes), loaded with
``git show`` into a throw-away module, so the old implementation is measured as it was, not as a
copy kept in the tree. Each pair runs interleaved twice on the same inputs (best of two kept) and
the outputs are compared, so a speed-up that changed the result would show.

1. ``din``: DIN scoring, one row per candidate carrying the user's history (before) vs one row
   per user (:func:`recsys_spark.ranking.din.predict_grouped`), plain torch, one thread.
2. ``mmr``: the greedy re-ranking of one user's 150 candidates (``_mmr_select``), pure numpy.
3. ``select``: the per-user selection in Spark, ``groupBy().applyInPandas`` (before) vs
   ``mapInPandas`` over user-clustered rows (after), 3,000 users x 150 candidates.
4. ``fuse``: channel fusion in Spark (window de-duplication + shuffles per aggregation, before;
   one shuffle by user, after) on 2,000 users x 5 channels x 200 candidates.
5. ``din_lengths``: DIN scoring with M-like history lengths (mean ~13.5), batches padded to 50
   (commit ``0530d8c``) vs batches cut to their longest history (``--parts=din_lengths``).
6. ``als``: the ALS channel's top-K on one fitted model, ``topk="mllib"`` (before) vs
   ``topk="faiss"`` (after), 30,000 users x 8,000 tracks, top 200 (``--parts=als``).
7. ``mmr_batch``: the greedy re-ranking called once per user (commit ``5608e7b``) vs once per
   Arrow batch of users, vectorised across users (``--parts=mmr_batch``): pure numpy with and
   without 512-d track embeddings, and the Spark ``select_playlists`` at M's shape
   (20,000 users x 150 candidates, no embeddings).
8. ``din_table``: DIN scoring projecting the content vectors per candidate row and history
   position (commit ``5608e7b``) vs once per vocabulary row (:meth:`DIN.item_table`), M-like
   history lengths, one thread (``--parts=din_table``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import types

BEFORE = "82a5cd4"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _old_module(path: str, commit: str, name: str):
    src = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=REPO, check=True, capture_output=True,
                         text=True).stdout
    pkg = "recsys_spark." + ".".join(path[len("recsys_spark/"):-3].split("/")[:-1])
    mod = types.ModuleType(f"{pkg}._before_{name}")
    mod.__package__ = pkg
    sys.modules[mod.__name__] = mod  # dataclasses look their module up while the classes are made
    try:
        exec(compile(src, f"{commit}:{path}", "exec"), mod.__dict__)
    finally:  # not importable afterwards, so Spark ships its functions by value to the workers
        del sys.modules[mod.__name__]
    return mod.__dict__


def _best(fn, reps: int = 2) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.time()
        fn()
        best = min(best, time.time() - t)
    return best


def bench_din(users: int = 200, cands: int = 300, hist_len: int = 50) -> dict:
    import numpy as np
    import torch

    from recsys_spark.ranking import din as D

    torch.set_num_threads(1)
    torch.manual_seed(0)
    g = np.random.default_rng(0)
    n_items = 5000
    cfg = D.DINConfig(n_items=n_items, n_id_items=n_items, embedding_dim=32, content_dim=512,
                      attention_hidden=[64, 32], mlp_hidden=[128, 64], max_history=hist_len)
    content = torch.nn.functional.normalize(torch.randn(n_items + D.N_SPECIAL, 512), dim=1)
    content[D.PAD] = 0
    model = D.DIN(cfg, content).eval()
    vocab = {f"t{i}": i + D.N_SPECIAL for i in range(n_items)}
    hist = [[f"t{i}" for i in g.integers(0, n_items, hist_len)] for _ in range(users)]
    cand = [[f"t{i}" for i in g.integers(0, n_items, cands)] for _ in range(users)]

    def before():
        rows_h = [h for h, c in zip(hist, cand) for _ in c]
        rows_c = [t for c in cand for t in c]
        return D.predict(model, D.Batchable(hist=D.encode_histories(rows_h, vocab, hist_len),
                                            cand=D.encode_ids(rows_c, vocab)), batch_size=4096)

    def after():
        flat = np.concatenate([np.asarray(c, dtype=object) for c in cand])
        owner = np.repeat(np.arange(users), cands)
        return D.predict_grouped(model, D.encode_histories(hist, vocab, hist_len), D.encode_ids(flat, vocab),
                                 owner, batch_size=4096)

    diff = float(np.abs(before() - after()).max())
    tb, ta = _best(before), _best(after)
    rows = users * cands
    return {"rows": rows, "before_rows_per_s": round(rows / tb), "after_rows_per_s": round(rows / ta),
            "speedup": round(tb / ta, 2), "max_abs_diff": diff}


def _din_m_like(users: int, cands: int, mean_len: float):
    """A DIN (30K items, 512-d content, seeded) and grouped inputs with the M platform's history
    lengths (geometric, cap 50), one torch thread: ``(cfg, model, lens, hist, owner, cand)``."""
    import numpy as np
    import torch

    from recsys_spark.ranking import din as D

    torch.set_num_threads(1)
    torch.manual_seed(0)
    g = np.random.default_rng(0)
    n_items = 30000
    cfg = D.DINConfig(n_items=n_items, n_id_items=n_items, embedding_dim=32, content_dim=512,
                      attention_hidden=[64, 32], mlp_hidden=[128, 64], max_history=50)
    model = D.DIN(cfg, torch.randn(n_items + D.N_SPECIAL, 512)).eval()
    lens = np.minimum(50, g.geometric(1 / mean_len, size=users))
    hist = np.zeros((users, 50), dtype=np.int64)
    for u, n in enumerate(lens):
        hist[u, :n] = g.integers(D.N_SPECIAL, n_items + D.N_SPECIAL, size=n)
    owner = np.repeat(np.arange(users), cands)
    cand = g.integers(D.N_SPECIAL, n_items + D.N_SPECIAL, size=users * cands)
    return cfg, model, lens, hist, owner, cand


BEFORE_LENGTHS = "0530d8c"   # predict_grouped before batches were cut to their longest history


def bench_din_lengths(users: int = 600, cands: int = 150, mean_len: float = 13.5, commit: str = BEFORE_LENGTHS) -> dict:
    """DIN scoring with the history lengths of the M platform (geometric, mean ~13.5 seeds, cap
    50): every batch padded to 50 positions (before) vs users sorted by history length and each
    batch cut to its longest history (after). One thread, same model, same rows."""
    import numpy as np
    import torch

    from recsys_spark.ranking import din as D

    src = subprocess.run(["git", "show", f"{commit}:recsys_spark/ranking/din.py"], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    ns = dict(vars(D))
    exec(src[src.index("def predict_grouped("):src.index("def fit(")], ns)
    old = ns["predict_grouped"]
    cfg, model, lens, hist, owner, cand = _din_m_like(users, cands, mean_len)
    with torch.no_grad():
        a, b = old(model, hist, cand, owner, 4096), D.predict_grouped(model, hist, cand, owner, 4096)
        tb = _best(lambda: old(model, hist, cand, owner, 4096))
        ta = _best(lambda: D.predict_grouped(model, hist, cand, owner, 4096))
    rows = users * cands
    return {"rows": rows, "mean_history": round(float(lens.mean()), 1), "before_commit": commit,
            "before_rows_per_s": round(rows / tb), "after_rows_per_s": round(rows / ta),
            "speedup": round(tb / ta, 2), "max_abs_diff": float(np.abs(a - b).max())}


def bench_din_table(users: int = 600, cands: int = 150, mean_len: float = 13.5, commit: str = "5608e7b") -> dict:
    import numpy as np
    import torch

    from recsys_spark.ranking import din as D

    old_d = _old_module("recsys_spark/ranking/din.py", commit, "din")
    cfg, model, lens, hist, owner, cand = _din_m_like(users, cands, mean_len)
    old_model = old_d["DIN"](old_d["DINConfig"](**vars(cfg)), model.content).eval()
    old_model.load_state_dict(model.state_dict())
    with torch.no_grad():
        t = time.time()
        model.item_table()
        table_s = time.time() - t
        a = old_d["predict_grouped"](old_model, hist, cand, owner, 4096)
        b = D.predict_grouped(model, hist, cand, owner, 4096)
        tb = _best(lambda: old_d["predict_grouped"](old_model, hist, cand, owner, 4096), reps=3)
        ta = _best(lambda: D.predict_grouped(model, hist, cand, owner, 4096), reps=3)
    rows = users * cands
    return {"rows": rows, "vocabulary": cfg.n_items, "mean_history": round(float(lens.mean()), 1), "before_commit": commit,
            "before_rows_per_s": round(rows / tb), "after_rows_per_s": round(rows / ta),
            "speedup": round(tb / ta, 2), "item_table_seconds_once_per_worker": round(table_s, 2),
            "max_abs_diff": float(np.abs(a - b).max())}


def _mmr_users(n_users: int, n: int = 150, dim: int = 512):
    import numpy as np
    import pandas as pd

    g = np.random.default_rng(0)
    out = []
    for u in range(n_users):
        emb = list(g.standard_normal((n, dim)).astype(np.float32))
        for k in g.integers(0, n, n // 4):
            emb[k] = None
        out.append(pd.DataFrame({
            "user_id": f"u{u}", "track_id": [f"t{i}" for i in g.integers(0, 3000, n)],
            "final_score": g.random(n).round(3), "channels": [["als"]] * n, "seed_track_id": None,
            "creator_id": [f"c{i}" for i in g.integers(0, 60, n)], "genre": [f"g{i}" for i in g.integers(0, 18, n)],
            "is_fresh": g.random(n) < 0.1, "is_backfill": g.random(n) < 0.05, "embedding": emb}))
    return out


def bench_mmr(commit: str, n_users: int = 150) -> dict:
    from recsys_spark.rerank import rules

    old = _old_module("recsys_spark/rerank/rules.py", commit, "rules")["_mmr_select"]
    users = _mmr_users(n_users)
    args = (30, 2, 0.8, 3, True)
    same = sum(list(old(p, *args).track_id) == list(rules._mmr_select(p, *args).track_id) for p in users)
    tb = _best(lambda: [old(p, *args) for p in users])
    ta = _best(lambda: [rules._mmr_select(p, *args) for p in users])
    return {"users": n_users, "candidates_per_user": 150, "before_ms_per_user": round(tb / n_users * 1000, 2),
            "after_ms_per_user": round(ta / n_users * 1000, 2), "speedup": round(tb / ta, 2),
            "identical_playlists": f"{same}/{n_users}"}


def bench_mmr_batch(spark, commit: str = "5608e7b", n_users: int = 300, spark_users: int = 20000) -> dict:
    import pandas as pd
    from pyspark.sql import functions as F

    from recsys_spark.rerank import rules

    old_ns = _old_module("recsys_spark/rerank/rules.py", commit, "rules")
    old = old_ns["_mmr_select"]
    users = _mmr_users(n_users)
    args = (30, 2, 0.8, 3, True)
    out = {"before_commit": commit, "users": n_users, "candidates_per_user": 150}
    for name, drop in (("embedding_512", []), ("no_embedding", ["embedding"])):
        per_user = [p.drop(columns=drop) for p in users]
        frame = pd.concat(per_user, ignore_index=True)
        want = pd.concat([old(p, *args) for p in per_user], ignore_index=True)
        got = rules._mmr_select(frame, *args)
        tb = _best(lambda: [old(p, *args) for p in per_user], reps=3)
        ta = _best(lambda: rules._mmr_select(frame, *args), reps=3)
        out[name] = {"before_ms_per_user": round(tb / n_users * 1000, 3),
                     "after_ms_per_user": round(ta / n_users * 1000, 3), "speedup": round(tb / ta, 2),
                     "identical": bool(want.equals(got))}
    df = (spark.range(spark_users * 150).select(
        (F.col("id") % spark_users).cast("string").alias("user_id"),
        F.concat(F.lit("t"), (F.abs(F.xxhash64("id")) % 30000).cast("string")).alias("track_id"),
        F.rand(1).alias("final_score"), F.array(F.lit("als")).alias("channels"),
        F.lit(None).cast("string").alias("seed_track_id"),
        F.concat(F.lit("c"), (F.abs(F.xxhash64("id", F.lit(1))) % 3000).cast("string")).alias("creator_id"),
        F.concat(F.lit("g"), (F.abs(F.xxhash64("id", F.lit(2))) % 18).cast("string")).alias("genre"),
        (F.rand(2) < 0.1).alias("is_fresh"), (F.rand(3) < 0.02).alias("is_backfill"))).persist()
    df.count()
    old_select = old_ns["select_playlists"]

    def run(fn):
        return fn(df, 30, 2, 0.8, 0.1, True).write.format("noop").mode("overwrite").save()

    tb = _best(lambda: run(old_select))
    ta = _best(lambda: run(rules.select_playlists))
    a = old_select(df, 30, 2, 0.8, 0.1, True).select("user_id", "position", "track_id")
    b = rules.select_playlists(df, 30, 2, 0.8, 0.1, True).select("user_id", "position", "track_id")
    out["spark_select"] = {"users": spark_users, "before_s": round(tb, 1), "after_s": round(ta, 1),
                           "speedup": round(tb / ta, 2), "rows": b.count(),
                           "rows_that_differ": a.exceptAll(b).count() + b.exceptAll(a).count()}
    df.unpersist()
    return out


def bench_select(spark, commit: str, users: int = 3000, cands: int = 150) -> dict:
    from pyspark.sql import functions as F

    from recsys_spark.rerank import rules

    old = _old_module("recsys_spark/rerank/rules.py", commit, "rules")["select_playlists"]
    df = (spark.range(users * cands).select(
        (F.col("id") % users).cast("string").alias("user_id"),
        F.concat(F.lit("t"), (F.abs(F.xxhash64("id")) % 5000).cast("string")).alias("track_id"),
        F.rand(1).alias("final_score"), F.array(F.lit("als")).alias("channels"),
        F.lit(None).cast("string").alias("seed_track_id"),
        F.concat(F.lit("c"), (F.abs(F.xxhash64("id", F.lit(1))) % 300).cast("string")).alias("creator_id"),
        F.concat(F.lit("g"), (F.abs(F.xxhash64("id", F.lit(2))) % 18).cast("string")).alias("genre"),
        (F.rand(2) < 0.1).alias("is_fresh"), F.lit(False).alias("is_backfill"),
        F.array(*[F.randn(10 + k).cast("float") for k in range(64)]).alias("embedding"))).persist()
    df.count()

    def run(fn):
        return fn(df, 30, 2, 0.8, 0.1, True).write.format("noop").mode("overwrite").save()

    tb, ta = _best(lambda: run(old)), _best(lambda: run(rules.select_playlists))
    a = old(df, 30, 2, 0.8, 0.1, True).select("user_id", "position", "track_id")
    b = rules.select_playlists(df, 30, 2, 0.8, 0.1, True).select("user_id", "position", "track_id")
    differ = a.exceptAll(b).count()
    df.unpersist()
    return {"users": users, "candidates_per_user": cands, "before_users_per_s": round(users / tb),
            "after_users_per_s": round(users / ta), "speedup": round(tb / ta, 2), "rows_that_differ": differ}


def bench_fuse(spark, commit: str, users: int = 2000, per_channel: int = 200) -> dict:
    from pyspark.sql import functions as F

    from recsys_spark.ranking import fusion

    old = _old_module("recsys_spark/ranking/fusion.py", commit, "fusion")["fuse"]
    chans = ["item_cf", "als", "content", "prompt", "popular"]
    df = (spark.range(users * per_channel * len(chans)).select(
        (F.col("id") % users).cast("string").alias("user_id"),
        F.concat(F.lit("t"), (F.abs(F.xxhash64("id")) % 3000).cast("string")).alias("track_id"),
        F.element_at(F.array(*[F.lit(c) for c in chans]),
                     (F.floor(F.col("id") / users) % len(chans) + 1).cast("int")).alias("channel"),
        F.rand(3).alias("score"), (F.floor(F.col("id") / (users * len(chans))) + 1).cast("int").alias("rank"),
        F.lit(None).cast("string").alias("seed_track_id"))).persist()
    n = df.count()
    weights = {"item_cf": 1.0, "als": 1.0, "content": 0.5, "prompt": 0.5, "popular": 0.2}
    parts = int(spark.conf.get("spark.sql.shuffle.partitions"))

    def run(fn, **kw):
        return fn(df, weights, **kw).write.format("noop").mode("overwrite").save()

    tb = _best(lambda: run(old))
    ta = _best(lambda: run(fusion.fuse, num_partitions=parts))
    a = old(df, weights).select("user_id", "track_id", F.round("recall_score", 12).alias("s"), "channels")
    b = fusion.fuse(df, weights, num_partitions=parts).select("user_id", "track_id",
                                                              F.round("recall_score", 12).alias("s"), "channels")
    differ = a.exceptAll(b).count()
    df.unpersist()
    return {"rows_in": n, "before_s": round(tb, 1), "after_s": round(ta, 1), "speedup": round(tb / ta, 2),
            "rows_that_differ": differ}


def bench_als(spark, users: int = 30000, tracks: int = 8000, per_user: int = 25, n: int = 200) -> dict:
    """ALS recall top-K on one fitted model: MLlib ``recommendForUserSubset`` + anti join + window
    (before) vs broadcast item factors + faiss per batch of users (after), same ``n``."""
    from pyspark.sql import functions as F

    from recsys_spark.recall.als import ALSRecall, ALSRecallModel
    from recsys_spark.recall.base import ChannelInputs

    inter = (spark.range(users * per_user).select(
        F.concat(F.lit("u"), (F.col("id") % users).cast("string")).alias("user_id"),
        # a skewed catalog: half the events on the first 5% of the tracks
        F.concat(F.lit("t"), F.when(F.rand(1) < 0.5, F.floor(F.rand(2) * (tracks // 20)))
                 .otherwise(F.floor(F.rand(3) * tracks)).cast("int").cast("string")).alias("track_id"),
        F.lit(dt.datetime(2026, 11, 1)).alias("event_ts"), F.lit("play").alias("event_type"),
        F.lit(1.0).alias("weight"))).persist()
    inter.count()
    model = ALSRecall(rank=64, max_iter=5, reg_param=0.1, alpha=5.0, num_blocks=8, seed=0).fit(
        ChannelInputs(spark, interactions=inter))
    seeds = inter.select("user_id").distinct()
    heard = inter.select("user_id", "track_id").distinct().persist()
    heard.count()
    inputs = ChannelInputs(spark, users=seeds, heard=heard)

    def recommend(topk):
        m = ALSRecallModel(model.als_model, model.user_index, model.item_index, {**model.params, "topk": topk})
        return m.recommend(inputs, n)

    def run(topk):
        return recommend(topk).write.format("noop").mode("overwrite").save()

    tb = _best(lambda: run("mllib"))
    ta = _best(lambda: run("faiss"))
    a = recommend("mllib").select("user_id", "track_id")
    b = recommend("faiss").select("user_id", "track_id")
    n_rows = b.count()
    differ = a.exceptAll(b).count()
    inter.unpersist()
    heard.unpersist()
    return {"users": users, "tracks": tracks, "n": n, "rows_out": n_rows, "before_s": round(tb, 1),
            "after_s": round(ta, 1), "speedup": round(tb / ta, 2), "rows_that_differ": differ,
            "note": "same fitted model; differing rows can only be float ties at the k-th score"}


def main(args) -> int:
    from recsys_spark.spark import get_spark

    extra = getattr(args, "extra", []) or []
    commit = next((e.split("=", 1)[1] for e in extra if e.startswith("--before=")), BEFORE)
    parts = next((e.split("=", 1)[1] for e in extra if e.startswith("--parts=")), "din,mmr,select,fuse").split(",")
    path = os.path.join(args.out, "hotspots.json")
    out = {}
    if os.path.exists(path):  # a run of some parts keeps the others' figures
        with open(path) as fh:
            out = json.load(fh)
    out.update({"suite": "hotspots", "before_commit": commit, "machine": f"{os.cpu_count()} cores",
                "load_average_at_start": os.getloadavg()[0]})
    if "din" in parts:
        out["din"] = bench_din()
        print("din", out["din"], flush=True)
    if "din_lengths" in parts:
        out["din_lengths"] = bench_din_lengths()
        print("din_lengths", out["din_lengths"], flush=True)
    if "din_table" in parts:
        out["din_table"] = bench_din_table()
        print("din_table", out["din_table"], flush=True)
    if "mmr" in parts:
        out["mmr"] = bench_mmr(commit)
        print("mmr", out["mmr"], flush=True)
    if "select" in parts or "fuse" in parts or "als" in parts or "mmr_batch" in parts:
        spark = get_spark(app_name="bench-hotspots", master="local[2]", driver_memory="6g", shuffle_partitions=8)
        if "select" in parts:
            out["select"] = bench_select(spark, commit)
            print("select", out["select"], flush=True)
        if "fuse" in parts:
            out["fuse"] = bench_fuse(spark, commit)
            print("fuse", out["fuse"], flush=True)
        if "als" in parts:
            out["als"] = bench_als(spark)
            print("als", out["als"], flush=True)
        if "mmr_batch" in parts:
            out["mmr_batch"] = bench_mmr_batch(spark)
            print("mmr_batch", out["mmr_batch"], flush=True)
    out["load_average_at_end"] = os.getloadavg()[0]
    out["measured_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1)
    print(json.dumps(out, indent=1))
    return 0
