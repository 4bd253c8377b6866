"""Audiobox Aesthetics scores: the package's model run per window, loaded from its release files
without executing code, scored in Spark with bad audio quarantined once, written incrementally,
and blended into quality only from the configured axis of the current model version."""

import datetime as dt
import json
import logging
import types

import numpy as np
import pytest
import soundfile as sf
import torch
from chispa import assert_df_equality

from recsys_spark.config import ConfigError, from_dict
from recsys_spark.embeddings.aesthetics import (AXES, AestheticsScorer, AestheticsSpec, SAMPLE_RATE,
                                                load_aesthetics_checkpoint)
from recsys_spark.embeddings.audio import load_audio
from recsys_spark.embeddings.clap import CheckpointError, EncoderSpec
from recsys_spark.embeddings.jobs import run_embedding_stage
from recsys_spark.pipeline.stage import StageReport
from recsys_spark.pipeline.stages.rank import RankStage
from recsys_spark.tables import TRACK_AESTHETICS, TRACKS

SPEC = AestheticsSpec(max_windows=2, device="cpu", seed=0, precision="fp32")
CLAP = EncoderSpec(audio_model="HTSAT-tiny", text_model="transformer", max_windows=1, device="cpu", seed=0)


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def scorer():
    cap = _Capture()
    logger = logging.getLogger("recsys_spark.embeddings.aesthetics")
    logger.addHandler(cap)
    try:
        sc = AestheticsScorer(SPEC)
    finally:
        logger.removeHandler(cap)
    sc.warnings = cap.messages
    return sc


def _tone(seconds, freq, sr=SAMPLE_RATE):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_untrained_is_loud_and_versioned(scorer):
    assert not scorer.trained and scorer.model_version == "audiobox-aes-untrained-seed0"
    assert any("AESTHETICS SCORES ARE UNTRAINED" in m for m in scorer.warnings)
    assert AestheticsSpec(model_version="aes-v2").resolved_model_version() == "aes-v2-untrained-seed0"


def test_a_track_scores_the_mean_of_its_windows_whatever_it_is_batched_with(scorer):
    short, long = _tone(3, 440), _tone(14, 220)       # 1 window (padded, masked); 2 full windows
    both, counts = scorer.score_waveforms([short, long], batch_size=8)
    assert both.shape == (2, 4) and counts == [1, 2] and np.isfinite(both).all()
    windows, lengths = scorer.windows(long)
    assert windows.shape == (2, 10 * SAMPLE_RATE) and lengths.tolist() == [10 * SAMPLE_RATE] * 2
    per_window = scorer.score_windows(windows, lengths, batch_size=1)
    np.testing.assert_allclose(both[1], per_window.mean(0), atol=1e-5)
    alone, _ = scorer.score_waveforms([short], batch_size=8)   # the padding mask keeps batches apart
    np.testing.assert_allclose(both[0], alone[0], atol=1e-5)
    assert np.abs(both[0] - both[1]).max() > 1e-6            # different audio, different scores


def _config(target):
    return {"proj_num_layer": 1, "proj_ln": False, "proj_act_fn": "gelu", "proj_dropout": 0, "nth_layer": 13,
            "use_weighted_layer_sum": True, "precision": "32", "normalize_embed": True, "output_dim": 1,
            "target_transform": target}


class _NotAWeight:
    pass


def test_release_checkpoints_load_without_executing_code(scorer, tmp_path):
    from safetensors.torch import save_file

    target = {a: {"mean": 5.0, "std": 2.0} for a in AXES}
    state = {k: v.contiguous() for k, v in scorer.model.state_dict().items()}
    rel = tmp_path / "audiobox-release"
    rel.mkdir()
    save_file(state, str(rel / "model.safetensors"))
    (rel / "config.json").write_text(json.dumps(_config(target) | {"freeze_encoder": True}))
    trained = AestheticsScorer(AestheticsSpec(checkpoint_path=str(rel), max_windows=2, device="cpu", precision="fp32"))
    assert trained.trained and trained.model_version == "audiobox-aes-audiobox-release"
    wave = _tone(2, 330)
    raw, _ = scorer.score_waveforms([wave])
    scaled, _ = trained.score_waveforms([wave])
    np.testing.assert_allclose(scaled, raw * 2.0 + 5.0, atol=1e-4)   # the release's target normalisation

    # the torch checkpoint layout (checkpoint.pt): "model."-prefixed keys, read weights_only
    pt = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "model_cfg": _config(target),
                "target_transform": target}, pt)
    got, kwargs = load_aesthetics_checkpoint(str(pt))
    assert set(got) == set(state) and torch.equal(got["proj_layer.PQ.0.weight"], state["proj_layer.PQ.0.weight"])
    assert kwargs["target_transform"] == target and kwargs["nth_layer"] == 13

    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "model_cfg": _NotAWeight(), "target_transform": target}, evil)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_aesthetics_checkpoint(str(evil))
    (rel / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_aesthetics_checkpoint(str(rel))
    (rel / "config.json").write_text(json.dumps(_config({"CE": {"mean": 5.0, "std": 2.0}})))
    with pytest.raises(CheckpointError, match="target_transform"):
        load_aesthetics_checkpoint(str(rel))


def test_spark_scores_new_tracks_quarantines_bad_audio_once_and_is_incremental(spark, tables, scorer, tmp_path):
    sr = 48000
    t = np.arange(int(2.5 * sr)) / sr
    sf.write(tmp_path / "good.wav", (0.3 * np.sin(2 * np.pi * 523 * t)).astype(np.float32), sr, subtype="PCM_16")
    (tmp_path / "corrupt.wav").write_bytes(b"not audio at all" * 64)
    when = dt.datetime(2026, 11, 20)
    rows = [(tid, "c1", tid, "p", None, None, None, when, uri, 1, 0, 0, when)
            for tid, uri in (("t_good", str(tmp_path / "good.wav")), ("t_bad", str(tmp_path / "corrupt.wav")),
                             ("t_no_audio", None))]
    tables.create_all(["tracks", "user_prompts", "track_embeddings", "prompt_embeddings", "quarantine",
                       "track_aesthetics"])
    tables.append("tracks", spark.createDataFrame(rows, TRACKS.schema))
    # the models are built in the Python workers (untrained: no download)
    c = run_embedding_stage(spark, tables, CLAP, track_prompts=False, aesthetics=SPEC, aesthetics_batch_size=4)
    assert (c["tracks_aesthetics_scored"], c["aesthetics_quarantined"], c["aesthetics_untrained"]) == (1.0, 1.0, 1.0)
    got = tables.read("track_aesthetics")
    expected = spark.createDataFrame([("t_good", "audiobox-aes-untrained-seed0", 1)],
                                     "track_id string, model_version string, n_windows int")
    assert_df_equality(got.select("track_id", "model_version", "n_windows"), expected, ignore_nullable=True,
                       ignore_metadata=True)
    direct, _ = scorer.score_waveforms([load_audio(str(tmp_path / "good.wav"), SAMPLE_RATE)])
    row = got.first()
    np.testing.assert_allclose([row[a.lower()] for a in AXES], direct[0], atol=1e-4)
    q = tables.read("quarantine").collect()       # CLAP and the aesthetics model both met the bad file
    assert [(r.entity, r.reason) for r in q] == [("audio", "corrupt_audio")]

    again = run_embedding_stage(spark, tables, CLAP, track_prompts=False, aesthetics=SPEC)
    assert again["tracks_aesthetics_scored"] == 0.0 and tables.read("track_aesthetics").count() == 1
    assert tables.read("quarantine").count() == 1


def test_a_quality_weight_needs_an_aesthetics_source():
    with pytest.raises(ConfigError, match="quality.aesthetics_weight"):
        from_dict({"quality": {"aesthetics_weight": 0.3}})
    assert from_dict({"quality": {"aesthetics_weight": 0.3}, "aesthetics": {"enabled": True}}).aesthetics.enabled
    assert from_dict({"quality": {"aesthetics_weight": 0.3, "aesthetics_table": "ext"}}).quality.aesthetics_table
    with pytest.raises(ConfigError, match="aesthetics_axis"):
        from_dict({"quality": {"aesthetics_axis": "XX"}})


def test_quality_blends_the_configured_axis_of_the_current_model_version(spark, tables):
    cfg = from_dict({"aesthetics": {"enabled": True}, "quality": {"aesthetics_weight": 0.5, "aesthetics_axis": "CE"}})
    now = dt.datetime(2026, 11, 20)
    rows = [("t1", "audiobox-aes-untrained-seed0", 7.0, 1.0, 2.0, 3.0, 1, now),
            ("t2", "audiobox-aes-untrained-seed0", 4.0, 1.0, 2.0, 3.0, 1, now),
            ("t1", "audiobox-aes-old", 9.0, 9.0, 9.0, 9.0, 1, now)]
    tables.append("track_aesthetics", spark.createDataFrame(rows, TRACK_AESTHETICS.schema))
    ctx = types.SimpleNamespace(cfg=cfg, tables=tables)
    rep = StageReport()
    got = RankStage().aesthetics_scores(ctx, rep)
    expected = spark.createDataFrame([("t1", 7.0), ("t2", 4.0)], "track_id string, aesthetics float")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)
    assert "UNTRAINED aesthetics" in rep.skipped
    off = from_dict({})
    assert RankStage().aesthetics_scores(types.SimpleNamespace(cfg=off, tables=tables), StageReport()) is None
