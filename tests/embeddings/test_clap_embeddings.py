"""CLAP encoder (offline, tiny laion-clap architecture) and the incremental Spark embedding stages.

HTSAT-tiny with laion-clap's own text transformer keeps model construction to a few seconds; one
10 s window costs ~1-2 s on CPU, so the audio here is short and ``max_windows`` is 2.
"""

import dataclasses
import datetime as dt
import hashlib
import json
import logging

import numpy as np
import pytest
import soundfile as sf
import torch

from recsys_spark.embeddings import clap
from recsys_spark.embeddings.audio import load_audio
from recsys_spark.embeddings.clap import CheckpointError, ClapEncoder, EncoderSpec, text_tower_usable
from recsys_spark.embeddings.jobs import embed_prompts, embed_tracks

# fp32: the Spark stage is compared with a direct call to 1e-5. Under bf16 autocast on a CPU with AMX,
# oneDNN's kernels split their accumulation by thread count, so a Spark task (one thread) and this process
# (all cores) differ by ~1e-3; bf16 against fp32 has its own bound in test_clap_cpu_path.py.
SPEC = EncoderSpec(audio_model="HTSAT-tiny", text_model="transformer", max_windows=2, device="cpu", seed=0,
                   audio_precision="fp32", text_precision="fp32")
NOW = dt.datetime(2026, 3, 2, 6, 0, 0)
TRACK_SCHEMA = "track_id string, audio_uri string, prompt string"


@pytest.fixture(scope="module")
def built(request):
    """The untrained encoder, built once with its warning captured."""
    handler = _ListHandler()
    logging.getLogger("recsys_spark.embeddings.clap").addHandler(handler)
    try:
        enc = ClapEncoder(SPEC)
    finally:
        logging.getLogger("recsys_spark.embeddings.clap").removeHandler(handler)
    clap._CACHE[SPEC] = enc  # what get_encoder would build
    return enc, handler.records


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def _tone(path, seconds, sr, freq):
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, subtype="PCM_16")
    return str(path)


def test_untrained_is_loud_and_versioned(built):
    enc, records = built
    assert enc.model_version == "clap-HTSAT-tiny-transformer-untrained-seed0" and not enc.trained
    assert any("UNTRAINED" in r.getMessage() for r in records)
    # an explicit version still says untrained when there is no checkpoint
    assert EncoderSpec(model_version="clap-music").resolved_model_version() == "clap-music-untrained-seed0"


def test_outputs_are_512d_normalised_and_windows_averaged(built, tmp_path):
    enc, _ = built
    long_wave = load_audio(_tone(tmp_path / "long.wav", 25, 48000, 220))
    vecs, counts = enc.embed_waveforms([long_wave], batch_size=4)
    assert vecs.shape == (1, 512) and counts == [2]
    assert np.linalg.norm(vecs[0]) == pytest.approx(1.0, abs=1e-5)
    # the track vector is the normalised mean of its two window embeddings (start and end)
    win = enc.windows(long_wave)
    per = enc.embed_windows(win, batch_size=4)
    mean = per.mean(axis=0)
    assert np.allclose(vecs[0], mean / np.linalg.norm(mean), atol=1e-5)
    t = enc.embed_text(["dark techno", "soft piano"])
    assert t.shape == (2, 512) and np.allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(t[0], t[1])


def test_checkpoint_roundtrip_loads_weights_safely(built, tmp_path):
    enc, _ = built
    # laion-clap layout: {"state_dict": {"module.<key>": tensor}}
    state = {"module." + k: v for k, v in enc.model.state_dict().items()}
    ckpt = tmp_path / "tiny_ckpt.pt"
    torch.save({"epoch": 3, "state_dict": state}, ckpt)
    spec = dataclasses.replace(SPEC, seed=123, checkpoint_path=str(ckpt))
    loaded = ClapEncoder(spec)  # different seed: only the checkpoint can make the outputs match
    assert loaded.trained and loaded.model_version == "clap-HTSAT-tiny-transformer-tiny_ckpt"
    x = np.random.default_rng(0).normal(scale=0.1, size=(1, loaded.clip_samples)).astype(np.float32)
    assert np.allclose(loaded.embed_windows(x), enc.embed_windows(x), atol=1e-5)
    assert np.allclose(loaded.embed_text(["rain"]), enc.embed_text(["rain"]), atol=1e-5)
    # a checkpoint needing pickle code is refused unless trusted
    bad = tmp_path / "pickled.pt"
    torch.save({"state_dict": state, "obj": _Opaque()}, bad)
    with pytest.raises(CheckpointError, match="weights_only"):
        clap.load_checkpoint_state(str(bad), trust=False)
    # a pretrained roberta branch without tokenizer files cannot embed text
    ok, why = text_tower_usable(EncoderSpec(text_model="roberta", checkpoint_path=str(ckpt)))
    assert not ok and "tokenizer" in why


class _Opaque:
    pass


def test_spark_embedding_equals_direct_quarantines_bad_audio_and_is_incremental(spark, built, tmp_path):
    enc, _ = built
    good1 = _tone(tmp_path / "g1.wav", 3, 16000, 330)   # resampled 16k -> 48k, one window
    good2 = _tone(tmp_path / "g2.flac", 25, 48000, 880)  # two windows
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "corrupt.wav").write_bytes(b"not audio at all" * 64)
    sf.write(tmp_path / "zero.wav", np.zeros((0,), np.float32), 48000)
    tracks = spark.createDataFrame([
        ("g1", good1, "lofi piano"), ("g2", good2, None),
        ("m", str(tmp_path / "missing.wav"), None), ("e", str(tmp_path / "empty.wav"), None),
        ("c", str(tmp_path / "corrupt.wav"), None), ("z", str(tmp_path / "zero.wav"), None),
        ("n", None, "no audio yet"),
    ], TRACK_SCHEMA)
    emb, quar = embed_tracks(spark, tracks, None, SPEC, batch_size=8, run_id="r1", now=NOW)
    rows = {r.track_id: r for r in emb.collect()}
    assert sorted(rows) == ["g1", "g2"]
    assert (rows["g1"].n_windows, rows["g2"].n_windows) == (1, 2)
    assert {r.model_version for r in rows.values()} == {"clap-HTSAT-tiny-transformer-untrained-seed0"}
    direct, counts = enc.embed_waveforms([load_audio(good1), load_audio(good2)])
    assert counts == [1, 2]
    assert np.allclose(np.array(rows["g1"].embedding), direct[0], atol=1e-5)
    assert np.allclose(np.array(rows["g2"].embedding), direct[1], atol=1e-5)

    q = {json.loads(r.raw_record)["track_id"]: r for r in quar.collect()}
    assert {t: r.reason for t, r in q.items()} == {"m": "missing_file", "e": "empty_file", "c": "corrupt_audio",
                                                   "z": "zero_length"}
    r = q["m"]
    assert (r.entity, r.source, r.run_id, r.ingest_date) == ("audio", "audio:" + str(tmp_path / "missing.wav"), "r1",
                                                              NOW.date())
    assert r.record_hash == hashlib.sha256(f"audio\x01{r.raw_record}\x01missing_file".encode()).hexdigest()

    # second run: the two embedded tracks are not embedded again, only the new one is
    good3 = _tone(tmp_path / "g3.wav", 2, 48000, 440)
    more = tracks.where("track_id in ('g1', 'g2')").unionByName(
        spark.createDataFrame([("g3", good3, None)], TRACK_SCHEMA))
    emb2, quar2 = embed_tracks(spark, more, emb, SPEC, batch_size=8, now=NOW)
    assert [r.track_id for r in emb2.collect()] == ["g3"] and quar2.count() == 0
    emb3, _ = embed_tracks(spark, more, emb.unionByName(emb2), SPEC, batch_size=8, now=NOW)
    assert emb3.count() == 0

    # prompts: users' prompts and tracks' own prompt text, blank ones skipped
    prompts = spark.createDataFrame([("p1", "u1", "dreamy synthwave at night"), ("p2", "u1", "   ")],
                                    "prompt_id string, user_id string, prompt_text string")
    pemb, pq = embed_prompts(spark, prompts, tracks, None, SPEC, batch_size=8, now=NOW)
    prow = {(r.id, r.kind): r for r in pemb.collect()}
    assert sorted(prow) == [("g1", "track_prompt"), ("n", "track_prompt"), ("p1", "user_prompt")]
    assert prow[("p1", "user_prompt")].user_id == "u1" and prow[("g1", "track_prompt")].user_id is None
    direct_t = enc.embed_text(["dreamy synthwave at night", "lofi piano"])
    assert np.allclose(np.array(prow[("p1", "user_prompt")].embedding), direct_t[0], atol=1e-5)
    assert np.allclose(np.array(prow[("g1", "track_prompt")].embedding), direct_t[1], atol=1e-5)
    assert pq.count() == 0
    pemb2, _ = embed_prompts(spark, prompts, tracks, pemb, SPEC, batch_size=8, now=NOW)
    assert pemb2.count() == 0
