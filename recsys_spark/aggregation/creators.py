"""Spark glue of track -> creator aggregation: affinity training data, training, creator embeddings.

- :func:`affinity_examples`: for a label week ``L``, positives are (user, creator) pairs where the
  user engaged (weight > 0) in ``[L, L + 7d)`` with a creator they had never engaged with before
  ``L``; negatives are creators drawn uniformly by hashing (seeded), never a positive or a creator
  the user already knew.
- :func:`user_vectors`: mean CLAP embedding of the user's seeds before ``L`` (Spark aggregation).
- :func:`train_creator_attention`: collects a (user-sampled) training set to the driver, trains an
  attention-pooling model and a mean-pooling model, and compares them on a held-out week.
- :func:`creator_embeddings`: pools each creator's tracks (``groupBy().applyInPandas``) into
  ``creator_embeddings`` rows (:data:`recsys_spark.tables.CREATOR_EMBEDDINGS`).
- :func:`aggregate_creators`: the weekly stage ``aggregate.creators`` (train on the weeks before W,
  pool, replace week W's partition of ``creator_embeddings``); the re-ranking rules read it for
  creator-level diversity.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..tables import CREATOR_EMBEDDINGS, EMB  # noqa: F401  (CREATOR_EMBEDDINGS: the table this module writes)
from . import attention as A

log = logging.getLogger(__name__)

STATE_FILE = "pooling_state.pt"
HPARAMS_FILE = "pooling_config.json"


def _hash_unit(*cols):
    return F.pmod(F.xxhash64(*cols), F.lit(1 << 30)).cast("double") / float(1 << 30)


def creator_track_sets(tracks_df: DataFrame, track_embeddings_df: DataFrame, max_tracks: int = 50) -> DataFrame:
    """``creator_id, track_id, embedding, _r``: each creator's ``max_tracks`` most played embedded tracks."""
    emb = track_embeddings_df.select("track_id", "embedding").dropDuplicates(["track_id"])
    w = Window.partitionBy("creator_id").orderBy(F.coalesce(F.col("play_count"), F.lit(0)).desc(), F.col("track_id"))
    return (tracks_df.select("track_id", "creator_id", "play_count").join(emb, "track_id")
            .withColumn("_r", F.row_number().over(w)).where(F.col("_r") <= int(max_tracks))
            .select("creator_id", "track_id", "embedding", "_r"))


def affinity_examples(interactions: DataFrame, tracks_df: DataFrame, week: dt.date, n_negatives: int = 4,
                      seed: int = 0, creators: Optional[DataFrame] = None) -> DataFrame:
    """Labelled (user, creator) pairs for label week ``week``.

    Returns
    -------
    DataFrame
        ``user_id string, creator_id string, label int, label_week date``. Only users with
        engagement before ``week`` are included (they need a user vector); when ``creators`` is
        given, positives and negatives are both restricted to it.
    """
    start = dt.datetime.combine(week, dt.time())
    end = start + dt.timedelta(days=7)
    tc = tracks_df.select("track_id", "creator_id")
    pos_inter = interactions.where(F.col("weight") > 0).join(tc, "track_id")
    before = pos_inter.where(F.col("event_ts") < F.lit(start)).select("user_id", "creator_id").distinct()
    known_users = before.select("user_id").distinct()
    pos = (pos_inter.where((F.col("event_ts") >= F.lit(start)) & (F.col("event_ts") < F.lit(end)))
           .select("user_id", "creator_id").distinct()
           .join(before, ["user_id", "creator_id"], "left_anti")
           .join(known_users, "user_id", "left_semi"))
    if creators is None:
        creators = tc.select("creator_id").distinct()
    else:  # only creators that can be represented (e.g. with an embedded track) are labelled
        pos = pos.join(creators.select("creator_id").distinct(), "creator_id", "left_semi")
    idx = creators.select("creator_id").distinct().withColumn(
        "_ci", F.row_number().over(Window.orderBy("creator_id")) - 1)
    n_c = idx.agg(F.count(F.lit(1)).alias("_nc"))
    n_pos = pos.groupBy("user_id").agg(F.count(F.lit(1)).alias("_np"))
    draws = (n_pos.crossJoin(F.broadcast(n_c))
             .withColumn("_i", F.explode(F.sequence(F.lit(1), F.col("_np") * (3 * n_negatives) + 10)))
             .withColumn("_ci", F.floor(_hash_unit(F.lit(seed), F.lit(week.isoformat()), "user_id", "_i")
                                        * F.col("_nc")).cast("int")))
    neg = (draws.join(idx, "_ci")
           .groupBy("user_id", "creator_id").agg(F.min("_i").alias("_i"), F.first("_np").alias("_np"))
           .join(pos, ["user_id", "creator_id"], "left_anti")
           .join(before, ["user_id", "creator_id"], "left_anti")
           .withColumn("_r", F.row_number().over(Window.partitionBy("user_id").orderBy("_i")))
           .where(F.col("_r") <= F.col("_np") * n_negatives)
           .select("user_id", "creator_id"))
    return (pos.withColumn("label", F.lit(1)).unionByName(neg.withColumn("label", F.lit(0)))
            .withColumn("label_week", F.lit(week).cast("date")))


def user_vectors(interactions: DataFrame, track_embeddings_df: DataFrame, week: dt.date, last_n: int = 50,
                 users: Optional[DataFrame] = None) -> DataFrame:
    """``user_id, user_vec array<float>``: mean embedding of the user's seeds before ``week``
    (seeds without an embedding are left out; users with none get no row).

    ``users`` (``user_id``) restricts the work to those users (the sampled training users): the
    histories are built and averaged for them only. The mean is taken over whole vectors
    (``aggregate`` over the user's list of seed embeddings), one row per user throughout: no
    row per (user, dimension).
    """
    from ..history import build_history

    start = dt.datetime.combine(week, dt.time())
    before = interactions.where(F.col("event_ts") < F.lit(start))
    if users is not None:
        before = before.join(users.select("user_id").distinct(), "user_id", "left_semi")
    seeds = build_history(before, week, last_n=last_n)
    emb = track_embeddings_df.select("track_id", "embedding").dropDuplicates(["track_id"])
    vecs = (seeds.select("user_id", "track_id").join(emb, "track_id")
            .groupBy("user_id").agg(F.collect_list(F.col("embedding").cast("array<double>")).alias("_e")))
    total = F.aggregate(F.slice("_e", 2, 1 << 30), F.element_at("_e", 1),
                        lambda acc, x: F.zip_with(acc, x, lambda a, b: a + b))
    return vecs.select("user_id", F.transform(total, lambda v: (v / F.size("_e")).cast("float")).alias("user_vec"))


def _dense_sets(sets_pdf: pd.DataFrame, creators: Sequence[str], max_tracks: int, dim: int):
    pos = {c: i for i, c in enumerate(creators)}
    x = np.zeros((len(creators), max_tracks, dim), dtype=np.float32)
    m = np.zeros((len(creators), max_tracks), dtype=bool)
    for c, r, e in zip(sets_pdf["creator_id"], sets_pdf["_r"], sets_pdf["embedding"]):
        i = pos.get(c)
        if i is not None and r <= max_tracks:
            x[i, r - 1] = np.asarray(e, dtype=np.float32)
            m[i, r - 1] = True
    return x, m


def train_creator_attention(
    spark: SparkSession,
    interactions: DataFrame,
    tracks_df: DataFrame,
    track_embeddings_df: DataFrame,
    train_weeks: Sequence[dt.date],
    valid_week: dt.date,
    max_tracks: int = 50,
    n_negatives: int = 4,
    proj_dim: int = 64,
    hidden: int = 64,
    epochs: int = 10,
    batch_size: int = 512,
    lr: float = 3e-3,
    seed: int = 0,
    max_users: int = 50000,
) -> Tuple[A.CreatorAffinityModel, Dict[str, object]]:
    """Train attention pooling on user-creator affinity; compare with mean pooling on ``valid_week``.

    The training data (sampled to about ``max_users`` users per week by a hash of the user) and
    the creators' track sets are collected to the driver.

    Returns
    -------
    (CreatorAffinityModel, dict)
        The attention model, and a report: ``attention_model_auc`` / ``mean_model_auc`` (the
        affinity model with learned attention vs uniform pooling, each trained), and
        ``attention_cosine_auc`` / ``mean_cosine_auc`` (model-free: cosine between the user vector
        and the pooled creator embedding, the quantity diversity uses), plus sizes and timings.
    """
    t0 = time.time()
    sets = creator_track_sets(tracks_df, track_embeddings_df, max_tracks).toPandas()
    if sets.empty:
        raise ValueError("no creator has an embedded track")
    creators = sorted(sets["creator_id"].unique())
    dim = len(sets["embedding"].iloc[0])
    x, m = _dense_sets(sets, creators, max_tracks, dim)
    cpos = {c: i for i, c in enumerate(creators)}
    creators_df = spark.createDataFrame([(c,) for c in creators], "creator_id string")

    def collect(week):
        # persisted: counted, then read for the sampled users' vectors and for the collect
        ex = affinity_examples(interactions, tracks_df, week, n_negatives, seed, creators=creators_df).persist()
        frac_users = ex.select("user_id").distinct().count()
        if frac_users > max_users:
            keep = _hash_unit(F.lit(seed), F.col("user_id")) < F.lit(max_users / frac_users)
            ex = ex.where(keep)
        uv = user_vectors(interactions, track_embeddings_df, week, users=ex.select("user_id"))
        # sorted: the same inputs give the same training order (reruns of a week reproduce it)
        pdf = ex.join(uv, "user_id").toPandas().sort_values(["user_id", "creator_id", "label"],
                                                             ignore_index=True)
        ex.unpersist()
        users = sorted(pdf["user_id"].unique())
        upos = {u: i for i, u in enumerate(users)}
        vecs = np.zeros((len(users), dim), dtype=np.float32)
        for u, v in zip(pdf["user_id"], pdf["user_vec"]):
            vecs[upos[u]] = np.asarray(v, dtype=np.float32)
        pairs = np.array([(upos[u], cpos[c]) for u, c in zip(pdf["user_id"], pdf["creator_id"])], dtype=np.int64)
        return vecs, pairs.reshape(-1, 2), pdf["label"].to_numpy(np.float32)

    parts = [collect(w) for w in sorted(train_weeks)]
    offs, uvs, prs, ys = 0, [], [], []
    for vecs, pairs, y in parts:
        prs.append(pairs + np.array([offs, 0]))
        uvs.append(vecs)
        ys.append(y)
        offs += len(vecs)
    uv_tr, pairs_tr, y_tr = np.concatenate(uvs), np.concatenate(prs), np.concatenate(ys)
    uv_va, pairs_va, y_va = collect(valid_week)
    if len(y_tr) == 0 or len(np.unique(y_tr)) < 2:
        raise ValueError("creator affinity training set needs positives and negatives")

    from ..common import roc_auc

    report: Dict[str, object] = {"n_train": int(len(y_tr)), "n_valid": int(len(y_va)),
                                 "n_creators": len(creators), "dim": dim, "max_tracks": max_tracks}
    models = {}
    for pooling in ("attention", "mean"):
        torch.manual_seed(seed)
        model = A.CreatorAffinityModel(dim, proj_dim, hidden, pooling)
        A.fit_affinity(model, uv_tr, x, m, pairs_tr, y_tr, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
        models[pooling] = model
        report[f"{pooling}_model_auc"] = roc_auc(y_va, A.score_pairs(model, uv_va, x, m, pairs_va))
        vecs, _ = A.pool_creators(model, x, m)
        report[f"{pooling}_cosine_auc"] = roc_auc(y_va, A.cosine_scores(uv_va, vecs, pairs_va))
    report["seconds"] = time.time() - t0
    log.info("creator attention vs mean pooling on %s: %s", valid_week,
             {k: v for k, v in report.items() if k.endswith("auc")})
    return models["attention"], report


def save_pooling(model: A.CreatorAffinityModel, path: str, spark: Optional[SparkSession] = None) -> str:
    """``pooling_state.pt`` (torch.save of the state_dict) + ``pooling_config.json`` in ``path``.

    ``path``: a folder or any URI (``file:``, ``s3a:``, ``abfss:``, ``dbfs:``, ``/Volumes``), written
    through :mod:`recsys_spark.artifacts` (Hadoop FileSystem when ``spark`` is a classic session,
    fsspec otherwise)."""
    from ..artifacts import torch_bytes, write_files

    write_files(path, {HPARAMS_FILE: json.dumps(model.hparams(), sort_keys=True).encode(),
                       STATE_FILE: torch_bytes(model.state_dict())}, spark)  # weights last
    return path


def load_pooling(path: str, spark: Optional[SparkSession] = None) -> A.CreatorAffinityModel:
    """Read what :func:`save_pooling` wrote (weights with ``weights_only=True``: no code runs)."""
    from ..artifacts import read_files, torch_from_bytes

    files = read_files(path, (HPARAMS_FILE, STATE_FILE), spark)
    model = A.CreatorAffinityModel(**json.loads(files[HPARAMS_FILE].decode()))
    model.load_state_dict(torch_from_bytes(files[STATE_FILE]))
    return model.eval()


_POOL_CACHE: Dict[str, A.CreatorAffinityModel] = {}


def creator_embeddings(
    spark: SparkSession,
    tracks_df: DataFrame,
    track_embeddings_df: DataFrame,
    model: Optional[A.CreatorAffinityModel] = None,
    method: str = "attention",
    max_tracks: int = 50,
    model_version: str = "",
    week: Optional[dt.date] = None,
) -> DataFrame:
    """Pool every creator's tracks into one embedding.

    Parameters
    ----------
    model : CreatorAffinityModel, optional
        Required for ``method="attention"`` (from :func:`train_creator_attention` or
        :func:`load_pooling`); its pooling weights are shipped to the workers as plain arrays.
    method : {"attention", "mean"}
    max_tracks : int
        The creator's most played embedded tracks that are pooled.
    model_version : str
        Lineage string (e.g. the CLAP model version); the method and a hash of the pooling weights
        are appended.
    week : date, optional
        Fills ``week_start`` (for writing the ``creator_embeddings`` partition).

    Returns
    -------
    DataFrame
        ``week_start date, creator_id string, model_version string, method string,
        embedding array<float>, n_tracks int, created_at timestamp`` (creators with at least one
        embedded track). Use :func:`for_diversity` for ``creator_id, embedding``.
    """
    if method not in ("attention", "mean"):
        raise ValueError("method must be 'attention' or 'mean'")
    if method == "attention" and (model is None or model.pool is None):
        raise ValueError("method='attention' needs a trained attention CreatorAffinityModel")
    payload = None
    tag = "mean"
    if method == "attention":
        state = {k: v.detach().cpu().numpy().tolist() for k, v in model.pool.state_dict().items()}
        payload = json.dumps({"dim": model.dim, "hidden": model.hidden, "state": state})
        tag = "att-" + hashlib.sha256(payload.encode()).hexdigest()[:8]
    version = f"{model_version}+{tag}" if model_version else tag
    sets = creator_track_sets(tracks_df, track_embeddings_df, max_tracks)

    def _pool(pdf: pd.DataFrame) -> pd.DataFrame:
        pdf = pdf.sort_values("_r")
        x = np.stack([np.asarray(e, dtype=np.float32) for e in pdf["embedding"]])[None]
        mask = np.ones(x.shape[:2], dtype=bool)
        net = None
        if payload is not None:
            net = _POOL_CACHE.get(tag)
            if net is None:
                p = json.loads(payload)
                net = A.CreatorAffinityModel(p["dim"], proj_dim=1, hidden=p["hidden"], pooling="attention")
                net.pool.load_state_dict({k: torch.tensor(v) for k, v in p["state"].items()})
                _POOL_CACHE[tag] = net
        vec, _ = A.pool_creators(net, x, mask)
        return pd.DataFrame({"creator_id": [pdf["creator_id"].iloc[0]], "embedding": [vec[0].tolist()],
                             "n_tracks": [len(pdf)]})

    schema = T.StructType([T.StructField("creator_id", T.StringType()), T.StructField("embedding", EMB, False),
                           T.StructField("n_tracks", T.IntegerType())])
    out = sets.groupBy("creator_id").applyInPandas(_pool, schema=schema)
    log.info("creator embeddings defined (method %s, version %s)", method, version)
    return out.select(
        F.lit(week).cast("date").alias("week_start"), "creator_id", F.lit(version).alias("model_version"),
        F.lit(method).alias("method"), "embedding", "n_tracks", F.current_timestamp().alias("created_at"))


def for_diversity(creator_embeddings_df: DataFrame) -> DataFrame:
    """``creator_id, embedding``: the columns the re-ranking rules need."""
    return creator_embeddings_df.select("creator_id", "embedding")


def aggregate_creators(
    spark: SparkSession,
    tables,
    interactions: DataFrame,
    tracks_df: DataFrame,
    track_embeddings_df: DataFrame,
    week: dt.date,
    method: str = "attention",
    train_weeks: int = 3,
    max_tracks: int = 50,
    n_negatives: int = 4,
    proj_dim: int = 64,
    hidden: int = 64,
    epochs: int = 10,
    lr: float = 3e-3,
    max_users: int = 50000,
    seed: int = 0,
    model_version: str = "",
    model_path: Optional[str] = None,
) -> Dict[str, object]:
    """The weekly stage: creator embeddings of week ``week`` into ``creator_embeddings``.

    With ``method="attention"`` the pooling is trained on the ``train_weeks`` label weeks before
    ``week`` (the oldest ``train_weeks - 1`` train it, the most recent one is the held-out week of
    the attention-vs-mean comparison; only interactions before ``week`` are seen). When there is
    too little data to train (no positives, fewer than two label weeks), mean pooling is used and
    ``fallback`` says why. Replaces exactly partition ``week_start = week``.

    Returns
    -------
    dict
        ``creators`` (rows written), ``method`` used, the comparison AUCs when trained, and
        ``fallback`` (reason) when attention was asked for but mean pooling was written.
    """
    from ..weeks import previous_weeks

    start = dt.datetime.combine(week, dt.time())
    inter = interactions.where(F.col("event_ts") < F.lit(start))
    report: Dict[str, object] = {}
    model = None
    used = method
    if method == "attention":
        weeks = sorted(previous_weeks(week, max(int(train_weeks), 2)))
        try:
            model, rep = train_creator_attention(
                spark, inter, tracks_df, track_embeddings_df, train_weeks=weeks[:-1], valid_week=weeks[-1],
                max_tracks=max_tracks, n_negatives=n_negatives, proj_dim=proj_dim, hidden=hidden, epochs=epochs,
                lr=lr, seed=seed, max_users=max_users)
            report.update({k: v for k, v in rep.items() if isinstance(v, (int, float)) and v == v})
            if model_path:
                save_pooling(model, model_path, spark=spark)
        except ValueError as exc:
            log.warning("creator attention pooling not trained for %s (%s): mean pooling instead", week, exc)
            report["fallback"] = f"mean pooling: attention not trained ({exc})"
            used = "mean"
    out = creator_embeddings(spark, tracks_df, track_embeddings_df, model=model, method=used, max_tracks=max_tracks,
                             model_version=model_version, week=week)
    tables.replace_partition("creator_embeddings", out, "week_start", week)
    report["creators"] = tables.read("creator_embeddings").where(F.col("week_start") == F.lit(week)).count()
    report["method"] = used
    return report
