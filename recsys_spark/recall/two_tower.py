"""The content channel's trained two-tower: a track tower over CLAP audio embeddings, learned on plays.

Model
-----
Track tower ``f(x) = normalize(MLP(z) + P z)`` with ``z = (x - mu) / sigma`` the standardised CLAP
audio embedding (``mu``, ``sigma`` from the training tracks, stored in the tower), ``MLP`` one hidden
ReLU layer and ``P`` a linear skip. User tower: the weighted mean of the tower vectors of the user's
seeds, L2-normalised, with the content channel's own seeds and seed weights. Serving is therefore the
content channel's faiss search with the index built over ``f(x)`` instead of ``x``; a track nobody
has played yet gets its vector from its audio alone (cold start).

Training (:func:`fit_two_tower`)
--------------------------------
For each label week ``L`` of the ``train_weeks`` weeks before W: the seeds as of ``L``
(:func:`recsys_spark.history.build_history` with the weekly run's history settings) and the user's
new positive plays in ``[L, L + 7d)`` (:func:`recsys_spark.history.label_positives`, the product's
target) give examples ``(seeds, positive track)``. They are sampled by a hash of ``(user, L)`` down to
``max_examples`` and collected to the driver with the audio embeddings of the tracks they name
(bounded by the sample, never the catalogue), then trained with in-batch softmax negatives,
log-Q corrected for each positive's frequency (Yi et al., RecSys 2019), at temperature ``tau``. The
latest label week is held out: early stopping and the best epoch are chosen on its recall@k over
the sample's tracks, and the raw embeddings (the similarity channel) are scored on the same held-out
users. ``max_steps`` bounds the training in optimiser steps (whole epochs), so its weekly cost stops
growing with the examples. When the tower does not beat them, :class:`~recsys_spark.recall.content.ContentRecall` serves
the similarity index and says so (``params["two_tower"]["served"]``).

The catalogue's tower vectors come from :func:`tower_vectors`, a ``mapInPandas`` over the embedding
table (torch on the executor's GPU when it has one, CPU otherwise).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import os
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ..common import deterministic_torch

log = logging.getLogger(__name__)

#: examples of fewer (user, label week) groups than this do not train a tower
MIN_GROUPS = 20
#: the held-out check (early stopping, tower vs raw vectors) is recall@HELDOUT_K
HELDOUT_K = 30


def _hash_unit(*cols) -> F.Column:
    return (F.abs(F.xxhash64(*cols)) % F.lit(1_000_003)).cast("double") / F.lit(1_000_003.0)


def training_examples(interactions: DataFrame, week: dt.date, train_weeks: int, n_seeds: int,
                      seed_weighting: str, embedded: DataFrame, history_kwargs: Optional[Dict[str, Any]] = None
                      ) -> DataFrame:
    """``user_id, label_week date, track_id (the positive), seeds array<struct<track_id, w>>``.

    One row per new positive play in ``[L, L + 7d)`` of a user with embedded seeds as of ``L``, for
    ``L = week - 7d .. week - 7 * train_weeks d``; seeds and positives restricted to ``embedded``
    (``track_id``: the tracks with an audio embedding)."""
    from ..history import build_history, label_positives
    from .content import seed_lists

    emb = embedded.select(F.col("track_id").cast("string").alias("track_id")).distinct()
    out = None
    for k in range(1, int(train_weeks) + 1):
        cut = week - dt.timedelta(weeks=k)
        before = interactions.where(F.col("event_ts") < F.lit(dt.datetime.combine(cut, dt.time())))
        seeds = build_history(before, cut, last_n=n_seeds, **(history_kwargs or {}))
        q = seed_lists(seeds.join(emb, "track_id", "left_semi"), n_seeds, seed_weighting)
        pos = label_positives(interactions, cut, cut + dt.timedelta(days=7)).join(emb, "track_id", "left_semi")
        ex = pos.join(q, "user_id").select("user_id", F.lit(cut).cast("date").alias("label_week"), "track_id",
                                           "seeds")
        out = ex if out is None else out.unionByName(ex)
    return out


def sample_examples(examples: DataFrame, max_examples: int, seed: int) -> Tuple[DataFrame, int]:
    """At most about ``max_examples`` rows, whole ``(user, label_week)`` groups kept or dropped by a
    hash (deterministic for a seed); returns the sample and the unsampled count."""
    n = examples.count()
    if n <= max_examples:
        return examples, n
    frac = max_examples / n
    return examples.where(_hash_unit(F.lit(int(seed)), F.lit("tt"), "user_id", "label_week") < frac), n


# -- the track tower's input ---------------------------------------------------------------------

def tag_vocabulary(tracks: DataFrame, n: int) -> List[str]:
    """The ``n`` style tags on the most tracks of ``tracks`` (``track_id, tags array<string>``), most
    common first (ties by tag); lower-cased and stripped. ``n`` strings reach the driver."""
    t = (tracks.select("track_id", F.explode_outer("tags").alias("tag"))
         .select("track_id", F.lower(F.trim("tag")).alias("tag")).where(F.length("tag") > 0)
         .distinct().groupBy("tag").count())
    return [r["tag"] for r in t.orderBy(F.col("count").desc(), F.col("tag")).limit(int(n)).collect()]


def tower_inputs(vectors: DataFrame, tracks: DataFrame, tags: List[str]) -> DataFrame:
    """``track_id, embedding``: each track's audio embedding followed by a 0/1 per tag of ``tags``
    (the track carries it; a track missing from ``tracks`` gets zeros). Training and serving both
    build the tower's input here, so a new track gets the same features as a trained one."""
    if not tags:
        return vectors.select("track_id", "embedding")
    tt = (tracks.select("track_id", F.transform(F.coalesce("tags", F.array().cast("array<string>")),
                                                lambda x: F.lower(F.trim(x))).alias("_tags"))
          .dropDuplicates(["track_id"]))
    vocab = F.array(*[F.lit(t) for t in tags])
    hot = F.transform(vocab, lambda t: F.when(F.array_contains(F.coalesce("_tags", F.array().cast("array<string>")), t),
                                              F.lit(1.0)).otherwise(F.lit(0.0)).cast("float"))
    return (vectors.select("track_id", F.col("embedding").cast("array<float>").alias("embedding"))
            .join(tt, "track_id", "left")
            .select("track_id", F.concat("embedding", hot).alias("embedding")))


# -- the towers --------------------------------------------------------------------------------

def _tower_class():
    import torch

    class TrackTower(torch.nn.Module):
        """``normalize(MLP(z) + P z)``, ``z`` the standardised input (module doc)."""

        def __init__(self, in_dim: int, hidden: int, out_dim: int):
            super().__init__()
            self.mlp = torch.nn.Sequential(torch.nn.Linear(in_dim, hidden), torch.nn.ReLU(),
                                           torch.nn.Linear(hidden, out_dim))
            self.skip = torch.nn.Linear(in_dim, out_dim, bias=False)
            self.register_buffer("mu", torch.zeros(in_dim))
            self.register_buffer("sigma", torch.ones(in_dim))

        def forward(self, x):
            z = (x - self.mu) / self.sigma
            return torch.nn.functional.normalize(self.mlp(z) + self.skip(z), dim=-1)

    return TrackTower


def build_tower(in_dim: int, hidden: int, out_dim: int):
    """A fresh :class:`TrackTower` (random weights; seed torch first for determinism)."""
    return _tower_class()(int(in_dim), int(hidden), int(out_dim))


def tower_bytes(tower, spec: Dict[str, int]) -> bytes:
    """The tower's weights and shape as bytes (``torch.save`` of tensors and ints only)."""
    import torch

    buf = io.BytesIO()
    torch.save({"spec": dict(spec), "state": {k: v.detach().cpu() for k, v in tower.state_dict().items()}}, buf)
    return buf.getvalue()


def tower_from_bytes(blob: bytes, device: Any = "cpu"):
    """Rebuild a tower from :func:`tower_bytes` (``weights_only=True``: no pickled code is run)."""
    import torch

    obj = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    spec = obj["spec"]
    tower = build_tower(spec["in_dim"], spec["hidden"], spec["out_dim"])
    tower.load_state_dict(obj["state"])
    return tower.to(device).eval()


_CACHE: Dict[str, Any] = {}


def _cached_tower(blob: bytes, device: str):
    key = hashlib.sha1(blob).hexdigest() + device
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = tower_from_bytes(blob, device)
    return _CACHE[key]


def tower_vectors(vectors: DataFrame, blob: bytes, device: str = "auto", batch_size: int = 4096) -> DataFrame:
    """``track_id, embedding array<float>``: the tower applied to ``vectors`` (``track_id, embedding``)
    in a ``mapInPandas`` (GPU when the executor has one and ``device`` is ``auto``/``cuda``)."""

    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import torch

        from ..common import resolve_device

        dev = resolve_device(device)
        tower = _cached_tower(blob, str(dev))
        for pdf in batches:
            if pdf.empty:
                continue
            x = np.stack(pdf["embedding"].map(lambda a: np.asarray(a, dtype=np.float32)).to_numpy())
            outs = []
            with torch.no_grad():
                for s in range(0, len(x), batch_size):
                    outs.append(tower(torch.from_numpy(x[s:s + batch_size]).to(dev)).cpu().numpy())
            y = np.concatenate(outs).astype(np.float32)
            yield pd.DataFrame({"track_id": pdf["track_id"].to_numpy(), "embedding": list(y)})

    return vectors.select("track_id", "embedding").mapInPandas(fn, "track_id string, embedding array<float>")


# -- training on the driver ----------------------------------------------------------------------

def _l2n(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def _encode(pdf: pd.DataFrame, pos_map: Dict[str, int], max_seeds: int):
    """Arrays of a collected examples frame: positive row, padded seed rows and weights."""
    n = len(pdf)
    pos = np.fromiter((pos_map[t] for t in pdf["track_id"]), dtype=np.int64, count=n)
    hist = np.zeros((n, max_seeds), dtype=np.int64)
    w = np.zeros((n, max_seeds), dtype=np.float32)
    for i, seeds in enumerate(pdf["seeds"]):
        # in track order: a seed list's order is collect_list's, which follows the shuffle
        row = sorted((pos_map[s["track_id"]], s["w"]) for s in seeds if s["track_id"] in pos_map)[:max_seeds]
        for j, (p, wt) in enumerate(row):
            hist[i, j], w[i, j] = p, wt
    return pos, hist, w


def heldout_recall(track_vecs: np.ndarray, hist: np.ndarray, w: np.ndarray, groups: np.ndarray,
                   pos: np.ndarray, k: int) -> float:
    """Mean over held-out groups of ``|top-k ∩ positives| / min(|positives|, k)``, the top-k of the
    group's user vector (weighted mean of its seeds' vectors) over all ``track_vecs``, seeds excluded
    (:func:`heldout_recall_per_group`; 0.0 without groups)."""
    per = heldout_recall_per_group(track_vecs, hist, w, groups, pos, k)
    return float(np.mean(per)) if len(per) else 0.0


def heldout_recall_per_group(track_vecs: np.ndarray, hist: np.ndarray, w: np.ndarray, groups: np.ndarray,
                             pos: np.ndarray, k: int) -> np.ndarray:
    """Each held-out group's ``|top-k ∩ positives| / min(|positives|, k)`` (in the order of
    ``np.unique(groups)``), the top-k of the group's user vector (weighted mean of its seeds'
    vectors) over all ``track_vecs``, seeds excluded.

    Vectorised (torch ``topk`` and a scatter per block of 1,024 groups, no Python loop per group): it
    runs after every training epoch, where a loop per group took 6.3 s at size M (14K held-out
    users, 28.5K tracks) against ~7 s for the epoch's training; this takes 1.5 s for the same value."""
    import torch

    n_t = track_vecs.shape[0]
    uniq, first, inv = np.unique(groups, return_index=True, return_inverse=True)
    if len(uniq) == 0:
        return np.zeros(0)
    kk = min(k, n_t)
    # each group's distinct positives, as (group, track) pairs sorted by group
    pair = np.unique(inv.astype(np.int64) * n_t + pos.astype(np.int64))
    pg, pt = pair // n_t, pair % n_t
    hits = np.zeros(len(uniq), dtype=np.int64)
    vt = torch.from_numpy(np.ascontiguousarray(track_vecs, dtype=np.float32)).T
    for c in range(0, len(first), 1024):  # bounded memory: 1024 users x tracks at a time
        f = first[c:c + 1024]
        u = _l2n((track_vecs[hist[f]] * w[f][..., None]).sum(axis=1)).astype(np.float32)
        scores = torch.from_numpy(u) @ vt
        r, j = np.nonzero(w[f] > 0)
        scores[torch.from_numpy(r), torch.from_numpy(hist[f][r, j])] = -float("inf")
        top = torch.zeros(scores.shape, dtype=torch.bool).scatter_(1, torch.topk(scores, kk, dim=1).indices, True)
        lo, hi = np.searchsorted(pg, [c, c + len(f)])
        hit = top[torch.from_numpy(pg[lo:hi] - c), torch.from_numpy(pt[lo:hi])].numpy()
        hits += np.bincount(pg[lo:hi][hit], minlength=len(uniq))
    return hits / np.minimum(np.bincount(pg, minlength=len(uniq)), k)


def fit_two_tower(examples: pd.DataFrame, embeddings: pd.DataFrame, hidden: int = 256, out_dim: int = 64,
                  epochs: int = 20, batch_size: int = 512, lr: float = 1e-3, temperature: float = 0.05,
                  patience: int = 3, k: int = HELDOUT_K, max_seeds: int = 20, seed: int = 0, device: str = "auto",
                  use_torch_distributor: bool = False, num_processes: int = 1,
                  similarity_dims: Optional[int] = None, max_steps: int = 0) -> Tuple[Optional[Any], Dict[str, Any]]:
    """Train the track tower on collected examples (module doc); ``(tower or None, report)``.

    Parameters
    ----------
    examples : pandas.DataFrame
        ``user_id, label_week, track_id, seeds`` (:func:`training_examples`, sampled).
    embeddings : pandas.DataFrame
        ``track_id, embedding`` of every track the examples name.
    use_torch_distributor, num_processes : bool, int
        Train with ``TorchDistributor(local_mode=True)`` and DDP over ``num_processes`` processes
        (needs an active SparkSession): each process takes every ``num_processes``-th training
        example, gradients are averaged, process 0 scores the held-out week after every epoch,
        keeps the best epoch and tells the others when to stop (the same early stopping).
    similarity_dims : int, optional
        The raw embeddings the tower is compared with are the first ``similarity_dims`` columns of
        ``embedding`` (the audio part when tags follow it; default: all).
    max_steps : int
        The training's budget in optimiser steps (0: none): training stops after the epoch in which
        the steps reach it (that epoch is scored like every other; the best epoch is still kept).
        It bounds the weekly cost when the examples grow; ``report["stopped"]`` says whether the
        budget, the patience or ``epochs`` ended the training. Under DDP the steps are process 0's
        (each process steps through its own ``1/num_processes`` of the examples).

    Returns
    -------
    (tower, report)
        ``tower`` is None when there is too little to train on (``report["reason"]``). The report
        gives the example counts, epochs, the held-out recall@k of the tower and of the raw
        embeddings (``valid_recall``, ``similarity_valid_recall``), the best epoch and seconds.
    """
    import torch

    from ..common import resolve_device

    t0 = time.perf_counter()
    rep: Dict[str, Any] = {"examples": int(len(examples)), "k": int(k)}
    emb = embeddings.dropna().drop_duplicates("track_id").sort_values("track_id", kind="mergesort")
    ids = emb["track_id"].tolist()
    pos_map = {t: i for i, t in enumerate(ids)}
    # in one order whatever order the examples were collected in (a collect follows the partitions):
    # the same examples and seed train the same tower
    ex = (examples[examples["track_id"].isin(pos_map)]
          .sort_values(["label_week", "user_id", "track_id"], kind="mergesort").reset_index(drop=True))
    ex["group"] = ex["user_id"].astype(str) + "|" + ex["label_week"].astype(str)
    weeks = sorted(ex["label_week"].unique())
    if len(weeks) >= 2:
        valid_mask = (ex["label_week"] == weeks[-1]).to_numpy()
        rep["valid_split"] = f"label week {weeks[-1]} held out"
    else:  # one label week: 20% of its users, by a hash
        h = ex["user_id"].map(lambda u: int(hashlib.sha1(f"{seed}|{u}".encode()).hexdigest()[:8], 16) % 5)
        valid_mask = (h == 0).to_numpy()
        rep["valid_split"] = "one label week: 20% of users held out"
    n_tr_groups = ex.loc[~valid_mask, "group"].nunique()
    n_va_groups = ex.loc[valid_mask, "group"].nunique()
    rep.update(train_examples=int((~valid_mask).sum()), valid_examples=int(valid_mask.sum()),
               train_groups=int(n_tr_groups), valid_groups=int(n_va_groups), tracks=len(ids))
    if n_tr_groups < MIN_GROUPS or n_va_groups < 2:
        rep["reason"] = (f"too few examples to train: {n_tr_groups} training and {n_va_groups} held-out "
                         f"(user, week) groups (need {MIN_GROUPS} and 2)")
        rep["seconds"] = round(time.perf_counter() - t0, 2)
        return None, rep

    x = np.stack(emb["embedding"].map(lambda a: np.asarray(a, dtype=np.float32)).to_numpy())
    pos, hist, w = _encode(ex, pos_map, max_seeds)
    groups = pd.factorize(ex["group"])[0]
    tr, va = np.flatnonzero(~valid_mask), np.flatnonzero(valid_mask)
    raw = x if similarity_dims is None else x[:, :int(similarity_dims)]
    raw_per = heldout_recall_per_group(_l2n(raw), hist[va], w[va], groups[va], pos[va], k)
    rep["similarity_valid_recall"] = round(float(np.mean(raw_per)) if len(raw_per) else 0.0, 6)

    torch.manual_seed(int(seed))
    dev = resolve_device(device)
    tower = build_tower(x.shape[1], hidden, out_dim)
    train_rows = np.unique(np.concatenate([pos[tr], hist[tr][w[tr] > 0]]))
    tower.mu.copy_(torch.from_numpy(x[train_rows].mean(axis=0)))
    # a column constant over the training tracks (a tag none of them carries) is not scaled up:
    # a new track carrying it must not get a huge input
    sd = x[train_rows].std(axis=0)
    tower.sigma.copy_(torch.from_numpy(np.where(sd > 1e-4, sd + 1e-6, 1.0).astype(np.float32)))
    counts = np.bincount(pos[tr], minlength=len(ids)).astype(np.float64)
    logq = np.log(np.maximum(counts, 1.0) / max(len(tr), 1)).astype(np.float32)
    arrays = dict(x=x, pos=pos, hist=hist, w=w, groups=groups, tr=tr, va=va, logq=logq)
    settings = dict(epochs=int(epochs), batch_size=int(batch_size), lr=float(lr), temperature=float(temperature),
                    patience=int(patience), k=int(k), seed=int(seed), max_steps=int(max_steps))
    if use_torch_distributor:
        best_state, history, best_epoch = _fit_distributed(tower, arrays, settings, int(num_processes), dev)
        rep["processes"] = int(num_processes)
    else:
        best_state, history, best_epoch = _epochs(tower.to(dev), arrays, settings, dev)
        rep["processes"] = 1
    best = history[best_epoch - 1]["valid_recall"]
    tower.load_state_dict(best_state)
    tower = tower.cpu().eval()
    rep.update(heldout_intervals(tower, x, raw_per, (hist[va], w[va], groups[va], pos[va]), k, seed))
    last = history[-1]
    stopped = ("max_steps" if max_steps > 0 and last["steps"] >= max_steps and len(history) < epochs
               else "patience" if len(history) < epochs else "epochs")
    rep.update(valid_recall=round(best, 6), best_epoch=best_epoch, epochs_run=len(history), history=history,
               steps=int(last["steps"]), stopped=stopped,
               device=str(dev), in_dim=int(x.shape[1]), hidden=int(hidden), out_dim=int(out_dim),
               seconds=round(time.perf_counter() - t0, 2))
    return tower, rep


def _all_track_vectors(tower, X) -> np.ndarray:
    """The tower's vector of every row of ``X`` (a tensor on the tower's device), in blocks of 8,192,
    in eval mode (the tower's mode is restored after)."""
    import torch

    training = tower.training
    tower.eval()
    with torch.no_grad():
        out = torch.cat([tower(X[s:s + 8192]) for s in range(0, len(X), 8192)]).cpu().numpy()
    tower.train(training)
    return out


def heldout_intervals(tower, x: np.ndarray, raw_per: np.ndarray, heldout: Tuple[np.ndarray, ...], k: int,
                      seed: int, n_resamples: int = 1000) -> Dict[str, Any]:
    """95% bootstrap intervals over the held-out users (resampled with replacement, seeded) of the
    trained ``tower``'s held-out recall@k, of the raw vectors' (``raw_per``, per group) and of the
    paired gain (tower - raw). The tower's best epoch was chosen on these users, so its interval
    is of a selected model (optimistic by the selection), not of a fresh week."""
    import torch

    from ..evaluation.metrics import bootstrap_ci, paired_bootstrap_ci

    if len(raw_per) == 0:
        return {}
    per = heldout_recall_per_group(_all_track_vectors(tower, torch.from_numpy(x)), *heldout, k)
    ci = lambda lo_hi: [round(v, 6) for v in lo_hi]  # noqa: E731
    return {"valid_users": int(len(per)), "valid_recall_ci95": ci(bootstrap_ci(per, n_resamples, seed)),
            "similarity_valid_recall_ci95": ci(bootstrap_ci(raw_per, n_resamples, seed)),
            "valid_recall_gain_ci95": ci(paired_bootstrap_ci(per, raw_per, n_resamples, seed))}


@deterministic_torch()
def _epochs(tower, arrays: Dict[str, np.ndarray], st: Dict[str, Any], dev, ddp=None, rank: int = 0,
            world: int = 1) -> Tuple[Optional[Dict[str, Any]], List[Dict[str, Any]], int]:
    """The training loop of :func:`fit_two_tower` (module doc): ``(best epoch's state, history, best epoch)``.

    Under DDP (``ddp`` wraps ``tower``; ``rank`` of ``world`` processes) this process trains on every
    ``world``-th training example; process 0 scores the held-out week, keeps the best state and
    broadcasts when to stop; the others return ``(None, [], 0)``."""
    import torch

    X = torch.from_numpy(arrays["x"]).to(dev)
    P, H, Wt = (torch.from_numpy(arrays[a]).to(dev) for a in ("pos", "hist", "w"))
    logq = torch.from_numpy(arrays["logq"]).to(dev)
    hist, w, groups, pos, va = (arrays[a] for a in ("hist", "w", "groups", "pos", "va"))
    tr = arrays["tr"][rank::world]
    model = ddp if ddp is not None else tower
    opt = torch.optim.Adam(tower.parameters(), lr=st["lr"])
    gen = torch.Generator().manual_seed(st["seed"])
    bs, temperature = st["batch_size"], st["temperature"]

    def one_epoch() -> Tuple[float, int]:
        perm = torch.from_numpy(tr)[torch.randperm(len(tr), generator=gen)].to(dev)
        total, nb = 0.0, 0
        for s in range(0, len(perm), bs):
            b = perm[s:s + bs]
            if len(b) < 2:
                continue
            pb, hb, wb = P[b], H[b], Wt[b]
            uniq, inv = torch.unique(torch.cat([pb, hb.flatten()]), return_inverse=True)
            t = model(X[uniq])
            tp, th = t[inv[:len(b)]], t[inv[len(b):]].view(len(b), hb.shape[1], -1)
            u = torch.nn.functional.normalize((th * wb.unsqueeze(-1)).sum(1), dim=-1)
            logits = u @ tp.T / temperature - logq[pb].unsqueeze(0)
            same = (pb.unsqueeze(0) == pb.unsqueeze(1)) & ~torch.eye(len(b), dtype=torch.bool, device=dev)
            logits = logits.masked_fill(same, float("-inf"))
            loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(b), device=dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, nb = total + loss.item(), nb + 1
        return total, nb

    best, best_epoch, best_state, bad, history, steps = -1.0, 0, None, 0, [], 0
    budget = int(st.get("max_steps", 0))
    for epoch in range(1, st["epochs"] + 1):
        if ddp is not None:
            with ddp.join():  # shards of unequal size: the processes' batch counts may differ by one
                total, nb = one_epoch()
        else:
            total, nb = one_epoch()
        steps += nb
        stop = False
        if rank == 0:
            rec = heldout_recall(_all_track_vectors(tower, X), hist[va], w[va], groups[va], pos[va], st["k"])
            history.append({"epoch": epoch, "loss": round(total / max(nb, 1), 5), "valid_recall": round(rec, 6),
                            "steps": steps})
            log.info("two-tower epoch %d: loss %.4f, held-out recall@%d %.4f", epoch, total / max(nb, 1),
                     st["k"], rec)
            if rec > best:
                best, best_epoch, bad = rec, epoch, 0
                best_state = {kk: v.detach().clone() for kk, v in tower.state_dict().items()}
            else:
                bad += 1
                stop = bad >= st["patience"]
            stop = stop or (budget > 0 and steps >= budget)
        if ddp is not None:
            import torch.distributed as dist

            flag = torch.tensor([1 if stop else 0], device=dev)
            dist.broadcast(flag, 0)
            stop = bool(flag.item())
        if stop:
            break
    return best_state, history, best_epoch


def _ddp_tower_train(init_path: str, data_path: str, out_path: str, settings: Dict[str, Any]) -> None:
    """Body run by TorchDistributor in every process (module-level: importable by the workers)."""
    import torch
    import torch.distributed as dist

    use_gpu = bool(settings.get("use_gpu")) and torch.cuda.is_available()
    dist.init_process_group("nccl" if use_gpu else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    dev = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}") if use_gpu else torch.device("cpu")
    obj = torch.load(init_path, map_location="cpu", weights_only=True)
    spec = obj["spec"]
    torch.manual_seed(settings["seed"])
    tower = build_tower(spec["in_dim"], spec["hidden"], spec["out_dim"])
    tower.load_state_dict(obj["state"])
    tower.to(dev)
    ddp = torch.nn.parallel.DistributedDataParallel(tower)
    with np.load(data_path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    best_state, history, best_epoch = _epochs(tower, arrays, settings, dev, ddp=ddp, rank=rank, world=world)
    if rank == 0:
        torch.save({k: v.detach().cpu() for k, v in best_state.items()}, out_path)
        with open(out_path + ".json", "w") as fh:
            json.dump({"history": history, "best_epoch": best_epoch}, fh)
    dist.destroy_process_group()


def _fit_distributed(tower, arrays: Dict[str, np.ndarray], st: Dict[str, Any], num_processes: int, dev
                     ) -> Tuple[Dict[str, Any], List[Dict[str, Any]], int]:
    """:func:`_epochs` under ``TorchDistributor(local_mode=True)`` over ``num_processes`` processes."""
    import torch
    from pyspark.ml.torch.distributor import TorchDistributor

    use_gpu = dev.type == "cuda"
    with tempfile.TemporaryDirectory(prefix="two-tower-ddp-") as tmp:
        init_path, data_path, out_path = (os.path.join(tmp, n) for n in ("init.pt", "data.npz", "trained.pt"))
        spec = {"in_dim": int(arrays["x"].shape[1]), "hidden": int(tower.mlp[0].out_features),
                "out_dim": int(tower.skip.out_features)}
        torch.save({"spec": spec, "state": {k: v.detach().cpu() for k, v in tower.state_dict().items()}}, init_path)
        np.savez(data_path, **arrays)
        TorchDistributor(num_processes=num_processes, local_mode=True, use_gpu=use_gpu).run(
            _ddp_tower_train, init_path, data_path, out_path, {**st, "use_gpu": use_gpu})
        best_state = torch.load(out_path, map_location="cpu", weights_only=True)
        with open(out_path + ".json") as fh:
            out = json.load(fh)
    return best_state, out["history"], int(out["best_epoch"])


def collect_examples(interactions: DataFrame, week: dt.date, vectors: DataFrame, params: Dict[str, Any],
                     history_kwargs: Optional[Dict[str, Any]] = None) -> Tuple[pd.DataFrame, pd.DataFrame, int]:
    """Build and sample week W's examples and collect them with their tracks' vectors:
    ``(examples, embeddings, examples before sampling)`` (the first half of :func:`train_for_week`)."""
    from pyspark import StorageLevel

    p = params
    t0 = time.perf_counter()
    # the examples are read three times (counted, collected, their tracks' embeddings looked up):
    # built once (four label weeks of histories and positives), not three times
    ex = training_examples(interactions, week, p["train_weeks"], p["n_seeds"], p["seed_weighting"], vectors,
                           history_kwargs).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        sample, n_all = sample_examples(ex, p["max_examples"], p["seed"])
        pdf = sample.toPandas()
        named = (sample.select(F.explode(F.concat(F.array("track_id"), F.transform("seeds", lambda s: s["track_id"])))
                               .alias("track_id")).distinct())
        emb = vectors.join(named, "track_id", "left_semi").toPandas()
    finally:
        ex.unpersist()
    log.info("two-tower: %d examples (of %d) over %d tracks collected in %.1fs", len(pdf), n_all, len(emb),
             time.perf_counter() - t0)
    return pdf, emb, int(n_all)


def fit_params(params: Dict[str, Any]) -> Dict[str, Any]:
    """:func:`fit_two_tower`'s keyword arguments from the content channel's ``params``."""
    p = params
    return dict(hidden=p["tower_hidden"], out_dim=p["tower_dim"], epochs=p["epochs"], batch_size=p["train_batch_size"],
                lr=p["lr"], temperature=p["temperature"], patience=p["patience"], max_seeds=p["n_seeds"],
                seed=p["seed"], device=p["device"], use_torch_distributor=p.get("use_torch_distributor", False),
                num_processes=p.get("num_processes", 1), similarity_dims=p.get("similarity_dims"),
                max_steps=p.get("max_steps", 0))


def train_for_week(interactions: DataFrame, week: dt.date, vectors: DataFrame, params: Dict[str, Any],
                   history_kwargs: Optional[Dict[str, Any]] = None) -> Tuple[Optional[bytes], Dict[str, Any]]:
    """Build, sample and collect the examples of week W, train; ``(tower bytes or None, report)``.

    ``vectors``: ``track_id, embedding`` (the channel's audio embeddings of one model version).
    ``params``: the content channel's parameters (``train_weeks``, ``max_examples``, ``n_seeds``,
    ``seed_weighting``, the tower's sizes and optimiser settings, ``seed``, ``device``)."""
    t0 = time.perf_counter()
    pdf, emb, n_all = collect_examples(interactions, week, vectors, params, history_kwargs)
    tower, rep = fit_two_tower(pdf, emb, **fit_params(params))
    rep["examples_before_sampling"] = int(n_all)
    rep["build_seconds"] = round(time.perf_counter() - t0 - rep.get("seconds", 0.0), 2)
    if tower is None:
        return None, rep
    spec = {"in_dim": rep["in_dim"], "hidden": rep["hidden"], "out_dim": rep["out_dim"]}
    return tower_bytes(tower, spec), rep
