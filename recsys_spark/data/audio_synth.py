"""Short real audio files whose sound depends on the track's style (pitch, timbre, tempo, noise).

Used by the synthetic platform so the CLAP audio path runs on real waveforms. Each track gets a
melody over its style's base pitch (a per-track transposition and a short motif), a harmonic
spectrum set by the style's brightness, a beat envelope at the style's tempo, and noise.
"""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from . import vocab


def synth_track(style_idx: int, track_idx: int, seconds: float, sr: int, seed: int) -> np.ndarray:
    """Float32 mono waveform in [-1, 1] for one track of a style."""
    style = vocab.STYLES[style_idx]
    rng = np.random.default_rng([seed, 3, int(track_idx)])
    n = int(seconds * sr)
    t = np.arange(n, dtype=np.float64) / sr
    bpm = rng.uniform(*style.bpm)
    beat = 60.0 / bpm
    transpose = 2.0 ** (rng.integers(-1, 2) / 12.0)
    motif = np.random.default_rng([seed, 4, style_idx]).choice([0, 3, 5, 7, 10, 12], size=4)  # the style's motif
    note_idx = (t // beat).astype(int) % len(motif)
    freq = style.base_hz * transpose * 2.0 ** (motif[note_idx] / 12.0)
    phase = 2 * np.pi * np.cumsum(freq) / sr
    n_harm = 1 + int(round(style.brightness * 9))
    sig = np.zeros(n)
    for k in range(1, n_harm + 1):
        sig += np.sin(k * phase) / (k ** (2.0 - 1.2 * style.brightness))
    env = np.exp(-((t % beat) / (beat * (0.25 + 0.5 * (1 - style.brightness)))))
    sig = sig * (0.35 + 0.65 * env)
    sig = sig / (np.max(np.abs(sig)) + 1e-9)
    # noise coloured by the style's brightness (one-pole low-pass), gated by the beat like a hi-hat
    white = rng.standard_normal(n)
    alpha = 0.05 + 0.9 * style.brightness
    noise = np.empty(n)
    acc = 0.0
    for i in range(0, n, 256):  # block-wise filter keeps this fast
        blk = white[i:i + 256]
        out = np.empty_like(blk)
        for j, x in enumerate(blk):
            acc = acc + alpha * (x - acc)
            out[j] = acc
        noise[i:i + 256] = out
    noise = noise / (np.max(np.abs(noise)) + 1e-9) * env
    sig = (1 - 2 * style.noise) * sig + 2 * style.noise * noise
    return (0.8 * sig / (np.max(np.abs(sig)) + 1e-9)).astype(np.float32)


def write_style_audio(spark: SparkSession, tracks: DataFrame, audio_dir: str, seconds: float,
                      sample_rate: int, seed: int) -> int:
    """Write ``<audio_dir>/<track_id>.wav`` for each row of ``tracks`` (track_id, style_idx, track_idx).

    Runs distributed (``mapInPandas``); returns the number of files written.
    """
    os.makedirs(audio_dir, exist_ok=True)

    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import soundfile as sf

        for pdf in batches:
            ok = []
            for tid, sidx, tidx in zip(pdf["track_id"], pdf["style_idx"], pdf["track_idx"]):
                path = os.path.join(audio_dir, f"{tid}.wav")
                wav = synth_track(int(sidx), int(tidx), seconds, sample_rate, seed)
                sf.write(path, wav, sample_rate, subtype="PCM_16")
                ok.append(1)
            yield pd.DataFrame({"n": ok})

    res = tracks.mapInPandas(fn, "n int").groupBy().sum("n").first()[0]
    return int(res or 0)
