"""What the suites that measure a generated platform's warehouse share: its config, session and tables."""

from __future__ import annotations

import os


def open_platform(root: str, conf: str, app_name: str, shuffle_partitions: int = 8):
    """``(cfg, spark, tables)`` for the platform under ``root`` (``warehouse/`` there, as the jobs'
    ``--root`` sets it), ``conf`` the overlay, on ``local[2]`` with a 6-GB driver; logging at INFO."""
    from recsys_spark.cli import setup_logging
    from recsys_spark.config import load_config
    from recsys_spark.spark import get_spark
    from recsys_spark.tables import Tables

    setup_logging("INFO")
    os.environ["RECSYS_ROOT"] = os.path.abspath(root)   # what --root does for the jobs
    cfg = load_config(conf)
    spark = get_spark(app_name=app_name, master="local[2]", driver_memory="6g", shuffle_partitions=shuffle_partitions)
    return cfg, spark, Tables.from_config(spark, cfg.storage)
