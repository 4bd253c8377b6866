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

Result: ``benchmarks/results/cpu_towers.json``.
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


def main(args) -> dict:
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--texts", type=int, default=1000)
    p.add_argument("--din-steps", type=int, default=20)
    p.add_argument("--din-batch", type=int, default=2048)
    a = p.parse_args(args.extra)
    import torch

    load0 = os.getloadavg()[0]
    default_threads = torch.get_num_threads()
    texts = prompts(a.texts)
    res = {"suite": "cpu_towers", "code": os.environ.get("RECSYS_CODE") or _git(),
           "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
           "load_avg_1m_at_start": round(load0, 2),
           "text_tower": {m: text_tower(texts, m) for m in ("transformer", "roberta")}}
    torch.set_num_threads(default_threads)  # the text part ran one thread per process, as a Spark task
    res["din_train_step"] = din_step(a.din_steps, a.din_batch)
    res["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    res["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    path = os.path.join(args.out, "cpu_towers.json")
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res, indent=1))
    return res
