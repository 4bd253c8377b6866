"""Ingest raw exports (JSON lines / CSV / Parquet) into the Delta tables; bad rows to quarantine.

    python jobs/ingest.py --raw data/raw/synthetic            # tracks/, interactions/, user_prompts/
    python jobs/ingest.py --entity interactions --path /landing/2026-11-30/plays.csv

Arguments, input paths and the warehouse path are checked before Spark starts; a missing or
unreadable input, or a warehouse path that is a file, exits with code 2 and a one-line message.
Bad rows and bad files never fail the run: they go to the quarantine table with a reason.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recsys_spark.cli import base_parser, parse  # noqa: E402


def main(argv=None) -> int:
    from recsys_spark.data.ingest import Rules, ingest_plan, plan_ingest
    from recsys_spark.runlog import new_run_id
    from recsys_spark.spark import spark_from_config
    from recsys_spark.tables import Tables
    from recsys_spark.validation import InputError, check_warehouse_path

    parser = base_parser("Ingest raw files into Delta tables", week=False)
    parser.add_argument("--raw", help="folder holding tracks/, interactions/, user_prompts/")
    parser.add_argument("--entity", choices=["tracks", "interactions", "user_prompts"])
    parser.add_argument("--path", help="file or folder for --entity")
    args, cfg = parse(parser, argv)
    try:
        plan = plan_ingest(args.raw, args.entity, args.path)
        if cfg.storage.mode == "path":
            check_warehouse_path(cfg.storage.warehouse)
        rules = Rules.from_conf(cfg.ingest)
    except (InputError, ValueError) as exc:
        parser.exit(2, f"ingest: {exc}\n")
    spark = spark_from_config(cfg)
    tables = Tables.from_config(spark, cfg.storage)
    try:
        reports = ingest_plan(spark, tables, plan, rules, new_run_id("ingest", None))
    except InputError as exc:  # the source vanished or became unreadable after the check
        parser.exit(2, f"ingest: {exc}\n")
    for r in reports.values():
        print(f"{r.entity}: read={r.read} loaded={r.loaded} updated={r.updated} "
              f"already_present={r.already_present} duplicates={r.duplicates} quarantined={r.quarantined} "
              f"{r.reasons}")
        for f in r.files:
            if f.reason:
                print(f"  file quarantined: {f.path}: {f.reason} ({f.detail})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
