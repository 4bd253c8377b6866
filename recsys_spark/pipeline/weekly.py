"""``run_weekly``: week W's Discover Weekly as a list of stages."""

from __future__ import annotations

import datetime as dt
from typing import List, Optional

from pyspark.sql import SparkSession

from ..config import Config
from ..tables import Tables
from .runner import RunHooks, WeeklyResult, run_pipeline
from .stage import Stage
from .stages import (RECALL_CHANNELS, AggregateCreatorsStage, EmbedStage, LoadStage, RankStage, RecallStage,
                     TrainDinStage, TrainRankerStage, WriteStage)


def weekly_stages() -> List[Stage]:
    """The weekly run, in order."""
    return [LoadStage(), EmbedStage(), *(RecallStage(c) for c in RECALL_CHANNELS), TrainDinStage(),
            TrainRankerStage(), AggregateCreatorsStage(), RankStage(), WriteStage()]


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
