"""The Spark layer around :mod:`recsys_spark.embeddings.clap`: ``mapInPandas`` batch functions.

Each factory returns a function ``Iterator[pd.DataFrame] -> Iterator[pd.DataFrame]`` for
``DataFrame.mapInPandas``. Only the small :class:`~recsys_spark.embeddings.clap.EncoderSpec` is
pickled into the closure; the model is built by :func:`~recsys_spark.embeddings.clap.get_encoder`
on first use inside the Python worker and cached for the life of the process (Spark reuses
Python workers, so an executor loads it once), on CUDA when the executor has a GPU
(``device: auto``), with torch's threads set per task (``threads_per_task``: by default the
task's CPUs, so an executor's concurrent tasks do not oversubscribe its cores). Audio rows are processed ``batch_size`` at a time; text rows up to
:data:`TEXT_SORT_WINDOW` at a time (length-sorted model batches of ``batch_size``).
"""

from __future__ import annotations

import logging
from typing import Callable, Iterator

import numpy as np
import pandas as pd
from pyspark.sql import types as T

from .clap import EncoderSpec

log = logging.getLogger(__name__)


def _audio_model_schema(column: str) -> T.StructType:
    """The rows of :func:`_audio_model_rows`: ``track_id, audio_uri, <column>, n_windows, error, error_detail``."""
    return T.StructType([
        T.StructField("track_id", T.StringType(), False),
        T.StructField("audio_uri", T.StringType(), True),
        T.StructField(column, T.ArrayType(T.FloatType(), containsNull=False), True),
        T.StructField("n_windows", T.IntegerType(), True),
        T.StructField("error", T.StringType(), True),
        T.StructField("error_detail", T.StringType(), True),
    ])


AUDIO_RESULT_SCHEMA = _audio_model_schema("embedding")

TEXT_RESULT_SCHEMA = T.StructType([
    T.StructField("id", T.StringType(), False),
    T.StructField("embedding", T.ArrayType(T.FloatType(), containsNull=False), True),
    T.StructField("error", T.StringType(), True),
])

AESTHETICS_RESULT_SCHEMA = _audio_model_schema("scores")


def set_task_threads(threads_per_task: int) -> int:
    """Set torch's intra-op threads for this Spark task (``EncoderSpec.threads_per_task``).

    0 -> the task's CPUs (``spark.task.cpus``; 1 outside a task), n > 0 -> n, -1 -> leave torch's
    default (all the machine's cores, in every concurrent task). Returns the threads in use.
    """
    import torch

    n = int(threads_per_task)
    if n < 0:
        return torch.get_num_threads()
    if n == 0:
        from pyspark import TaskContext

        tc = TaskContext.get()
        n = int(tc.cpus()) if tc is not None else 1
    n = max(1, n)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def _chunks(batches: Iterator[pd.DataFrame], size: int) -> Iterator[pd.DataFrame]:
    """Re-slice Arrow batches into chunks of ``size`` rows."""
    size = max(1, int(size))
    for pdf in batches:
        for i in range(0, len(pdf), size):
            yield pdf.iloc[i:i + size]


def load_batch(uris, sample_rate: int):
    """Decode ``uris`` at ``sample_rate``: ``(waves, ok_idx, errors, details)``; a bad file gets its
    :class:`~recsys_spark.embeddings.audio.AudioError` reason in ``errors`` (an unexpected decoder
    failure is ``corrupt_audio``) and no wave."""
    from .audio import AudioError, load_audio

    waves, ok_idx = [], []
    errors = [None] * len(uris)
    details = [None] * len(uris)
    for i, uri in enumerate(uris):
        try:
            waves.append(load_audio(uri, sample_rate))
            ok_idx.append(i)
        except AudioError as exc:
            errors[i], details[i] = exc.reason, exc.detail[:500]
        except Exception as exc:  # an unexpected decoder failure is still a bad file
            errors[i], details[i] = "corrupt_audio", f"{type(exc).__name__}: {exc}"[:500]
    return waves, ok_idx, errors, details


def _audio_model_rows(batches: Iterator[pd.DataFrame], batch_size: int, sample_rate: int, threads_per_task: int,
                      get_model: Callable, run: Callable, column: str, bad: Callable) -> Iterator[pd.DataFrame]:
    """The loop of an audio model's ``mapInPandas`` function, one output row per input row.

    Rows are taken ``batch_size`` at a time and decoded at ``sample_rate`` (:func:`load_batch`); the
    model (``get_model()``, built on the first batch with audio) gives ``run(model, waves) ->
    (values, n_windows)``; a value for which ``bad(value)`` returns a reason is an error instead.
    Output: :func:`_audio_model_schema` (``column``).
    """
    set_task_threads(threads_per_task)
    model = None
    for pdf in _chunks(batches, batch_size):
        waves, ok_idx, errors, details = load_batch(pdf["audio_uri"].tolist(), sample_rate)
        values = [None] * len(pdf)
        nwin = [None] * len(pdf)
        if waves:
            if model is None:
                model = get_model()
            vals, counts = run(model, waves)
            for j, i in enumerate(ok_idx):
                why = bad(vals[j])
                if why:
                    errors[i], details[i] = why
                    continue
                values[i] = vals[j].astype(np.float32).tolist()
                nwin[i] = int(counts[j])
        yield pd.DataFrame({
            "track_id": pdf["track_id"].astype(str).tolist(),
            "audio_uri": pdf["audio_uri"].tolist(),
            column: values,
            "n_windows": pd.array(nwin, dtype="Int32"),
            "error": errors,
            "error_detail": details,
        })


def _bad_embedding(v: np.ndarray):
    if not np.all(np.isfinite(v)) or float(np.linalg.norm(v)) == 0.0:
        return "bad_embedding", "non-finite or zero vector"
    return None


def _bad_score(v: np.ndarray):
    return None if np.all(np.isfinite(v)) else ("bad_score", "non-finite aesthetics score")


def audio_embed_fn(spec: EncoderSpec, batch_size: int = 16) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """``mapInPandas`` function: ``track_id, audio_uri`` -> :data:`AUDIO_RESULT_SCHEMA`.

    Every input row yields one output row: either ``embedding`` (512 floats, L2-normalised, the
    mean of up to ``spec.max_windows`` window embeddings) and ``n_windows``, or ``error`` (an
    :class:`~recsys_spark.embeddings.audio.AudioError` reason) with ``embedding`` null.
    """

    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from .clap import get_encoder

        return _audio_model_rows(batches, batch_size, spec.sample_rate, spec.threads_per_task,
                                 lambda: get_encoder(spec),
                                 lambda enc, waves: enc.embed_waveforms(waves, batch_size=batch_size),
                                 "embedding", _bad_embedding)

    return fn


def aesthetics_fn(spec, batch_size: int = 8) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """``mapInPandas`` function: ``track_id, audio_uri`` -> :data:`AESTHETICS_RESULT_SCHEMA`.

    ``spec`` is an :class:`~recsys_spark.embeddings.aesthetics.AestheticsSpec`. Every input row
    yields one row: ``scores`` (the four axes CE, CU, PC, PQ) and ``n_windows``, or ``error`` (the
    same reasons as the CLAP stage gives the same bad file) with ``scores`` null. Tracks are decoded
    at 16 kHz and taken ``batch_size`` at a time (their windows go through the model together).
    """

    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from .aesthetics import SAMPLE_RATE, get_scorer

        return _audio_model_rows(batches, batch_size, SAMPLE_RATE, spec.threads_per_task,
                                 lambda: get_scorer(spec),
                                 lambda sc, waves: sc.score_waveforms(waves, batch_size=batch_size),
                                 "scores", _bad_score)

    return fn


#: rows a text task embeds in one call of ``embed_text`` (sorted by token length inside it; Arrow
#: batches larger than this are cut). Large enough for length-sorted batches to have little padding.
TEXT_SORT_WINDOW = 4096
#: distinct texts a text task remembers, so a text repeated within its partition is embedded once.
TEXT_CACHE_MAX = 200_000


def text_embed_fn(spec: EncoderSpec, batch_size: int = 64) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """``mapInPandas`` function: ``id, text`` -> :data:`TEXT_RESULT_SCHEMA` (CLAP text tower).

    Rows are taken up to :data:`TEXT_SORT_WINDOW` at a time so that
    :meth:`~recsys_spark.embeddings.clap.ClapEncoder.embed_text` can sort them by token length and
    cut each model batch of ``batch_size`` to its longest text. A text seen earlier in the same
    task reuses its vector (the stage partitions by text, so repeats meet in one task).
    """

    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from .clap import get_encoder

        set_task_threads(spec.threads_per_task)
        enc = None
        seen: dict = {}
        for pdf in _chunks(batches, max(TEXT_SORT_WINDOW, batch_size)):
            if enc is None:
                enc = get_encoder(spec)
            texts = pdf["text"].fillna("").astype(str).tolist()
            new = list(dict.fromkeys(t for t in texts if t not in seen))
            if new:
                if len(seen) + len(new) > TEXT_CACHE_MAX:
                    seen.clear()
                    new = list(dict.fromkeys(texts))
                seen.update(zip(new, enc.embed_text(new, batch_size=batch_size)))
            embs, errs = [], []
            for t in texts:
                v = seen[t]
                if np.all(np.isfinite(v)) and float(np.linalg.norm(v)) > 0:
                    embs.append(v.astype(np.float32).tolist())
                    errs.append(None)
                else:
                    embs.append(None)
                    errs.append("bad_embedding")
            yield pd.DataFrame({"id": pdf["id"].astype(str).tolist(), "embedding": embs, "error": errs})

    return fn
