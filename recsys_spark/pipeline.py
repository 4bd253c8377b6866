"""The weekly run: every stage wired together for week W.

``run_weekly(spark, cfg, week)`` is what ``jobs/weekly.py`` and the notebooks call. It is the one
place that reads the :class:`~recsys_spark.config.Config`; every stage below it is a library
function taking DataFrames and plain values.

Stages, each recorded in ``runs`` (rows in/out, seconds, counts, what it skipped and why)::

    load           tables -> seeds (last-n, weekly mixing), heard set, users to serve
    embed          CLAP audio + text embeddings of new tracks / prompts (incremental)
    recall.<ch>    popular, item_cf, als, content, prompt -> recall_candidates[W, ch]
    train.din      DIN on the weeks before W -> <model_dir>/<W>/din
    aggregate.creators  creator attention pooling of track embeddings -> creator_embeddings[W]
    rank           fusion -> quality filter -> DIN scores -> final score -> candidates[W]
    write          plug-in re-ranker -> rules (exclusions, cap, MMR with creator embeddings, fresh,
                   exactly 30) -> discover_weekly[W]

**Resume**: stages that persist an output (``embed``, ``recall.*``, ``train.din``, ``aggregate.creators``,
``rank``) are
skipped on a rerun of the same week when ``runs`` says they succeeded for W with the same
configuration fingerprint and their output is there; the run resumes from the first stage that did
not finish. ``force=True`` reruns everything; ``if_needed=True`` does nothing when week W already
has a successful run. Every write replaces only week W's partition in one atomic Delta commit, so a
crash at any point leaves the tables consistent.

Every channel is optional: a disabled channel, or one without inputs, is skipped and logged; the
taste-aware popularity channel and the re-ranking back-fill always exist, so every user with
history or prompts gets a playlist.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from . import history as hist
from .config import Config, resolve_path
from .recall.popularity import popularity_candidates
from .rerank import rules
from .runlog import RunLog, new_run_id
from .safety import _is_uri, safe_path
from .tables import ConcurrentWriteError, Tables
from .weeks import previous_weeks, require_monday

log = logging.getLogger(__name__)

RECALL_CHANNELS = ("popular", "item_cf", "als", "content", "prompt")


class ConcurrentRunError(ConcurrentWriteError):
    """Another run of the same week committed ``discover_weekly`` after this run started.

    The run claims week W's partition when it starts (:meth:`Tables.claim_partition`); its final
    commit fails with this error if any other run committed W in between, and writes nothing."""


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
    # every user with any interaction (even only skips) or a prompt before W gets a playlist
    users = heard.select("user_id").union(prompts.select("user_id")).distinct()
    return WeekInputs(tracks, inter, prompts, seeds, heard, users)


def model_dir(cfg: Config, week: dt.date) -> str:
    """``<storage.model_dir>/week=<W>``, refused when it resolves outside the model folder (a symlink)."""
    d = cfg.storage.model_dir
    if not os.path.isabs(d) and not _is_uri(d):
        d = resolve_path(d)
    return safe_path(d, f"week={require_monday(week).isoformat()}")


def completed_stages(tables: Tables, week: dt.date, config_hash: str) -> Dict[str, str]:
    """Stages that succeeded for ``week`` with this configuration: ``{stage: run_id}``."""
    if not tables.exists("runs"):
        return {}
    rows = (tables.read("runs")
            .where((F.col("week_start") == F.lit(week)) & (F.col("job") == "weekly")
                   & (F.col("config_hash") == config_hash) & (F.col("status") == "succeeded"))
            .select("stage", "run_id", "finished_at").collect())  # a handful of rows per week
    out: Dict[str, tuple] = {}
    for r in rows:
        if r["stage"] not in out or r["finished_at"] > out[r["stage"]][1]:
            out[r["stage"]] = (r["run_id"], r["finished_at"])
    return {k: v[0] for k, v in out.items()}


def week_is_complete(tables: Tables, week: dt.date) -> bool:
    """True when a weekly run of ``week`` finished (any configuration)."""
    if not tables.exists("runs"):
        return False
    return tables.read("runs").where(
        (F.col("week_start") == F.lit(week)) & (F.col("job") == "weekly") & (F.col("stage") == "run")
        & (F.col("status") == "succeeded")).limit(1).count() > 0


class _Stages:
    """Helpers shared by the stages of one run (resume bookkeeping, channel candidates)."""

    def __init__(self, spark, cfg, tables, week, runlog, done, force):
        self.spark, self.cfg, self.tables, self.week = spark, cfg, tables, week
        self.runlog, self.done, self.force = runlog, done, force

    def resumable(self, stage: str, output_ok: Callable[[], bool]) -> bool:
        """True (and a ``skipped`` row) when ``stage`` already succeeded for W and its output exists."""
        if self.force or stage not in self.done:
            return False
        if not output_ok():
            return False
        self.runlog.skip(stage, f"already done by run {self.done[stage]} (resume; --force reruns it)")
        return True

    def recall_partition(self, channel: str) -> DataFrame:
        return self.tables.read("recall_candidates").where(
            (F.col("week_start") == F.lit(self.week)) & (F.col("channel") == channel))

    def write_recall(self, channel: str, cands: DataFrame) -> int:
        out = cands.select(F.lit(self.week).alias("week_start"), F.lit(channel).alias("channel"), "user_id",
                           "track_id", "score", "rank", "seed_track_id")
        self.tables.replace_partition("recall_candidates", out, "week_start", self.week, channel=channel)
        return self.recall_partition(channel).count()


def run_weekly(spark: SparkSession, cfg: Config, week: dt.date, run_id: Optional[str] = None,
               tables: Optional[Tables] = None, force: bool = False, if_needed: bool = False,
               fail_after_stage: Optional[str] = None) -> WeeklyResult:
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
    fail_after_stage : str, optional
        Testing hook: raise after this stage (simulates a crash between stages).

    Returns
    -------
    WeeklyResult
        Counts of the written partition and the run summary.
    """
    week = require_monday(week)
    tables = tables or Tables.from_config(spark, cfg.storage)
    run_id = run_id or new_run_id("weekly", week)
    if if_needed and not force and week_is_complete(tables, week):
        log.info("week %s already has a successful run: nothing to do (--if-needed)", week)
        return WeeklyResult(run_id, week, 0, 0, 0, [], f"week {week} already complete; nothing done", True)
    tables.create_all()
    # optimistic concurrency: what week W's playlist partition looks like as this run starts
    claim = tables.claim_partition("discover_weekly", "week_start", week, owner=run_id)
    fp = cfg.fingerprint()
    done = completed_stages(tables, week, fp)
    runlog = RunLog(tables, run_id, week, "weekly", fp)
    S = _Stages(spark, cfg, tables, week, runlog, done, force)
    t_run = time.time()
    spark.sparkContext.setJobGroup(run_id, f"Discover Weekly {week}")
    generated_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    mdir = model_dir(cfg, week)
    persisted: List[DataFrame] = []

    kill_after = os.environ.get("RECSYS_TEST_SIGKILL_AFTER_STAGE")  # fault-injection hook (tests only)

    def crash_point(stage: str) -> None:
        if fail_after_stage == stage:
            raise RuntimeError(f"simulated crash after stage {stage}")
        if kill_after == stage:
            import signal

            log.error("fault injection: SIGKILL after stage %s", stage)
            os.kill(os.getpid(), signal.SIGKILL)

    # ---------------------------------------------------------------------------------- load
    with runlog.stage("load") as st:
        h = cfg.history
        inp = load_inputs(spark, tables, week, h.last_n, h.this_week_share, h.recency_half_life_days)
        inp.seeds, inp.heard, inp.users = (d.persist() for d in (inp.seeds, inp.heard, inp.users))
        persisted += [inp.seeds, inp.heard, inp.users]
        st.rows_in = inp.interactions.count()
        st.counts.update(tracks=inp.tracks.count(), seeds=inp.seeds.count(), users=inp.users.count(),
                         prompts=inp.prompts.count())
        st.rows_out = int(st.counts["seeds"])
    if st.counts["users"] == 0:
        raise RuntimeError(f"no users with history or prompts before {week}: nothing to recommend "
                           f"(did ingestion run? tables under {tables.warehouse})")
    crash_point("load")

    # ---------------------------------------------------------------------------------- embed
    ec = cfg.embeddings
    emb_version = None
    if not ec.enabled:
        runlog.skip("embed", "embeddings disabled in config")
    elif not S.resumable("embed", lambda: True):
        with runlog.stage("embed") as st:
            from .embeddings.clap import EncoderSpec
            from .embeddings.jobs import run_embedding_stage

            spec = EncoderSpec.from_conf(ec)
            emb_version = spec.resolved_model_version()
            counts = run_embedding_stage(spark, tables, spec, batch_size=ec.batch_size, run_id=run_id,
                                         as_of=dt.datetime.combine(week, dt.time()),
                                         track_prompts=cfg.recall.prompt.enabled and cfg.recall.prompt.target == "track_prompt")
            st.counts.update({k: float(v) for k, v in counts.items() if isinstance(v, (int, float, bool))})
            st.rows_out = int(counts.get("tracks_embedded", 0)) + int(counts.get("texts_embedded", 0))
            if counts.get("untrained"):
                st.skipped = ("CONTENT EMBEDDINGS ARE UNTRAINED: no CLAP checkpoint at embeddings.checkpoint_path; "
                              "audio/text vectors come from random weights")
    if ec.enabled and emb_version is None:
        from .embeddings.clap import EncoderSpec

        emb_version = EncoderSpec.from_conf(ec).resolved_model_version()
    crash_point("embed")
    track_emb = prompt_emb = None
    if emb_version is not None:
        track_emb = tables.read("track_embeddings").where(F.col("model_version") == emb_version)
        prompt_emb = tables.read("prompt_embeddings").where(F.col("model_version") == emb_version)

    # ---------------------------------------------------------------------------------- recall
    rc = cfg.recall
    seed = cfg.pipeline.seed

    def popular():
        p = rc.popularity
        return popularity_candidates(inp.users, inp.seeds, inp.tracks, inp.heard, n=p.candidates,
                                     top_genres=p.top_genres, per_genre_pool=p.per_genre_pool)

    def item_cf():
        from .recall.item_cf import ItemCF

        c = rc.item_cf
        model = ItemCF.from_conf(c, seed=seed).fit(inp.interactions)
        nb = model.neighbors.select(F.lit(week).alias("week_start"), "track_id", "neighbor_id", "score", "rank")
        tables.replace_partition("item_neighbors", nb, "week_start", week)
        model.neighbors = tables.read("item_neighbors").where(F.col("week_start") == F.lit(week)).drop("week_start")
        seeds = inp.seeds.where(F.col("seed_rank") <= c.n_seeds)
        return model.recommend(seeds, inp.heard, n=c.candidates, per_seed=c.per_seed)

    def als():
        from .recall.als import ALSRecall

        c = rc.als
        model = ALSRecall.from_conf(c, seed=seed).fit(inp.interactions)
        try:
            model.save(os.path.join(mdir, "als"))
        except Exception as exc:  # the candidates matter more than the saved copy
            log.warning("could not save the ALS model: %s", exc)
        return model.recommend(inp.seeds, inp.heard, n=c.candidates, topk=c.topk, batch_size=c.topk_batch_size)

    def content():
        from .recall.content import content_candidates

        c = rc.content
        return content_candidates(spark, inp.seeds, inp.heard, track_emb, tracks=inp.tracks, n=c.candidates,
                                  model_version=emb_version, n_seeds=c.n_seeds, index=c.index,
                                  ivf_nlist=c.ivf_nlist, ivf_nprobe=c.ivf_nprobe, hnsw_m=c.hnsw_m,
                                  hnsw_ef_search=c.hnsw_ef_search, seed_weighting=c.seed_weighting,
                                  batch_size=c.batch_size, seed=c.seed)

    def prompt():
        from .recall.prompt import prompt_candidates

        c = rc.prompt
        vectors = track_emb if c.target == "audio" else prompt_emb
        return prompt_candidates(spark, inp.prompts, prompt_emb, vectors, inp.heard, week, seeds=inp.seeds,
                                 tracks=inp.tracks, n=c.candidates, max_prompts=c.max_prompts,
                                 half_life_days=c.half_life_days, combine_with_history=c.combine_with_history,
                                 history_weight=c.history_weight, target=c.target, model_version=emb_version)

    channel_fns = {"popular": (rc.popularity.enabled, popular, None),
                   "item_cf": (rc.item_cf.enabled, item_cf, None),
                   "als": (rc.als.enabled, als, None),
                   "content": (rc.content.enabled, content,
                               None if track_emb is not None else "no embeddings (embeddings disabled)"),
                   "prompt": (rc.prompt.enabled, prompt,
                              None if prompt_emb is not None else "no embeddings (embeddings disabled)")}
    for name in RECALL_CHANNELS:
        enabled, fn, missing = channel_fns[name]
        stage = f"recall.{name}"
        if not enabled:
            runlog.skip(stage, "disabled in config")
            continue
        if missing:
            runlog.skip(stage, missing)
            continue
        if S.resumable(stage, lambda n=name: True):
            continue
        with runlog.stage(stage) as st:
            n_rows = S.write_recall(name, fn())
            st.rows_out = n_rows
            if n_rows == 0:
                st.skipped = "channel produced no candidates (no inputs for it; see log)"
            else:
                st.counts["users"] = S.recall_partition(name).select("user_id").distinct().count()
        crash_point(stage)
    recall_all = tables.read("recall_candidates").where(
        (F.col("week_start") == F.lit(week)) & F.col("channel").isin(
            *[c for c in RECALL_CHANNELS if channel_fns[c][0] and not channel_fns[c][2]]))

    # ---------------------------------------------------------------------------------- DIN
    dc = cfg.din
    din_path = os.path.join(mdir, "din")
    din_ready = False
    if not dc.enabled:
        runlog.skip("train.din", "disabled in config")
    elif S.resumable("train.din", lambda: os.path.exists(os.path.join(din_path, "din_state.pt"))):
        din_ready = True
    else:
        with runlog.stage("train.din") as st:
            from .ranking.din_spark import build_training_set, estimate_training_rows, train_din

            label_weeks = previous_weeks(week, dc.train_weeks)
            pool = tables.read("recall_candidates").where(F.col("week_start").isin(*label_weeks)) \
                .select("user_id", "track_id", "week_start")
            # sample users *before* building histories and negatives when the set would exceed the
            # cap (it is collected to the driver for training); train_din still enforces the cap
            est = (estimate_training_rows(inp.interactions, label_weeks, dc.negatives_per_positive)
                   if dc.max_train_rows else 0)  # no cap: no estimate pass over the label weeks
            frac = min(1.0, dc.max_train_rows / est) if est else 1.0
            st.counts.update(estimated_rows=float(est), user_fraction=round(frac, 4))
            if frac < 1.0:
                log.info("train.din: ~%d examples estimated > max_train_rows %d: building them for %.1f%% of "
                         "the users", est, dc.max_train_rows, 100 * frac)
            train = build_training_set(spark, inp.interactions, label_weeks, negatives_pool_df=pool,
                                       n_negatives=dc.negatives_per_positive, seed=dc.seed,
                                       max_history=dc.max_history, popularity_share=dc.popularity_share,
                                       this_week_share=cfg.history.this_week_share,
                                       half_life_days=cfg.history.recency_half_life_days,
                                       user_fraction=frac).persist()
            persisted.append(train)
            n_train = train.count()
            st.rows_in = n_train
            st.counts["exposure_negative_weeks"] = float(pool.select("week_start").distinct().count())
            if n_train < 50:
                st.skipped = f"only {n_train} labelled examples in the {dc.train_weeks} weeks before {week}"
            else:
                feats = track_emb.select("track_id", "embedding") if (dc.use_content and track_emb is not None) else None
                artifact, metrics = train_din(
                    train, track_embeddings=feats, embedding_dim=dc.embedding_dim,
                    attention_hidden=dc.attention_hidden, mlp_hidden=dc.mlp_hidden,
                    softmax_attention=dc.softmax_attention, use_content=dc.use_content and feats is not None,
                    max_history=dc.max_history, epochs=dc.epochs, batch_size=dc.batch_size, lr=dc.lr,
                    patience=dc.patience, seed=dc.seed, device=dc.device, min_count=dc.min_count,
                    max_rows=dc.max_train_rows, use_torch_distributor=dc.use_torch_distributor,
                    num_processes=dc.num_processes)
                artifact.save(din_path, root=mdir)
                din_ready = True
                st.rows_out = n_train
                st.counts.update({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
        crash_point("train.din")

    # ---------------------------------------------------------------------------------- aggregate
    ag = cfg.aggregation
    if not ag.enabled:
        runlog.skip("aggregate.creators", "disabled in config")
    elif track_emb is None:
        runlog.skip("aggregate.creators", "no track embeddings (embeddings disabled)")
    elif not S.resumable("aggregate.creators", lambda: _creators_for_diversity(tables, week) is not None):
        with runlog.stage("aggregate.creators") as st:
            from .aggregation.creators import aggregate_creators

            rep = aggregate_creators(spark, tables, inp.interactions, inp.tracks, track_emb, week, method=ag.method,
                                     train_weeks=ag.train_weeks, max_tracks=ag.max_tracks, n_negatives=ag.n_negatives,
                                     proj_dim=ag.proj_dim, hidden=ag.hidden, epochs=ag.epochs, lr=ag.lr,
                                     max_users=ag.max_users, seed=ag.seed, model_version=emb_version,
                                     model_path=os.path.join(mdir, "creator_pooling"))
            st.rows_out = int(rep.pop("creators"))
            st.message = f"method {rep.pop('method')}" + (f"; {rep.pop('fallback')}" if "fallback" in rep else "")
            st.counts.update({k: float(v) for k, v in rep.items()})
        crash_point("aggregate.creators")

    # ---------------------------------------------------------------------------------- rank
    rr = cfg.rerank
    if not S.resumable("rank", lambda: tables.read("candidates").where(F.col("week_start") == F.lit(week))
                       .limit(1).count() > 0):
        with runlog.stage("rank") as st:
            from .filtering.quality import apply_quality_filter, quality_scores
            from .ranking.fusion import final_score, fuse

            fc = cfg.fusion
            st.rows_in = recall_all.count()
            cached = None
            fused = fuse(recall_all.drop("week_start"), fc.channel_weights, method=fc.method, rrf_k=fc.rrf_k,
                         default_weight=fc.default_channel_weight,
                         num_partitions=_shuffle_partitions(spark))
            qc = cfg.quality
            q = quality_scores(inp.tracks, prior_strength=qc.prior_strength, upvote_weight=qc.upvote_weight,
                               comment_weight=qc.comment_weight, mapping=qc.mapping,
                               aesthetics_df=tables.read(qc.aesthetics_table) if qc.aesthetics_table else None,
                               aesthetics_weight=qc.aesthetics_weight)
            if qc.enabled:
                fused = apply_quality_filter(fused, q, threshold=qc.threshold, min_per_user=rr.playlist_size,
                                             score_col="recall_score")
            else:
                fused = fused.join(q, "track_id", "left")
                st.skipped = "quality filter disabled in config"
            if din_ready:
                # scoring reads the candidates twice (grouped by user for the UDF, then joined back):
                # persist them so fusion and the quality filter run once
                cached = prerank(fused, dc.prerank_top_n).persist(StorageLevel.MEMORY_AND_DISK)
                fused = score_din(spark, cached, inp.seeds, din_path, dc)
            else:
                fused = fused.withColumn("din_score", F.lit(None).cast("double"))
                st.skipped = ((st.skipped + "; ") if st.skipped else "") + "DIN not trained for this week"
            scored = final_score(fused, din_weight=fc.din_weight, recall_weight=fc.recall_weight,
                                 quality_weight=fc.quality_weight)
            out = scored.select(F.lit(week).alias("week_start"), "user_id", "track_id", "channels", "recall_score",
                                "din_score", "quality", "final_score", "seed_track_id")
            try:
                tables.replace_partition("candidates", out, "week_start", week)
            finally:
                if cached is not None:  # the write stage reads the table, not this cache
                    cached.unpersist()
            st.rows_out = tables.read("candidates").where(F.col("week_start") == F.lit(week)).count()
        crash_point("rank")
    ranked = tables.read("candidates").where(F.col("week_start") == F.lit(week)).drop("week_start")

    # ---------------------------------------------------------------------------------- write
    with runlog.stage("write") as st:
        st.rows_in = ranked.count()
        cands = ranked
        if rr.plugin:
            from .rerank.plugins import apply_reranker

            cands = apply_reranker(cands, rr.plugin, inp.tracks, inp.seeds, top_n=rr.plugin_top_n,
                                   score_col="final_score", options=rr.plugin_options)
            st.counts["plugin"] = 1.0
        emb_for_div = track_emb.select("track_id", "embedding") if (rr.diversity_enabled and track_emb is not None) else None
        playlists = rules.build_playlists(
            cands, inp.users, inp.heard, inp.tracks, week, size=rr.playlist_size, creator_cap=rr.creator_cap,
            diversity_lambda=rr.diversity_lambda, diversity=rr.diversity_enabled, fresh_share=rr.fresh_share,
            fresh_days=rr.fresh_days, max_candidates=rr.max_candidates, embeddings=emb_for_div,
            creator_embeddings=_creators_for_diversity(tables, week) if (
                rr.diversity_enabled and rr.creator_similarity_weight > 0) else None,
            creator_weight=rr.creator_similarity_weight)
        playlists = rules.add_reasons(playlists, inp.tracks, inp.prompts).persist()
        persisted.append(playlists)
        n_rows = playlists.count()
        per_user = playlists.groupBy("user_id").count()
        n_users = per_user.count()
        n_short = per_user.where(F.col("count") < rr.playlist_size).count()
        out = playlists.select(
            F.lit(week).alias("week_start"), "user_id", "position", "track_id", "score", "sources", "reason",
            F.lit(cfg.pipeline.model_version).alias("model_version"), F.lit(run_id).alias("run_id"),
            F.lit(generated_at).alias("generated_at"))
        crash_point("write.before_commit")
        if kill_after == "write.during_commit":  # die while Delta writes the files, before the commit
            import signal
            import threading

            threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGKILL)).start()
        st.counts["claim_base_version"] = float(claim.base_version)
        try:
            version = tables.commit_partition(claim, out)
        except ConcurrentWriteError as exc:
            raise ConcurrentRunError(
                f"another run of week {week} committed discover_weekly after this run ({run_id}) started; this "
                f"run wrote nothing and the table holds the other run's complete week {week}. Rerun to replace "
                f"it. ({exc})") from exc
        st.rows_out = n_rows
        st.counts.update(users=n_users, short_users=n_short, table_version=float(version))
        mix = playlists.select(F.explode("sources").alias("s")).groupBy("s").count().collect()  # <= 6 rows
        st.counts.update({f"source.{r['s']}": float(r["count"]) for r in mix})

    with runlog.stage("run") as st:
        st.rows_out = n_rows
        st.counts.update(users=n_users, short_users=n_short, total_seconds=round(time.time() - t_run, 1))
    for d in persisted:
        d.unpersist()
    summary = runlog.summary()
    log.info("%s", summary)
    return WeeklyResult(run_id, week, n_users, n_rows, n_short, [r.stage for r in runlog.records], summary)


def _creators_for_diversity(tables: Tables, week: dt.date) -> Optional[DataFrame]:
    """``creator_id, embedding`` of week W's ``creator_embeddings`` partition, or None when absent."""
    if not tables.exists("creator_embeddings"):
        return None
    part = tables.read("creator_embeddings").where(F.col("week_start") == F.lit(week))
    if part.limit(1).count() == 0:
        return None
    from .aggregation.creators import for_diversity

    return for_diversity(part)


def _shuffle_partitions(spark: SparkSession) -> int:
    """``spark.sql.shuffle.partitions`` as an int (0 when it is not a number, e.g. Databricks' ``auto``)."""
    try:
        return int(spark.conf.get("spark.sql.shuffle.partitions"))
    except (TypeError, ValueError):
        return 0


def prerank(fused: DataFrame, top_n: int) -> DataFrame:
    """Pre-ranking: keep each user's best ``top_n`` candidates by fused recall score (0 = all).

    The fine ranker (DIN) costs O(candidates x history) per user; the candidates below the
    cut rarely reach the final 30 (the re-ranking rules look at ``rerank.max_candidates``)."""
    if top_n <= 0:
        return fused
    from .recall.popularity import top_n_per_user

    return top_n_per_user(fused, top_n, score_col="recall_score").drop("rank")


def score_din(spark: SparkSession, cands: DataFrame, seeds: DataFrame, din_path: str, dc) -> DataFrame:
    """DIN click probability for every candidate (pandas UDF; CUDA when the executor has one).

    Content features come from the table saved with the model at training time."""
    from .ranking.din_spark import score_candidates

    return score_candidates(spark, cands, seeds, din_path, batch_size=dc.score_batch_size, device=dc.device)


def evaluation_stages(spark: SparkSession, context, users: DataFrame, k: int):
    """The pipeline's ranking path on an offline split (``jobs/evaluate.py --methods pipeline``).

    Runs, as of the split's cutoff week: the collaborative channels (item_cf, als) and global
    popularity, fusion, DIN trained on the weeks before the cutoff (skipped when too few labelled
    examples), the final score, and the top ``k`` without heard items. Catalog-dependent steps
    (quality statistics, creators, audio, prompts) are skipped on data sets that have none, and
    the notes say so. ``context.params['pipeline']`` holds dotted config overrides.

    Returns
    -------
    recsys_spark.evaluation.methods.StagedResult
    """
    from .evaluation.methods import StagedResult
    from .ranking.din_spark import build_training_set, train_din
    from .ranking.fusion import final_score, fuse
    from .recall.als import ALSRecall
    from .recall.base import finalize_candidates
    from .recall.item_cf import ItemCF

    overrides = context.method_params("pipeline") if hasattr(context, "method_params") else {}
    from .config import load_config

    cfg = load_config(overrides=[f"{a}={b}" for a, b in overrides.items()])
    week, seeds, heard, events = context.week, context.seeds, context.heard, context.train_events
    seeds = seeds.join(users.select("user_id"), "user_id").persist()
    notes: Dict[str, str] = {"skipped": "quality filter, creator cap, diversity, content, prompt "
                                        "(the data set has no track statistics, creators, audio or prompts)"}
    rc = cfg.recall
    chans = []
    cf = ItemCF.from_conf(rc.item_cf, seed=cfg.pipeline.seed).fit(events)
    chans.append(("item_cf", cf.recommend(seeds.where(F.col("seed_rank") <= rc.item_cf.n_seeds), heard,
                                          n=rc.item_cf.candidates, per_seed=rc.item_cf.per_seed).persist()))
    als_model = ALSRecall.from_conf(rc.als, seed=cfg.pipeline.seed).fit(events)
    chans.append(("als", als_model.recommend(seeds, heard, n=rc.als.candidates, topk=rc.als.topk,
                                             batch_size=rc.als.topk_batch_size).persist()))
    pop = events.groupBy("track_id").agg(F.countDistinct("user_id").alias("score"))
    pop = pop.orderBy(F.col("score").desc(), "track_id").limit(rc.popularity.candidates + 500)
    pop_c = users.select("user_id").crossJoin(F.broadcast(pop)).select(
        "user_id", "track_id", F.col("score").cast("double").alias("score"), F.lit(None).cast("string").alias("seed_track_id"))
    chans.append(("popular", finalize_candidates(pop_c, heard, rc.popularity.candidates, "popular").persist()))
    union = None
    for _, c in chans:
        union = c if union is None else union.unionByName(c)
    fc = cfg.fusion
    fused = fuse(union, fc.channel_weights, method=fc.method, rrf_k=fc.rrf_k,
                 default_weight=fc.default_channel_weight).persist()
    stages = []
    dc = cfg.din
    scored = fused.withColumn("din_score", F.lit(None).cast("double"))
    if dc.enabled:
        import tempfile

        label_weeks = previous_weeks(week, dc.train_weeks)
        train = build_training_set(spark, events, label_weeks, negatives_pool_df=None,
                                   n_negatives=dc.negatives_per_positive, seed=dc.seed, max_history=dc.max_history,
                                   popularity_share=dc.popularity_share).persist()
        n_train = train.count()
        if n_train >= 200:
            artifact, metrics = train_din(train, embedding_dim=dc.embedding_dim, attention_hidden=dc.attention_hidden,
                                          mlp_hidden=dc.mlp_hidden, softmax_attention=dc.softmax_attention,
                                          use_content=False, max_history=dc.max_history, epochs=dc.epochs,
                                          batch_size=dc.batch_size, lr=dc.lr, patience=dc.patience, seed=dc.seed,
                                          device=dc.device, min_count=dc.min_count, max_rows=dc.max_train_rows)
            path = tempfile.mkdtemp(prefix="din-eval-")
            artifact.save(path)
            scored = score_din(spark, prerank(fused, dc.prerank_top_n), seeds, path, dc).persist()
            notes["din"] = f"auc={metrics.get('auc')} n_train={n_train}"
            notes["din_auc"] = metrics.get("auc")
            stages.append(("after DIN", scored.select("user_id", "track_id")))
        else:
            notes["din"] = f"skipped: {n_train} labelled examples in the {dc.train_weeks} weeks before the cutoff"
    final = final_score(scored, din_weight=fc.din_weight, recall_weight=fc.recall_weight, quality_weight=0.0)
    from .recall.popularity import top_n_per_user

    final = top_n_per_user(final.withColumnRenamed("final_score", "score"), k).select("user_id", "track_id", "score",
                                                                                      "rank")
    # the rows the final score ranks (after any pre-rank cut), each channel's rank kept (fusion tuning)
    cand_table = union.join(scored.select("user_id", "track_id", "din_score"), ["user_id", "track_id"])
    return StagedResult(final=final, channels=[(n, c.select("user_id", "track_id")) for n, c in chans],
                        stages=stages, notes=notes, candidates=cand_table)
