"""Benchmark suite "content": CLAP embedding throughput and faiss retrieval.

``python benchmarks/run.py --suite content --size S|M|L`` (or ``python benchmarks/suite_content.py
--size M``). Writes ``<out>/content_<size>.json``.

* CLAP throughput (CPU; CUDA too when ``torch.cuda.is_available()``): untrained laion-clap
  HTSAT-tiny and HTSAT-base (random weights cost the same as trained ones), 10 s windows at 48 kHz,
  batch 4. tracks/s assumes one window per track (tracks <= 10 s, like the synthetic audio); a 3 min
  track with ``max_windows=6`` costs 6 windows.
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


def main(args):
    import faiss
    import torch

    cfg = SIZES[args.size]
    res = {"suite": "content", "size": args.size, "machine": {
        "cpus": os.cpu_count(), "platform": platform.platform(), "faiss_threads": faiss.omp_get_max_threads(),
        "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}}
    res["clap"] = bench_clap(cfg["models"], cfg["windows"], "cpu")
    if torch.cuda.is_available():
        res["clap"] += bench_clap(cfg["models"], cfg["windows"] * 8, "cuda")
    res["faiss"] = []
    for n in cfg["n_tracks"]:
        res["faiss"] += bench_faiss(n, cfg["hnsw_max"])
    out = getattr(args, "out", None) or "benchmarks/results"
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"content_{args.size}.json")
    with open(path, "w") as fh:
        json.dump(res, fh, indent=2)
    print("wrote", path)
    return res


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="S", choices=list(SIZES))
    p.add_argument("--out", default="benchmarks/results")
    main(p.parse_args())
