"""Incremental embedding stages: CLAP audio of tracks, CLAP text of prompts, Audiobox Aesthetics
scores of tracks' audio.

Only rows without an embedding for the current ``model_version`` are embedded (a left anti join
against the existing table before any model is loaded); when nothing is new the stage returns
empty DataFrames without starting a Spark job on the model. Bad audio becomes quarantine rows
(``entity = "audio"``) and gets no embedding; it is retried on the next run (and re-quarantined
idempotently: the quarantine key is the record hash).

Public API (the pipeline calls :func:`run_embedding_stage`; the two stage functions are the
building blocks)::

    embed_tracks(spark, tracks, existing, spec, batch_size=16, run_id=None, now=None)
        -> (track_embeddings_df, quarantine_df)
    embed_prompts(spark, user_prompts, tracks, existing, spec, batch_size=64, run_id=None, now=None)
        -> (prompt_embeddings_df, quarantine_df)
    score_aesthetics(spark, tracks, existing, aesthetics_spec, batch_size=8, run_id=None, now=None)
        -> (track_aesthetics_df, quarantine_df)
    run_embedding_stage(spark, tables, spec, batch_size=16, run_id=None, aesthetics=None) -> dict of counts
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from typing import Dict, Optional, Tuple

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from .. import tables as tbl
from .aesthetics import AXES, AestheticsSpec
from .clap import EncoderSpec, text_tower_usable
from .spark_udfs import (AESTHETICS_RESULT_SCHEMA, AUDIO_RESULT_SCHEMA, TEXT_RESULT_SCHEMA, aesthetics_fn,
                         audio_embed_fn, text_embed_fn)

log = logging.getLogger(__name__)

USER_PROMPT = "user_prompt"
TRACK_PROMPT = "track_prompt"


def _now(now: Optional[dt.datetime]) -> dt.datetime:
    return (now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)).replace(microsecond=0)


def _empty(spark: SparkSession, spec: tbl.TableSpec) -> DataFrame:
    return spark.createDataFrame([], spec.schema)


def _partitions(spark: SparkSession, n_rows: int, batch_size: int) -> int:
    """Enough partitions to keep every core busy: one batch each up to 4 per core, and at least 2 per
    core (when there are that many rows) so that the scheduler evens out what hashing by key and
    unequal rows (a 4-minute song is 6 audio windows, a clip 1) leave uneven."""
    from ..spark import default_parallelism  # no SparkContext over Spark Connect

    par = default_parallelism(spark)
    return max(1, min(par * 4, math.ceil(n_rows / max(1, batch_size))), min(n_rows, 2 * par))


def spread(df: DataFrame, n: int, key: str) -> DataFrame:
    """``df`` in ``n`` partitions by a hash of ``key``, for a model UDF to run on every core.

    Not ``repartition(n, key)``: after a join on ``key`` (the anti join against the rows already
    embedded) Spark sees that partitioning as already satisfied, drops the repartition, and AQE then
    coalesces the join's small shuffle into ONE partition, so the whole model stage ran in one task
    on one core. Partitioning by an expression of the key is a shuffle of its own, which AQE keeps.
    """
    return df.repartition(int(n), F.xxhash64(F.col(key)))


def quarantine_frame(bad: DataFrame, source: DataFrame | str, entity: str, raw_col: str, reason_col: str,
                     run_id: Optional[str], now: dt.datetime) -> DataFrame:
    """Rows shaped like ``tables.QUARANTINE`` (record_hash = sha2(entity, raw, reason))."""
    src = F.lit(source) if isinstance(source, str) else source
    return bad.select(
        src.alias("source"),
        F.lit(entity).alias("entity"),
        F.col(raw_col).alias("raw_record"),
        F.col(reason_col).alias("reason"),
        F.sha2(F.concat_ws("\u0001", F.lit(entity), F.col(raw_col), F.col(reason_col)), 256).alias("record_hash"),
        F.lit(run_id).cast("string").alias("run_id"),
        F.lit(now).cast("timestamp").alias("ingested_at"),
        F.lit(now.date()).cast("date").alias("ingest_date"),
    ).dropDuplicates(["record_hash"])


def embed_tracks(
    spark: SparkSession,
    tracks: DataFrame,
    existing: Optional[DataFrame],
    spec: EncoderSpec,
    batch_size: int = 16,
    run_id: Optional[str] = None,
    now: Optional[dt.datetime] = None,
) -> Tuple[DataFrame, DataFrame]:
    """CLAP audio embeddings of the tracks that have none for ``spec``'s model version.

    Parameters
    ----------
    spark : SparkSession
    tracks : DataFrame
        At least ``track_id, audio_uri``; rows with a null/blank ``audio_uri`` have no audio and are
        skipped (counted in the log, not quarantined).
    existing : DataFrame or None
        The current ``track_embeddings`` table (``track_id, model_version``).
    spec : EncoderSpec
    batch_size : int
        Tracks per model batch (and windows per forward pass).
    run_id : str, optional
        Recorded on quarantine rows.
    now : datetime, optional
        ``created_at`` / ``ingested_at`` (UTC); defaults to the current time.

    Returns
    -------
    (DataFrame, DataFrame)
        New rows for ``track_embeddings`` (``track_id, model_version, embedding array<float>(512),
        n_windows int, created_at timestamp``) and for ``quarantine`` (``entity = "audio"``,
        ``reason`` one of the :mod:`~recsys_spark.embeddings.audio` reason codes, ``raw_record`` a
        JSON of ``track_id, audio_uri, error_detail``). Both are materialised once (the model runs
        once per track, whichever of them is read first).
    """
    t0 = time.perf_counter()
    now = _now(now)
    version = spec.resolved_model_version()
    todo, n_todo = _audio_todo(tracks, existing, version)
    if n_todo == 0:
        log.info("embed_tracks: nothing new for %s (0 tracks embedded)", version)
        return _empty(spark, tbl.TRACK_EMBEDDINGS), _empty(spark, tbl.QUARANTINE)
    todo = spread(todo, _partitions(spark, n_todo, batch_size), "track_id")
    result = todo.mapInPandas(audio_embed_fn(spec, batch_size), AUDIO_RESULT_SCHEMA).localCheckpoint(eager=True)
    good = result.where(F.col("error").isNull())
    emb = good.select("track_id", F.lit(version).alias("model_version"), "embedding", "n_windows",
                      F.lit(now).cast("timestamp").alias("created_at"))
    quarantine = _audio_quarantine(result, "embed_tracks", version, n_todo, run_id, now, t0)
    return emb, quarantine


def _audio_todo(tracks: DataFrame, existing: Optional[DataFrame], version: str) -> Tuple[DataFrame, int]:
    """``track_id, audio_uri`` of the tracks with audio and no row of ``version`` in ``existing``,
    and how many there are."""
    todo = (tracks.select("track_id", F.trim(F.col("audio_uri")).alias("audio_uri"))
            .where(F.col("audio_uri").isNotNull() & (F.col("audio_uri") != ""))
            .dropDuplicates(["track_id"]))
    if existing is not None:
        done = existing.where(F.col("model_version") == version).select("track_id").distinct()
        todo = todo.join(done, "track_id", "left_anti")
    return todo, todo.count()


def _audio_quarantine(result: DataFrame, what: str, version: str, n_todo: int, run_id: Optional[str],
                      now: dt.datetime, t0: float) -> DataFrame:
    """Quarantine rows (``entity = "audio"``) of a model stage's failed rows, logged with the counts.
    The record hash is the same whichever audio model met the bad file, so it is quarantined once."""
    bad = result.where(F.col("error").isNotNull()).withColumn(
        "_raw", F.to_json(F.struct("track_id", "audio_uri", "error_detail")))
    quarantine = quarantine_frame(bad, F.concat(F.lit("audio:"), F.col("audio_uri")), "audio", "_raw", "error",
                                  run_id, now)
    n_bad = bad.count()
    reasons = {r["error"]: r["count"] for r in bad.groupBy("error").count().collect()} if n_bad else {}
    log.info("%s %s: %d tracks to do, %d done, %d quarantined %s (%.1fs)",
             what, version, n_todo, n_todo - n_bad, n_bad, reasons, time.perf_counter() - t0)
    return quarantine


def score_aesthetics(
    spark: SparkSession,
    tracks: DataFrame,
    existing: Optional[DataFrame],
    spec: AestheticsSpec,
    batch_size: int = 8,
    run_id: Optional[str] = None,
    now: Optional[dt.datetime] = None,
) -> Tuple[DataFrame, DataFrame]:
    """Audiobox Aesthetics scores of the tracks that have none for ``spec``'s model version.

    Parameters
    ----------
    tracks : DataFrame
        At least ``track_id, audio_uri`` (rows without audio are skipped).
    existing : DataFrame or None
        The current ``track_aesthetics`` table (``track_id, model_version``).
    spec : AestheticsSpec
    batch_size : int
        Tracks per task batch and 10 s windows per forward pass.
    run_id, now
        As in :func:`embed_tracks`.

    Returns
    -------
    (DataFrame, DataFrame)
        New ``track_aesthetics`` rows (``track_id, model_version, ce, cu, pc, pq, n_windows,
        created_at``) and quarantine rows for bad audio (as :func:`embed_tracks` gives them).
    """
    t0 = time.perf_counter()
    now = _now(now)
    version = spec.resolved_model_version()
    todo, n_todo = _audio_todo(tracks, existing, version)
    if n_todo == 0:
        log.info("score_aesthetics: nothing new for %s (0 tracks scored)", version)
        return _empty(spark, tbl.TRACK_AESTHETICS), _empty(spark, tbl.QUARANTINE)
    todo = spread(todo, _partitions(spark, n_todo, batch_size), "track_id")
    result = todo.mapInPandas(aesthetics_fn(spec, batch_size), AESTHETICS_RESULT_SCHEMA).localCheckpoint(eager=True)
    good = result.where(F.col("error").isNull())
    rows = good.select("track_id", F.lit(version).alias("model_version"),
                       *[F.col("scores")[i].alias(a.lower()) for i, a in enumerate(AXES)],
                       "n_windows", F.lit(now).cast("timestamp").alias("created_at"))
    quarantine = _audio_quarantine(result, "score_aesthetics", version, n_todo, run_id, now, t0)
    return rows, quarantine


def embed_prompts(
    spark: SparkSession,
    user_prompts: Optional[DataFrame],
    tracks: Optional[DataFrame],
    existing: Optional[DataFrame],
    spec: EncoderSpec,
    batch_size: int = 64,
    run_id: Optional[str] = None,
    now: Optional[dt.datetime] = None,
) -> Tuple[DataFrame, DataFrame]:
    """CLAP text embeddings of users' prompts and of tracks' own prompt text, incrementally.

    Parameters
    ----------
    user_prompts : DataFrame or None
        ``prompt_id, user_id, prompt_text`` -> rows of kind ``user_prompt`` (id = prompt_id).
    tracks : DataFrame or None
        ``track_id, prompt`` -> rows of kind ``track_prompt`` (id = track_id, user_id null).
    existing : DataFrame or None
        The current ``prompt_embeddings`` table (``id, kind, model_version``).
    spec, batch_size, run_id, now
        As in :func:`embed_tracks`.

    Returns
    -------
    (DataFrame, DataFrame)
        New ``prompt_embeddings`` rows (``id, kind, user_id, model_version, embedding, created_at``)
        and quarantine rows (``entity = "prompt_text"``) for texts whose embedding is unusable.
        Blank texts are skipped. When the text tower cannot be used (a pretrained roberta branch
        without tokenizer files) both are empty and the reason is logged.
    """
    t0 = time.perf_counter()
    now = _now(now)
    version = spec.resolved_model_version()
    ok, why = text_tower_usable(spec)
    if not ok:
        log.warning("embed_prompts skipped: %s", why)
        return _empty(spark, tbl.PROMPT_EMBEDDINGS), _empty(spark, tbl.QUARANTINE)
    parts = []
    if user_prompts is not None:
        parts.append(user_prompts.select(F.col("prompt_id").cast("string").alias("id"), F.lit(USER_PROMPT).alias("kind"),
                                         F.col("user_id").cast("string").alias("user_id"),
                                         F.col("prompt_text").alias("text")))
    if tracks is not None:
        parts.append(tracks.select(F.col("track_id").cast("string").alias("id"), F.lit(TRACK_PROMPT).alias("kind"),
                                   F.lit(None).cast("string").alias("user_id"), F.col("prompt").alias("text")))
    if not parts:
        return _empty(spark, tbl.PROMPT_EMBEDDINGS), _empty(spark, tbl.QUARANTINE)
    todo = parts[0]
    for p in parts[1:]:
        todo = todo.unionByName(p)
    todo = todo.where(F.col("text").isNotNull() & (F.trim(F.col("text")) != "")).dropDuplicates(["id", "kind"])
    if existing is not None:
        done = existing.where(F.col("model_version") == version).select("id", "kind").distinct()
        todo = todo.join(done, ["id", "kind"], "left_anti")
    n_todo = todo.count()
    if n_todo == 0:
        log.info("embed_prompts: nothing new for %s (0 texts embedded)", version)
        return _empty(spark, tbl.PROMPT_EMBEDDINGS), _empty(spark, tbl.QUARANTINE)
    # the key travels as one string so the text function stays generic
    keyed = todo.select(F.to_json(F.struct("id", "kind", "user_id")).alias("id"), "text")
    # partitioned by text: repeated texts meet in one task, which embeds each distinct text once
    keyed = spread(keyed, _partitions(spark, n_todo, batch_size), "text")
    result = keyed.mapInPandas(text_embed_fn(spec, batch_size), TEXT_RESULT_SCHEMA).localCheckpoint(eager=True)
    key = F.from_json("id", "id string, kind string, user_id string")
    result = result.withColumn("_k", key)
    emb = result.where(F.col("error").isNull()).select(
        F.col("_k.id").alias("id"), F.col("_k.kind").alias("kind"), F.col("_k.user_id").alias("user_id"),
        F.lit(version).alias("model_version"), "embedding", F.lit(now).cast("timestamp").alias("created_at"))
    bad = result.where(F.col("error").isNotNull())
    quarantine = quarantine_frame(bad, "prompt_embeddings", "prompt_text", "id", "error", run_id, now)
    n_bad = bad.count()
    log.info("embed_prompts %s: %d texts to embed, %d embedded, %d quarantined (%.1fs)",
             version, n_todo, n_todo - n_bad, n_bad, time.perf_counter() - t0)
    return emb, quarantine


def run_embedding_stage(spark: SparkSession, tables, spec: EncoderSpec, batch_size: int = 16,
                        text_batch_size: int = 64, run_id: Optional[str] = None,
                        now: Optional[dt.datetime] = None,
                        as_of: Optional[dt.datetime] = None,
                        track_prompts: bool = True,
                        aesthetics: Optional[AestheticsSpec] = None,
                        aesthetics_batch_size: int = 8) -> Dict[str, float]:
    """Embed new tracks and prompts and write them (idempotent MERGEs), quarantining bad audio;
    with ``aesthetics``, also score new tracks' audio into ``track_aesthetics``.

    Parameters
    ----------
    tables : recsys_spark.tables.Tables
        Reads ``tracks``, ``user_prompts``, ``track_embeddings``, ``prompt_embeddings``; writes the
        two embedding tables (insert-new on their keys) and ``quarantine`` (insert-new on
        ``record_hash``).
    as_of : datetime, optional
        Embed only tracks and prompts created before this instant (the weekly run passes the
        Monday it builds, so a rerun of an old week does not embed the future). Rows without
        ``created_at`` are always included.
    track_prompts : bool
        Also embed the tracks' own prompt text (needed only by the prompt channel's
        ``track_prompt`` target; with the ``audio`` target it is half the text work for nothing).
    aesthetics : AestheticsSpec, optional
        Score the tracks that have no ``track_aesthetics`` row for its model version (same audio
        files, same ``as_of``; a bad file is quarantined once whichever model met it).
    aesthetics_batch_size : int

    Returns
    -------
    dict
        ``model_version`` is logged; counts ``tracks_embedded``, ``audio_quarantined``,
        ``texts_embedded``, ``text_quarantined`` and ``untrained`` (1.0 when no checkpoint); with
        ``aesthetics`` also ``tracks_aesthetics_scored``, ``aesthetics_quarantined``,
        ``aesthetics_seconds`` and ``aesthetics_untrained``.
    """
    version = spec.resolved_model_version()
    tracks = tables.read("tracks")
    prompts = tables.read("user_prompts")
    if as_of is not None:
        tracks = tracks.where(F.col("created_at").isNull() | (F.col("created_at") < F.lit(as_of)))
        prompts = prompts.where(F.col("created_at").isNull() | (F.col("created_at") < F.lit(as_of)))
    emb, q = embed_tracks(spark, tracks, tables.read("track_embeddings"), spec, batch_size, run_id, now)
    counts: Dict[str, float] = {"untrained": 0.0 if spec.has_checkpoint else 1.0}
    counts["tracks_embedded"] = float(emb.count())
    counts["audio_quarantined"] = float(q.count())
    if counts["tracks_embedded"]:
        tables.merge_insert_new("track_embeddings", emb, ["track_id", "model_version"])
    if counts["audio_quarantined"]:
        tables.merge_insert_new("quarantine", q, ["record_hash"])
    pemb, pq = embed_prompts(spark, prompts, tracks if track_prompts else None, tables.read("prompt_embeddings"), spec,
                             text_batch_size, run_id, now)
    counts["texts_embedded"] = float(pemb.count())
    counts["text_quarantined"] = float(pq.count())
    if counts["texts_embedded"]:
        tables.merge_insert_new("prompt_embeddings", pemb, ["id", "kind", "model_version"])
    if counts["text_quarantined"]:
        tables.merge_insert_new("quarantine", pq, ["record_hash"])
    if aesthetics is not None:
        t0 = time.perf_counter()
        rows, aq = score_aesthetics(spark, tracks, tables.read("track_aesthetics"), aesthetics, aesthetics_batch_size,
                                    run_id, now)
        counts["aesthetics_untrained"] = 0.0 if aesthetics.has_checkpoint else 1.0
        counts["tracks_aesthetics_scored"] = float(rows.count())
        counts["aesthetics_quarantined"] = float(aq.count())
        if counts["tracks_aesthetics_scored"]:
            tables.merge_insert_new("track_aesthetics", rows, ["track_id", "model_version"])
        if counts["aesthetics_quarantined"]:
            tables.merge_insert_new("quarantine", aq, ["record_hash"])
        counts["aesthetics_seconds"] = round(time.perf_counter() - t0, 2)
    log.info("embedding stage %s: %s", version, counts)
    return counts
