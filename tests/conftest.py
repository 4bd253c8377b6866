"""One session-scoped Spark fixture with Delta (local[2], few shuffle partitions, no UI)."""

import logging
import os
import shutil
import sys
import tempfile

import pytest

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("TZ", "UTC")


@pytest.fixture(scope="session")
def spark():
    from recsys_spark.spark import get_spark

    wh = tempfile.mkdtemp(prefix="recsys-spark-wh-")
    session = get_spark(
        app_name="recsys-spark-tests",
        master="local[2]",
        driver_memory="3g",
        shuffle_partitions=2,
        warehouse_dir=wh,
        extra={"spark.default.parallelism": "2", "spark.sql.adaptive.enabled": "false",
               "spark.databricks.delta.snapshotPartitions": "1"},
    )
    yield session
    session.stop()
    shutil.rmtree(wh, ignore_errors=True)


@pytest.fixture()
def tmp_warehouse(tmp_path):
    return str(tmp_path / "warehouse")


@pytest.fixture()
def tables(spark, tmp_warehouse):
    from recsys_spark.tables import Tables

    return Tables(spark, warehouse=tmp_warehouse)


logging.getLogger("py4j").setLevel(logging.WARNING)
