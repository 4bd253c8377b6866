"""What happened in the last weekly run? (from the runs table)

    python jobs/last_run.py                          # the latest weekly run
    python jobs/last_run.py --week 2026-11-23        # the latest run of that week
    python jobs/last_run.py --job maintenance --history 10
    recsys last-run ...                              # the same job from the installed package

Prints status, users served, users short of a full playlist, and every stage with its status,
seconds, rows in/out and what it skipped and why. Exit code 1 when the run failed or is incomplete.
"""

import sys

from recsys_spark.cli import last_run_main as main

if __name__ == "__main__":
    sys.exit(main())
