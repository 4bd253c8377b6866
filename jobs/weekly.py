"""Weekly Discover Weekly job.

    spark-submit jobs/weekly.py --conf conf/cluster.yaml --week 2026-11-30
    python jobs/weekly.py                      # local, this week's Monday
    python jobs/weekly.py --if-needed          # cron: do nothing when this week is already complete
    python jobs/weekly.py --force              # recompute every stage (no resume)
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recsys_spark.cli import base_parser, parse  # noqa: E402


def main(argv=None) -> int:
    from recsys_spark.pipeline import run_weekly
    from recsys_spark.spark import spark_from_config

    parser = base_parser("Build week W's Discover Weekly into the discover_weekly Delta table")
    parser.add_argument("--force", action="store_true", help="rerun stages an earlier run of W completed")
    parser.add_argument("--if-needed", action="store_true", help="exit at once if week W is already complete")
    args, cfg = parse(parser, argv)
    spark = spark_from_config(cfg)
    result = run_weekly(spark, cfg, args.week, force=args.force, if_needed=args.if_needed)
    print(result.summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
