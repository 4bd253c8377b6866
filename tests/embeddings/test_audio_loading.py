"""Audio decoding, resampling, windowing and the bad-audio reasons (no model, no Spark)."""

import numpy as np
import pytest
import soundfile as sf

from recsys_spark.embeddings.audio import AudioError, load_audio, repeat_pad, riff_shortfall, window_starts, windows_of


def test_window_starts_evenly_spaced_and_capped():
    assert window_starts(5, 10, 3).tolist() == [0]            # shorter than a window
    assert window_starts(10, 10, 3).tolist() == [0]
    assert window_starts(25, 10, 6).tolist() == [0, 8, 15]    # ceil(25/10)=3 windows, first to last
    assert window_starts(100, 10, 3).tolist() == [0, 45, 90]  # capped at 3, spread over the track
    assert window_starts(100, 10, 1).tolist() == [45]         # one window: the middle


def test_repeat_pad_and_windows_shape():
    assert repeat_pad(np.array([1.0, 2.0, 3.0]), 8).tolist() == [1, 2, 3, 1, 2, 3, 0, 0]
    w = windows_of(np.arange(25, dtype=np.float32), window=10, max_windows=6, clip_samples=12)
    assert w.shape == (3, 12)
    assert w[1].tolist() == [8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 0, 0]  # 10 samples, one whole repeat fits 0 more


def test_resample_to_48k_and_stereo_to_mono(tmp_path):
    sr = 16000
    t = np.arange(sr) / sr
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    p = tmp_path / "a.flac"
    sf.write(p, stereo, sr)
    wave = load_audio(str(p), 48000)
    assert wave.dtype == np.float32 and wave.ndim == 1 and len(wave) == 48000
    # mono = mean of channels: amplitude halves; the 440 Hz tone survives resampling
    assert np.abs(wave[1000:-1000]).max() == pytest.approx(0.25, abs=0.01)
    spec = np.abs(np.fft.rfft(wave))
    assert np.argmax(spec) == 440  # 1 s at 48 kHz: bin index == Hz
    assert len(load_audio("file://" + str(p), 48000)) == 48000


def test_bad_audio_reasons(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x01garbage-not-audio" * 10)
    zero = tmp_path / "zero.wav"
    sf.write(zero, np.zeros((0,), dtype=np.float32), 48000)
    cases = {str(tmp_path / "missing.wav"): "missing_file", str(empty): "empty_file",
             str(corrupt): "corrupt_audio", str(zero): "zero_length", "s3://bucket/x.wav": "unsupported_uri",
             "": "no_audio_uri"}
    for uri, reason in cases.items():
        with pytest.raises(AudioError) as exc:
            load_audio(uri)
        assert exc.value.reason == reason, uri


def _tone(seconds, sr, amp=0.3):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)


def test_cut_silent_and_impossible_rate_files_are_bad_other_rates_are_not(tmp_path):
    whole = tmp_path / "whole.wav"
    sf.write(whole, _tone(1.0, 48000), 48000, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[:-20000])  # an upload cut short: libsndfile alone reads it without an error
    assert len(sf.read(cut)[0]) < 48000
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(48000, np.float32), 48000, subtype="PCM_16")
    khz1 = tmp_path / "1khz.wav"
    sf.write(khz1, _tone(1.0, 1000), 1000, subtype="PCM_16")
    for path, reason in ((cut, "truncated_audio"), (silent, "silent_audio"), (khz1, "unsupported_sample_rate")):
        with pytest.raises(AudioError) as exc:
            load_audio(str(path))
        assert exc.value.reason == reason, path
    # valid data is never lost: the whole file, a 22.05 kHz export and a quiet (-60 dBFS) track load
    assert len(load_audio(str(whole))) == 48000
    # a streamed WAV whose writer could not fill in the data size (0xFFFFFFFF) is not a cut file
    data = bytearray(whole.read_bytes())
    at = data.index(b"data")
    data[at + 4:at + 8] = b"\xff\xff\xff\xff"
    streamed = tmp_path / "streamed.wav"
    streamed.write_bytes(bytes(data))
    assert riff_shortfall(str(streamed)) == 0 and riff_shortfall(str(cut)) > 0
    sf.write(tmp_path / "22k.wav", _tone(1.0, 22050), 22050, subtype="PCM_16")
    assert len(load_audio(str(tmp_path / "22k.wav"))) == 48000
    sf.write(tmp_path / "quiet.wav", _tone(1.0, 48000, amp=1e-3), 48000, subtype="FLOAT")
    assert len(load_audio(str(tmp_path / "quiet.wav"))) == 48000
