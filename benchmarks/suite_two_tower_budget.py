"""The two-tower's training budget against its held-out recall (``python benchmarks/run.py --suite
two_tower_budget --root R [--week W] [--budgets 0,2000]``).

On a platform whose weekly run has embedded its audio (e.g. the M cache of ``--suite pipeline --size M
--variant=audio``), week W's training examples are built, sampled and collected once, exactly as the
content channel's ``recall.content`` stage does (:func:`recsys_spark.recall.two_tower.collect_examples`
with the shipped ``recall.content`` settings), then the tower is trained once per ``max_steps`` budget
(0 = none) with otherwise shipped settings. Per budget: seconds, epochs run, why it stopped, the
held-out week's recall@30 per epoch (the label week before W: validation, never W itself) and that of
the raw CLAP vectors, with 95% bootstrap intervals over the held-out users (and of the paired gain). Only the budget differs between the fits, so the curve is what the budget trades.

Writes ``results/two_tower_budget_<tag>.json``. Time it on a quiet box.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time


def main(args) -> int:
    p = argparse.ArgumentParser(prog="suite two_tower_budget")
    p.add_argument("--root", required=True, help="the platform's root (warehouse/ under it), audio embedded")
    p.add_argument("--week", default=None, help="week W (default: the latest week of the runs table)")
    p.add_argument("--conf", default="local")
    p.add_argument("--budgets", default="0,2000", help="max_steps values, comma-separated (0 = none)")
    p.add_argument("--tag", default=dt.date.today().isoformat())
    opts = p.parse_args(args.extra)

    from pyspark.sql import functions as F

    from platform_session import open_platform
    from recsys_spark.pipeline.context import interactions_before
    from recsys_spark.recall import registry
    from recsys_spark.recall.content import select_vectors
    from recsys_spark.recall.two_tower import collect_examples, fit_params, fit_two_tower

    load_start = os.getloadavg()
    cfg, spark, tables = open_platform(opts.root, opts.conf, "bench-two-tower-budget")
    week = (dt.date.fromisoformat(opts.week) if opts.week else
            tables.read("runs").where(F.col("job") == "weekly").agg(F.max("week_start")).first()[0])
    emb = tables.read("track_embeddings")
    versions = [r[0] for r in emb.select("model_version").distinct().collect()]
    if len(versions) != 1:
        raise SystemExit(f"expected one embedding model version under {opts.root}, found {versions}")
    vectors = select_vectors(emb, versions[0], tracks=tables.read("tracks"))
    params = registry.build_channel("content", cfg.recall, seed=cfg.pipeline.seed).params()  # as the stage does
    hist_kw = cfg.history.seed_settings()
    t0 = time.perf_counter()
    pdf, emb_pdf, n_all = collect_examples(interactions_before(tables, week), week, vectors, params, hist_kw)
    collect_s = time.perf_counter() - t0
    spark.stop()

    fits = []
    for budget in [int(b) for b in opts.budgets.split(",")]:
        kw = {**fit_params(params), "max_steps": budget}
        load0 = os.getloadavg()[0]
        _, rep = fit_two_tower(pdf, emb_pdf, **kw)
        fits.append({"max_steps": budget, "seconds": rep["seconds"], "epochs_run": rep.get("epochs_run"),
                     "steps": rep.get("steps"), "stopped": rep.get("stopped"), "best_epoch": rep.get("best_epoch"),
                     "valid_recall@30": rep.get("valid_recall"),
                     "similarity_valid_recall@30": rep.get("similarity_valid_recall"),
                     "valid_users": rep.get("valid_users"), "valid_recall_ci95": rep.get("valid_recall_ci95"),
                     "similarity_valid_recall_ci95": rep.get("similarity_valid_recall_ci95"),
                     "gain_over_similarity_ci95": rep.get("valid_recall_gain_ci95"),
                     "history": rep.get("history"), "load_average_1min": [round(load0, 2),
                                                                          round(os.getloadavg()[0], 2)]})
        print(f"max_steps {budget}: {rep['seconds']:.1f}s, {rep.get('epochs_run')} epochs ({rep.get('stopped')}), "
              f"held-out recall@30 {rep.get('valid_recall')}")
    shipped = int(params.get("max_steps", 0))
    out = {
        "suite": "two_tower_budget", "code": "benchmarks/suite_two_tower_budget.py", "tag": opts.tag,
        "date": dt.date.today().isoformat(),
        "platform_root": opts.root, "week": week.isoformat(), "embedding_version": versions[0],
        "conf": f"conf/base.yaml + {opts.conf} overlay; recall.content.max_steps per fit (shipped: {shipped})",
        "examples": int(len(pdf)), "examples_before_sampling": n_all, "tracks_in_examples": int(len(emb_pdf)),
        "collect_seconds": round(collect_s, 1), "fits": fits,
        "split": "training: the label weeks before W's last; held out (early stopping, the recall figures): the "
                 "label week just before W. W itself is not read.",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "load_average_1min": {"start": round(load_start[0], 2), "end": round(os.getloadavg()[0], 2)},
        "note": "one fit per budget on the same collected examples and seed; CPU (device auto, no GPU). The "
                "95% intervals resample the held-out users (1,000 bootstrap resamples, seeded; the gain is "
                "paired per user); the best epoch was chosen on those users, so the tower's are optimistic.",
    }
    path = os.path.join(args.out, f"two_tower_budget_{opts.tag}.json")
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1, default=str)
        fh.write("\n")
    print("wrote", path)
    return 0
