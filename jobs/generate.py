"""Generate the built-in synthetic platform's raw export and ingest it into the Delta tables.

    python jobs/generate.py [--week 2026-11-23] [--set generator.n_users=10000] [--no-ingest]
    recsys generate ...                        # the same job from the installed package
"""

import sys

from recsys_spark.cli import generate_main as main

if __name__ == "__main__":
    sys.exit(main())
