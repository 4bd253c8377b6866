"""Print one user's seeds and Discover Weekly (title, tags, creator, why) and where the tables are.

    python jobs/show.py [--week 2026-11-23] [--user u0000042]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recsys_spark.cli import base_parser, parse  # noqa: E402


def main(argv=None) -> int:
    from recsys_spark.show import format_user_week, pick_user
    from recsys_spark.spark import spark_from_config
    from recsys_spark.tables import Tables

    parser = base_parser("Show a user's Discover Weekly")
    parser.add_argument("--user", default=None)
    args, cfg = parse(parser, argv)
    spark = spark_from_config(cfg)
    tables = Tables.from_config(spark, cfg.storage)
    user = args.user or pick_user(tables, args.week)
    if user is None:
        print(f"no playlists for week {args.week}; run jobs/weekly.py first")
        return 1
    print(format_user_week(tables, args.week, user))
    print("\nTables (Delta):")
    for name in ("discover_weekly", "candidates", "tracks", "interactions", "user_prompts", "quarantine", "runs"):
        if tables.exists(name):
            print(f"  {name:<16} {tables.path(name) if tables.mode == 'path' else tables.qualified(name)}")
    q = tables.read("quarantine")
    print("\nQuarantine by reason:")
    for r in q.groupBy("entity", "reason").count().orderBy("entity", "reason").collect():
        print(f"  {r['entity']:<13} {r['reason']:<24} {r['count']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
