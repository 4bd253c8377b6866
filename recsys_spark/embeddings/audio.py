"""Audio loading for CLAP: decode, mono, resample to 48 kHz, evenly spaced windows.

Every failure is an :class:`AudioError` with a short machine-readable ``reason`` (the quarantine
reason), never a crash and never a made-up waveform:

=========================== ==============================================================
reason                      meaning
=========================== ==============================================================
``no_audio_uri``            the track has no ``audio_uri`` (callers usually skip these)
``unsupported_uri``         a URI scheme this loader cannot open (local paths, ``file://``)
``missing_file``            the file does not exist
``empty_file``              the file has 0 bytes
``corrupt_audio``           no decoder could read it (the decoder's message follows)
``truncated_audio``         a WAV/RIFF file shorter than its data chunk says (a cut upload)
``unsupported_sample_rate`` a rate outside 8-384 kHz (no music at 1 kHz: a broken header)
``zero_length``             decoded to 0 samples
``non_finite_samples``      NaN / inf samples
``silent_audio``            every sample below -80 dBFS (nothing for CLAP to hear)
=========================== ==============================================================

Any rate inside the range is valid and resampled (a 22.05 kHz export is not bad data).

Formats: whatever libsndfile reads (wav, flac, ogg/vorbis, aiff, and mp3 with libsndfile >= 1.1),
then librosa/audioread as a fallback for the rest (mp3/m4a via ffmpeg when present).
"""

from __future__ import annotations

import os
from typing import Tuple
from urllib.parse import urlparse

import numpy as np

TARGET_SR = 48000
#: sample rates a music file can have; anything else is a broken header
MIN_SR, MAX_SR = 8000, 384000
#: peak amplitude below which a track is silence (-80 dBFS)
SILENCE_PEAK = 1e-4


class AudioError(Exception):
    """Audio that cannot be embedded; ``reason`` is the quarantine reason code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail

    @property
    def message(self) -> str:
        return str(self)


def local_path(uri: str) -> str:
    """Local file path of ``uri`` (plain path or ``file://``); other schemes -> AudioError."""
    if uri is None or (isinstance(uri, float) and np.isnan(uri)) or str(uri).strip() == "":
        raise AudioError("no_audio_uri")
    uri = str(uri).strip()
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and os.name == "nt"):
        return parsed.path if parsed.scheme == "file" else uri
    raise AudioError("unsupported_uri", f"scheme {parsed.scheme!r} (mount it, e.g. /dbfs/..., or copy locally)")


def riff_shortfall(path: str) -> int:
    """Bytes missing from a RIFF WAV file's ``data`` chunk; 0 if whole (or RIFX / RF64 / not WAV: not parsed).

    libsndfile reads a cut WAV without an error (it returns the samples that are there), so a
    truncated upload has to be found from the header: the ``data`` chunk's declared size against the
    bytes the file holds after it.
    """
    import struct

    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return 0
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            cid, clen = struct.unpack("<4sI", fh.read(8))
            if cid == b"data":
                if clen in (0, 0xFFFFFFFF):  # size unknown (a streaming writer's placeholder): not a cut
                    return 0
                return max(0, clen - (size - pos - 8))
            pos += 8 + clen + (clen & 1)
    return 0


def decode(path: str) -> Tuple[np.ndarray, int]:
    """Decode a file to ``(samples float32 (n,) mono, sample_rate)``."""
    if not os.path.exists(path):
        raise AudioError("missing_file", path)
    if os.path.getsize(path) == 0:
        raise AudioError("empty_file", path)
    short = riff_shortfall(path)
    if short:
        raise AudioError("truncated_audio", f"{path}: data chunk {short} bytes short of its header")
    import soundfile as sf

    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as sf_exc:  # libsndfile cannot read it: try librosa / audioread (mp3, m4a)
        try:
            import warnings

            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                y, sr = librosa.load(path, sr=None, mono=True)
            data = y.astype(np.float32)[:, None]
        except Exception as lr_exc:
            raise AudioError("corrupt_audio", f"{type(sf_exc).__name__}: {sf_exc}; "
                                              f"fallback {type(lr_exc).__name__}: {lr_exc}"[:300]) from lr_exc
    if not MIN_SR <= int(sr) <= MAX_SR:
        raise AudioError("unsupported_sample_rate", f"{path}: {sr} Hz (allowed {MIN_SR}-{MAX_SR})")
    mono = data.mean(axis=1).astype(np.float32) if data.ndim == 2 else data.astype(np.float32)
    if mono.size == 0:
        raise AudioError("zero_length", path)
    if not np.all(np.isfinite(mono)):
        raise AudioError("non_finite_samples", path)
    if float(np.max(np.abs(mono))) < SILENCE_PEAK:
        raise AudioError("silent_audio", f"{path}: peak below -80 dBFS")
    return mono, int(sr)


def resample(wave: np.ndarray, sr: int, target_sr: int = TARGET_SR) -> np.ndarray:
    """Polyphase resampling to ``target_sr`` (exact rational ratio, scipy)."""
    if sr == target_sr:
        return wave.astype(np.float32)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(int(sr), int(target_sr))
    return resample_poly(wave, target_sr // g, sr // g).astype(np.float32)


def load_audio(uri: str, target_sr: int = TARGET_SR) -> np.ndarray:
    """Mono float32 waveform of ``uri`` at ``target_sr``; raises :class:`AudioError`."""
    wave, sr = decode(local_path(uri))
    out = resample(wave, sr, target_sr)
    if out.size == 0:
        raise AudioError("zero_length", uri)
    return out


def window_starts(n_samples: int, window: int, max_windows: int) -> np.ndarray:
    """Start offsets of up to ``max_windows`` evenly spaced windows covering the track.

    ``ceil(n / window)`` windows are needed to cover the track; when that exceeds ``max_windows``
    the ``max_windows`` windows are spread evenly from the start to the end (first starts at 0,
    last ends at the last sample). Audio not longer than one window -> ``[0]``.
    """
    if n_samples <= window:
        return np.array([0], dtype=np.int64)
    k = int(min(max(1, max_windows), int(np.ceil(n_samples / window))))
    if k == 1:
        return np.array([(n_samples - window) // 2], dtype=np.int64)  # the middle of the track
    return np.round(np.linspace(0, n_samples - window, k)).astype(np.int64)


def repeat_pad(x: np.ndarray, length: int) -> np.ndarray:
    """laion-clap's ``repeatpad``: repeat the clip whole times, zero-pad the rest."""
    if len(x) >= length:
        return x[:length]
    reps = length // len(x)
    y = np.tile(x, reps)
    return np.pad(y, (0, length - len(y)))


def windows_of(wave: np.ndarray, window: int, max_windows: int, clip_samples: int) -> np.ndarray:
    """``(k, clip_samples)`` float32 windows of ``wave`` (each window repeat-padded to the clip)."""
    starts = window_starts(len(wave), window, max_windows)
    return np.stack([repeat_pad(wave[s:s + window], clip_samples) for s in starts]).astype(np.float32)
