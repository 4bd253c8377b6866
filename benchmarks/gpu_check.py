"""GPU check: the CUDA paths of the GPU inference code, CPU vs CUDA, equality and throughput.

``python benchmarks/gpu_check.py --device cuda --out DIR`` (``--small`` for a quick CPU-only
smoke run). Writes ``DIR/gpu_check.json`` and prints a short table. Exit status 1 when a CUDA
output differs from the CPU output by more than its tolerance (the JSON is written anyway).

What runs is what the Spark UDFs run inside their Python workers, without Spark (no Java, no
pyspark needed; this script imports only the pure-torch modules):

* **CLAP** (``recsys_spark.embeddings.spark_udfs``: ``audio_embed_fn`` / ``text_embed_fn``):
  ``clap.get_encoder(EncoderSpec(...))`` then ``ClapEncoder.embed_waveforms`` (audio) and
  ``ClapEncoder.embed_text`` (text, length-sorted dynamic batches). Architecture as in the tests and
  ``conf/local.yaml``: untrained laion-clap HTSAT-tiny + laion-clap's ``transformer`` text tower,
  seeded random weights (no download). The CUDA encoder gets the CPU encoder's state dict, so both
  compute the same function. Inputs: synthetic 10 s clips at 48 kHz (one window each, harmonic tones
  with a beat envelope and noise, styles from ``recsys_spark.data.vocab``) and distinct prompt texts
  built from the synthetic platform's vocabulary. ``--prod`` adds the production architecture
  (HTSAT-base + roberta text branch, untrained, laion-clap's bundled BPE ids) on fewer inputs.
* **DIN** (``recsys_spark.ranking.din_spark.score_candidates`` / ``_cached_model``): a seeded
  ``DIN`` (base config: dim 32, attention [64, 32], MLP [128, 64], 512-d content, history 50) is
  saved with ``din.save`` and loaded with ``din.load(path, device=common.resolve_device(...))`` as
  ``_cached_model`` does, then ``din.predict_grouped`` scores U users x C candidates (the UDF's
  call); the UDF body (string ids -> ``encode_histories`` / ``encode_ids`` -> ``predict_grouped``)
  is also timed once per device.

* **Audiobox Aesthetics** (``aesthetics_fn``: ``aesthetics.get_scorer(AestheticsSpec(...))`` then
  ``AestheticsScorer.score_waveforms``): the seeded untrained model on CPU (fp32) and on the target
  device in fp32 and bf16 (CUDA), same state dict, 10 s clips at 16 kHz; clips/s and the score
  differences (``--parts`` selects ``clap``, ``din``, ``aes``).

On the lent GPU machine (python 3.12, torch, transformers, numba there; no laion-clap): laion-clap and
the pure-Python packages its import and model build need travel as wheels in ``.whl/`` (ignored via
``.git/info/exclude``; ``pip download --no-deps --only-binary=:all: --python-version 3.12 ...``):
laion_clap 1.1.7, torchlibrosa 0.1.0, librosa 0.11.0, soundfile 0.14.0, cffi 2.1.1, pycparser 3.12,
soxr 1.1.0, ftfy 6.3.1, wcwidth 0.9.4, decorator 5.3.1, pooch 1.9.0, platformdirs 4.14.8,
audioread 3.1.0, audiobox_aesthetics 0.0.4 (4.6 MiB), installed with ``pip install --no-index --no-deps --target /tmp/site
.whl/*.whl`` and run with ``PYTHONPATH=/tmp/site:.``.

Timing: CUDA is warmed up with one full pass and timed ``--repeats`` times (best reported; every
``.cpu()`` of the result synchronises); CPU is warmed up on one batch and timed ``--cpu-repeats``
times, with torch's default thread count (recorded).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from typing import Callable, Dict, List

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

from recsys_spark.common import resolve_device  # noqa: E402  (no Spark, torch imported on use)
from recsys_spark.data import vocab  # noqa: E402  (pure python)
from recsys_spark.embeddings import clap as C  # noqa: E402  (pure torch, no Spark)
from recsys_spark.ranking import din as D  # noqa: E402  (pure torch, no Spark)

SR = 48000

# -- inputs ----------------------------------------------------------------------------------------


def synth_clips(n: int, seconds: float = 10.0, sr: int = SR, seed: int = 0) -> List[np.ndarray]:
    """``n`` deterministic float32 mono clips: a style's harmonic melody, beat envelope and noise."""
    from scipy.signal import lfilter

    out = []
    t = np.arange(int(seconds * sr), dtype=np.float64) / sr
    for k in range(n):
        style = vocab.STYLES[k % len(vocab.STYLES)]
        rng = np.random.default_rng([seed, k])
        beat = 60.0 / rng.uniform(*style.bpm)
        motif = rng.choice([0, 3, 5, 7, 10, 12], size=4)
        freq = style.base_hz * 2.0 ** ((rng.integers(-2, 3) + motif[(t // beat).astype(int) % 4]) / 12.0)
        phase = 2 * np.pi * np.cumsum(freq) / sr
        sig = sum(np.sin(h * phase) / h ** (2.0 - 1.2 * style.brightness)
                  for h in range(1, 2 + int(round(style.brightness * 9))))
        env = np.exp(-((t % beat) / (beat * (0.25 + 0.5 * (1 - style.brightness)))))
        sig = sig * (0.35 + 0.65 * env)
        sig /= np.max(np.abs(sig)) + 1e-9
        alpha = 0.05 + 0.9 * style.brightness
        noise = lfilter([alpha], [1.0, alpha - 1.0], rng.standard_normal(len(t))) * env
        noise /= np.max(np.abs(noise)) + 1e-9
        sig = (1 - 2 * style.noise) * sig + 2 * style.noise * noise
        out.append((0.8 * sig / (np.max(np.abs(sig)) + 1e-9)).astype(np.float32))
    return out


def prompt_texts(n: int, seed: int = 0) -> List[str]:
    """``n`` distinct Suno-like prompts from the synthetic platform's vocabulary."""
    rng = np.random.default_rng(seed)
    seen: Dict[str, None] = {}
    while len(seen) < n:
        s = vocab.STYLES[rng.integers(len(vocab.STYLES))]
        tags = rng.permutation(len(s.tags))
        ins = rng.permutation(len(s.instruments))
        text = vocab.PROMPT_TEMPLATES[rng.integers(len(vocab.PROMPT_TEMPLATES))].format(
            mood=s.moods[rng.integers(len(s.moods))], tag0=s.tags[tags[0]], tag1=s.tags[tags[1]],
            inst0=s.instruments[ins[0]], inst1=s.instruments[ins[1]], vocal=s.vocals[rng.integers(len(s.vocals))],
            bpm=int(rng.integers(*s.bpm)), qual=vocab.QUALIFIERS[rng.integers(len(vocab.QUALIFIERS))],
            topic=vocab.TOPICS[rng.integers(len(vocab.TOPICS))])
        seen.setdefault(text, None)
    return list(seen)


# -- helpers ---------------------------------------------------------------------------------------


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn: Callable[[], object], dev: torch.device, repeats: int):
    """Run ``fn`` ``repeats`` times; (last result, list of seconds)."""
    secs, res = [], None
    for _ in range(max(1, repeats)):
        sync(dev)
        t0 = time.perf_counter()
        res = fn()
        sync(dev)
        secs.append(time.perf_counter() - t0)
    return res, secs


def rate(n: int, secs: List[float]) -> float:
    return float(n / min(secs)) if secs and min(secs) > 0 else float("nan")


def diff(a: np.ndarray, b: np.ndarray) -> Dict[str, float]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = {"max_abs_diff": float(np.max(np.abs(a - b))) if a.size else 0.0,
         "mean_abs_diff": float(np.mean(np.abs(a - b))) if a.size else 0.0}
    if a.ndim == 2 and a.size:
        cos = np.sum(a * b, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
        d["min_cosine"] = float(np.min(cos))
    return d


def tf32_flags() -> Dict[str, object]:
    out = {}
    for name, get in (("cuda.matmul.allow_tf32", lambda: torch.backends.cuda.matmul.allow_tf32),
                      ("cudnn.allow_tf32", lambda: torch.backends.cudnn.allow_tf32),
                      ("float32_matmul_precision", torch.get_float32_matmul_precision)):
        try:
            out[name] = get()
        except Exception as exc:  # API moved in a newer torch
            out[name] = f"n/a ({type(exc).__name__})"
    return out


def set_tf32(on: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def log(msg: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Checks:
    def __init__(self):
        self.rows: List[dict] = []

    def add(self, name: str, d: Dict[str, float], atol: float) -> dict:
        row = {"name": name, **d, "atol": atol, "ok": bool(d["max_abs_diff"] <= atol)}
        self.rows.append(row)
        log(f"check {name}: max|diff| {d['max_abs_diff']:.3g} (atol {atol:g}) {'OK' if row['ok'] else 'FAIL'}")
        return row


# -- CLAP ------------------------------------------------------------------------------------------


def run_clap(tag: str, audio_model: str, text_model: str, dev: torch.device, clips: List[np.ndarray],
             texts: List[str], audio_bs: List[int], text_bs: List[int], args, checks: Checks) -> dict:
    res: dict = {"audio_model": audio_model, "text_model": text_model, "n_clips": len(clips),
                 "clip_seconds": len(clips[0]) / SR, "n_texts": len(texts)}
    base = dict(audio_model=audio_model, text_model=text_model, max_windows=6, window_seconds=10.0, seed=0)
    t0 = time.perf_counter()
    cpu = C.ClapEncoder(C.EncoderSpec(device="cpu", **base))  # the reference: its own instance
    res["build_s_cpu"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    gpu = C.get_encoder(C.EncoderSpec(device=dev.type, **base))  # what the UDFs call
    res["build_s_target"] = round(time.perf_counter() - t0, 2)
    res["target_device"] = str(gpu.device)
    ref = cpu.model.state_dict()
    tgt = gpu.model.state_dict()
    res["seeded_weights_equal_before_copy"] = bool(
        ref.keys() == tgt.keys() and all(torch.equal(ref[k], tgt[k].cpu()) for k in ref))
    gpu.model.load_state_dict(ref)  # same function on both devices, whatever the seeding did
    res["params"] = int(sum(p.numel() for p in cpu.model.parameters()))
    n_win = sum(len(cpu.windows(w)) for w in clips)
    res["n_windows"] = n_win

    # audio: the audio UDF's call (embed_waveforms over the batch of tracks)
    bs0 = audio_bs[0]
    log(f"{tag} audio: CPU {len(clips)} clips, batch {bs0}")
    cpu.embed_waveforms(clips[:bs0], batch_size=bs0)  # warm-up, one batch
    (cpu_a, _), secs = timed(lambda: cpu.embed_waveforms(clips, batch_size=bs0), torch.device("cpu"),
                             args.cpu_repeats)
    res["audio_cpu"] = {"batch_size": bs0, "seconds": secs, "clips_per_s": rate(len(clips), secs),
                        "windows_per_s": rate(n_win, secs)}
    res["audio_target"] = []
    tgt_a = None
    for bs in audio_bs:
        log(f"{tag} audio: {dev.type} batch {bs}")
        gpu.embed_waveforms(clips, batch_size=bs)  # warm-up, full pass
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        (out, _), secs = timed(lambda: gpu.embed_waveforms(clips, batch_size=bs), dev, args.repeats)
        row = {"batch_size": bs, "seconds": secs, "clips_per_s": rate(len(clips), secs),
               "windows_per_s": rate(n_win, secs)}
        if dev.type == "cuda":
            row["peak_mem_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
        res["audio_target"].append(row)
        checks.add(f"{tag}.audio.{dev.type}_bs{bs}_vs_cpu", diff(out, cpu_a), args.atol_emb)
        tgt_a = out if tgt_a is None else tgt_a
    res["audio_diff"] = diff(tgt_a, cpu_a)

    # text: the text UDF's call (embed_text, length-sorted dynamic batches)
    tb0 = text_bs[0]
    log(f"{tag} text: CPU {len(texts)} texts, batch {tb0}")
    cpu.embed_text(texts[: tb0 * 2], batch_size=tb0)  # warm-up
    cpu_t, secs = timed(lambda: cpu.embed_text(texts, batch_size=tb0), torch.device("cpu"), args.cpu_repeats)
    res["text_cpu"] = {"batch_size": tb0, "seconds": secs, "texts_per_s": rate(len(texts), secs)}
    res["text_target"] = []
    tgt_t = None
    for bs in text_bs:
        log(f"{tag} text: {dev.type} batch {bs}")
        gpu.embed_text(texts, batch_size=bs)  # warm-up
        out, secs = timed(lambda: gpu.embed_text(texts, batch_size=bs), dev, args.repeats)
        res["text_target"].append({"batch_size": bs, "seconds": secs, "texts_per_s": rate(len(texts), secs)})
        checks.add(f"{tag}.text.{dev.type}_bs{bs}_vs_cpu", diff(out, cpu_t), args.atol_emb)
        tgt_t = out if tgt_t is None else tgt_t
    res["text_diff"] = diff(tgt_t, cpu_t)
    # the padded 77-token laion-clap reference path on the target device (dynamic=False) vs dynamic
    sub = texts[: min(len(texts), 256)]
    padded = gpu.embed_text(sub, batch_size=tb0, dynamic=False)
    checks.add(f"{tag}.text.{dev.type}_dynamic_vs_padded", diff(tgt_t[: len(sub)], padded), args.atol_emb)

    if dev.type == "cuda":  # is the CPU/CUDA gap TF32? (product default flags recorded in meta)
        mm, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        try:
            set_tf32(False)
            a = gpu.embed_waveforms(clips, batch_size=bs0)[0]
            t = gpu.embed_text(texts, batch_size=tb0)
            res["no_tf32"] = {"audio_diff": diff(a, cpu_a), "text_diff": diff(t, cpu_t)}
            log(f"{tag} without TF32: audio max|diff| {res['no_tf32']['audio_diff']['max_abs_diff']:.3g}, "
                f"text {res['no_tf32']['text_diff']['max_abs_diff']:.3g}")
        except Exception as exc:
            res["no_tf32"] = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = mm, cudnn
    # free this architecture before the next one
    C._CACHE.clear()
    del cpu, gpu
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return res


# -- Audiobox Aesthetics ---------------------------------------------------------------------------


def run_aesthetics(dev: torch.device, n: int, bs: int, args, checks: Checks) -> dict:
    """``AestheticsScorer.score_waveforms`` (the aesthetics UDF's call) on CPU and the target device,
    fp32 and (on CUDA) bf16, on ``n`` 10 s clips at 16 kHz (one window each)."""
    from recsys_spark.embeddings import aesthetics as A
    from recsys_spark.embeddings.audio import resample

    clips = [resample(c, SR, A.SAMPLE_RATE) for c in synth_clips(n, seed=2)]
    cpu = A.AestheticsScorer(A.AestheticsSpec(device="cpu", precision="fp32"))
    res: dict = {"n_clips": n, "clip_seconds": 10.0, "params": int(sum(p.numel() for p in cpu.model.parameters())),
                 "weights": "untrained (seeded)"}
    k = min(n, max(2, bs))
    log(f"aesthetics: CPU {k} clips")
    cpu.score_waveforms(clips[:1], batch_size=1)  # warm-up
    cpu_s, secs = timed(lambda: cpu.score_waveforms(clips[:k], batch_size=bs)[0], torch.device("cpu"), args.cpu_repeats)
    res["cpu"] = {"clips": k, "seconds": secs, "clips_per_s": rate(k, secs), "threads": torch.get_num_threads()}
    res["target"] = []
    for precision in (("fp32", "bf16") if dev.type == "cuda" else ("fp32",)):
        tgt = A.AestheticsScorer(A.AestheticsSpec(device=dev.type, precision=precision))
        tgt.model.load_state_dict(cpu.model.state_dict())
        log(f"aesthetics: {dev.type} {precision} batch {bs}")
        tgt.score_waveforms(clips[:bs], batch_size=bs)  # warm-up
        out, secs = timed(lambda: tgt.score_waveforms(clips, batch_size=bs)[0], dev, args.repeats)
        row = {"precision": tgt.precision, "batch_size": bs, "seconds": secs, "clips_per_s": rate(n, secs)}
        row.update(diff(out[:k], cpu_s))
        res["target"].append(row)
        # untrained heads give scores of about +-0.05 (identity target normalisation): an absolute
        # tolerance on that scale; a released checkpoint's 1-10 scale multiplies it by its std
        checks.add(f"aesthetics.{dev.type}_{precision}_vs_cpu", diff(out[:k], cpu_s),
                   args.atol_aes if precision == "fp32" else 10 * args.atol_aes)
        del tgt
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return res


# -- DIN -------------------------------------------------------------------------------------------


def build_din(n_items: int, seed: int = 0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    content = rng.standard_normal((n_items + D.N_SPECIAL, 512)).astype(np.float32)
    content /= np.linalg.norm(content, axis=1, keepdims=True)
    content[: D.N_SPECIAL] = 0.0
    content[rng.random(len(content)) < 0.1] = 0.0  # tracks without a CLAP vector
    cfg = D.DINConfig(n_items=n_items, n_id_items=int(n_items * 0.8), embedding_dim=32, content_dim=512,
                      attention_hidden=[64, 32], mlp_hidden=[128, 64], max_history=50)
    model = D.DIN(cfg, content=torch.from_numpy(content))
    with torch.no_grad():  # spread the untrained logits so probabilities are not all ~0.5
        model.out[-1].weight.mul_(300.0)
    return model


def run_din(dev: torch.device, args, checks: Checks) -> dict:
    U, Cn, L, NI = args.users, args.cands, 50, args.din_items
    rng = np.random.default_rng(1)
    model = build_din(NI)
    ids = [f"t{i}" for i in range(NI)]
    tmp = tempfile.mkdtemp(prefix="gpu_check_din_")
    D.save(tmp, model, ids)
    # what _cached_model does on each executor
    m_cpu, voc = D.load(tmp, device=resolve_device("cpu"))
    m_tgt, _ = D.load(tmp, device=resolve_device(dev.type))
    res = {"users": U, "cands_per_user": Cn, "rows": U * Cn, "history": L, "n_items": NI,
           "target_device": str(next(m_tgt.parameters()).device),
           "config": json.loads(m_cpu.config.to_json())}
    res["params"] = int(sum(p.numel() for p in m_cpu.parameters()))
    # users: histories of 0..50 known tracks (some empty); candidates: distinct tracks, some unknown
    hl = rng.integers(0, L + 1, size=U)
    hl[rng.random(U) < 0.05] = 0
    hist_ids = [[f"t{j}" for j in rng.integers(0, NI, size=k)] for k in hl]
    cand_ids = [[f"t{j}" if j < NI else f"new{j}" for j in rng.choice(int(NI * 1.05), size=Cn, replace=False)]
                for _ in range(U)]
    hist = D.encode_histories(hist_ids, voc, L)
    flat = np.concatenate([np.asarray(c, dtype=object) for c in cand_ids])
    cand = D.encode_ids(flat, voc)
    owner = np.repeat(np.arange(U, dtype=np.int64), Cn)
    n = len(cand)

    bs_list = args.din_bs
    log(f"DIN: CPU {n} rows, batch {bs_list}")
    res["cpu"], res["target"] = [], []
    cpu_p = None
    for bs in bs_list:
        D.predict_grouped(m_cpu, hist, cand[:bs], owner[:bs], bs)  # warm-up, one batch
        p, secs = timed(lambda: D.predict_grouped(m_cpu, hist, cand, owner, bs), torch.device("cpu"),
                        args.cpu_repeats)
        res["cpu"].append({"batch_size": bs, "seconds": secs, "rows_per_s": rate(n, secs)})
        cpu_p = p if cpu_p is None else cpu_p
    res["score_std"] = float(np.std(cpu_p))
    res["score_range"] = [float(cpu_p.min()), float(cpu_p.max())]
    for bs in bs_list:
        log(f"DIN: {dev.type} batch {bs}")
        D.predict_grouped(m_tgt, hist, cand, owner, bs)  # warm-up, full pass
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        p, secs = timed(lambda: D.predict_grouped(m_tgt, hist, cand, owner, bs), dev, args.repeats)
        row = {"batch_size": bs, "seconds": secs, "rows_per_s": rate(n, secs)}
        if dev.type == "cuda":
            row["peak_mem_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
        res["target"].append(row)
        checks.add(f"din.predict_grouped.{dev.type}_bs{bs}_vs_cpu", diff(p, cpu_p), args.atol_din)
    # grouped scoring equals the plain forward (on the target device), first rows
    k = min(n, 20000)
    fwd = D.predict(m_tgt, D.Batchable(hist=hist[owner[:k]], cand=cand[:k]), batch_size=bs_list[0])
    checks.add(f"din.{dev.type}_grouped_vs_forward", diff(D.predict_grouped(m_tgt, hist, cand[:k], owner[:k],
                                                                            bs_list[0]), fwd), args.atol_din)

    # the UDF body of score_candidates._score on one pandas batch (string ids in, scores out)
    import pandas as pd

    pdf = pd.DataFrame({"user_id": [f"u{i}" for i in range(U)], "_din_cands": cand_ids, "_din_hist": hist_ids})

    def udf_body(model, bs):
        cands = [np.asarray(c, dtype=object) for c in pdf["_din_cands"]]
        sizes = np.fromiter((len(c) for c in cands), dtype=np.int64, count=len(cands))
        fl = np.concatenate(cands)
        h = D.encode_histories(list(pdf["_din_hist"]), voc, L)
        own = np.repeat(np.arange(len(pdf), dtype=np.int64), sizes)
        scores = D.predict_grouped(model, h, D.encode_ids(fl, voc), own, bs)
        return pd.DataFrame({"user_id": np.repeat(pdf["user_id"].to_numpy(), sizes), "track_id": fl,
                             "din_score": scores})

    bs = bs_list[-1]
    out_c, secs_c = timed(lambda: udf_body(m_cpu, bs), torch.device("cpu"), 1)
    out_t, secs_t = timed(lambda: udf_body(m_tgt, bs), dev, 1)
    res["udf_body"] = {"batch_size": bs, "cpu_s": secs_c[0], "target_s": secs_t[0],
                       "cpu_rows_per_s": rate(n, secs_c), "target_rows_per_s": rate(n, secs_t)}
    checks.add(f"din.udf_body.{dev.type}_vs_cpu", diff(out_t["din_score"].to_numpy(), out_c["din_score"].to_numpy()),
               args.atol_din)
    return res


# -- main ------------------------------------------------------------------------------------------


def meta(dev: torch.device) -> dict:
    import transformers

    m = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
         "transformers": transformers.__version__, "cpu_count": os.cpu_count(),
         "torch_threads": torch.get_num_threads(), "cuda_available": torch.cuda.is_available(),
         "target_device": str(dev), "tf32_defaults": tf32_flags()}
    try:
        import importlib.metadata as md
        m["laion_clap"] = md.version("laion_clap")
    except Exception:
        m["laion_clap"] = "?"
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        m.update(gpu=torch.cuda.get_device_name(dev), cuda=torch.version.cuda,
                 cudnn=torch.backends.cudnn.version(), capability=list(torch.cuda.get_device_capability(dev)),
                 gpu_mem_gib=round(p.total_memory / 2 ** 30, 1), sm_count=p.multi_processor_count)
    return m


def table(res: dict) -> str:
    lines = ["| what | CPU | target | speed-up | max abs diff |", "|---|---|---|---|---|"]
    for key in ("clap", "clap_prod"):
        r = res.get(key)
        if not isinstance(r, dict) or "audio_cpu" not in r:
            continue
        name = f"{r['audio_model']}/{r['text_model']}"
        c = r["audio_cpu"]["clips_per_s"]
        for row in r["audio_target"]:
            lines.append(f"| {name} audio clips/s (bs {row['batch_size']}) | {c:.1f} | {row['clips_per_s']:.1f} | "
                         f"{row['clips_per_s'] / c:.1f}x | {r['audio_diff']['max_abs_diff']:.2g} |")
        c = r["text_cpu"]["texts_per_s"]
        for row in r["text_target"]:
            lines.append(f"| {name} texts/s (bs {row['batch_size']}) | {c:.0f} | {row['texts_per_s']:.0f} | "
                         f"{row['texts_per_s'] / c:.1f}x | {r['text_diff']['max_abs_diff']:.2g} |")
    r = res.get("din")
    if isinstance(r, dict) and "cpu" in r:
        cpu = {x["batch_size"]: x["rows_per_s"] for x in r["cpu"]}
        dd = {c["name"]: c["max_abs_diff"] for c in res["checks"]}
        for row in r["target"]:
            c = cpu[row["batch_size"]]
            k = [v for n, v in dd.items() if n.startswith("din.predict_grouped") and n.endswith(f"bs{row['batch_size']}_vs_cpu")]
            lines.append(f"| DIN predict_grouped rows/s (bs {row['batch_size']}) | {c:,.0f} | {row['rows_per_s']:,.0f} | "
                         f"{row['rows_per_s'] / c:.1f}x | {k[0] if k else float('nan'):.2g} |")
    r = res.get("aesthetics")
    if isinstance(r, dict) and "cpu" in r:
        c = r["cpu"]["clips_per_s"]
        for row in r["target"]:
            lines.append(f"| Aesthetics clips/s ({row['precision']}, bs {row['batch_size']}) | {c:.2f} | "
                         f"{row['clips_per_s']:.2f} | {row['clips_per_s'] / c:.1f}x | {row['max_abs_diff']:.2g} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--small", action="store_true", help="tiny sizes for a CPU smoke run")
    ap.add_argument("--clips", type=int)
    ap.add_argument("--texts", type=int)
    ap.add_argument("--users", type=int)
    ap.add_argument("--cands", type=int)
    ap.add_argument("--din-items", type=int, default=50_000)
    ap.add_argument("--audio-bs", type=int, nargs="+", default=[16, 64], help="first: CPU and CUDA; rest: CUDA")
    ap.add_argument("--text-bs", type=int, nargs="+", default=[64, 512], help="first: CPU and CUDA; rest: CUDA")
    ap.add_argument("--din-bs", type=int, nargs="+", default=[4096, 16384])
    ap.add_argument("--repeats", type=int, default=3, help="timed runs on the target device")
    ap.add_argument("--cpu-repeats", type=int, default=1)
    ap.add_argument("--atol-emb", type=float, default=5e-3, help="embeddings (L2-normalised 512-d)")
    ap.add_argument("--atol-din", type=float, default=1e-4, help="DIN click probabilities")
    ap.add_argument("--prod", action="store_true", help="also HTSAT-base + roberta (production architecture)")
    ap.add_argument("--prod-clips", type=int, default=32)
    ap.add_argument("--prod-texts", type=int, default=500)
    ap.add_argument("--prod-after-s", type=float, default=240.0,
                    help="skip --prod when this many seconds have already passed")
    ap.add_argument("--atol-aes", type=float, default=1e-3, help="aesthetics scores (untrained scale)")
    ap.add_argument("--aes-clips", type=int, default=64)
    ap.add_argument("--aes-bs", type=int, default=16)
    ap.add_argument("--parts", default="clap,din,aes")
    args = ap.parse_args(argv)
    small = args.small
    args.clips = args.clips or (4 if small else 64)
    args.texts = args.texts or (100 if small else 2000)
    args.users = args.users or (100 if small else 2000)
    args.cands = args.cands or (50 if small else 300)
    if small:
        args.din_items = min(args.din_items, 5000)
        args.audio_bs = [2, 4][: len(args.audio_bs)]
        args.text_bs = [16, 64][: len(args.text_bs)]
        args.din_bs = [1024, 4096][: len(args.din_bs)]
        args.repeats = min(args.repeats, 2)
        args.prod_clips, args.prod_texts = 2, 50
    os.makedirs(args.out, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    dev = resolve_device(args.device)
    t_start = time.perf_counter()
    res = {"args": vars(args), "meta": meta(dev), "checks": []}
    log(f"target {dev} | torch {torch.__version__} | {res['meta'].get('gpu', 'no GPU')} | "
        f"{res['meta']['torch_threads']} CPU threads")
    checks = Checks()
    parts = set(args.parts.split(","))
    errors = {}

    def section(key, fn):
        try:
            res[key] = fn()
        except Exception as exc:  # record and go on: one broken path must not hide the others
            import traceback

            traceback.print_exc()
            errors[key] = f"{type(exc).__name__}: {exc}"
            res[key] = {"error": errors[key]}
        res["checks"] = checks.rows
        res["seconds_so_far"] = round(time.perf_counter() - t_start, 1)
        with open(os.path.join(args.out, "gpu_check.json"), "w") as fh:
            json.dump(res, fh, indent=1, default=str)

    if "clap" in parts:
        clips = synth_clips(args.clips)
        texts = prompt_texts(args.texts)
        section("clap", lambda: run_clap("clap", "HTSAT-tiny", "transformer", dev, clips, texts,
                                         args.audio_bs, args.text_bs, args, checks))
    if "din" in parts:
        section("din", lambda: run_din(dev, args, checks))
    if "aes" in parts:
        n_aes = 2 if small else args.aes_clips
        section("aesthetics", lambda: run_aesthetics(dev, n_aes, 2 if small else args.aes_bs, args, checks))
    if args.prod:
        if time.perf_counter() - t_start > args.prod_after_s:
            res["clap_prod"] = {"skipped": f"over {args.prod_after_s}s already"}
        else:
            clips = synth_clips(args.prod_clips, seed=1)
            texts = prompt_texts(args.prod_texts, seed=1)
            section("clap_prod", lambda: run_clap("clap_prod", "HTSAT-base", "roberta", dev, clips, texts,
                                                  args.audio_bs, args.text_bs, args, checks))
    res["checks"] = checks.rows
    res["errors"] = errors
    res["ok"] = bool(not errors and all(c["ok"] for c in checks.rows))
    res["total_s"] = round(time.perf_counter() - t_start, 1)
    with open(os.path.join(args.out, "gpu_check.json"), "w") as fh:
        json.dump(res, fh, indent=1, default=str)
    print(table(res))
    log(f"{'OK' if res['ok'] else 'FAILED'}: {sum(c['ok'] for c in checks.rows)}/{len(checks.rows)} checks, "
        f"errors {list(errors) or 'none'}, {res['total_s']}s -> {args.out}/gpu_check.json")
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
