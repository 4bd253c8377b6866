"""Ingest raw exports (JSON lines / CSV / Parquet) into the Delta tables; bad rows to quarantine.

    python jobs/ingest.py --raw data/raw/synthetic            # tracks/, interactions/, user_prompts/
    python jobs/ingest.py --entity interactions --path /landing/2026-11-30/plays.csv
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recsys_spark.cli import base_parser, parse  # noqa: E402


def main(argv=None) -> int:
    from recsys_spark.data.ingest import Rules, ingest_all, ingest_entity
    from recsys_spark.runlog import new_run_id
    from recsys_spark.spark import spark_from_config
    from recsys_spark.tables import Tables

    parser = base_parser("Ingest raw files into Delta tables", week=False)
    parser.add_argument("--raw", help="folder holding tracks/, interactions/, user_prompts/")
    parser.add_argument("--entity", choices=["tracks", "interactions", "user_prompts"])
    parser.add_argument("--path", help="file or folder for --entity")
    args, cfg = parse(parser, argv)
    if not args.raw and not (args.entity and args.path):
        parser.error("give --raw DIR, or --entity and --path")
    spark = spark_from_config(cfg)
    tables = Tables.from_config(spark, cfg.storage)
    rules = Rules.from_conf(cfg.ingest)
    run_id = new_run_id("ingest", None)
    reports = ingest_all(spark, tables, args.raw, rules, run_id) if args.raw else \
        {args.entity: ingest_entity(spark, tables, args.entity, args.path, rules, run_id)}
    for r in reports.values():
        print(f"{r.entity}: read={r.read} loaded={r.loaded} updated={r.updated} "
              f"already_present={r.already_present} quarantined={r.quarantined} {r.reasons}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
