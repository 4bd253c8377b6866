"""Content channel: the user's taste in CLAP audio space, retrieved with faiss.

User tower = the weighted mean of the CLAP audio embeddings of the user's seeds (the seeds
contract of :mod:`recsys_spark.history`: the last ``n_seeds`` by ``seed_rank``), L2-normalised;
item tower = the tracks' CLAP audio embeddings. Retrieval is inner product (cosine) over a faiss
index of the catalog, exact (``IndexFlatIP``) by default, IVF or HNSW for large catalogs. The index
is built once per fit on the driver from the track embedding table, broadcast to executors and
searched in ``mapInPandas`` batches of users; heard tracks are excluded inside the search with an
over-fetch of ``|heard|``. ``seed_track_id`` is the seed most similar to the candidate.

``model="two_tower"`` learns the track tower first (:mod:`recsys_spark.recall.two_tower`: an MLP
over the CLAP audio embedding trained on the plays of the weeks before W with in-batch softmax
negatives) and indexes the tower's vectors instead of the raw embeddings; the user tower stays the
weighted mean of the seeds' vectors. It serves the tower only when the tower beats the raw
embeddings on a held-out label week, and says which it served and why
(``model.params["two_tower"]``).

Seed weights (``seed_weighting``):
``recency_log_weight`` (default) ``recency * log1p(weight)`` (skips, weight 0, drop out),
``recency``, or ``uniform``.

Examples
--------
>>> inputs = ChannelInputs(spark, tracks=tracks, seeds=seeds, heard=heard,
...                        track_embeddings=track_embeddings, model_version=version)  # doctest: +SKIP
>>> cands = ContentRecall(n_seeds=20, index="flat").fit(inputs).recommend(inputs, n=100)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ..common import Timer
from ..config import ContentConf
from .base import ChannelInputs, RecallChannel, RecallChannelModel
from .faiss_index import INDEX_KINDS, ShippedIndex, TrackIndex, heard_lists, search_users

log = logging.getLogger(__name__)

CHANNEL = "content"
_D = ContentConf()  # the one source of default hyper-parameters
SEED_WEIGHTINGS = ("recency_log_weight", "recency", "uniform")
MODELS = ("similarity", "two_tower")


def seed_weight_col(seed_weighting: str):
    """Column expression of a seed's weight in the user's mean (see module docstring)."""
    if seed_weighting == "recency_log_weight":
        return F.coalesce(F.col("recency"), F.lit(1.0)) * F.log1p(F.greatest(F.col("weight"), F.lit(0.0)))
    if seed_weighting == "recency":
        return F.coalesce(F.col("recency"), F.lit(1.0)).cast("double")
    if seed_weighting == "uniform":
        return F.lit(1.0)
    raise ValueError(f"seed_weighting must be one of {SEED_WEIGHTINGS}, got {seed_weighting!r}")


def seed_lists(seeds: DataFrame, n_seeds: int, seed_weighting: str) -> DataFrame:
    """``user_id, seeds array<struct<track_id, w>>`` from the seeds contract (w > 0 only)."""
    s = seeds
    if "seed_rank" in s.columns and n_seeds > 0:
        s = s.where(F.col("seed_rank") <= n_seeds)
    s = s.select("user_id", F.col("track_id").cast("string").alias("track_id"),
                 seed_weight_col(seed_weighting).cast("double").alias("w")).where(F.col("w") > 0)
    return s.groupBy("user_id").agg(F.collect_list(F.struct("track_id", "w")).alias("seeds"))


def select_vectors(embeddings: DataFrame, model_version: Optional[str] = None, id_col: str = "track_id",
                   tracks: Optional[DataFrame] = None) -> DataFrame:
    """``track_id, embedding`` of one model version, restricted to ``tracks`` when given.

    Raises when ``model_version`` is None and the table holds several versions.
    """
    df = embeddings
    if model_version is not None:
        df = df.where(F.col("model_version") == model_version)
    elif "model_version" in df.columns:
        versions = [r[0] for r in df.select("model_version").distinct().limit(3).collect()]
        if len(versions) > 1:
            raise ValueError(f"embeddings hold several model versions {versions}: pass model_version")
    df = df.select(F.col(id_col).cast("string").alias("track_id"), "embedding")
    if tracks is not None:
        df = df.join(tracks.select(F.col("track_id").cast("string").alias("track_id")).distinct(), "track_id",
                     "left_semi")
    return df


class ContentRecall(RecallChannel):
    """Estimator: builds the faiss index of track audio embeddings.

    Defaults are :class:`recsys_spark.config.ContentConf`'s. Reads ``inputs.track_embeddings`` of
    ``inputs.model_version``, restricted to ``inputs.tracks`` when given.

    Parameters
    ----------
    n_seeds : int
        Seeds per user used in the user vector (by ``seed_rank``).
    index : {"flat", "ivf", "hnsw"}
    ivf_nlist, ivf_nprobe, hnsw_m, hnsw_ef_search
        Index parameters (see :mod:`recsys_spark.recall.faiss_index`).
    seed_weighting : {"recency_log_weight", "recency", "uniform"}
    batch_size : int
        Users per faiss search call.
    seed : int
        IVF k-means seed; the two-tower's torch and sampling seed.
    model : {"similarity", "two_tower"}
        Index the raw CLAP embeddings, or the vectors of a track tower trained on plays (module doc).
    tower_hidden, tower_dim, train_weeks, max_examples, epochs, max_steps, train_batch_size, lr, temperature, patience, device
        The two-tower's settings (:func:`recsys_spark.recall.two_tower.fit_two_tower`).
    use_torch_distributor, num_processes
        Train the tower with DDP under ``TorchDistributor(local_mode=True)`` over ``num_processes``
        processes (:func:`~recsys_spark.recall.two_tower.fit_two_tower`).
    tower_tags : int
        When > 0, the track tower's input is the audio embedding followed by a multi-hot of the
        catalogue's ``tower_tags`` most common style tags (``tracks.tags``;
        :func:`~recsys_spark.recall.two_tower.tower_inputs`); the tower is still compared with the
        raw audio embeddings. 0: audio only.
    """

    name = CHANNEL
    conf_class = ContentConf
    needs = ("track_embeddings", "seeds")

    def __init__(self, n_seeds: int = _D.n_seeds, index: str = _D.index, ivf_nlist: int = _D.ivf_nlist,
                 ivf_nprobe: int = _D.ivf_nprobe, hnsw_m: int = _D.hnsw_m, hnsw_ef_search: int = _D.hnsw_ef_search,
                 seed_weighting: str = _D.seed_weighting, batch_size: int = _D.batch_size, seed: int = _D.seed,
                 model: str = _D.model, tower_hidden: int = _D.tower_hidden, tower_dim: int = _D.tower_dim,
                 train_weeks: int = _D.train_weeks, max_examples: int = _D.max_examples, epochs: int = _D.epochs,
                 max_steps: int = _D.max_steps,
                 train_batch_size: int = _D.train_batch_size, lr: float = _D.lr, temperature: float = _D.temperature,
                 patience: int = _D.patience, device: str = _D.device,
                 use_torch_distributor: bool = _D.use_torch_distributor, num_processes: int = _D.num_processes,
                 tower_tags: int = _D.tower_tags):
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {model!r}")
        if index not in INDEX_KINDS:
            raise ValueError(f"index must be one of {INDEX_KINDS}, got {index!r}")
        if seed_weighting not in SEED_WEIGHTINGS:
            raise ValueError(f"seed_weighting must be one of {SEED_WEIGHTINGS}, got {seed_weighting!r}")
        self.n_seeds, self.index = int(n_seeds), index
        self.ivf_nlist, self.ivf_nprobe, self.hnsw_m, self.hnsw_ef_search = ivf_nlist, ivf_nprobe, hnsw_m, hnsw_ef_search
        self.seed_weighting, self.batch_size, self.seed = seed_weighting, int(batch_size), int(seed)
        self.model = model
        self.tower = dict(tower_hidden=int(tower_hidden), tower_dim=int(tower_dim), train_weeks=int(train_weeks),
                          max_examples=int(max_examples), epochs=int(epochs), max_steps=int(max_steps),
                          train_batch_size=int(train_batch_size),
                          lr=float(lr), temperature=float(temperature), patience=int(patience), device=str(device),
                          use_torch_distributor=bool(use_torch_distributor), num_processes=int(num_processes),
                          tower_tags=int(tower_tags))

    def params(self) -> Dict[str, Any]:
        return dict(n_seeds=self.n_seeds, index=self.index, ivf_nlist=self.ivf_nlist, ivf_nprobe=self.ivf_nprobe,
                    hnsw_m=self.hnsw_m, hnsw_ef_search=self.hnsw_ef_search, seed_weighting=self.seed_weighting,
                    batch_size=self.batch_size, seed=self.seed, model=self.model, **self.tower)

    def fit(self, inputs: ChannelInputs) -> "ContentRecallModel":
        """Index the track embeddings; :class:`~recsys_spark.recall.base.ChannelUnavailable` when
        none is left (no embedding of ``model_version`` among the catalog's tracks)."""
        vecs = select_vectors(inputs.track_embeddings, inputs.model_version, tracks=inputs.tracks)
        params = {**self.params(), "model_version": inputs.model_version}
        tower = None
        if self.model == "two_tower":
            tin, tags = self._tower_inputs(inputs, vecs)
            tower, params["two_tower"] = self._train_tower(inputs, tin, tags)
            if tower is not None:
                from .two_tower import tower_vectors

                vecs = tower_vectors(tin, tower, self.tower["device"])
        with Timer("content: build faiss index", log):
            idx = TrackIndex.from_dataframe(vecs, kind=self.index, nlist=self.ivf_nlist, nprobe=self.ivf_nprobe,
                                            hnsw_m=self.hnsw_m, ef_search=self.hnsw_ef_search, seed=self.seed)
        return ContentRecallModel(inputs.spark, idx, params, tower=tower)

    def _tower_inputs(self, inputs: ChannelInputs, vecs: DataFrame):
        """``(the tower's input vectors, tag vocabulary)``: the audio embeddings, followed by the
        tag multi-hot when ``tower_tags`` > 0 and the catalogue has tags (else audio only, logged)."""
        from .two_tower import tag_vocabulary, tower_inputs

        n = self.tower["tower_tags"]
        if n <= 0:
            return vecs, []
        tracks = inputs.tracks
        tags = tag_vocabulary(tracks, n) if tracks is not None and "tags" in tracks.columns else []
        if not tags:
            log.warning("content: tower_tags=%d but the catalogue has no style tags: the tower sees audio only", n)
            return vecs, []
        log.info("content: the track tower sees audio + %d style tags (%s, ...)", len(tags), ", ".join(tags[:5]))
        return tower_inputs(vecs, tracks, tags), tags

    def _train_tower(self, inputs: ChannelInputs, vecs: DataFrame, tags=()):
        """``(tower bytes, report)`` when the tower beats the raw embeddings on the held-out week,
        else ``(None, report)`` with ``report["served"] = "similarity"`` and the reason. ``vecs``:
        the tower's input (:meth:`_tower_inputs`); with ``tags``, its last ``len(tags)`` columns
        are the tag multi-hot and the raw embeddings compared against are the columns before them."""
        from .two_tower import HELDOUT_K, train_for_week

        n_tracks = vecs.count() if inputs.interactions is not None and inputs.week is not None else 0
        if inputs.interactions is None or inputs.week is None:
            rep = {"reason": "no interactions / week to train on"}
            tower = None
        elif n_tracks <= HELDOUT_K:  # every track is in every top-k: the held-out check cannot tell
            rep = {"reason": f"only {n_tracks} tracks with an audio embedding (<= {HELDOUT_K}): a held-out "
                             f"recall@{HELDOUT_K} cannot tell a tower from the raw vectors"}
            tower = None
        else:
            with Timer("content: train two-tower", log):
                p = self.params()
                if tags:
                    p["similarity_dims"] = len(vecs.first()["embedding"]) - len(tags)
                tower, rep = train_for_week(inputs.interactions, inputs.week, vecs, p, inputs.history)
                rep["tags"] = list(tags)
        if tower is not None and rep["valid_recall"] <= rep["similarity_valid_recall"]:
            rep["reason"] = (f"the tower's held-out recall@{rep['k']} {rep['valid_recall']:.4f} does not beat "
                             f"the raw embeddings' {rep['similarity_valid_recall']:.4f}")
            tower = None
        rep["served"] = "two_tower" if tower is not None else "similarity"
        if tower is None:
            log.warning("content: two-tower NOT served, the similarity index is: %s", rep.get("reason"))
        else:
            log.info("content: two-tower served: held-out recall@%d %.4f vs raw embeddings %.4f (gain 95%% "
                     "interval %s over %s users; %d examples, best epoch %d, %.1fs)", rep["k"], rep["valid_recall"],
                     rep["similarity_valid_recall"], rep.get("valid_recall_gain_ci95"), rep.get("valid_users"),
                     rep["train_examples"], rep["best_epoch"], rep["seconds"])
        return tower, rep


class IndexedRecallModel(RecallChannelModel):
    """A fitted channel that searches a faiss :class:`TrackIndex` (content and prompt channels):
    the index shipped to executors once, released by :meth:`unpersist`, saved under ``<path>/index``."""

    def __init__(self, spark: SparkSession, index: TrackIndex, params: dict, shipped: Optional[ShippedIndex] = None):
        self.spark = spark
        self.track_index = index
        self.params = dict(params)
        self._shipped = shipped

    @property
    def shipped(self) -> ShippedIndex:
        if self._shipped is None:
            self._shipped = ShippedIndex(self.spark, self.track_index)
        return self._shipped

    def unpersist(self) -> None:
        if self._shipped is not None:
            self._shipped.unpersist()
            self._shipped = None

    def _spark(self) -> SparkSession:
        return self.spark

    def _save_state(self, path: str) -> None:
        self.track_index.save(self.spark, f"{path}/index")

    @classmethod
    def _load_state(cls, spark: SparkSession, path: str, params: Dict[str, Any]) -> "IndexedRecallModel":
        return cls(spark, TrackIndex.load(spark, f"{path}/index"), params)


class ContentRecallModel(IndexedRecallModel):
    """Fitted content channel (see module docstring); ``tower`` holds the served two-tower's
    weights (:func:`recsys_spark.recall.two_tower.tower_bytes`), saved beside the index."""

    channel = CHANNEL

    def __init__(self, spark: SparkSession, index: TrackIndex, params: dict, shipped: Optional[ShippedIndex] = None,
                 tower: Optional[bytes] = None):
        super().__init__(spark, index, params, shipped)
        self.tower = tower

    def _save_state(self, path: str) -> None:
        from .. import artifacts

        super()._save_state(path)
        if self.tower is not None:
            artifacts.write_bytes(f"{path}/tower.pt", self.tower, self.spark)

    @classmethod
    def _load_state(cls, spark: SparkSession, path: str, params: Dict[str, Any]) -> "ContentRecallModel":
        from .. import artifacts

        served = (params.get("two_tower") or {}).get("served") == "two_tower"
        tower = artifacts.read_bytes(f"{path}/tower.pt", spark) if served else None
        return cls(spark, TrackIndex.load(spark, f"{path}/index"), params, tower=tower)

    def recommend(self, inputs: ChannelInputs, n: int) -> DataFrame:
        """Candidates for every user with at least one embedded seed of positive weight.

        Parameters
        ----------
        inputs : ChannelInputs
            ``seeds`` (the seeds contract: ``user_id, track_id, weight, recency, seed_rank``;
            ``recency`` and ``seed_rank`` optional) and ``heard`` (optional, never returned).
        n : int

        Returns
        -------
        DataFrame
            ``user_id string, track_id string, channel string ("content"), score double (cosine),
            rank int (1 = best), seed_track_id string (the seed most similar to the candidate)``;
            at most ``n`` rows per user, none heard.
        """
        p = self.params
        q = seed_lists(inputs.seeds, p["n_seeds"], p["seed_weighting"])
        h = heard_lists(inputs.heard)
        q = q.join(h, "user_id", "left") if h is not None else q.withColumn("heard", F.lit(None).cast("array<string>"))
        q = q.withColumn("extra", F.lit(None).cast("array<struct<w:double,embedding:array<float>>>"))
        return search_users(q, self.shipped, n, CHANNEL, seed_weight=1.0, extra_weight=0.0, attribute_seed=True,
                            batch_size=p["batch_size"])
