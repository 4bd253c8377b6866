"""faiss track index: build once on the driver, ship to executors, search users in batches.

The catalog of track vectors (~1e5..1e6 rows of 512 floats) is collected to the driver once per
run and indexed there; users are never collected. The index is serialised with
``faiss.serialize_index`` into bytes, broadcast, and deserialised once per Python worker (cached by
the index's token); users are searched ``batch_size`` at a time inside ``mapInPandas``.

Index kinds (inner product on L2-normalised vectors = cosine):

* ``flat``: ``IndexFlatIP``, exact (the default).
* ``ivf``: ``IndexIVFFlat`` with ``nlist`` k-means cells (seeded), ``nprobe`` searched.
* ``hnsw``: ``IndexHNSWFlat`` with ``M`` links, ``efSearch``.

Heard tracks are excluded inside the search: each user is searched for ``n + |heard|`` neighbours
(capped at the catalog size), so removing the heard ones still leaves ``n`` whenever the catalog
has them. The output already satisfies the candidate contract of :mod:`recsys_spark.recall.base`
(top ``n`` per user, ``rank`` 1..n, ties broken by ``track_id``, no heard track, no NaN).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..common import WorkerCache, collect_vectors
from .base import CANDIDATE_SCHEMA, ChannelUnavailable

log = logging.getLogger(__name__)

INDEX_KINDS = ("flat", "ivf", "hnsw")
_CHUNK = 64 * 1024 * 1024  # bytes per row when saving an index


def l2n(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(n, 1e-12), dtype=np.float32)


def build_faiss(vectors: np.ndarray, kind: str = "flat", nlist: int = 256, nprobe: int = 16, hnsw_m: int = 32,
                ef_search: int = 128, seed: int = 0):
    """A faiss inner-product index over ``vectors`` (rows are L2-normalised here).

    ``ivf`` lowers ``nlist`` to ``n // 39`` for small catalogs (faiss wants ~39 points per cell).
    """
    import faiss

    if kind not in INDEX_KINDS:
        raise ValueError(f"index kind must be one of {INDEX_KINDS}, got {kind!r}")
    x = l2n(vectors)
    n, d = x.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "ivf":
        cells = int(max(1, min(nlist, n // 39)))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, cells, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = int(seed)
        index.train(x)
        index.nprobe = int(min(nprobe, cells))
    else:
        index = faiss.IndexHNSWFlat(d, int(hnsw_m), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = int(ef_search)
    index.add(x)
    return index


class TrackIndex:
    """Track ids plus a faiss index over their vectors (row ``i`` of the index is ``ids[i]``).

    Parameters
    ----------
    ids : sequence of str
    index : faiss.Index
    kind : str
    params : dict
        Search-time parameters re-applied after deserialisation (``nprobe``, ``ef_search``).
    """

    def __init__(self, ids: Sequence[str], index, kind: str = "flat", params: Optional[dict] = None):
        self.ids = np.asarray(list(ids), dtype=object)
        self.index = index
        self.kind = kind
        self.params = dict(params or {})
        self.token = uuid.uuid4().hex
        if len(self.ids) != index.ntotal:
            raise ValueError(f"{len(self.ids)} ids for an index of {index.ntotal} vectors")

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_vectors(cls, ids: Sequence[str], vectors: np.ndarray, kind: str = "flat", nlist: int = 256,
                     nprobe: int = 16, hnsw_m: int = 32, ef_search: int = 128, seed: int = 0) -> "TrackIndex":
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(ids) != len(vectors):
            raise ValueError("ids and vectors differ in length")
        if len(set(ids)) != len(ids):
            raise ValueError("track ids must be unique")
        index = build_faiss(vectors, kind, nlist, nprobe, hnsw_m, ef_search, seed)
        params = {"nprobe": int(getattr(index, "nprobe", nprobe)), "ef_search": int(ef_search)}
        return cls(ids, index, kind, params)

    @classmethod
    def from_dataframe(cls, df: DataFrame, kind: str = "flat", id_col: str = "track_id",
                       vec_col: str = "embedding", **kwargs) -> "TrackIndex":
        """Collect ``id_col, vec_col`` (the track catalog, not users) and index it.

        Rows are sorted by id so the index is deterministic; duplicate ids raise.
        """
        t0 = time.perf_counter()
        ids, vecs = collect_vectors(df, id_col, vec_col)
        if not len(ids):
            raise ChannelUnavailable("no track vectors to index")
        idx = cls.from_vectors(ids.tolist(), vecs, kind, **kwargs)
        log.info("built %s faiss index over %d tracks (%d-d) in %.2fs", kind, len(idx.ids), vecs.shape[1],
                 time.perf_counter() - t0)
        return idx

    # -- (de)serialisation ----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        import faiss

        return faiss.serialize_index(self.index).tobytes()

    @classmethod
    def from_bytes(cls, ids, blob: bytes, kind: str, params: dict) -> "TrackIndex":
        import faiss

        index = faiss.deserialize_index(np.frombuffer(blob, dtype=np.uint8))
        _apply_params(index, kind, params)
        return cls(ids, index, kind, params)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    # -- search ---------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """``(scores, positions)`` of the top ``k`` per query (positions -1 when fewer exist)."""
        k = int(min(max(1, k), len(self)))
        return self.index.search(l2n(queries), k)

    def vectors(self, positions: np.ndarray) -> np.ndarray:
        """Stored vectors at ``positions`` (IVF gets a direct map on first use)."""
        if self.kind == "ivf" and not getattr(self, "_direct_map", False):
            self.index.make_direct_map()
            self._direct_map = True
        positions = np.asarray(positions, dtype=np.int64)
        if positions.size == 0:
            return np.zeros((0, self.dim), np.float32)
        return self.index.reconstruct_batch(positions)

    def position_map(self) -> Dict[str, int]:
        pm = getattr(self, "_pos", None)
        if pm is None:
            pm = {t: i for i, t in enumerate(self.ids)}
            self._pos = pm
        return pm

    # -- persistence (any Hadoop path) ----------------------------------------------------------
    def save(self, spark: SparkSession, path: str) -> None:
        """Write ids, kind, params and the serialised index (in 64 MiB chunks) as parquet."""
        blob = self.to_bytes()
        meta = json.dumps({"kind": self.kind, "params": self.params, "ids": list(map(str, self.ids))})
        rows = [(i, blob[o:o + _CHUNK], meta if i == 0 else None) for i, o in enumerate(range(0, len(blob), _CHUNK))]
        schema = "seq int, chunk binary, meta string"
        spark.createDataFrame(rows, schema).coalesce(1).write.mode("overwrite").parquet(path)

    @classmethod
    def load(cls, spark: SparkSession, path: str) -> "TrackIndex":
        rows = sorted(spark.read.parquet(path).collect(), key=lambda r: r["seq"])
        meta = json.loads(rows[0]["meta"])
        blob = b"".join(bytes(r["chunk"]) for r in rows)
        return cls.from_bytes(meta["ids"], blob, meta["kind"], meta["params"])


def _apply_params(index, kind: str, params: dict) -> None:
    if kind == "ivf" and "nprobe" in params:
        index.nprobe = int(params["nprobe"])
    if kind == "hnsw" and "ef_search" in params:
        index.hnsw.efSearch = int(params["ef_search"])


# -- shipping to executors ----------------------------------------------------------------------

#: per Python worker: one index (a run's content or prompt index replaces the one before)
_WORKER_CACHE = WorkerCache(max_items=1)


class ShippedIndex:
    """A :class:`TrackIndex` broadcast to executors; :meth:`get` rebuilds it once per worker."""

    def __init__(self, spark: SparkSession, index: TrackIndex):
        self.token = index.token
        self.kind = index.kind
        self.params = index.params
        self.size = len(index)
        self.bc = spark.sparkContext.broadcast((index.ids, index.to_bytes()))
        _WORKER_CACHE.put(self.token, index)  # the driver process already has it (local mode shares nothing else)

    def get(self) -> TrackIndex:
        return _WORKER_CACHE.get(self.token, self._rebuild)

    def _rebuild(self) -> TrackIndex:
        ids, blob = self.bc.value
        idx = TrackIndex.from_bytes(ids, blob, self.kind, self.params)
        idx.token = self.token
        return idx

    def unpersist(self) -> None:
        self.bc.unpersist()


# -- searching users ------------------------------------------------------------------------------

QUERY_SCHEMA_DOC = """\
user_id string,
seeds array<struct<track_id string, w double>>      (nullable: tracks in the index, with weights)
extra array<struct<w double, embedding array<float>>>  (nullable: outside vectors, e.g. prompt embeddings)
heard array<string>                                   (nullable: tracks to exclude)
"""


def _weighted_mean(vecs: np.ndarray, w: np.ndarray) -> Optional[np.ndarray]:
    w = np.asarray(w, dtype=np.float64)
    ok = np.isfinite(w) & (w > 0)
    if not ok.any():
        return None
    m = (vecs[ok].astype(np.float64) * w[ok, None]).sum(axis=0) / w[ok].sum()
    nrm = np.linalg.norm(m)
    if not np.isfinite(nrm) or nrm == 0:
        return None
    return (m / nrm).astype(np.float32)


def _search_fn(shipped: ShippedIndex, n: int, channel: str, seed_weight: float, extra_weight: float,
               attribute_seed: bool, batch_size: int, threads: int):
    """The ``mapInPandas`` function behind :func:`search_users`."""

    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import faiss

        faiss.omp_set_num_threads(max(1, threads))
        idx = shipped.get()
        pos = idx.position_map()
        for pdf in batches:
            for s in range(0, len(pdf), max(1, batch_size)):
                chunk = pdf.iloc[s:s + batch_size]
                users, queries, heard_sets, seed_info = [], [], [], []
                for row in chunk.itertuples(index=False):
                    seed_pos, seed_w, seed_ids = [], [], []
                    if row.seeds is not None:
                        # sorted by id: seed attribution ties go to the smallest seed id
                        for sd in sorted(row.seeds, key=lambda d: d["track_id"]):
                            p = pos.get(sd["track_id"])
                            if p is not None:
                                seed_pos.append(p)
                                seed_w.append(sd["w"])
                                seed_ids.append(sd["track_id"])
                    seed_vecs = idx.vectors(np.asarray(seed_pos, dtype=np.int64))
                    hist = _weighted_mean(seed_vecs, np.asarray(seed_w)) if seed_pos else None
                    ext = None
                    if row.extra is not None and len(row.extra):
                        ev = np.stack([np.asarray(e["embedding"], dtype=np.float32) for e in row.extra])
                        ext = _weighted_mean(ev, np.asarray([e["w"] for e in row.extra]))
                    parts = [(seed_weight, hist), (extra_weight, ext)]
                    parts = [(a, v) for a, v in parts if v is not None and a > 0]
                    if not parts:
                        continue
                    q = sum(a * v for a, v in parts)
                    nq = float(np.linalg.norm(q))
                    if not np.isfinite(nq) or nq == 0:
                        continue
                    users.append(row.user_id)
                    queries.append(q / nq)
                    heard_sets.append(set(row.heard) if row.heard is not None else set())
                    seed_info.append((seed_ids, seed_vecs))
                if not users:
                    continue
                k = min(len(idx), n + max(len(h) for h in heard_sets))
                scores, found = idx.search(np.stack(queries), k)
                out_u, out_t, out_s, out_r, out_seed = [], [], [], [], []
                for u, user in enumerate(users):
                    sc, ps = scores[u], found[u]
                    keep = [(float(sc[j]), idx.ids[ps[j]], int(ps[j])) for j in range(len(ps))
                            if ps[j] >= 0 and np.isfinite(sc[j]) and idx.ids[ps[j]] not in heard_sets[u]]
                    keep.sort(key=lambda t: (-t[0], t[1]))  # contract: ties broken by track_id
                    keep = keep[:n]
                    seeds_for = [None] * len(keep)
                    sid, svec = seed_info[u]
                    if attribute_seed and sid and keep:
                        cand = idx.vectors(np.asarray([t[2] for t in keep], dtype=np.int64))
                        best = np.argmax(cand @ svec.T, axis=1)
                        seeds_for = [sid[b] for b in best]
                    for r, (score, tid, _) in enumerate(keep):
                        out_u.append(user)
                        out_t.append(tid)
                        out_s.append(score)
                        out_r.append(r + 1)
                        out_seed.append(seeds_for[r])
                if out_u:
                    yield pd.DataFrame({"user_id": out_u, "track_id": out_t, "channel": channel,
                                        "score": np.asarray(out_s, dtype=np.float64),
                                        "rank": np.asarray(out_r, dtype=np.int32), "seed_track_id": out_seed})

    return fn


def search_users(queries: DataFrame, shipped: ShippedIndex, n: int, channel: str, seed_weight: float = 1.0,
                 extra_weight: float = 0.0, attribute_seed: bool = False, batch_size: int = 2048,
                 threads: int = 1) -> DataFrame:
    """Top-``n`` unheard tracks per user for query vectors built from seeds and/or outside vectors.

    Parameters
    ----------
    queries : DataFrame
        One row per user: ``user_id string, seeds array<struct<track_id string, w double>>,
        extra array<struct<w double, embedding array<float>>>, heard array<string>`` (the last three
        nullable). The user's query is ``normalize(seed_weight * h + extra_weight * e)`` where ``h``
        is the ``w``-weighted mean of the seeds' stored vectors (seeds missing from the index are
        ignored) and ``e`` the ``w``-weighted mean of ``extra`` (each normalised); a missing part
        drops out. Users with neither are skipped.
    shipped : ShippedIndex
    n : int
        Candidates per user.
    channel : str
    attribute_seed : bool
        Fill ``seed_track_id`` with the seed most similar to each candidate (else null).
    batch_size : int
        Users per faiss search call.
    threads : int
        faiss OpenMP threads per task (tasks already run in parallel).

    Returns
    -------
    DataFrame
        :data:`recsys_spark.recall.base.CANDIDATE_SCHEMA`.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    for c in ("user_id", "seeds", "extra", "heard"):
        if c not in queries.columns:
            raise ValueError(f"queries lack column {c!r} (see QUERY_SCHEMA_DOC)")
    fn = _search_fn(shipped, int(n), channel, float(seed_weight), float(extra_weight), bool(attribute_seed),
                    int(batch_size), int(threads))
    return queries.select("user_id", "seeds", "extra", "heard").mapInPandas(fn, CANDIDATE_SCHEMA)


def heard_lists(heard: Optional[DataFrame]) -> Optional[DataFrame]:
    """``user_id, heard array<string>`` from the heard contract (``user_id, track_id``)."""
    if heard is None:
        return None
    return heard.groupBy("user_id").agg(F.collect_set(F.col("track_id").cast("string")).alias("heard"))


SEEDS_TYPE = T.ArrayType(T.StructType([T.StructField("track_id", T.StringType()), T.StructField("w", T.DoubleType())]))
EXTRA_TYPE = T.ArrayType(T.StructType([T.StructField("w", T.DoubleType()),
                                       T.StructField("embedding", T.ArrayType(T.FloatType()))]))
