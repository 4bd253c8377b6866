"""Ingestion throughput on clean synthetic data (issue 18): records per second of ``ingest_all``.

    python benchmarks/ingest_throughput.py --label after [--module /tmp/ingest_before.py] [--repeat 2]

Generates a small synthetic platform once (2,000 users by default, no bad rows), then ingests it
into a fresh warehouse ``--repeat`` times with the same command and records the wall time of each
run and the machine's load average (``os.getloadavg``) before and after: on a shared machine the
figures are indicative only. ``--module`` ingests with another version of ``ingest.py`` (a file
path; e.g. ``git show HEAD~1:recsys_spark/data/ingest.py > /tmp/before.py``) for a before/after
comparison with the same data and session. Results are merged into
``benchmarks/results/ingest_throughput.json`` under ``--label``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "ingest_throughput.json")


def _module(path):
    if not path:
        from recsys_spark.data import ingest
        return ingest
    spec = importlib.util.spec_from_file_location("recsys_spark.data._ingest_bench", path)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "recsys_spark.data"
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--label", required=True)
    p.add_argument("--module", default=None, help="path of an ingest.py to use instead of the package's")
    p.add_argument("--root", default="/tmp/ingest-throughput")
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args(argv)

    from recsys_spark.config import load_config
    from recsys_spark.data.generator import PlatformSpec, generate_platform
    from recsys_spark.spark import get_spark
    from recsys_spark.tables import Tables

    spark = get_spark(app_name="ingest-throughput", master="local[2]", driver_memory="3g", shuffle_partitions=4,
                      extra={"spark.ui.enabled": "false"})
    cfg = load_config(overrides=[f"generator.n_users={args.users}", "generator.bad_row_rate=0.0",
                                 "generator.audio_tracks=0", "generator.partitions=4"])
    raw = os.path.join(args.root, "raw")
    week = dt.date(2026, 11, 23)
    generate_platform(spark, raw, PlatformSpec.from_conf(cfg.generator), week)
    mod = _module(args.module)
    runs = []
    for i in range(args.repeat):
        wh = os.path.join(args.root, f"warehouse-{args.label}-{i}")
        shutil.rmtree(wh, ignore_errors=True)
        tables = Tables(spark, warehouse=wh)
        tables.read("tracks").count()  # table creation outside the timed part
        load0 = os.getloadavg()
        t0 = time.time()
        reps = mod.ingest_all(spark, tables, raw, mod.Rules.from_conf(cfg.ingest), f"bench-{i}",
                              now=dt.datetime(2026, 11, 23))
        secs = time.time() - t0
        n = sum(r.read for r in reps.values())
        runs.append({"seconds": round(secs, 2), "records": n, "records_per_s": round(n / secs, 1),
                     "loadavg_before": [round(x, 2) for x in load0],
                     "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                     "per_entity": {e: {"read": r.read, "loaded": r.loaded, "quarantined": r.quarantined}
                                    for e, r in reps.items()}})
        shutil.rmtree(wh, ignore_errors=True)
        print(json.dumps(runs[-1]))
    data = {}
    if os.path.exists(OUT):
        with open(OUT) as fh:
            data = json.load(fh)
    data[args.label] = {"module": args.module or "recsys_spark.data.ingest", "users": args.users,
                        "machine": "shared 2-core dev machine, other jobs running: indicative only",
                        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                        "runs": runs, "best_records_per_s": max(r["records_per_s"] for r in runs)}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as fh:
        json.dump(data, fh, indent=1)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
