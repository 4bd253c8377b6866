"""The weekly run: every stage wired together for week W.

``run_weekly(spark, cfg, week)`` is what ``jobs/weekly.py`` and the notebooks call. It is the one
place that reads the :class:`~recsys_spark.config.Config`; every stage below it is a library
function taking DataFrames and plain values.

Stages (each recorded in ``runs`` with rows, timings and what it skipped)::

    load -> history -> recall.<channel>... -> fusion -> rerank -> write

Every channel is optional: a disabled channel, or one without inputs, is skipped and logged; the
taste-aware popularity channel and the re-ranking back-fill always exist, so every user with
history or prompts gets a playlist.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from . import history as hist
from .config import Config
from .recall.popularity import popularity_candidates
from .rerank import rules
from .runlog import RunLog, new_run_id
from .tables import Tables
from .weeks import require_monday

log = logging.getLogger(__name__)


@dataclass
class WeeklyResult:
    run_id: str
    week: dt.date
    users: int
    rows: int
    short_users: int
    stages: List[str] = field(default_factory=list)
    summary: str = ""


@dataclass
class WeekInputs:
    """The week's inputs, restricted to what happened before W."""

    tracks: DataFrame
    interactions: DataFrame
    prompts: DataFrame
    seeds: DataFrame
    heard: DataFrame
    users: DataFrame


def load_inputs(spark: SparkSession, tables: Tables, week: dt.date, last_n: int, this_week_share: float,
                half_life_days: float) -> WeekInputs:
    """Read the tables and build seeds, heard set and the users to serve (all lazily)."""
    end = dt.datetime.combine(week, dt.time())
    tracks = tables.read("tracks").where(F.coalesce(F.col("created_at"), F.lit(end)) <= F.lit(end))
    inter = tables.read("interactions").where(F.col("event_ts") < F.lit(end))
    prompts = tables.read("user_prompts").where(F.coalesce(F.col("created_at"), F.lit(end)) < F.lit(end))
    seeds = hist.build_history(inter, week, last_n=last_n, this_week_share=this_week_share,
                               half_life_days=half_life_days)
    heard = hist.heard_tracks(inter, week)
    users = seeds.select("user_id").union(prompts.select("user_id")).distinct()
    return WeekInputs(tracks, inter, prompts, seeds, heard, users)


def _to_fused(cands: DataFrame) -> DataFrame:
    """One channel's candidates in the fused shape (used when only one channel ran)."""
    return cands.select("user_id", "track_id", F.array(F.col("channel")).alias("channels"),
                        F.col("score").alias("final_score"), "seed_track_id")


def run_weekly(spark: SparkSession, cfg: Config, week: dt.date, run_id: Optional[str] = None,
               tables: Optional[Tables] = None) -> WeeklyResult:
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

    Returns
    -------
    WeeklyResult
        Counts of the written partition and the run summary.
    """
    week = require_monday(week)
    tables = tables or Tables.from_config(spark, cfg.storage)
    run_id = run_id or new_run_id("weekly", week)
    runlog = RunLog(tables, run_id, week, "weekly", cfg.fingerprint())
    t_run = time.time()
    spark.sparkContext.setJobGroup(run_id, f"Discover Weekly {week}")
    generated_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)

    with runlog.stage("load") as st:
        tables.create_all()
        h = cfg.history
        inp = load_inputs(spark, tables, week, h.last_n, h.this_week_share, h.recency_half_life_days)
        inp.seeds = inp.seeds.persist()
        inp.heard = inp.heard.persist()
        inp.users = inp.users.persist()
        st.rows_in = inp.interactions.count()
        st.counts.update(tracks=inp.tracks.count(), seeds=inp.seeds.count(), users=inp.users.count(),
                         prompts=inp.prompts.count())
        st.rows_out = int(st.counts["seeds"])
    if st.counts["users"] == 0:
        raise RuntimeError(f"no users with history or prompts before {week}: nothing to recommend "
                           f"(did ingestion run? tables under {tables.warehouse})")

    channel_cands: Dict[str, DataFrame] = {}
    pc = cfg.recall.popularity
    if pc.enabled:
        with runlog.stage("recall.popular") as st:
            c = popularity_candidates(inp.users, inp.seeds, inp.tracks, inp.heard, n=pc.candidates,
                                      top_genres=pc.top_genres, per_genre_pool=pc.per_genre_pool).persist()
            st.rows_out = c.count()
            st.counts["users"] = c.select("user_id").distinct().count()
            channel_cands["popular"] = c
    else:
        runlog.skip("recall.popular", "disabled in config")
    for name in ("item_cf", "als", "content", "prompt"):
        runlog.skip(f"recall.{name}", "channel not available in this build")

    with runlog.stage("fusion") as st:
        fused = None
        for name, c in channel_cands.items():
            f = _to_fused(c)
            fused = f if fused is None else fused.unionByName(f)
        if fused is None:
            fused = spark.createDataFrame([], "user_id string, track_id string, channels array<string>, "
                                              "final_score double, seed_track_id string")
        fused = fused.persist()
        st.rows_out = fused.count()

    rr = cfg.rerank
    with runlog.stage("rerank") as st:
        st.rows_in = st_rows = fused.count()
        playlists = rules.build_playlists(
            fused, inp.users, inp.heard, inp.tracks, week, size=rr.playlist_size, creator_cap=rr.creator_cap,
            diversity_lambda=rr.diversity_lambda, diversity=rr.diversity_enabled, fresh_share=rr.fresh_share,
            fresh_days=rr.fresh_days, max_candidates=rr.max_candidates)
        playlists = rules.add_reasons(playlists, inp.tracks, inp.prompts).persist()
        st.rows_out = playlists.count()
        per_user = playlists.groupBy("user_id").count()
        st.counts["users"] = per_user.count()
        st.counts["short_users"] = per_user.where(F.col("count") < rr.playlist_size).count()
        del st_rows

    with runlog.stage("write") as st:
        out = playlists.select(
            F.lit(week).alias("week_start"), "user_id", "position", "track_id", "score", "sources", "reason",
            F.lit(cfg.pipeline.model_version).alias("model_version"), F.lit(run_id).alias("run_id"),
            F.lit(generated_at).alias("generated_at"))
        tables.replace_partition("discover_weekly", out, "week_start", week)
        st.rows_out = int(runlog.records[-1].rows_out)
        st.counts["table_version"] = float(tables.version("discover_weekly"))

    rerank_rec = [r for r in runlog.records if r.stage == "rerank"][0]
    with runlog.stage("run") as st:
        st.rows_out = rerank_rec.rows_out
        st.counts.update(users=rerank_rec.counts["users"], short_users=rerank_rec.counts["short_users"],
                         total_seconds=round(time.time() - t_run, 1))
    for df in (inp.seeds, inp.heard, inp.users, fused, playlists, *channel_cands.values()):
        df.unpersist()
    summary = runlog.summary()
    log.info("%s", summary)
    return WeeklyResult(run_id, week, int(rerank_rec.counts["users"]), int(rerank_rec.rows_out),
                        int(rerank_rec.counts["short_users"]), [r.stage for r in runlog.records], summary)
