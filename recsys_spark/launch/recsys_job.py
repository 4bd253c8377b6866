"""The primary resource for spark-submit when only the wheel is installed (no jobs/ folder):

    spark-submit --master spark://host:7077 [...] "$(recsys --submit-file)" weekly --conf cluster --week 2026-11-30

The arguments are those of ``recsys``: the subcommand and its options.
"""

import sys

from recsys_spark.cli import main

if __name__ == "__main__":
    sys.exit(main())
