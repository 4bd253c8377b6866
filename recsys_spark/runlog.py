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

Long stages show progress: while a stage runs, a heartbeat logs every ``progress_seconds``
(default 60) how long it has been running and the Spark stages in flight with their task counts
(``[run] stage rank running for 120s: spark stage 41 (3/8 tasks), stage 42 (0/8 tasks)``).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
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


_TAGS: Dict[int, str] = {}


def tag_jobs(spark, tag: str, description: str = "") -> str:
    """Label the Spark jobs started from now on with ``tag`` (best effort; returns how).

    Classic Spark: the job group (``SparkContext.setJobGroup``). Spark Connect has no SparkContext
    (``spark.sparkContext`` raises): there the session's job tag (``spark.addTag``) replaces the tag
    this function set before. Labels are a convenience, never a reason to fail a run."""
    try:
        spark.sparkContext.setJobGroup(tag, description or tag)
        return "job_group"
    except Exception:
        pass
    try:
        safe = tag.replace(",", ";")  # job tags may not contain commas
        old = _TAGS.get(id(spark))
        if old and hasattr(spark, "removeTag"):
            spark.removeTag(old)
        spark.addTag(safe)
        _TAGS[id(spark)] = safe
        return "tag"
    except Exception:
        return ""


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


def spark_progress(sc) -> str:
    """``spark stage <id> (<done>/<total> tasks), ...`` for the Spark stages running now ('' when unknown)."""
    if sc is None:
        return ""
    try:
        tracker = sc.statusTracker()
        parts = []
        for sid in sorted(tracker.getActiveStageIds())[:4]:
            info = tracker.getStageInfo(sid)
            if info is not None:
                parts.append(f"stage {sid} ({info.numCompletedTasks}/{info.numTasks} tasks)")
        return ("spark " + ", ".join(parts)) if parts else "no Spark stage active"
    except Exception:  # progress is best effort: never fail a run over it
        return ""


class _Heartbeat:
    """Logs ``[run] stage X running for Ns: <spark progress>`` every ``interval`` seconds."""

    def __init__(self, run_id: str, stage: str, interval: float, tables):
        self.run_id, self.stage, self.interval = run_id, stage, interval
        self.t0 = time.time()
        self.sc = None
        try:  # Spark Connect has no SparkContext: then the heartbeat shows the time only
            self.sc = tables.spark.sparkContext if tables is not None else None
        except Exception:
            pass
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{stage}", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            prog = spark_progress(self.sc)
            log.info("[%s] stage %s running for %.0fs%s", self.run_id, self.stage, time.time() - self.t0,
                     f": {prog}" if prog else "")

    def __enter__(self) -> "_Heartbeat":
        if self.interval and self.interval > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)


class RunLog:
    """Records stages of one run into the ``runs`` table (and the Python log)."""

    def __init__(self, tables: Optional[Tables], run_id: str, week: Optional[dt.date], job: str = "weekly",
                 config_hash: str = "", persist: bool = True, progress_seconds: float = 60.0):
        self.tables = tables
        self.progress_seconds = progress_seconds
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
            with _Heartbeat(self.run_id, name, self.progress_seconds, self.tables):
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
        """Label the Spark jobs of this stage (``<run_id>:<stage>``) so the Spark UI, its REST API and
        the benchmarks can attribute shuffle bytes and task time to a stage."""
        if self.tables is not None:
            tag_jobs(self.tables.spark, f"{self.run_id}:{name}", f"{self.job} {name}")

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
