"""SparkSession factory: the session that already exists, a submitted one, or a local one with Delta.

Three situations, decided by :func:`plan_session` (a pure function, unit-tested):

* **A session is active** (Databricks, a notebook, an outer job, Spark Connect): it is returned
  unchanged.
* **spark-submit** (the JVM was started by ``spark-submit``, ``PYSPARK_GATEWAY_PORT`` is set): the
  submitted settings (``spark.master``, memory, ``--conf``, ``--packages``) are read from the
  JVM's ``SparkConf`` and never overridden. Only settings the submit left unset are filled in:
  the Delta extension/catalog and ``spark.sql.shuffle.partitions`` / ``spark.extra`` of the
  config; the local defaults (UI off, small snapshot partitions, ...) only when the submitted
  master is ``local[...]``. Delta's jars must come with the submit (``--packages``
  :func:`delta_coordinates`); they cannot be added to a JVM that is already running.
* **Nothing yet** (``python jobs/weekly.py``): a new session with ``spark.master`` of the config;
  the local defaults and the driver memory apply only to a ``local[...]`` master, and
  ``configure_spark_with_delta_pip`` adds the Delta jars (resolved by Ivy from Maven Central and
  cached in ``~/.ivy2``), or the jars of ``jars_dir`` when given.
"""

from __future__ import annotations

import glob
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional

from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"

#: Needed on every cluster (filled in only where the cluster did not set them).
DELTA_SETTINGS = {
    "spark.sql.extensions": DELTA_EXTENSION,
    "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
    # Delta 4.4 + Spark 4.2 drop named SQL parameters unless this is set (delta-io/delta#7640)
    "spark.sql.legacy.parameterSubstitution.constantsOnly": "true",
    # week windows are UTC Mondays (pipeline.timezone); a cluster's JVM default zone must not shift them
    "spark.sql.session.timeZone": "UTC",
}

#: Laptop / CI defaults: applied to ``local[...]`` masters only, never to a cluster.
LOCAL_DEFAULTS = {
    **DELTA_SETTINGS,
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
    "spark.driver.extraJavaOptions": "-Dio.netty.tryReflectionSetAccessible=true",
    "spark.executor.extraJavaOptions": "-Dio.netty.tryReflectionSetAccessible=true",
}


def is_local_master(master: Optional[str]) -> bool:
    """``local``, ``local[4]``, ``local[*]``, ``local[2,3]``, ``local-cluster[...]``: one machine."""
    return bool(master) and (master == "local" or master.startswith("local[") or master.startswith("local-cluster["))


def delta_coordinates() -> str:
    """The Maven coordinates of the Delta jar matching the installed pyspark and delta-spark.

    The same rule as ``delta.configure_spark_with_delta_pip`` (``io.delta:delta-spark_<spark
    major.minor>_2.13:<delta version>``, e.g. ``io.delta:delta-spark_4.2_2.13:4.4.0``): give it to
    ``spark-submit --packages`` on a cluster.
    """
    import importlib.metadata

    import pyspark

    spark_mm = ".".join(pyspark.__version__.split(".")[:2])
    return f"io.delta:delta-spark_{spark_mm}_2.13:{importlib.metadata.version('delta_spark')}"


@dataclass
class SessionPlan:
    """What :func:`get_spark` does: the master to set (None: keep the submitted one) and the settings."""

    master: Optional[str]
    conf: Dict[str, str] = field(default_factory=dict)
    local: bool = False
    add_delta_jars: bool = False  # configure_spark_with_delta_pip / jars_dir (only for a JVM not yet started)


def plan_session(
    submitted: Optional[Mapping[str, str]],
    master: Optional[str] = "local[*]",
    driver_memory: str = "6g",
    shuffle_partitions: int = 8,
    extra: Optional[Mapping[str, str]] = None,
    warehouse_dir: Optional[str] = None,
) -> SessionPlan:
    """Decide the master and settings of a new session.

    Parameters
    ----------
    submitted : mapping or None
        The JVM's ``SparkConf`` when spark-submit started it (None: no JVM yet). Its keys are
        never overridden.
    master, driver_memory, shuffle_partitions, extra, warehouse_dir
        From the config (``spark.*``) or the caller.
    """
    if submitted is not None:
        eff_master = submitted.get("spark.master") or master
        set_master = None if submitted.get("spark.master") else master
    else:
        eff_master, set_master = master or "local[*]", master or "local[*]"
    local = is_local_master(eff_master)
    conf: Dict[str, str] = dict(LOCAL_DEFAULTS) if local else dict(DELTA_SETTINGS)
    if local and submitted is None:
        conf["spark.driver.memory"] = driver_memory  # a running JVM's memory cannot change
    conf["spark.sql.shuffle.partitions"] = str(shuffle_partitions)
    if warehouse_dir:
        conf["spark.sql.warehouse.dir"] = os.path.abspath(warehouse_dir)
    conf.update({k: str(v) for k, v in (extra or {}).items()})
    if submitted is not None:
        conf = {k: v for k, v in conf.items() if k not in submitted}
    return SessionPlan(master=set_master, conf=conf, local=local, add_delta_jars=submitted is None)


def submitted_conf() -> Optional[Dict[str, str]]:
    """The SparkConf of a JVM started by spark-submit (or a pyspark shell), or None when there is none.

    spark-submit starts the JVM first and gives the Python driver its gateway in
    ``PYSPARK_GATEWAY_PORT``; the submitted ``--master`` / ``--conf`` are the JVM's system properties.
    """
    if not os.environ.get("PYSPARK_GATEWAY_PORT"):
        return None
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()
    return dict(SparkConf().getAll())


def active_session() -> Optional[SparkSession]:
    """The active SparkSession (Databricks, notebook, an outer job, Spark Connect), or None."""
    return SparkSession.getActiveSession()


def is_connect(spark) -> bool:
    """True for a Spark Connect session (no SparkContext, no JVM on this side)."""
    try:
        from pyspark.sql.utils import is_remote

        if is_remote():
            return True
    except ImportError:  # pragma: no cover - older pyspark
        pass
    return type(spark).__module__.startswith("pyspark.sql.connect")


#: Why a job needs a classic session (a JVM driver with a SparkContext), for the jobs that do.
#: Spark Connect sessions (Databricks serverless / shared clusters, ``sc://``) have no SparkContext.
CLASSIC_ONLY: Dict[str, str] = {
    "weekly": ("stage recall.als broadcasts the ALS item factors and stages recall.content / recall.prompt "
               "broadcast the faiss index with SparkContext.broadcast (recsys_spark.recall.als, "
               "recsys_spark.recall.faiss_index), and stage embed sizes its CLAP batches from "
               "SparkContext.defaultParallelism (recsys_spark.embeddings.jobs)"),
    "ingest": ("reading raw files counts their records with SparkContext.parallelize, one task per file group "
               "(recsys_spark.data.ingest)"),
    "generate": ("generate ingests what it wrote, and ingestion counts raw records with "
                 "SparkContext.parallelize (recsys_spark.data.ingest)"),
}


def require_classic(spark, job: str) -> None:
    """Stop at once, before any work, when ``job`` would fail later on a Spark Connect session.

    Raises
    ------
    RuntimeError
        Naming the stage that needs a classic session and why. The downstream queries, views and
        notebooks (``recsys_spark.queries``) run over Spark Connect.
    """
    if is_connect(spark) and job in CLASSIC_ONLY:
        raise RuntimeError(
            f"`recsys {job}` needs a classic SparkSession, and this is a Spark Connect session: "
            f"{CLASSIC_ONLY[job]}. Spark Connect has no SparkContext. Run it on a classic cluster "
            f"(spark-submit, a Databricks job cluster in single-user / dedicated access mode); the "
            f"queries, views and notebooks work over Spark Connect.")


def get_spark(
    app_name: str = "recsys-spark",
    master: str = "local[*]",
    driver_memory: str = "6g",
    shuffle_partitions: int = 8,
    extra: Optional[Mapping[str, str]] = None,
    warehouse_dir: Optional[str] = None,
    jars_dir: str = "",
) -> SparkSession:
    """Return the active session unchanged, or build one (see the module docstring and :func:`plan_session`).

    Parameters
    ----------
    app_name, master, driver_memory, shuffle_partitions
        Settings for a *new* session; ``master`` and ``driver_memory`` are ignored under spark-submit.
    extra : mapping, optional
        Further ``spark.*`` settings for a new session (never over a submitted one).
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
        log.info("using the active SparkSession")
        return existing

    submitted = submitted_conf()
    plan = plan_session(submitted, master=master, driver_memory=driver_memory,
                        shuffle_partitions=shuffle_partitions, extra=extra, warehouse_dir=warehouse_dir)
    if plan.local:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name) if not (submitted or {}).get("spark.app.name") \
        else SparkSession.builder
    if plan.master:
        builder = builder.master(plan.master)
    for k, v in plan.conf.items():
        builder = builder.config(k, v)

    if not plan.add_delta_jars:
        spark = builder.getOrCreate()
        if not any("delta" in j for j in ((submitted or {}).get("spark.jars", "") +
                                          (submitted or {}).get("spark.jars.packages", "")).split(",")):
            log.warning("spark-submit without Delta jars: add --packages %s (unless the cluster has them)",
                        delta_coordinates())
    else:
        jars = sorted(glob.glob(os.path.join(jars_dir, "*.jar"))) if jars_dir else []
        if jars:
            builder = builder.config("spark.jars", ",".join(os.path.abspath(j) for j in jars))
            spark = builder.getOrCreate()
        else:
            from delta import configure_spark_with_delta_pip

            spark = configure_spark_with_delta_pip(builder).getOrCreate()
    if plan.local:
        spark.sparkContext.setLogLevel("WARN")
    log.info("started SparkSession %s (master %s, %s settings applied)",
             app_name, plan.master or (submitted or {}).get("spark.master"), "local" if plan.local else "cluster")
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
