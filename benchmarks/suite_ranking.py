"""Benchmark suite "ranking": DIN quality and scoring speed, DIN vs recall-only NDCG, creator pooling.

Run ``python benchmarks/run.py --suite ranking --size S|M|L`` (or this file with the same flags).
Writes ``benchmarks/results/ranking_<size>.json``; figures are discussed in ``benchmarks/README.md`` (ranking section).

Data: a small synthetic platform generated here with numpy (the shared generator was not ready when
this suite was written): ``n_clusters`` styles, each split into 4 sub-styles; every user prefers two
styles and one sub-style inside each; track content vectors (stand-ins for CLAP, 32-d) are
style centre + sub-style offset + noise; 20% of each creator's tracks are "junk" (intros, skits)
whose content sits in a separate subspace; plays are Zipf by popularity inside a style. Two
simulated recall channels ("style": popular tracks of the user's top styles; "popular": global
popularity) give the exposure pool for DIN negatives and the candidates of the evaluation week.

Parts:

* ``din``: training set in Spark for 3 label weeks (the last = validation), DIN with and without
  content: AUC / log-loss / seconds.
* ``ndcg``: week W candidates (fused channels) ranked by the recall score vs the final score with
  DIN (:func:`compare_rankings` below, evaluation metrics of the project).
* ``speed``: DIN scoring rows/s through :func:`score_candidates` (``mapInPandas``) vs plain torch
  (:func:`score_pandas`) on the same rows.
* ``aggregation``: creator attention pooling vs mean pooling on a held-out week.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import sys
import time

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

log = logging.getLogger("bench.ranking")

SIZES = {
    "S": dict(n_users=2000, n_tracks=3000, n_clusters=12, events_per_week=8.0),
    "M": dict(n_users=10000, n_tracks=10000, n_clusters=20, events_per_week=8.0),
    "L": dict(n_users=40000, n_tracks=30000, n_clusters=30, events_per_week=8.0),
}
W = dt.date(2024, 3, 4)          # evaluation week (Monday)
N_WEEKS = 7                      # weeks of history before W (plus W itself for the truth)
DIM = 32


def make_platform(n_users, n_tracks, n_clusters, events_per_week, seed=0):
    rng = np.random.default_rng(seed)
    n_sub = 4
    centers = rng.normal(size=(n_clusters, DIM)) * (np.arange(DIM) >= 4)
    subs = 0.6 * rng.normal(size=(n_clusters, n_sub, DIM)) * (np.arange(DIM) >= 4)
    cl = rng.integers(0, n_clusters, n_tracks)
    sub = rng.integers(0, n_sub, n_tracks)
    junk = rng.random(n_tracks) < 0.2
    emb = centers[cl] + subs[cl, sub] + 0.3 * rng.normal(size=(n_tracks, DIM))
    emb[junk] = rng.normal(size=(junk.sum(), DIM)) * np.r_[np.full(4, 3.0), np.ones(DIM - 4)]
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    # creators: ~8 tracks each, inside a cluster
    creator = np.array([f"k{c}_{rng.integers(0, max(1, n_tracks // (8 * n_clusters)))}" for c in cl])
    pop = rng.zipf(1.6, n_tracks).clip(1, 1000).astype(float)
    plays = (pop * rng.integers(20, 60, n_tracks)).astype(int)
    up_rate = np.where(rng.random(n_tracks) < 0.15, 0.005, 0.05)
    tracks = pd.DataFrame({
        "track_id": [f"t{i}" for i in range(n_tracks)], "creator_id": creator,
        "genre": [f"g{c}" for c in cl], "tags": [[f"g{c}", f"g{c}s{s}"] for c, s in zip(cl, sub)],
        "play_count": plays, "upvote_count": (plays * up_rate).astype(int),
        "comment_count": (plays * up_rate / 4).astype(int)})
    by_cs = {}
    for i in range(n_tracks):
        if not junk[i]:
            by_cs.setdefault((cl[i], sub[i]), []).append(i)
    by_c = {}
    for i in range(n_tracks):
        by_c.setdefault(cl[i], []).append(i)
    taste = [rng.choice(n_clusters, 2, replace=False) for _ in range(n_users)]
    pref_sub = rng.integers(0, n_sub, (n_users, n_clusters))
    start = dt.datetime.combine(W - dt.timedelta(days=7 * N_WEEKS), dt.time())
    rows = []
    for u in range(n_users):
        act = rng.lognormal(0, 0.6)
        for wk in range(N_WEEKS + 1):
            for _ in range(rng.poisson(events_per_week * act)):
                c = taste[u][0 if rng.random() < 0.7 else 1] if rng.random() < 0.85 else rng.integers(n_clusters)
                if rng.random() < 0.6 and (c, pref_sub[u, c]) in by_cs:
                    pool = by_cs[(c, pref_sub[u, c])]
                else:
                    pool = by_c[c]
                p = pop[pool] / pop[pool].sum()
                t = pool[rng.choice(len(pool), p=p)]
                ts = start + dt.timedelta(days=7 * wk, seconds=int(rng.integers(0, 7 * 86400)))
                rows.append((f"u{u}", f"t{t}", ts, "play", 1.0))
    inter = pd.DataFrame(rows, columns=["user_id", "track_id", "event_ts", "event_type", "weight"])
    embs = pd.DataFrame({"track_id": tracks["track_id"], "embedding": [e.astype(np.float32).tolist() for e in emb]})
    return tracks, inter, embs


def compare_rankings(candidates, truth, test_users, score_cols=("recall_score", "final_score"), k: int = 30) -> dict:
    """NDCG/recall@k of ranking each user's candidates by each column of ``score_cols``
    (``{score_col: recsys_spark.evaluation.metrics.ranking_metrics(...)}``): the evidence "recall-only
    fusion vs with DIN" (candidates carrying ``recall_score`` and ``final_score``)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from recsys_spark.evaluation.metrics import ranking_metrics

    out = {}
    for col in score_cols:
        w = Window.partitionBy("user_id").orderBy(F.col(col).desc_nulls_last(), F.col("track_id"))
        recs = candidates.withColumn("rank", F.row_number().over(w)).where(F.col("rank") <= k)
        out[col] = ranking_metrics(recs.select("user_id", "track_id", "rank"), truth, test_users, k)
    return out


def simulated_recall(tracks, inter, week, n_style=60, n_pop=40):
    """Two channels for ``week``: popular tracks of the user's top-2 styles, and global popular."""
    start = pd.Timestamp(week)
    before = inter[inter["event_ts"] < start]
    heard = before.groupby("user_id")["track_id"].apply(set)
    g = tracks.set_index("track_id")["genre"]
    popularity = before.groupby("track_id").size().sort_values(ascending=False)
    style_pop = {}
    for t, n in popularity.items():
        style_pop.setdefault(g[t], []).append(t)
    top_styles = before.assign(genre=before["track_id"].map(g)).groupby(["user_id", "genre"]).size() \
        .reset_index(name="n").sort_values(["user_id", "n"], ascending=[True, False]).groupby("user_id").head(2)
    rows = []
    glob = list(popularity.index[: n_pop * 3])
    for u, grp in top_styles.groupby("user_id"):
        h = heard.get(u, set())
        cand = [t for s in grp["genre"] for t in style_pop.get(s, [])[: n_style] if t not in h]
        for r, t in enumerate(cand[:n_style]):
            rows.append((u, t, "style", float(n_style - r), r + 1, None))
        for r, t in enumerate([t for t in glob if t not in h][:n_pop]):
            rows.append((u, t, "popular", float(n_pop - r), r + 1, None))
    return pd.DataFrame(rows, columns=["user_id", "track_id", "channel", "score", "rank", "seed_track_id"])


def run(size: str, out_dir: str, parts) -> dict:
    from pyspark.sql import functions as F

    from recsys_spark.aggregation.creators import train_creator_attention
    from recsys_spark.history import build_history
    from recsys_spark.ranking.din_spark import (build_training_set, score_candidates, score_pandas,
                                                train_din, _cached_model, model_digest)
    from recsys_spark.ranking.fusion import final_score, fuse
    from recsys_spark.spark import get_spark

    spark = get_spark(app_name="bench-ranking", master="local[2]", driver_memory="4g", shuffle_partitions=4)
    res = {"suite": "ranking", "size": size, "machine": platform.processor() or platform.machine(),
           "cores": os.cpu_count(), "params": SIZES[size]}
    t = time.time()
    tracks, inter, embs = make_platform(**SIZES[size])
    res["data"] = {"users": int(inter["user_id"].nunique()), "tracks": len(tracks), "events": len(inter),
                   "seconds": time.time() - t}
    log.info("data %s", res["data"])
    inter_df = spark.createDataFrame(inter, "user_id string, track_id string, event_ts timestamp, event_type string, weight double").cache()
    tracks_df = spark.createDataFrame(tracks[["track_id", "creator_id", "genre", "play_count"]]).cache()
    embs_df = spark.createDataFrame(embs, "track_id string, embedding array<float>").cache()
    label_weeks = [W - dt.timedelta(days=7 * i) for i in (3, 2, 1)]
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"ranking_{size}.json")

    def dump():  # after every part, so a later timeout keeps what was measured
        with open(path, "w") as fh:
            json.dump(res, fh, indent=1, default=float)
    model_dir = os.path.join(ROOT, "benchmarks", "cache", f"din_model_{size}")  # git-ignored

    if "din" in parts or "ndcg" in parts or "speed" in parts:
        pool = pd.concat([simulated_recall(tracks, inter, w).assign(week_start=w) for w in label_weeks])
        pool_df = spark.createDataFrame(pool[["user_id", "track_id", "week_start"]])
        t = time.time()
        train = build_training_set(spark, inter_df, label_weeks, negatives_pool_df=pool_df, n_negatives=4,
                                   seed=0, max_history=30)
        train_pdf = train.toPandas()
        res["din_training_set"] = {"rows": len(train_pdf), "positives": int(train_pdf["label"].sum()),
                                   "seconds": time.time() - t}
        log.info("training set %s", res["din_training_set"])
        res["din"] = {}
        for name, content in (("id_only", None), ("id_plus_content", embs)):
            art, m = train_din(train_pdf, track_embeddings=content, use_content=content is not None,
                               embedding_dim=16, attention_hidden=[32], mlp_hidden=[64, 32], max_history=30,
                               epochs=4, batch_size=1024, lr=0.005, patience=2, seed=0, device="cpu")
            res["din"][name] = {k: v for k, v in m.items() if k != "history"}
            if content is not None:
                art.save(model_dir)
            log.info("DIN %s: %s", name, res["din"][name])
            dump()

    if "ndcg" in parts or "speed" in parts:
        cands = spark.createDataFrame(simulated_recall(tracks, inter, W),
                                      "user_id string, track_id string, channel string, score double, rank int, seed_track_id string")
        fused = fuse(cands, {"style": 1.0, "popular": 0.5}).cache()
        start = dt.datetime.combine(W, dt.time())
        seeds = build_history(inter_df, W, last_n=50).cache()
        n_rows = fused.count()
        res["eval_candidates"] = n_rows

    if "ndcg" in parts:
        scored = score_candidates(spark, fused, seeds, model_dir, device="cpu")
        end = start + dt.timedelta(days=7)
        heard = inter_df.where(F.col("event_ts") < F.lit(start)).select("user_id", "track_id").distinct()
        truth = (inter_df.where((F.col("event_ts") >= F.lit(start)) & (F.col("event_ts") < F.lit(end)))
                 .select("user_id", "track_id").distinct().join(heard, ["user_id", "track_id"], "left_anti"))
        test_users = truth.join(heard.select("user_id").distinct(), "user_id", "left_semi") \
            .groupBy("user_id").agg(F.count(F.lit(1)).alias("n_truth"))
        res["ndcg"] = {}
        for wdin in (0.5, 1.0, 2.0):
            fs = final_score(scored, din_weight=wdin).withColumn("din_only", F.col("din_score")).cache()
            cmp = compare_rankings(fs, truth, test_users, ("recall_score", "final_score", "din_only"), k=30)
            res["ndcg"][f"din_weight={wdin}"] = {c: {k: v for k, v in m.items() if k != "recall_curve"}
                                                 for c, m in cmp.items()}
            fs.unpersist()
        log.info("ndcg %s", res["ndcg"])
        dump()

    if "speed" in parts:
        # same rows: fused candidates + the user's history, scored (a) by the Spark UDF and (b) plain torch
        scored = score_candidates(spark, fused, seeds, model_dir, device="cpu")
        scored.write.format("noop").mode("overwrite").save()  # warm-up (worker start, model load)
        reps = []
        for _ in range(2):
            t = time.time()
            scored.write.format("noop").mode("overwrite").save()
            reps.append(time.time() - t)
        from recsys_spark.ranking.din_spark import _history_arrays
        pdf = fused.join(_history_arrays(seeds, 30), "user_id", "left").toPandas()
        from recsys_spark.ranking import din as _D
        files = _D.read_files(model_dir)
        model, vocab, _ = _cached_model(files, model_digest(files), "cpu")
        treps = []
        for _ in range(2):
            t = time.time()
            score_pandas(pdf, model, vocab, 4096)
            treps.append(time.time() - t)
        res["speed"] = {"rows": n_rows, "udf_seconds": min(reps), "torch_seconds": min(treps),
                        "udf_rows_per_s": n_rows / min(reps), "torch_rows_per_s": n_rows / min(treps),
                        "overhead": min(reps) / min(treps),
                        "note": "UDF time includes the history join and Spark task overhead (local[2]); "
                                "torch time = encode + forward in one process on the collected rows"}
        log.info("speed %s", res["speed"])
        dump()

    if "aggregation" in parts:
        tr = spark.createDataFrame(tracks[["track_id", "creator_id", "play_count"]])
        _, rep = train_creator_attention(spark, inter_df, tr, embs_df, train_weeks=label_weeks[:2],
                                         valid_week=label_weeks[2], max_tracks=20, proj_dim=32, hidden=32,
                                         epochs=10, lr=0.003, seed=0)
        res["aggregation"] = rep
        log.info("aggregation %s", rep)
        dump()

    dump()
    log.info("wrote %s", path)
    return res


# The former parts "offline" (fusion tuned on a validation split) and "depth" / "depth_test"
# (recall depths) ran the evaluation-only replica of the pipeline, which is deleted: their JSONs
# (results/ranking_offline.json, results/recall_depth.json) are historical. Settings are now chosen
# through the weekly job itself on a validation split: recsys_spark.evaluation.tuning.tune_weekly
# (benchmarks/suite_evaluation.py --validate).


def main(args) -> dict:
    parts = getattr(args, "parts", None) or "din,ndcg,speed,aggregation"
    return run(args.size, getattr(args, "out", None) or os.path.join(ROOT, "benchmarks", "results"),
               set(parts.split(",")))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="S", choices=sorted(SIZES))
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    ap.add_argument("--parts", default="din,ndcg,speed,aggregation")
    a = ap.parse_args()
    main(a)
