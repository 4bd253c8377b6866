"""Benchmark suite "aesthetics": what Audiobox Aesthetics costs per track beside CLAP, on CPU.

``python benchmarks/run.py --suite aesthetics [--short N] [--long N]`` writes
``<out>/aesthetics_cpu.json``.

One run, one Spark session (``local[2]``, the machine's 2 cores), the real stage functions the
weekly embed stage calls (:func:`recsys_spark.embeddings.jobs.embed_tracks` for CLAP audio,
:func:`recsys_spark.embeddings.jobs.score_aesthetics` for the aesthetics model: ``mapInPandas`` over
audio files, decode, resample, windows, model), with the shipped settings:
``clap`` is ``conf/base.yaml``'s (what cluster and Databricks runs use: the HTSAT-base audio tower,
``stft=fft``, ``audio_precision=auto``), ``clap_local`` is ``conf/local.yaml``'s (HTSAT-tiny, what
``make run`` uses), ``aesthetics`` is ``conf/base.yaml``'s (``precision=auto``, ``max_windows=6``,
``batch_size=8``); ``auto`` is fp32 on a CPU without native bfloat16. All on the same files written
by the synthetic platform's synthesiser:

* ``short``: 4 s clips (the synthetic platform's): one window per track for both models (CLAP's
  window is 10 s repeat-padded; the aesthetics model's is 10 s zero-padded and masked);
* ``long``: 60 s tracks: 6 windows per track for both.

Each model is built in every Python worker by a warm-up job first (not timed: an executor builds
it once). ``tracks_per_s_per_core`` = tracks / wall seconds of the stage / cores. Untrained weights
(no checkpoint can be downloaded here) cost the same as the released ones (same architecture).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time


def main(args) -> int:
    p = argparse.ArgumentParser(prog="aesthetics")
    p.add_argument("--short", type=int, default=16, help="4 s tracks (1 window each)")
    p.add_argument("--long", type=int, default=4, help="60 s tracks (6 windows each)")
    p.add_argument("--cores", type=int, default=2)
    opts = p.parse_args(args.extra)

    import dataclasses

    import torch

    from recsys_spark.config import CONF_DIR, load_config
    from recsys_spark.embeddings.aesthetics import AestheticsSpec
    from recsys_spark.embeddings.clap import EncoderSpec, native_bf16, resolve_precision
    from recsys_spark.embeddings.jobs import embed_tracks, score_aesthetics
    from recsys_spark.spark import get_spark
    from suite_clap_cpu import _git, write_audio

    cfg = load_config(str(CONF_DIR / "base.yaml"))
    local = load_config("local")
    # the shipped audio settings; the offline text tower (text is not embedded here)
    clap = dataclasses.replace(EncoderSpec.from_conf(cfg.embeddings), text_model="transformer")
    clap_local = dataclasses.replace(EncoderSpec.from_conf(local.embeddings), text_model="transformer")
    aes = AestheticsSpec.from_conf(cfg.aesthetics)
    cpu = torch.device("cpu")
    res = {"suite": "aesthetics", "code": _git(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                       "cpu_native_bf16": native_bf16(cpu), "load_avg_1m_at_start": round(os.getloadavg()[0], 2)},
           "path": "recsys_spark.embeddings.jobs.embed_tracks / score_aesthetics (mapInPandas) on local[%d], "
                   "one Spark session" % opts.cores,
           "settings": {"clap": dataclasses.asdict(clap) | {"resolved_precision": resolve_precision(clap.audio_precision, cpu)},
                        "clap_local": dataclasses.asdict(clap_local),
                        "aesthetics": dataclasses.asdict(aes) | {"batch_size": cfg.aesthetics.batch_size,
                                                                 "resolved_precision": resolve_precision(aes.precision, cpu)}},
           "weights": "untrained (no checkpoint; same architecture and cost as the releases)", "runs": []}
    tmp = tempfile.mkdtemp(prefix="aes-cpu-")
    sets = {"short": (write_audio(tmp, opts.short, 4.0, 0), 4.0),
            "long": (write_audio(tmp, opts.long, 60.0, 10_000), 60.0)}
    warm = write_audio(tmp, 2 * opts.cores, 4.0, 20_000)
    spark = get_spark(app_name="bench-aesthetics", master=f"local[{opts.cores}]", driver_memory="4g",
                      shuffle_partitions=opts.cores,
                      extra={"spark.default.parallelism": str(opts.cores), "spark.ui.enabled": "false"})
    models = {
        "clap": lambda df, bs: embed_tracks(spark, df, None, clap, batch_size=bs)[0],
        "clap_local": lambda df, bs: embed_tracks(spark, df, None, clap_local, batch_size=bs)[0],
        "aesthetics": lambda df, bs: score_aesthetics(spark, df, None, aes, batch_size=bs)[0],
    }
    batch = {"clap": cfg.embeddings.batch_size, "clap_local": local.embeddings.batch_size,
             "aesthetics": cfg.aesthetics.batch_size}
    try:
        for name, run in models.items():
            run(spark.createDataFrame(warm, "track_id string, audio_uri string"), 1).count()  # build in each worker
            for set_name, (rows, seconds) in sets.items():
                df = spark.createDataFrame(rows, "track_id string, audio_uri string")
                load0 = os.getloadavg()[0]
                t0 = time.perf_counter()
                out = run(df, batch[name]).select("track_id", "n_windows").collect()
                secs = time.perf_counter() - t0
                windows = int(sum(r.n_windows for r in out))
                row = {"model": name, "tracks": set_name, "track_seconds": seconds, "n_tracks": len(rows),
                       "done": len(out), "windows": windows, "seconds": round(secs, 2), "cores": opts.cores,
                       "tracks_per_s_per_core": round(len(out) / secs / opts.cores, 4),
                       "core_seconds_per_track": round(secs * opts.cores / max(1, len(out)), 3),
                       "core_seconds_per_window": round(secs * opts.cores / max(1, windows), 3),
                       "load_avg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)]}
                res["runs"].append(row)
                print(json.dumps(row), flush=True)
    finally:
        spark.stop()
    for ref in ("clap", "clap_local"):
        for set_name in sets:
            c = next(r for r in res["runs"] if r["model"] == ref and r["tracks"] == set_name)
            a = next(r for r in res["runs"] if r["model"] == "aesthetics" and r["tracks"] == set_name)
            res.setdefault(f"aesthetics_vs_{ref}_cost", {})[set_name] = round(
                a["core_seconds_per_track"] / c["core_seconds_per_track"], 1)
    res["gpu"] = ("not measured: no GPU was lent to this session; benchmarks/gpu_check.py --parts aes is the "
                  "prepared check (CPU vs CUDA scores, fp32 and bf16, clips/s)")
    res["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    os.makedirs(args.out, exist_ok=True)
    out = os.path.join(args.out, "aesthetics_cpu.json")
    with open(out, "w") as fh:
        json.dump(res, fh, indent=2)
    print("wrote", out, json.dumps(res["aesthetics_vs_clap_cost"]), json.dumps(res["aesthetics_vs_clap_local_cost"]))
    return 0
