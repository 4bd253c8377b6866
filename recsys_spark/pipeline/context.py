"""What the stages of one weekly run share: :class:`RunContext`.

The context holds the session, the configuration, the tables, week W, the run id, the model folder
and the configuration fingerprint, and builds lazily, once per run, what several stages read: the
week's inputs (tracks, interactions, prompts, seeds, heard set, users), the embedding model
version and its vectors, and facts about the data set (does it have audio, prompts, creators,
track statistics?) that decide which stages skip. Frames a stage persists for later stages are
registered with :meth:`RunContext.cache`; the runner releases them when the run ends.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Set

from pyspark import StorageLevel
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from .. import history as hist
from ..config import Config, resolve_path
from ..safety import safe_path
from ..tables import Tables
from ..weeks import require_monday

log = logging.getLogger(__name__)


@dataclass
class WeekInputs:
    """The week's inputs, restricted to what happened before W."""

    tracks: DataFrame
    interactions: DataFrame
    prompts: DataFrame
    seeds: DataFrame
    heard: DataFrame
    users: DataFrame


def interactions_before(tables: Tables, week: dt.date) -> DataFrame:
    """The ``interactions`` that happened before W (Monday 00:00 UTC): all a run of W may read."""
    return tables.read("interactions").where(F.col("event_ts") < F.lit(dt.datetime.combine(week, dt.time())))


def load_inputs(spark: SparkSession, tables: Tables, week: dt.date, last_n: int, this_week_share: float,
                half_life_days: float, keep_interactions: Optional[Callable[[DataFrame], DataFrame]] = None
                ) -> WeekInputs:
    """Read the tables and build seeds, heard set and the users to serve (all lazily).

    ``keep_interactions`` (e.g. :meth:`RunContext.cache`) is applied to the interactions before W
    before anything is built from them."""
    end = dt.datetime.combine(week, dt.time())
    tracks = tables.read("tracks").where(F.coalesce(F.col("created_at"), F.lit(end)) <= F.lit(end))
    inter = interactions_before(tables, week)
    if keep_interactions is not None:
        inter = keep_interactions(inter)
    prompts = tables.read("user_prompts").where(F.coalesce(F.col("created_at"), F.lit(end)) < F.lit(end))
    seeds = hist.build_history(inter, week, last_n=last_n, this_week_share=this_week_share,
                               half_life_days=half_life_days)
    heard = hist.heard_tracks(inter, week)
    # every user with any interaction (even only skips) or a prompt before W gets a playlist
    users = heard.select("user_id").union(prompts.select("user_id")).distinct()
    return WeekInputs(tracks, inter, prompts, seeds, heard, users)


def model_dir(cfg: Config, week: dt.date) -> str:
    """``<storage.model_dir>/week=<W>``, refused when it resolves outside the model folder (a symlink)."""
    d = cfg.storage.model_dir
    d = resolve_path(d)  # relative: against --root / $RECSYS_ROOT / the working dir; file: URIs: local paths
    return safe_path(d, f"week={require_monday(week).isoformat()}")


#: jobs whose stages a weekly run of the same week and configuration resumes: a recall-only run
#: (:func:`~recsys_spark.pipeline.weekly.run_recall`) runs the same stage code on the same inputs
STAGE_JOBS = ("weekly", "recall")


def completed_stage_rows(tables: Tables, week: dt.date, config_hash: str) -> Dict[str, Row]:
    """The latest ``succeeded`` row of ``runs`` per stage of week W's weekly runs (and recall-only
    runs, :data:`STAGE_JOBS`) with this configuration fingerprint: ``{stage: row}`` (``run_id,
    rows_out, counts, finished_at``)."""
    if not tables.exists("runs"):
        return {}
    rows = (tables.read("runs")
            .where((F.col("week_start") == F.lit(week)) & F.col("job").isin(*STAGE_JOBS)
                   & (F.col("config_hash") == config_hash) & (F.col("status") == "succeeded"))
            .select("stage", "run_id", "rows_out", "counts", "finished_at").collect())  # a handful per week
    out: Dict[str, Row] = {}
    for r in rows:
        if r["stage"] not in out or r["finished_at"] > out[r["stage"]]["finished_at"]:
            out[r["stage"]] = r
    return out


def completed_stages(tables: Tables, week: dt.date, config_hash: str) -> Dict[str, str]:
    """Stages that succeeded for ``week`` with this configuration: ``{stage: run_id}``."""
    return {k: r["run_id"] for k, r in completed_stage_rows(tables, week, config_hash).items()}


def _exists_where(df: DataFrame, cond) -> bool:
    return df.where(cond).limit(1).count() > 0


@dataclass
class RunContext:
    """One weekly run of week W (see the module doc).

    Parameters
    ----------
    spark, cfg, tables, week, run_id
        The run. ``model_dir`` defaults to :func:`model_dir`, ``fingerprint`` to ``cfg.fingerprint()``.
    commit : callable, optional
        ``commit(df) -> Delta version``: replaces week W's ``discover_weekly`` partition. The runner
        provides it (with its claim); without one (a stage tested alone) the partition is replaced
        directly.
    """

    spark: SparkSession
    cfg: Config
    tables: Tables
    week: dt.date
    run_id: str
    model_dir: str = ""
    fingerprint: str = ""
    generated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).replace(
        tzinfo=None, microsecond=0))
    commit_fn: Optional[Callable[[DataFrame], int]] = None
    #: stages that succeeded in this run or were resumed (their output is W's, with this config)
    finished: Set[str] = field(default_factory=set)
    _persisted: List[DataFrame] = field(default_factory=list, init=False, repr=False)
    _memo: Dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.week = require_monday(self.week)
        self.model_dir = self.model_dir or model_dir(self.cfg, self.week)
        self.fingerprint = self.fingerprint or self.cfg.fingerprint()

    # -- bookkeeping -------------------------------------------------------------------------
    def cache(self, df: DataFrame, level: StorageLevel = StorageLevel.MEMORY_AND_DISK) -> DataFrame:
        """Persist ``df`` for the rest of the run (released by :meth:`release`)."""
        df = df.persist(level)
        self._persisted.append(df)
        return df

    def release(self) -> None:
        """Unpersist every frame registered with :meth:`cache`."""
        while self._persisted:
            self._persisted.pop().unpersist()

    def memo(self, key: str, build: Callable[[], Any]) -> Any:
        """``build()`` once per run (facts several stages ask for)."""
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    def succeeded(self, stage: str) -> Optional[Row]:
        """The latest ``succeeded`` ``runs`` row of ``stage`` for W with this fingerprint (or None).

        Read once per run (the runner calls it before any stage writes)."""
        return self.memo("completed", lambda: completed_stage_rows(self.tables, self.week, self.fingerprint)).get(stage)

    def commit(self, df: DataFrame) -> int:
        """Replace week W's ``discover_weekly`` partition by ``df``; returns the Delta version."""
        if self.commit_fn is not None:
            return self.commit_fn(df)
        self.tables.replace_partition("discover_weekly", df, "week_start", self.week)
        return int(self.tables.version("discover_weekly"))

    def partition(self, table: str, **more) -> DataFrame:
        """Week W's rows of ``table`` (``week_start = W`` and ``k = v`` for ``more``)."""
        cond = F.col("week_start") == F.lit(self.week)
        for k, v in more.items():
            cond = cond & (F.col(k) == F.lit(v))
        return self.tables.read(table).where(cond)

    # -- the week's inputs -------------------------------------------------------------------
    @property
    def inputs(self) -> WeekInputs:
        """Tracks, interactions and prompts before W; seeds, heard set and users (persisted)."""
        def build() -> WeekInputs:
            h = self.cfg.history
            inp = load_inputs(self.spark, self.tables, self.week, h.last_n, h.this_week_share,
                              h.recency_half_life_days,
                              keep_interactions=self.cache if self.cache_interactions else None)
            inp.seeds, inp.heard, inp.users = (self.cache(d) for d in (inp.seeds, inp.heard, inp.users))
            return inp
        return self.memo("inputs", build)

    @property
    def cache_interactions(self) -> bool:
        """Cache the week's interactions for the run: the table is under
        ``pipeline.cache_interactions_mb`` (logged either way)."""
        def build() -> bool:
            limit = self.cfg.pipeline.cache_interactions_mb
            if limit <= 0:
                return False
            size = self.tables.size_bytes("interactions") or 0
            keep = size < limit * 1024 * 1024
            log.info("[%s] interactions table %.1f MB: %s", self.run_id, size / 2 ** 20,
                     f"cached for the run (< {limit} MB)" if keep else f"read per stage (>= {limit} MB)")
            return keep
        return self.memo("cache_interactions", build)

    @property
    def played_tracks(self) -> DataFrame:
        """``track_id`` of every track played before W (distinct, persisted for the run): computed
        once for the fresh share's rule, the rank stage's fresh lane and the write stage's count."""
        return self.memo("played_tracks", lambda: self.cache(self.inputs.interactions.select("track_id").distinct()))

    @property
    def fresh_tracks(self) -> DataFrame:
        """``track_id`` of the tracks the fresh share counts as fresh this week (created in the last
        ``rerank.fresh_days``, or with ``rerank.fresh_unplayed`` never played; persisted for the run)."""
        def build() -> DataFrame:
            from ..rerank.rules import fresh_tracks

            rr = self.cfg.rerank
            played = self.played_tracks if rr.fresh_unplayed else None
            return self.cache(fresh_tracks(self.inputs.tracks, self.week, rr.fresh_days, played))
        return self.memo("fresh_tracks", build)

    # -- what the data set has ---------------------------------------------------------------
    @property
    def has_audio(self) -> bool:
        """Some track before W has an ``audio_uri``."""
        return self.memo("has_audio", lambda: _exists_where(self.inputs.tracks, F.col("audio_uri").isNotNull()
                                                             & (F.trim(F.col("audio_uri")) != "")))

    @property
    def has_prompts(self) -> bool:
        """Some user wrote a prompt before W."""
        return self.memo("has_prompts", lambda: _exists_where(self.inputs.prompts, F.lit(True)))

    @property
    def has_track_prompts(self) -> bool:
        """Some track before W has its own prompt text."""
        return self.memo("has_track_prompts", lambda: _exists_where(
            self.inputs.tracks, F.col("prompt").isNotNull() & (F.trim(F.col("prompt")) != "")))

    @property
    def has_creators(self) -> bool:
        """Some track before W has a (non-empty) ``creator_id``."""
        return self.memo("has_creators", lambda: _exists_where(
            self.inputs.tracks, F.col("creator_id").isNotNull() & (F.trim(F.col("creator_id")) != "")))

    @property
    def has_track_statistics(self) -> bool:
        """Some track before W has a play, upvote or comment count."""
        return self.memo("has_track_statistics", lambda: _exists_where(
            self.inputs.tracks, F.col("play_count").isNotNull() | F.col("upvote_count").isNotNull()
            | F.col("comment_count").isNotNull()))

    # -- embeddings --------------------------------------------------------------------------
    @property
    def emb_version(self) -> Optional[str]:
        """The embedding model version of this configuration (None when embeddings are disabled)."""
        def build() -> Optional[str]:
            if not self.cfg.embeddings.enabled:
                return None
            from ..embeddings.clap import EncoderSpec

            return EncoderSpec.from_conf(self.cfg.embeddings).resolved_model_version()
        return self.memo("emb_version", build)

    @property
    def content_trained(self) -> bool:
        """False when the embedding model is untrained (no CLAP checkpoint): reasons that rest on
        content must not say "sounds like" (True when embeddings are disabled: no such reasons)."""
        def build() -> bool:
            if not self.cfg.embeddings.enabled:
                return True
            from ..embeddings.clap import EncoderSpec

            return bool(EncoderSpec.from_conf(self.cfg.embeddings).has_checkpoint)
        return self.memo("content_trained", build)

    @property
    def track_embeddings(self) -> Optional[DataFrame]:
        """``track_embeddings`` of :attr:`emb_version` (None when embeddings are disabled)."""
        v = self.emb_version
        return None if v is None else self.tables.read("track_embeddings").where(F.col("model_version") == v)

    @property
    def prompt_embeddings(self) -> Optional[DataFrame]:
        """``prompt_embeddings`` of :attr:`emb_version` (None when embeddings are disabled)."""
        v = self.emb_version
        return None if v is None else self.tables.read("prompt_embeddings").where(F.col("model_version") == v)

    @property
    def din_path(self) -> str:
        return os.path.join(self.model_dir, "din")
