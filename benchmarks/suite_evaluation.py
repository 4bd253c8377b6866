"""Benchmark suite "evaluation": the offline protocol of ../shared/EVALUATION.md on the shared data.

Run ``python benchmarks/run.py --suite evaluation --size S|M|L`` (or this file directly). For each
shared data set (MovieLens latest-small ``ratings.csv``, Last.fm HetRec 2011
``user_taggedartists.dat``) it runs :func:`recsys_spark.evaluation.evaluate` with

* ``S``: the peers only (popularity, implicit ALS / BM25 / cosine, EASE);
* ``M`` / ``L``: the peers, the ``item_cf`` and ``als`` channels and ``pipeline`` (the real weekly
  job on the data set's train part with the shipped configuration:
  :mod:`recsys_spark.evaluation.weekly_path`), plus ``content`` and ``prompt`` (skipped: no audio
  or prompts in these data sets) and ``recall_union`` (the item_cf + als funnel: each channel at
  200 candidates, their union, RRF top-30).

Writes ``<out>/evaluation_<size>.json`` (all data sets), ``<out>/eval_<dataset>.json`` and a copy
of each data set's ``metrics.json`` / ``report.md`` / plots under ``<out>/eval_<dataset>/``.

Peer parameters: fixed per data set in :data:`PEER_PARAMS`. Like the reference figures of
EVALUATION.md they were picked by looking at the *test* split (a small grid, see
``benchmarks/README.md``), so they are generous bars, not a fair tuning protocol.

``python benchmarks/suite_evaluation.py --table benchmarks/results/eval_weekly_movielens
benchmarks/results/eval_weekly_hetrec`` prints the quality table of the README (every figure with
its per-user bootstrap 95% interval) from those runs' ``metrics.json``.
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


LABELS = {"pipeline": "**`pipeline`: the weekly job's playlists** (shipped conf)", "popularity": "popularity (peer)",
          "implicit_als": "implicit ALS (peer)", "implicit_item": "implicit BM25 item-item (peer)",
          "implicit_cosine": "implicit cosine (peer)", "ease": "EASE (peer)",
          "recall_union": "`recall_union` (item_cf + als, RRF; diagnostic)", "item_cf": "`item_cf` channel alone",
          "als": "`als` channel alone", "popular": "`popular` channel alone"}


def _load(d: str) -> dict:
    with open(os.path.join(d, "metrics.json") if os.path.isdir(d) else d) as fh:
        return json.load(fh)


def quality_table(dirs, k: int = 30, base: str = os.path.join(ROOT, "benchmarks")) -> str:
    """Markdown: one row per method, one column per run, ``R x [lo, hi] / N y [lo, hi]``; links
    to each run's ``metrics.json`` relative to ``base`` (the folder of the document)."""
    runs = [(os.path.abspath(d), _load(d)) for d in dirs]
    names = []
    for _, r in runs:
        names += [m for m in r["methods"] if m not in names]
    head = "| method | " + " | ".join(
        f"{r['dataset']} ({r['test_users']} test users) [json]({os.path.relpath(d, base)}/metrics.json)"
        for d, r in runs) + " |"
    lines = [head, "|---" * (len(runs) + 1) + "|"]
    for name in names:
        cells = []
        for _, r in runs:
            m = r["methods"].get(name)
            if m is None:
                cells.append(r.get("skipped", {}).get(name) or r.get("failed", {}).get(name) or "-")
                continue
            rc, nc = m[f"recall@{k}_ci95"], m[f"ndcg@{k}_ci95"]
            cells.append(f"R {m[f'recall@{k}']:.3f} [{rc[0]:.3f}, {rc[1]:.3f}] / N {m[f'ndcg@{k}']:.3f} "
                         f"[{nc[0]:.3f}, {nc[1]:.3f}]")
        lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_table(dirs, k: int = 30) -> str:
    """Markdown: paired per-user bootstrap intervals of pipeline - method, per run."""
    runs = [_load(d) for d in dirs]
    pairs = []
    for r in runs:
        pairs += [p for p in r.get("compare", {}) if p not in pairs]
    lines = ["| NDCG@30 difference (paired, 95%) | " + " | ".join(r["dataset"] for r in runs) + " |",
             "|---" * (len(runs) + 1) + "|"]
    for p in pairs:
        cells = []
        for r in runs:
            e = r.get("compare", {}).get(p)
            if e is None:
                cells.append("-")
                continue
            lo, hi = e[f"ndcg@{k}_diff_ci95"]
            verdict = "beats" if lo > 0 else "misses" if hi < 0 else "tie"
            cells.append(f"{e[f'ndcg@{k}_diff']:+.3f} [{lo:+.3f}, {hi:+.3f}] {verdict}")
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def coverage_lines(dirs) -> str:
    """Markdown bullets, one per run: the split, the data coverage of the weekly path's tables, the
    stages that skipped and why, and what the whole evaluation cost (all methods, the pipeline's
    share, load average at start / end) from each ``metrics.json``."""
    out = []
    for d in dirs:
        r = _load(d)
        p = r["methods"].get("pipeline", {})
        c = p.get("data_coverage", {})
        skipped = "; ".join(f"{e['stage']} ({e['skipped']})" for e in p.get("stage_log", []) if e.get("skipped"))
        run = r.get("run", {})
        load = [round(run[k][0], 1) for k in ("load_average_start", "load_average_end") if run.get(k)]
        out.append(
            f"- {r['dataset']}: cutoff {r['cutoff']}, week built {p.get('week')}, {r['test_users']} test users; tables: "
            f"{c.get('interactions')} train interactions, {c.get('tracks')} tracks ({c.get('tracks_with_genre')} with a "
            f"genre, {c.get('tracks_with_audio_uri')} with audio, {c.get('tracks_with_creator')} with a creator, "
            f"{c.get('tracks_with_stats')} with statistics); config fingerprint `{p.get('config_fingerprint')}`; "
            f"skipped: {skipped or 'nothing'}; the whole evaluation ({len(r['methods'])} methods, metrics included) "
            f"took {r.get('total_seconds')} s, the pipeline {p.get('fit_seconds')} s of it (materialising the tables "
            f"and the weekly run), code `{run.get('git_rev')}`, load average {load[0] if load else '?'} at the start "
            f"and {load[-1] if load else '?'} at the end (1-minute; 2 cores)")
    return "\n".join(out)


#: Issue 14 item 4: the shipped settings vs those of the removed replica path (PIPELINE_BASE), both
#: through the weekly job on a validation split of the training events.
VALIDATION_CANDIDATES = {
    "shipped": {},
    # the shipped settings measured as the warehouse's first run (FIRST_RUN_CANDIDATES): what the
    # steady state (earlier weeks' recall candidates there, as on a platform running weekly) changes
    "first_run": {},
    # issue 15: the learned ranker (shipped off; logistic when enabled; its blend is chosen by train.ranker)
    "no_ranker": {"ranker.enabled": False},
    "ranker_gbt": {"ranker.enabled": True, "ranker.model": "gbt"},
    "ranker_logistic": {"ranker.enabled": True, "ranker.model": "logistic"},
    "ranker_pairwise": {"ranker.enabled": True, "ranker.model": "pairwise"},
    "ranker_logistic_alone": {"ranker.enabled": True, "ranker.model": "logistic", "ranker.blend_weights": []},
    # final_score's components on one reciprocal-rank scale instead of min-max (fusion.final_scale)
    "final_rank": {"fusion.final_scale": "rank"},
    "final_rank_ranker_logistic": {"fusion.final_scale": "rank", "ranker.enabled": True, "ranker.model": "logistic"},
    "final_rank_ranker_alone": {"fusion.final_scale": "rank", "ranker.enabled": True, "ranker.model": "logistic",
                                "ranker.blend_weights": []},
    # issue 15 item 5: what each re-ranking rule costs (each switched off alone, then all three)
    "rules_no_diversity": {"rerank.diversity_enabled": False},
    "rules_no_creator_cap": {"rerank.creator_cap": 30},
    "rules_no_fresh_share": {"rerank.fresh_share": 0.0},
    "rules_diversity_0.9": {"rerank.diversity_lambda": 0.9},
    "rules_off": {"rerank.diversity_enabled": False, "rerank.creator_cap": 30, "rerank.fresh_share": 0.0},
    # item-CF before this choice (per_seed 5, min_support 2, max_items_per_user 200): runs made
    # before it shipped have "shipped" = these values and "itemcf_deeper" = today's base.yaml
    "itemcf_before": {"recall.item_cf.per_seed": 5, "recall.item_cf.min_support": 2,
                      "recall.item_cf.max_items_per_user": 200},
    # item-CF as the removed replica path had it (PIPELINE_BASE): more neighbours per seed, pairs
    # seen once, longer user rows
    "itemcf_deeper": {"recall.item_cf.per_seed": 20, "recall.item_cf.min_support": 1,
                      "recall.item_cf.max_items_per_user": 500},
    # the DIN's training weeks (3 label weeks find almost no labelled rows on sparse data)
    "din_weeks_12": {"din.train_weeks": 12},
    # issue 15 item 3: the DIN's listwise softmax loss (model choice on validation NDCG@30) against
    # its per-example logloss, both with 12 training weeks (3 find almost nothing on public data)
    "din_weeks_12_softmax": {"din.train_weeks": 12, "din.loss": "softmax"},
    # equal item_cf / als weights in the reciprocal-rank fusion (shipped: item_cf 2.0, als 1.0)
    "fusion_equal": {"fusion.channel_weights.item_cf": 1.0},
    # issue 19: the content channel's weight in the fusion (shipped 0.5, set when it served raw CLAP
    # similarity; the trained tower's channel recall is close to ALS's on a platform with audio), and
    # the pipeline without the content channel at all (what the channel adds)
    "content_weight_1": {"fusion.channel_weights.content": 1.0},
    "content_weight_2": {"fusion.channel_weights.content": 2.0},
    "no_content": {"recall.content.enabled": False},
    # item-CF's depth: 100 instead of 200 candidates per user (with per_seed 20 / min_support 1 the
    # channel fills its 200: 13.6M rows at M). Tied on HetRec but saved no time at M: not shipped
    "itemcf_candidates_100": {"recall.item_cf.candidates": 100},
    # DIN scoring in fp32 and under bf16 autocast (din.score_precision; fp32 ships: on the platform
    # bf16 scored NDCG@30 -.0002 [-.0005, .0000] against fp32, results/eval_validation_platform_din_bf16.json,
    # where it was "shipped" while auto was the default)
    "din_score_fp32": {"din.score_precision": "fp32"},
    "din_score_bf16": {"din.score_precision": "bf16"},
    # the seeds' recency half-life (history.recency_half_life_days; shipped 21 days). Item-CF scores a
    # candidate by sum(sim * weight * recency) over the user's seeds and the content channel averages
    # them the same way, so the half-life sets how much older seeds count next to the latest ones;
    # public data sets span years (HetRec: first-tag days 2005-2011)
    "half_life_90": {"history.recency_half_life_days": 90.0},
    "half_life_365": {"history.recency_half_life_days": 365.0},
    "recency_flat": {"history.recency_half_life_days": 36500.0},
    # ALS and its fusion weight re-checked after item-CF's deeper settings (2026-12-06, none shipped:
    # benchmarks/README.md, "Fusion and ALS re-checked"): factors, regularisation, confidence, iterations
    "als_reg_0.03": {"recall.als.reg_param": 0.03},
    "als_reg_0.3": {"recall.als.reg_param": 0.3},
    "als_reg_1": {"recall.als.reg_param": 1.0},
    "als_alpha_1": {"recall.als.alpha": 1.0},
    "als_alpha_20": {"recall.als.alpha": 20.0},
    "als_alpha_40": {"recall.als.alpha": 40.0},
    "als_rank_32": {"recall.als.rank": 32},
    "als_rank_128": {"recall.als.rank": 128},
    "als_iter_15": {"recall.als.max_iter": 15},
    "als_weight_2": {"fusion.channel_weights.als": 2.0},
    "als_weight_3": {"fusion.channel_weights.als": 3.0},
    "als_weight_2_flat": {"fusion.channel_weights.als": 2.0, "history.recency_half_life_days": 36500.0},
    "als_weight_2_rank_128": {"fusion.channel_weights.als": 2.0, "recall.als.rank": 128},
    "als_weight_2_popular_0.25": {"fusion.channel_weights.als": 2.0, "fusion.channel_weights.popular": 0.25},
    "als_weight_2_popular_1": {"fusion.channel_weights.als": 2.0, "fusion.channel_weights.popular": 1.0},
    # the DIN's negatives: all from the week's recall candidates (what it will rank) or all by
    # popularity (shipped: half each), and the DIN's weight in final_score (shipped .25)
    "din_negatives_exposure": {"din.popularity_share": 0.0},
    "din_negatives_popular": {"din.popularity_share": 1.0},
    "din_negatives_quarter": {"din.popularity_share": 0.25},
    "din_negatives_exposure_weight_0.5": {"din.popularity_share": 0.0, "fusion.din_weight": 0.5},
    "din_weight_0": {"fusion.din_weight": 0.0},
    # deeper recall: more candidates per channel reach the ranker and the rules
    "deeper_recall": {"recall.item_cf.candidates": 300, "recall.als.candidates": 200,
                      "recall.popularity.candidates": 100, "din.prerank_top_n": 300},
}


#: candidates measured as a warehouse's first run (tune_weekly's ``first_run``)
FIRST_RUN_CANDIDATES = ("first_run",)


def stage_orders(run, split, week, k: int = 30) -> dict:
    """Where a weekly run's quality is won or lost, on the validation users: NDCG@k / recall@k of
    W's written candidates (``candidates[W]``, after the quality filter) ordered by each of their
    scores (``recall_score``: the fused channels; ``ranker_score``; ``din_score``; ``final_score``:
    the blend the re-ranking rules start from) against the playlists the write stage kept from them
    (creator cap, diversity, fresh share). A score that is null for every candidate (its stage did
    not run) is left out. Each figure with its per-user bootstrap 95% interval."""
    from pyspark.sql import functions as F

    from recsys_spark.common import top_n_per_user
    from recsys_spark.evaluation.metrics import ranking_metrics
    from recsys_spark.evaluation.weekly_path import playlists_as_recs

    def metrics(recs):
        m = ranking_metrics(recs, split.truth, split.test_users, k, n_resamples=1000, seed=0)
        return {x: m[x] for x in (f"ndcg@{k}", f"ndcg@{k}_ci95", f"recall@{k}", f"recall@{k}_ci95")}

    tables = run["tables"]
    cands = (tables.read("candidates").where(F.col("week_start") == F.lit(week))
             .join(split.test_users.select("user_id"), "user_id", "left_semi").cache())
    res = {}
    try:
        for col in ("recall_score", "ranker_score", "din_score", "final_score"):
            if cands.where(F.col(col).isNotNull()).limit(1).count() > 0:  # nulls sort last
                res[f"candidates_by_{col}"] = metrics(top_n_per_user(cands, k, score_col=col))
        res["playlists"] = metrics(playlists_as_recs(tables, week, split.test_users))
    finally:
        cands.unpersist()
    return res


def validate(spark, name: str, out: str, candidates=None, funnel: bool = False) -> dict:
    """Validation-split comparison through the weekly job (never the test split): writes
    ``<out>/eval_validation_<name>.json`` after every candidate (``"complete": false`` until the
    last one). ``name``: a key of :data:`DATASETS`, or ``platform=ROOT`` for a generated platform's
    tables under ROOT (``eval_validation_platform.json``). ``funnel``: each candidate's entry also
    gets ``extra`` = :func:`stage_orders` (``--funnel`` on the command line)."""
    from recsys_spark.config import load_config
    from recsys_spark.evaluation import load_dataset
    from recsys_spark.evaluation.split import temporal_split
    from recsys_spark.evaluation.tuning import tune_weekly, validation_split

    if name.startswith("platform="):  # a generated platform's tables: platform=ROOT (what --root gives the jobs)
        from recsys_spark.evaluation.loaders import load_platform
        from recsys_spark.tables import Tables

        os.environ["RECSYS_ROOT"] = os.path.abspath(name.split("=", 1)[1])
        ds = load_platform(spark, Tables.from_config(spark, load_config().storage))
        name = "platform"
    else:
        fmt, path = DATASETS[name]
        ds = load_dataset(spark, fmt, path)
    val = validation_split(temporal_split(ds.interactions)).cache()
    dest = os.path.join(out, f"eval_validation_{name}.json")

    def save(res):
        res.update(dataset=name, load_average=list(os.getloadavg()),
                   shipped_conf="conf/base.yaml + local overlay at the time of the run (see each candidate's overrides)")
        with open(dest, "w") as fh:
            json.dump(res, fh, indent=1, default=str)

    from recsys_spark.evaluation.tuning import monday_on_or_after

    on_run = (lambda _n, run: stage_orders(run, val, monday_on_or_after(val.cutoff))) if funnel else None
    cands = candidates or VALIDATION_CANDIDATES
    res = tune_weekly(spark, load_config(), ds, val, cands, on_candidate=save, on_run=on_run,
                      first_run=[n for n in cands if n in FIRST_RUN_CANDIDATES])
    save(res)
    return res


if __name__ == "__main__" and "--validate" in sys.argv:
    from recsys_spark.cli import setup_logging
    from recsys_spark.spark import get_spark

    setup_logging("INFO")
    _out = os.environ.get("VALIDATION_OUT") or os.path.join(ROOT, "benchmarks", "results")
    _args = [a for a in sys.argv[1:] if a != "--validate"]
    _only = [a.split("=", 1)[1].split(",") for a in _args if a.startswith("--candidates=")]
    _cands = {n: VALIDATION_CANDIDATES[n] for n in _only[0]} if _only else None
    _spark = get_spark(app_name="bench-validation", master="local[2]", driver_memory="4g", shuffle_partitions=8)
    for _name in [a for a in _args if not a.startswith("--")] or ["movielens", "hetrec"]:
        _r = validate(_spark, _name, _out, _cands, funnel="--funnel" in _args)
        print(_name, "chosen:", _r["chosen"], {n: (round(m["recall@30"], 4), round(m["ndcg@30"], 4))
                                                for n, m in _r["candidates"].items()})
    sys.exit(0)

if __name__ == "__main__" and "--table" in sys.argv:
    dirs = [a for a in sys.argv[1:] if a != "--table"]
    print(quality_table(dirs))
    print()
    print(compare_table(dirs))
    print()
    print(coverage_lines(dirs))
    sys.exit(0)

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="M", choices=["S", "M", "L"])
    p.add_argument("--out", default=None)
    p.add_argument("--datasets", default="movielens,hetrec")
    main(p.parse_args())
