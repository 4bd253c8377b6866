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
from scipy.signal import lfilter
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
    # one-pole low-pass acc[i] = acc[i-1] + alpha * (white[i] - acc[i-1]), acc[-1] = 0, as an IIR filter
    noise = lfilter([alpha], [1.0, alpha - 1.0], white)
    noise = noise / (np.max(np.abs(noise)) + 1e-9) * env
    sig = (1 - 2 * style.noise) * sig + 2 * style.noise * noise
    return (0.8 * sig / (np.max(np.abs(sig)) + 1e-9)).astype(np.float32)


#: what the synthetic platform's bad audio files look like (the reason the embed stage gives them)
BAD_AUDIO_CASES = {
    "truncated": "truncated_audio",            # an upload cut short: the WAV header promises more
    "silent": "silent_audio",                  # all zeros
    "wrong_sample_rate": "unsupported_sample_rate",  # a header claiming 1 kHz
    "unreadable": "corrupt_audio",             # not audio at all
}


def write_bad_audio(path: str, case: str, wave: np.ndarray, sample_rate: int) -> None:
    """Write one of :data:`BAD_AUDIO_CASES` to ``path`` (``wave`` supplies the audible cases)."""
    import soundfile as sf

    if case == "truncated":
        sf.write(path, wave, sample_rate, subtype="PCM_16")
        with open(path, "r+b") as fh:
            fh.truncate(max(64, os.path.getsize(path) // 2))
    elif case == "silent":
        sf.write(path, np.zeros_like(wave), sample_rate, subtype="PCM_16")
    elif case == "wrong_sample_rate":
        sf.write(path, wave[: len(wave) // 48 or 1], 1000, subtype="PCM_16")
    elif case == "unreadable":
        with open(path, "wb") as fh:
            fh.write(np.random.default_rng(len(path)).bytes(4096))
    else:
        raise ValueError(f"unknown bad audio case {case!r}; one of {sorted(BAD_AUDIO_CASES)}")


def write_style_audio(spark: SparkSession, tracks: DataFrame, audio_dir: str, seconds: float,
                      sample_rate: int, seed: int) -> dict:
    """Write each track's audio to ``<audio_dir>/<audio_key>``.

    ``tracks`` holds ``track_id, style_idx, track_idx, audio_key`` (the file's path under
    ``audio_dir``, the same key the tracks export names) and ``audio_case`` (``ok`` or one of
    :data:`BAD_AUDIO_CASES`, for the platform's bad uploads). Runs distributed (``mapInPandas``:
    each task synthesises and writes its own tracks, nothing is collected); returns the number of
    files written per case (``{"ok": n, "silent": m, ...}``).
    """
    os.makedirs(audio_dir, exist_ok=True)

    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import soundfile as sf

        for pdf in batches:
            cases = []
            for key, sidx, tidx, case in zip(pdf["audio_key"], pdf["style_idx"], pdf["track_idx"], pdf["audio_case"]):
                path = os.path.join(audio_dir, key)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                wav = synth_track(int(sidx), int(tidx), seconds, sample_rate, seed)
                if case == "ok":
                    sf.write(path, wav, sample_rate, subtype="PCM_16")
                else:
                    write_bad_audio(path, case, wav, sample_rate)
                cases.append(case)
            yield pd.DataFrame({"case": cases})

    rows = tracks.select("audio_key", "style_idx", "track_idx", "audio_case").mapInPandas(
        fn, "case string").groupBy("case").count().collect()
    return {r["case"]: int(r["count"]) for r in rows}
