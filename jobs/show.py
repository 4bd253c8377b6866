"""Print one user's seeds and Discover Weekly (title, tags, creator, why) and where the tables are.

    python jobs/show.py [--week 2026-11-23] [--user u0000042]
    recsys show ...                            # the same job from the installed package
"""

import sys

from recsys_spark.cli import show_main as main

if __name__ == "__main__":
    sys.exit(main())
