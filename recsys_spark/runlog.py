"""Run log: every stage of every run records what it did in the ``runs`` Delta table.

Usage::

    log = RunLog(tables, run_id, week, job="weekly", config_hash=cfg.fingerprint())
    with log.stage("recall.item_cf") as st:
        cands = ...
        st.rows_out = cands.count()
        st.counts["users"] = ...
    log.skip("recall.content", "no track embeddings")

Each stage appends one row (run_id, stage, status, timings, rows in/out, counts, skipped,
message) when it ends, also when it fails (status ``failed`` with the error), so an operator can
answer "what happened in last Monday's run?" from the table alone.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import traceback
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional

from .tables import Tables

log = logging.getLogger("recsys_spark.run")


def new_run_id(job: str, week: Optional[dt.date]) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{job}-{week.isoformat() if week else 'na'}-{stamp}-{uuid.uuid4().hex[:6]}"


@dataclass
class StageRecord:
    stage: str
    started_at: dt.datetime
    rows_in: Optional[int] = None
    rows_out: Optional[int] = None
    counts: Dict[str, float] = field(default_factory=dict)
    skipped: Optional[str] = None
    message: Optional[str] = None
    status: str = "running"
    finished_at: Optional[dt.datetime] = None
    seconds: Optional[float] = None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class RunLog:
    """Records stages of one run into the ``runs`` table (and the Python log)."""

    def __init__(self, tables: Optional[Tables], run_id: str, week: Optional[dt.date], job: str = "weekly",
                 config_hash: str = "", persist: bool = True):
        self.tables = tables
        self.run_id = run_id
        self.week = week
        self.job = job
        self.config_hash = config_hash
        self.persist = persist and tables is not None
        self.records: List[StageRecord] = []

    def _write(self, rec: StageRecord) -> None:
        self.records.append(rec)
        if not self.persist:
            return
        spark = self.tables.spark
        from .tables import RUNS

        row = (self.run_id, self.week, self.job, rec.stage, rec.status, rec.started_at, rec.finished_at,
               rec.seconds, rec.rows_in, rec.rows_out, {k: float(v) for k, v in rec.counts.items()},
               rec.skipped, rec.message, self.config_hash)
        self.tables.append("runs", spark.createDataFrame([row], RUNS.schema))

    @contextmanager
    def stage(self, name: str) -> Iterator[StageRecord]:
        rec = StageRecord(stage=name, started_at=_now())
        t0 = time.time()
        log.info("[%s] stage %s started", self.run_id, name)
        self._tag_jobs(name)
        try:
            yield rec
        except BaseException as exc:
            rec.status = "failed"
            rec.message = f"{type(exc).__name__}: {exc}"[:2000]
            rec.finished_at = _now()
            rec.seconds = round(time.time() - t0, 3)
            log.error("[%s] stage %s FAILED after %.1fs: %s\n%s", self.run_id, name, rec.seconds, rec.message,
                      traceback.format_exc(limit=3))
            try:
                self._write(rec)
            except Exception:  # the original error matters more than the log row
                log.exception("could not record the failed stage %s", name)
            raise
        rec.status = "skipped" if rec.skipped and rec.rows_out is None else "succeeded"
        rec.finished_at = _now()
        rec.seconds = round(time.time() - t0, 3)
        log.info("[%s] stage %s %s in %.1fs: rows_in=%s rows_out=%s %s%s", self.run_id, name, rec.status,
                 rec.seconds, rec.rows_in, rec.rows_out, rec.counts or "",
                 f" skipped: {rec.skipped}" if rec.skipped else "")
        self._write(rec)

    def _tag_jobs(self, name: str) -> None:
        """Label the Spark jobs of this stage (job group ``<run_id>:<stage>``) so the Spark UI, its
        REST API and the benchmarks can attribute shuffle bytes and task time to a stage."""
        if self.tables is None:
            return
        try:
            self.tables.spark.sparkContext.setJobGroup(f"{self.run_id}:{name}", f"{self.job} {name}")
        except Exception:  # Spark Connect has no SparkContext; labels are a convenience only
            pass

    def skip(self, name: str, why: str) -> None:
        """Record a stage that did not run, and why."""
        now = _now()
        rec = StageRecord(stage=name, started_at=now, skipped=why, status="skipped", finished_at=now, seconds=0.0)
        log.warning("[%s] stage %s skipped: %s", self.run_id, name, why)
        self._write(rec)

    def summary(self) -> str:
        lines = [f"run {self.run_id} (week {self.week}):"]
        for r in self.records:
            extra = f" skipped: {r.skipped}" if r.skipped else ""
            lines.append(f"  {r.stage:<28} {r.status:<9} {r.seconds or 0:7.1f}s  in={r.rows_in} out={r.rows_out}"
                         f" {r.counts if r.counts else ''}{extra}")
        return "\n".join(lines)
