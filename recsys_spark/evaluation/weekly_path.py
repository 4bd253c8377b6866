"""The ``pipeline`` method: score the playlists the real weekly job writes, nothing else.

What users receive is what gets measured. For a split at ``cutoff`` (EVALUATION.md):

1. :func:`materialise` turns the data set's *train* part into the platform's tables in a private
   warehouse (:class:`~recsys_spark.tables.Tables`): ``interactions`` (train events only),
   ``tracks`` (the catalogue as of the cutoff) and, where the data set has them, ``user_prompts``,
   ``track_embeddings``, ``prompt_embeddings``. Columns a data set lacks stay null (no audio, no
   track statistics, no genre...) so the weekly stages that need them skip with the weekly run's
   own logged reason. ``tracks.creator_id`` is NOT NULL in the table contract: an unknown creator
   is the empty string, which the weekly run reads as "no creator" (no creator cap, no creator
   aggregation, never "your own track"); :func:`materialise` reports how many tracks have one.
2. :func:`run_weekly_path` runs ``recsys_spark.pipeline.run_weekly(spark, cfg, W, tables=...)``
   for W = the Monday on or after the cutoff (every table row lies before the cutoff, so the job
   sees exactly the train events) with the configuration it is given: the shipped one
   (``conf/base.yaml`` + overlay + ``--set``) as loaded by the evaluation job. **Steady state**
   (the default): a platform runs the job every Monday, so W's ``train.din`` finds the
   ``recall_candidates`` of its label weeks (its exposure negatives) written by the earlier weeks'
   runs. The private warehouse has no earlier runs, so first the recall stages of exactly those
   weeks run (``pipeline.warm_up``: ``exposure_weeks`` / ``run_recall``, each week seeing only its
   own past). ``steady_state=False`` measures a warehouse's first run instead.
3. The test users' rows of ``discover_weekly`` for W are the recommendations (``rank`` =
   ``position``); the run's stage log (``runs``: what ran, what was skipped and why) goes into
   the method's metrics entry with ``"path": "weekly"``.

The funnel reads the same run's tables: each channel's ``recall_candidates``, the ranked
``candidates``, then the playlist.
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import os
import shutil
import tempfile
from typing import Any, Dict, List, Mapping, Optional

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ..spark import default_parallelism
from .methods import MethodContext, StagedResult

log = logging.getLogger(__name__)

UNKNOWN_CREATOR = ""  # NOT NULL column: the empty string is the weekly run's "no creator"
TRACK_STAT_COLUMNS = ("play_count", "upvote_count", "comment_count")


def _null(df: DataFrame, name: str, dtype) -> F.Column:
    return F.col(name).cast(dtype) if name in df.columns else F.lit(None).cast(dtype)


def materialise(spark: SparkSession, dataset, split, tables) -> Dict[str, Any]:
    """Write the train part of ``split`` into ``tables`` as the platform's input tables.

    Parameters
    ----------
    dataset : EvalDataset
        Its optional ``tracks`` / ``user_prompts`` / embeddings are used when present.
    split : Split
        Only ``train_events`` (strictly before ``split.cutoff``) are written.
    tables : recsys_spark.tables.Tables
        A private warehouse (it is overwritten).

    Returns
    -------
    dict
        Data coverage: rows written per table and how many tracks have each optional attribute.
    """
    from recsys_spark.tables import ALL_TABLES

    cutoff = split.cutoff
    ev = split.train_events
    inter = ev.select("user_id", "track_id", "event_ts", "event_type", F.col("weight").cast("double"),
                      F.to_date("event_ts").alias("event_date"), _null(ev, "ingested_at", "timestamp").alias("ingested_at"))
    # one file per event_date partition (a public data set spans thousands of days: without this
    # every task would write a file into every day it touches), written by as many tasks as the
    # session has cores: MovieLens' 3,807 days are 3,807 files, and without a number of partitions
    # adaptive execution coalesced the shuffle into one task (one core wrote them all: 55-63 s
    # against 30-42 s on two cores)
    tables.overwrite("interactions", inter.repartition(default_parallelism(spark), "event_date"))

    # the catalogue as of the cutoff: tracks with a train event, plus catalogue rows known to exist
    # before the cutoff (created_at < cutoff); never a track that first appears in the test period
    seen = ev.select("track_id").distinct()
    schema = ALL_TABLES["tracks"].schema
    if dataset.tracks is not None:
        t = dataset.tracks
        created = _null(t, "created_at", "timestamp")
        known = t.where(created.isNotNull() & (created < F.lit(cutoff)))
        t = t.join(seen, "track_id", "left_semi").unionByName(known, allowMissingColumns=False) \
            .dropDuplicates(["track_id"])
        base = seen.join(t, "track_id", "full_outer")
    else:
        base = seen
    cols = []
    for f in schema.fields:
        if f.name == "track_id":
            cols.append(F.col("track_id"))
        elif f.name == "creator_id":
            cols.append(F.coalesce(_null(base, "creator_id", "string"), F.lit(UNKNOWN_CREATOR)).alias("creator_id"))
        else:
            cols.append(_null(base, f.name, f.dataType).alias(f.name))
    tracks = base.select(*cols)
    tables.overwrite("tracks", tracks)
    tr = tables.read("tracks")
    cov_row = tr.agg(
        F.count(F.lit(1)).alias("tracks"),
        F.sum(F.when(F.trim(F.col("creator_id")) != "", 1).otherwise(0)).alias("with_creator"),
        F.sum(F.when(F.coalesce(*[F.col(c) for c in TRACK_STAT_COLUMNS]).isNotNull(), 1).otherwise(0)).alias("with_stats"),
        F.sum(F.when(F.col("genre").isNotNull(), 1).otherwise(0)).alias("with_genre"),
        F.sum(F.when(F.col("audio_uri").isNotNull(), 1).otherwise(0)).alias("with_audio_uri"),
        F.sum(F.when(F.col("created_at").isNotNull(), 1).otherwise(0)).alias("with_created_at"),
        F.sum(F.when(F.col("prompt").isNotNull(), 1).otherwise(0)).alias("with_prompt_text"),
    ).first()
    cov: Dict[str, Any] = {"interactions": int(tables.read("interactions").count()),
                           "tracks": int(cov_row["tracks"])}
    for key in ("with_creator", "with_stats", "with_genre", "with_audio_uri", "with_created_at", "with_prompt_text"):
        cov[f"tracks_{key}"] = int(cov_row[key] or 0)

    n_prompts = 0
    if dataset.user_prompts is not None:
        p = dataset.user_prompts
        p = p.where(F.col("created_at").isNotNull() & (F.col("created_at") < F.lit(cutoff)))
        tables.overwrite("user_prompts", p.select(
            "prompt_id", "user_id", "prompt_text", "created_at", _null(p, "ingested_at", "timestamp").alias("ingested_at")))
        n_prompts = tables.read("user_prompts").count()
    cov["user_prompts"] = int(n_prompts)
    # computed embeddings of the catalogue (platform): the embed stage is incremental, so it only
    # encodes what is missing; vectors computed after the cutoff are vectors of pre-cutoff audio
    n_emb = 0
    if dataset.track_embeddings is not None and {"model_version", "created_at"} <= set(dataset.track_embeddings.columns):
        tables.overwrite("track_embeddings", dataset.track_embeddings.join(tr.select("track_id"), "track_id", "left_semi"))
        n_emb = tables.read("track_embeddings").select("track_id").distinct().count()
    cov["tracks_with_embeddings"] = int(n_emb)
    if dataset.prompt_embeddings is not None and "kind" in dataset.prompt_embeddings.columns:
        keep_ids = tables.read("user_prompts").select(F.col("prompt_id").alias("id")).unionByName(
            tr.select(F.col("track_id").alias("id")))
        tables.overwrite("prompt_embeddings", dataset.prompt_embeddings.join(keep_ids, "id", "left_semi"))
    log.info("weekly path: materialised %s", cov)
    return cov


def stage_log(tables, run_id: str) -> List[Dict[str, Any]]:
    """The ``runs`` rows of ``run_id`` (a dozen), in order: stage, status, seconds, rows, skipped,
    the stage's message and its counts (e.g. the ranker's held-out verdict and feature figures)."""
    rows = (tables.read("runs").where(F.col("run_id") == F.lit(run_id))
            .select("stage", "status", "seconds", "rows_in", "rows_out", "skipped", "message", "counts",
                    "started_at")
            .orderBy("started_at", "stage").collect())
    out = []
    for r in rows:
        e = {"stage": r["stage"], "status": r["status"],
             "seconds": None if r["seconds"] is None else round(float(r["seconds"]), 2),
             "rows_in": r["rows_in"], "rows_out": r["rows_out"]}
        if r["skipped"]:
            e["skipped"] = r["skipped"]
        if r["message"]:
            e["message"] = r["message"][:500]
        if r["counts"]:
            e["counts"] = {k: round(float(v), 5) for k, v in sorted(r["counts"].items())}
        out.append(e)
    return out


def private_warehouse(prefix: str = "recsys-eval-") -> str:
    """A temporary folder for one evaluation's tables and models, removed when the process exits."""
    root = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, root, True)
    return root


def run_weekly_path(spark: SparkSession, cfg, dataset, split, week: dt.date, root: Optional[str] = None,
                    overrides: Optional[Mapping[str, Any]] = None,
                    coverage: Optional[Dict[str, Any]] = None, steady_state: bool = True) -> Dict[str, Any]:
    """Materialise ``split``'s train part under ``root`` and run the weekly job for ``week``.

    Parameters
    ----------
    cfg : Config
        The shipped configuration as the evaluation job loaded it; only ``storage.warehouse`` /
        ``storage.model_dir`` are pointed at ``root`` (and ``overrides``, dotted config keys, are
        applied: what ``--set`` does).
    week : datetime.date
        A Monday on or after ``split.cutoff``.
    coverage : dict, optional
        The :func:`materialise` report of an earlier call with the same ``root`` and ``split``:
        the input tables are already there and are reused (several settings compared on one
        split). The run itself is a new run of W: its configuration fingerprint differs, so no
        stage output of the earlier settings is resumed.
    steady_state : bool
        Run ``pipeline.warm_up`` first (the module doc); False: W's run is the warehouse's first.

    Returns
    -------
    dict
        ``tables``, ``cfg`` (the run's), ``result`` (:class:`WeeklyResult`), ``coverage``,
        ``stage_log``, ``warm_up`` (``pipeline.warm_up``'s list, each with its ``stage_log``; empty
        when not steady state).
    """
    from recsys_spark.pipeline import run_weekly, warm_up
    from recsys_spark.tables import Tables

    if dt.datetime.combine(week, dt.time()) < split.cutoff:
        raise ValueError(f"week {week} starts before the cutoff {split.cutoff}")
    root = root or private_warehouse()
    run_cfg = cfg.replace(**{"storage.mode": "path", "storage.warehouse": os.path.join(root, "warehouse"),
                             "storage.model_dir": os.path.join(root, "models")}, **dict(overrides or {}))
    tables = Tables.from_config(spark, run_cfg.storage)
    if coverage is None:
        coverage = materialise(spark, dataset, split, tables)
    warm = [dict(w, stage_log=stage_log(tables, w["run_id"])) for w in warm_up(spark, run_cfg, week, tables)] \
        if steady_state else []
    res = run_weekly(spark, run_cfg, week, tables=tables)
    return {"tables": tables, "cfg": run_cfg, "result": res, "coverage": coverage,
            "stage_log": stage_log(tables, res.run_id), "root": root, "warm_up": warm}


def playlists_as_recs(tables, week: dt.date, users: Optional[DataFrame] = None) -> DataFrame:
    """``user_id, track_id, score, rank`` from ``discover_weekly`` of ``week`` (rank = position)."""
    dw = tables.read("discover_weekly").where(F.col("week_start") == F.lit(week))
    if users is not None:
        dw = dw.join(users.select("user_id"), "user_id", "left_semi")
    return dw.select("user_id", "track_id", F.col("score").cast("double"), F.col("position").cast("int").alias("rank"))


def weekly_method(spark, train, users, k, context: MethodContext) -> StagedResult:
    """The ``pipeline`` method: the weekly job's playlists for the test users (module doc).

    ``context.cfg`` is the configuration (``None``: ``load_config()``, base + default overlay);
    ``context.params['pipeline']`` may hold dotted config overrides (recorded in the entry).
    """
    from recsys_spark.config import load_config

    cfg = context.cfg if context.cfg is not None else load_config()
    overrides = context.method_params("pipeline")
    week = context.week
    run = run_weekly_path(spark, cfg, context.dataset, context.split, week, overrides=overrides,
                          steady_state=context.steady_state)
    tables = run["tables"]
    final = playlists_as_recs(tables, week, users)
    rc = tables.read("recall_candidates").where(F.col("week_start") == F.lit(week))
    channels = [(f"recall.{r['channel']}", rc.where(F.col("channel") == r["channel"]))
                for r in rc.select("channel").distinct().orderBy("channel").collect()]  # <= 5 rows
    ranked = tables.read("candidates").where(F.col("week_start") == F.lit(week))
    entry = {"path": "weekly", "week": week.isoformat(), "run_id": run["result"].run_id,
             "config_fingerprint": run["cfg"].fingerprint(), "overrides": dict(overrides),
             "playlist_size": run["cfg"].rerank.playlist_size,
             "data_coverage": run["coverage"], "stage_log": run["stage_log"],
             "steady_state": context.steady_state, "warm_up": run["warm_up"], "warehouse": tables.warehouse}
    if run["cfg"].rerank.playlist_size < k:
        entry["note"] = f"playlists hold {run['cfg'].rerank.playlist_size} tracks < k={k}"
    return StagedResult(final=final, channels=channels, stages=[("ranked candidates (rank stage)", ranked)],
                        entry=entry)
