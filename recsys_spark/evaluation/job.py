"""The offline evaluation job (protocol of EVALUATION.md), peers side by side, optional weekly backtest.

    python jobs/evaluate.py --format movielens --path ../shared/data/movielens_latest_small --out /tmp/eval_ml
    python jobs/evaluate.py --format hetrec --path ../shared/data/lastfm_hetrec2011 --methods popularity,ease
    python jobs/evaluate.py --format csv --path events.tsv --sep '\\t' --user-col u --item-col i --time-col t
    python jobs/evaluate.py --format platform --backtest-weeks 4          # the project's own tables

Writes ``OUT/metrics.json`` and ``OUT/report.md`` (+ PNG plots). Method names: peers
``popularity, implicit_als, implicit_item, implicit_cosine, ease``; channels ``item_cf, als,
content, prompt``; ``pipeline``. ``--params`` takes JSON (inline or a file) of per-method
parameters, e.g. ``'{"ease": {"lambda": 300}}'``.
"""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence

from recsys_spark.cli import base_parser, parse


def build_parser():
    p = base_parser("Offline evaluation: temporal split, metrics @K, peers, funnel, report", week=False)
    p.add_argument("--format", required=True, choices=["platform", "movielens", "hetrec", "csv"])
    p.add_argument("--path", default=None, help="data file or folder (not for --format platform)")
    p.add_argument("--k", type=int, default=30)
    p.add_argument("--methods", default="all", help="comma list of method names (default: all)")
    p.add_argument("--out", default="eval_out", help="output folder for metrics.json / report.md")
    p.add_argument("--params", default=None, help="JSON (inline or a file) {method: {param: value}}")
    p.add_argument("--seed", type=int, default=None, help="default: pipeline.seed of the config")
    p.add_argument("--no-beyond", action="store_true", help="skip coverage / novelty / diversity")
    p.add_argument("--sep", default=",", help="csv: field separator ('\\t' for tab)")
    p.add_argument("--user-col", default="user_id")
    p.add_argument("--item-col", default="item_id")
    p.add_argument("--time-col", default="timestamp", help="csv: unix seconds or ISO date-time")
    p.add_argument("--weight-col", default=None)
    p.add_argument("--no-header", action="store_true", help="csv: the file has no header (_c0, _c1, ...)")
    p.add_argument("--movielens-weight", default="one", choices=["one", "rating"])
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the test users (95%% CI)")
    p.add_argument("--first-run", action="store_true",
                   help="pipeline: score the private warehouse's first weekly run (default: steady state, the "
                        "earlier weeks' recall stages that the run reads run first, as on a platform running weekly)")
    p.add_argument("--backtest-weeks", type=int, default=0,
                   help="platform: also score the last N Mondays' playlists into evaluation_runs")
    p.add_argument("--backtest-build", action="store_true",
                   help="backtest: build a missing week's playlists with the weekly pipeline first")
    return p


def _params(text):
    if not text:
        return {}
    if os.path.exists(text):
        with open(text) as fh:
            return json.load(fh)
    return json.loads(text)


def channel_params(cfg) -> dict:
    """Channel parameters from the config (``--params`` entries override them)."""
    ic, ac = cfg.recall.item_cf, cfg.recall.als
    return {
        "item_cf": {"k": ic.k, "similarity": ic.similarity, "min_support": ic.min_support,
                    "max_items_per_user": ic.max_items_per_user, "weighting": ic.weighting,
                    "shrinkage": ic.shrinkage, "bm25_k1": ic.bm25_k1, "bm25_b": ic.bm25_b,
                    "per_seed": ic.per_seed},
        "als": {"rank": ac.rank, "max_iter": ac.max_iter, "reg_param": ac.reg_param, "alpha": ac.alpha,
                "weighting": ac.weighting, "block_size": ac.block_size, "num_blocks": ac.num_blocks},
    }


def run_info(argv, cfg) -> dict:
    """What produced the figures: command line, code version, config fingerprint, load average."""
    import subprocess
    import sys

    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "recsys_spark"], capture_output=True,
                                    text=True, timeout=10, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        rev, dirty = None, None
    return {"argv": list(sys.argv[1:] if argv is None else argv), "git_rev": rev, "uncommitted_changes": dirty,
            "config_fingerprint": cfg.fingerprint(), "load_average_start": list(os.getloadavg()),
            "cpus": os.cpu_count()}


def main(argv=None) -> int:
    from recsys_spark.evaluation.evaluate import evaluate
    from recsys_spark.evaluation.loaders import load_dataset
    from recsys_spark.spark import spark_from_config
    from recsys_spark.tables import Tables

    parser = build_parser()
    args, cfg = parse(parser, argv)
    if args.format != "platform" and not args.path:
        parser.exit(2, f"--path is required for --format {args.format}\n")
    if args.backtest_weeks and args.format != "platform":
        parser.exit(2, "--backtest-weeks needs --format platform (weekly playlists live in its tables)\n")
    spark = spark_from_config(cfg)
    tables = Tables.from_config(spark, cfg.storage) if args.format == "platform" else None
    opts = {}
    if args.format == "csv":
        opts = dict(sep=args.sep, user_col=args.user_col, item_col=args.item_col, time_col=args.time_col,
                    weight_col=args.weight_col, header=not args.no_header)
    elif args.format == "movielens":
        opts = dict(weight=args.movielens_weight)
    dataset = load_dataset(spark, args.format, args.path, tables=tables, **opts)
    params = channel_params(cfg)
    for name, p in _params(args.params).items():
        params.setdefault(name, {}).update(p)
    methods = [m for m in args.methods.split(",") if m.strip()]
    seed = cfg.pipeline.seed if args.seed is None else args.seed
    h = cfg.history
    # cfg (conf/base.yaml + overlay + --set) is what the `pipeline` method runs the weekly job with
    result = evaluate(spark, dataset, methods, k=args.k, out_dir=args.out, params=params, seed=seed,
                      beyond=not args.no_beyond, history_last_n=h.last_n, cfg=cfg,
                      n_resamples=args.bootstrap, run_info=run_info(argv, cfg), steady_state=not args.first_run)
    print(f"{result['dataset']}: {result['test_users']} test users, cutoff {result['cutoff']}")
    k = args.k
    for name, m in result["methods"].items():
        r, n = m[f"recall@{k}_ci95"], m[f"ndcg@{k}_ci95"]
        print(f"  {name:16s} recall@{k} {m[f'recall@{k}']:.4f} [{r[0]:.4f}, {r[1]:.4f}]  ndcg@{k} "
              f"{m[f'ndcg@{k}']:.4f} [{n[0]:.4f}, {n[1]:.4f}]  hit@{k} {m[f'hit@{k}']:.4f}  ({m['fit_seconds']:.1f}s)"
              + ("  [weekly job]" if m.get("path") == "weekly" else ""))
    for name, why in result["skipped"].items():
        print(f"  {name:16s} skipped: {why}")
    for name, why in result["failed"].items():
        print(f"  {name:16s} FAILED: {why}")
    print(f"report: {os.path.join(args.out, 'report.md')}")
    if args.backtest_weeks:
        from recsys_spark.evaluation.backtest import backtest

        build = None
        if args.backtest_build:
            from recsys_spark.pipeline import run_weekly

            def build(week):  # noqa: E306 - the pipeline writes week W's discover_weekly partition
                run_weekly(spark, cfg, week, tables=tables)
        rows = backtest(spark, tables, args.backtest_weeks, methods=[m for m in methods if m != "pipeline"
                                                                      and m != "all"] or None,
                        k=args.k, params=params, seed=seed, build_week=build)
        for r in rows:
            head = f"  backtest {r['week_start']} {r['method']:16s} users {r['test_users']:6d} "
            if r["status"] == "succeeded":
                print(head + f"recall@{args.k} {r['metrics'][f'recall@{args.k}']:.4f}  "
                      f"ndcg@{args.k} {r['metrics'][f'ndcg@{args.k}']:.4f}")
            else:
                print(head + f"{r['status']}: {r['message']}")
    return 1 if result["failed"] else 0

