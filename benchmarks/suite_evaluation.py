"""Benchmark suite "evaluation": the offline protocol of ../shared/EVALUATION.md on the shared data.

Run ``python benchmarks/run.py --suite evaluation --size S|M|L`` (or this file directly). For each
shared data set (MovieLens latest-small ``ratings.csv``, Last.fm HetRec 2011
``user_taggedartists.dat``) it runs :func:`recsys_spark.evaluation.evaluate` with

* ``S``: the peers only (popularity, implicit ALS / BM25 / cosine, EASE);
* ``M`` / ``L``: the peers, the ``item_cf`` and ``als`` channels and ``pipeline`` (skipped with its
  reason while ``recsys_spark.pipeline.evaluation_stages`` does not exist), plus ``content`` and
  ``prompt`` (skipped: no audio or prompts in these data sets) and ``recall_union`` (the
  item_cf + als funnel: each channel at 200 candidates, their union, RRF top-30).

Writes ``<out>/evaluation_<size>.json`` (all data sets), ``<out>/eval_<dataset>.json`` and a copy
of each data set's ``metrics.json`` / ``report.md`` / plots under ``<out>/eval_<dataset>/``.

Peer parameters: fixed per data set in :data:`PEER_PARAMS`. Like the reference figures of
EVALUATION.md they were picked by looking at the *test* split (a small grid, see
``benchmarks/evaluation.md``), so they are generous bars, not a fair tuning protocol.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

DATA = os.environ.get("RECSYS_SHARED_DATA", os.path.join(os.path.dirname(ROOT), "shared", "data"))

DATASETS = {
    "movielens": ("movielens", os.path.join(DATA, "movielens_latest_small")),
    "hetrec": ("hetrec", os.path.join(DATA, "lastfm_hetrec2011")),
}

PEERS = ["popularity", "implicit_als", "implicit_item", "implicit_cosine", "ease"]
CHANNELS = ["item_cf", "als", "content", "prompt", "recall_union", "pipeline"]

#: Peer parameters per data set (grid searched on the test split, as the reference peers were).
PEER_PARAMS = {
    "movielens": {
        "implicit_als": {"factors": 64, "regularization": 0.05, "alpha": 1.0, "iterations": 15, "weighting": "binary"},
        "implicit_item": {"similarity": "bm25", "K": 200, "K1": 1.2, "B": 0.75, "weighting": "binary"},
        "implicit_cosine": {"K": 100, "weighting": "binary"},
        "ease": {"lambda": 250.0, "weighting": "binary"},
    },
    "hetrec": {
        "implicit_als": {"factors": 48, "regularization": 0.01, "alpha": 1.0, "iterations": 15, "weighting": "binary"},
        "implicit_item": {"similarity": "bm25", "K": 100, "K1": 1.2, "B": 0.75, "weighting": "raw"},
        "implicit_cosine": {"K": 50, "weighting": "binary"},
        "ease": {"lambda": 300.0, "weighting": "binary"},
    },
}


def run_dataset(spark, name: str, size: str, out: str) -> dict:
    from recsys_spark.evaluation import evaluate, load_dataset

    fmt, path = DATASETS[name]
    methods = PEERS if size == "S" else PEERS + CHANNELS
    ds = load_dataset(spark, fmt, path)
    work = os.path.join(out, f"eval_{name}")
    t0 = time.perf_counter()
    res = evaluate(spark, ds, methods, k=30, out_dir=work, params=PEER_PARAMS[name], seed=0)
    res["wall_seconds"] = round(time.perf_counter() - t0, 1)
    with open(os.path.join(out, f"eval_{name}.json"), "w") as fh:
        json.dump(res, fh, indent=1, default=str)
    return res


def main(args) -> dict:
    from recsys_spark.cli import setup_logging
    from recsys_spark.spark import get_spark

    setup_logging("INFO")
    out = getattr(args, "out", None) or os.path.join(ROOT, "benchmarks", "results")
    os.makedirs(out, exist_ok=True)
    spark = get_spark(app_name="bench-evaluation", master="local[2]", driver_memory="3g", shuffle_partitions=4)
    names = [d for d in (getattr(args, "datasets", None) or "movielens,hetrec").split(",") if d]
    results = {name: run_dataset(spark, name, args.size, out) for name in names}
    with open(os.path.join(out, f"evaluation_{args.size}.json"), "w") as fh:
        json.dump(results, fh, indent=1, default=str)
    for name, res in results.items():
        logging.getLogger("bench.evaluation").info(
            "%s: %d test users; %s", name, res["test_users"],
            ", ".join(f"{m} R {v['recall@30']:.3f} N {v['ndcg@30']:.3f}" for m, v in res["methods"].items()))
    return results


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="M", choices=["S", "M", "L"])
    p.add_argument("--out", default=None)
    p.add_argument("--datasets", default="movielens,hetrec")
    main(p.parse_args())
