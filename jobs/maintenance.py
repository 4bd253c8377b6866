"""Delta table maintenance: OPTIMIZE (Z-ORDER BY user_id on discover_weekly / candidates) and VACUUM.

    python jobs/maintenance.py                                   # whole tables, default retention
    spark-submit jobs/maintenance.py --conf cluster --week 2026-11-30   # only that week's files
    python jobs/maintenance.py --week current                   # this week's Monday (scheduled runs)
    python jobs/maintenance.py --no-optimize --retention-hours 720              # vacuum keeping 30 days
    python jobs/maintenance.py --tables runs --retention-hours 0 --force-retention  # only if you are sure
    recsys maintenance ...                                       # the same job, installed package

Retention below 336 hours (the tables' 14-day retention property) is refused unless
--force-retention (Delta's retention check is then lifted for that one VACUUM only). Every step is recorded in the runs table (job 'maintenance').
"""

import sys

from recsys_spark.cli import build_maintenance_parser as build_parser  # noqa: F401 (tests, docs)
from recsys_spark.cli import maintenance_main as main

if __name__ == "__main__":
    sys.exit(main())
