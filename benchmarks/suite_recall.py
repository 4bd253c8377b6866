"""Benchmark suite "recall": speed and quality of the item_cf and als channels.

Run ``python benchmarks/run.py --suite recall --size S|M|L`` (or this file directly with the same
flags). Writes ``benchmarks/results/recall_<size>.json``; the figures are discussed in
``benchmarks/README.md`` (recall section).

Parts (``--parts`` selects, default all):

* ``itemcf_speed``: :class:`ItemCF` in Spark vs a single-node scipy computation of the same top-K
  (same cap, weighting and kernel) on synthetic data of the size, plus the two shared data sets;
  also checks that both give the same neighbours.
* ``als_speed``: Spark MLlib ALS (via :class:`ALSRecall`) vs ``implicit``'s CPU ALS at the same
  rank and iterations, seconds per iteration. Spark's marginal cost per iteration is
  ``(t(iters) - t(1)) / (iters - 1)`` so that indexing and job start-up are not counted as ALS work.
* ``quality``: the ../shared/EVALUATION.md protocol (global temporal split at the 90th percentile
  timestamp, truth = new items, K = 30) on MovieLens latest-small and HetRec Last.fm. Hyper-
  parameters are chosen on a *validation* split carved out of the training data the same way
  (the 90th percentile of the training timestamps), never on the test split; ``implicit``'s
  models are run on the same split for reference.

The synthetic data is generated here (a simple genre-structured implicit-feedback matrix: Zipf
item popularity inside genres, log-normal user activity, 80 % of a user's events in one genre)
because the platform generator in ``recsys_spark/data`` was not ready when this suite was written.
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
from typing import Dict, List

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

log = logging.getLogger("bench.recall")

DATA = os.environ.get("RECSYS_SHARED_DATA", os.path.join(os.path.dirname(ROOT), "shared", "data"))
K_EVAL = 30

SIZES = {
    # users, items, mean events per user
    "S": dict(n_users=10_000, n_items=3_000, mean_events=20),
    "M": dict(n_users=100_000, n_items=30_000, mean_events=30),  # the pipeline suite's M: 100K users, 30K tracks, ~3M events
    "L": dict(n_users=150_000, n_items=50_000, mean_events=40),
}


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def synthetic(n_users: int, n_items: int, mean_events: float, n_genres: int = 20, seed: int = 0) -> pd.DataFrame:
    """Genre-structured implicit feedback: ``user_id, track_id, ts (seconds), weight``."""
    rng = np.random.default_rng(seed)
    genre_of_item = rng.integers(0, n_genres, n_items)
    items_by_genre = [np.flatnonzero(genre_of_item == g) for g in range(n_genres)]
    pop = [1.0 / np.arange(1, len(ix) + 1) ** 0.9 for ix in items_by_genre]
    pop = [p / p.sum() for p in pop]
    all_pop = 1.0 / np.arange(1, n_items + 1) ** 0.9
    all_pop /= all_pop.sum()
    sigma = 1.0
    n_ev = np.maximum(1, rng.lognormal(np.log(mean_events) - sigma ** 2 / 2, sigma, n_users).astype(int))
    fav = rng.integers(0, n_genres, n_users)
    users = np.repeat(np.arange(n_users), n_ev)
    in_genre = rng.random(len(users)) < 0.8
    items = np.empty(len(users), dtype=np.int64)
    items[~in_genre] = rng.choice(n_items, size=(~in_genre).sum(), p=all_pop)
    g_users = fav[users[in_genre]]
    idx_in = np.flatnonzero(in_genre)
    for g in range(n_genres):
        sel = idx_in[g_users == g]
        items[sel] = items_by_genre[g][rng.choice(len(items_by_genre[g]), size=len(sel), p=pop[g])]
    ts = rng.integers(1_700_000_000, 1_700_000_000 + 90 * 86400, len(users))
    weight = rng.choice([1.0, 1.0, 1.0, 2.0, 3.0], len(users))
    return pd.DataFrame({"user_id": np.char.add("u", users.astype(str)), "track_id": np.char.add("t", items.astype(str)),
                         "ts": ts, "weight": weight})


def movielens() -> pd.DataFrame:
    df = pd.read_csv(os.path.join(DATA, "movielens_latest_small", "ratings.csv"))
    return pd.DataFrame({"user_id": df.userId.astype(str), "track_id": df.movieId.astype(str),
                         "ts": df.timestamp.astype(np.int64), "weight": df.rating.astype(float)})


def lastfm() -> pd.DataFrame:
    """HetRec user_taggedartists: a (user, artist) pair dated by its first tag event (years >= 2005),
    weighted by the number of tag events (EVALUATION.md)."""
    df = pd.read_csv(os.path.join(DATA, "lastfm_hetrec2011", "user_taggedartists.dat"), sep="\t")
    df = df[df.year >= 2005]
    date = pd.to_datetime(dict(year=df.year, month=df.month, day=df.day), errors="coerce")
    df = df.assign(ts=date.astype("int64") // 10**9).dropna(subset=["ts"])
    g = df.groupby(["userID", "artistID"]).agg(ts=("ts", "min"), weight=("tagID", "size")).reset_index()
    return pd.DataFrame({"user_id": g.userID.astype(str), "track_id": g.artistID.astype(str),
                         "ts": g.ts.astype(np.int64), "weight": g.weight.astype(float)})


def to_spark(spark, pdf: pd.DataFrame):
    from pyspark.sql import functions as F

    sdf = spark.createDataFrame(pdf[["user_id", "track_id", "ts", "weight"]])
    return (sdf.withColumn("event_ts", F.timestamp_seconds("ts")).drop("ts")
            .withColumn("event_type", F.lit("play")).withColumn("event_date", F.to_date("event_ts")))


def materialize(spark, pdf: pd.DataFrame, name: str, tmp: str):
    """Write the interactions to parquet once, so Spark timings start from storage, not from pandas."""
    path = os.path.join(tmp, name)
    if not os.path.exists(path):
        to_spark(spark, pdf).write.mode("overwrite").parquet(path)
    return spark.read.parquet(path)


# --------------------------------------------------------------------------------------------
# single-node references
# --------------------------------------------------------------------------------------------


def scipy_item_cf(pdf: pd.DataFrame, k: int, similarity: str, min_support: int, max_items_per_user: int,
                  weighting: str, shrinkage: float, bm25_k1: float = 1.2, bm25_b: float = 0.75) -> pd.DataFrame:
    """The same top-K neighbours as :class:`ItemCF`, on one node (pandas + scipy)."""
    from recsys_spark.recall.item_cf import topk_rows

    g = pdf.groupby(["user_id", "track_id"], sort=False).agg(w=("weight", "sum"), last=("ts", "max")).reset_index()
    g = g[g.w > 0]
    g["value"] = {"log": np.log1p, "raw": lambda x: x, "binary": lambda x: (x > 0).astype(float)}[weighting](g.w)
    g = g.sort_values(["user_id", "last", "value", "track_id"], ascending=[True, False, False, True])
    g = g[g.groupby("user_id", sort=False).cumcount() < max_items_per_user]
    users, uidx = np.unique(g.user_id.to_numpy().astype(str), return_inverse=True)
    items, iidx = np.unique(g.track_id.to_numpy().astype(str), return_inverse=True)
    v = g.value.to_numpy(dtype=float)
    if similarity in ("tfidf", "bm25"):
        n_u = np.bincount(uidx)
        idf = np.log(len(items)) - np.log1p(n_u)
        if similarity == "tfidf":
            v = np.sqrt(v) * idf[uidx]
        else:
            lens = np.bincount(iidx, weights=v)
            ln = (1 - bm25_b) + bm25_b * lens / lens.mean()
            v = v * (bm25_k1 + 1) / (bm25_k1 * ln[iidx] + v) * idf[uidx]
        keep = v > 0
        uidx, iidx, v = uidx[keep], iidx[keep], v[keep]
    norms = np.sqrt(np.bincount(iidx, weights=v * v, minlength=len(items))) if similarity != "bm25" else np.ones(len(items))
    i, j, s, r = topk_rows(uidx, iidx, v, norms, np.unique(iidx), len(users), len(items), k, min_support,
                           shrinkage, similarity != "bm25")
    return pd.DataFrame({"track_id": items[i], "neighbor_id": items[j], "score": s, "rank": r})


# --------------------------------------------------------------------------------------------
# protocol (EVALUATION.md)
# --------------------------------------------------------------------------------------------


def temporal_split(pdf: pd.DataFrame, q: float = 0.9):
    """Global temporal split: train before the q-quantile timestamp; truth = new items after it."""
    cutoff = np.quantile(pdf.ts.to_numpy(), q)
    train = pdf[pdf.ts < cutoff]
    test = pdf[pdf.ts >= cutoff]
    seen = set(zip(train.user_id, train.track_id))
    train_users = set(train.user_id)
    truth: Dict[str, set] = {}
    for u, t in zip(test.user_id, test.track_id):
        if u in train_users and (u, t) not in seen:
            truth.setdefault(u, set()).add(t)
    return train, truth, cutoff


def metrics(recs: Dict[str, List[str]], truth: Dict[str, set], n_train_items: int, k: int = K_EVAL) -> dict:
    rec_sum = ndcg_sum = hits_users = 0.0
    rec_items = set()
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    for u, t in truth.items():
        lst = recs.get(u, [])[:k]
        rec_items.update(lst)
        rel = np.array([1.0 if x in t else 0.0 for x in lst])
        hits = rel.sum()
        m = min(k, len(t))
        rec_sum += hits / m
        ndcg_sum += (rel * disc[: len(rel)]).sum() / disc[:m].sum()
        hits_users += hits > 0
    n = len(truth)
    return {"recall": rec_sum / n, "ndcg": ndcg_sum / n, "hit_rate": hits_users / n,
            "coverage": len(rec_items) / max(n_train_items, 1), "users": n}


def spark_recs(cands) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for r in cands.select("user_id", "track_id", "rank").orderBy("user_id", "rank").collect():
        out.setdefault(r.user_id, []).append(r.track_id)
    return out


def eval_item_cf(spark, train_sdf, train_pdf, truth, params: dict, per_seed: int, seeds_mode: str = "all"):
    from pyspark.sql import functions as F

    from recsys_spark.recall.base import ChannelInputs
    from recsys_spark.recall.item_cf import ItemCF

    model = ItemCF(**params, per_seed=per_seed).fit(ChannelInputs(spark, interactions=train_sdf))
    users = spark.createDataFrame(pd.DataFrame({"user_id": sorted(truth)}))
    agg = train_sdf.groupBy("user_id", "track_id").agg(F.sum("weight").alias("weight"), F.max("event_ts").alias("last_ts"))
    seeds = agg.join(users, "user_id")
    if seeds_mode == "all":
        seeds = seeds.withColumn("recency", F.lit(1.0))
    else:  # last-50 by recency, 1.0 for the latest, exponential decay with a 21-day half life
        from pyspark.sql import Window

        w = Window.partitionBy("user_id").orderBy(F.col("last_ts").desc(), "track_id")
        mx = F.max("last_ts").over(Window.partitionBy("user_id"))
        age = (F.unix_timestamp(mx) - F.unix_timestamp("last_ts")) / 86400.0
        seeds = (seeds.withColumn("_r", F.row_number().over(w)).where("_r <= 50")
                 .withColumn("recency", F.exp(-np.log(2) * age / 21.0)))
    heard = train_sdf.select("user_id", "track_id").distinct().join(users, "user_id")
    cands = model.recommend(ChannelInputs(spark, seeds=seeds, heard=heard), n=K_EVAL)
    recs = spark_recs(cands)
    model.unpersist()
    return metrics(recs, truth, train_pdf.track_id.nunique())


def eval_als(spark, train_sdf, train_pdf, truth, params: dict):
    from recsys_spark.recall.als import ALSRecall
    from recsys_spark.recall.base import ChannelInputs

    model = ALSRecall(**params).fit(ChannelInputs(spark, interactions=train_sdf))
    users = spark.createDataFrame(pd.DataFrame({"user_id": sorted(truth)}))
    heard = train_sdf.select("user_id", "track_id").distinct().join(users, "user_id")
    recs = spark_recs(model.recommend(ChannelInputs(spark, users=users, heard=heard), n=K_EVAL))
    model.unpersist()
    return metrics(recs, truth, train_pdf.track_id.nunique())


def eval_implicit(train_pdf, truth, name: str, **kw):
    import scipy.sparse as sp
    from implicit.als import AlternatingLeastSquares
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

    g = train_pdf.groupby(["user_id", "track_id"]).weight.sum().reset_index()
    users, uidx = np.unique(g.user_id.to_numpy().astype(str), return_inverse=True)
    items, iidx = np.unique(g.track_id.to_numpy().astype(str), return_inverse=True)
    vals = g.weight.to_numpy(dtype=np.float32)
    if kw.pop("binary", False):
        vals = np.ones_like(vals)
    ui = sp.csr_matrix((vals, (uidx, iidx)), shape=(len(users), len(items)))
    if name == "als":
        m = AlternatingLeastSquares(random_state=0, **kw)
    elif name == "bm25":
        m = BM25Recommender(**kw)
    else:
        m = CosineRecommender(**kw)
    m.fit(ui, show_progress=False)
    pos = {u: i for i, u in enumerate(users)}
    test_users = [u for u in sorted(truth) if u in pos]
    ids = np.array([pos[u] for u in test_users])
    rec_ids, _ = m.recommend(ids, ui[ids], N=K_EVAL, filter_already_liked_items=True)
    recs = {u: [items[j] for j in row if j >= 0] for u, row in zip(test_users, rec_ids)}
    return metrics(recs, truth, len(items))


# --------------------------------------------------------------------------------------------
# parts
# --------------------------------------------------------------------------------------------

ITEMCF_SPEED = dict(k=100, similarity="cosine", min_support=2, max_items_per_user=200, weighting="log", shrinkage=0.0)


def part_itemcf_speed(spark, size: str, tmp: str, repeats: int = 2, **_) -> list:
    from recsys_spark.recall.base import ChannelInputs
    from recsys_spark.recall.item_cf import ItemCF

    out = []
    datasets = [("synthetic_" + size, lambda: synthetic(**SIZES[size]))]
    if size == "S":
        datasets += [("movielens", movielens), ("lastfm", lastfm)]
    for name, loader in datasets:
        pdf = loader()
        sdf = materialize(spark, pdf, name, tmp).persist()
        sdf.count()
        # best of `repeats`: the machine is shared, the minimum is the least disturbed run
        t_scipy = t_spark = float("inf")
        load = []
        for _ in range(repeats):
            load.append(os.getloadavg()[0])
            t0 = time.perf_counter()
            ref = scipy_item_cf(pdf, **ITEMCF_SPEED)
            t_scipy = min(t_scipy, time.perf_counter() - t0)
            t0 = time.perf_counter()
            model = ItemCF(**ITEMCF_SPEED).fit(ChannelInputs(spark, interactions=sdf))
            t_spark = min(t_spark, time.perf_counter() - t0)
            got = model.neighbors.toPandas()
            model.unpersist()
        sdf.unpersist()
        a = set(zip(ref.track_id, ref.neighbor_id))
        b = set(zip(got.track_id, got.neighbor_id))
        rec = dict(dataset=name, interactions=len(pdf), users=int(pdf.user_id.nunique()),
                   tracks=int(pdf.track_id.nunique()), neighbor_rows=len(got), scipy_s=round(t_scipy, 2),
                   spark_s=round(t_spark, 2), ratio=round(t_spark / t_scipy, 2), repeats=repeats,
                   load_avg_1min=[round(x, 1) for x in load],
                   same_pairs=round(len(a & b) / max(len(a | b), 1), 5),
                   max_abs_score_diff=float(np.abs(
                       ref.merge(got, on=["track_id", "neighbor_id"]).eval("score_x - score_y")).max() or 0.0))
        log.info("itemcf_speed %s", rec)
        out.append(rec)
    return out


def blas_info(spark) -> dict:
    jvm = spark._jvm
    info = {}
    try:
        info["netlib_blas"] = jvm.dev.ludovic.netlib.blas.BLAS.getInstance().getClass().getName()
    except Exception as e:  # pragma: no cover - depends on the JVM
        info["netlib_blas"] = f"unavailable: {e.__class__.__name__}"
    try:
        info["netlib_native_blas"] = jvm.dev.ludovic.netlib.blas.NativeBLAS.getInstance().getClass().getName()
    except Exception as e:
        info["netlib_native_blas"] = f"not loaded ({str(e).splitlines()[0][:160]})"
    try:
        info["netlib_lapack"] = jvm.dev.ludovic.netlib.lapack.LAPACK.getInstance().getClass().getName()
    except Exception as e:
        info["netlib_lapack"] = f"unavailable: {e.__class__.__name__}"
    return info


ALS_SPEED = dict(rank=64, reg_param=0.05, alpha=20.0, weighting="log", seed=0)


def part_als_speed(spark, size: str, tmp: str, iters: int = 10, num_blocks=(2, 4), cholesky: bool = True, **_) -> list:
    import scipy.sparse as sp
    from implicit.als import AlternatingLeastSquares

    from recsys_spark.recall.als import ALSRecall
    from recsys_spark.recall.base import ChannelInputs

    out = []
    datasets = [("synthetic_" + size, lambda: synthetic(**SIZES[size]))]
    if size == "S":
        datasets += [("movielens", movielens)]
    for name, loader in datasets:
        pdf = loader()
        sdf = materialize(spark, pdf, name, tmp).persist()
        sdf.count()
        by_blocks = {}
        loads = []
        for nb in num_blocks:
            times = {}
            for it in (1, iters):
                loads.append(os.getloadavg()[0])
                t0 = time.perf_counter()
                ALSRecall(max_iter=it, num_blocks=nb, **ALS_SPEED).fit(ChannelInputs(spark, interactions=sdf))
                times[it] = time.perf_counter() - t0
            by_blocks[nb] = times
            log.info("als spark %s num_blocks=%d: %s", name, nb, times)
        sdf.unpersist()
        best_nb = min(by_blocks, key=lambda nb: by_blocks[nb][iters] - by_blocks[nb][1])
        times = by_blocks[best_nb]
        spark_marginal = (times[iters] - times[1]) / (iters - 1)
        g = pdf.groupby(["user_id", "track_id"]).weight.sum().reset_index()
        _, uidx = np.unique(g.user_id.to_numpy().astype(str), return_inverse=True)
        _, iidx = np.unique(g.track_id.to_numpy().astype(str), return_inverse=True)
        ui = sp.csr_matrix((np.log1p(g.weight.to_numpy()).astype(np.float32), (uidx, iidx)))
        imp = {}
        from threadpoolctl import threadpool_limits

        for cg in ((True, False) if cholesky else (True,)):
            m = AlternatingLeastSquares(factors=ALS_SPEED["rank"], iterations=iters, regularization=ALS_SPEED["reg_param"],
                                        alpha=ALS_SPEED["alpha"], use_cg=cg, random_state=0)
            with threadpool_limits(1, "blas"):  # implicit's own advice; it parallelises over rows itself
                t0 = time.perf_counter()
                m.fit(ui, show_progress=False)
                imp[cg] = (time.perf_counter() - t0) / iters
        rec = dict(dataset=name, ratings=int(ui.nnz), rank=ALS_SPEED["rank"], iterations=iters, num_blocks=best_nb,
                   load_avg_1min=[round(x, 1) for x in loads],
                   spark_fit_s_by_num_blocks={str(k): {str(i): round(t, 2) for i, t in v.items()} for k, v in by_blocks.items()},
                   spark_fit_1iter_s=round(times[1], 2), spark_fit_s=round(times[iters], 2),
                   spark_s_per_iter_marginal=round(spark_marginal, 3),
                   spark_s_per_iter_total=round(times[iters] / iters, 3),
                   implicit_cg_s_per_iter=round(imp[True], 3),
                   implicit_cholesky_s_per_iter=round(imp[False], 3) if False in imp else None,
                   ratio_marginal_vs_cg=round(spark_marginal / imp[True], 2),
                   ratio_marginal_vs_cholesky=round(spark_marginal / imp[False], 2) if False in imp else None,
                   ratio_total_vs_cg=round(times[iters] / iters / imp[True], 2))
        log.info("als_speed %s", rec)
        out.append(rec)
    return out


# hyper-parameter grids, searched on the validation split only
ITEMCF_GRID = [
    dict(similarity="cosine", weighting="log", shrinkage=0.0, min_support=1),
    dict(similarity="cosine", weighting="binary", shrinkage=0.0, min_support=1),
    dict(similarity="cosine", weighting="log", shrinkage=10.0, min_support=1),
    dict(similarity="bm25", weighting="log", shrinkage=0.0, min_support=1),
    dict(similarity="bm25", weighting="binary", shrinkage=0.0, min_support=1),
    dict(similarity="tfidf", weighting="log", shrinkage=0.0, min_support=1),
]
ITEMCF_K = [100]
ALS_GRID = [
    dict(rank=32, reg_param=0.05, alpha=20.0, weighting="log"),
    dict(rank=64, reg_param=0.05, alpha=20.0, weighting="log"),
    dict(rank=64, reg_param=0.1, alpha=5.0, weighting="log"),
    dict(rank=64, reg_param=0.05, alpha=40.0, weighting="binary"),
]


def part_quality(spark, size: str, tmp: str, **_) -> list:
    out = []
    for name, loader in (("movielens", movielens), ("lastfm", lastfm)):
        pdf = loader()
        train, truth, cutoff = temporal_split(pdf)
        vtrain, vtruth, _ = temporal_split(train)
        log.info("%s: %d train rows, %d test users (validation: %d users)", name, len(train), len(truth), len(vtruth))
        vsdf = materialize(spark, vtrain, f"{name}_valtrain", tmp).persist()
        sdf = materialize(spark, train, f"{name}_train", tmp).persist()
        rec = dict(dataset=name, cutoff=float(cutoff), test_users=len(truth), val_users=len(vtruth),
                   item_cf_grid=[], als_grid=[], implicit=[])

        # item-CF: grid on validation, best on test
        for p in ITEMCF_GRID:
            for k in ITEMCF_K:
                params = dict(p, k=k, max_items_per_user=200, seed=0)
                m = eval_item_cf(spark, vsdf, vtrain, vtruth, params, per_seed=k)
                rec["item_cf_grid"].append(dict(params=params, val=m))
                log.info("item_cf val %s %s", params, m)
        best = max(rec["item_cf_grid"], key=lambda r: r["val"]["ndcg"])["params"]
        rec["item_cf"] = dict(params=best, per_seed=best["k"], seeds="all train items, recency 1",
                              test=eval_item_cf(spark, sdf, train, truth, best, per_seed=best["k"]))
        rec["item_cf_last50_recency"] = dict(
            params=best, per_seed=best["k"], seeds="last 50, 21-day half-life recency",
            test=eval_item_cf(spark, sdf, train, truth, best, per_seed=best["k"], seeds_mode="last50"))
        cap = dict(best, max_items_per_user=50)
        rec["item_cf_cap50"] = dict(params=cap, test=eval_item_cf(spark, sdf, train, truth, cap, per_seed=cap["k"]))
        log.info("item_cf test %s", rec["item_cf"])

        # ALS
        for p in ALS_GRID:
            params = dict(p, max_iter=15, seed=0, num_blocks=4)
            m = eval_als(spark, vsdf, vtrain, vtruth, params)
            rec["als_grid"].append(dict(params=params, val=m))
            log.info("als val %s %s", params, m)
        best = max(rec["als_grid"], key=lambda r: r["val"]["ndcg"])["params"]
        rec["als"] = dict(params=best, test=eval_als(spark, sdf, train, truth, best))
        log.info("als test %s", rec["als"])

        # implicit on the same split (its defaults, raw weights), for reference
        for label, nm, kw in (("implicit ALS (factors 64, reg .05, alpha 20, 15 it, raw summed weights)", "als",
                               dict(factors=64, regularization=0.05, alpha=20.0, iterations=15)),
                              ("implicit BM25 (K=100, K1=1.2, B=.75)", "bm25", dict(K=100, K1=1.2, B=0.75)),
                              ("implicit cosine (K=100)", "cosine", dict(K=100))):
            rec["implicit"].append(dict(model=label, test=eval_implicit(train, truth, nm, **kw)))
        vsdf.unpersist()
        sdf.unpersist()
        out.append(rec)
    return out


def main(args) -> dict:
    from recsys_spark.spark import get_spark

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    size = getattr(args, "size", "S")
    out_dir = getattr(args, "out", None) or os.path.join(ROOT, "benchmarks", "results")
    opt = argparse.ArgumentParser(prog="recall")
    opt.add_argument("--parts", default=None)
    opt.add_argument("--num-blocks", default="2,4", help="ALS num_blocks tried (the best is reported)")
    opt.add_argument("--repeats", type=int, default=2, help="item-CF timings per side (best kept)")
    opt.add_argument("--no-cholesky", action="store_true", help="skip implicit's exact solver (slow at M)")
    extra = opt.parse_args(getattr(args, "extra", None) or [])
    parts = (getattr(args, "parts", None) or extra.parts or "itemcf_speed,als_speed,quality").split(",")
    kw = dict(repeats=extra.repeats, num_blocks=tuple(int(x) for x in extra.num_blocks.split(",")),
              cholesky=not extra.no_cholesky)
    tmp = os.environ.get("RECSYS_BENCH_TMP", "/tmp/recsys_bench_recall")
    # one BLAS thread per task: Spark already runs one task per core (set before the JVM starts)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.makedirs(tmp, exist_ok=True)
    extra = {"spark.sql.adaptive.enabled": "true", "spark.default.parallelism": "4"}
    if os.environ.get("RECSYS_BENCH_JAVA_BLAS"):
        opt = "-Ddev.ludovic.netlib.blas.nativeLib=libdoesnotexist.so -Ddev.ludovic.netlib.lapack.nativeLib=libdoesnotexist.so"
        extra["spark.driver.extraJavaOptions"] = "-Dio.netty.tryReflectionSetAccessible=true " + opt
    spark = get_spark(app_name="bench-recall", master="local[2]", driver_memory=os.environ.get("RECSYS_BENCH_DRIVER_MEMORY", "4g"), shuffle_partitions=4,
                      extra=extra)
    result = {"suite": "recall", "size": size, "generated_at": dt.datetime.utcnow().isoformat(timespec="seconds"),
              "machine": dict(cpus=os.cpu_count(), platform=platform.platform(), spark=spark.version,
                              master="local[2]"),
              "blas": blas_info(spark), "parts": parts}
    # warm up the JVM and the python workers so the first timing is not penalised
    from recsys_spark.recall.als import ALSRecall
    from recsys_spark.recall.base import ChannelInputs
    from recsys_spark.recall.item_cf import ItemCF

    warm = to_spark(spark, synthetic(200, 100, 5))
    ItemCF(k=5, min_support=1).fit(ChannelInputs(spark, interactions=warm)).unpersist()
    ALSRecall(rank=4, max_iter=2).fit(ChannelInputs(spark, interactions=warm))
    os.makedirs(out_dir, exist_ok=True)
    suffix = os.environ.get("RECSYS_BENCH_SUFFIX", "")
    path = os.path.join(out_dir, f"recall_{size}{suffix}.json")
    # parts run separately accumulate in one file; each part is saved as soon as it finishes
    saved = {}
    if os.path.exists(path):
        with open(path) as fh:
            saved = json.load(fh)
    saved.update({k: v for k, v in result.items() if k != "parts"})
    runners = {"itemcf_speed": part_itemcf_speed, "als_speed": part_als_speed, "quality": part_quality}
    for part in parts:
        saved[part] = runners[part](spark, size, tmp, **kw)
        saved.setdefault("options_by_part", {})[part] = {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}
        saved.setdefault("part_run_at", {})[part] = dt.datetime.utcnow().isoformat(timespec="seconds")
        saved.setdefault("blas_by_part", {})[part] = result["blas"]
        with open(path, "w") as fh:
            json.dump(saved, fh, indent=2)
        log.info("wrote %s (%s)", path, part)
    return saved


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="S", choices=sorted(SIZES))
    ap.add_argument("--out", default=None)
    ap.add_argument("--parts", default=None, help="comma list of itemcf_speed,als_speed,quality")
    known, rest = ap.parse_known_args()
    known.extra = rest
    main(known)
