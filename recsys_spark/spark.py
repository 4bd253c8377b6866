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
* **Spark Connect** (``SPARK_REMOTE=sc://host:port`` or ``remote=``): a Connect session; the
  server owns master, memory and jars (it must be started with the Delta extension and catalog),
  only runtime SQL settings are set (:func:`connect_session`). Jobs that need a SparkContext stop
  at once there (:func:`require_classic`); queries, views and notebooks run.
* **Nothing yet** (``python jobs/weekly.py``): a new session with ``spark.master`` of the config;
  the local defaults and the driver memory apply only to a ``local[...]`` master, and
  ``configure_spark_with_delta_pip`` adds the Delta jars (resolved by Ivy from Maven Central and
  cached in ``~/.ivy2``; ``make setup`` resolves them once, :func:`resolve_delta_jars`), or the
  jars of ``jars_dir`` when given.

**Local file system.** Without Hadoop's native library (pip's pyspark has none) Hadoop's local file
system sets the permission of every file and folder it creates by starting a ``chmod`` process:
a Delta write of 2,000 daily partitions started 4,000+ processes and took 18-23 s. A new local
session therefore uses GlobalMentor's ``BareLocalFileSystem`` (Maven Central
:data:`LOCAL_FS_COORDINATES`, Apache-2.0: the same checksummed local file system, with permissions
and file status through Java's NIO API; the same write took 3-6 s) when its jar is in
:func:`local_fs_jar_path` (``make setup`` fetches it: ``python -m recsys_spark.spark
fetch-local-fs``; it must be on the JVM's class path at start, which is why it cannot come through
Ivy). Without the jar the session starts as before and says so. Clusters are never touched.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Mapping, Optional, Sequence

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
    # Delta's VACUUM lists a table's folders with a job of this many tasks (Spark's default is
    # 10,000: about a minute of empty tasks per table on a laptop); a cluster keeps its own
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "8",
    # a scan packs small files into a task as if each cost this many bytes (Spark's default 4 MB
    # made the 3,807 daily files of MovieLens' interactions 119 tasks on two cores; 8 KB: 2 tasks,
    # the scan 4.5-6.6 s -> 2.5-3.9 s)
    "spark.sql.files.openCostInBytes": "8192",
    "spark.driver.extraJavaOptions": "-Dio.netty.tryReflectionSetAccessible=true",
    "spark.executor.extraJavaOptions": "-Dio.netty.tryReflectionSetAccessible=true",
}


#: the local file system without ``chmod`` processes (module doc); SHA-1 of Maven Central's jar
LOCAL_FS_COORDINATES = "com.globalmentor:hadoop-bare-naked-local-fs:0.1.0"
LOCAL_FS_SHA1 = "cd03dc0f6e2b8d8957d97d421e95d9ceaa16b06b"
LOCAL_FS_CLASS = "com.globalmentor.apache.hadoop.fs.BareLocalFileSystem"
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"


def local_fs_jar_path() -> str:
    """Where the local file system's jar is kept: ``$RECSYS_JARS_CACHE`` or ``~/.cache/recsys-spark/jars``."""
    _, artifact, version = LOCAL_FS_COORDINATES.split(":")
    folder = os.environ.get("RECSYS_JARS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "recsys-spark", "jars")
    return os.path.join(folder, f"{artifact}-{version}.jar")


def _sha1(path: str) -> str:
    import hashlib

    with open(path, "rb") as fh:
        return hashlib.sha1(fh.read()).hexdigest()


def local_fs_jar() -> Optional[str]:
    """The local file system's jar when it is there with the expected SHA-1, else None."""
    path = local_fs_jar_path()
    return path if os.path.isfile(path) and _sha1(path) == LOCAL_FS_SHA1 else None


def fetch_local_fs_jar(repository: str = MAVEN_CENTRAL, timeout: float = 60.0) -> str:
    """Download the local file system's jar from Maven Central into :func:`local_fs_jar_path`
    (kept when already there); the SHA-1 is checked before the file is moved in place."""
    import tempfile
    import urllib.request

    have = local_fs_jar()
    if have:
        return have
    group, artifact, version = LOCAL_FS_COORDINATES.split(":")
    url = f"{repository.rstrip('/')}/{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}.jar"
    dest = local_fs_jar_path()
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - fixed https URL
            out.write(resp.read())
        got = _sha1(tmp)
        if got != LOCAL_FS_SHA1:
            raise IOError(f"{url}: SHA-1 {got} differs from the expected {LOCAL_FS_SHA1}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


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
    local_fs_jar: Optional[str] = None,
) -> SessionPlan:
    """Decide the master and settings of a new session.

    Parameters
    ----------
    submitted : mapping or None
        The JVM's ``SparkConf`` when spark-submit started it (None: no JVM yet). Its keys are
        never overridden.
    master, driver_memory, shuffle_partitions, extra, warehouse_dir
        From the config (``spark.*``) or the caller.
    local_fs_jar : str, optional
        The jar of :data:`LOCAL_FS_CLASS`: a new local JVM gets it on its class path and uses it
        for ``file:`` (module doc); ``extra`` may still set ``spark.hadoop.fs.file.impl``.
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
    if local and submitted is None and local_fs_jar:
        jar = os.path.abspath(local_fs_jar)
        for key in ("spark.driver.extraClassPath", "spark.executor.extraClassPath"):
            conf[key] = os.pathsep.join(p for p in (jar, (extra or {}).get(key)) if p)
        conf["spark.hadoop.fs.file.impl"] = LOCAL_FS_CLASS
    merged = {"spark.driver.extraClassPath", "spark.executor.extraClassPath"} & set(conf)  # jar + caller's
    conf.update({k: str(v) for k, v in (extra or {}).items() if k not in merged})
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
    """True for a Spark Connect session (no SparkContext, no JVM on this side).

    Decided by the session's class (``pyspark.sql.connect...``); PySpark's process-wide
    ``is_remote()`` is only the fallback for objects of neither class, because it stays true in a
    process once any Connect session was created there.
    """
    module = type(spark).__module__
    if module.startswith("pyspark.sql.connect"):
        return True
    if module.startswith("pyspark.sql"):
        return False
    try:
        from pyspark.sql.utils import is_remote

        return bool(is_remote())
    except ImportError:  # pragma: no cover - older pyspark
        return False


def default_parallelism(spark) -> int:
    """``SparkContext.defaultParallelism`` on a classic session; over Spark Connect (no SparkContext)
    ``spark.default.parallelism`` when the server sets it, else ``spark.sql.shuffle.partitions``."""
    if not is_connect(spark):
        return int(spark.sparkContext.defaultParallelism)
    for key in ("spark.default.parallelism", "spark.sql.shuffle.partitions"):
        try:
            value = spark.conf.get(key, None)
        except Exception:  # noqa: BLE001 - a managed server may hide a key
            value = None
        if value and str(value).isdigit() and int(value) > 0:
            return int(value)
    return 8


def shuffle_partitions(spark) -> int:
    """``spark.sql.shuffle.partitions`` as an int (0 when it is not a number, e.g. Databricks' ``auto``)."""
    try:
        return int(spark.conf.get("spark.sql.shuffle.partitions"))
    except (TypeError, ValueError):
        return 0


#: Sort-based aggregation where the rows already arrive sorted by the grouping keys (Spark's
#: ``ReplaceHashWithSortAgg``; off by default up to Spark 4.2). The rank stage's fusion groups the
#: candidates by (user, track, channel) and then by (user, track) right after one sort: with this,
#: the second aggregation streams over that order instead of building an object hash map that
#: falls back to a second sort (M platform, 29.7M candidate rows: fusion 83 s -> 45 s, same rows).
SORTED_AGGREGATION = {"spark.sql.execution.replaceHashWithSortAgg": "true"}


@contextlib.contextmanager
def sql_conf(spark, settings: Mapping[str, str]) -> Iterator[None]:
    """Runtime SQL ``settings`` for the queries run inside the block, the previous values restored
    after (unset when they were unset). Settings are read when a query is planned, i.e. when an
    action runs: the block must hold the actions, not only the definitions. A setting the session
    refuses (a managed server) is logged and skipped."""
    before: Dict[str, Optional[str]] = {}
    for key, value in settings.items():
        try:
            before[key] = spark.conf.get(key, None)
            spark.conf.set(key, value)
        except Exception as exc:  # noqa: BLE001 - e.g. CANNOT_MODIFY_CONFIG on a managed server
            before.pop(key, None)
            log.warning("could not set %s=%s for this stage (%s); running without it", key, value, exc)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


#: Stages that need a classic session (a JVM driver with a SparkContext), per job, and why. Spark
#: Connect sessions (``sc://``, Databricks serverless and shared-access clusters) have no
#: SparkContext, so these would fail hours into a run; :func:`require_classic` stops the job before
#: any work instead.
CLASSIC_STAGES: Dict[str, Dict[str, str]] = {
    "weekly": {
        "recall.als": "ships the ALS item factors to the executors with SparkContext.broadcast "
                      "(recsys_spark.recall.als)",
        "recall.content": "ships the faiss index of the track embeddings to the executors with "
                          "SparkContext.broadcast (recsys_spark.recall.faiss_index)",
        "recall.prompt": "ships the faiss index of the prompt embeddings the same way "
                         "(recsys_spark.recall.faiss_index)",
        "write": "ships the track and creator unit vectors for MMR diversity the same way "
                 "(recsys_spark.rerank.rules.ShippedVectors)",
    },
    "ingest": {
        "read raw files": "counts the records of the raw files on the executors with "
                          "SparkContext.parallelize (recsys_spark.data.ingest)",
    },
    "generate": {
        "ingest": "generate ingests what it wrote, and ingestion counts the raw records with "
                  "SparkContext.parallelize (recsys_spark.data.ingest)",
    },
}

#: One line per job (kept for callers of the former name).
CLASSIC_ONLY: Dict[str, str] = {job: "; ".join(f"stage {st} {why}" for st, why in stages.items())
                                for job, stages in CLASSIC_STAGES.items()}


class ClassicSessionRequired(RuntimeError):
    """A job that needs a classic SparkSession was started on a Spark Connect session."""

    def __init__(self, job: str):
        self.job = job
        self.stages = dict(CLASSIC_STAGES.get(job, {}))
        super().__init__(
            f"`recsys {job}` needs a classic SparkSession, and this is a Spark Connect session "
            f"(no SparkContext): {CLASSIC_ONLY.get(job, '')}. Nothing was run. Run it with "
            f"spark-submit or on a classic cluster (Databricks: a job cluster in dedicated / "
            f"single-user access mode); the downstream queries, views and notebooks "
            f"(recsys_spark.queries, notebooks/01-02) work over Spark Connect.")


def require_classic(spark, job: str) -> None:
    """Stop at once, before any work, when ``job`` would fail later on a Spark Connect session.

    Raises
    ------
    ClassicSessionRequired
        (a ``RuntimeError``) naming the stages that need a classic session and why. The
        downstream queries, views and notebooks (``recsys_spark.queries``) run over Spark Connect.
    """
    if job in CLASSIC_STAGES and is_connect(spark):
        raise ClassicSessionRequired(job)


#: Session settings a Spark Connect client sets on its session (runtime SQL settings only: the
#: server owns the static ones, e.g. the Delta extension and catalog, which it must be started with).
CONNECT_SETTINGS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.legacy.parameterSubstitution.constantsOnly": "true",
}


def connect_session(url: str, settings: Optional[Mapping[str, str]] = None) -> SparkSession:
    """A Spark Connect session to ``url`` (``sc://host:port``) with :data:`CONNECT_SETTINGS` and
    ``settings`` applied where the server allows (a setting it refuses is logged and skipped)."""
    spark = SparkSession.builder.remote(url).getOrCreate()
    for k, v in {**CONNECT_SETTINGS, **(settings or {})}.items():
        try:
            if spark.conf.get(k, None) != str(v):
                spark.conf.set(k, str(v))
        except Exception as exc:  # noqa: BLE001 - static or server-managed setting
            log.info("Spark Connect: %s not set (%s)", k, str(exc).splitlines()[0][:200])
    log.info("connected to Spark Connect server %s", url)
    return spark


#: Main class of the Spark Connect server (its jar ships with pyspark >= 4: ``pyspark/jars/spark-connect_*.jar``).
CONNECT_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


def connect_server_command(port: int = 15002, host: str = "127.0.0.1", master: str = "local[2]",
                           driver_memory: str = "1g", warehouse_dir: Optional[str] = None,
                           jars: Sequence[str] = (), conf: Optional[Mapping[str, str]] = None) -> List[str]:
    """The ``spark-submit`` command line of a Spark Connect server with Delta, from the installed pyspark.

    Delta's jars come from ``--packages`` :func:`delta_coordinates` (Ivy, cached in ``~/.ivy2*``) or
    from ``jars``; the Delta extension and catalog, the parameter-binding fix and UTC are server
    settings (static: a Connect client cannot set them). For a laptop or a test; a cluster's Connect
    endpoint (Databricks) is already set up. Run it in the foreground; stop it with SIGTERM.
    """
    from pyspark.find_spark_home import _find_spark_home

    cmd = [os.path.join(_find_spark_home(), "bin", "spark-submit"), "--class", CONNECT_SERVER_CLASS,
           "--name", "recsys-spark-connect", "--master", master, "--driver-memory", driver_memory]
    cmd += ["--jars", ",".join(os.path.abspath(j) for j in jars)] if jars else ["--packages", delta_coordinates()]
    settings = {k: v for k, v in LOCAL_DEFAULTS.items() if is_local_master(master) or k in DELTA_SETTINGS}
    settings.update({"spark.connect.grpc.binding.address": host, "spark.connect.grpc.binding.port": str(port)})
    if warehouse_dir:
        settings["spark.sql.warehouse.dir"] = os.path.abspath(warehouse_dir)
    settings.update({k: str(v) for k, v in (conf or {}).items()})
    for k, v in settings.items():
        cmd += ["--conf", f"{k}={v}"]
    return cmd + ["spark-internal"]


def get_spark(
    app_name: str = "recsys-spark",
    master: str = "local[*]",
    driver_memory: str = "6g",
    shuffle_partitions: int = 8,
    extra: Optional[Mapping[str, str]] = None,
    warehouse_dir: Optional[str] = None,
    jars_dir: str = "",
    remote: Optional[str] = None,
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
    remote : str, optional
        A Spark Connect URL (``sc://host:port``); default ``$SPARK_REMOTE``. When set, a Connect
        session is returned (:func:`connect_session`) and the local settings do not apply.

    Returns
    -------
    SparkSession
    """
    existing = active_session()
    if existing is not None:
        log.info("using the active SparkSession")
        return existing
    url = remote or os.environ.get("SPARK_REMOTE")
    if url:  # Spark Connect: the server owns master, memory and jars
        return connect_session(url, {"spark.sql.shuffle.partitions": str(shuffle_partitions),
                                     **{k: str(v) for k, v in (extra or {}).items()}})

    submitted = submitted_conf()
    fs_jar = local_fs_jar() if submitted is None else None
    plan = plan_session(submitted, master=master, driver_memory=driver_memory,
                        shuffle_partitions=shuffle_partitions, extra=extra, warehouse_dir=warehouse_dir,
                        local_fs_jar=fs_jar)
    if plan.local and submitted is None and fs_jar is None:
        log.info("local file system: Hadoop's (one chmod process per file written; `python -m "
                 "recsys_spark.spark fetch-local-fs` fetches %s, module doc)", LOCAL_FS_COORDINATES)
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


def resolve_delta_jars() -> str:
    """Start and stop a one-core local session, so that Ivy resolves Delta's jars into its cache
    now (``make setup``) and not inside the first job or the first test session; returns the
    coordinates resolved. Where they are cached already it only reads the cache; where a session
    is active already (its JVM has its jars) nothing is started and that session is left running."""
    if active_session() is not None:
        return delta_coordinates()
    spark = get_spark(app_name="recsys-spark-resolve-delta", master="local[1]", driver_memory="1g")
    try:
        spark.range(1).count()
    finally:
        spark.stop()
    return delta_coordinates()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m recsys_spark.spark fetch-local-fs``: fetch the local file system's jar (module
    doc); ``resolve-delta``: resolve Delta's jars into Ivy's cache (:func:`resolve_delta_jars`)."""
    usage = "usage: python -m recsys_spark.spark {fetch-local-fs|resolve-delta}"
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["resolve-delta"]:
        try:
            print(resolve_delta_jars())
        except Exception as exc:  # noqa: BLE001 - setup goes on; the first session resolves them then
            print(f"could not resolve {delta_coordinates()}: {exc} (the first session resolves them)",
                  file=sys.stderr)
            return 1
        return 0
    if args != ["fetch-local-fs"]:
        print(usage, file=sys.stderr)
        return 2
    try:
        print(fetch_local_fs_jar())
    except (OSError, IOError) as exc:
        print(f"could not fetch {LOCAL_FS_COORDINATES}: {exc} (local sessions use Hadoop's file system)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
