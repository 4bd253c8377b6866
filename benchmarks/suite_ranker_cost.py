"""Benchmark suite "ranker_cost": train and scoring cost of the rankers per 1M candidates (issue 15).

Run ``python benchmarks/run.py --suite ranker_cost --size XS|S|M`` (XS: 100K candidates, S: 1M,
M: 3M). Writes ``benchmarks/results/ranker_cost_<size>.json``; discussed in ``benchmarks/README.md``
(learned ranker).

What is timed is the project's own code with the shipped settings (``conf/base.yaml`` + the
``--conf`` overlay's ``ranker`` and ``din`` sections), on candidate lists of the rank stage's shape:

* ``fuse_and_features``: :func:`recsys_spark.ranking.fusion.fuse` of the five channels' lists
  (shipped channel weights) and :func:`recsys_spark.ranking.ranker.candidate_features` over the
  interactions before the cutoff; the frame is persisted and counted (what ``rank`` and
  ``train.ranker`` each compute once).
* per ranker model (``logistic``, the default when enabled; ``pairwise``; ``gbt``):
  :func:`~recsys_spark.ranking.ranker.fit_ranker` exactly as the ``train.ranker`` stage calls it
  (held-out users, blend choice and cross-fitting included), then
  :func:`~recsys_spark.ranking.ranker.score` of every candidate written to Spark's ``noop`` sink.
* the DIN: :func:`~recsys_spark.ranking.din_spark.train_din` (shipped architecture, 512-d content
  vectors for every track, ``epochs`` 1 so that the figure is per epoch) on ``din_train_rows``
  labelled examples with 50-long histories, and
  :func:`~recsys_spark.ranking.din_spark.score_candidates` (the rank stage's pandas UDF, CPU here)
  of every candidate against the users' 50 seeds, written to ``noop``.

The data are synthetic and only shaped like a platform's (per user ``cands`` candidates, each
retrieved by a random subset of the five channels, 40 past plays, 2,000 creators, labels with a
planted dependence on the channel features): a cost benchmark, not a quality one. Seconds are wall
clock on ``local[2]``; ``per_1m_candidates`` divides by the candidates (or examples) processed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import sys
import tempfile
import time

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

log = logging.getLogger("bench.ranker_cost")

SIZES = {"XS": dict(users=2_000), "S": dict(users=20_000), "M": dict(users=60_000)}
CANDS = 50             # candidates per user (the union of the channels' lists)
TRACKS = 20_000
CREATORS = 2_000
PAST_PLAYS = 40
AS_OF = dt.date(2026, 11, 23)
CHANNELS = ("popular", "item_cf", "als", "content", "prompt")
RETRIEVE_P = {"popular": 0.25, "item_cf": 0.5, "als": 0.5, "content": 0.3, "prompt": 0.1}


def _unit(*cols):
    from pyspark.sql import functions as F

    return (F.pmod(F.xxhash64(*cols), F.lit(1 << 30)).cast("double") / float(1 << 30))


def make_frames(spark, users: int):
    """``recall`` (user, track, channel, score, rank), ``interactions``, ``tracks``: deterministic."""
    from pyspark.sql import functions as F

    u = spark.range(users).select(F.format_string("u%07d", F.col("id")).alias("user_id"))
    slots = u.crossJoin(spark.range(CANDS).withColumnRenamed("id", "j"))
    slots = slots.withColumn("track_id", F.format_string(
        "t%06d", (F.pmod(F.xxhash64("user_id", "j", F.lit(1)), F.lit(TRACKS))).cast("long")))
    slots = slots.dropDuplicates(["user_id", "track_id"])
    parts = []
    for i, c in enumerate(CHANNELS):
        keep = _unit("user_id", "track_id", F.lit(10 + i)) < F.lit(RETRIEVE_P[c])
        if c == "item_cf":  # every candidate comes from at least one channel
            keep = keep | (F.col("j") % 2 == 0)
        parts.append(slots.where(keep).select("user_id", "track_id", F.lit(c).alias("channel"),
                                              _unit("user_id", "track_id", F.lit(20 + i)).alias("score")))
    recall = parts[0]
    for p in parts[1:]:
        recall = recall.unionByName(p)
    from pyspark.sql import Window

    w = Window.partitionBy("user_id", "channel").orderBy(F.col("score").desc(), F.col("track_id"))
    recall = (recall.withColumn("rank", F.row_number().over(w))
              .withColumn("seed_track_id", F.lit(None).cast("string")))
    start = dt.datetime.combine(AS_OF, dt.time()) - dt.timedelta(days=140)
    inter = (u.crossJoin(spark.range(PAST_PLAYS).withColumnRenamed("id", "k"))
             .select("user_id",
                     F.format_string("t%06d", F.pmod(F.xxhash64("user_id", "k", F.lit(2)), F.lit(TRACKS))
                                     .cast("long")).alias("track_id"),
                     (F.lit(int(start.replace(tzinfo=dt.timezone.utc).timestamp()))
                      + (_unit("user_id", "k", F.lit(3)) * 140 * 86400).cast("long")).cast("timestamp").alias("event_ts"),
                     F.when(_unit("user_id", "k", F.lit(4)) < 0.1, F.lit(0.0)).otherwise(F.lit(1.0)).alias("weight")))
    tracks = spark.range(TRACKS).select(F.format_string("t%06d", F.col("id")).alias("track_id"),
                                        F.format_string("c%05d", F.col("id") % CREATORS).alias("creator_id"))
    return recall, inter, tracks


def with_labels(feats):
    """A planted label: P(1) grows with the ALS and item-CF scores and the number of channels."""
    from pyspark.sql import functions as F

    p = 0.01 + 0.06 * F.col("ns_als") + 0.04 * F.col("ns_item_cf") + 0.02 * (F.col("n_channels") - 1)
    return feats.withColumn("label", (_unit("user_id", "track_id", F.lit(5)) < p).cast("int"))


def din_examples(n_rows: int, seed: int = 0) -> pd.DataFrame:
    """``n_rows`` DIN training examples over two label weeks (half the users each; the later week is
    train_din's validation week), 50-long histories, 20% positives (random: a cost benchmark)."""
    rng = np.random.default_rng(seed)
    n_users = max(1, n_rows // 10)
    users = rng.integers(0, n_users, n_rows)
    hist_pool = rng.integers(0, TRACKS, size=(n_users, 50))
    hist = [[f"t{t:06d}" for t in hist_pool[i]] for i in range(n_users)]
    weeks = np.where(users % 2 == 0, AS_OF - dt.timedelta(weeks=2), AS_OF - dt.timedelta(weeks=1))
    return pd.DataFrame({"user_id": [f"u{i:07d}" for i in users], "label_week": weeks,
                         "track_id": [f"t{t:06d}" for t in rng.integers(0, TRACKS, n_rows)],
                         "label": (rng.random(n_rows) < 0.2).astype("int32"),
                         "hist_track_ids": [hist[i] for i in users]})


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - t, 2)


def main(args=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", default="S", choices=sorted(SIZES))
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    ap.add_argument("--conf", default="conf/local.yaml")
    ap.add_argument("--models", default="logistic,pairwise,gbt")
    ap.add_argument("--din-train-rows", type=int, default=0, help="0: as many as the candidates")
    argv = None
    if args is not None and hasattr(args, "extra"):
        argv = ["--size", args.size, "--out", args.out, *args.extra]
    a = ap.parse_args(argv)

    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from recsys_spark.cli import setup_logging
    from recsys_spark.config import load_config
    from recsys_spark.ranking.fusion import fuse
    from recsys_spark.ranking.ranker import candidate_features, fit_ranker, score
    from recsys_spark.spark import get_spark

    setup_logging("INFO")
    t0 = time.perf_counter()
    cfg = load_config(a.conf)
    rc, dc, fc = cfg.ranker, cfg.din, cfg.fusion
    spark = get_spark(app_name="bench-ranker-cost", master="local[2]", driver_memory="8g", shuffle_partitions=8)
    users = SIZES[a.size]["users"]
    result = {"suite": "ranker_cost", "size": a.size, "users": users, "conf": f"conf/base.yaml + {a.conf}",
              "ranker_conf": {k: getattr(rc, k) for k in ("max_iter", "max_depth", "step_size", "reg_param",
                                                          "holdout_share", "max_train_rows", "pair_negatives",
                                                          "blend_weights", "seed")},
              "din_conf": {k: getattr(dc, k) for k in ("embedding_dim", "attention_hidden", "mlp_hidden",
                                                       "max_history", "batch_size", "score_batch_size", "loss")},
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "spark_master": "local[2]"},
              "load_average_start": list(os.getloadavg()), "complete": False,
              "note": ("synthetic candidate lists shaped like the rank stage's input (cost only, labels "
                       "planted); wall-clock seconds on local[2], CPU torch")}
    out_path = os.path.join(a.out, f"ranker_cost_{a.size}.json")

    def save():
        with open(out_path, "w") as fh:
            json.dump(result, fh, indent=1, default=str)

    recall, inter, tracks = make_frames(spark, users)
    recall = recall.persist(StorageLevel.MEMORY_AND_DISK)
    inter = inter.persist(StorageLevel.MEMORY_AND_DISK)
    (n_recall, n_inter), s = timed(lambda: (recall.count(), inter.count()))
    result["recall_rows"], result["interactions"], result["data_seconds"] = n_recall, n_inter, s

    def build():
        fused = fuse(recall, fc.channel_weights, method=fc.method, rrf_k=fc.rrf_k,
                     default_weight=fc.default_channel_weight, num_partitions=8)
        f = with_labels(candidate_features(recall, fused, inter, tracks, AS_OF)).persist(StorageLevel.MEMORY_AND_DISK)
        return f, f.count()

    (feats, n), s = timed(build)
    m = n / 1e6
    result["candidates"] = n
    result["positives"] = int(feats.agg(F.sum("label")).first()[0])
    result["fuse_and_features"] = {"seconds": s, "per_1m_candidates_s": round(s / m, 2)}
    log.info("%d candidates, features in %.1f s", n, s)
    save()

    for model in [x for x in a.models.split(",") if x]:
        (fitted, report), fit_s = timed(lambda: fit_ranker(
            feats, model=model, max_iter=rc.max_iter, max_depth=rc.max_depth, step_size=rc.step_size,
            reg_param=rc.reg_param, seed=rc.seed, holdout_share=rc.holdout_share, k=cfg.rerank.playlist_size,
            max_rows=rc.max_train_rows, blend_weights=rc.blend_weights, pair_negatives=rc.pair_negatives))
        _, score_s = timed(lambda: score(fitted, feats).write.format("noop").mode("overwrite").save())
        result[model] = {"fit_seconds": fit_s, "fit_rows": report["rows"], "holdout_rows": report["holdout_rows"],
                         "fit_per_1m_candidates_s": round(fit_s / m, 2),
                         "score_seconds": score_s, "score_per_1m_candidates_s": round(score_s / m, 2),
                         "holdout_ndcg@30": report.get("holdout_ndcg@30"),
                         "holdout_fusion_ndcg@30": report.get("holdout_fusion_ndcg@30")}
        log.info("%s: fit %.1f s, score %.1f s", model, fit_s, score_s)
        save()

    from recsys_spark.ranking.din_spark import score_candidates, train_din

    n_din = a.din_train_rows or n
    pdf = din_examples(n_din, seed=0)
    rng = np.random.default_rng(1)
    emb = pd.DataFrame({"track_id": [f"t{t:06d}" for t in range(TRACKS)],
                        "embedding": list(rng.normal(size=(TRACKS, 512)).astype("float32"))})
    (art, metrics), din_fit_s = timed(lambda: train_din(
        pdf, track_embeddings=spark.createDataFrame(emb), embedding_dim=dc.embedding_dim,
        attention_hidden=dc.attention_hidden, mlp_hidden=dc.mlp_hidden, softmax_attention=dc.softmax_attention,
        use_content=True, max_history=dc.max_history, epochs=1, batch_size=dc.batch_size, lr=dc.lr,
        patience=dc.patience, seed=dc.seed, device="cpu", min_count=dc.min_count, loss=dc.loss))
    seeds = (inter.where(F.col("weight") > 0)
             .withColumn("seed_rank", F.row_number().over(
                 Window.partitionBy("user_id").orderBy(F.col("event_ts").desc(), F.col("track_id"))))
             .where(F.col("seed_rank") <= dc.max_history).select("user_id", "track_id", "seed_rank"))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "din")
        art.save(path)
        _, din_score_s = timed(lambda: score_candidates(
            spark, feats.select("user_id", "track_id"), seeds, path, batch_size=dc.score_batch_size, device="cpu")
            .write.format("noop").mode("overwrite").save())
    result["din"] = {"train_examples": n_din, "epochs": 1, "train_seconds": din_fit_s,
                     "train_per_1m_examples_per_epoch_s": round(din_fit_s / (n_din / 1e6), 2),
                     "train_includes": "collecting the examples, vocabulary, content table, one epoch, validation",
                     "score_seconds": din_score_s, "score_per_1m_candidates_s": round(din_score_s / m, 2),
                     "train_din_seconds": round(float(metrics.get("seconds", float("nan"))), 2),
                     "train_rows": metrics.get("n_train"), "valid_rows": metrics.get("n_valid"),
                     "valid_auc_random_labels": metrics.get("auc")}
    log.info("DIN: train %.1f s (%d examples), score %.1f s", din_fit_s, n_din, din_score_s)
    result["total_seconds"] = round(time.perf_counter() - t0, 1)
    result["load_average_end"] = list(os.getloadavg())
    result["complete"] = True
    save()
    print(json.dumps({k: v for k, v in result.items() if k not in ("ranker_conf", "din_conf")}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
