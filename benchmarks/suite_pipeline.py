"""Suite "pipeline": the whole weekly run on a generated platform, measured stage by stage.

    python benchmarks/run.py --suite pipeline --size S|M|L

S = 10K users / 5K tracks, M = 100K users / 30K tracks, L = 1M users / 100K tracks, ~20 events per
user per month. The platform is generated with the distributed generator and cached under
``benchmarks/cache/<size>`` (raw files + ingested warehouse). Per stage it records wall time and
rows from the ``runs`` table; shuffle read/write bytes and task time from the Spark UI's REST API
(every stage's jobs run in the job group ``<run_id>:<stage>``, see ``RunLog``); driver memory
three ways: JVM heap *used* sampled every second (includes garbage, so it mostly shows the heap
size the GC let it grow to), JVM heap *live after a full GC* sampled every 20 s (what the driver
really retains: this is the figure that must stay flat as users grow), and the driver Python
process' peak RSS; plus the peak memory metrics Spark reports for the (local) executor.
Results: ``benchmarks/results/pipeline_<size>.json``.

``--prepare-only`` generates and ingests the platform into the cache (and back-fills the
embeddings of everything created before W-7, timed and cached, so the measured Monday embeds
one week of new tracks and prompts as in production) and stops. ``--cold`` skips that back-fill
(the measured run then embeds the whole catalog). ``--variant=NAME`` writes
``pipeline_<size>_<NAME>.json`` (e.g. ``--variant=noemb embeddings.enabled=false``).
Steady state: before the measured run, the recall stages of the weeks W's run reads
(``pipeline.exposure_weeks``: the DIN's label weeks) run untimed where the cached warehouse has no
candidates for them yet, as the Mondays before W would have (``warm_up`` in the JSON: the weeks
run by this process; weeks already there are left as they are, whatever configuration wrote them); ``--first-run`` skips that (W is then the
warehouse's first run: its DIN draws every negative by popularity).
``--resume`` runs the week without ``force``: the stages an earlier run of the same week and
config completed are skipped (the pipeline's own resume), and the result lists them with that
run's seconds and rows from the ``runs`` table (their Spark metrics died with that process).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import threading
import time
import urllib.request

SIZES = {
    "XS": dict(n_users=2_000, n_tracks=1_500, n_creators=300),   # a smoke run of the harness
    "S": dict(n_users=10_000, n_tracks=5_000, n_creators=1_000),
    "M": dict(n_users=100_000, n_tracks=30_000, n_creators=6_000),
    "L": dict(n_users=1_000_000, n_tracks=100_000, n_creators=20_000),
}
WEEK = dt.date(2026, 11, 23)
LOAD_AT_START = round(os.getloadavg()[0], 2)  # when the suite was imported, before it generates anything


class JvmMemorySampler(threading.Thread):
    """Samples the driver JVM's used heap every second and its live heap after a full GC every
    ``gc_every`` seconds (peaks kept)."""

    def __init__(self, spark, gc_every: float = 20.0):
        super().__init__(daemon=True)
        jvm = spark.sparkContext._jvm
        self.rt = jvm.java.lang.Runtime.getRuntime()
        self.system = jvm.java.lang.System
        self.gc_every = gc_every
        self.peak = 0
        self.peak_live = 0
        self.stop_flag = False

    def used(self) -> int:
        return self.rt.totalMemory() - self.rt.freeMemory()

    def run(self):
        last_gc = 0.0
        while not self.stop_flag:
            try:
                self.peak = max(self.peak, self.used())
                if time.time() - last_gc >= self.gc_every:
                    self.system.gc()
                    self.peak_live = max(self.peak_live, self.used())
                    last_gc = time.time()
            except Exception:
                return
            time.sleep(1.0)


def _rest(spark, path: str):
    url = spark.sparkContext.uiWebUrl
    if not url:
        return None
    app = spark.sparkContext.applicationId
    with urllib.request.urlopen(f"{url}/api/v1/applications/{app}/{path}", timeout=60) as fh:
        return json.loads(fh.read())


def spark_metrics(spark, run_id: str) -> dict:
    """Shuffle bytes, task time and executor memory peaks per pipeline stage (Spark REST API)."""
    try:
        jobs = _rest(spark, "jobs")
        stages = {s["stageId"]: s for s in _rest(spark, "stages?details=false")}
        executors = _rest(spark, "allexecutors")
    except Exception as exc:  # UI disabled or unreachable: figures are optional
        return {"error": f"{type(exc).__name__}: {exc}"}
    per: dict = {}
    for job in jobs or []:
        group = job.get("jobGroup") or ""
        if not group.startswith(run_id + ":"):
            continue
        m = per.setdefault(group.split(":", 1)[1], {"jobs": 0, "spark_stages": 0, "shuffle_read_bytes": 0,
                                                    "shuffle_write_bytes": 0, "input_bytes": 0,
                                                    "output_bytes": 0, "executor_run_ms": 0,
                                                    "spill_disk_bytes": 0})
        m["jobs"] += 1
        for sid in job.get("stageIds", []):
            s = stages.get(sid)
            if not s or s.get("status") != "COMPLETE":
                continue
            m["spark_stages"] += 1
            m["shuffle_read_bytes"] += s.get("shuffleReadBytes", 0)
            m["shuffle_write_bytes"] += s.get("shuffleWriteBytes", 0)
            m["input_bytes"] += s.get("inputBytes", 0)
            m["output_bytes"] += s.get("outputBytes", 0)
            m["executor_run_ms"] += s.get("executorRunTime", 0)
            m["spill_disk_bytes"] += s.get("diskBytesSpilled", 0)
            top = m.setdefault("top_spark_stages", [])
            top.append({"stage_id": sid, "name": s.get("name", "")[:120], "tasks": s.get("numTasks"),
                        "executor_run_ms": s.get("executorRunTime", 0),
                        "shuffle_read_mb": round(s.get("shuffleReadBytes", 0) / 2**20, 1),
                        "shuffle_write_mb": round(s.get("shuffleWriteBytes", 0) / 2**20, 1),
                        "spill_disk_mb": round(s.get("diskBytesSpilled", 0) / 2**20, 1)})
            top.sort(key=lambda x: -x["executor_run_ms"])
            del top[8:]  # the 8 costliest Spark stages of this pipeline stage (where its time goes)
    peaks = {}
    for ex in executors or []:
        pm = ex.get("peakMemoryMetrics") or {}
        peaks[ex.get("id", "?")] = {k: pm.get(k) for k in ("JVMHeapMemory", "JVMOffHeapMemory",
                                                          "OnHeapExecutionMemory", "OnHeapStorageMemory",
                                                          "ProcessTreePythonRSSMemory", "ProcessTreeJVMRSSMemory")
                                    if k in pm}
        peaks[ex.get("id", "?")]["maxMemory"] = ex.get("maxMemory")
    return {"per_stage": per, "executor_peaks": peaks}


def forget_week_embeddings(spark, tables, as_of: dt.datetime) -> dict:
    """Put the embedding tables back in the steady state of the back-fill: delete the embeddings
    of the tracks and prompts created at or after ``as_of`` (the measured week's new items), which
    an earlier measured run of the same cache wrote. Without this a second run of a size would
    find the week already embedded and time an empty embed stage. Delta MERGE ... DELETE."""
    from pyspark.sql import functions as F

    new_tracks = tables.read("tracks").where(F.col("created_at") >= F.lit(as_of)).select("track_id")
    new_prompts = tables.read("user_prompts").where(F.col("created_at") >= F.lit(as_of)) \
        .select(F.col("prompt_id").cast("string").alias("id"), F.lit("user_prompt").alias("kind"))
    keys = new_prompts.unionByName(new_tracks.select(F.col("track_id").alias("id"), F.lit("track_prompt").alias("kind")))
    out = {}
    for name, src, cond in (("track_embeddings", new_tracks, "t.track_id = s.track_id"),
                            ("prompt_embeddings", keys, "t.id = s.id AND t.kind = s.kind")):
        before = tables.read(name).count()
        tables.delta(name).alias("t").merge(src.alias("s"), cond).whenMatchedDelete().execute()
        out[name] = before - tables.read(name).count()
    print(f"steady state restored: deleted {out} embeddings of items created since {as_of}")
    return out


def main(args) -> int:
    from recsys_spark.cli import setup_logging
    from recsys_spark.config import load_config
    from recsys_spark.data.generator import PlatformSpec, generate_platform
    from recsys_spark.data.ingest import Rules, ingest_all
    from recsys_spark.pipeline import run_weekly
    from recsys_spark.spark import get_spark
    from recsys_spark.tables import Tables

    setup_logging("INFO")
    size = SIZES[args.size]
    here = os.path.dirname(os.path.abspath(__file__))
    cache = os.path.join(here, "cache", args.size)
    overrides = [f"generator.{k}={v}" for k, v in size.items()] + [
        "generator.events_per_user_week=5", "generator.n_weeks=6", "generator.audio_tracks=-1",
        "generator.partitions=16", f"storage.warehouse={cache}/warehouse", f"storage.model_dir={cache}/models",
        "spark.shuffle_partitions=16",
    ] + list(getattr(args, "extra", []) or [])
    flags = [o for o in overrides if o.startswith("--")]
    overrides = [o for o in overrides if "=" in o and not o.startswith("--")]
    variant = next((f.split("=", 1)[1] for f in flags if f.startswith("--variant=")), "")
    cfg = load_config(overrides=overrides)
    spark = get_spark(app_name=f"bench-pipeline-{args.size}", master="local[2]", driver_memory="12g",
                      shuffle_partitions=cfg.spark.shuffle_partitions,
                      extra={"spark.ui.enabled": "true", "spark.ui.port": "4077", "spark.ui.retainedJobs": "20000",
                             "spark.ui.retainedStages": "50000", "spark.ui.retainedTasks": "100000",
                             "spark.executor.processTreeMetrics.enabled": "true"})
    tables = Tables.from_config(spark, cfg.storage)
    t0 = time.time()
    counts = generate_platform(spark, os.path.join(cache, "raw"), PlatformSpec.from_conf(cfg.generator), WEEK)
    gen_s = time.time() - t0
    ingest = {}
    if not tables.exists("interactions"):
        t0 = time.time()
        reps = ingest_all(spark, tables, os.path.join(cache, "raw"), Rules.from_conf(cfg.ingest), "bench-ingest",
                          now=dt.datetime(2026, 11, 23))
        ingest = {k: {"read": r.read, "loaded": r.loaded, "quarantined": r.quarantined, "seconds": r.seconds}
                  for k, r in reps.items()}
        ingest["seconds"] = round(time.time() - t0, 1)
    # Steady state: the Mondays before W already embedded the catalog and the prompts written
    # before W-7 (the embed stage is incremental), so the measured run embeds one week's new
    # tracks and prompts, as every Monday does. The back-fill is timed once and cached.
    backfill = {}
    marker = os.path.join(cache, "_EMBEDDINGS_BACKFILLED.json")
    if cfg.embeddings.enabled and "--cold" not in (getattr(args, "extra", []) or []):
        if os.path.exists(marker):
            with open(marker) as fh:
                backfill = json.load(fh)
        else:
            from recsys_spark.embeddings.clap import EncoderSpec
            from recsys_spark.embeddings.jobs import run_embedding_stage

            t0 = time.time()
            as_of = dt.datetime.combine(WEEK - dt.timedelta(days=7), dt.time())
            ec = cfg.embeddings
            backfill = run_embedding_stage(spark, tables, EncoderSpec.from_conf(ec), batch_size=ec.batch_size,
                                           run_id="bench-backfill", as_of=as_of,
                                           track_prompts=cfg.recall.prompt.target == "track_prompt")
            backfill = {**backfill, "as_of": as_of.isoformat(), "seconds": round(time.time() - t0, 1)}
            with open(marker, "w") as fh:
                json.dump(backfill, fh, indent=1)
    if backfill and "as_of" in backfill:
        backfill = {**backfill, "reset_before_run": forget_week_embeddings(spark, tables, dt.datetime.fromisoformat(
            backfill["as_of"]))}
    # Steady state, continued: the Mondays before W ran too, so W's train.din finds the recall
    # candidates of its label weeks (its exposure negatives). Their recall stages run here with the
    # measured configuration, untimed, where the cache has none yet (pipeline.warm_up);
    # --first-run measures W as the warehouse's first run instead.
    steady = "--first-run" not in (getattr(args, "extra", []) or [])
    warm = []
    if steady:
        from recsys_spark.pipeline import warm_up

        warm = warm_up(spark, cfg, WEEK, tables)
    if "--prepare-only" in (getattr(args, "extra", []) or []):
        print(json.dumps({"size": args.size, "platform": counts, "generate_seconds": round(gen_s, 1),
                          "ingest": ingest, "embedding_backfill": backfill, "warm_up": warm}, indent=1, default=str))
        return 0
    sampler = JvmMemorySampler(spark)
    sampler.start()
    t0 = time.time()
    resume = "--resume" in (getattr(args, "extra", []) or [])
    res = run_weekly(spark, cfg, WEEK, tables=tables, force=not resume)
    wall = time.time() - t0
    sampler.stop_flag = True
    metrics = spark_metrics(spark, res.run_id)
    runs = tables.read("runs").where(f"run_id = '{res.run_id}'").orderBy("started_at").collect()
    per = metrics.get("per_stage", {})
    stages = [{"stage": r["stage"], "status": r["status"], "seconds": r["seconds"], "rows_in": r["rows_in"],
               "rows_out": r["rows_out"], "skipped": r["skipped"], "counts": dict(r["counts"] or {}),
               **per.get(r["stage"], {})} for r in runs]
    earlier = {}
    if resume:  # the stages this run skipped as done: that run's own record
        from pyspark.sql import functions as F

        done = (tables.read("runs").where((F.col("week_start") == F.lit(WEEK)) & (F.col("status") == "succeeded")
                                          & (F.col("config_hash") == cfg.fingerprint()) & (F.col("run_id") != res.run_id))
                .orderBy("started_at").collect())
        for r in done:
            earlier[r["stage"]] = {"stage": r["stage"], "status": "succeeded", "seconds": r["seconds"],
                                   "rows_in": r["rows_in"], "rows_out": r["rows_out"], "skipped": None,
                                   "run_id": r["run_id"], "note": "measured by the earlier run (resumed from it)"}
        stages = [earlier.get(s["stage"], s) if s["status"] == "skipped" and s["stage"] in earlier else s
                  for s in stages]
    # issue 17's figures: how much of the catalogue has audio, what the measured Monday embedded
    from pyspark.sql import functions as F

    cat = tables.read("tracks").agg(F.count("*").alias("n"),
                                    F.count(F.when(F.trim(F.col("audio_uri")) != "", 1)).alias("audio")).first()
    embed_row = next((r for r in runs if r["stage"] == "embed"), None)
    embed_counts = (embed_row.asDict().get("counts") or {}) if embed_row is not None else {}
    audio = {"audio_coverage": round(cat["audio"] / max(1, cat["n"]), 4), "catalog_tracks": cat["n"],
             "tracks_with_audio": cat["audio"],
             "new_tracks_embedded": int(embed_counts.get("tracks_embedded", 0)),
             "embed_seconds": None if embed_row is None else embed_row["seconds"],
             "embed_status": None if embed_row is None else embed_row["status"]}
    out = {
        "suite": "pipeline", "size": args.size, "variant": variant, **audio, "platform": {**size, **counts}, "generate_seconds": round(gen_s, 1),
        "ingest": ingest, "embedding_backfill": backfill, "resumed": resume,
        "steady_state": steady,
        "warm_up": warm,  # the earlier weeks' recall stages this process ran (untimed; [] when already there)
        "weekly_seconds": round(wall + sum((s["seconds"] or 0) for s in earlier.values()
                                           if s["stage"] not in ("load", "run")), 1),
        "this_process_seconds": round(wall, 1), "users": res.users, "rows": res.rows,
        "short_users": res.short_users, "stages": stages,
        "peak_driver_jvm_heap_mb": round(sampler.peak / 2**20, 1),
        "peak_driver_jvm_live_heap_after_gc_mb": round(sampler.peak_live / 2**20, 1),
        "executor_peaks": metrics.get("executor_peaks"), "metrics_error": metrics.get("error"),
        "overrides": overrides,
        "peak_driver_python_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machine": f"{os.cpu_count()} cores, local[2]", "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        "load_avg_1m_at_start": LOAD_AT_START,
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    path = os.path.join(args.out, f"pipeline_{args.size}{'_' + variant if variant else ''}.json")
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1, default=str)
    print(json.dumps(out, indent=1, default=str))
    return 0
