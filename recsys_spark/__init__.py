"""recsys-spark: a distributed Spark batch recommender that writes a weekly Discover Weekly.

The package is organised by concern (see README.md for the module map). Library functions take
their SparkSession and plain values as arguments; only ``jobs/`` and ``notebooks/`` read config.
"""

__version__ = "0.1.0"
