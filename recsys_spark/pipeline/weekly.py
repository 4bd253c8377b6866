"""``run_weekly``: week W's Discover Weekly as a list of stages."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any, Dict, List, Optional

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from ..config import Config
from ..tables import Tables
from .context import interactions_before
from .runner import RunHooks, WeeklyResult, run_pipeline
from .stage import Stage
from .stages import (RECALL_CHANNELS, AggregateCreatorsStage, EmbedStage, LoadStage, RankStage, RecallStage,
                     TrainDinStage, TrainRankerStage, WriteStage)

log = logging.getLogger(__name__)


def weekly_stages() -> List[Stage]:
    """The weekly run, in order."""
    return [LoadStage(), EmbedStage(), *(RecallStage(c) for c in RECALL_CHANNELS), TrainDinStage(),
            TrainRankerStage(), AggregateCreatorsStage(), RankStage(), WriteStage()]


def recall_stages() -> List[Stage]:
    """The weekly run's stages up to and including recall: what writes ``recall_candidates[W]``."""
    return [LoadStage(), EmbedStage(), *(RecallStage(c) for c in RECALL_CHANNELS)]


def run_recall(spark: SparkSession, cfg: Config, week: dt.date, tables: Optional[Tables] = None,
               run_id: Optional[str] = None) -> WeeklyResult:
    """Week ``week``'s :func:`recall_stages` only, logged as job ``recall``: its ``recall_candidates``
    partitions, exactly what the weekly run of ``week`` with ``cfg`` writes (same stage code, same
    inputs as of ``week``), and nothing else (no model, no playlist; the week does not count as
    complete for ``--if-needed``). A later weekly run of ``week`` with the same configuration
    resumes these stages.

    What it is for: a later week's ``train.din`` draws its exposure negatives from the
    ``recall_candidates`` of its label weeks (``train.ranker`` reuses those of its label cutoff), so
    a warehouse whose earlier weeks never ran trains differently from one that runs every Monday.
    :func:`exposure_weeks` says which weeks a run reads; :func:`warm_up` runs the missing ones."""
    from ..spark import require_classic

    require_classic(spark, "weekly")  # its recall stages are the weekly run's
    return run_pipeline(spark, cfg, week, recall_stages(), run_id=run_id, tables=tables, job="recall")


def exposure_weeks(spark: SparkSession, cfg: Config, tables: Tables, week: dt.date) -> List[dt.date]:
    """The Mondays before ``week`` whose ``recall_candidates`` week ``week``'s weekly run reads with
    ``cfg``, oldest first: ``train.din``'s label weeks (``din.train_weeks``) when the DIN is on and
    has enough labelled plays there to train (its own check,
    :func:`~recsys_spark.pipeline.stages.train_din.training_size`), and ``train.ranker``'s label
    cutoff when the ranker is on with ``ranker.reuse_recall``; a week with no event before it is
    left out (no user to recall for; the DIN finds no history there either). A few small jobs
    over the events before ``week``; nothing is collected but one row per week."""
    from ..ranking.ranker import label_window, weekly_event_counts
    from ..weeks import previous_weeks, require_monday
    from .stages.train_din import training_size

    week = require_monday(week)
    if not tables.exists("interactions"):
        return []
    inter = interactions_before(tables, week)
    out = set()
    dc = cfg.din
    if dc.enabled:
        label_weeks = previous_weeks(week, dc.train_weeks)
        _, _, why = training_size(inter, label_weeks, dc)
        if why is None:
            out.update(label_weeks)
        else:
            log.info("exposure weeks of %s: the DIN will not train (%s), its label weeks are not needed", week, why)
    rc = cfg.ranker
    if rc.enabled and rc.reuse_recall:
        cut = label_window(weekly_event_counts(inter), week, rc.label_share, rc.min_label_events, rc.max_label_weeks)
        if cut is not None:
            out.add(cut)
    if out:  # a week before the first event has no user to recall for (its run would refuse the week)
        first = inter.agg(F.min("event_ts")).first()[0]
        out = {w for w in out if first is not None and first < dt.datetime.combine(w, dt.time())}
    return sorted(out)


def warm_up(spark: SparkSession, cfg: Config, week: dt.date, tables: Optional[Tables] = None) -> List[Dict[str, Any]]:
    """:func:`run_recall` for each of :func:`exposure_weeks` that has no ``recall_candidates`` yet,
    oldest first: what the Mondays before ``week`` would have left for its run. A week that has
    candidates (an earlier run, whatever its configuration) is left as it is: past weeks are not
    rewritten. Returns ``[{"week", "run_id", "seconds"}]`` of the weeks it ran (empty when no stage
    of ``cfg`` reads an earlier week, or all of them are there). Used by the evaluation (steady
    state), the pipeline benchmark and ``recsys weekly --warm-up`` (a platform's first Mondays)."""
    tables = tables or Tables.from_config(spark, cfg.storage)
    weeks = exposure_weeks(spark, cfg, tables, week)
    have = set()
    if weeks and tables.exists("recall_candidates"):
        have = {r["week_start"] for r in tables.read("recall_candidates").where(F.col("week_start").isin(*weeks))
                .select("week_start").distinct().collect()}  # at most len(weeks) rows
    todo = [w for w in weeks if w not in have]
    log.info("warm-up of %s: recall stages of %s%s", week, ", ".join(str(w) for w in todo) or "no earlier week",
             f" (already there: {', '.join(str(w) for w in sorted(have))})" if have else "")
    out = []
    for w in todo:
        t0 = time.perf_counter()
        res = run_recall(spark, cfg, w, tables=tables)
        out.append({"week": w.isoformat(), "run_id": res.run_id, "seconds": round(time.perf_counter() - t0, 1)})
    return out


def run_weekly(spark: SparkSession, cfg: Config, week: dt.date, run_id: Optional[str] = None,
               tables: Optional[Tables] = None, force: bool = False, if_needed: bool = False,
               hooks: Optional[RunHooks] = None) -> WeeklyResult:
    """Build and write week ``week``'s Discover Weekly.

    Parameters
    ----------
    spark : SparkSession
    cfg : Config
    week : datetime.date
        A Monday.
    run_id : str, optional
    tables : Tables, optional
        Defaults to ``Tables.from_config(spark, cfg.storage)``.
    force : bool
        Rerun every stage even if an earlier run of W completed it.
    if_needed : bool
        Return at once when week W already has a successful run.
    hooks : RunHooks, optional
        Callables invoked after each stage and before the final commit (fault-injection tests).

    Returns
    -------
    WeeklyResult
        Counts of the written partition and the run summary.

    Raises
    ------
    recsys_spark.spark.ClassicSessionRequired
        At once, before any stage, on a Spark Connect session (stages that need a SparkContext).
    """
    from ..spark import require_classic

    require_classic(spark, "weekly")
    return run_pipeline(spark, cfg, week, weekly_stages(), run_id=run_id, tables=tables, force=force,
                        if_needed=if_needed, hooks=hooks)
