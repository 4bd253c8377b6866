"""Pure torch DIN: shapes, masking, a planted pattern, metrics, save/load."""

import numpy as np
import pytest
import torch

from recsys_spark.common import roc_auc
from recsys_spark.ranking import din as D


def _model(content_dim=0, softmax=False, n_items=20, seed=0):
    torch.manual_seed(seed)
    cfg = D.DINConfig(n_items=n_items, n_id_items=n_items, embedding_dim=8, content_dim=content_dim,
                      attention_hidden=[16], mlp_hidden=[16], softmax_attention=softmax, max_history=4)
    content = None
    if content_dim:
        g = torch.Generator().manual_seed(1)
        content = torch.randn(n_items + 2, content_dim, generator=g)
        content[:2] = 0
    return D.DIN(cfg, content=content)


@pytest.mark.parametrize("content_dim", [0, 6])
def test_forward_shapes(content_dim):
    m = _model(content_dim)
    hist = torch.tensor([[2, 3, 4, 0], [5, 0, 0, 0], [0, 0, 0, 0]])
    cand = torch.tensor([6, 7, 8])
    logit, w = m(hist, cand, return_attention=True)
    assert logit.shape == (3,)
    assert w.shape == (3, 4)
    assert m.item(hist).shape == (3, 4, 8 * (2 if content_dim else 1))


@pytest.mark.parametrize("softmax", [False, True])
def test_factored_forward_equals_the_papers_concatenation_in_values_and_gradients(softmax):
    """The activation unit's first layer is applied term by term and the content projection once
    per distinct track: same logits and same gradients as the concatenated form (repeated tracks
    in and across rows, padding, an all-padding row, a content-less track)."""
    m = _model(content_dim=6, softmax=softmax, n_items=12)
    with torch.no_grad():
        m.content[5].zero_()
        m.has_content[5] = 0.0
    hist = torch.tensor([[2, 3, 3, 0], [5, 2, 0, 0], [4, 4, 4, 4], [0, 0, 0, 0]])
    cand = torch.tensor([3, 9, 4, 2])
    ref = D.paper_logits(m, hist, cand)
    grads_ref = torch.autograd.grad(ref.square().sum(), list(m.parameters()))
    got = m(hist, cand)
    grads = torch.autograd.grad(got.square().sum(), list(m.parameters()))
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-5)
    assert float(ref.std()) > 1e-3
    for g, gr in zip(grads, grads_ref):
        torch.testing.assert_close(g, gr, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("softmax", [False, True])
def test_padding_changes_nothing(softmax):
    m = _model(content_dim=6, softmax=softmax).eval()
    short = torch.tensor([[2, 3, 0, 0]])
    cand = torch.tensor([9])
    l1, w1 = m(short, cand, return_attention=True)
    # the same history with the padding slots' embeddings scrambled must score the same
    with torch.no_grad():
        m.id_embedding.weight[0].normal_()  # padding row made non-zero on purpose
    l2, w2 = m(short, cand, return_attention=True)
    assert torch.allclose(l1, l2)
    assert w2[0, 2:].abs().sum().item() == 0.0
    # and a longer padded tensor gives the same logit as a shorter one
    l3 = m(torch.tensor([[2, 3]]), cand)
    assert torch.allclose(l1, l3, atol=1e-6)
    # while a real extra history item does change it
    l4 = m(torch.tensor([[2, 3, 4, 0]]), cand)
    assert not torch.allclose(l1, l4)


def test_softmax_weights_sum_to_one_over_real_positions():
    m = _model(softmax=True).eval()
    _, w = m(torch.tensor([[2, 3, 4, 0]]), torch.tensor([5]), return_attention=True)
    assert w[0, :3].sum().item() == pytest.approx(1.0, abs=1e-6)
    assert w[0, 3].item() == 0.0


def test_content_only_items_use_oov_id_row():
    cfg = D.DINConfig(n_items=6, n_id_items=4, embedding_dim=4, content_dim=3)
    m = D.DIN(cfg, content=torch.ones(8, 3))
    assert m.id_index(torch.tensor([0, 1, 5, 6, 7])).tolist() == [0, 1, 5, 1, 1]


def _planted(n_users, rng, n_items=40, hist_len=6):
    """Items 2..n_items+1; group = index parity. A user clicks a candidate of their group only."""
    hist = np.zeros((n_users * 2, hist_len), dtype=np.int64)
    cand = np.zeros(n_users * 2, dtype=np.int64)
    label = np.zeros(n_users * 2, dtype=np.float32)
    items = np.arange(2, n_items + 2)
    for u in range(n_users):
        g = u % 2
        mine, other = items[items % 2 == g], items[items % 2 != g]
        h = rng.choice(mine, size=rng.integers(2, hist_len + 1), replace=False)
        for k, (pool, y) in enumerate(((mine, 1.0), (other, 0.0))):
            i = 2 * u + k
            hist[i, : len(h)] = h
            cand[i] = rng.choice(pool)
            label[i] = y
    return D.Batchable(hist, cand, label)


def _planted_model():
    """An untrained DIN for :func:`_planted` data and that data (train 600 users, valid 200)."""
    rng = np.random.default_rng(0)
    train, valid = _planted(600, rng), _planted(200, rng)
    torch.manual_seed(0)
    cfg = D.DINConfig(n_items=40, n_id_items=40, embedding_dim=8, attention_hidden=[16],
                      mlp_hidden=[32], max_history=6)
    return D.DIN(cfg), train, valid


def test_learns_planted_pattern():
    model, train, valid = _planted_model()
    before = roc_auc(valid.label, D.predict(model, valid))
    res = D.fit(model, train, valid, epochs=15, batch_size=64, lr=0.01, patience=5, seed=0)
    after = roc_auc(valid.label, D.predict(model, valid))
    assert after > 0.9, (before, after, res["history"])
    assert res["auc"] == pytest.approx(after)


def test_roc_auc_and_log_loss_known_values():
    # pairs (pos, neg): (0.8>0.1) (0.8>0.4) (0.4=0.4 -> 0.5) (0.4>0.1) -> 3.5 / 4
    assert roc_auc(np.array([1, 1, 0, 0]), np.array([0.8, 0.4, 0.4, 0.1])) == pytest.approx(0.875)
    assert np.isnan(roc_auc(np.array([1, 1]), np.array([0.1, 0.2])))
    assert D.log_loss(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(np.log(2))


def test_encode_histories_truncates_pads_and_maps_oov():
    vocab = {"a": 2, "b": 3}
    out = D.encode_histories([["a", "zz", "b"], [], None, ["b", "a", "a", "b"]], vocab, 3)
    assert out.tolist() == [[2, 1, 3], [0, 0, 0], [0, 0, 0], [3, 2, 2]]


def test_save_load_roundtrip(tmp_path):
    m = _model(content_dim=6, n_items=3).eval()
    vocab = ["t1", "t2", "t3"]
    D.save(str(tmp_path), m, vocab, metrics={"auc": 0.7})
    m2, v2 = D.load(str(tmp_path))
    assert v2 == {"t1": 2, "t2": 3, "t3": 4}
    hist, cand = torch.tensor([[2, 3, 0, 0]]), torch.tensor([4])
    assert torch.allclose(m(hist, cand), m2(hist, cand))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["din_config.json", "din_state.pt", "metrics.json", "vocab.json"]


class _Payload:
    """Unpickling this runs code (writes a marker file): what a tampered model file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_load_executes_no_code_from_a_tampered_weights_file(tmp_path):
    import pickle

    m = _model(n_items=3).eval()
    model_dir = tmp_path / "din"
    D.save(str(model_dir), m, ["t1", "t2", "t3"])
    marker = tmp_path / "pwned"
    state = {k: v for k, v in m.state_dict().items()}
    state["evil"] = _Payload(str(marker))
    torch.save(state, str(model_dir / D.STATE_FILE))
    with pytest.raises(pickle.UnpicklingError, match="[Ww]eights only"):
        D.load(str(model_dir))
    assert not marker.exists()


def test_save_and_load_stay_under_the_model_root(tmp_path):
    from recsys_spark.safety import UnsafeValueError

    root = tmp_path / "models"
    m = _model(n_items=3).eval()
    D.save(str(root / "week=2026-11-23" / "din"), m, ["t1", "t2", "t3"], root=str(root))
    _, vocab = D.load(str(root / "week=2026-11-23" / "din"), root=str(root))
    assert vocab == {"t1": 2, "t2": 3, "t3": 4}
    for bad in [str(root / ".." / "elsewhere"), "/tmp/din", "../din"]:
        with pytest.raises(UnsafeValueError, match="outside the allowed root"):
            D.save(bad, m, ["t1", "t2", "t3"], root=str(root))
    (tmp_path / "outside").mkdir()
    D.save(str(tmp_path / "outside"), m, ["t1", "t2", "t3"])
    (root / "week=2026-11-30").symlink_to(tmp_path / "outside")  # a planted link out of the model folder
    with pytest.raises(UnsafeValueError, match="outside the allowed root"):
        D.load(str(root / "week=2026-11-30"), root=str(root))


def _forward_probs(model, hist, cand, owner):
    """The reference for grouped scoring: ``forward`` on one row per candidate (its owner's history)."""
    with torch.no_grad():
        return torch.sigmoid(model(torch.as_tensor(hist[owner]), torch.as_tensor(cand))).numpy()


def _users_with_candidates(seed: int, n_users: int, per_user: int):
    """``hist`` (n_users x 4 track indexes), ``owner`` (each user ``per_user`` times, in order) and
    ``cand`` (one track index per row of ``owner``), from ``seed``."""
    g = np.random.default_rng(seed)
    hist = g.integers(2, 22, size=(n_users, 4))
    return hist, np.repeat(np.arange(n_users), per_user), g.integers(2, 22, size=n_users * per_user)


@pytest.mark.parametrize("softmax,content_dim", [(False, 0), (False, 16), (True, 16)])
def test_grouped_scoring_equals_forward_per_candidate(softmax, content_dim):
    # scoring computes each user's history once; it must equal forward() on per-candidate rows
    cfg = D.DINConfig(n_items=50, n_id_items=40, embedding_dim=8, content_dim=content_dim,
                      attention_hidden=[16, 8], mlp_hidden=[16], softmax_attention=softmax, max_history=6)
    torch.manual_seed(0)
    content = torch.randn(50 + D.N_SPECIAL, content_dim) if content_dim else None
    if content is not None:
        content[D.PAD] = 0
    model = D.DIN(cfg, content).eval()
    g = np.random.default_rng(1)
    hist = g.integers(1, 50 + D.N_SPECIAL, size=(4, 6))
    hist[1, 3:] = D.PAD                      # a short history
    hist[2, :] = D.PAD                       # a user without history
    owner = np.sort(g.integers(0, 4, size=37))
    cand = g.integers(1, 50 + D.N_SPECIAL, size=37)
    direct = _forward_probs(model, hist, cand, owner)
    grouped = D.predict_grouped(model, hist, cand, owner, batch_size=5)   # batches split users
    np.testing.assert_allclose(grouped, direct, atol=1e-6)
    assert np.ptp(grouped) > 1e-3            # not a constant

    # histories of every length 0..6 (left-aligned), owners unsorted, batches cut to their own
    # longest history: still forward() on per-candidate rows, in the caller's order
    hist = g.integers(1, 50 + D.N_SPECIAL, size=(14, 6))
    for u in range(14):
        hist[u, u % 7:] = D.PAD
    owner = g.integers(0, 14, size=90)
    cand = g.integers(1, 50 + D.N_SPECIAL, size=90)
    direct = _forward_probs(model, hist, cand, owner)
    for bs in (1, 7, 4096):
        np.testing.assert_allclose(D.predict_grouped(model, hist, cand, owner, batch_size=bs), direct, atol=1e-6)
    assert len(D.predict_grouped(model, hist, cand[:0], owner[:0])) == 0


def test_item_table_follows_weight_updates():
    # scoring caches every track's item vector; a training step (in place) or loaded weights
    # must not leave stale vectors behind
    model = _model(content_dim=6).eval()
    hist, owner, cand = _users_with_candidates(2, n_users=3, per_user=5)

    def direct():
        return _forward_probs(model, hist, cand, owner)

    before = D.predict_grouped(model, hist, cand, owner)
    np.testing.assert_allclose(before, direct(), atol=1e-6)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    loss = model(torch.as_tensor(hist[owner]), torch.as_tensor(cand)).sum()
    loss.backward()
    opt.step()
    after = D.predict_grouped(model, hist, cand, owner)
    np.testing.assert_allclose(after, direct(), atol=1e-6)
    assert np.abs(after - before).max() > 1e-3
    model.load_state_dict(_model(content_dim=6, seed=5).state_dict())
    np.testing.assert_allclose(D.predict_grouped(model, hist, cand, owner), direct(), atol=1e-6)


def test_listwise_softmax_loss_known_values():
    # list 5: logits (0, ln 2, 0), positive the first -> log(1 + 2 + 1) - 0 = log 4
    # list 9: logits (1, 1), positive the second -> log(2e) - 1 = log 2
    # list 7: no positive -> adds nothing
    logits = torch.tensor([0.0, np.log(2.0), 0.0, 1.0, 1.0, 3.0])
    labels = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    group = torch.tensor([5, 5, 5, 9, 9, 7])
    assert float(D.listwise_softmax_loss(logits, labels, group)) == pytest.approx(1.5 * np.log(2.0), rel=1e-6)
    assert float(D.listwise_softmax_loss(logits, torch.zeros(6), group)) == 0.0
    # the loss pushes the positive up and its own list's negatives down, other lists untouched
    z = logits.clone().requires_grad_(True)
    D.listwise_softmax_loss(z, labels, group).backward()
    g = z.grad.numpy()
    assert g[0] < 0 and g[4] < 0 and g[1] > 0 and g[2] > 0 and g[3] > 0 and g[5] == 0


def test_ndcg_at_k_known_values():
    labels = np.array([0, 1, 0, 1, 1, 0])
    scores = np.array([.9, .5, .1, .2, .8, .7])
    group = np.array([1, 1, 1, 2, 2, 3])  # list 3 has no positive: not counted
    a = 1 / np.log2(3)                    # list 1: the positive at rank 2 of 3
    assert D.ndcg_at_k(labels, scores, group, 30) == pytest.approx((a + 1.0) / 2)
    assert D.ndcg_at_k(labels, scores, group, 1) == pytest.approx((0.0 + 1.0) / 2)


def _grouped(b: "D.Batchable") -> "D.Batchable":
    b.group = np.arange(len(b.cand)) // 2  # _planted: rows 2u and 2u+1 are user u's list
    return b


def test_softmax_loss_learns_planted_pattern_and_chooses_on_ndcg():
    rng = np.random.default_rng(0)
    train, valid = _grouped(_planted(600, rng)), _grouped(_planted(200, rng))
    torch.manual_seed(0)
    cfg = D.DINConfig(n_items=40, n_id_items=40, embedding_dim=8, attention_hidden=[16],
                      mlp_hidden=[32], max_history=6)
    model = D.DIN(cfg)
    before = D.ndcg_at_k(valid.label, D.predict(model, valid), valid.group)
    res = D.fit(model, train, valid, epochs=12, batch_size=64, lr=0.01, patience=3, seed=0, loss="softmax")
    after = D.ndcg_at_k(valid.label, D.predict(model, valid), valid.group)
    assert after > 0.95 > before, (before, after, res["history"])
    ndcgs = [r["valid_ndcg@30"] for r in res["history"]]
    assert res["loss"] == "softmax"
    assert res["best_epoch"] == int(np.argmax(ndcgs)) + 1 and after == pytest.approx(max(ndcgs))


def test_softmax_loss_needs_lists_and_unknown_loss_is_refused():
    rng = np.random.default_rng(1)
    train = _planted(20, rng)
    model = D.DIN(D.DINConfig(n_items=40, n_id_items=40, embedding_dim=4, attention_hidden=[4], mlp_hidden=[4]))
    with pytest.raises(ValueError, match="Batchable.group"):
        D.fit(model, train, epochs=1, loss="softmax")
    with pytest.raises(ValueError, match="must be one of"):
        D.fit(model, train, epochs=1, loss="bpr")


def test_grouped_logits_skip_users_without_candidates_and_take_owners_in_any_order():
    model = _model(content_dim=6, softmax=True).eval()
    g = np.random.default_rng(4)
    hist = g.integers(2, 22, size=(9, 4))
    hist[4, 1:] = D.PAD
    owner = g.permutation(np.repeat([0, 2, 4, 5, 8], [3, 1, 6, 2, 4]))  # users 1, 3, 6, 7 have none
    cand = g.integers(2, 22, size=len(owner))
    with torch.no_grad():
        got = model.grouped_logits(torch.as_tensor(hist), torch.as_tensor(cand), torch.as_tensor(owner))
        want = model(torch.as_tensor(hist[owner]), torch.as_tensor(cand))
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-6)


def test_bf16_scoring_keeps_each_users_order_of_a_trained_model():
    """``precision="bf16"`` (``din.score_precision: bf16``, or ``auto`` on a CPU with AVX512-BF16 /
    AMX): probabilities of a trained model within .02 of fp32 and each user's ranking of its
    candidates nearly unchanged (Spearman >= .98 per user); really computed in bf16 (not equal to
    fp32); an unresolved or unknown precision is refused."""
    model, train, valid = _planted_model()
    D.fit(model, train, valid, epochs=6, batch_size=64, lr=0.01, patience=5, seed=0)
    model.eval()
    n_users, per_user = 60, 40
    hist = valid.hist[:n_users]
    owner = np.repeat(np.arange(n_users), per_user)
    cand = np.tile(np.arange(2, 42), n_users)
    fp32 = D.predict_grouped(model, hist, cand, owner, batch_size=512)
    bf16 = D.predict_grouped(model, hist, cand, owner, batch_size=512, precision="bf16")
    assert np.abs(bf16 - fp32).max() < 0.02 and np.abs(bf16 - fp32).max() > 0
    assert np.ptp(fp32) > 0.5                                   # a model with a real spread
    for u in range(n_users):
        a, b = fp32[owner == u], bf16[owner == u]
        ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
        assert np.corrcoef(ra, rb)[0, 1] >= 0.98, u
    for bad in ("auto", "fp16"):
        with pytest.raises(ValueError, match="precision"):
            D.predict_grouped(model, hist, cand, owner, precision=bad)


def test_bf16_scoring_leaves_no_rounded_item_table_for_fp32_scoring():
    # the item table (content projected once per track) is cached on the model: built first under
    # bf16 scoring it must still be fp32, or later fp32 scoring would reuse bf16-rounded vectors
    model = _model(content_dim=16).eval()
    hist, owner, cand = _users_with_candidates(6, n_users=5, per_user=6)
    D.predict_grouped(model, hist, cand, owner, precision="bf16")
    direct = _forward_probs(model, hist, cand, owner)
    np.testing.assert_allclose(D.predict_grouped(model, hist, cand, owner), direct, atol=1e-6)
