"""Table maintenance: OPTIMIZE (Z-ORDER by ``user_id`` where users look up their rows) and VACUUM.

A separate step after the weekly run (``jobs/maintenance.py``; the last task of the Databricks
job). Each weekly write adds small files to one ``week_start`` partition; OPTIMIZE compacts them
and Z-orders ``discover_weekly`` / ``candidates`` by ``user_id`` so a point lookup of one user's
playlist reads one file per partition. VACUUM deletes files no version younger than the retention
needs.

Retention
---------
VACUUM removes the files that time travel to older versions needs. Every table carries
``delta.deletedFileRetentionDuration = interval 14 days`` (:data:`recsys_spark.tables.TABLE_PROPERTIES`),
so any VACUUM - this job's, a notebook's, Databricks' predictive optimisation - keeps 14 days and
"last week's playlist as it was published" stays readable through time travel. The default here
is the same ``DEFAULT_RETENTION_HOURS`` (336 h). A shorter retention is refused unless ``force_retention=True``;
then Delta's retention check is disabled **only for that one VACUUM call** and restored after it
(never globally: a concurrent writer's uncommitted files are younger than any sane retention).

Every step is recorded in ``runs`` (job ``maintenance``, stages ``optimize.<table>`` and
``vacuum.<table>``) with the files added / removed / deleted.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional, Sequence

from pyspark.sql import SparkSession

from .runlog import RunLog, new_run_id
from .tables import ALL_TABLES, Tables
from .weeks import require_monday

log = logging.getLogger(__name__)

DEFAULT_RETENTION_HOURS = 336.0  # = the tables' delta.deletedFileRetentionDuration (14 days)
TABLE_RETENTION_HOURS: Dict[str, float] = {}
ZORDER_BY: Dict[str, Sequence[str]] = {
    "discover_weekly": ("user_id",),
    "candidates": ("user_id",),
    "recall_candidates": ("user_id",),
}
RETENTION_CHECK_CONF = "spark.databricks.delta.retentionDurationCheck.enabled"


def _week_filter(name: str, week: dt.date) -> Optional[str]:
    """Partition predicate of the files week ``week``'s run wrote into ``name`` (None: whole table)."""
    spec = ALL_TABLES[name]
    w = week.isoformat()
    if "week_start" in spec.partition_by:
        return f"week_start = '{w}'"
    if "event_date" in spec.partition_by:  # interactions of the week before W (what ingestion added)
        return f"event_date >= '{(week - dt.timedelta(days=7)).isoformat()}' AND event_date < '{w}'"
    if "ingest_date" in spec.partition_by:
        return f"ingest_date >= '{(week - dt.timedelta(days=7)).isoformat()}'"
    return None


def optimize(spark: SparkSession, tables: Tables, name: str, zorder_by: Optional[Sequence[str]] = None,
             week: Optional[dt.date] = None) -> Dict[str, float]:
    """OPTIMIZE one table (Z-ORDER BY ``zorder_by`` when given), optionally only week ``week``'s
    partitions.

    Returns
    -------
    dict
        ``numFilesAdded``, ``numFilesRemoved``, ``partitionsOptimized`` (from Delta's metrics).
    """
    spec = tables.spec(name)
    cols = list(zorder_by or [])
    if tables.clustering and spec.cluster_by:
        cols = []  # a liquid-clustered table: OPTIMIZE clusters by its own keys (Z-ORDER is refused)
    names = [f.name for f in spec.schema.fields]
    for c in cols:
        if c not in names:
            raise ValueError(f"{name} has no column {c!r} to Z-order by")
        if c in spec.partition_by:
            raise ValueError(f"cannot Z-order {name} by its partition column {c!r}")
    builder = tables.delta(name).optimize()
    pred = _week_filter(name, require_monday(week)) if week is not None else None
    if pred:
        builder = builder.where(pred)
    res = builder.executeZOrderBy(*cols) if cols else builder.executeCompaction()
    m = res.select("metrics.numFilesAdded", "metrics.numFilesRemoved", "metrics.partitionsOptimized").first()
    out = {"files_added": float(m["numFilesAdded"] or 0), "files_removed": float(m["numFilesRemoved"] or 0),
           "partitions_optimized": float(m["partitionsOptimized"] or 0)}
    log.info("OPTIMIZE %s%s%s: %s", name, f" WHERE {pred}" if pred else "",
             f" ZORDER BY ({', '.join(cols)})" if cols else "", out)
    return out


@contextmanager
def _retention_check_disabled(spark: SparkSession) -> Iterator[None]:
    """Turn Delta's retention check off for the body only; restore the previous setting."""
    before = spark.conf.get(RETENTION_CHECK_CONF, None)
    spark.conf.set(RETENTION_CHECK_CONF, "false")
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(RETENTION_CHECK_CONF)
        else:
            spark.conf.set(RETENTION_CHECK_CONF, before)


def retention_for(name: str, retention_hours: Optional[float] = None) -> float:
    """The retention used for ``name``: the explicit value, else the table's default."""
    return float(retention_hours) if retention_hours is not None else TABLE_RETENTION_HOURS.get(
        name, DEFAULT_RETENTION_HOURS)


def vacuum(spark: SparkSession, tables: Tables, name: str, retention_hours: Optional[float] = None,
           force_retention: bool = False) -> Dict[str, float]:
    """VACUUM one table, keeping the files of every version younger than the retention.

    Parameters
    ----------
    retention_hours : float, optional
        Default :func:`retention_for` (336 h, the tables' retention property).
    force_retention : bool
        Allow a retention below 336 h (refused otherwise). Time travel beyond it breaks, and a
        writer running concurrently may lose files: only for a table nobody writes right now.

    Returns
    -------
    dict
        ``retention_hours`` and ``files_deleted`` (Delta's ``VACUUM END`` metric when recorded).
    """
    tables.spec(name)
    hours = retention_for(name, retention_hours)
    if hours < 0:
        raise ValueError(f"retention must be >= 0 hours, got {hours}")
    if hours < DEFAULT_RETENTION_HOURS and not force_retention:
        raise ValueError(f"refusing to VACUUM {name} with retention {hours:g} h < {DEFAULT_RETENTION_HOURS:g} h: "
                         f"time travel and concurrent writers need the files; pass force_retention=True "
                         f"(--force-retention) if you are sure")
    dt_ = tables.delta(name)
    before = tables.version(name)
    if hours < DEFAULT_RETENTION_HOURS:
        log.warning("VACUUM %s with retention %.1f h below %.0f h (forced): Delta's retention check is off "
                    "for this call only", name, hours, DEFAULT_RETENTION_HOURS)
        with _retention_check_disabled(spark):
            dt_.vacuum(hours)
    else:
        dt_.vacuum(hours)
    deleted = 0.0
    if tables.version(name) != before:
        for row in dt_.history(2).select("operation", "operationMetrics").collect():
            if row["operation"] == "VACUUM END":
                deleted = float((row["operationMetrics"] or {}).get("numDeletedFiles", 0))
    out = {"retention_hours": hours, "files_deleted": deleted}
    log.info("VACUUM %s RETAIN %.1f HOURS: %s", name, hours, out)
    return out


def run_maintenance(spark: SparkSession, tables: Tables, week: Optional[dt.date] = None,
                    names: Optional[Sequence[str]] = None, do_optimize: bool = True, do_vacuum: bool = True,
                    retention_hours: Optional[float] = None, force_retention: bool = False,
                    run_id: Optional[str] = None, config_hash: str = "") -> List[Dict[str, object]]:
    """OPTIMIZE (Z-ORDER for :data:`ZORDER_BY` tables) then VACUUM every existing table.

    Parameters
    ----------
    week : date, optional
        Only week ``week``'s partitions are optimized (the files the weekly run just wrote);
        None optimizes whole tables.
    names : sequence of str, optional
        Tables to maintain (default: every registered table that exists).

    Returns
    -------
    list of dict
        One ``{"table", "operation", ...metrics}`` per step; also one ``runs`` row each.
    """
    week = require_monday(week) if week is not None else None
    run_id = run_id or new_run_id("maintenance", week)
    runlog = RunLog(tables, run_id, week, "maintenance", config_hash)
    todo = list(names) if names else list(ALL_TABLES)
    for n in todo:
        tables.spec(n)
    if retention_hours is not None and retention_hours < DEFAULT_RETENTION_HOURS and not force_retention:
        raise ValueError(f"refusing retention {retention_hours:g} h < {DEFAULT_RETENTION_HOURS:g} h "
                         f"without force_retention (--force-retention)")
    out: List[Dict[str, object]] = []
    t0 = time.time()

    def step(stage: str, name: str, fn: Callable[[], Dict[str, float]]) -> None:
        with runlog.stage(stage) as st:
            metrics = fn()
            st.counts.update(metrics)
            st.rows_out = int(metrics.get("files_added", metrics.get("files_deleted", 0)))
        out.append({"table": name, "operation": stage.split(".")[0], **metrics})

    for name in todo:
        if name == "runs":
            continue  # maintained last: this run appends to it
        if not tables.exists(name):
            runlog.skip(f"optimize.{name}", "table does not exist")
            continue
        if do_optimize:
            step(f"optimize.{name}", name, lambda n=name: optimize(spark, tables, n, ZORDER_BY.get(n), week))
        if do_vacuum:
            step(f"vacuum.{name}", name,
                 lambda n=name: vacuum(spark, tables, n, retention_hours, force_retention))
    if "runs" in todo and tables.exists("runs"):
        if do_optimize:
            step("optimize.runs", "runs", lambda: optimize(spark, tables, "runs"))
        if do_vacuum:
            step("vacuum.runs", "runs", lambda: vacuum(spark, tables, "runs", retention_hours, force_retention))
    log.info("maintenance %s: %d steps in %.1fs", run_id, len(out), time.time() - t0)
    return out
