"""Deep Interest Network (Zhou et al., KDD 2018) in pure torch. Imports no Spark.

The model scores a (user history, candidate track) pair with a click logit:

1. **Item representation**: a learned ID embedding (index ``0`` = padding, ``1`` = out of
   vocabulary) concatenated, when content is configured, with a learned linear projection of the
   track's CLAP audio embedding. Content lives in a frozen buffer indexed by the same vocabulary
   index, so tracks that were never *interacted with* in training but do have audio (new tracks)
   still get a content representation; their ID part maps to the OOV row (see
   :meth:`DIN.id_index`).
2. **Activation unit**: for each history item ``h`` and the candidate ``c`` an MLP over
   ``[h, c, h - c, h * c]`` gives an attention weight (a scalar, *not* softmax-normalised unless
   ``softmax_attention``: DIN keeps the intensity of the interest).
3. **Interest**: ``sum_j w_j * h_j`` over the non-padding history positions (padding is masked
   and never changes the result).
4. **Output MLP** over ``[interest, c, interest * c, user_features]`` to one logit.

Helpers: :func:`fit` (mini-batch Adam with early stopping on a validation set),
:func:`predict`, :func:`log_loss` (AUC: :func:`recsys_spark.common.roc_auc`), and :func:`save` /
:func:`load` that write the
``state_dict`` with ``torch.save`` and the hyper-parameters / vocabulary as JSON (no pickles;
loading uses ``torch.load(..., weights_only=True)``).

Examples
--------
>>> cfg = DINConfig(n_items=10, n_id_items=10, embedding_dim=8)
>>> model = DIN(cfg)
>>> hist = torch.tensor([[2, 3, 0], [4, 0, 0]])
>>> cand = torch.tensor([5, 6])
>>> model(hist, cand).shape
torch.Size([2])
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..common import deterministic_torch, roc_auc

log = logging.getLogger(__name__)

PAD = 0
OOV = 1
N_SPECIAL = 2

STATE_FILE = "din_state.pt"
CONFIG_FILE = "din_config.json"
VOCAB_FILE = "vocab.json"
METRICS_FILE = "metrics.json"


@dataclass
class DINConfig:
    """Hyper-parameters of a :class:`DIN` (saved as JSON next to the weights).

    Attributes
    ----------
    n_items : int
        Vocabulary size excluding the two special rows (padding, OOV). Vocabulary index
        ``i`` (``2 <= i < n_items + 2``) is a known track.
    n_id_items : int
        The first ``n_id_items`` vocabulary entries have a learned ID embedding (the tracks seen in
        training); later entries (content-only tracks) use the OOV ID row.
    embedding_dim : int
        Size of the ID embedding and of the content projection.
    content_dim : int
        Dimension of the content (CLAP) vectors; 0 = no content.
    attention_hidden, mlp_hidden : list of int
        Hidden sizes of the activation unit and of the output MLP.
    softmax_attention : bool
        Normalise attention weights with a masked softmax (off in DIN).
    n_user_features : int
        Optional dense user-level features concatenated before the output MLP.
    max_history : int
        History length the model was trained with (longer histories are cut by the caller).
    """

    n_items: int
    n_id_items: int
    embedding_dim: int = 32
    content_dim: int = 0
    attention_hidden: List[int] = field(default_factory=lambda: [64, 32])
    mlp_hidden: List[int] = field(default_factory=lambda: [128, 64])
    softmax_attention: bool = False
    n_user_features: int = 0
    max_history: int = 50
    dropout: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "DINConfig":
        data = json.loads(text)
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown DIN hyper-parameters in config: {sorted(unknown)}")
        return cls(**data)

    @property
    def item_dim(self) -> int:
        return self.embedding_dim * (2 if self.content_dim > 0 else 1)


def _mlp(sizes: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    layers: List[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.PReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class ActivationUnit(nn.Module):
    """DIN local activation unit: MLP over ``[h, c, h - c, h * c]`` -> one weight per position."""

    def __init__(self, item_dim: int, hidden: Sequence[int]):
        super().__init__()
        self.mlp = _mlp([4 * item_dim, *hidden, 1])

    def forward(self, hist: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """``hist`` [B, L, D], ``cand`` [B, D] -> raw weights [B, L].

        The first layer's ``W [h, c, h - c, h * c] + b`` is computed as
        ``h (W_h + W_d) + (c (W_c - W_d) + b) + (h * c) W_p``: the same function and gradients
        (to float rounding) without building the ``[B, L, 4D]`` input, and the ``c`` term once per
        row instead of once per history position (half the first layer's arithmetic)."""
        w_hist, w_cand, w_prod, bias = self.first_layer_terms()
        c_part = cand @ w_cand + bias                                    # B, H
        x = hist @ w_hist + c_part.unsqueeze(1) + (hist * cand.unsqueeze(1)) @ w_prod
        return self.rest(x)

    def first_layer_terms(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first layer regrouped by input: ``W [h, c, h - c, h * c] + b == h @ w_hist +
        c @ w_cand + (h * c) @ w_prod + bias`` (``w_*`` are ``[D, H]``)."""
        first = self.mlp[0]
        w_h, w_c, w_d, w_p = first.weight.split(first.in_features // 4, dim=1)
        return (w_h + w_d).T, (w_c - w_d).T, w_p.T, first.bias

    def rest(self, x: torch.Tensor) -> torch.Tensor:
        """The layers after the first: first-layer outputs ``[..., H]`` -> raw weights ``[...]``."""
        return self.mlp[1:](x).squeeze(-1)


class DIN(nn.Module):
    """Deep Interest Network click model (see the module docstring)."""

    def __init__(self, config: DINConfig, content: Optional[torch.Tensor] = None):
        super().__init__()
        self.config = config
        d = config.embedding_dim
        self.id_embedding = nn.Embedding(config.n_id_items + N_SPECIAL, d, padding_idx=PAD)
        nn.init.normal_(self.id_embedding.weight, std=0.05)
        with torch.no_grad():
            self.id_embedding.weight[PAD].zero_()
        n_rows = config.n_items + N_SPECIAL
        if config.content_dim > 0:
            if content is None:
                content = torch.zeros(n_rows, config.content_dim)
            if tuple(content.shape) != (n_rows, config.content_dim):
                raise ValueError(f"content table must be [{n_rows}, {config.content_dim}], "
                                 f"got {list(content.shape)}")
            self.register_buffer("content", content.float().contiguous())
            has = (content.abs().sum(dim=1) > 0).float()
            self.register_buffer("has_content", has)
            self.content_proj = nn.Linear(config.content_dim, d)
        self.attention = ActivationUnit(config.item_dim, config.attention_hidden)
        out_in = 3 * config.item_dim + config.n_user_features
        self.out = _mlp([out_in, *config.mlp_hidden, 1], config.dropout)

    # -- representation ------------------------------------------------------------------------
    def id_index(self, idx: torch.Tensor) -> torch.Tensor:
        """Vocabulary index -> ID-embedding row (content-only tracks use the OOV row)."""
        n = self.config.n_id_items + N_SPECIAL
        return torch.where(idx >= n, torch.full_like(idx, OOV), idx)

    def item(self, idx: torch.Tensor) -> torch.Tensor:
        """Vocabulary indices (any shape) -> item vectors (same shape + [item_dim]).

        The content projection runs once per *distinct* index and is gathered back (a training
        batch's histories repeat tracks: ~1/3 of its positions are distinct, and the [positions, 512]
        content gather was the largest single cost of a training step)."""
        e = self.id_embedding(self.id_index(idx))
        if self.config.content_dim > 0:
            uniq, inv = torch.unique(idx, return_inverse=True)
            p = self.content_proj(self.content[uniq]) * self.has_content[uniq].unsqueeze(-1)
            e = torch.cat([e, p[inv]], dim=-1)
        return e

    @torch.no_grad()
    def item_table(self, chunk: int = 65536) -> torch.Tensor:
        """Every vocabulary row's item vector, ``[n_items + 2, item_dim]`` (scoring: the content
        projection then runs once per track, not once per candidate row and history position).

        Cached until any parameter changes (in place, as an optimizer step does, or replaced)."""
        key = tuple((p.data_ptr(), p._version) for p in self.parameters())
        if getattr(self, "_item_table_key", None) != key:
            n = self.config.n_items + N_SPECIAL
            dev = self.id_embedding.weight.device
            # always fp32: a table first built under a caller's bf16 autocast would be reused by
            # fp32 scoring (the cache does not know the precision)
            with torch.autocast(device_type=dev.type, enabled=False):
                self._item_table = torch.cat([self.item(torch.arange(s, min(s + chunk, n), device=dev))
                                              for s in range(0, n, chunk)])
            self._item_table_key = key
        return self._item_table

    # -- forward -------------------------------------------------------------------------------
    def forward(self, hist_idx: torch.Tensor, cand_idx: torch.Tensor,
                user_features: Optional[torch.Tensor] = None,
                return_attention: bool = False):
        """Click logits.

        Parameters
        ----------
        hist_idx : LongTensor [B, L]
            History vocabulary indices, ``0`` = padding.
        cand_idx : LongTensor [B]
            Candidate vocabulary indices.
        user_features : FloatTensor [B, F], optional
            Required when ``n_user_features > 0``.
        return_attention : bool
            Also return the (masked) attention weights [B, L].

        Returns
        -------
        Tensor [B] of logits (and the attention weights when asked).
        """
        mask = (hist_idx != PAD)
        both = self.item(torch.cat([hist_idx.reshape(-1), cand_idx]))  # one pass over distinct tracks
        h = both[:hist_idx.numel()].view(*hist_idx.shape, -1)           # B, L, D
        c = both[hist_idx.numel():]                                     # B, D
        raw = self.attention(h, c)                    # B, L
        if self.config.softmax_attention:
            raw = raw.masked_fill(~mask, float("-inf"))
            w = torch.softmax(raw, dim=1)
            w = torch.nan_to_num(w, nan=0.0)          # all-padding rows
        else:
            w = raw * mask.float()
        interest = torch.bmm(w.unsqueeze(1), h * mask.unsqueeze(-1).float()).squeeze(1)  # B, D
        parts = [interest, c, interest * c]
        if self.config.n_user_features > 0:
            if user_features is None:
                raise ValueError("this DIN was configured with user features; pass user_features")
            parts.append(user_features.float())
        logit = self.out(torch.cat(parts, dim=-1)).squeeze(-1)
        return (logit, w) if return_attention else logit


    @torch.no_grad()
    def grouped_logits(self, hist_idx: torch.Tensor, cand_idx: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        """Click logits of many candidates per user, computing each user's history once.

        Equal to ``forward(hist_idx[owner], cand_idx)`` (to float rounding) but cheaper at
        scoring time. The activation unit's first layer for candidate ``c`` at history position
        ``l`` is ``h_l W_h' + c W_c' + (h_l * c) W_p + b`` (:meth:`ActivationUnit.first_layer_terms`);
        for one user that is a linear map of ``[c, 1]``: ``B[d, l] = h_{l,d} W_p[d] + W_c'[d]`` and
        ``B[D, l] = h_l W_h' + b``. So each user's candidates are laid out as rows of
        ``[users, n, D + 1]`` (``n``: the most candidates of one user; zero rows pad) and the whole
        first layer is one batched matmul with ``B`` ``[users, D + 1, L x H]``: no per-candidate
        copy of the history. Attention and the output MLP run on that layout; the real rows are
        read back in input order.

        Parameters
        ----------
        hist_idx : LongTensor [U, L]
            Each user's history (0 = padding).
        cand_idx : LongTensor [N]
            Candidates of all users.
        owner : LongTensor [N]
            Row of ``hist_idx`` each candidate belongs to (any order).
        """
        if self.config.n_user_features > 0:
            raise ValueError("grouped scoring does not take user features; use forward()")
        users, owner = torch.unique(owner, return_inverse=True)     # only users with candidates
        hist_idx = hist_idx[users]
        n_users, width = hist_idx.shape
        w_hist, w_cand, w_prod, bias = self.attention.first_layer_terms()
        dim, hidden = w_prod.shape
        mask = (hist_idx != PAD)
        table = self.item_table()
        hu = table[hist_idx] * mask.unsqueeze(-1).to(table.dtype)   # U, L, D (padding rows zero)
        # each candidate's row among its user's candidates
        order = torch.argsort(owner, stable=True)
        counts = torch.bincount(owner, minlength=n_users)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.empty_like(owner)
        slot[order] = torch.arange(len(owner), device=owner.device) - starts[owner[order]]
        c = table[cand_idx]                                          # N, D
        cp = hu.new_zeros(n_users, int(counts.max()) if len(owner) else 0, dim + 1)
        cp[owner, slot, :dim] = c
        cp[owner, slot, dim] = 1.0
        b_prod = (hu.unsqueeze(-1) * w_prod + w_cand).transpose(1, 2)   # U, D, L, H
        b_hist = (hu @ w_hist + bias).unsqueeze(1)                       # U, 1, L, H
        b = torch.cat([b_prod, b_hist], dim=1).reshape(n_users, dim + 1, width * hidden)
        x = torch.bmm(cp, b)                                         # U, n, L x H: first layer
        raw = self.attention.rest(x.view(n_users, -1, width, hidden))     # U, n, L
        m = mask.unsqueeze(1)
        if self.config.softmax_attention:
            wts = torch.nan_to_num(torch.softmax(raw.masked_fill(~m, float("-inf")), dim=-1), nan=0.0)
        else:
            wts = raw * m.to(raw.dtype)
        interest = torch.bmm(wts, hu.to(wts.dtype))                  # U, n, D
        cd = cp[..., :dim].to(interest.dtype)
        logits = self.out(torch.cat([interest, cd, interest * cd], dim=-1)).squeeze(-1)  # U, n
        return logits[owner, slot]


def paper_logits(model: DIN, hist_idx: torch.Tensor, cand_idx: torch.Tensor,
                 user_features: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``model``'s click logits computed as the DIN paper writes them: item vectors per position
    and the activation unit over the concatenation ``[h, c, h - c, h * c]``.

    The reference that :meth:`DIN.forward` (first layer applied term by term, content projected
    once per distinct track) is tested and benchmarked against: same values and gradients to float
    rounding, about twice the arithmetic."""
    cfg = model.config

    def item(idx):
        e = model.id_embedding(model.id_index(idx))
        if cfg.content_dim > 0:
            e = torch.cat([e, model.content_proj(model.content[idx]) * model.has_content[idx].unsqueeze(-1)], dim=-1)
        return e

    mask = hist_idx != PAD
    h, c = item(hist_idx), item(cand_idx)
    ce = c.unsqueeze(1).expand_as(h)
    raw = model.attention.mlp(torch.cat([h, ce, h - ce, h * ce], dim=-1)).squeeze(-1)
    if cfg.softmax_attention:
        w = torch.nan_to_num(torch.softmax(raw.masked_fill(~mask, float("-inf")), dim=1), nan=0.0)
    else:
        w = raw * mask.float()
    interest = torch.bmm(w.unsqueeze(1), h * mask.unsqueeze(-1).float()).squeeze(1)
    parts = [interest, c, interest * c] + ([user_features.float()] if cfg.n_user_features > 0 else [])
    return model.out(torch.cat(parts, dim=-1)).squeeze(-1)


# --------------------------------------------------------------------------------------------
# Encoding helpers (pure python / numpy; shared by training and the Spark scoring UDF)
# --------------------------------------------------------------------------------------------


def encode_ids(ids, vocab: Dict[str, int]) -> np.ndarray:
    """Track ids -> vocabulary indices (unknown ids -> OOV)."""
    return np.fromiter((vocab.get(t, OOV) for t in ids), dtype=np.int64, count=len(ids))


def encode_histories(histories, vocab: Dict[str, int], max_history: int) -> np.ndarray:
    """A sequence of id lists (most recent first) -> padded index matrix [N, max_history]."""
    out = np.zeros((len(histories), max_history), dtype=np.int64)
    for i, hist in enumerate(histories):
        if hist is None:
            continue
        row = [vocab.get(t, OOV) for t in list(hist)[:max_history]]
        if row:
            out[i, : len(row)] = row
    return out


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


LOSSES = ("logloss", "softmax")


def listwise_softmax_loss(logits: torch.Tensor, labels: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy of each positive against its own list (ListNet / sampled softmax).

    For every positive example i of list g: ``logsumexp(logits[g]) - logits[i]``, averaged over the
    positives. Lists without a positive add nothing; a batch without positives gives 0 (with a graph).
    """
    _, inv = torch.unique(group, return_inverse=True)
    n = int(inv.max()) + 1 if len(inv) else 0
    zmax = torch.full((n,), -torch.inf, dtype=logits.dtype, device=logits.device)
    zmax = zmax.scatter_reduce(0, inv, logits.detach(), reduce="amax")
    sums = torch.zeros(n, dtype=logits.dtype, device=logits.device).index_add(0, inv, torch.exp(logits - zmax[inv]))
    lse = torch.log(sums) + zmax
    pos = labels > 0.5
    if not bool(pos.any()):
        return logits.sum() * 0.0
    return (lse[inv[pos]] - logits[pos]).mean()


def ndcg_at_k(labels: np.ndarray, scores: np.ndarray, group: np.ndarray, k: int = 30) -> float:
    """Mean binary NDCG@k over the lists that hold a positive (ties broken by position)."""
    labels, scores, group = (np.asarray(a) for a in (labels, scores, group))
    if len(labels) == 0:
        return float("nan")
    order = np.lexsort((np.arange(len(scores)), -scores, group))
    g, y = group[order], labels[order] > 0.5
    starts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
    rank = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)]))
    gain = np.where(y & (rank < k), 1.0 / np.log2(rank + 2.0), 0.0)
    list_id = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(g)]))
    dcg = np.bincount(list_id, weights=gain, minlength=len(starts))
    n_pos = np.bincount(list_id, weights=y.astype(float), minlength=len(starts))
    ideal = np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))
    has = n_pos > 0
    if not has.any():
        return float("nan")
    idcg = ideal[np.minimum(n_pos[has], k).astype(int) - 1]
    return float(np.mean(dcg[has] / idcg))


def _list_order(group: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Example indices with the lists in random order and each list's examples together."""
    _, inv = np.unique(group, return_inverse=True)
    shuffled = rng.permutation(int(inv.max()) + 1)
    return np.lexsort((rng.random(len(inv)), shuffled[inv]))


# --------------------------------------------------------------------------------------------
# Training / prediction
# --------------------------------------------------------------------------------------------


@dataclass
class Batchable:
    """Encoded examples: history indices [N, L], candidate indices [N], labels [N] (optional),
    list ids [N] (optional; the listwise loss and the validation NDCG@30 need them)."""

    hist: np.ndarray
    cand: np.ndarray
    label: Optional[np.ndarray] = None
    user_features: Optional[np.ndarray] = None
    group: Optional[np.ndarray] = None  # [N] int: the list each example belongs to (user x label week)

    def __len__(self) -> int:
        return len(self.cand)

    def tensors(self, idx, device) -> Tuple[torch.Tensor, ...]:
        h = torch.as_tensor(self.hist[idx], device=device)
        c = torch.as_tensor(self.cand[idx], device=device)
        u = None if self.user_features is None else torch.as_tensor(self.user_features[idx], device=device)
        return h, c, u


@torch.no_grad()
def predict(model: DIN, data: Batchable, batch_size: int = 4096,
            device: Optional[torch.device] = None) -> np.ndarray:
    """Click probabilities for every example (model in eval mode, no grad)."""
    device = device or next(model.parameters()).device
    model.eval()
    out = np.empty(len(data), dtype=np.float64)
    for start in range(0, len(data), batch_size):
        sl = slice(start, start + batch_size)
        h, c, u = data.tensors(sl, device)
        out[sl] = torch.sigmoid(model(h, c, u)).double().cpu().numpy()
    return out


@torch.no_grad()
def predict_grouped(model: DIN, hist: np.ndarray, cand: np.ndarray, owner: np.ndarray, batch_size: int = 4096,
                    device: Optional[torch.device] = None, precision: str = "fp32") -> np.ndarray:
    """Click probabilities for candidates grouped by user (see :meth:`DIN.grouped_logits`).

    ``hist`` [U, L] history indices (left-aligned, padding last), ``cand`` [N] candidate indices,
    ``owner`` [N] the row of ``hist`` of each candidate. Candidates are processed
    ``batch_size`` at a time, their users taken in order of history length, and each batch's
    histories are cut to its longest one: padding costs nothing (most users' histories are far
    shorter than ``max_history``; padded positions contribute exactly zero either way).
    ``precision`` ``bf16`` runs the model under bfloat16 autocast (the matmuls in bf16, the
    probabilities returned in float64 either way); ``fp32`` as trained.
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16 (resolve auto first), got {precision!r}")
    device = device or next(model.parameters()).device
    model.eval()
    out = np.empty(len(cand), dtype=np.float64)
    if len(cand) == 0:
        return out
    hist = np.asarray(hist)
    owner = np.asarray(owner, dtype=np.int64)
    lengths = (hist != PAD).sum(axis=1)
    by_len = np.argsort(lengths, kind="stable")                 # users, shortest history first
    rank = np.empty_like(by_len)
    rank[by_len] = np.arange(len(by_len))
    order = np.argsort(rank[owner], kind="stable")              # candidates in that user order
    s_owner = rank[owner[order]]
    s_cand = np.asarray(cand)[order]
    s_len = lengths[by_len]
    h = torch.as_tensor(hist[by_len], device=device)
    for start in range(0, len(cand), batch_size):
        sl = slice(start, start + batch_size)
        lo, hi = int(s_owner[sl].min()), int(s_owner[sl].max()) + 1
        width = max(1, int(s_len[lo:hi].max()))
        o = torch.as_tensor(s_owner[sl] - lo, device=device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model.grouped_logits(h[lo:hi, :width], torch.as_tensor(s_cand[sl], device=device), o)
        out[order[sl]] = torch.sigmoid(logits.float()).double().cpu().numpy()
    return out


@deterministic_torch()
def fit(model: DIN, train: Batchable, valid: Optional[Batchable] = None, epochs: int = 8,
        batch_size: int = 1024, lr: float = 3e-3, weight_decay: float = 0.0, patience: int = 2,
        seed: int = 0, device: Optional[torch.device] = None,
        ddp_model: Optional[nn.Module] = None, shard: Tuple[int, int] = (0, 1),
        loss: str = "logloss") -> Dict[str, object]:
    """Train ``model`` in place with Adam, early stopping on validation.

    ``loss="logloss"``: binary cross-entropy per example, model choice on validation AUC.
    ``loss="softmax"``: each positive's softmax cross-entropy against its own list
    (:func:`listwise_softmax_loss`; batches hold whole lists, in random order), model choice on
    validation NDCG@30 (:func:`ndcg_at_k`). Both need ``train.group`` / ``valid.group`` for the
    listwise parts; the validation NDCG@30 is recorded whenever ``valid.group`` is given.

    Parameters
    ----------
    model : DIN
    train, valid : Batchable
        Encoded examples with labels. Without ``valid`` every epoch runs and the last is kept.
    epochs, batch_size, lr, weight_decay : training settings.
    patience : int
        Stop after this many epochs without a better validation score (AUC, or NDCG@30 with the
        softmax loss); the best weights are restored at the end.
    seed : int
        Seeds the shuffling (and must have seeded the model init for full determinism).
    ddp_model : nn.Module, optional
        A ``DistributedDataParallel`` wrapper of ``model`` (TorchDistributor); ``shard`` =
        (rank, world_size) then selects this process's share of every epoch.

    Returns
    -------
    dict
        ``history`` (per-epoch train loss, valid auc/logloss/ndcg@30), ``best_epoch``, ``auc``,
        ``logloss`` (validation, best epoch), ``epochs_run``, ``seconds``, ``loss``.
    """
    if loss not in LOSSES:
        raise ValueError(f"DIN loss must be one of {LOSSES}, got {loss!r}")
    listwise = loss == "softmax"
    if listwise and train.group is None:
        raise ValueError("the softmax loss needs the training examples' lists (Batchable.group)")
    device = device or next(model.parameters()).device
    net = ddp_model if ddp_model is not None else model
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    groups = torch.as_tensor(train.group, dtype=torch.int64) if listwise else None
    rng = np.random.default_rng(seed)
    labels = torch.as_tensor(train.label, dtype=torch.float32)
    best = (-math.inf, None, -1, float("nan"))
    history = []
    t0 = time.time()
    rank, world = shard
    bad = 0
    for epoch in range(epochs):
        net.train()
        perm = _list_order(train.group, rng) if listwise else rng.permutation(len(train))
        if world > 1:
            n_per = len(perm) // world
            perm = perm[rank * n_per:(rank + 1) * n_per]
        total, n_seen = 0.0, 0
        for start in range(0, len(perm), batch_size):
            idx = perm[start:start + batch_size]
            h, c, u = train.tensors(idx, device)
            y = labels[idx].to(device)
            opt.zero_grad()
            logits = net(h, c, u)
            batch_loss = (listwise_softmax_loss(logits, y, groups[idx].to(device)) if listwise
                          else loss_fn(logits, y))
            batch_loss.backward()
            opt.step()
            total += float(batch_loss.detach()) * len(idx)
            n_seen += len(idx)
        rec = {"epoch": epoch + 1, "train_loss": total / max(n_seen, 1)}
        if valid is not None and len(valid) > 0:
            p = predict(model, valid, device=device)
            rec["valid_auc"] = roc_auc(valid.label, p)
            rec["valid_logloss"] = log_loss(valid.label, p)
            if valid.group is not None:
                rec["valid_ndcg@30"] = ndcg_at_k(valid.label, p, valid.group, 30)
            if listwise and valid.group is not None and not math.isnan(rec["valid_ndcg@30"]):
                score = rec["valid_ndcg@30"]
            else:
                score = rec["valid_auc"] if not math.isnan(rec["valid_auc"]) else -rec["valid_logloss"]
            if score > best[0]:
                best = (score, copy.deepcopy(model.state_dict()), epoch + 1, rec["valid_logloss"])
                bad = 0
            else:
                bad += 1
        history.append(rec)
        log.info("DIN epoch %d: %s", epoch + 1, {k: round(v, 4) for k, v in rec.items() if k != "epoch"})
        if valid is not None and bad >= patience:
            log.info("DIN early stop after epoch %d (best epoch %d)", epoch + 1, best[2])
            break
    if best[1] is not None:
        model.load_state_dict(best[1])
    result = {"history": history, "epochs_run": len(history), "seconds": time.time() - t0, "loss": loss}
    if valid is not None and len(valid) > 0 and best[1] is not None:
        result.update(best_epoch=best[2], auc=history[best[2] - 1]["valid_auc"], logloss=best[3])
    else:
        result.update(best_epoch=len(history))
    return result


# --------------------------------------------------------------------------------------------
# Persistence: state_dict via torch.save, everything else as JSON
# --------------------------------------------------------------------------------------------


def _checked(path: str, root: Optional[str]) -> str:
    """``path`` itself, or (when ``root`` is given) ``path`` checked to resolve under ``root``."""
    if root is None:
        return path
    from ..safety import safe_path  # no Spark; plain path checks

    return safe_path(root, path)


def to_files(model: DIN, vocab: Sequence[str], metrics: Optional[dict] = None) -> Dict[str, bytes]:
    """The artifact as ``{file name: bytes}``: ``din_state.pt`` (state_dict), ``din_config.json``,
    ``vocab.json`` (ordered ids: position ``i`` has vocabulary index ``i + 2``) and, when given,
    ``metrics.json``."""
    if len(vocab) != model.config.n_items:
        raise ValueError(f"vocab has {len(vocab)} ids but the model has {model.config.n_items} items")
    from ..artifacts import torch_bytes

    files = {CONFIG_FILE: model.config.to_json().encode(), VOCAB_FILE: json.dumps(list(vocab)).encode()}
    if metrics is not None:
        files[METRICS_FILE] = json.dumps(metrics, indent=1, sort_keys=True, default=float).encode()
    files[STATE_FILE] = torch_bytes(model.state_dict())  # last: its presence means the rest is written
    return files


def from_files(files: Dict[str, bytes], device: Optional[torch.device] = None) -> Tuple[DIN, Dict[str, int]]:
    """Rebuild ``(model, {track_id: index})`` from :func:`to_files` output (weights read with
    ``weights_only=True``)."""
    from ..artifacts import torch_from_bytes

    config = DINConfig.from_json(files[CONFIG_FILE].decode())
    state = torch_from_bytes(files[STATE_FILE])
    model = DIN(config, content=state.get("content"))
    model.load_state_dict(state)
    ids = json.loads(files[VOCAB_FILE].decode())
    vocab = {t: i + N_SPECIAL for i, t in enumerate(ids)}
    model.to(device or torch.device("cpu")).eval()
    return model, vocab


def read_files(path: str, spark=None, metrics: bool = False) -> Dict[str, bytes]:
    """The files of the DIN saved at ``path`` (a folder or any URI; see :mod:`recsys_spark.artifacts`)."""
    from ..artifacts import read_files as _read

    return _read(path, (STATE_FILE, CONFIG_FILE, VOCAB_FILE), spark, optional=(METRICS_FILE,) if metrics else ())


def save(path: str, model: DIN, vocab: Sequence[str], metrics: Optional[dict] = None,
         root: Optional[str] = None, spark=None) -> None:
    """Write ``din_state.pt`` (state_dict), ``din_config.json``, ``vocab.json`` (ordered ids:
    position ``i`` has vocabulary index ``i + 2``) and ``metrics.json`` into folder ``path``.

    ``path``: a local folder or a URI (``file:``, ``s3a:``, ``abfss:``, ``dbfs:``, ``/Volumes``);
    written through :mod:`recsys_spark.artifacts` (Hadoop FileSystem when ``spark`` is a classic
    session, fsspec otherwise). ``root`` (the model folder from config): refuse a ``path`` that
    resolves outside it (:class:`~recsys_spark.safety.UnsafeValueError`)."""
    from ..artifacts import write_files

    path = _checked(path, root)
    write_files(path, to_files(model, vocab, metrics), spark)


def load(path: str, device: Optional[torch.device] = None, root: Optional[str] = None,
         spark=None) -> Tuple[DIN, Dict[str, int]]:
    """Load a saved DIN (weights with ``weights_only=True``) and its ``{track_id: index}`` map.

    No code is executed on load: the weights file is read by torch's restricted unpickler
    (tensors and containers only; anything else raises ``pickle.UnpicklingError``), the rest is
    JSON. ``path``, ``spark`` as in :func:`save`; ``root``: refuse a ``path`` that resolves outside
    that folder."""
    path = _checked(path, root)
    return from_files(read_files(path, spark), device)
