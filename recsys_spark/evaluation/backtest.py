"""Weekly backtest on the platform tables, written to the ``evaluation_runs`` Delta table.

For each of the last N Mondays W: the playlists *as of W* (the ``discover_weekly`` partition
``week_start = W``, built by the weekly pipeline from interactions before W; optionally built on
the spot through ``build_week``) and any registered method fitted on the interactions before W are
scored against the week's new interactions: truth = tracks a user touched in ``[W, W+7d)`` that
the user had not touched before W; test users = users with history before W and such a track.

One row per (run, week, method) is appended to ``evaluation_runs`` (partitioned by
``week_start``), so the figures of every backtest stay queryable side by side.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..tables import TableSpec, Tables, column, register
from ..weeks import week_start
from . import methods as M
from .evaluate import evaluate_recs, run_method
from .loaders import load_platform
from .metrics import DEFAULT_CURVE_KS
from .peers import MethodUnavailable
from .split import split_at

log = logging.getLogger(__name__)

EVALUATION_RUNS = register(TableSpec(
    "evaluation_runs",
    T.StructType([
        column("run_id", T.StringType(), False, "backtest run"),
        column("week_start", T.DateType(), False, "partition: the Monday whose playlists were scored"),
        column("method", T.StringType(), False, "discover_weekly (the pipeline's playlists) or a method name"),
        column("k", T.IntegerType(), False, "list length"),
        column("test_users", T.LongType(), comment="users with history before W and a new track in [W, W+7d)"),
        column("metrics", T.MapType(T.StringType(), T.DoubleType()), comment="recall@k, ndcg@k, hit@k, coverage, ..."),
        column("status", T.StringType(), False, "succeeded | skipped | failed"),
        column("message", T.StringType(), comment="why skipped / failed"),
        column("evaluated_at", T.TimestampType(), False, "when"),
    ]),
    key=("run_id", "week_start", "method"),
    partition_by=("week_start",),
    comment="Weekly backtests: each week's playlists scored against that week's new interactions.",
))

PLAYLISTS = "discover_weekly"


def backtest_weeks(interactions: DataFrame, n: int, last_week: Optional[dt.date] = None) -> List[dt.date]:
    """The last ``n`` Mondays whose week is fully covered by the data, most recent first.

    ``last_week`` defaults to the latest Monday W with ``W + 7d <= day after the last event``.
    """
    if last_week is None:
        row = interactions.agg(F.max("event_ts").alias("m")).first()
        if row is None or row["m"] is None:
            return []
        day_after = row["m"].date() + dt.timedelta(days=1)
        last_week = week_start(day_after - dt.timedelta(days=7))
    last_week = week_start(last_week)
    return [last_week - dt.timedelta(days=7 * i) for i in range(n)]


def playlist_recs(tables: Tables, week: dt.date) -> DataFrame:
    """``user_id, track_id, score, rank`` of the ``discover_weekly`` partition ``week``."""
    return tables.read(PLAYLISTS).where(F.col("week_start") == F.lit(week)).select(
        "user_id", "track_id", F.col("score").cast("double"), F.col("position").cast("int").alias("rank"))


def backtest(
    spark: SparkSession,
    tables: Tables,
    weeks: Any,
    methods: Optional[Sequence[str]] = None,
    k: int = 30,
    params: Optional[Mapping[str, Mapping[str, Any]]] = None,
    seed: int = 0,
    build_week: Optional[Callable[[dt.date], None]] = None,
    beyond: bool = True,
    write: bool = True,
    run_id: Optional[str] = None,
) -> List[Dict[str, Any]]:
    """Score the playlists of the last weeks (and ``methods``) week by week.

    Parameters
    ----------
    spark : SparkSession
    tables : Tables
        The platform tables (``interactions``, ``tracks``, ``discover_weekly``); results are
        appended to ``evaluation_runs`` there.
    weeks : int or sequence of datetime.date
        The last N weeks (:func:`backtest_weeks`) or explicit Mondays.
    methods : sequence of str, optional
        Registered methods fitted on the interactions before each W, besides the pipeline's
        playlists (default: ``["popularity"]``).
    build_week : callable, optional
        ``build_week(W)`` builds the week's playlists when its partition is empty (e.g. a wrapper
        of ``pipeline.run_weekly``); without it an empty week is recorded as skipped.
    write : bool
        Append the rows to ``evaluation_runs``.

    Returns
    -------
    list of dict
        ``{"run_id", "week_start", "method", "k", "test_users", "metrics", "status", "message"}``.
    """
    ds = load_platform(spark, tables)
    inter = ds.interactions.cache()
    week_list = backtest_weeks(inter, int(weeks)) if isinstance(weeks, int) else [week_start(w) for w in weeks]
    run_id = run_id or f"backtest-{dt.datetime.utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    names = list(methods) if methods is not None else ["popularity"]
    rows: List[Dict[str, Any]] = []
    for w in week_list:
        start = dt.datetime.combine(w, dt.time())
        split = split_at(inter, start, start + dt.timedelta(days=7)).cache()
        n_test = split.test_users.count()
        log.info("backtest week %s: %d test users", w, n_test)
        ctx = M.MethodContext(spark=spark, dataset=ds, split=split, k=k,
                              params={kk: dict(v) for kk, v in (params or {}).items()}, seed=seed)

        def record(method, status, metrics=None, message=None):
            rows.append({"run_id": run_id, "week_start": w, "method": method, "k": k, "test_users": n_test,
                         "metrics": {kk: float(v) for kk, v in (metrics or {}).items()
                                     if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None},
                         "status": status, "message": message})

        if n_test == 0:
            record(PLAYLISTS, "skipped", message="no test users this week")
            continue
        # the pipeline's playlists as of W
        recs = playlist_recs(tables, w)
        if build_week is not None and recs.limit(1).count() == 0:
            t0 = time.perf_counter()
            build_week(w)
            log.info("backtest: built week %s in %.1fs", w, time.perf_counter() - t0)
            recs = playlist_recs(tables, w)
        if recs.limit(1).count() == 0:
            record(PLAYLISTS, "skipped", message=f"no {PLAYLISTS} partition for {w}")
        else:
            record(PLAYLISTS, "succeeded", _flat(evaluate_recs(recs, split, k, ds, DEFAULT_CURVE_KS, beyond)))
        for name in names:
            try:
                mrecs, _, seconds = run_method(spark, name, split, k, ctx)
            except MethodUnavailable as exc:
                record(name, "skipped", message=str(exc))
                continue
            except Exception as exc:  # noqa: BLE001
                log.exception("backtest: method %s failed on week %s", name, w)
                record(name, "failed", message=f"{type(exc).__name__}: {exc}")
                continue
            m = _flat(evaluate_recs(mrecs, split, k, ds, DEFAULT_CURVE_KS, beyond))
            m["fit_seconds"] = seconds
            record(name, "succeeded", m)
            mrecs.unpersist()
        split.train.unpersist()
    if write and rows:
        now = dt.datetime.utcnow().replace(microsecond=0)
        df = spark.createDataFrame(
            [(r["run_id"], r["week_start"], r["method"], r["k"], r["test_users"], r["metrics"], r["status"],
              r["message"], now) for r in rows], EVALUATION_RUNS.schema)
        tables.append(EVALUATION_RUNS.name, df)
        log.info("backtest %s: %d rows appended to %s", run_id, len(rows), EVALUATION_RUNS.name)
    inter.unpersist()
    return rows


def _flat(metrics: Dict[str, Any]) -> Dict[str, float]:
    """Numeric metrics plus the recall curve as ``recall@<c>`` entries."""
    out = {kk: v for kk, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for c, v in (metrics.get("recall_curve") or {}).items():
        out[f"recall@{c}"] = v
    for key, v in metrics.items():
        if key.endswith("_ci95") and v is not None:
            out[f"{key}_low"], out[f"{key}_high"] = float(v[0]), float(v[1])
    return out
