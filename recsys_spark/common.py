"""Small helpers shared across packages (a leaf module: it imports nothing from ``recsys_spark``).

- :func:`top_n_per_user`: the best ``n`` rows per user of a DataFrame, with a ``rank`` column.
- :func:`roc_auc`: area under the ROC curve (Mann-Whitney, tie-averaged ranks).
- :func:`resolve_device`: the torch device for ``auto`` / ``cpu`` / ``cuda[:i]`` (the one place it
  is chosen; ``torch`` is imported only when called).
- :class:`Timer`: logs a step's wall time.
- :func:`write_metadata` / :func:`read_metadata`: a small JSON document next to a saved model,
  on any Hadoop-compatible path.
- :func:`collect_vectors`: a catalog-sized ``key, vector`` table as sorted keys and one float32
  matrix on the driver (the faiss index and the re-ranking rules' broadcast vectors).
- :class:`WorkerCache`: what a Python worker rebuilt from a broadcast, kept by token (the faiss
  index, the re-ranking rules' vectors).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

if TYPE_CHECKING:  # pyspark and torch are imported where used: pure-torch callers (the DIN) stay Spark-free
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

__all__ = ["top_n_per_user", "roc_auc", "resolve_device", "Timer", "write_metadata", "read_metadata",
           "collect_vectors"]


def top_n_per_user(df: "DataFrame", n: int, score_col: str = "score", tie_col: str = "track_id",
                   user_col: str = "user_id") -> "DataFrame":
    """Keep the best ``n`` rows per user by ``score_col`` descending (ties: ``tie_col`` ascending),
    adding ``rank`` (int, 1 = best, contiguous)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.partitionBy(user_col).orderBy(F.col(score_col).desc(), F.col(tie_col))
    return df.withColumn("rank", F.row_number().over(w)).where(F.col("rank") <= n)


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (Mann-Whitney U with tie-averaged ranks); NaN when one class is absent."""
    from scipy.stats import rankdata

    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(scores, method="average")
    return float((r[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def task_gpu() -> Optional[int]:
    """The CUDA index of the GPU Spark assigned to the running task, or None.

    With ``spark.executor.resource.gpu.amount`` / ``spark.task.resource.gpu.amount`` set, each task
    gets GPU addresses in ``TaskContext.resources()["gpu"]`` (from the worker's discovery script);
    on an executor with several GPUs each task must use its own, not ``cuda:0``. None outside a Spark
    task, without GPU resources, or when the address is not an index (a UUID).
    """
    try:
        from pyspark import TaskContext
    except ImportError:  # pure-torch use (benchmarks/gpu_check.py)
        return None
    tc = TaskContext.get()
    if tc is None:
        return None
    try:
        gpu = tc.resources().get("gpu")
    except Exception:  # noqa: BLE001 - no resources API / not a classic task
        return None
    addresses = list(getattr(gpu, "addresses", None) or [])
    first = str(addresses[0]).strip() if addresses else ""
    return int(first) if first.isdigit() else None


@contextlib.contextmanager
def deterministic_torch():
    """Torch's deterministic algorithms inside the block (or the decorated function), the previous
    setting restored after: the training loops of the two-tower, the DIN and attention pooling run
    under it, so the same examples and seed train the same model, byte for byte.

    Why: on CPU the backward of advanced indexing (``t[idx]`` with repeated indices:
    ``index_put_`` with ``accumulate``) adds the repeats in thread order when torch runs more than
    one thread, so two trainings in one process differed in the last bits after one epoch and in
    the held-out recall's third decimal after twenty. Where CUDA is available the mode only warns
    (``warn_only``): some cuBLAS paths refuse it unless ``CUBLAS_WORKSPACE_CONFIG`` was set before
    the process started."""
    import torch

    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=torch.cuda.is_available())
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)


def resolve_device(device: Optional[str] = "auto"):
    """``auto`` (or empty) -> CUDA when ``torch.cuda.is_available()``, else CPU; ``cpu``, ``cuda``,
    ``cuda:<i>`` as asked. ``auto`` and ``cuda`` inside a Spark task that was assigned a GPU
    (:func:`task_gpu`) -> ``cuda:<that index>`` when this process sees it. Asking for CUDA where
    there is none is an error, as is an unknown kind."""
    import torch

    if device in (None, "", "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    kind = str(device).split(":", 1)[0]
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto | cpu | cuda[:i], got {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but torch.cuda.is_available() is False")
    if str(device) == "cuda":
        idx = task_gpu()
        if idx is not None and idx < torch.cuda.device_count():
            return torch.device("cuda", idx)
    return torch.device(device)


def native_bf16(device) -> bool:
    """Whether ``device`` (a ``torch.device``) computes bfloat16 natively (CUDA with bf16, a CPU
    with AVX512-BF16 or AMX)."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # older / other builds: read the flags
        try:
            with open("/proc/cpuinfo") as fh:
                flags = fh.read()
        except OSError:
            return False
        return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device, name: str = "audio_precision") -> str:
    """``fp32`` or ``bf16`` for a precision setting called ``name`` (``embeddings.audio_precision``,
    ``text_precision``, ``din.score_precision``) on ``device`` (``auto``: bf16 only where it is
    native, see :func:`native_bf16`)."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"{name} must be auto, fp32 or bf16, got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


class Timer:
    """Context manager logging a step's wall time: ``with Timer("fit neighbours") as t: ...``;
    ``t.seconds`` holds it afterwards."""

    def __init__(self, what: str, logger: logging.Logger = log):
        self.what = what
        self.logger = logger
        self.seconds = 0.0

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._t0
        self.logger.info("%s: %.2fs", self.what, self.seconds)
        return False


def write_metadata(spark: "SparkSession", path: str, meta: dict) -> None:
    """Write a small JSON metadata document to ``path`` (one text file; any Hadoop path; overwrites)."""
    spark.createDataFrame([(json.dumps(meta, sort_keys=True),)], "json string").coalesce(1) \
        .write.mode("overwrite").text(path)


def read_metadata(spark: "SparkSession", path: str) -> dict:
    """Read what :func:`write_metadata` wrote; ``FileNotFoundError`` when there is none."""
    try:
        row = spark.read.text(path).first()
    except Exception as exc:  # AnalysisException: path does not exist
        raise FileNotFoundError(f"no model metadata under {path}") from exc
    if row is None:
        raise FileNotFoundError(f"no model metadata under {path}")
    return json.loads(row[0])


def collect_vectors(df: "DataFrame", key: str, column: str, duplicates: str = "raise"):
    """``(keys, matrix)``: the rows of ``df`` with a non-empty ``column`` array, collected to the
    driver, sorted by ``key`` (as a string; deterministic order), ``matrix[i]`` the float32 vector of
    ``keys[i]`` (``keys`` an object array; both empty when no row has a vector).

    Only for catalog-sized tables (tracks, creators), never per-user data. ``duplicates``: ``raise``
    (a key twice is an error) or ``first`` (the first of equal keys in the collected order is kept).
    Mixed dimensions and NaN / inf raise, naming ``column`` and ``key``.
    """
    from pyspark.sql import functions as F

    if duplicates not in ("raise", "first"):
        raise ValueError(f"duplicates must be 'raise' or 'first', not {duplicates!r}")
    pdf = (df.select(F.col(key).cast("string").alias("k"), F.col(column).alias("v"))
           .where(F.col("k").isNotNull() & F.col("v").isNotNull() & (F.size("v") > 0)).toPandas())
    pdf = pdf.sort_values("k", kind="mergesort")
    if duplicates == "first":
        pdf = pdf.drop_duplicates("k")
    elif pdf["k"].duplicated().any():
        raise ValueError(f"{key} must be unique: {pdf.loc[pdf['k'].duplicated(), 'k'].iloc[0]!r} appears twice")
    keys = pdf["k"].to_numpy(dtype=object)
    if not len(pdf):
        return keys, np.zeros((0, 0), dtype=np.float32)
    dims = pdf["v"].map(len)
    if dims.nunique() != 1:
        raise ValueError(f"{column} of {key} has mixed dimensions {sorted(dims.unique())[:5]}")
    mat = np.stack(pdf["v"].map(lambda a: np.asarray(a, dtype=np.float32)).to_numpy())
    if not np.all(np.isfinite(mat)):
        raise ValueError(f"{column} of {key} contains NaN / inf")
    return keys, mat


class WorkerCache:
    """Objects a Python worker rebuilt from a broadcast (a faiss index, a matrix of unit vectors),
    kept by the broadcast's token so that each worker rebuilds one once, not once per batch.

    At most ``max_items`` are kept; the oldest goes first (a run's objects replace the run before's
    in a long-lived worker). Thread-safe: Arrow batches of one worker may arrive on several threads.
    """

    def __init__(self, max_items: int):
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.max_items = int(max_items)
        self._items: "OrderedDict[str, Any]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str, build: Callable[[], Any]) -> Any:
        """The object kept for ``token``; built with ``build()`` (once) when missing."""
        with self._lock:
            if token in self._items:
                return self._items[token]
            value = build()
            self._put(token, value)
            return value

    def put(self, token: str, value: Any) -> None:
        """Keep ``value`` for ``token`` (e.g. the driver's own copy, which it need not rebuild)."""
        with self._lock:
            self._put(token, value)

    def _put(self, token: str, value: Any) -> None:
        self._items[token] = value
        self._items.move_to_end(token)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def __contains__(self, token: str) -> bool:
        return token in self._items

    def __len__(self) -> int:
        return len(self._items)
