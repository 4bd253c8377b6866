"""Weekly Discover Weekly job.

    spark-submit jobs/weekly.py --conf cluster --week 2026-11-30
    python jobs/weekly.py                      # local, this week's Monday
    python jobs/weekly.py --if-needed          # cron: do nothing when this week is already complete
    python jobs/weekly.py --force              # recompute every stage (no resume)
    recsys weekly ...                          # the same job from the installed package
"""

import sys

from recsys_spark.cli import weekly_main as main

if __name__ == "__main__":
    sys.exit(main())
