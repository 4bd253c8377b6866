"""Benchmark suite "content": CLAP embedding throughput and faiss retrieval.

``python benchmarks/run.py --suite content --size S|M|L [--parts clap,faiss,text]`` (or
``python benchmarks/suite_content.py --size M``). Writes ``<out>/content_<size>.json`` (all parts) or
``<out>/content_<size>_<parts>.json``.

* CLAP throughput (CPU; CUDA too when ``torch.cuda.is_available()``): untrained laion-clap
  HTSAT-tiny and HTSAT-base (random weights cost the same as trained ones), 10 s windows at 48 kHz,
  batch 4. tracks/s assumes one window per track (tracks <= 10 s, like the synthetic audio); a 3 min
  track with ``max_windows=6`` costs 6 windows.
* text (the embed stage's CPU hot spot): ``TEXT_N`` fixed prompts from the synthetic generator;
  texts/s of ``ClapEncoder.embed_text`` (length-sorted dynamic batches vs the padded 77-token
  laion-clap path, 1 and 2 torch threads) and of the Spark stage ``embed_prompts`` on local[2]
  after a warm-up job has built the encoder in every Python worker.
* faiss vs numpy: random L2-normalised 512-d vectors (a hard case for ANN: no cluster structure),
  1000 queries, top-100. exact = ``IndexFlatIP``; numpy = one BLAS matmul + argpartition per batch
  of queries; IVF (nlist ~ 4 sqrt(N), nprobe 16 / 64) and HNSW (M 32, efSearch 128 / 256) with
  recall@100 against exact. HNSW is built only up to 100K (its build is the slow part on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

#: fixed text set of the "text" part: N synthetic Suno-like prompts from the generator's vocabulary
TEXT_N = 1000

SIZES = {
    "S": {"n_tracks": [10_000], "windows": 4, "models": ["HTSAT-tiny"], "hnsw_max": 10_000},
    "M": {"n_tracks": [10_000, 100_000], "windows": 8, "models": ["HTSAT-tiny", "HTSAT-base"], "hnsw_max": 100_000},
    "L": {"n_tracks": [10_000, 100_000, 1_000_000], "windows": 16, "models": ["HTSAT-tiny", "HTSAT-base"],
          "hnsw_max": 100_000},
}
D, NQ, K = 512, 1000, 100


def _normed(rng, n, d=D):
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def bench_clap(models, n_windows, device="cpu"):
    from recsys_spark.embeddings.clap import ClapEncoder, EncoderSpec

    out = []
    rng = np.random.default_rng(0)
    for m in models:
        t0 = time.perf_counter()
        enc = ClapEncoder(EncoderSpec(audio_model=m, text_model="transformer", device=device))
        build = time.perf_counter() - t0
        x = (0.1 * rng.standard_normal((n_windows, enc.clip_samples))).astype(np.float32)
        enc.embed_windows(x[:1], batch_size=1)  # warm-up
        t0 = time.perf_counter()
        enc.embed_windows(x, batch_size=4)
        secs = time.perf_counter() - t0
        texts = [f"a {i} bpm track with warm pads and a punchy kick" for i in range(64)]
        t0 = time.perf_counter()
        enc.embed_text(texts, batch_size=32)
        tsecs = time.perf_counter() - t0
        row = {"model": m, "device": device, "build_s": round(build, 2), "windows": n_windows,
               "seconds": round(secs, 2), "windows_per_s": round(n_windows / secs, 3),
               "tracks_per_s_1window": round(n_windows / secs, 3),
               "tracks_per_s_6windows": round(n_windows / secs / 6, 3),
               "texts_per_s": round(len(texts) / tsecs, 1)}
        print(row, flush=True)
        out.append(row)
        del enc
    return out


def synthetic_prompts(n: int = TEXT_N, seed: int = 0):
    """``n`` prompts from the synthetic generator (``style_prompt`` over the styles, fixed seeds)."""
    from recsys_spark.data import vocab
    from recsys_spark.data.generator import style_prompt

    return [style_prompt(vocab.STYLES[i % len(vocab.STYLES)], np.random.default_rng([seed, 7, i]))[0]
            for i in range(n)]


def _text_stats(texts):
    from recsys_spark.embeddings.clap import _clap_module

    _clap_module()
    from clap_module.tokenizer import tokenize

    ids = tokenize(texts, context_length=77)
    eot = ids.argmax(dim=-1) + 1
    return {"texts": len(texts), "distinct": len(set(texts)), "tokens_mean": round(float(eot.float().mean()), 1),
            "tokens_max": int(eot.max()), "context_length": 77}


def bench_text_direct(texts, threads=(1, 2), batch_size=64, variants=None):
    """texts/s of ``ClapEncoder.embed_text`` (untrained HTSAT-tiny + text transformer, CPU).

    ``variants`` maps a label to keyword arguments of ``embed_text`` (e.g. the padded reference
    path ``{"dynamic": False}``); every variant's vectors are compared with the first one's.
    """
    import torch

    from recsys_spark.embeddings.clap import ClapEncoder, EncoderSpec

    variants = variants or {"embed_text": {}}
    enc = ClapEncoder(EncoderSpec(audio_model="HTSAT-tiny", text_model="transformer", device="cpu"))
    enc.embed_text(texts[:8], batch_size=8)  # warm-up
    saved = torch.get_num_threads()
    rows, ref = [], None
    try:
        for th in threads:
            torch.set_num_threads(th)
            for label, kw in variants.items():
                t0 = time.perf_counter()
                e = enc.embed_text(texts, batch_size=batch_size, **kw)
                secs = time.perf_counter() - t0
                ref = e if ref is None else ref
                row = {"path": "direct", "variant": label, "torch_threads": th, "batch_size": batch_size,
                       "texts": len(texts), "seconds": round(secs, 2), "texts_per_s": round(len(texts) / secs, 1),
                       "max_abs_diff_vs_first": float(np.abs(e - ref).max()),
                       "load_avg_1m": round(os.getloadavg()[0], 1)}
                print(row, flush=True)
                rows.append(row)
    finally:
        torch.set_num_threads(saved)
    return rows


def bench_text_udf(texts, batch_size=64, cores=2, label="embed_prompts"):
    """texts/s of the Spark stage ``embed_prompts`` (mapInPandas UDF, local[cores]) on ``texts``.

    A first small job builds the encoder in every Python worker (workers are reused), so the
    figure is the steady-state cost of a weekly run, not the model build.
    """
    from recsys_spark.embeddings.clap import EncoderSpec
    from recsys_spark.embeddings.jobs import embed_prompts
    from recsys_spark.spark import get_spark

    spark = get_spark(app_name="bench-text", master=f"local[{cores}]", driver_memory="3g", shuffle_partitions=cores,
                      extra={"spark.default.parallelism": str(cores), "spark.ui.enabled": "false"})
    spec = EncoderSpec(audio_model="HTSAT-tiny", text_model="transformer", device="cpu")
    schema = "prompt_id string, user_id string, prompt_text string"

    def df(ts):
        return spark.createDataFrame([(f"p{i}", f"u{i % 97}", t) for i, t in enumerate(ts)], schema)

    t0 = time.perf_counter()
    embed_prompts(spark, df(texts[: 4 * cores]), None, None, spec, batch_size=2)[0].count()  # warm every worker
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    emb, _ = embed_prompts(spark, df(texts), None, None, spec, batch_size=batch_size)
    n = emb.count()
    secs = time.perf_counter() - t0
    vecs = {r["id"]: np.asarray(r["embedding"], np.float32) for r in emb.select("id", "embedding").collect()}
    def _worker_threads(_):
        import torch

        yield (os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads())

    worker = spark.sparkContext.parallelize([0], 1).mapPartitions(_worker_threads).collect()[0]
    row = {"path": "spark_udf", "variant": label, "cores": cores, "batch_size": batch_size, "texts": len(texts),
           "worker_OMP_NUM_THREADS": worker[0], "worker_torch_threads": worker[1],
           "embedded": n, "warmup_s": round(warm, 1), "seconds": round(secs, 2),
           "texts_per_s": round(len(texts) / secs, 1), "load_avg_1m": round(os.getloadavg()[0], 1)}
    print(row, flush=True)
    return row, vecs


def _recall(found, exact):
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)]))


def bench_faiss(n, hnsw_max, seed=0):
    import faiss

    rng = np.random.default_rng(seed)
    xb = _normed(rng, n)
    xq = _normed(rng, NQ)
    rows = []

    t0 = time.perf_counter()
    exact_idx = []
    qb = int(max(10, min(250, 2.5e7 // n)))  # bound the (queries x n) score matrix to ~100 MB
    for s in range(0, NQ, qb):
        sc = xq[s:s + qb] @ xb.T
        part = np.argpartition(-sc, K, axis=1)[:, :K]
        order = np.take_along_axis(sc, part, 1).argsort(axis=1)[:, ::-1]
        exact_idx.append(np.take_along_axis(part, order, 1))
    np_s = time.perf_counter() - t0
    exact = np.concatenate(exact_idx)
    rows.append({"n": n, "method": "numpy brute force", "build_s": 0.0, "qps": round(NQ / np_s, 1), "recall@100": 1.0})

    flat = faiss.IndexFlatIP(D)
    t0 = time.perf_counter()
    flat.add(xb)
    b = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, fi = flat.search(xq, K)
    s = time.perf_counter() - t0
    rows.append({"n": n, "method": "faiss flat (exact)", "build_s": round(b, 2), "qps": round(NQ / s, 1),
                 "recall@100": round(_recall(fi, exact), 4)})

    nlist = int(4 * np.sqrt(n))
    q = faiss.IndexFlatIP(D)
    ivf = faiss.IndexIVFFlat(q, D, nlist, faiss.METRIC_INNER_PRODUCT)
    t0 = time.perf_counter()
    train = xb[rng.choice(n, size=min(n, 40 * nlist), replace=False)]
    ivf.train(train)
    ivf.add(xb)
    b = time.perf_counter() - t0
    for nprobe in (16, 64):
        ivf.nprobe = nprobe
        t0 = time.perf_counter()
        _, ii = ivf.search(xq, K)
        s = time.perf_counter() - t0
        rows.append({"n": n, "method": f"faiss IVF nlist={nlist} nprobe={nprobe}", "build_s": round(b, 2),
                     "qps": round(NQ / s, 1), "recall@100": round(_recall(ii, exact), 4)})

    if n <= hnsw_max:
        h = faiss.IndexHNSWFlat(D, 32, faiss.METRIC_INNER_PRODUCT)
        t0 = time.perf_counter()
        h.add(xb)
        b = time.perf_counter() - t0
        for ef in (128, 256):
            h.hnsw.efSearch = ef
            t0 = time.perf_counter()
            _, hi = h.search(xq, K)
            s = time.perf_counter() - t0
            rows.append({"n": n, "method": f"faiss HNSW M=32 ef={ef}", "build_s": round(b, 2),
                         "qps": round(NQ / s, 1), "recall@100": round(_recall(hi, exact), 4)})
    for r in rows:
        print(r, flush=True)
    return rows


def bench_text(n=TEXT_N, batch_sizes=(64,), threads=(1, 2), udf=True):
    """The CPU text-embedding hot spot: direct ``embed_text`` (dynamic vs padded reference) and the
    Spark stage, on the same ``n`` generator prompts."""
    texts = synthetic_prompts(n)
    out = {"set": _text_stats(texts), "direct": []}
    variants = {"dynamic (length-sorted, cut batches)": {}, "padded to 77 (laion-clap encode_text)": {"dynamic": False}}
    for i, bs in enumerate(batch_sizes):
        out["direct"] += bench_text_direct(texts, threads=threads, batch_size=bs,
                                           variants=variants if i == 0 else dict(list(variants.items())[:1]))
    if udf:
        out["udf"], _ = bench_text_udf(texts, batch_size=batch_sizes[0])
    return out


PARTS = ("clap", "faiss", "text")


def main(args):
    import faiss
    import torch

    extra = list(getattr(args, "extra", None) or [])
    p = argparse.ArgumentParser()
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {PARTS}")
    p.add_argument("--text-batch-sizes", default="64")
    opts, _ = p.parse_known_args(extra)
    parts = [x for x in opts.parts.split(",") if x]
    if set(parts) - set(PARTS):
        raise SystemExit(f"unknown parts {sorted(set(parts) - set(PARTS))}; choose from {PARTS}")
    cfg = SIZES[args.size]
    res = {"suite": "content", "size": args.size, "parts": parts, "machine": {
        "cpus": os.cpu_count(), "platform": platform.platform(), "faiss_threads": faiss.omp_get_max_threads(),
        "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 1)}}
    if "clap" in parts:
        res["clap"] = bench_clap(cfg["models"], cfg["windows"], "cpu")
        if torch.cuda.is_available():
            res["clap"] += bench_clap(cfg["models"], cfg["windows"] * 8, "cuda")
    if "faiss" in parts:
        res["faiss"] = []
        for n in cfg["n_tracks"]:
            res["faiss"] += bench_faiss(n, cfg["hnsw_max"])
    if "text" in parts:
        res["text"] = bench_text(batch_sizes=[int(b) for b in opts.text_batch_sizes.split(",")])
    out = getattr(args, "out", None) or "benchmarks/results"
    os.makedirs(out, exist_ok=True)
    suffix = "" if set(parts) == set(PARTS) else "_" + "-".join(parts)
    path = os.path.join(out, f"content_{args.size}{suffix}.json")
    with open(path, "w") as fh:
        json.dump(res, fh, indent=2)
    print("wrote", path)
    return 0  # run.py exits with main()'s value


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="S", choices=list(SIZES))
    p.add_argument("--out", default="benchmarks/results")
    a, rest = p.parse_known_args()
    a.extra = rest
    main(a)
