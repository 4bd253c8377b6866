"""The Spark side of DIN: leakage-free training set, training driver, and the scoring UDF.

Training set (:func:`build_training_set`)
    For each label week ``L`` (a Monday before the week being built):

    - **history** = the user's seeds computed by :func:`recsys_spark.history.build_history` from
      interactions *strictly before* ``L`` (the interactions are cut at ``L`` here as well, so a
      history builder that looked further could not leak the label week);
    - **positives** = tracks with positive weight in ``[L, L + 7d)`` that the user had never
      interacted with before ``L`` (Discover Weekly only recommends new tracks);
    - **negatives** = per positive, ``n_negatives`` tracks: a share ``1 - popularity_share`` drawn
      from an *exposure-like* pool (what the recall channels would have offered the user for week
      ``L``; passed in as a DataFrame or a function of ``L``), the rest drawn from the popular
      tracks of the weeks before ``L`` with probability proportional to ``popularity ** 0.75``.
      A label week without exposure rows (the first weeks of a warehouse, an evaluation's private
      one) draws all its ``n_negatives`` by popularity, logged.
      Negatives never include a track the user heard before ``L`` or a positive of week ``L``.
      Sampling is by hashing ``(seed, L, user, track)``: deterministic, no driver round trips.

Training (:func:`train_din`)
    On the driver (the training set is collected: small data), or with
    ``pyspark.ml.torch.distributor.TorchDistributor`` (DDP, gloo/nccl) when
    ``use_torch_distributor``. The most recent label week is the validation set for early
    stopping; its AUC / log-loss are returned for the ``runs`` table.

Scoring (:func:`score_candidates`)
    ``mapInPandas`` with an iterator function over one row per user (the user's candidates and
    history). The driver reads the saved model's files from any URI (:mod:`recsys_spark.artifacts`)
    and ships their bytes with the task (executors never open the model folder); the model
    (``torch.load(weights_only=True)``) and its vocabulary are rebuilt once per Python worker
    process and cached by content hash; each user's history is encoded and embedded once
    (:meth:`DIN.grouped_logits`); CUDA is used when the executor has it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..common import resolve_device, resolve_precision, roc_auc
from . import din as D

log = logging.getLogger(__name__)

TRAIN_COLUMNS = ["user_id", "label_week", "track_id", "label", "hist_track_ids"]


# --------------------------------------------------------------------------------------------
# Training set
# --------------------------------------------------------------------------------------------


def _hash_unit(*cols) -> "F.Column":
    """A deterministic uniform number in [0, 1) from the given columns."""
    h = F.xxhash64(*cols)
    return (F.pmod(h, F.lit(1 << 30)).cast("double") / float(1 << 30))


def user_sample(seed: int, fraction: float) -> "F.Column":
    """True for a deterministic ``fraction`` of the users (salted apart from the training cap)."""
    return _hash_unit(F.lit(seed), F.lit("users"), F.col("user_id")) < F.lit(float(fraction))


def estimate_training_rows(interactions: DataFrame, weeks: Sequence[dt.date], n_negatives: int) -> int:
    """Upper estimate of :func:`build_training_set`'s rows: distinct positive (user, track) pairs
    of the label weeks x (1 + negatives). One pass over the label weeks' events."""
    if not weeks:
        return 0
    start = dt.datetime.combine(min(weeks), dt.time())
    end = dt.datetime.combine(max(weeks), dt.time()) + dt.timedelta(days=7)
    n_pos = (interactions.where((F.col("event_ts") >= F.lit(start)) & (F.col("event_ts") < F.lit(end))
                                & (F.col("weight") > 0))
             .select("user_id", "track_id", F.date_trunc("week", "event_ts").alias("_w")).distinct().count())
    return int(n_pos) * (1 + int(n_negatives))


def _new_positives(in_week: DataFrame, heard: DataFrame, users: DataFrame) -> DataFrame:
    """``user_id, track_id``: the pairs of positive summed weight in ``in_week`` that are not in
    ``heard`` (the pairs touched before the week), of the users in ``users``: a label week's
    positives (Discover Weekly only recommends new tracks)."""
    return (in_week.groupBy("user_id", "track_id").agg(F.sum("weight").alias("w"))
            .where(F.col("w") > 0).select("user_id", "track_id")
            .join(heard, ["user_id", "track_id"], "left_anti")
            .join(users.select("user_id"), "user_id", "left_semi"))


def count_positives(interactions: DataFrame, weeks: Sequence[dt.date]) -> int:
    """The positives :func:`build_training_set` labels, counted without building anything else:
    per label week ``L``, :func:`_new_positives` of the users with a history before ``L`` (a
    positive-weight pair). One anti-join against the events before ``L`` per label week."""
    total = None
    for week in sorted(weeks):
        start = dt.datetime.combine(week, dt.time())
        end = start + dt.timedelta(days=7)
        before = interactions.where(F.col("event_ts") < F.lit(start))
        users = (before.groupBy("user_id", "track_id").agg(F.sum("weight").alias("w")).where(F.col("w") > 0)
                 .select("user_id").distinct())
        in_week = interactions.where((F.col("event_ts") >= F.lit(start)) & (F.col("event_ts") < F.lit(end)))
        pos = _new_positives(in_week, before.select("user_id", "track_id").distinct(), users)
        total = pos if total is None else total.unionByName(pos)
    return int(total.count()) if total is not None else 0


def _history_arrays(seeds: DataFrame, max_history: int) -> DataFrame:
    """``user_id, hist_track_ids array<string>`` (seed_rank order, most recent first)."""
    s = seeds.where(F.col("seed_rank") <= int(max_history))
    return s.groupBy("user_id").agg(
        F.transform(F.sort_array(F.collect_list(F.struct("seed_rank", "track_id"))),
                    lambda x: x["track_id"]).alias("hist_track_ids"))


def _week_examples(
    interactions: DataFrame,
    week: dt.date,
    pool: Optional[DataFrame],
    n_negatives: int,
    popularity_share: float,
    seed: int,
    max_history: int,
    popular_pool: int,
    history_kwargs: dict,
    user_fraction: float = 1.0,
) -> DataFrame:
    from ..history import build_history  # the lead's history module (seeds contract)

    start = dt.datetime.combine(week, dt.time())
    end = start + dt.timedelta(days=7)
    before_all = interactions.where(F.col("event_ts") < F.lit(start))
    if user_fraction < 1.0:  # the sampled users' own events; popularity stays platform-wide
        interactions = interactions.where(user_sample(seed, user_fraction))
    before = interactions.where(F.col("event_ts") < F.lit(start))
    in_week = interactions.where((F.col("event_ts") >= F.lit(start)) & (F.col("event_ts") < F.lit(end)))

    seeds = build_history(before, week, last_n=max_history, **history_kwargs)
    hist = _history_arrays(seeds, max_history)
    heard = before.select("user_id", "track_id").distinct()
    pos = _new_positives(in_week, heard, hist)
    n_pos = pos.groupBy("user_id").agg(F.count(F.lit(1)).alias("n_pos"))
    n_exp_per = int(round(n_negatives * (1.0 - popularity_share)))
    n_pop_per = n_negatives - n_exp_per
    excluded = heard.unionByName(pos).distinct()
    wk = F.lit(week.isoformat())

    negs = []
    if pool is not None and n_exp_per > 0:
        e = (pool.select("user_id", "track_id").distinct()
             .join(n_pos, "user_id")
             .join(excluded, ["user_id", "track_id"], "left_anti")
             .withColumn("_h", _hash_unit(F.lit(seed), wk, F.lit("exp"), "user_id", "track_id"))
             .withColumn("_r", F.row_number().over(Window.partitionBy("user_id").orderBy("_h", "track_id")))
             .where(F.col("_r") <= F.col("n_pos") * n_exp_per)
             .select("user_id", "track_id"))
        negs.append(e)
    if n_pop_per > 0:
        popularity = (before_all.where(F.col("weight") > 0).groupBy("track_id")
                      .agg(F.countDistinct("user_id").alias("pop"))
                      .orderBy(F.col("pop").desc(), F.col("track_id")).limit(int(popular_pool)))
        pw = Window.orderBy(F.col("pop").desc(), F.col("track_id"))
        total = Window.partitionBy()
        cdf = (popularity.withColumn("p", F.pow(F.col("pop").cast("double"), 0.75))
               .withColumn("hi", F.sum("p").over(pw.rowsBetween(Window.unboundedPreceding, 0))
                           / F.sum("p").over(total))
               .withColumn("lo", F.coalesce(F.lag("hi").over(pw), F.lit(0.0)))
               .select("track_id", "lo", "hi"))
        # oversample x3 then drop excluded tracks and duplicates
        draws = (n_pos.withColumn("_i", F.explode(F.sequence(F.lit(1), F.col("n_pos") * (3 * n_pop_per))))
                 .withColumn("_u", _hash_unit(F.lit(seed), wk, F.lit("pop"), "user_id", "_i")))
        p = (draws.join(F.broadcast(cdf), (F.col("_u") >= F.col("lo")) & (F.col("_u") < F.col("hi")))
             .groupBy("user_id", "track_id").agg(F.min("_i").alias("_i"), F.first("n_pos").alias("n_pos"))
             .join(excluded, ["user_id", "track_id"], "left_anti"))
        if negs:
            p = p.join(negs[0], ["user_id", "track_id"], "left_anti")
        p = (p.withColumn("_r", F.row_number().over(Window.partitionBy("user_id").orderBy("_i", "track_id")))
             .where(F.col("_r") <= F.col("n_pos") * n_pop_per).select("user_id", "track_id"))
        negs.append(p)

    rows = pos.withColumn("label", F.lit(1))
    for n in negs:
        rows = rows.unionByName(n.withColumn("label", F.lit(0)))
    return (rows.join(hist, "user_id")
            .select("user_id", F.lit(week).cast("date").alias("label_week"), "track_id",
                    F.col("label").cast("int").alias("label"), "hist_track_ids"))


def build_training_set(
    spark: SparkSession,
    interactions: DataFrame,
    weeks: Sequence[dt.date],
    negatives_pool_df: Optional[DataFrame] = None,
    negatives_pool_fn: Optional[Callable[[dt.date], DataFrame]] = None,
    n_negatives: int = 4,
    seed: int = 0,
    max_history: int = 50,
    popularity_share: float = 0.5,
    popular_pool: int = 1000,
    this_week_share: float = 0.5,
    half_life_days: float = 21.0,
    user_fraction: float = 1.0,
) -> DataFrame:
    """Labelled DIN examples for the label weeks ``weeks``, without leakage.

    Parameters
    ----------
    spark : SparkSession
    interactions : DataFrame
        ``user_id, track_id, event_ts, weight`` (the interactions contract).
    weeks : list of datetime.date
        Label weeks (Mondays), all before the week being built.
    negatives_pool_df : DataFrame, optional
        Exposure-like candidates ``user_id, track_id`` and optionally ``week_start`` (then only
        the rows of the label week are used for it).
    negatives_pool_fn : callable, optional
        ``fn(week) -> DataFrame[user_id, track_id]``, e.g. the recall channels run for that week.
        Without any pool all negatives are popularity-sampled.
    n_negatives : int
        Negatives per positive.
    seed : int
    max_history : int
        History length (``last_n`` of the history builder).
    popularity_share : float
        Share of the negatives drawn by popularity (the rest from the pool).
    popular_pool : int
        The popularity sampler draws from this many most popular tracks before ``L``.
    user_fraction : float
        Build the examples of this deterministic share of the users only (:func:`user_sample`;
        histories, positives and negatives of the others are never computed). The weekly job
        sets it from :func:`estimate_training_rows` so the set stays near ``din.max_train_rows``.

    Returns
    -------
    DataFrame
        ``user_id string, label_week date, track_id string, label int (1/0),
        hist_track_ids array<string>`` (history most recent first, at most ``max_history``).
    """
    if not weeks:
        raise ValueError("no label weeks given")
    if not 0.0 <= popularity_share <= 1.0:
        raise ValueError("popularity_share must be in [0, 1]")
    if not 0.0 < user_fraction <= 1.0:
        raise ValueError(f"user_fraction must be in (0, 1], got {user_fraction}")
    out = None
    for week in sorted(weeks):
        if week.weekday() != 0:
            raise ValueError(f"label week {week} is not a Monday")
        pool = None
        if negatives_pool_fn is not None:
            pool = negatives_pool_fn(week)
        elif negatives_pool_df is not None:
            pool = negatives_pool_df
            if "week_start" in pool.columns:
                pool = pool.where(F.col("week_start") == F.lit(week).cast("date"))
        share = popularity_share if pool is not None else 1.0
        if share < 1.0 and pool.limit(1).count() == 0:
            # no exposure candidates for L (the warehouse's first weeks, an evaluation's private
            # warehouse, a pruned partition): the whole quota comes from popularity, so every week
            # keeps n_negatives per positive (with popularity_share 0 it would otherwise have none)
            log.warning("DIN label week %s has no exposure candidates (no recall_candidates of that week): "
                        "its %d negatives per positive are all drawn by popularity", week, n_negatives)
            pool, share = None, 1.0
        ex = _week_examples(interactions, week, pool, n_negatives, share, seed, max_history,
                            popular_pool, {"this_week_share": this_week_share,
                                           "half_life_days": half_life_days}, user_fraction)
        out = ex if out is None else out.unionByName(ex)
        log.info("DIN training examples defined for label week %s (exposure pool=%s)", week, pool is not None)
    return out


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


@dataclass
class DINArtifact:
    """A trained DIN with its vocabulary (``vocab[i]`` has index ``i + 2``)."""

    model: D.DIN
    vocab: List[str]
    metrics: Dict[str, object]

    @property
    def config(self) -> D.DINConfig:
        return self.model.config

    def state_dict(self):
        return self.model.state_dict()

    def save(self, path: str, root: Optional[str] = None, spark: Optional[SparkSession] = None) -> str:
        """``din_state.pt`` (torch.save of the state_dict) + JSON config / vocab / metrics.

        ``path``: a folder or any URI (:mod:`recsys_spark.artifacts`: Hadoop FileSystem through
        ``spark`` when it is a classic session, fsspec otherwise, plain IO for local paths).
        ``root`` (the model folder from config): refuse a ``path`` resolving outside it."""
        D.save(path, self.model, self.vocab, self.metrics, root=root, spark=spark)
        return path

    @classmethod
    def load(cls, path: str, root: Optional[str] = None, spark: Optional[SparkSession] = None) -> "DINArtifact":
        """Load without executing code (``weights_only=True`` + JSON); ``path``, ``root``, ``spark``
        as in :meth:`save`."""
        files = D.read_files(D._checked(path, root), spark, metrics=True)
        model, vocab = D.from_files(files)
        metrics = json.loads(files[D.METRICS_FILE].decode()) if D.METRICS_FILE in files else {}
        ids = [None] * len(vocab)
        for t, i in vocab.items():
            ids[i - D.N_SPECIAL] = t
        return cls(model, ids, metrics)


def _to_pandas(data) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    return data.toPandas()


def _build_vocab(pdf: pd.DataFrame, min_count: int) -> List[str]:
    counts: Dict[str, int] = {}
    for t in pdf["track_id"]:
        counts[t] = counts.get(t, 0) + 1
    for hist in pdf["hist_track_ids"]:
        for t in (hist if hist is not None else []):
            counts[t] = counts.get(t, 0) + 1
    return sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))


def _content_table(track_embeddings, vocab: List[str]) -> Tuple[Optional[np.ndarray], List[str]]:
    """Content rows for the vocab (+ content-only ids appended). Returns (table, extra_ids)."""
    if track_embeddings is None:
        return None, []
    emb = _to_pandas(track_embeddings)
    if len(emb) == 0:
        return None, []
    emb = emb.drop_duplicates("track_id", keep="last")
    by_id = dict(zip(emb["track_id"], emb["embedding"]))
    known = set(vocab)
    extra = sorted(t for t in by_id if t not in known)
    ids = list(vocab) + extra
    dim = len(next(iter(by_id.values())))
    table = np.zeros((len(ids) + D.N_SPECIAL, dim), dtype=np.float32)
    for i, t in enumerate(ids):
        v = by_id.get(t)
        if v is not None:
            table[i + D.N_SPECIAL] = np.asarray(v, dtype=np.float32)
    return table, extra


def _split(pdf: pd.DataFrame, valid_week, seed: int) -> Tuple[pd.DataFrame, pd.DataFrame]:
    weeks = sorted(pd.to_datetime(pdf["label_week"]).dt.date.unique())
    if valid_week is None:
        valid_week = weeks[-1] if len(weeks) > 1 else None
    if valid_week is not None:
        is_valid = pd.to_datetime(pdf["label_week"]).dt.date == valid_week
    else:  # one label week only: hold out 20% of the users
        rng = np.random.default_rng(seed)
        users = np.array(sorted(pdf["user_id"].unique()))
        held = set(rng.choice(users, size=max(1, len(users) // 5), replace=False))
        is_valid = pdf["user_id"].isin(held)
    return pdf[~is_valid], pdf[is_valid]


def _encode(pdf: pd.DataFrame, vocab_map: Dict[str, int], max_history: int) -> D.Batchable:
    return D.Batchable(
        hist=D.encode_histories(list(pdf["hist_track_ids"]), vocab_map, max_history),
        cand=D.encode_ids(list(pdf["track_id"]), vocab_map),
        label=pdf["label"].to_numpy(dtype=np.float32),
        # one list per user and label week: what the softmax loss and the validation NDCG@30 rank over
        group=pd.factorize(pd.MultiIndex.from_arrays([pdf["user_id"].astype(str),
                                                      pdf["label_week"].astype(str)]))[0].astype(np.int64),
    )


def _ddp_train(init_path: str, data_path: str, out_path: str, params: dict) -> dict:
    """Body run by TorchDistributor in every process (module-level: importable by workers)."""
    import torch
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() and params.get("use_gpu") else "gloo"
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}") if backend == "nccl" else torch.device("cpu")
    torch.manual_seed(params["seed"])
    with open(os.path.join(init_path, D.CONFIG_FILE)) as fh:
        cfg = D.DINConfig.from_json(fh.read())
    state = torch.load(os.path.join(init_path, D.STATE_FILE), map_location="cpu", weights_only=True)
    model = D.DIN(cfg, content=state.get("content"))
    model.load_state_dict(state)
    model.to(device)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    z = np.load(data_path, allow_pickle=False)
    train = D.Batchable(z["train_hist"], z["train_cand"], z["train_label"], group=z["train_group"])
    valid = (D.Batchable(z["valid_hist"], z["valid_cand"], z["valid_label"], group=z["valid_group"])
             if len(z["valid_cand"]) else None)
    res = D.fit(model, train, valid if rank == 0 else None, epochs=params["epochs"],
                batch_size=params["batch_size"], lr=params["lr"], patience=10 ** 6,
                seed=params["seed"], device=device, ddp_model=ddp, shard=(rank, world),
                loss=params.get("loss", "logloss"))
    if rank == 0:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out_path)
        with open(out_path + ".json", "w") as fh:
            json.dump(res, fh, default=float)
    dist.destroy_process_group()
    return None


def train_din(
    train,
    track_embeddings=None,
    valid_week: Optional[dt.date] = None,
    embedding_dim: int = 32,
    attention_hidden: Sequence[int] = (64, 32),
    mlp_hidden: Sequence[int] = (128, 64),
    softmax_attention: bool = False,
    use_content: bool = True,
    max_history: int = 50,
    epochs: int = 8,
    batch_size: int = 1024,
    lr: float = 3e-3,
    patience: int = 2,
    seed: int = 0,
    device: str = "auto",
    min_count: int = 1,
    max_rows: Optional[int] = None,
    use_torch_distributor: bool = False,
    num_processes: int = 1,
    loss: str = "logloss",
) -> Tuple[DINArtifact, Dict[str, object]]:
    """Train a DIN on labelled examples; early stopping on the most recent label week.

    Parameters
    ----------
    train : pandas.DataFrame or Spark DataFrame
        Output of :func:`build_training_set` (collected to the driver: small data; use
        ``max_rows`` to sample it down, by a hash of the user so that users stay whole).
    track_embeddings : DataFrame, optional
        ``track_id, embedding`` (CLAP, 512-d) used when ``use_content``. Tracks with an embedding
        but no training interaction are added to the vocabulary as content-only items.
    valid_week : date, optional
        Validation label week (default: the most recent; with one week, 20% of users).
    embedding_dim, attention_hidden, mlp_hidden, softmax_attention, max_history
        Model hyper-parameters (:class:`recsys_spark.ranking.din.DINConfig`).
    epochs, batch_size, lr, patience, seed, device
        Training settings (``device="auto"`` picks CUDA when present).
    min_count : int
        Tracks seen fewer times in training get no ID embedding (OOV; content only).
    use_torch_distributor, num_processes : bool, int
        Train with ``TorchDistributor(local_mode=True)`` and DDP over ``num_processes`` processes.
        Needs an active SparkSession. Rank 0 validates after every epoch and keeps the best
        epoch's weights, but every epoch runs (``patience`` is not applied across processes).
    loss : str
        ``logloss`` (per example, model choice on validation AUC) or ``softmax`` (each positive
        against its user's list of that label week, model choice on validation NDCG@30);
        :func:`recsys_spark.ranking.din.fit`.

    Returns
    -------
    (DINArtifact, dict)
        The trained model with its vocabulary, and metrics: ``auc``, ``logloss`` (validation),
        ``ndcg@30`` (validation, per user and label week), ``train_auc``, ``n_train``, ``n_valid``,
        ``pos_rate``, ``best_epoch``, ``epochs_run``, ``seconds``, ``n_vocab``, ``n_id_items``,
        ``use_content``.
    """
    import torch

    t0 = time.time()
    if max_rows is not None and not isinstance(train, pd.DataFrame):
        n = train.count()
        if n > max_rows:
            frac = max_rows / n
            train = train.where(_hash_unit(F.lit(seed), F.col("user_id")) < F.lit(frac))
    pdf = _to_pandas(train)
    if len(pdf) == 0:
        raise ValueError("empty DIN training set")
    tr, va = _split(pdf, valid_week, seed)
    if tr["label"].nunique() < 2:
        raise ValueError("DIN training set needs both positives and negatives")
    vocab = _build_vocab(tr, min_count)
    content, extra = _content_table(track_embeddings, vocab) if use_content else (None, [])
    ids = vocab + extra
    vocab_map = {t: i + D.N_SPECIAL for i, t in enumerate(ids)}
    cfg = D.DINConfig(
        n_items=len(ids), n_id_items=len(vocab), embedding_dim=int(embedding_dim),
        content_dim=0 if content is None else int(content.shape[1]),
        attention_hidden=list(attention_hidden), mlp_hidden=list(mlp_hidden),
        softmax_attention=bool(softmax_attention), max_history=int(max_history),
    )
    torch.manual_seed(seed)
    model = D.DIN(cfg, content=None if content is None else torch.from_numpy(content))
    train_b, valid_b = _encode(tr, vocab_map, max_history), _encode(va, vocab_map, max_history)
    dev = resolve_device(device)
    log.info("DIN training: %d train rows, %d valid rows, vocab %d (%d with ID), content %s, device %s, loss %s",
             len(train_b), len(valid_b), len(ids), len(vocab), cfg.content_dim, dev, loss)

    if use_torch_distributor:
        from pyspark.ml.torch.distributor import TorchDistributor

        with tempfile.TemporaryDirectory(prefix="din-ddp-") as tmp:
            D.save(os.path.join(tmp, "init"), model, ids)
            data_path = os.path.join(tmp, "data.npz")
            np.savez(data_path, train_hist=train_b.hist, train_cand=train_b.cand, train_label=train_b.label,
                     train_group=train_b.group, valid_hist=valid_b.hist, valid_cand=valid_b.cand,
                     valid_label=valid_b.label, valid_group=valid_b.group)
            out_path = os.path.join(tmp, "trained.pt")
            use_gpu = dev.type == "cuda"
            TorchDistributor(num_processes=num_processes, local_mode=True, use_gpu=use_gpu).run(
                _ddp_train, os.path.join(tmp, "init"), data_path, out_path,
                {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "use_gpu": use_gpu,
                 "loss": loss})
            model.load_state_dict(torch.load(out_path, map_location="cpu", weights_only=True))
            with open(out_path + ".json") as fh:
                res = json.load(fh)
    else:
        model.to(dev)
        res = D.fit(model, train_b, valid_b if len(valid_b) else None, epochs=epochs,
                    batch_size=batch_size, lr=lr, patience=patience, seed=seed, device=dev, loss=loss)
        model.to("cpu")
    model.eval()
    metrics: Dict[str, object] = {
        "n_train": int(len(train_b)), "n_valid": int(len(valid_b)),
        "pos_rate": float(pdf["label"].mean()), "n_vocab": len(ids), "n_id_items": len(vocab), "loss": loss,
        "use_content": cfg.content_dim > 0, "best_epoch": res.get("best_epoch"),
        "epochs_run": res.get("epochs_run"),
        "train_auc": roc_auc(train_b.label, D.predict(model, train_b)),
    }
    if len(valid_b):
        p = D.predict(model, valid_b)
        metrics["auc"] = roc_auc(valid_b.label, p)
        metrics["logloss"] = D.log_loss(valid_b.label, p)
        metrics["ndcg@30"] = D.ndcg_at_k(valid_b.label, p, valid_b.group, 30)
    if "history" in res:
        metrics["history"] = res["history"]
    metrics["seconds"] = time.time() - t0
    log.info("DIN trained in %.1fs: valid auc %s, logloss %s", metrics["seconds"],
             metrics.get("auc"), metrics.get("logloss"))
    return DINArtifact(model, ids, metrics), metrics


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------

_MODEL_CACHE: Dict[tuple, tuple] = {}


def _cached_model(files: Dict[str, bytes], digest: str, device: str):
    """The model and vocabulary of ``files`` (:func:`recsys_spark.ranking.din.to_files` output),
    rebuilt once per Python worker process and kept while ``digest`` is the same."""
    dev = resolve_device(device)  # the task's own GPU when Spark assigned one
    key = (digest, str(dev))
    hit = _MODEL_CACHE.get(key)
    if hit is None:
        model, vocab = D.from_files(files, device=dev)
        hit = (model, vocab, dev)
        _MODEL_CACHE.clear()
        _MODEL_CACHE[key] = hit
    return hit


def model_digest(files: Dict[str, bytes]) -> str:
    """A content hash of a saved DIN's files (the worker cache key)."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode())
        h.update(len(files[name]).to_bytes(8, "little"))
        h.update(files[name])
    return h.hexdigest()


def score_pandas(pdf: pd.DataFrame, model: D.DIN, vocab: Dict[str, int], batch_size: int = 4096,
                 hist_col: str = "hist_track_ids") -> np.ndarray:
    """DIN probabilities for a pandas frame with ``track_id`` and a history-list column."""
    data = D.Batchable(
        hist=D.encode_histories(list(pdf[hist_col]), vocab, model.config.max_history),
        cand=D.encode_ids(list(pdf["track_id"]), vocab),
    )
    return D.predict(model, data, batch_size=batch_size)


def score_candidates(
    spark: SparkSession,
    candidates_df: DataFrame,
    seeds_df: DataFrame,
    model_path: str,
    track_features_df: Optional[DataFrame] = None,
    batch_size: int = 4096,
    device: str = "auto",
    output_col: str = "din_score",
    precision: str = "fp32",
) -> DataFrame:
    """Score every candidate with a saved DIN (``mapInPandas``, model loaded once per worker).

    Parameters
    ----------
    spark : SparkSession
    candidates_df : DataFrame
        ``user_id, track_id, ...`` (all columns are kept).
    seeds_df : DataFrame
        The seeds of the week (``user_id, track_id, seed_rank``); the history is the seeds in
        ``seed_rank`` order, cut to the model's ``max_history``. Users without seeds are scored
        with an empty history.
    model_path : str
        Folder or URI written by :meth:`DINArtifact.save`. Only the driver reads it (through
        :mod:`recsys_spark.artifacts`, with ``spark``); the model's bytes travel to the executors
        inside the task closure (broadcast by PySpark when over 1 MiB), so executors never open
        ``model_path`` and a folder on the driver's local disk works on a cluster.
    track_features_df : DataFrame, optional
        Not used: content features come from the table stored with the model (every track that
        had a CLAP embedding at training time); tracks embedded later score on the OOV row.
    batch_size : int
        Rows per torch forward pass.
    device : str
        ``auto`` (CUDA when the executor has it), ``cpu`` or ``cuda``.
    precision : str
        ``fp32``, ``bf16`` (the forward under bfloat16 autocast) or ``auto`` (bf16 where the
        executor's device has it natively: ``din.score_precision``), resolved on each executor.

    Returns
    -------
    DataFrame
        ``candidates_df`` columns plus ``din_score double`` (click probability in ``(0, 1)``).
    """
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"din.score_precision must be auto, fp32 or bf16, got {precision!r}")
    if track_features_df is not None:
        log.warning("score_candidates: track_features_df is ignored; content comes from the model")
    files = D.read_files(model_path, spark)
    digest = model_digest(files)
    max_history = D.DINConfig.from_json(files[D.CONFIG_FILE].decode()).max_history
    # One row per user: the history travels (and is encoded, and run through the history half of
    # the model) once per user instead of once per candidate.
    per_user = (candidates_df.groupBy("user_id")
                .agg(F.array_sort(F.collect_set("track_id")).alias("_din_cands"))
                .join(_history_arrays(seeds_df, max_history).withColumnRenamed("hist_track_ids", "_din_hist"),
                      "user_id", "left"))
    out_schema = T.StructType([T.StructField("user_id", T.StringType(), False),
                               T.StructField("track_id", T.StringType(), False),
                               T.StructField(output_col, T.DoubleType(), True)])

    def _score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model, vocab, dev = _cached_model(files, digest, device)
        prec = resolve_precision(precision, dev, "din.score_precision")
        for pdf in batches:
            cands = [np.asarray(c, dtype=object) for c in pdf["_din_cands"]]
            sizes = np.fromiter((len(c) for c in cands), dtype=np.int64, count=len(cands))
            flat = np.concatenate(cands) if len(cands) else np.empty(0, dtype=object)
            hist = D.encode_histories(list(pdf["_din_hist"]), vocab, max_history)
            owner = np.repeat(np.arange(len(pdf), dtype=np.int64), sizes)
            scores = D.predict_grouped(model, hist, D.encode_ids(flat, vocab), owner, batch_size, precision=prec)
            yield pd.DataFrame({"user_id": np.repeat(pdf["user_id"].to_numpy(), sizes), "track_id": flat,
                                output_col: scores})

    log.info("DIN scoring defined (model %s, device %s, precision %s, grouped by user)", model_path, device,
             precision)
    scores = per_user.mapInPandas(_score, schema=out_schema)
    return candidates_df.join(scores, ["user_id", "track_id"], "left")
