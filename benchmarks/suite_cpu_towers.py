"""Suite "cpu_towers": the CPU cost of the two torch pieces a weekly run spends driver / executor
time on besides CLAP audio, before and after, in one run.

    python benchmarks/run.py --suite cpu_towers [--texts 1000] [--din-steps 20]

* **CLAP text tower** (the prompt channel's texts, embed stage): texts per second per core, one
  torch thread in one process (what each Spark task gets with ``threads_per_task: 0``), for
  ``text_precision`` fp32 (before) and bf16 (what ``auto`` picks on an AVX512-BF16 / AMX CPU), with
  the cosine of every bf16 vector to its fp32 vector. Both text towers: laion-clap's
  ``transformer`` (``conf/local.yaml``, the benchmark platforms) and ``roberta`` (base conf).
  Texts are the synthetic platform's prompts (``generator.style_prompt``), untrained weights (no
  checkpoint can be downloaded here; the arithmetic is the same).
* **DIN training step** (train.din, on the driver): seconds per Adam step (forward, backward,
  update) of the paper's form (``din.paper_logits``: item vectors per history position,
  activation unit over ``[h, c, h - c, h * c]``) and of the shipped ``DIN.forward`` (first layer
  term by term, content projected once per distinct track), at the M platform's shape (vocabulary
  24,335, CLAP content 512, history 50, batch ``din.batch_size`` of ``conf/local.yaml``),
  histories drawn from a Zipf-like popularity as plays are; plus the max difference of their
  logits. Torch's default threads (the driver's cores).
* **DIN scoring** (the rank stage's pandas UDF, ``--parts din_score``): candidates per second, one
  torch thread (one Spark task's), of the trained DIN of a weekly run (``--din-model``, default the
  M platform's of the pipeline suite's cache) on M-like inputs (600 users x 150 candidates,
  history lengths geometric with mean 13.5, capped at 50, tracks drawn by a Zipf-like popularity
  over the model's vocabulary): the grouped scoring of ``--before`` (loaded with ``git show``,
  default ``403e255``: history gathered per candidate) in fp32, the shipped one (one batched
  matmul per user for the activation unit's first layer) in fp32 and in bf16 (what
  ``din.score_precision: auto`` picks on an AVX512-BF16 / AMX CPU); with the agreement of the
  probabilities and of each user's order of its candidates (Spearman, top-30 kept).

Result: ``benchmarks/results/cpu_towers.json`` (all parts), or ``cpu_towers_<parts>.json`` when
``--parts`` names a subset (``text``, ``din_train``, ``din_score``).
"""

from __future__ import annotations

import json
import os
import platform
import time

import numpy as np
from suite_clap_cpu import _git


def prompts(n: int, seed: int = 0):
    from recsys_spark.data import vocab
    from recsys_spark.data.generator import style_prompt

    rng = np.random.default_rng(seed)
    return [style_prompt(vocab.STYLES[rng.integers(len(vocab.STYLES))], rng)[0] for _ in range(n)]


def text_tower(texts, text_model: str) -> dict:
    import torch

    from recsys_spark.embeddings.clap import ClapEncoder, EncoderSpec

    torch.set_num_threads(1)
    out, vecs = {}, {}
    for precision in ("fp32", "bf16"):
        enc = ClapEncoder(EncoderSpec(audio_model="HTSAT-tiny", text_model=text_model, device="cpu", seed=0,
                                      text_precision=precision))
        enc.embed_text(texts[:64])  # warm-up (kernels, allocator)
        t0 = time.perf_counter()
        vecs[precision] = enc.embed_text(texts)
        sec = time.perf_counter() - t0
        out[precision] = {"seconds": round(sec, 2), "texts_per_s_per_core": round(len(texts) / sec, 1)}
    cos = np.sum(vecs["fp32"] * vecs["bf16"], axis=1)
    out["speedup"] = round(out["bf16"]["texts_per_s_per_core"] / out["fp32"]["texts_per_s_per_core"], 2)
    out["cosine_bf16_to_fp32"] = {"min": round(float(cos.min()), 6), "mean": round(float(cos.mean()), 6)}
    out["distinct_texts"] = len(set(texts))
    return out


def din_step(steps: int, batch: int, seed: int = 0) -> dict:
    import torch

    from recsys_spark.ranking import din as D

    vocab, hist_len = 24_335, 50
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, vocab + 1) ** 0.8
    pop /= pop.sum()
    lengths = rng.integers(5, hist_len + 1, size=batch)
    hist = rng.choice(vocab, size=(batch, hist_len), p=pop) + D.N_SPECIAL
    hist[np.arange(hist_len)[None, :] >= lengths[:, None]] = D.PAD
    hist = torch.as_tensor(hist)
    cand = torch.as_tensor(rng.choice(vocab, size=batch, p=pop) + D.N_SPECIAL)
    y = torch.as_tensor((rng.random(batch) < 0.2).astype(np.float32))
    content = torch.as_tensor(rng.standard_normal((vocab + D.N_SPECIAL, 512)).astype(np.float32))
    content[:D.N_SPECIAL] = 0
    out = {"vocab": vocab, "history": hist_len, "batch": batch, "content_dim": 512,
           "distinct_positions_share": round(float(torch.unique(hist[hist != D.PAD]).numel()
                                                   / int((hist != D.PAD).sum())), 3),
           "torch_threads": torch.get_num_threads()}
    logits = {}
    for name, fwd in (("paper_form", D.paper_logits), ("shipped", lambda m, h, c: m(h, c))):
        torch.manual_seed(seed)
        m = D.DIN(D.DINConfig(n_items=vocab, n_id_items=vocab, embedding_dim=32, content_dim=512), content)
        with torch.no_grad():
            logits[name] = fwd(m, hist, cand)
        opt = torch.optim.Adam(m.parameters(), lr=3e-3)
        loss = torch.nn.BCEWithLogitsLoss()

        def step():
            opt.zero_grad()
            loss(fwd(m, hist, cand), y).backward()
            opt.step()

        for _ in range(2):
            step()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        train = (time.perf_counter() - t0) / steps
        with torch.no_grad():
            t0 = time.perf_counter()
            for _ in range(steps):
                fwd(m, hist, cand)
            fwd_s = (time.perf_counter() - t0) / steps
        out[name] = {"train_step_seconds": round(train, 4), "forward_seconds": round(fwd_s, 4)}
    out["speedup_train_step"] = round(out["paper_form"]["train_step_seconds"] / out["shipped"]["train_step_seconds"], 2)
    out["max_abs_logit_difference"] = float((logits["paper_form"] - logits["shipped"]).abs().max())
    return out


DIN_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cache", "M", "models", "week=2026-11-23",
                         "din")


def din_score(model_dir: str, before: str, users: int = 600, cands: int = 150, mean_len: float = 13.5,
              reps: int = 3, seed: int = 0) -> dict:
    import torch
    from suite_hotspots import _old_module

    from recsys_spark.ranking import din as D

    torch.set_num_threads(1)
    files = {}
    for name in (D.CONFIG_FILE, D.STATE_FILE, D.VOCAB_FILE):
        with open(os.path.join(model_dir, name), "rb") as fh:
            files[name] = fh.read()
    model, vocab = D.from_files(files)
    n = model.config.n_items
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n + 1) ** 0.8
    pop /= pop.sum()
    lens = np.minimum(50, rng.geometric(1 / mean_len, size=users))
    hist = np.zeros((users, model.config.max_history), dtype=np.int64)
    for u, k in enumerate(lens):
        hist[u, :k] = rng.choice(n, size=k, p=pop) + D.N_SPECIAL
    owner = np.repeat(np.arange(users), cands)
    cand = rng.choice(n, size=users * cands, p=pop) + D.N_SPECIAL
    old = _old_module("recsys_spark/ranking/din.py", before, "din")
    old_model = old["DIN"](old["DINConfig"](**vars(model.config)), model.content).eval()
    old_model.load_state_dict(model.state_dict())
    runs = {"before_fp32": lambda: old["predict_grouped"](old_model, hist, cand, owner, 4096),
            "fp32": lambda: D.predict_grouped(model, hist, cand, owner, 4096, precision="fp32"),
            "bf16": lambda: D.predict_grouped(model, hist, cand, owner, 4096, precision="bf16")}
    best = {k: float("inf") for k in runs}
    with torch.inference_mode():
        model.item_table()
        old_model.item_table()
        probs = {k: fn() for k, fn in runs.items()}
        for _ in range(reps):                                   # interleaved, best of reps
            for k, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                best[k] = min(best[k], time.perf_counter() - t0)
    rows = users * cands
    out = {"model": model_dir, "vocabulary": n, "content_dim": model.config.content_dim,
           "item_dim": model.config.item_dim, "attention_hidden": model.config.attention_hidden,
           "users": users, "candidates": rows, "mean_history": round(float(lens.mean()), 1), "before_commit": before,
           "torch_threads": 1, "repetitions": reps,
           "rows_per_s_per_core": {k: round(rows / v) for k, v in best.items()},
           "speedup_vs_before": {k: round(best["before_fp32"] / v, 2) for k, v in best.items()},
           "max_abs_diff_fp32_vs_before": float(np.abs(probs["fp32"] - probs["before_fp32"]).max())}
    a, b = probs["fp32"], probs["bf16"]
    rho, kept = [], []
    for u in range(users):
        x, y = a[owner == u], b[owner == u]
        rho.append(np.corrcoef(np.argsort(np.argsort(x)), np.argsort(np.argsort(y)))[0, 1])
        kept.append(len(set(np.argsort(-x)[:30]) & set(np.argsort(-y)[:30])) / 30)
    out["bf16_vs_fp32"] = {"max_abs_diff": float(np.abs(a - b).max()), "mean_abs_diff": float(np.abs(a - b).mean()),
                           "probability_spread_fp32": [float(a.min()), float(a.max())],
                           # the trained model saturates: ties at 1 - 1e-7 ... 1 in fp32 are orders
                           # of float rounding that bf16 shuffles (the final blend is not moved by them)
                           "share_saturated_fp32_above_0.99999": float((a > 0.99999).mean()),
                           "users_with_a_saturated_top30": int(sum(
                               (np.sort(a[owner == u])[-30:] > 0.99999).sum() >= 2 for u in range(users))),
                           "spearman_per_user": {"min": round(float(np.min(rho)), 4), "mean": round(float(np.mean(rho)), 4)},
                           "top30_kept_per_user": {"min": round(float(np.min(kept)), 3),
                                                   "mean": round(float(np.mean(kept)), 3)}}
    return out


def main(args) -> dict:
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--texts", type=int, default=1000)
    p.add_argument("--din-steps", type=int, default=20)
    p.add_argument("--din-batch", type=int, default=2048)
    p.add_argument("--din-model", default=DIN_MODEL)
    p.add_argument("--before", default="403e255")
    p.add_argument("--parts", default="text,din_train,din_score")
    a = p.parse_args(args.extra)
    import torch

    from recsys_spark.common import native_bf16

    parts = [x for x in a.parts.split(",") if x]
    load0 = os.getloadavg()[0]
    default_threads = torch.get_num_threads()
    res = {"suite": "cpu_towers", "code": os.environ.get("RECSYS_CODE") or _git(),
           "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
           "cpu_native_bf16": native_bf16(torch.device("cpu")), "load_avg_1m_at_start": round(load0, 2)}
    if "text" in parts:
        texts = prompts(a.texts)
        res["text_tower"] = {m: text_tower(texts, m) for m in ("transformer", "roberta")}
    torch.set_num_threads(default_threads)  # the text part ran one thread per process, as a Spark task
    if "din_train" in parts:
        res["din_train_step"] = din_step(a.din_steps, a.din_batch)
    if "din_score" in parts:
        res["din_scoring"] = din_score(a.din_model, a.before)
    torch.set_num_threads(default_threads)
    res["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    res["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    full = set(parts) == {"text", "din_train", "din_score"}
    path = os.path.join(args.out, "cpu_towers.json" if full else f"cpu_towers_{'_'.join(parts)}.json")
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res, indent=1))
    return res
