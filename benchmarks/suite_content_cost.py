"""What the content channel's two-tower costs a weekly run (``python benchmarks/run.py --suite
content_cost --root R [--week W] [--repeats 3]``).

On a platform whose weekly run has embedded its audio (``suite_two_tower.py``'s recipe: generate with
audio for every track, then ``jobs/weekly.py``), week W's ``load`` and ``recall.content`` stages
rerun (the runner with ``force``, shipped configuration) once per content model and repeat,
alternating ``similarity`` and ``two_tower`` so that a drift of the machine hits both. Per run the
``recall.content`` stage's seconds and the two-tower's own report (examples, training seconds,
building seconds: the examples built in Spark and collected, served or not), against the platform's
whole weekly run of W as recorded in its ``runs`` table (the denominator of "within 10% of the
run"). The reruns write ``recall_candidates[W, content]`` and ``runs`` rows in the platform's own
warehouse, nothing else.

Writes ``results/content_cost_<tag>.json`` (``--tag``, default the date). Time it on a quiet box.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time

MODELS = ("similarity", "two_tower")


def main(args) -> int:
    p = argparse.ArgumentParser(prog="suite content_cost")
    p.add_argument("--root", required=True, help="the platform's root (warehouse/ under it), audio embedded")
    p.add_argument("--week", default=None, help="week W (default: the platform's latest successful weekly run)")
    p.add_argument("--conf", default="local")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tag", default=dt.date.today().isoformat())
    opts = p.parse_args(args.extra)

    from pyspark.sql import functions as F

    from platform_session import open_platform
    from recsys_spark.config import load_config
    from recsys_spark.pipeline import run_pipeline
    from recsys_spark.pipeline.stages import LoadStage, RecallStage

    load_start = os.getloadavg()
    _, spark, tables = open_platform(opts.root, opts.conf, "bench-content-cost")
    runs = tables.read("runs").where(F.col("job") == "weekly")
    # a whole weekly run: one whose write stage succeeded (this suite's own reruns have none)
    full = runs.where((F.col("stage") == "write") & (F.col("status") == "succeeded")).select("run_id")
    whole = runs.where((F.col("stage") == "run") & (F.col("status") == "succeeded")).join(full, "run_id", "left_semi")
    if opts.week:
        whole = whole.where(F.col("week_start") == dt.date.fromisoformat(opts.week))
    ref = whole.orderBy(F.col("week_start").desc(), F.col("started_at").desc()).first()
    if ref is None:
        raise SystemExit(f"no successful weekly run{' of ' + opts.week if opts.week else ''} under {opts.root}")
    week = ref["week_start"]
    ref_stages = {r["stage"]: r["seconds"] for r in runs.where(F.col("run_id") == ref["run_id"]).collect()}
    n_audio = tables.read("track_embeddings").select("track_id").distinct().count()
    n_tracks = tables.read("tracks").count()

    results = []
    for i in range(opts.repeats):
        for model in MODELS:
            c = load_config(opts.conf, overrides=[f"recall.content.model={model}"])
            t0 = time.perf_counter()
            res = run_pipeline(spark, c, week, [LoadStage(), RecallStage("content")], tables=tables, force=True)
            wall = time.perf_counter() - t0
            rec = {r["stage"]: r for r in tables.read("runs").where(F.col("run_id") == res.run_id).collect()}
            content = rec["recall.content"]
            counts = dict(content["counts"] or {})
            results.append({"repeat": i, "model": model, "run_id": res.run_id, "wall_s": round(wall, 1),
                            "load_s": rec["load"]["seconds"], "content_s": content["seconds"],
                            "content_status": content["status"], "message": content["message"],
                            "rows_out": content["rows_out"], "counts": counts})
            print(f"[{i}] {model}: recall.content {content['seconds']:.1f}s {counts}")
    spark.stop()

    by = {m: [r["content_s"] for r in results if r["model"] == m] for m in MODELS}
    run_s = float((ref["counts"] or {}).get("total_seconds") or sum(v for k, v in ref_stages.items() if k != "run"))
    med = {m: round(statistics.median(v), 1) for m, v in by.items()}
    extra = med["two_tower"] - med["similarity"]
    out = {
        "suite": "content_cost", "code": "benchmarks/suite_content_cost.py", "date": opts.tag,
        "platform_root": opts.root, "week": week.isoformat(), "tracks": n_tracks,
        "tracks_with_audio_embedding": n_audio,
        "conf": f"conf/base.yaml + {opts.conf} overlay; recall.content.model per run",
        "runs": results, "content_seconds": by, "content_seconds_median": med,
        "reference_weekly_run": {"run_id": ref["run_id"], "stages_seconds": ref_stages,
                                 "total_seconds": round(run_s, 1)},
        # a first run embeds the whole catalogue; a later week embeds only its new tracks: the share of
        # the run without its embed stage is the conservative figure
        "two_tower_extra_seconds": round(extra, 1),
        "two_tower_extra_share_of_run": round(extra / run_s, 4),
        "two_tower_extra_share_of_run_without_embed": round(extra / max(run_s - ref_stages.get("embed", 0.0), 1e-9), 4),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "load_average_1min": {"start": round(load_start[0], 2), "end": round(os.getloadavg()[0], 2)},
        "note": "the shares compare the median extra seconds of recall.content with two_tower over similarity "
                "to the reference weekly run's total seconds (its run-stage total_seconds; that run's own content "
                "model), with and without that run's embed stage",
    }
    path = os.path.join(args.out, f"content_cost_{opts.tag}.json")
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1, default=str)
        fh.write("\n")
    print(json.dumps({k: out[k] for k in ("content_seconds", "content_seconds_median", "two_tower_extra_seconds",
                                          "two_tower_extra_share_of_run", "two_tower_extra_share_of_run_without_embed",
                                          "load_average_1min")}, indent=1))
    print("wrote", path)
    return 0
