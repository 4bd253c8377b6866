"""SparkSession factory: a local session with Delta, or the session that is already active.

On Databricks or inside a notebook a session already exists and is returned unchanged. Locally,
``configure_spark_with_delta_pip`` adds the Delta jars (resolved from Maven Central by Ivy on the
first start and cached in ``~/.ivy2``); when a ``jars_dir`` holding the Delta jars is given (the
Makefile fills ``.jars/`` with Maven if Ivy cannot resolve them) those jars are used instead.
"""

from __future__ import annotations

import glob
import logging
import os
import sys
from typing import Mapping, Optional

from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"

LOCAL_DEFAULTS = {
    "spark.sql.extensions": DELTA_EXTENSION,
    "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.adaptive.coalescePartitions.enabled": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "4096",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.databricks.delta.schema.autoMerge.enabled": "false",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.databricks.delta.optimizeWrite.enabled": "false",
    "spark.sql.sources.partitionOverwriteMode": "static",
    # Delta 4.4 + Spark 4.2 drop named SQL parameters unless this is set (delta-io/delta#7640)
    "spark.sql.legacy.parameterSubstitution.constantsOnly": "true",
    "spark.driver.extraJavaOptions": "-Dio.netty.tryReflectionSetAccessible=true",
    "spark.executor.extraJavaOptions": "-Dio.netty.tryReflectionSetAccessible=true",
}


def active_session() -> Optional[SparkSession]:
    """The active SparkSession (Databricks, notebook, an outer job), or None."""
    return SparkSession.getActiveSession()


def get_spark(
    app_name: str = "recsys-spark",
    master: str = "local[*]",
    driver_memory: str = "6g",
    shuffle_partitions: int = 8,
    extra: Optional[Mapping[str, str]] = None,
    warehouse_dir: Optional[str] = None,
    jars_dir: str = "",
) -> SparkSession:
    """Return the active session unchanged, or build a local one with Delta configured.

    Parameters
    ----------
    app_name, master, driver_memory, shuffle_partitions
        Settings for a *new* local session.
    extra : mapping, optional
        Further ``spark.*`` settings for a new session.
    warehouse_dir : str, optional
        ``spark.sql.warehouse.dir`` for the new session.
    jars_dir : str
        A folder holding ``delta-spark_*.jar`` and ``delta-storage-*.jar``; used instead of Ivy.

    Returns
    -------
    SparkSession
    """
    existing = active_session()
    if existing is not None:
        log.info("using the active SparkSession (app %s)", existing.sparkContext.appName)
        return existing

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name).master(master)
    conf = dict(LOCAL_DEFAULTS)
    conf["spark.driver.memory"] = driver_memory
    conf["spark.sql.shuffle.partitions"] = str(shuffle_partitions)
    if warehouse_dir:
        conf["spark.sql.warehouse.dir"] = os.path.abspath(warehouse_dir)
    conf.update(extra or {})
    for k, v in conf.items():
        builder = builder.config(k, v)

    jars = sorted(glob.glob(os.path.join(jars_dir, "*.jar"))) if jars_dir else []
    if jars:
        builder = builder.config("spark.jars", ",".join(os.path.abspath(j) for j in jars))
        spark = builder.getOrCreate()
    else:
        from delta import configure_spark_with_delta_pip

        spark = configure_spark_with_delta_pip(builder).getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    log.info("started local SparkSession %s (master %s)", app_name, master)
    return spark


def spark_from_config(cfg) -> SparkSession:
    """Build (or reuse) the session from a :class:`recsys_spark.config.Config`. Jobs use this."""
    sc = cfg.spark
    return get_spark(
        app_name=sc.app_name,
        master=sc.master,
        driver_memory=sc.driver_memory,
        shuffle_partitions=sc.shuffle_partitions,
        extra=sc.extra,
        jars_dir=sc.jars_dir,
    )
