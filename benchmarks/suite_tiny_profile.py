"""Where a tiny weekly run's time goes (``python benchmarks/run.py --suite tiny_profile``).

The unit suite's costliest fixture is the tiny platform (``tests/conftest.py``: ``TINY_OVERRIDES``,
120 users, 260 tracks, 6 with audio) and its two weekly runs, W-7 without embeddings and W with
them. This suite does exactly that in one local[2] session configured as the test session, with
Spark's event log on, and reports per step (generate, ingest, each stage of each run) its wall
seconds from the run log and its Spark jobs, tasks and summed job seconds from the event log (the
jobs carry the runner's ``<run_id>:<stage>`` job group). What is left between the job seconds and
the wall seconds is driver-side work: planning, Delta log reads and commits, Python.

Writes ``results/tiny_profile_<date>.json`` (``--tag`` replaces the date). Time it on a quiet box.
"""

from __future__ import annotations

import collections
import datetime as dt
import glob
import json
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _jobs_by_group(event_dir: str) -> dict:
    """``{group: {"jobs", "tasks", "job_seconds"}}`` from an uncompressed event log."""
    agg = collections.defaultdict(lambda: {"jobs": 0, "tasks": 0, "job_seconds": 0.0})
    jobs, stage_group = {}, {}
    for path in sorted(glob.glob(os.path.join(event_dir, "**", "events_*"), recursive=True)
                       + glob.glob(os.path.join(event_dir, "local-*"))):
        with open(path) as fh:
            for line in fh:
                e = json.loads(line)
                kind = e["Event"]
                if kind == "SparkListenerJobStart":
                    group = (e.get("Properties") or {}).get("spark.jobGroup.id") or "?"
                    if group.startswith("weekly-") and ":" in group:   # weekly-<week>-<stamp>-<hex>:<stage>
                        run_id, stage = group.split(":", 1)
                        group = f"{run_id[:len('weekly-2026-01-01')]}:{stage}"
                    jobs[e["Job ID"]] = (group, e["Submission Time"])
                    for sid in e["Stage IDs"]:
                        stage_group[sid] = group
                elif kind == "SparkListenerJobEnd" and e["Job ID"] in jobs:
                    group, t0 = jobs[e["Job ID"]]
                    agg[group]["jobs"] += 1
                    agg[group]["job_seconds"] += (e["Completion Time"] - t0) / 1000.0
                elif kind == "SparkListenerTaskEnd":
                    agg[stage_group.get(e["Stage ID"], "?")]["tasks"] += 1
    return {g: {**v, "job_seconds": round(v["job_seconds"], 1)} for g, v in agg.items()}


def main(args) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="suite tiny_profile")
    p.add_argument("--tag", default=dt.date.today().isoformat())
    opts = p.parse_args(args.extra)
    sys.path.insert(0, os.path.join(REPO, "tests"))
    # the test session's own settings and the tiny fixtures' own recipe
    from conftest import (TINY_PREV_OVERRIDES, TINY_WEEK, _session, generate_tiny_platform, ingest_tiny_platform,
                          tiny_overrides)

    from recsys_spark.config import load_config
    from recsys_spark.pipeline import run_weekly
    from recsys_spark.runlog import tag_jobs

    load_start = os.getloadavg()
    events = tempfile.mkdtemp(prefix="tiny-profile-events-")
    t0 = time.time()
    # the test session, plus an uncompressed event log
    spark = _session(tempfile.mkdtemp(prefix="tiny-profile-wh-"),
                     {"spark.eventLog.enabled": "true", "spark.eventLog.dir": events, "spark.eventLog.compress": "false"})
    steps = {"session_start_s": round(time.time() - t0, 1)}
    root = tempfile.mkdtemp(prefix="tiny-profile-")
    week = dt.date.fromisoformat(TINY_WEEK)

    overrides = tiny_overrides(root, [f"storage.model_dir={root}/models"])
    cfg = load_config(overrides=overrides)

    t0 = time.time()
    tag_jobs(spark, "generate")
    generate_tiny_platform(spark, root, cfg)
    steps["generate_s"] = round(time.time() - t0, 1)
    t0 = time.time()
    tag_jobs(spark, "ingest")
    tables, _ = ingest_tiny_platform(spark, root, cfg)
    steps["ingest_s"] = round(time.time() - t0, 1)
    runs = {}
    for label, when, extra in (("W-7", week - dt.timedelta(days=7), TINY_PREV_OVERRIDES), ("W", week, [])):
        t0 = time.time()
        res = run_weekly(spark, load_config(overrides=overrides + extra), when, tables=tables)
        steps[f"weekly_{label}_s"] = round(time.time() - t0, 1)
        print(res.summary)
        runs[label] = {"week": when.isoformat(), "run_id": res.run_id, "users": res.users, "rows": res.rows}
    stage_rows = (tables.read("runs").where("job = 'weekly'").orderBy("started_at")   # pipeline order
                  .select("run_id", "stage", "status", "seconds").collect())
    spark.stop()

    groups = _jobs_by_group(events)
    for label, run in runs.items():
        prefix = f"weekly-{run['week']}"
        run["stages"] = {r["stage"]: {"status": r["status"], "wall_s": r["seconds"],
                                      **groups.get(f"{prefix}:{r['stage']}", {"jobs": 0, "tasks": 0, "job_seconds": 0.0})}
                         for r in stage_rows if r["run_id"] == run["run_id"]}
    totals = {"jobs": sum(g["jobs"] for g in groups.values()), "tasks": sum(g["tasks"] for g in groups.values()),
              "job_seconds": round(sum(g["job_seconds"] for g in groups.values()), 1)}
    out = {
        "what": "one tiny platform (tests/conftest.py TINY_OVERRIDES) generated, ingested and run for weeks W-7 "
                "(embeddings off) and W, in one local[2] session with the unit tests' settings",
        "date": opts.tag, "code": "benchmarks/suite_tiny_profile.py", "steps": steps,
        "spark_totals": totals, "generate": groups.get("generate"), "ingest": groups.get("ingest"), "runs": runs,
        "wall_s": round(sum(steps.values()), 1),
        "load_average_1min": {"start": round(load_start[0], 2), "end": round(os.getloadavg()[0], 2)},
        "note": "job_seconds sum each Spark job's submission-to-completion time; the rest of a stage's wall time "
                "is driver-side work (planning, Delta log reads and commits, Python)",
    }
    path = os.path.join(args.out, f"tiny_profile_{opts.tag}.json")
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")
    print(json.dumps({k: out[k] for k in ("steps", "spark_totals", "wall_s", "load_average_1min")}, indent=1))
    print("wrote", path)
    return 0
