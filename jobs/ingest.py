"""Ingest raw exports (JSON lines / CSV / Parquet) into the Delta tables; bad rows to quarantine.

    python jobs/ingest.py --raw data/raw/synthetic            # tracks/, interactions/, user_prompts/
    python jobs/ingest.py --entity interactions --path /landing/2026-11-30/plays.csv
    recsys ingest ...                                         # the same job from the installed package

Arguments, input paths and the warehouse path are checked before Spark starts; a missing or
unreadable input, or a warehouse path that is a file, exits with code 2 and a one-line message.
Bad rows and bad files never fail the run: they go to the quarantine table with a reason.
"""

import sys

from recsys_spark.cli import ingest_main as main

if __name__ == "__main__":
    sys.exit(main())
