"""Tuning the fusion of the ranking stage on a validation split (never on the test users).

The weekly pipeline ranks a user's candidates by :func:`recsys_spark.ranking.fusion.fuse`
(weighted reciprocal-rank fusion of the channels) followed by
:func:`recsys_spark.ranking.fusion.final_score` (per-user min-max of the fused recall score and the
DIN score, weighted mean). Neither the channels' candidates nor DIN depend on the fusion
parameters, so the candidates are produced once (the pipeline's own evaluation path,
``recsys_spark.pipeline.evaluation_stages``) and re-fused for every point of a grid.

Protocol:

1. :func:`validation_split`: the EVALUATION.md split applied to the *training* events of the test
   split (cut at their 90th percentile). Its truth lies before the test cutoff; its users are
   validation users, whatever their overlap with the test users, and no test-period event is seen.
2. :func:`candidate_table` + :class:`FusionGrid`: every grid point scored on the validation split
   by :meth:`CandidateTable.evaluate` (a numpy replica of ``fuse(method="rank")`` +
   ``final_score`` + top-``k`` with the evaluation's metrics; a test checks it against the Spark
   functions).
3. The chosen point is applied once to the test split by the caller (``benchmarks/suite_ranking.py``).

The numpy replica collects the candidates to the driver: this is an offline tool for data sets of
the size of ../shared/data, not part of the weekly job.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from .split import Split, temporal_split

log = logging.getLogger(__name__)


def validation_split(split: Split, quantile: float = 0.9) -> Split:
    """The same protocol on ``split.train_events`` only (nothing at or after the test cutoff)."""
    return temporal_split(split.train_events, quantile)


@dataclass(frozen=True)
class FusionParams:
    """One point of the grid: ``fusion.*`` values (``method = rank``)."""

    channel_weights: Mapping[str, float]
    rrf_k: float = 60.0
    din_weight: float = 1.0
    recall_weight: float = 1.0

    def overrides(self) -> Dict[str, object]:
        """Dotted config overrides (``--set`` / ``params['pipeline']``) that select this point."""
        out: Dict[str, object] = {f"fusion.channel_weights.{c}": float(w) for c, w in sorted(self.channel_weights.items())}
        out.update({"fusion.rrf_k": float(self.rrf_k), "fusion.din_weight": float(self.din_weight),
                    "fusion.recall_weight": float(self.recall_weight)})
        return out

    def key(self) -> tuple:
        return (tuple(sorted(self.channel_weights.items())), self.rrf_k, self.din_weight, self.recall_weight)

    def as_dict(self) -> Dict[str, object]:
        return {"channel_weights": dict(sorted(self.channel_weights.items())), "rrf_k": self.rrf_k,
                "din_weight": self.din_weight, "recall_weight": self.recall_weight}


@dataclass
class FusionGrid:
    """Cartesian grid of fusion parameters; channel weights are relative (per-user min-max makes
    a common scale irrelevant), so one channel (``anchor``) keeps weight 1."""

    channel_weights: Mapping[str, Sequence[float]]
    rrf_k: Sequence[float] = (60.0,)
    din_weight: Sequence[float] = (1.0,)
    fixed_weights: Mapping[str, float] = field(default_factory=dict)

    def points(self) -> List[FusionParams]:
        names = sorted(self.channel_weights)
        out = []
        for ws in itertools.product(*[self.channel_weights[n] for n in names]):
            cw = dict(self.fixed_weights)
            cw.update(dict(zip(names, ws)))
            for k in self.rrf_k:
                for d in self.din_weight:
                    out.append(FusionParams(cw, float(k), float(d)))
        return out


class CandidateTable:
    """Candidates of every channel (+ DIN score) of the users of one split, in numpy.

    Parameters
    ----------
    cands : pandas.DataFrame
        ``user_id, track_id, channel, rank`` and optionally ``din_score`` (one row per channel
        that proposed the track; duplicates keep the best rank, as ``fuse`` does).
    truth : pandas.DataFrame
        ``user_id, track_id`` of the split.
    test_users : pandas.DataFrame
        ``user_id, n_truth``: the users the metrics average over (users without candidates
        count as zero).
    """

    def __init__(self, cands: pd.DataFrame, truth: pd.DataFrame, test_users: pd.DataFrame):
        c = cands.copy()
        c["rank"] = c["rank"].astype(float)
        if "din_score" not in c.columns:
            c["din_score"] = np.nan
        ranks = c.pivot_table(index=["user_id", "track_id"], columns="channel", values="rank", aggfunc="min")
        din = c.groupby(["user_id", "track_id"])["din_score"].max()
        t = ranks.reset_index().merge(din.reset_index(), on=["user_id", "track_id"], how="left")
        # order: user, then track id (the tie-break of the Spark top-k)
        t = t.sort_values(["user_id", "track_id"], kind="mergesort", ignore_index=True)
        self.keys = t[["user_id", "track_id"]]
        self.channels = [ch for ch in ranks.columns]
        self.ranks = {ch: t[ch].to_numpy(dtype=float) for ch in self.channels}
        self.din = t["din_score"].to_numpy(dtype=float)
        users = t["user_id"].to_numpy()
        self.starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
        self.ends = np.r_[self.starts[1:], len(users)]
        self.user_of = np.repeat(np.arange(len(self.starts)), self.ends - self.starts)
        self.users = users[self.starts]
        truth_keys = set(zip(truth["user_id"], truth["track_id"]))
        self.hit = np.fromiter(((u, i) in truth_keys for u, i in zip(t["user_id"], t["track_id"])), bool, len(t))
        nt = dict(zip(test_users["user_id"], test_users["n_truth"]))
        self.n_test_users = len(nt)
        self.n_truth = np.array([nt.get(u, 0) for u in self.users], dtype=float)
        self.is_test = np.array([u in nt for u in self.users])
        self.n = len(t)

    def _subset(self, keep: np.ndarray, ranks: Optional[Dict[str, np.ndarray]] = None) -> "CandidateTable":
        """A copy holding the rows in ``keep`` (row order, and so the tie-break, unchanged)."""
        out = object.__new__(CandidateTable)
        out.keys = self.keys[keep].reset_index(drop=True)
        out.channels = list(self.channels)
        out.ranks = {ch: (ranks or self.ranks)[ch][keep] for ch in self.channels}
        out.din = self.din[keep]
        out.hit = self.hit[keep]
        users = out.keys["user_id"].to_numpy()
        out.starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else np.zeros(0, int)
        out.ends = np.r_[out.starts[1:], len(users)]
        out.user_of = np.repeat(np.arange(len(out.starts)), out.ends - out.starts)
        out.users = users[out.starts]
        pos = {u: i for i, u in enumerate(self.users)}
        idx = np.array([pos[u] for u in out.users], dtype=int)
        out.n_truth = self.n_truth[idx] if len(idx) else np.zeros(0)
        out.is_test = self.is_test[idx] if len(idx) else np.zeros(0, bool)
        out.n_test_users = self.n_test_users
        out.n = int(keep.sum())
        return out

    def truncated(self, depths: Mapping[str, int]) -> "CandidateTable":
        """The table the channels would give with ``recall.<channel>.candidates = depths[channel]``:
        ranks deeper than the depth are dropped, and rows no channel keeps disappear (DIN scores of
        the kept rows are unchanged; DIN does not depend on the other candidates)."""
        ranks = {ch: np.where(self.ranks[ch] <= depths.get(ch, np.inf), self.ranks[ch], np.nan)
                 for ch in self.channels}
        keep = np.zeros(self.n, bool)
        for r in ranks.values():
            keep |= ~np.isnan(r)
        return self._subset(keep, ranks)

    def preranked(self, p: FusionParams, top_n: int) -> "CandidateTable":
        """Each user's best ``top_n`` rows by fused recall score (``pipeline.prerank``; 0 = all)."""
        if top_n <= 0:
            return self
        score = self.recall_score(p)
        order = np.lexsort((np.arange(self.n), -score, self.user_of))
        pos = np.empty(self.n, dtype=int)
        pos[order] = np.arange(self.n) - self.starts[self.user_of[order]]
        return self._subset(pos < top_n)

    def _per_user_minmax(self, x: np.ndarray) -> np.ndarray:
        """Per-user min-max scaling with NaN kept; constant (non-null) groups scale to 1."""
        filled_lo = np.where(np.isnan(x), np.inf, x)
        filled_hi = np.where(np.isnan(x), -np.inf, x)
        lo = np.minimum.reduceat(filled_lo, self.starts)[self.user_of]
        hi = np.maximum.reduceat(filled_hi, self.starts)[self.user_of]
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(hi > lo, (x - lo) / (hi - lo), 1.0)
        return np.where(np.isnan(x), np.nan, out)

    def recall_score(self, p: FusionParams, default_weight: float = 0.0) -> np.ndarray:
        s = np.zeros(self.n)
        for ch in self.channels:
            w = float(p.channel_weights.get(ch, default_weight))
            r = self.ranks[ch]
            s += np.where(np.isnan(r), 0.0, w / (p.rrf_k + np.nan_to_num(r, nan=1.0)))
        return s

    def final_score(self, p: FusionParams) -> np.ndarray:
        """``final_score`` of :mod:`recsys_spark.ranking.fusion` (quality weight 0)."""
        comps = [(self.recall_score(p), p.recall_weight)]
        if p.din_weight > 0:
            comps.append((self.din, p.din_weight))
        num, den = np.zeros(self.n), np.zeros(self.n)
        for x, w in comps:
            sc = self._per_user_minmax(x)
            num += np.nan_to_num(sc * w, nan=0.0)
            den += np.where(np.isnan(sc), 0.0, w)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, 0.0)

    def frame(self, p: FusionParams) -> pd.DataFrame:
        """``user_id, track_id, channels (list), recall_score, din_score, final_score`` under ``p``:
        the input of the re-ranking rules."""
        out = self.keys.copy()
        present = np.stack([~np.isnan(self.ranks[ch]) for ch in self.channels], axis=1)
        names = np.array(self.channels, dtype=object)
        out["channels"] = [list(names[row]) for row in present]
        out["recall_score"] = self.recall_score(p)
        out["din_score"] = self.din
        out["final_score"] = self.final_score(p)
        return out

    def metrics(self, score: np.ndarray, k: int = 30) -> Dict[str, float]:
        """recall@k, NDCG@k and hit@k of the top ``k`` per user by ``score`` (ties: track id)."""
        # rows are sorted by (user, track id); a stable sort on -score keeps the track-id order in ties
        order = np.lexsort((np.arange(self.n), -score, self.user_of))
        pos = np.arange(self.n) - self.starts[self.user_of[order]]
        top = pos < k
        rows, p = order[top], pos[top]
        u = self.user_of[rows]
        hits = self.hit[rows]
        gains = np.where(hits, 1.0 / np.log2(p + 2.0), 0.0)
        dcg = np.bincount(u, gains, len(self.users))
        nhit = np.bincount(u, hits.astype(float), len(self.users))
        cap = np.minimum(k, self.n_truth)
        idcg_tab = np.r_[0.0, np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))]
        idcg = idcg_tab[cap.astype(int)]
        m = self.is_test & (cap > 0)
        ndcg = np.where(m, dcg / np.where(idcg > 0, idcg, 1.0), 0.0)
        rec = np.where(m, nhit / np.where(cap > 0, cap, 1.0), 0.0)
        n = max(self.n_test_users, 1)
        return {f"ndcg@{k}": float(ndcg.sum() / n), f"recall@{k}": float(rec.sum() / n),
                f"hit@{k}": float(((nhit > 0) & m).sum() / n)}

    def evaluate(self, p: FusionParams, k: int = 30) -> Dict[str, float]:
        return self.metrics(self.final_score(p), k)

    def recall_only(self, p: FusionParams, k: int = 30) -> Dict[str, float]:
        return self.metrics(self.recall_score(p), k)

    def din_only(self, k: int = 30) -> Dict[str, float]:
        return self.metrics(np.nan_to_num(self.din, nan=-1.0), k)

    def search(self, points: Iterable[FusionParams], k: int = 30) -> List[Dict[str, object]]:
        """Every point's metrics, best NDCG first."""
        rows = [dict(params=p, **self.evaluate(p, k)) for p in points]
        return sorted(rows, key=lambda r: -r[f"ndcg@{k}"])


def candidate_table(staged, split: Split) -> CandidateTable:
    """:class:`CandidateTable` of a pipeline run (``StagedResult.candidates``) on ``split``."""
    if staged is None or getattr(staged, "candidates", None) is None:
        raise ValueError("the pipeline's StagedResult carries no candidates table")
    cands = staged.candidates.select("user_id", "track_id", "channel", "rank", "din_score").toPandas()
    return CandidateTable(cands, split.truth.toPandas(), split.test_users.toPandas())


def best_shared(results: Mapping[str, Sequence[Mapping[str, object]]], k: int = 30) -> Optional[Dict[str, object]]:
    """The grid point with the best mean *relative* NDCG over data sets (each data set's NDCG
    divided by its best), so that one default serves every data set.

    ``results``: ``{dataset: CandidateTable.search(...) output}`` over the same points.
    """
    key = f"ndcg@{k}"
    by_point: Dict[tuple, List[float]] = {}
    params: Dict[tuple, FusionParams] = {}
    for rows in results.values():
        best = max((r[key] for r in rows), default=0.0) or 1.0
        for r in rows:
            pk = r["params"].key()
            params.setdefault(pk, r["params"])
            by_point.setdefault(pk, []).append(r[key] / best)
    n = len(results)
    scored = [(float(np.mean(v)), pk) for pk, v in by_point.items() if len(v) == n]
    if not scored:
        return None
    rel, pk = max(scored, key=lambda t: t[0])  # first maximum in grid order on ties
    return {"params": params[pk], "mean_relative_ndcg": rel}
