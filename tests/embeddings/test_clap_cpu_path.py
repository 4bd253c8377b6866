"""The cheaper CPU path of the CLAP audio tower: FFT front end, bf16 autocast, threads per task.

Each change has to give the same embedding as laion-clap's own path (DFT-as-convolution front end,
fp32): the FFT spectrogram to float rounding, bf16 within cosine .999 (the bar of the audio issue).
"""

import numpy as np
import pandas as pd
import pytest
import torch

from recsys_spark.data.audio_synth import synth_track
from recsys_spark.embeddings import clap
from recsys_spark.embeddings.clap import ClapEncoder, EncoderSpec, FFTSpectrogram, resolve_precision
from recsys_spark.embeddings.spark_udfs import set_task_threads

SR = 48000


def _laion_front_end():
    """The spectrogram module laion-clap's HTSAT builds (torchlibrosa, same arguments)."""
    from torchlibrosa.stft import Spectrogram

    return Spectrogram(n_fft=1024, hop_length=480, win_length=1024, window="hann", center=True,
                       pad_mode="reflect", freeze_parameters=True)


def test_fft_spectrogram_equals_the_dft_convolution_and_finds_a_tone():
    conv = _laion_front_end()
    fft = FFTSpectrogram.like(conv)
    rng = np.random.default_rng(1)
    t = np.arange(SR) / SR
    x = torch.from_numpy(np.stack([
        0.5 * np.sin(2 * np.pi * 1500.0 * t),           # a tone: 1500 Hz = bin 32 of 1024 at 48 kHz
        0.1 * rng.standard_normal(SR),                   # noise
    ]).astype(np.float32))
    with torch.inference_mode():
        ref, got = conv(x), fft(x)
    assert got.shape == ref.shape == (2, 1, SR // 480 + 1, 513)
    scale = ref.abs().amax(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(got, ref, atol=2e-4 * float(scale.min()), rtol=1e-3)
    assert int(got[0, 0, 50].argmax()) == 32 and int(ref[0, 0, 50].argmax()) == 32
    # autocast does not reach the FFT front end
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert fft(x).dtype == torch.float32


def test_other_windows_are_refused():
    conv = _laion_front_end()
    conv.stft.window = "hamming"
    with pytest.raises(ValueError, match="hann"):
        FFTSpectrogram.like(conv)


@pytest.fixture(scope="module")
def reference_and_fast():
    base = dict(audio_model="HTSAT-tiny", text_model="transformer", max_windows=2, device="cpu", seed=0)
    ref = ClapEncoder(EncoderSpec(stft="conv", audio_precision="fp32", **base))
    fast = ClapEncoder(EncoderSpec(stft="fft", audio_precision="bf16", **base))
    return ref, fast


def test_fft_and_bf16_stay_within_cosine_999_of_laion_clap_fp32(reference_and_fast):
    ref, fast = reference_and_fast
    assert (ref.precision, fast.precision) == ("fp32", "bf16")
    waves = [synth_track(s, 100 + s, 4.0, SR, 3) for s in range(6)] + [synth_track(2, 7, 25.0, SR, 3)]
    a, na = ref.embed_waveforms(waves, batch_size=4)
    b, nb = fast.embed_waveforms(waves, batch_size=4)
    assert na == nb == [1] * 6 + [2]
    cos = np.sum(a * b, axis=1)
    assert cos.min() >= 0.999, cos
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5) and b.dtype == np.float32
    # and the vectors still tell styles apart as the fp32 ones do (nearest neighbour unchanged)
    assert np.array_equal(np.argsort(-(a @ a.T), axis=1)[:, 1], np.argsort(-(b @ b.T), axis=1)[:, 1])


def test_the_state_dict_keeps_laion_clap_keys(reference_and_fast):
    """Only the front end's forward is swapped: checkpoints load and save with laion-clap's keys."""
    _, fast = reference_and_fast
    keys = set(fast.model.state_dict())
    assert {"audio_branch.spectrogram_extractor.stft.conv_real.weight",
            "audio_branch.logmel_extractor.melW"} <= keys


def test_precision_auto_follows_the_hardware(monkeypatch):
    from recsys_spark import common

    cpu = torch.device("cpu")
    monkeypatch.setattr(common, "native_bf16", lambda device: True)
    assert resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(common, "native_bf16", lambda device: False)
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16" and resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(ValueError, match="audio_precision"):
        resolve_precision("fp16", cpu)


def test_threads_per_task_outside_and_inside_spark_tasks(spark):
    before = torch.get_num_threads()
    try:
        assert set_task_threads(3) == 3 and torch.get_num_threads() == 3
        assert set_task_threads(-1) == 3  # -1: left as it is
        assert set_task_threads(0) == 1   # no task: one thread
    finally:
        torch.set_num_threads(before)

    def report(batches):
        for pdf in batches:
            n = set_task_threads(0)
            yield pd.DataFrame({"threads": [n] * len(pdf), "torch": [torch.get_num_threads()] * len(pdf)})

    rows = spark.range(4).repartition(2).mapInPandas(report, "threads int, torch int").distinct().collect()
    cpus = int(spark.conf.get("spark.task.cpus", "1"))
    assert [(r.threads, r.torch) for r in rows] == [(cpus, cpus)]
