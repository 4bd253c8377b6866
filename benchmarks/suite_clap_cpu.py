"""Benchmark suite "clap_cpu": CPU CLAP audio embedding through the embed stage, before and after.

``python benchmarks/run.py --suite clap_cpu [--models HTSAT-tiny,HTSAT-base] [--short N] [--long N]``
writes ``<out>/clap_cpu.json``.

One run, one Spark session (``local[2]``, the machine's 2 cores), the real stage function
(:func:`recsys_spark.embeddings.jobs.embed_tracks`: ``mapInPandas`` over audio files, decode,
resample, windows, CLAP) on audio files written by the synthetic platform's own synthesiser
(:func:`recsys_spark.data.audio_synth.synth_track`, 48 kHz wav):

* ``short``: 4 s clips (the synthetic platform's): one 10 s window per track;
* ``long``: 60 s tracks: ``max_windows`` = 6 windows per track, what a 2-4 minute song costs.

Each setting embeds the same files; the model is built in every Python worker by a warm-up job
first (not timed: an executor builds it once). Settings, in the order run:

* ``before``: the path as shipped until this suite existed: laion-clap's DFT-convolution
  spectrogram, fp32, torch's default threads in every task (``stft=conv, audio_precision=fp32,
  threads_per_task=-1``);
* ``threads``: + one torch thread per task CPU;
* ``threads+fft``: + ``torch.stft`` front end;
* ``after``: the shipped defaults (``stft=fft, audio_precision=auto, threads_per_task=0``; auto
  resolves to bf16 on this CPU, AVX512-BF16);
* ``after, max_windows=3`` (long tracks only): the windows-per-track knob at half its default; a
  different embedding (the mean of 3 windows, not 6), so its cosine is not a precision figure.

``tracks_per_s_per_core`` = tracks / wall seconds of the stage / cores. The cosine of every track's
``after`` vector to its ``before`` vector is reported (min and mean), and a single-process profile
(one thread) says where a window's time goes: decode + resample, the spectrogram / log-mel front
end, the HTSAT transformer, the rest (int16 round trip, projection, Python).
Untrained weights (no checkpoint can be downloaded here) cost the same as trained ones.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time

import numpy as np

SETTINGS = [
    ("before", dict(stft="conv", audio_precision="fp32", threads_per_task=-1)),
    ("threads", dict(stft="conv", audio_precision="fp32", threads_per_task=0)),
    ("threads+fft", dict(stft="fft", audio_precision="fp32", threads_per_task=0)),
    ("after", dict(stft="fft", audio_precision="auto", threads_per_task=0)),
    # not a precision change: the configurable windows per track (long tracks only; cosine is to the
    # 6-window fp32 vector, and the synthetic tracks are steadier than real songs, so it flatters)
    ("after, max_windows=3", dict(stft="fft", audio_precision="auto", threads_per_task=0, max_windows=3)),
]


def _git() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except OSError:
        return ""


def write_audio(folder: str, n: int, seconds: float, offset: int, sr: int = 48000):
    """``n`` synthetic tracks of ``seconds`` as wav files; returns ``[(track_id, file uri)]``."""
    import soundfile as sf

    from recsys_spark.data import vocab
    from recsys_spark.data.audio_synth import synth_track

    rows = []
    for i in range(n):
        tid = f"t{offset + i:05d}"
        path = os.path.join(folder, f"{tid}.wav")
        sf.write(path, synth_track(i % len(vocab.STYLES), offset + i, seconds, sr, 7), sr, subtype="PCM_16")
        rows.append((tid, "file://" + path))
    return rows


def profile_window(model: str, settings: dict, uri: str, n: int = 8) -> dict:
    """Seconds per window of each part of the path, one process, one thread (median of 3)."""
    import torch

    from recsys_spark.embeddings.audio import load_audio
    from recsys_spark.embeddings.clap import ClapEncoder, EncoderSpec

    torch.set_num_threads(1)
    enc = ClapEncoder(EncoderSpec(audio_model=model, text_model="transformer", device="cpu",
                                  **{k: v for k, v in settings.items() if k != "threads_per_task"}))
    branch = enc.model.audio_branch

    def timed(fn):
        fn()
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts))

    path = uri[len("file://"):]
    wave = load_audio(uri)
    wins = np.concatenate([enc.windows(wave)] * n)[:n]
    x = torch.from_numpy(wins)
    decode = timed(lambda: load_audio("file://" + path)) / max(1, len(enc.windows(wave)))
    with torch.inference_mode(), enc._autocast():
        front = timed(lambda: branch.logmel_extractor(branch.spectrogram_extractor(x))) / n
        mel = branch.logmel_extractor(branch.spectrogram_extractor(x)).transpose(1, 3)
        img = branch.reshape_wav2img(branch.bn0(mel).transpose(1, 3))
        htsat = timed(lambda: branch.forward_features(img)) / n
    total = timed(lambda: enc.embed_windows(wins, batch_size=n)) / n
    return {"precision": enc.precision, "decode_resample_s": round(decode, 4), "front_end_s": round(front, 4),
            "htsat_s": round(htsat, 4), "rest_s": round(max(0.0, total - front - htsat), 4),
            "window_s": round(total + decode, 4)}


def main(args) -> int:
    p = argparse.ArgumentParser(prog="clap_cpu")
    p.add_argument("--models", default="HTSAT-tiny,HTSAT-base")
    p.add_argument("--short", type=int, default=96, help="4 s tracks (1 window each)")
    p.add_argument("--long", type=int, default=24, help="60 s tracks (6 windows each)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--cores", type=int, default=2)
    opts = p.parse_args(args.extra)

    from recsys_spark.embeddings.clap import EncoderSpec, native_bf16
    from recsys_spark.embeddings.jobs import embed_tracks
    from recsys_spark.spark import get_spark

    import torch

    res = {"suite": "clap_cpu", "code": _git(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                       "cpu_native_bf16": native_bf16(torch.device("cpu")),
                       "load_avg_1m_at_start": round(os.getloadavg()[0], 2)},
           "path": "recsys_spark.embeddings.jobs.embed_tracks (mapInPandas) on local[%d], one Spark session"
                   % opts.cores,
           "batch_size": opts.batch_size, "settings": dict(SETTINGS), "weights": "untrained (no checkpoint)",
           "runs": [], "profile": []}
    tmp = tempfile.mkdtemp(prefix="clap-cpu-")
    sets = {"short": (write_audio(tmp, opts.short, 4.0, 0), 4.0),
            "long": (write_audio(tmp, opts.long, 60.0, 10_000), 60.0)}
    warm = write_audio(tmp, 4 * opts.cores, 4.0, 20_000)
    spark = get_spark(app_name="bench-clap-cpu", master=f"local[{opts.cores}]", driver_memory="4g",
                      shuffle_partitions=opts.cores,
                      extra={"spark.default.parallelism": str(opts.cores), "spark.ui.enabled": "false"})
    try:
        for model in opts.models.split(","):
            vecs = {}
            for name, settings in SETTINGS:
                spec = EncoderSpec(audio_model=model, text_model="transformer", **settings)
                df = spark.createDataFrame(warm, "track_id string, audio_uri string")
                embed_tracks(spark, df, None, spec, batch_size=2)[0].count()  # builds the model in each worker
                for set_name, (rows, seconds) in sets.items():
                    if not rows or ("max_windows" in settings and set_name == "short"):
                        continue
                    df = spark.createDataFrame(rows, "track_id string, audio_uri string")
                    load0 = os.getloadavg()[0]
                    t0 = time.perf_counter()
                    emb, _ = embed_tracks(spark, df, None, spec, batch_size=opts.batch_size)
                    got = {r.track_id: (np.asarray(r.embedding, np.float32), r.n_windows)
                           for r in emb.select("track_id", "embedding", "n_windows").collect()}
                    secs = time.perf_counter() - t0
                    windows = int(sum(w for _, w in got.values()))
                    vecs[(name, set_name)] = {k: v for k, (v, _) in got.items()}
                    row = {"model": model, "setting": name, "tracks": set_name, "track_seconds": seconds,
                           "n_tracks": len(rows), "embedded": len(got), "windows": windows,
                           "seconds": round(secs, 2), "cores": opts.cores,
                           "tracks_per_s_per_core": round(len(got) / secs / opts.cores, 3),
                           "windows_per_s_per_core": round(windows / secs / opts.cores, 3),
                           "load_avg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)]}
                    if name != "before":
                        ref = vecs[("before", set_name)]
                        cos = np.array([float(np.dot(v, ref[k])) for k, v in vecs[(name, set_name)].items()])
                        row["cosine_to_before"] = {"min": round(float(cos.min()), 6), "mean": round(float(cos.mean()), 6)}
                        base = next(r for r in res["runs"] if r["model"] == model and r["setting"] == "before"
                                    and r["tracks"] == set_name)
                        row["speedup_vs_before"] = round(row["tracks_per_s_per_core"] / base["tracks_per_s_per_core"], 2)
                    res["runs"].append(row)
                    print(json.dumps(row), flush=True)
            for name, settings in (SETTINGS[0], SETTINGS[3]):
                prof = profile_window(model, settings, sets["short"][0][0][1])
                prof.update({"model": model, "setting": name})
                res["profile"].append(prof)
                print(json.dumps(prof), flush=True)
    finally:
        spark.stop()
    res["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    os.makedirs(args.out, exist_ok=True)
    out = os.path.join(args.out, "clap_cpu.json")
    with open(out, "w") as fh:
        json.dump(res, fh, indent=2)
    print("wrote", out)
    return 0


if __name__ == "__main__":
    ns = argparse.Namespace(out=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"), extra=None)
    import sys

    ns.extra = sys.argv[1:]
    raise SystemExit(main(ns))
