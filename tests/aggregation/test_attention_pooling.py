"""Attention pooling: masking, convexity, and it beats mean pooling on a planted set-up."""

import numpy as np
import torch

from recsys_spark.aggregation import attention as A
from recsys_spark.common import roc_auc


def test_pooling_masks_padding_and_is_convex():
    torch.manual_seed(0)
    pool = A.AttentionPooling(4, 8)
    x = torch.randn(2, 3, 4)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    w = pool.weights(x, mask)
    assert torch.allclose(w.sum(1), torch.ones(2))
    assert w[0, 2].item() == 0.0 and w[1, 1:].abs().sum().item() == 0.0
    x2 = x.clone()
    x2[0, 2] = 100.0  # padding content never matters
    assert torch.allclose(pool(x, mask), pool(x2, mask))
    assert torch.allclose(pool(x, mask)[1], x[1, 0])  # one real track: the creator is that track
    assert torch.allclose(A.mean_pool(x, mask)[0], x[0, :2].mean(0))


def planted(rng, n_creators=40, n_users=400, dim=16, n_core=3, n_junk=5):
    """Dims 0-3 carry 'junk' energy (intros, skits); a creator's core tracks sit on its style."""
    style = rng.normal(size=(n_creators, dim))
    style[:, :4] = 0
    style /= np.linalg.norm(style, axis=1, keepdims=True)
    T = n_core + n_junk
    tracks = np.zeros((n_creators, T, dim), dtype=np.float32)
    for c in range(n_creators):
        tracks[c, :n_core] = style[c] + 0.1 * rng.normal(size=(n_core, dim)) * (np.arange(dim) >= 4)
        junk = rng.normal(size=(n_junk, dim))
        junk[:, :4] *= 3.0
        tracks[c, n_core:] = junk
    mask = np.ones((n_creators, T), dtype=bool)

    def users(n):
        liked = rng.integers(0, n_creators, size=n)
        uv = (style[liked] + 0.3 * rng.normal(size=(n, dim)) * (np.arange(dim) >= 4)).astype(np.float32)
        pairs, labels = [], []
        for u in range(n):
            pairs.append((u, liked[u])); labels.append(1)
            for c in rng.choice([c for c in range(n_creators) if c != liked[u]], size=3, replace=False):
                pairs.append((u, c)); labels.append(0)
        return uv, np.array(pairs), np.array(labels, dtype=np.float32)
    return tracks, mask, users(n_users), users(n_users // 2)


def test_attention_beats_mean_pooling_on_held_out_users():
    rng = np.random.default_rng(0)
    tracks, mask, (uv, pairs, y), (uv_te, pairs_te, y_te) = planted(rng)
    model = A.CreatorAffinityModel(16, proj_dim=16, hidden=16, pooling="attention")
    A.fit_affinity(model, uv, tracks, mask, pairs, y, epochs=25, batch_size=256, lr=0.02, seed=0)
    att_vecs, w = A.pool_creators(model, tracks, mask)
    mean_vecs, _ = A.pool_creators(None, tracks, mask)
    auc_att = roc_auc(y_te, A.cosine_scores(uv_te, att_vecs, pairs_te))
    auc_mean = roc_auc(y_te, A.cosine_scores(uv_te, mean_vecs, pairs_te))
    assert w[:, :3].sum(1).mean() > 0.8          # core tracks get most of the weight (uniform: 3/8)
    assert auc_att > auc_mean + 0.05, (auc_att, auc_mean)


def test_the_same_examples_and_seed_train_the_same_affinity_model(two_torch_threads):
    """The creators' pooled vectors are picked per example (``[inv]``, repeats in every batch): with
    two torch threads that backward added in thread order, so each training differed in the last bits
    until ``fit_affinity`` ran under ``deterministic_torch``."""
    rng = np.random.default_rng(0)
    U, C, T, D = 400, 40, 20, 64
    uv = rng.normal(size=(U, D)).astype(np.float32)
    tracks = rng.normal(size=(C, T, D)).astype(np.float32)
    pairs = np.stack([rng.integers(0, U, 4000), rng.integers(0, C, 4000)], 1)
    y = rng.integers(0, 2, 4000)
    states = []
    for _ in range(3):
        torch.manual_seed(0)
        model = A.CreatorAffinityModel(D)
        A.fit_affinity(model, uv, tracks, np.ones((C, T), bool), pairs, y, epochs=1, seed=0)
        states.append(b"".join(v.detach().numpy().tobytes() for v in model.state_dict().values()))
    assert len(set(states)) == 1
    assert not torch.are_deterministic_algorithms_enabled()
