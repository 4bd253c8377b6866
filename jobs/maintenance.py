"""Delta table maintenance: OPTIMIZE (Z-ORDER BY user_id on discover_weekly / candidates) and VACUUM.

    python jobs/maintenance.py                                   # whole tables, default retention
    spark-submit jobs/maintenance.py --conf conf/cluster.yaml --week 2026-11-30   # only that week's files
    python jobs/maintenance.py --week current                   # this week's Monday (scheduled runs)
    python jobs/maintenance.py --no-optimize --retention-hours 720              # vacuum keeping 30 days
    python jobs/maintenance.py --tables runs --retention-hours 0 --force-retention  # only if you are sure

Retention below 168 hours is refused unless --force-retention (Delta's retention check is then
lifted for that one VACUUM only). Every step is recorded in the runs table (job 'maintenance').
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recsys_spark.cli import base_parser, parse  # noqa: E402


def build_parser():
    p = base_parser("OPTIMIZE / Z-ORDER and VACUUM the Delta tables", week=False)
    p.add_argument("--week", default=None,
                   help="Monday (YYYY-MM-DD) or 'current': only optimize that week's partitions (default: all)")
    p.add_argument("--tables", default="", help="comma list of tables (default: every existing table)")
    p.add_argument("--retention-hours", type=float, default=None,
                   help="VACUUM retention (default 168; 336 for discover_weekly)")
    p.add_argument("--force-retention", action="store_true", help="allow a retention below 168 hours")
    p.add_argument("--no-optimize", action="store_true")
    p.add_argument("--no-vacuum", action="store_true")
    return p


def main(argv=None) -> int:
    from recsys_spark.maintenance import DEFAULT_RETENTION_HOURS, run_maintenance
    from recsys_spark.spark import spark_from_config
    from recsys_spark.tables import Tables
    from recsys_spark.weeks import current_week, require_monday

    parser = build_parser()
    args, cfg = parse(parser, argv)
    try:
        week = current_week() if args.week == "current" else require_monday(args.week) if args.week else None
    except ValueError as exc:
        parser.exit(2, f"--week: {exc}\n")
    if args.retention_hours is not None and args.retention_hours < DEFAULT_RETENTION_HOURS \
            and not args.force_retention:
        parser.exit(2, f"--retention-hours {args.retention_hours:g} is below {DEFAULT_RETENTION_HOURS:g}: time travel "
                       f"and concurrent writers need those files; add --force-retention if you are sure\n")
    names = [t.strip() for t in args.tables.split(",") if t.strip()] or None
    spark = spark_from_config(cfg)
    tables = Tables.from_config(spark, cfg.storage)
    try:
        steps = run_maintenance(spark, tables, week=week, names=names, do_optimize=not args.no_optimize,
                                do_vacuum=not args.no_vacuum, retention_hours=args.retention_hours,
                                force_retention=args.force_retention, config_hash=cfg.fingerprint())
    except (ValueError, KeyError) as exc:
        parser.exit(2, f"maintenance: {exc}\n")
    for s in steps:
        extra = {k: v for k, v in s.items() if k not in ("table", "operation")}
        print(f"{s['operation']:<9} {s['table']:<18} {extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
