"""Track -> creator attention pooling, learned on a user-creator affinity task. Pure torch.

A creator is represented by a weighted mean of their tracks' embeddings (CLAP audio, 512-d).
:class:`AttentionPooling` learns the weights with gated attention (Ilse et al., 2018)::

    a_j = softmax_j( w . (tanh(V x_j) * sigmoid(U x_j)) )     over the creator's real tracks
    creator = sum_j a_j x_j

so the pooled vector stays in the track-embedding space (comparable with tracks and with other
creators: what creator-level diversity needs). The weights are learned on an affinity task:
:class:`CreatorAffinityModel` scores ``user . creator`` after a shared linear projection, where the
user is the mean embedding of their history tracks; positives are creators the user engaged with
in a week, negatives random creators. ``pooling="mean"`` gives the same model with uniform
weights, the baseline for the comparison.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ..common import deterministic_torch

log = logging.getLogger(__name__)


class AttentionPooling(nn.Module):
    """Gated attention pooling over a padded set of vectors ([N, T, D] + mask [N, T] -> [N, D])."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.V = nn.Linear(dim, hidden)
        self.U = nn.Linear(dim, hidden)
        self.w = nn.Linear(hidden, 1, bias=False)

    def weights(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raw = self.w(torch.tanh(self.V(x)) * torch.sigmoid(self.U(x))).squeeze(-1)
        raw = raw.masked_fill(~mask, float("-inf"))
        return torch.nan_to_num(torch.softmax(raw, dim=1), nan=0.0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.bmm(self.weights(x, mask).unsqueeze(1), x).squeeze(1)


def mean_pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.float().unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


class CreatorAffinityModel(nn.Module):
    """``logit = <P user, P creator> + b`` with ``creator`` attention- or mean-pooled."""

    def __init__(self, dim: int, proj_dim: int = 64, hidden: int = 64, pooling: str = "attention"):
        super().__init__()
        if pooling not in ("attention", "mean"):
            raise ValueError("pooling must be 'attention' or 'mean'")
        self.pooling = pooling
        self.dim, self.proj_dim, self.hidden = dim, proj_dim, hidden
        self.pool = AttentionPooling(dim, hidden) if pooling == "attention" else None
        self.proj = nn.Linear(dim, proj_dim, bias=False)
        self.bias = nn.Parameter(torch.zeros(1))

    def creator_vectors(self, tracks: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.pool(tracks, mask) if self.pool is not None else mean_pool(tracks, mask)

    def forward(self, user_vec: torch.Tensor, creator_vec: torch.Tensor) -> torch.Tensor:
        return (self.proj(user_vec) * self.proj(creator_vec)).sum(-1) + self.bias

    def hparams(self) -> Dict[str, object]:
        return {"dim": self.dim, "proj_dim": self.proj_dim, "hidden": self.hidden, "pooling": self.pooling}


@deterministic_torch()
def fit_affinity(
    model: CreatorAffinityModel,
    user_vecs: np.ndarray,
    creator_tracks: np.ndarray,
    creator_mask: np.ndarray,
    pairs: np.ndarray,
    labels: np.ndarray,
    epochs: int = 10,
    batch_size: int = 512,
    lr: float = 3e-3,
    seed: int = 0,
) -> Dict[str, object]:
    """Train on (user index, creator index, label) examples.

    Parameters
    ----------
    user_vecs : [U, D] user vectors; creator_tracks : [C, T, D] padded track embeddings;
    creator_mask : [C, T] bool; pairs : [N, 2] int (user, creator); labels : [N] 0/1.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    uv = torch.as_tensor(user_vecs, dtype=torch.float32)
    ct = torch.as_tensor(creator_tracks, dtype=torch.float32)
    cm = torch.as_tensor(creator_mask, dtype=torch.bool)
    y = torch.as_tensor(labels, dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    t0, hist = time.time(), []
    for epoch in range(epochs):
        model.train()
        perm = rng.permutation(len(pairs))
        total = 0.0
        for s in range(0, len(perm), batch_size):
            idx = perm[s:s + batch_size]
            u, c = pairs[idx, 0], pairs[idx, 1]
            uniq, inv = np.unique(c, return_inverse=True)
            cv = model.creator_vectors(ct[uniq], cm[uniq])[torch.as_tensor(inv)]
            loss = loss_fn(model(uv[u], cv), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        hist.append(total / max(len(perm), 1))
    log.info("creator affinity (%s) trained: %d epochs, last loss %.4f, %.1fs", model.pooling, epochs,
             hist[-1] if hist else float("nan"), time.time() - t0)
    return {"train_loss": hist, "seconds": time.time() - t0}


@torch.no_grad()
def score_pairs(model: CreatorAffinityModel, user_vecs, creator_tracks, creator_mask, pairs) -> np.ndarray:
    model.eval()
    cv = model.creator_vectors(torch.as_tensor(creator_tracks, dtype=torch.float32),
                               torch.as_tensor(creator_mask, dtype=torch.bool))
    uv = torch.as_tensor(user_vecs, dtype=torch.float32)
    return model(uv[pairs[:, 0]], cv[pairs[:, 1]]).numpy()


@torch.no_grad()
def pool_creators(model: Optional[CreatorAffinityModel], creator_tracks, creator_mask) -> Tuple[np.ndarray, np.ndarray]:
    """Pooled creator vectors [C, D] and the weights [C, T] (uniform when ``model`` is None or mean)."""
    x = torch.as_tensor(creator_tracks, dtype=torch.float32)
    m = torch.as_tensor(creator_mask, dtype=torch.bool)
    if model is None or model.pool is None:
        w = m.float() / m.float().sum(1, keepdim=True).clamp(min=1.0)
    else:
        model.eval()
        w = model.pool.weights(x, m)
    return torch.bmm(w.unsqueeze(1), x).squeeze(1).numpy(), w.numpy()


def cosine_scores(user_vecs: np.ndarray, creator_vecs: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Cosine of (user, creator) pairs: the model-free comparison of pooled embeddings."""
    u = user_vecs[pairs[:, 0]]
    c = creator_vecs[pairs[:, 1]]
    den = np.linalg.norm(u, axis=1) * np.linalg.norm(c, axis=1)
    return np.where(den > 0, (u * c).sum(1) / np.where(den > 0, den, 1.0), 0.0)
