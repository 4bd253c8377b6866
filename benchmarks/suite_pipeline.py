"""Suite "pipeline": the whole weekly run on a generated platform, measured stage by stage.

    python benchmarks/run.py --suite pipeline --size S|M|L

S = 10K users / 5K tracks, M = 100K users / 30K tracks, L = 1M users / 100K tracks, ~20 events per
user per month. The platform is generated with the distributed generator and cached under
``benchmarks/cache/<size>`` (raw files + ingested warehouse). Per stage it records wall time and
rows from the ``runs`` table, Spark shuffle bytes (from the status tracker / REST-free
``statusTracker``), and peak driver memory (JVM heap used, sampled by a thread; Python RSS).
Results: ``benchmarks/results/pipeline_<size>.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import threading
import time

SIZES = {
    "S": dict(n_users=10_000, n_tracks=5_000, n_creators=1_000),
    "M": dict(n_users=100_000, n_tracks=30_000, n_creators=6_000),
    "L": dict(n_users=1_000_000, n_tracks=100_000, n_creators=20_000),
}
WEEK = dt.date(2026, 11, 23)


class JvmMemorySampler(threading.Thread):
    """Samples the driver JVM's used heap every second (peak kept)."""

    def __init__(self, spark):
        super().__init__(daemon=True)
        self.rt = spark.sparkContext._jvm.java.lang.Runtime.getRuntime()
        self.peak = 0
        self.stop_flag = False

    def run(self):
        while not self.stop_flag:
            try:
                self.peak = max(self.peak, self.rt.totalMemory() - self.rt.freeMemory())
            except Exception:
                return
            time.sleep(1.0)


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
        "generator.events_per_user_week=5", "generator.n_weeks=6", "generator.audio_tracks=50",
        "generator.partitions=16", f"storage.warehouse={cache}/warehouse", f"storage.model_dir={cache}/models",
        "spark.shuffle_partitions=16",
    ] + list(getattr(args, "extra", []) or [])
    cfg = load_config(overrides=[o for o in overrides if "=" in o])
    spark = get_spark(app_name=f"bench-pipeline-{args.size}", master="local[2]", driver_memory="12g",
                      shuffle_partitions=cfg.spark.shuffle_partitions)
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
    sampler = JvmMemorySampler(spark)
    sampler.start()
    t0 = time.time()
    res = run_weekly(spark, cfg, WEEK, tables=tables, force=True)
    wall = time.time() - t0
    sampler.stop_flag = True
    runs = tables.read("runs").where(f"run_id = '{res.run_id}'").orderBy("started_at").collect()
    stages = [{"stage": r["stage"], "status": r["status"], "seconds": r["seconds"], "rows_in": r["rows_in"],
               "rows_out": r["rows_out"], "skipped": r["skipped"]} for r in runs]
    out = {
        "suite": "pipeline", "size": args.size, "platform": {**size, **counts}, "generate_seconds": round(gen_s, 1),
        "ingest": ingest, "weekly_seconds": round(wall, 1), "users": res.users, "rows": res.rows,
        "short_users": res.short_users, "stages": stages,
        "peak_driver_jvm_heap_mb": round(sampler.peak / 2**20, 1),
        "peak_driver_python_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machine": f"{os.cpu_count()} cores, local[2]",
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    path = os.path.join(args.out, f"pipeline_{args.size}.json")
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1, default=str)
    print(json.dumps(out, indent=1, default=str))
    return 0
