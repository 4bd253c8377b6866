"""Offline evaluation job; the code is :mod:`recsys_spark.evaluation.job` (``python jobs/evaluate.py --help``)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from recsys_spark.evaluation.job import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
