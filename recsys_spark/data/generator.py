"""Synthetic AI-music platform, generated in Spark (scales to 1M users / 100K tracks / 100M events).

What it models
--------------
- **Styles** (``vocab.STYLES``): tags, prompt phrasing, and sound parameters; styles differ in
  popularity.
- **Creators** are users; each has a primary style and a popularity; popular creators make more
  tracks. Tracks mostly follow their creator's style.
- **Tracks**: title, Suno-like prompt and tags from the style vocabulary, heavy-tailed
  plays/upvotes/comments driven by a latent popularity and quality (some tracks are poorly
  received: low upvote ratio), creation dates spread before and during the simulated weeks.
- **Users** have a taste mixture over 1-3 styles that drifts towards the second style over the
  weeks, an activity level (log-normal), weeks without activity, and a personal "niche" inside
  each style (a neighbourhood of creators they keep coming back to): this is the co-listening
  structure collaborative filtering can learn beyond style and popularity.
- **Events** pick a style from the user's (drifted) taste, then a track either by popularity
  (Zipf over the style's tracks) or from the user's niche; events before a track exists are dropped.
- **Prompts**: a share of users write generation prompts from their own taste; a few brand-new
  users have prompts but no listening history.
- **Audio**: WAV files for every track (``audio_tracks: -1``; or the first N) whose pitch, timbre,
  tempo and noise depend on the style (``audio_synth.py``), synthesised and written by Spark tasks.

Randomness is hash-based (``xxhash64(seed, salt, id)``), so output is identical for the same seed
whatever the partitioning. Nothing per user or per event touches the driver; only the 18-row style
table and a bounded sample of deliberately bad rows are built locally.

Output: raw files (what a platform export looks like) under ``out_dir``:
``tracks/*.json`` (JSON lines), ``interactions/*.csv`` (header, ISO timestamps, weight empty for
non-play events), ``user_prompts/*.parquet``, ``audio/<2 hex>/<track_id>.wav`` (hash-prefixed keys, as in a
bucket; ``bad_audio_rate`` of them cut, silent, at an impossible rate or not audio at all), plus ``bad-*`` files with
malformed rows when ``bad_row_rate > 0``; ingestion (``ingest.py``) loads them into Delta.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import os
import time
from typing import Dict, Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..artifacts import is_local, scheme
from ..config import GeneratorConf
from ..validation import InputError
from . import vocab

log = logging.getLogger(__name__)

N_STYLES = len(vocab.STYLES)


class PlatformSpec(GeneratorConf):
    """Size and shape of the synthetic platform: :class:`recsys_spark.config.GeneratorConf` itself
    (same fields, defaults and validation), with :meth:`from_conf` for a loaded config section."""

    @classmethod
    def from_conf(cls, conf: GeneratorConf) -> "PlatformSpec":
        return cls(**{f.name: getattr(conf, f.name) for f in dataclasses.fields(GeneratorConf)})


# ------------------------------------------------------------------------------------------------
# deterministic hash-based random numbers
# ------------------------------------------------------------------------------------------------


def _u(seed: int, salt: str, *cols) -> F.Column:
    """Uniform in [0, 1) from a hash of (seed, salt, cols): independent of partitioning."""
    h = F.xxhash64(F.lit(seed), F.lit(salt), *cols)
    return F.pmod(h, F.lit(1 << 40)).cast("double") / float(1 << 40)


def _normal(seed: int, salt: str, *cols) -> F.Column:
    u1 = F.greatest(_u(seed, salt + "/a", *cols), F.lit(1e-12))
    u2 = _u(seed, salt + "/b", *cols)
    return F.sqrt(-2.0 * F.log(u1)) * F.cos(2.0 * math.pi * u2)


def user_id_col(idx: F.Column) -> F.Column:
    return F.format_string("u%07d", idx)


def track_id_col(idx: F.Column) -> F.Column:
    return F.format_string("t%07d", idx)


def _style_table(spark: SparkSession) -> DataFrame:
    pops = np.array([s.popularity for s in vocab.STYLES])
    cum = np.cumsum(pops / pops.sum())
    rows = [(i, s.name, s.genre, float(cum[i] - pops[i] / pops.sum()), float(cum[i]))
            for i, s in enumerate(vocab.STYLES)]
    return spark.createDataFrame(rows, "style_idx int, style string, genre string, cum_lo double, cum_hi double")


def _pick_style(styles: DataFrame, df: DataFrame, u: F.Column, out: str) -> DataFrame:
    """Pick a style index by popularity from a uniform column (range join on a broadcast 18-row table)."""
    s = F.broadcast(styles.select(F.col("style_idx").alias(out), "cum_lo", "cum_hi"))
    tmp = df.withColumn("_u_style", u)
    return (tmp.join(s, (tmp["_u_style"] >= s["cum_lo"]) & (tmp["_u_style"] < s["cum_hi"]), "left")
            .withColumn(out, F.coalesce(F.col(out), F.lit(N_STYLES - 1)))
            .drop("_u_style", "cum_lo", "cum_hi"))


# ------------------------------------------------------------------------------------------------
# entities
# ------------------------------------------------------------------------------------------------


def creators_df(spark: SparkSession, spec: PlatformSpec, styles: DataFrame) -> DataFrame:
    """``creator_idx, creator_id, creator_style, creator_pop``; creators are users."""
    stride = max(1, spec.n_users // max(spec.n_creators, 1))
    df = spark.range(spec.n_creators, numPartitions=spec.partitions).withColumnRenamed("id", "creator_idx")
    df = df.withColumn("creator_id", user_id_col((F.col("creator_idx") * stride) % spec.n_users))
    df = _pick_style(styles, df, _u(spec.seed, "creator_style", F.col("creator_idx")), "creator_style")
    return df.withColumn("creator_pop", F.exp(0.8 * _normal(spec.seed, "creator_pop", F.col("creator_idx"))))


def tracks_hidden_df(spark: SparkSession, spec: PlatformSpec, end: dt.date) -> DataFrame:
    """All track attributes including hidden ones (style, popularity ranks) used to draw events."""
    styles = _style_table(spark)
    creators = creators_df(spark, spec, styles)
    seed = spec.seed
    start = dt.datetime.combine(end, dt.time()) - dt.timedelta(weeks=spec.n_weeks)
    start_s = int(start.replace(tzinfo=dt.timezone.utc).timestamp())
    t = spark.range(spec.n_tracks, numPartitions=spec.partitions).withColumnRenamed("id", "track_idx")
    # popular creators make more tracks: creator index drawn with a power law
    t = t.withColumn("creator_idx", F.floor(F.pow(_u(seed, "trk_creator", F.col("track_idx")), 1.6)
                                            * spec.n_creators).cast("long"))
    t = t.join(F.broadcast(creators) if spec.n_creators <= 200_000 else creators, "creator_idx")
    own_style = _u(seed, "trk_own_style", F.col("track_idx")) < 0.85
    t = _pick_style(styles, t, _u(seed, "trk_style", F.col("track_idx")), "other_style")
    t = t.withColumn("style_idx", F.when(own_style, F.col("creator_style")).otherwise(F.col("other_style")))
    # 70% of the catalog exists before the simulated window (up to a year), 30% appears during it
    before = _u(seed, "trk_before", F.col("track_idx")) < 0.7
    age_s = F.when(before, -(_u(seed, "trk_age", F.col("track_idx")) * 365 * 86400) - 3600) \
        .otherwise(_u(seed, "trk_age", F.col("track_idx")) * spec.n_weeks * 7 * 86400)
    t = t.withColumn("created_s", (F.lit(start_s) + age_s).cast("long"))
    quality = F.pow(_u(seed, "trk_quality", F.col("track_idx")), 0.6)  # skewed to good
    t = t.withColumn("quality", quality)
    t = t.withColumn("pop", F.col("creator_pop") * F.exp(1.0 * _normal(seed, "trk_pop", F.col("track_idx")))
                     * (0.3 + F.col("quality")))
    w_pop = Window.partitionBy("style_idx").orderBy(F.col("pop").desc(), F.col("track_idx"))
    w_cat = Window.partitionBy("style_idx").orderBy(F.col("creator_idx"), F.col("track_idx"))
    t = (t.withColumn("pop_rank", F.row_number().over(w_pop) - 1)
         .withColumn("cat_rank", F.row_number().over(w_cat) - 1))
    plays = F.floor(F.col("pop") * 150 * F.exp(0.7 * _normal(seed, "trk_plays", F.col("track_idx"))))
    t = t.withColumn("play_count", plays.cast("long"))
    up_rate = 0.02 + 0.18 * F.pow(F.col("quality"), 2.0)
    t = t.withColumn("upvote_count", F.floor(F.col("play_count") * up_rate
                                             * (0.5 + _u(seed, "trk_up", F.col("track_idx")))).cast("long"))
    t = t.withColumn("comment_count", F.floor(F.col("upvote_count") * 0.08
                                              * (0.5 + _u(seed, "trk_cm", F.col("track_idx")))).cast("long"))
    t = t.withColumn("duration_s", F.round(60 + 180 * _u(seed, "trk_dur", F.col("track_idx")), 1))
    t = t.withColumn("track_id", track_id_col(F.col("track_idx")))
    return t.join(F.broadcast(styles.select("style_idx", "genre")), "style_idx")


def _track_text(spec_seed: int):
    styles = vocab.STYLES

    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            titles, prompts, tags = [], [], []
            for idx, sidx in zip(pdf["track_idx"].to_numpy(), pdf["style_idx"].to_numpy()):
                rng = np.random.default_rng([spec_seed, 1, int(idx)])
                titles.append(f"{vocab.TITLE_ADJ[rng.integers(len(vocab.TITLE_ADJ))]} "
                              f"{vocab.TITLE_NOUN[rng.integers(len(vocab.TITLE_NOUN))]}")
                p, tg = style_prompt(styles[int(sidx)], rng)
                prompts.append(p)
                tags.append(", ".join(dict.fromkeys(tg)))
            yield pd.DataFrame({"track_idx": pdf["track_idx"], "title": titles, "prompt": prompts,
                                "tags": tags})

    return fn


def style_prompt(style: vocab.Style, rng: np.random.Generator):
    """A Suno-like prompt and tag list for a style."""
    tags = list(rng.choice(style.tags, size=min(3, len(style.tags)), replace=False))
    inst = list(rng.choice(style.instruments, size=2, replace=False))
    qual = vocab.QUALIFIERS[rng.integers(len(vocab.QUALIFIERS))]
    mood = style.moods[rng.integers(len(style.moods))]
    vocal = style.vocals[rng.integers(len(style.vocals))]
    bpm = int(rng.integers(style.bpm[0], style.bpm[1] + 1))
    tmpl = vocab.PROMPT_TEMPLATES[rng.integers(len(vocab.PROMPT_TEMPLATES))]
    text = tmpl.format(mood=mood, tag0=tags[0], tag1=tags[1], inst0=inst[0], inst1=inst[1],
                       vocal=vocal, bpm=bpm, qual=qual, topic=vocab.TOPICS[rng.integers(len(vocab.TOPICS))])
    all_tags = tags + [mood, vocal if vocal != "instrumental" else "instrumental"]
    if rng.random() < 0.3:
        all_tags.append(qual)
    return text, all_tags


def users_df(spark: SparkSession, spec: PlatformSpec) -> DataFrame:
    """Hidden user attributes: taste mixture (3 styles), drift, activity, niches, join week."""
    seed = spec.seed
    styles = _style_table(spark)
    u = spark.range(spec.n_users, numPartitions=spec.partitions).withColumnRenamed("id", "user_idx")
    u = _pick_style(styles, u, _u(seed, "usr_s1", F.col("user_idx")), "s1")
    u = u.withColumn("s2", F.pmod(F.col("s1") + 1 + F.floor(_u(seed, "usr_s2", F.col("user_idx")) * (N_STYLES - 1)),
                                  F.lit(N_STYLES)).cast("int"))
    u = u.withColumn("s3", F.floor(_u(seed, "usr_s3", F.col("user_idx")) * N_STYLES).cast("int"))
    u = u.withColumn("w1", 0.55 + 0.35 * _u(seed, "usr_w1", F.col("user_idx")))
    u = u.withColumn("w2", (1 - F.col("w1")) * 0.7)
    u = u.withColumn("drift", 0.3 * _u(seed, "usr_drift", F.col("user_idx")))
    u = u.withColumn("activity", spec.events_per_user_week
                     * F.exp(0.8 * _normal(seed, "usr_act", F.col("user_idx")) - 0.32))
    # 85% of users are there from the start; others join during the window
    joined = F.when(_u(seed, "usr_join", F.col("user_idx")) < 0.85, F.lit(0)) \
        .otherwise(F.floor(_u(seed, "usr_joinw", F.col("user_idx")) * spec.n_weeks))
    u = u.withColumn("join_week", joined.cast("int"))
    u = u.withColumn("niche_u", _u(seed, "usr_niche", F.col("user_idx")))
    u = u.withColumn("niche_share", 0.25 + 0.35 * _u(seed, "usr_nshare", F.col("user_idx")))
    return u.withColumn("user_id", user_id_col(F.col("user_idx")))


def interactions_df(spark: SparkSession, spec: PlatformSpec, end: dt.date,
                    tracks_hidden: DataFrame, users: DataFrame) -> DataFrame:
    """Events of every user over ``spec.n_weeks`` weeks ending at ``end`` (exclusive)."""
    seed = spec.seed
    start = dt.datetime.combine(end, dt.time()) - dt.timedelta(weeks=spec.n_weeks)
    start_s = int(start.replace(tzinfo=dt.timezone.utc).timestamp())
    # style sizes: 18 numbers, fine on the driver
    counts = {int(r["style_idx"]): int(r["n"]) for r in
              tracks_hidden.groupBy("style_idx").agg(F.count("*").alias("n")).collect()}
    size_map = F.create_map(*[x for k, v in sorted(counts.items()) for x in (F.lit(k), F.lit(v))])

    uw = users.crossJoin(F.broadcast(spark.range(spec.n_weeks).withColumnRenamed("id", "week_idx")))
    uw = uw.where(F.col("week_idx") >= F.col("join_week"))
    active = _u(seed, "wk_active", F.col("user_idx"), F.col("week_idx")) < 0.75
    n_ev = F.floor(F.col("activity") * (0.4 + 1.2 * _u(seed, "wk_n", F.col("user_idx"), F.col("week_idx"))))
    uw = uw.withColumn("n_events", F.when(active, n_ev).otherwise(F.lit(0)).cast("int"))
    uw = uw.where(F.col("n_events") > 0)
    ev = uw.withColumn("ev", F.explode(F.sequence(F.lit(1), F.col("n_events"))))
    key = (F.col("user_idx"), F.col("week_idx"), F.col("ev"))
    # taste drift: weight moves from s1 to s2 over the weeks
    frac = F.col("week_idx") / max(spec.n_weeks - 1, 1)
    w1 = F.col("w1") - F.col("drift") * frac
    w2 = F.col("w2") + F.col("drift") * frac
    us = _u(seed, "ev_style", *key)
    explore = _u(seed, "ev_explore", *key) < 0.05
    style = (F.when(explore, F.floor(_u(seed, "ev_rand_style", *key) * N_STYLES))
             .when(us < w1, F.col("s1")).when(us < w1 + w2, F.col("s2")).otherwise(F.col("s3")))
    ev = ev.withColumn("style_idx", style.cast("int"))
    n_s = F.element_at(size_map, F.col("style_idx"))
    niche = _u(seed, "ev_niche", *key) < F.col("niche_share")
    anchor = F.floor(F.col("niche_u") * n_s + F.col("style_idx") * 7919) % n_s
    offset = F.floor((_u(seed, "ev_off", *key) - 0.5) * F.least(F.lit(40.0), n_s * 0.1 + 2))
    pop_rank = F.floor(F.pow(_u(seed, "ev_pop", *key), 2.2) * n_s)
    ev = ev.withColumn("mode", F.when(niche, F.lit(1)).otherwise(F.lit(0)))
    ev = ev.withColumn("key", F.when(niche, F.pmod(anchor + offset, n_s)).otherwise(pop_rank).cast("long"))
    ev = ev.withColumn("event_s", F.lit(start_s) + F.col("week_idx") * 7 * 86400
                       + F.floor(_u(seed, "ev_ts", *key) * 7 * 86400))
    te = _u(seed, "ev_type", *key)
    ev = ev.withColumn("event_type", F.when(te < 0.70, "play").when(te < 0.78, "complete")
                       .when(te < 0.84, "upvote").when(te < 0.86, "comment").when(te < 0.875, "share")
                       .when(te < 0.885, "download").when(te < 0.89, "remix").otherwise("skip"))
    ev = ev.withColumn("weight", F.when(F.col("event_type") == "play",
                                        (1 + F.floor(_u(seed, "ev_w", *key) * 3)).cast("double")))
    lookup = tracks_hidden.select("style_idx", F.lit(0).alias("mode"), F.col("pop_rank").alias("key"),
                                  "track_id", "created_s").unionByName(
        tracks_hidden.select("style_idx", F.lit(1).alias("mode"), F.col("cat_rank").alias("key"),
                             "track_id", "created_s"))
    lk = F.broadcast(lookup) if spec.n_tracks <= 300_000 else lookup
    ev = ev.join(lk, ["style_idx", "mode", "key"]).where(F.col("event_s") >= F.col("created_s"))
    return ev.select(
        "user_id", "track_id",
        F.date_format(F.timestamp_seconds(F.col("event_s")), "yyyy-MM-dd'T'HH:mm:ss'Z'").alias("event_ts"),
        "event_type", "weight",
    )


def prompts_df(spark: SparkSession, spec: PlatformSpec, end: dt.date, users: DataFrame) -> DataFrame:
    """User prompts: writers draw from their own taste (s1 mostly, s2 sometimes)."""
    seed = spec.seed
    start = dt.datetime.combine(end, dt.time()) - dt.timedelta(weeks=spec.n_weeks)
    start_s = int(start.replace(tzinfo=dt.timezone.utc).timestamp())
    writers = users.where(_u(seed, "pr_writer", F.col("user_idx")) < spec.prompt_user_share)
    writers = writers.withColumn("n_prompts", (1 + F.floor(_u(seed, "pr_n", F.col("user_idx")) * 6)).cast("int"))
    p = writers.withColumn("p", F.explode(F.sequence(F.lit(1), F.col("n_prompts"))))
    k = (F.col("user_idx"), F.col("p"))
    p = p.withColumn("style_idx", F.when(_u(seed, "pr_style", *k) < 0.75, F.col("s1")).otherwise(F.col("s2")))
    lo = F.lit(start_s) + F.col("join_week") * 7 * 86400
    span = (spec.n_weeks * 7 * 86400) - F.col("join_week") * 7 * 86400
    p = p.withColumn("created_s", (lo + F.floor(_u(seed, "pr_ts", *k) * span)).cast("long"))
    p = p.select("user_idx", "user_id", "p", "style_idx", "created_s")

    def fn(batches):
        for pdf in batches:
            texts = []
            for uidx, pi, sidx in zip(pdf["user_idx"], pdf["p"], pdf["style_idx"]):
                rng = np.random.default_rng([seed, 2, int(uidx), int(pi)])
                texts.append(style_prompt(vocab.STYLES[int(sidx)], rng)[0])
            yield pd.DataFrame({
                "prompt_id": [f"p{int(u):07d}-{int(i)}" for u, i in zip(pdf["user_idx"], pdf["p"])],
                "user_id": pdf["user_id"],
                "prompt_text": texts,
                "created_at": pd.to_datetime(pdf["created_s"], unit="s"),
            })

    schema = "prompt_id string, user_id string, prompt_text string, created_at timestamp"
    return p.mapInPandas(fn, schema)


def new_prompt_only_users(spark: SparkSession, spec: PlatformSpec, end: dt.date) -> DataFrame:
    """A few brand-new users (ids after the listeners) who wrote prompts but never listened."""
    n_new = max(1, spec.n_users // 200)
    seed = spec.seed
    end_s = int(dt.datetime.combine(end, dt.time()).replace(tzinfo=dt.timezone.utc).timestamp())
    base = spark.range(n_new, numPartitions=1).select((F.col("id") + spec.n_users).alias("user_idx"))
    styles = _style_table(spark)
    base = _pick_style(styles, base, _u(seed, "new_s1", F.col("user_idx")), "s1")
    base = base.withColumn("s2", F.col("s1")).withColumn("join_week", F.lit(spec.n_weeks - 1))
    base = base.withColumn("user_id", user_id_col(F.col("user_idx")))
    tmp = dataclasses.replace(spec, prompt_user_share=1.0)
    return prompts_df(spark, tmp, end, base).withColumn(
        "created_at", F.least(F.col("created_at"), F.timestamp_seconds(F.lit(end_s - 60))))


# ------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------


def generate_platform(spark: SparkSession, out_dir: str, spec: PlatformSpec, end: dt.date,
                      overwrite: bool = False) -> Dict[str, int]:
    """Generate the synthetic platform's raw export under ``out_dir``.

    Parameters
    ----------
    spark : SparkSession
    out_dir : str
        Folder for ``tracks/``, ``interactions/``, ``user_prompts/``, ``audio/``.
    spec : PlatformSpec
    end : datetime.date
        Events are generated for the ``n_weeks`` weeks before this Monday.
    overwrite : bool
        Regenerate when the folder already holds a platform.

    Returns
    -------
    dict
        Row counts per output (tracks, interactions, user_prompts, audio_files, bad_rows).
    """
    if not is_local(out_dir):
        raise InputError(f"generate: {out_dir} is a {scheme(out_dir)}: URI; the synthetic platform "
                         f"(its bad rows, audio files and marker too) is written with Python to a local "
                         f"or mounted folder (/Volumes/..., /dbfs/...), which ingestion then reads")
    marker = os.path.join(out_dir, "_PLATFORM.json")
    if os.path.exists(marker) and not overwrite:
        with open(marker) as fh:
            meta = json.load(fh)
        if meta.get("spec") == spec.__dict__ and meta.get("end") == end.isoformat():
            log.info("synthetic platform already present at %s: %s", out_dir, meta["counts"])
            return meta["counts"]
    t0 = time.time()
    os.makedirs(out_dir, exist_ok=True)
    th = tracks_hidden_df(spark, spec, end).cache()
    text = th.select("track_idx", "style_idx").mapInPandas(
        _track_text(spec.seed), "track_idx long, title string, prompt string, tags string")
    audio_dir = os.path.abspath(os.path.join(out_dir, "audio"))
    has_audio = F.lit(True) if spec.audio_tracks < 0 else F.col("track_idx") < spec.audio_tracks
    # object-store-like keys: <audio_dir>/<2 hex of sha1(track_id)>/<track_id>.wav, one expression for
    # the tracks export and the files written below
    audio_key = F.concat(F.substring(F.sha1(F.col("track_id")), 1, 2), F.lit("/"), F.col("track_id"), F.lit(".wav"))
    tracks = th.join(text, "track_idx").select(
        "track_id", "creator_id", "title", "prompt", "tags", "genre", "duration_s",
        F.date_format(F.timestamp_seconds("created_s"), "yyyy-MM-dd'T'HH:mm:ss'Z'").alias("created_at"),
        F.when(has_audio, F.concat(F.lit("file://" + audio_dir + "/"), audio_key)).alias("audio_uri"),
        "play_count", "upvote_count", "comment_count",
    )
    tracks.write.mode("overwrite").json(os.path.join(out_dir, "tracks"))
    users = users_df(spark, spec)
    inter = interactions_df(spark, spec, end, th, users)
    inter.write.mode("overwrite").option("header", True).csv(os.path.join(out_dir, "interactions"))
    prompts = prompts_df(spark, spec, end, users).unionByName(new_prompt_only_users(spark, spec, end))
    prompts.write.mode("overwrite").parquet(os.path.join(out_dir, "user_prompts"))
    from .audio_synth import BAD_AUDIO_CASES, write_style_audio

    cases = sorted(BAD_AUDIO_CASES)
    case_idx = F.least(F.floor(_u(spec.seed, "bad_audio_case", F.col("track_idx")) * len(cases)).cast("int"),
                       F.lit(len(cases) - 1))
    audio_case = F.when(_u(spec.seed, "bad_audio", F.col("track_idx")) < spec.bad_audio_rate,
                        F.element_at(F.array(*[F.lit(c) for c in cases]), case_idx + 1)).otherwise(F.lit("ok"))
    written = write_style_audio(
        spark, th.where(has_audio).select(audio_key.alias("audio_key"), "style_idx", "track_idx",
                                          audio_case.alias("audio_case")),
        audio_dir, spec.audio_seconds, spec.audio_sample_rate, spec.seed)
    counts = {
        "tracks": spec.n_tracks,
        "interactions": spark.read.option("header", True).csv(os.path.join(out_dir, "interactions")).count(),
        "user_prompts": spark.read.parquet(os.path.join(out_dir, "user_prompts")).count(),
        "audio_files": sum(written.values()),
        "bad_audio_files": {c: n for c, n in sorted(written.items()) if c != "ok"},
    }
    if spec.bad_row_rate > 0:
        from .bad_rows import write_bad_rows

        counts["bad_rows"] = write_bad_rows(out_dir, spec, end)
    th.unpersist()
    with open(marker, "w") as fh:
        json.dump({"spec": spec.__dict__, "end": end.isoformat(), "counts": counts}, fh, indent=1)
    log.info("generated synthetic platform in %.1fs: %s", time.time() - t0, counts)
    return counts
