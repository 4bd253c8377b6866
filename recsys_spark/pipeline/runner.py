"""The runner: what every stage of a weekly run shares, done once.

* **resume**: a stage whose :meth:`~.stage.Stage.done` is true is skipped (a ``skipped`` row says
  which run did it) unless ``force``, or unless a stage it builds on (``Stage.after``) ran in
  this run;
* **skips**: a stage with a :meth:`~.stage.Stage.skip_reason` is logged as skipped with it;
* the **runs log** (:class:`~recsys_spark.runlog.RunLog`: one row per stage, failures included)
  and Spark job labels per stage;
* the optimistic **claim/commit** of week W's ``discover_weekly`` partition: the claim is taken
  when the run starts, ``ctx.commit`` (called by the write stage) fails with
  :class:`ConcurrentRunError` when another run committed W in between, and writes nothing;
* **caching**: frames registered with ``ctx.cache`` are released when the run ends, also on failure;
* **hooks** (:class:`RunHooks`): callables the caller passes, e.g. the fault-injection tests.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ..config import Config
from ..runlog import RunLog, new_run_id, tag_jobs
from ..tables import ConcurrentWriteError, Tables
from ..tracking import log_weekly_run  # MLflow, only when tracking.mlflow_uri is set; never raises
from ..weeks import require_monday
from .context import RunContext
from .stage import Stage

log = logging.getLogger(__name__)


class ConcurrentRunError(ConcurrentWriteError):
    """Another run of the same week committed ``discover_weekly`` after this run started.

    The run claims week W's partition when it starts (:meth:`Tables.claim_partition`); its final
    commit fails with this error if any other run committed W in between, and writes nothing."""


@dataclass
class RunHooks:
    """Callables the runner invokes at fixed points (tests inject faults through them).

    after_stage : called with the stage name after each stage (ran, resumed or skipped).
    before_commit : called right before week W's ``discover_weekly`` commit.
    wrap_commit : called with the rows about to be committed; what it returns is written instead
        (a test wraps them in a UDF that kills the driver while Delta writes the files).
    """

    after_stage: Optional[Callable[[str], None]] = None
    before_commit: Optional[Callable[[], None]] = None
    wrap_commit: Optional[Callable[[DataFrame], DataFrame]] = None


@dataclass
class WeeklyResult:
    run_id: str
    week: dt.date
    users: int
    rows: int
    short_users: int
    stages: List[str] = field(default_factory=list)
    summary: str = ""
    skipped_run: bool = False


def week_is_complete(tables: Tables, week: dt.date) -> bool:
    """True when a weekly run of ``week`` finished (any configuration)."""
    if not tables.exists("runs"):
        return False
    return tables.read("runs").where(
        (F.col("week_start") == F.lit(week)) & (F.col("job") == "weekly") & (F.col("stage") == "run")
        & (F.col("status") == "succeeded")).limit(1).count() > 0


def run_stages(ctx: RunContext, stages: Sequence[Stage], runlog: RunLog, force: bool = False,
               hooks: Optional[RunHooks] = None) -> None:
    """Run ``stages`` in order on ``ctx``: skip, resume or run each, and log it in ``runlog``."""
    hooks = hooks or RunHooks()
    ran = set()  # stages that wrote new output in this run
    ctx.succeeded("load")  # read W's finished stages before any stage of this run is logged
    for stage in stages:
        why = stage.skip_reason(ctx)
        if why is not None:
            runlog.skip(stage.name, why)
        elif not force and not (set(stage.after) & ran) and stage.done(ctx):
            row = ctx.succeeded(stage.name)
            runlog.skip(stage.name, f"already done by run {row['run_id'] if row else '?'} (resume; --force reruns it)")
            ctx.finished.add(stage.name)
        else:
            with runlog.stage(stage.name) as rec:
                rep = stage.run(ctx)
                if rep is not None:
                    rec.rows_in, rec.rows_out, rec.skipped, rec.message = (rep.rows_in, rep.rows_out, rep.skipped,
                                                                           rep.message)
                    rec.counts.update(rep.counts)
            if rec.status == "succeeded":
                ran.add(stage.name)
                ctx.finished.add(stage.name)
        if hooks.after_stage is not None:
            hooks.after_stage(stage.name)


def claimed_commit(tables: Tables, week: dt.date, run_id: str, hooks: Optional[RunHooks] = None):
    """Claim week W's ``discover_weekly`` partition now; returns ``(claim, commit(df) -> version)``."""
    claim = tables.claim_partition("discover_weekly", "week_start", week, owner=run_id)

    def commit(df: DataFrame) -> int:
        if hooks is not None and hooks.before_commit is not None:
            hooks.before_commit()
        if hooks is not None and hooks.wrap_commit is not None:
            df = hooks.wrap_commit(df)
        try:
            return tables.commit_partition(claim, df)
        except ConcurrentWriteError as exc:
            raise ConcurrentRunError(
                f"another run of week {week} committed discover_weekly after this run ({run_id}) started; this "
                f"run wrote nothing and the table holds the other run's complete week {week}. Rerun to replace "
                f"it. ({exc})") from exc
    return claim, commit


def run_pipeline(spark: SparkSession, cfg: Config, week: dt.date, stages: Sequence[Stage],
                 run_id: Optional[str] = None, tables: Optional[Tables] = None, force: bool = False,
                 if_needed: bool = False, hooks: Optional[RunHooks] = None, job: str = "weekly") -> WeeklyResult:
    """Run ``stages`` as week ``week``'s weekly run (see the module doc); the ``write`` stage's
    counts become the result. ``job`` names the run in the ``runs`` log: ``weekly`` (a complete
    run: what ``--if-needed`` looks for) or ``recall`` (a subset of the stages,
    :func:`~recsys_spark.pipeline.weekly.run_recall`); resume reads both
    (:data:`~recsys_spark.pipeline.context.STAGE_JOBS`)."""
    week = require_monday(week)
    tables = tables or Tables.from_config(spark, cfg.storage)
    run_id = run_id or new_run_id(job, week)
    if if_needed and not force and week_is_complete(tables, week):
        log.info("week %s already has a successful run: nothing to do (--if-needed)", week)
        return WeeklyResult(run_id, week, 0, 0, 0, [], f"week {week} already complete; nothing done", True)
    tables.create_all()
    # optimistic concurrency: what week W's playlist partition looks like as this run starts
    claim, commit = claimed_commit(tables, week, run_id, hooks)
    ctx = RunContext(spark, cfg, tables, week, run_id, commit_fn=commit)
    runlog = RunLog(tables, run_id, week, job, ctx.fingerprint)
    t_run = time.time()
    tag_jobs(spark, run_id, f"Discover Weekly {week}")
    try:
        run_stages(ctx, stages, runlog, force=force, hooks=hooks)
        write = next((r for r in reversed(runlog.records) if r.stage == "write"), None)
        rows = int(write.rows_out or 0) if write else 0
        users, short = (int(write.counts.get(k, 0)) for k in ("users", "short_users")) if write else (0, 0)
        with runlog.stage("run") as st:
            st.rows_out = rows
            st.counts.update(users=users, short_users=short, claim_base_version=float(claim.base_version),
                             total_seconds=round(time.time() - t_run, 1))
    finally:
        ctx.release()
    summary = runlog.summary()
    log.info("%s", summary)
    log_weekly_run(cfg, run_id, week, runlog.records, ctx.model_dir)
    return WeeklyResult(run_id, week, users, rows, short, [r.stage for r in runlog.records], summary)
