"""What happened in the last weekly run? (from the runs table)

    python jobs/last_run.py                          # the latest weekly run
    python jobs/last_run.py --week 2026-11-23        # the latest run of that week
    python jobs/last_run.py --job maintenance --history 10

Prints status, users served, users short of a full playlist, and every stage with its status,
seconds, rows in/out and what it skipped and why. Exit code 1 when the run failed or is incomplete.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recsys_spark.cli import base_parser, parse  # noqa: E402


def main(argv=None) -> int:
    from recsys_spark.queries import last_run_summary, runs_overview
    from recsys_spark.spark import spark_from_config
    from recsys_spark.tables import Tables
    from recsys_spark.weeks import require_monday

    parser = base_parser("Summary of the last run from the runs table", week=False)
    parser.add_argument("--week", default=None, help="Monday (YYYY-MM-DD); default: the latest run of any week")
    parser.add_argument("--job", default="weekly", help="weekly | maintenance | ...")
    parser.add_argument("--history", type=int, default=0, help="also list the last N runs")
    args, cfg = parse(parser, argv)
    try:
        week = require_monday(args.week) if args.week else None
    except ValueError as exc:
        parser.exit(2, f"--week: {exc}\n")
    spark = spark_from_config(cfg)
    tables = Tables.from_config(spark, cfg.storage)
    summary = last_run_summary(spark, tables, week=week, job=args.job)
    if summary is None:
        print(f"no {args.job} run recorded{f' for week {week}' if week else ''} in {tables.warehouse}")
        return 1
    print(summary.format())
    if args.history:
        runs_overview(spark, tables, job=args.job, limit=args.history).show(args.history, truncate=60)
    return 0 if summary.status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
