"""Generate the built-in synthetic platform's raw export and ingest it into the Delta tables.

    python jobs/generate.py [--week 2026-11-23] [--set generator.n_users=10000] [--no-ingest]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recsys_spark.cli import base_parser, parse  # noqa: E402


def main(argv=None) -> int:
    from recsys_spark.config import REPO_ROOT
    from recsys_spark.data.generator import PlatformSpec, generate_platform
    from recsys_spark.data.ingest import Rules, ingest_all
    from recsys_spark.runlog import new_run_id
    from recsys_spark.spark import spark_from_config
    from recsys_spark.tables import Tables

    parser = base_parser("Generate the synthetic platform (raw files) and ingest it")
    parser.add_argument("--out", default=None, help="raw folder (default: storage.raw_dir/synthetic)")
    parser.add_argument("--no-ingest", action="store_true")
    parser.add_argument("--overwrite", action="store_true")
    args, cfg = parse(parser, argv)
    spark = spark_from_config(cfg)
    raw = args.out or os.path.join(cfg.storage.raw_dir, "synthetic")
    if not os.path.isabs(raw) and "://" not in raw:
        raw = str(REPO_ROOT / raw)
    counts = generate_platform(spark, raw, PlatformSpec.from_conf(cfg.generator), args.week, args.overwrite)
    print(f"synthetic platform at {raw}: {counts}")
    if not args.no_ingest:
        tables = Tables.from_config(spark, cfg.storage)
        reports = ingest_all(spark, tables, raw, Rules.from_conf(cfg.ingest), new_run_id("ingest", args.week))
        for r in reports.values():
            print(f"ingested {r.entity}: read={r.read} loaded={r.loaded} updated={r.updated} "
                  f"already_present={r.already_present} quarantined={r.quarantined} {r.reasons}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
