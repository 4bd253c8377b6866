"""Fast CPU text embedding: length-sorted, dynamically padded batches and text dedup must give the
same vectors as laion-clap's padded 77-token path (in fp32, where the cut is exact); bf16 autocast
(``text_precision``) stays within cosine .999 of it."""

import numpy as np
import pandas as pd
import pytest
import torch

from recsys_spark.embeddings import clap, spark_udfs
from recsys_spark.embeddings.clap import EncoderSpec

SPEC = EncoderSpec(audio_model="HTSAT-tiny", text_model="transformer", max_windows=2, device="cpu", seed=0,
                   text_precision="fp32")

# 1 to 77+ tokens, empty, None, repeats, and one text long enough to be truncated (no EOT left)
TEXTS = [
    "lofi",
    "a rebellious garage song about dancing alone, bass guitar, gang vocals",
    "",
    "dreamy synthwave at night with analog pads, gated reverb drums, breathy female vocals, 96 bpm",
    "lofi",
    None,
    "jazzy, dusty piano",
    " ".join(["aggressive metalcore with double kick drums and distorted guitars"] * 12),
    "a upbeat dance pop song about dancing alone, four on the floor, rap verse",
    "jazzy, dusty piano",
    "ambient",
]


@pytest.fixture(scope="module")
def enc():
    return clap.get_encoder(SPEC)


def test_dynamic_batches_equal_padded_laion_path(enc, monkeypatch):
    widths = []
    inner = enc._encode_transformer

    def spy(ids):
        widths.append(ids.shape[1])
        return inner(ids)

    monkeypatch.setattr(enc, "_encode_transformer", spy)
    ref = enc.embed_text(TEXTS, batch_size=3, dynamic=False)  # laion-clap encode_text on 77 tokens
    assert widths == []
    for bs in (1, 3, 64):
        widths.clear()
        got = enc.embed_text(TEXTS, batch_size=bs)
        assert got.shape == (len(TEXTS), clap.EMBED_DIM) and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        # batches really are cut below the 77-token context, even the batch holding the truncated
        # text (it has no EOT left; laion-clap reads its first highest-id token, which comes early)
        assert max(widths) < 77
        if bs < 64:
            assert min(widths) <= 6 and len(set(widths)) >= 3
    # repeats are embedded once and answer with the same vector
    assert np.array_equal(got[0], got[4]) and np.array_equal(got[6], got[9])
    assert np.array_equal(got[2], got[5])  # None is embedded as ""
    # the output follows the input order, whatever the length sort did
    perm = np.random.default_rng(0).permutation(len(TEXTS))
    np.testing.assert_allclose(enc.embed_text([TEXTS[i] for i in perm], batch_size=3), ref[perm], atol=1e-5, rtol=0)


def test_single_text_equals_its_batched_vector(enc):
    ref = enc.embed_text(TEXTS, dynamic=False)
    for i in (0, 1, 7):
        np.testing.assert_allclose(enc.embed_text([TEXTS[i]])[0], ref[i], atol=1e-5, rtol=0)
    assert enc.embed_text([]).shape == (0, clap.EMBED_DIM)


def test_eot_position_read_out_is_causal(enc):
    """The cut is only exact because tokens after EOT cannot reach it: garbage after EOT changes
    nothing, garbage before it changes the vector (so the comparison above can fail)."""
    ids = enc.tokenize(["warm pads and a punchy kick"])
    eot = int(ids.argmax())
    with torch.inference_mode():
        base = enc._encode_transformer(ids[:, :eot + 1])
        after = ids.clone()
        after[0, eot + 1:eot + 6] = 1234
        before = ids.clone()
        before[0, eot - 1] = 1234
        np.testing.assert_allclose(enc.model.encode_text(after, device=enc.device), base, atol=1e-5, rtol=0)
        assert (enc.model.encode_text(before, device=enc.device) - base).abs().max() > 1e-3


def test_roberta_branch_dynamic_padding_equals_max_length():
    """Untrained roberta-shaped branch (built locally, no download) with the offline ids: cutting
    each batch to its longest attention mask gives the 77-token vectors."""
    spec = EncoderSpec(audio_model="HTSAT-tiny", text_model="roberta", device="cpu", seed=0, text_precision="fp32")
    r = clap.ClapEncoder(spec)
    try:
        seen = []
        inner = r.model.get_text_embedding

        def spy(batch):
            seen.append(batch["input_ids"].shape[1])
            return inner(batch)

        r.model.get_text_embedding = spy
        ref = r.embed_text(TEXTS, batch_size=4, dynamic=False)
        assert set(seen) == {77}
        seen.clear()
        got = r.embed_text(TEXTS, batch_size=4)
        assert min(seen) < 10 and max(seen) == 77
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    finally:
        del r


def test_text_udf_embeds_each_distinct_text_once_across_arrow_batches(enc, monkeypatch):
    calls = []
    inner = enc.embed_text

    def spy(texts, batch_size=64, dynamic=True):
        calls.append(list(texts))
        return inner(texts, batch_size=batch_size, dynamic=dynamic)

    monkeypatch.setattr(enc, "embed_text", spy)
    monkeypatch.setattr(spark_udfs, "TEXT_SORT_WINDOW", 4)
    clap._CACHE[SPEC] = enc
    rows = pd.DataFrame({"id": [f"k{i}" for i in range(len(TEXTS))], "text": TEXTS})
    out = pd.concat(spark_udfs.text_embed_fn(SPEC, batch_size=2)(iter([rows.iloc[:6], rows.iloc[6:]])))
    assert out["id"].tolist() == rows["id"].tolist() and out["error"].isna().all()
    flat = [t for c in calls for t in c]
    distinct = {("" if t is None else t) for t in TEXTS}
    assert len(flat) == len(set(flat)) == len(distinct)  # repeats across chunks are not re-embedded
    ref = inner(TEXTS, dynamic=False)
    np.testing.assert_allclose(np.stack(out["embedding"].map(np.asarray)), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("text_model", ["transformer", "roberta"])
def test_bf16_text_tower_stays_within_cosine_999_of_fp32(text_model):
    """``text_precision: bf16`` (what ``auto`` picks on an AVX512-BF16 / AMX CPU or CUDA): every
    text's vector within cosine .999 of the fp32 one, unit length, float32, and each text's nearest
    other text unchanged."""
    texts = [t for t in dict.fromkeys(TEXTS) if t] + [
        "uplifting trance anthem, supersaw leads, 138 bpm", "melancholic acoustic folk ballad, fingerpicked guitar",
        "hard-hitting trap beat with 808s and hi-hat rolls", "baroque harpsichord fugue"]
    base = dict(audio_model="HTSAT-tiny", text_model=text_model, max_windows=2, device="cpu", seed=0)
    ref = clap.ClapEncoder(EncoderSpec(text_precision="fp32", **base))
    fast = clap.ClapEncoder(EncoderSpec(text_precision="bf16", **base))
    assert (ref.text_precision, fast.text_precision) == ("fp32", "bf16")
    a, b = ref.embed_text(texts, batch_size=4), fast.embed_text(texts, batch_size=4)
    assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    cos = np.sum(a * b, axis=1)
    assert cos.min() >= 0.999, cos
    assert not np.allclose(a, b, atol=1e-6)  # it really ran in bf16
    off = ~np.eye(len(texts), dtype=bool)
    nearest = lambda x: np.argmax(np.where(off, x @ x.T, -np.inf), axis=1)  # noqa: E731
    assert np.array_equal(nearest(a), nearest(b))
    with pytest.raises(ValueError, match="text_precision"):
        clap.ClapEncoder(EncoderSpec(text_precision="fp16", **base))
