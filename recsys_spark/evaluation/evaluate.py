"""The library entry of the offline evaluation: :func:`evaluate`.

One split (EVALUATION.md), every requested method on it, the same metrics for all, and a report.
Methods that cannot run on the data set are skipped with their reason (``"skipped"`` in the
result), methods that crash are recorded under ``"failed"`` (the others still run).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from typing import Any, Dict, Mapping, Optional, Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from . import methods as M
from .loaders import EvalDataset
from .metrics import (DEFAULT_CURVE_KS, TruthSet, TrainStats, beyond_accuracy, funnel_metrics, local_list_metrics,
                      paired_bootstrap_ci, ranking_metrics, top_k)
from .peers import MethodUnavailable
from .split import Split, temporal_split

log = logging.getLogger(__name__)


def _resolve(methods: Optional[Sequence[str]]) -> list:
    if methods is None or list(methods) in ([], ["all"]):
        return [m for m in M.DEFAULT_ORDER if m in M.REGISTRY] + \
            sorted(m for m in M.REGISTRY if m not in M.DEFAULT_ORDER)
    names = []
    for m in methods:
        m = m.strip()
        if not m:
            continue
        if m not in M.REGISTRY:
            raise KeyError(f"unknown method {m!r}; known: {', '.join(sorted(M.REGISTRY))}")
        if m not in names:
            names.append(m)
    return names


def run_method(spark: SparkSession, name: str, split: Split, k: int, context: M.MethodContext):
    """Run one method; returns ``(recs DataFrame (cached), StagedResult or None, seconds)``.

    The seconds include fitting *and* producing the recommendations (the DataFrame is
    materialised inside the timer; Spark is lazy).
    """
    fn = M.get_method(name)
    users = split.test_users.select("user_id")
    t0 = time.perf_counter()
    out = fn(spark, split.train, users, k, context)
    staged = out if isinstance(out, M.StagedResult) else None
    recs = staged.final if staged is not None else out
    recs = recs.select("user_id", "track_id", F.col("score").cast("double"), F.col("rank").cast("int")).cache()
    n = recs.count()
    seconds = time.perf_counter() - t0
    log.info("method %s: %d recommendations in %.1fs", name, n, seconds)
    return recs, staged, seconds


def evaluate_recs(recs: DataFrame, split: Split, k: int, dataset: Optional[EvalDataset] = None,
                  curve_ks: Sequence[int] = DEFAULT_CURVE_KS, beyond: bool = True, seed: int = 0,
                  n_resamples: int = 1000, return_per_user: bool = False,
                  stats: Optional[TrainStats] = None, testset: Optional[TruthSet] = None,
                  local: Optional[bool] = None) -> Dict[str, Any]:
    """All metrics of one method's recommendations on ``split`` (see :mod:`.metrics`).

    Accuracy comes with per-user bootstrap 95% intervals (``n_resamples`` resamples of the test
    users, ``seed``). Also counts ``train_items_recommended`` (protocol violations; must be 0).
    The test users' top-``k`` is computed once and shared by every metric; ``stats``
    (:class:`~.metrics.TrainStats` of ``split.train``) is computed once per split by
    :func:`evaluate` (here when not given).

    With a small test set (``local`` None: when it fits :data:`~.metrics.LOCAL_MAX_ROWS`; True:
    required) the test users' lists are collected once and every metric is computed on the driver
    (:func:`~.metrics.local_list_metrics`, the same values); ``testset``
    (:class:`~.metrics.TruthSet`) is the split's truth collected once by :func:`evaluate`.
    """
    own_stats = beyond and stats is None
    if own_stats:
        stats = TrainStats.of(split.train)  # shared by both paths (also when the driver path declines)
    try:
        out = None
        if local is not False:
            testset = testset or TruthSet.collect(split.truth, split.test_users)
            if testset is not None:
                out = local_list_metrics(
                    recs, testset, k, curve_ks, n_resamples=n_resamples, seed=seed, return_per_user=return_per_user,
                    beyond=beyond, stats=stats, tracks=dataset.tracks if dataset is not None else None,
                    embeddings=dataset.track_embeddings if dataset is not None else None)
            if out is None and local:
                raise ValueError("the test set is too large for the metrics on the driver (local=True)")
        if out is None:
            out = _spark_metrics(recs, split, k, dataset, curve_ks, beyond, seed, n_resamples, return_per_user, stats)
    finally:
        if own_stats:
            stats.release()
    out["train_items_recommended"] = int(
        recs.join(split.train.select("user_id", "track_id"), ["user_id", "track_id"], "left_semi").count())
    return out


def _spark_metrics(recs, split, k, dataset, curve_ks, beyond, seed, n_resamples, return_per_user, stats):
    """:func:`evaluate_recs`'s metrics computed in Spark (large test sets); ``stats`` given when ``beyond``."""
    top = top_k(recs.join(split.test_users.select("user_id"), "user_id", "left_semi"), k).cache()
    try:
        out = ranking_metrics(recs, split.truth, split.test_users, k, curve_ks, n_resamples=n_resamples, seed=seed,
                              return_per_user=return_per_user, top=top)
        if beyond:
            out.update(beyond_accuracy(
                recs, split.train, k,
                embeddings=dataset.track_embeddings if dataset is not None else None,
                tracks=dataset.tracks if dataset is not None else None,
                stats=stats, top=top))
    finally:
        top.unpersist()
    return out


def paired_comparisons(per_user: Mapping[str, Mapping[str, Any]], base: str, k: int, n_resamples: int = 1000,
                       seed: int = 0) -> Dict[str, Dict[str, Any]]:
    """``{"<base> - <other>": {"ndcg@k_diff", "ndcg@k_diff_ci95", "recall@k_diff", ...}}``.

    Paired per-user bootstrap over the same test users: what a "beats" / "misses" sentence needs
    (an interval above 0 beats, below 0 misses, across 0 is a tie at this sample size).
    """
    out: Dict[str, Dict[str, Any]] = {}
    ref = per_user[base]
    for name, other in per_user.items():
        if name == base:
            continue
        if list(other["user_id"]) != list(ref["user_id"]):
            raise ValueError(f"methods {base} and {name} were scored on different users")
        e: Dict[str, Any] = {}
        for metric in ("recall", "ndcg"):
            d = ref[metric] - other[metric]
            e[f"{metric}@{k}_diff"] = float(d.mean())
            e[f"{metric}@{k}_diff_ci95"] = list(paired_bootstrap_ci(ref[metric], other[metric], n_resamples, seed))
        out[f"{base} - {name}"] = e
    return out


def evaluate(
    spark: SparkSession,
    dataset: EvalDataset,
    methods: Optional[Sequence[str]] = None,
    k: int = 30,
    out_dir: Optional[str] = None,
    params: Optional[Mapping[str, Mapping[str, Any]]] = None,
    seed: int = 0,
    quantile: float = 0.9,
    curve_ks: Sequence[int] = DEFAULT_CURVE_KS,
    beyond: bool = True,
    split: Optional[Split] = None,
    history_last_n: int = 50,
    fail_fast: bool = False,
    cfg: Any = None,
    n_resamples: int = 1000,
    run_info: Optional[Mapping[str, Any]] = None,
    steady_state: bool = True,
) -> Dict[str, Any]:
    """Evaluate ``methods`` on ``dataset`` with the protocol of EVALUATION.md.

    Parameters
    ----------
    spark : SparkSession
    dataset : EvalDataset
        From :func:`recsys_spark.evaluation.loaders.load_dataset`.
    methods : sequence of str, optional
        Registry names (:data:`recsys_spark.evaluation.methods.REGISTRY`); ``None`` = all.
    k : int
        List length (30).
    out_dir : str, optional
        Where to write ``metrics.json``, ``report.md`` and the plots; nothing written when None.
    params : mapping, optional
        ``{method: {param: value}}`` (e.g. ``{"ease": {"lambda": 300}}``).
    seed : int
        Passed to every method (deterministic results).
    quantile : float
        Cut-off quantile of the split (0.9).
    curve_ks : sequence of int
        Cut-offs of the recall curve.
    beyond : bool
        Compute coverage / novelty / diversity too.
    split : Split, optional
        A precomputed split (default: :func:`temporal_split`).
    history_last_n : int
        Seeds per user of the seed-based channels (the pipeline's 50).
    fail_fast : bool
        Re-raise a method's exception instead of recording it under ``"failed"``.
    cfg : Config, optional
        The configuration the ``pipeline`` method runs the weekly job with (the job passes the one
        it loaded: ``conf/base.yaml`` + overlay + ``--set``); ``None``: ``load_config()``. Its
        ``history`` share and half-life build the seeds of the seed-based channels too.
    n_resamples : int
        Bootstrap resamples of the test users for the 95% intervals (seeded with ``seed``).
    run_info : mapping, optional
        Stored as ``"run"`` (command line, code version, load average...); ``load_average_end``
        is added.
    steady_state : bool
        The ``pipeline`` method first runs the recall stages of the earlier weeks W's run reads, as
        on a platform that runs every Monday (:mod:`.weekly_path`); False: W's run is the
        warehouse's first.

    Returns
    -------
    dict
        ``{"dataset", "source", "k", "cutoff", "test_users", "train_users", "train_items",
        "train_pairs", "truth_pairs", "methods": {name: {"recall@k", "ndcg@k", "hit@k",
        "precision@k", "recall@k_ci95", "ndcg@k_ci95", "coverage", "diversity", "novelty",
        ["creator_diversity"], "fit_seconds", "eval_seconds", "recall_curve", ...; the pipeline's
        also "path": "weekly", "stage_log", "data_coverage", "steady_state", "warm_up"}}, "compare": {"pipeline - <m>":
        paired intervals}, "funnel": {name: [stage rows]}, "skipped": {name: reason}, "failed":
        {name: error}, "params": ...}`` (also ``out_dir/metrics.json``).
    """
    t_all = time.perf_counter()
    names = _resolve(methods)
    split = (split or temporal_split(dataset.interactions, quantile)).cache()
    stats = split.train.agg(F.countDistinct("user_id").alias("u"), F.countDistinct("track_id").alias("i"),
                            F.count(F.lit(1)).alias("n")).first()
    n_test = split.test_users.count()
    n_truth = split.truth.count()
    log.info("%s: cutoff %s, %d train users, %d train items, %d train pairs, %d test users, %d truth pairs",
             dataset.name, split.cutoff, stats["u"], stats["i"], stats["n"], n_test, n_truth)
    ctx = M.MethodContext(spark=spark, dataset=dataset, split=split, k=k,
                          params={kk: dict(v) for kk, v in (params or {}).items()}, seed=seed,
                          history_last_n=history_last_n, cfg=cfg, steady_state=steady_state,
                          **({} if cfg is None else
                             {f"history_{name}": v for name, v in cfg.history.seed_settings().items()}))
    result: Dict[str, Any] = {
        "dataset": dataset.name, "source": dataset.source, "k": k,
        "cutoff": split.cutoff.isoformat() if isinstance(split.cutoff, (dt.date, dt.datetime)) else str(split.cutoff),
        "test_users": int(n_test), "train_users": int(stats["u"]), "train_items": int(stats["i"]),
        "train_pairs": int(stats["n"]), "truth_pairs": int(n_truth),
        "methods": {}, "funnel": {}, "skipped": {}, "failed": {},
        "params": {kk: dict(v) for kk, v in (params or {}).items()},
        "seed": seed,
        "compare": {},
    }
    per_user: Dict[str, Any] = {}
    train_stats = TrainStats.of(split.train) if beyond else None
    testset = TruthSet.collect(split.truth, split.test_users)  # None: too large, the metrics stay in Spark
    for name in names:
        try:
            recs, staged, seconds = run_method(spark, name, split, k, ctx)
        except MethodUnavailable as exc:
            log.warning("method %s skipped: %s", name, exc)
            result["skipped"][name] = str(exc)
            continue
        except Exception as exc:  # noqa: BLE001 - one broken method must not hide the others
            if fail_fast:
                raise
            log.exception("method %s failed", name)
            result["failed"][name] = f"{type(exc).__name__}: {exc}"
            continue
        t0 = time.perf_counter()
        m = evaluate_recs(recs, split, k, dataset, curve_ks, beyond, seed=seed, n_resamples=n_resamples,
                          return_per_user=True, stats=train_stats, testset=testset,
                          local=None if testset is not None else False)
        per_user[name] = m.pop("_per_user")
        if staged is not None:
            m.update(staged.entry)
            result["funnel"][name] = funnel_metrics(staged.funnel_stages(), split.truth, split.test_users, k,
                                                     truthset=testset)
            if staged.notes:
                m["notes"] = staged.notes
        m["fit_seconds"] = round(seconds, 3)
        m["eval_seconds"] = round(time.perf_counter() - t0, 3)
        if m["train_items_recommended"]:
            log.error("method %s recommended %d train items (protocol violation)", name, m["train_items_recommended"])
        result["methods"][name] = m
        recs.unpersist()
    if train_stats is not None:
        train_stats.release()
    ctx.release()
    if "pipeline" in per_user:
        result["compare"] = paired_comparisons(per_user, "pipeline", k, n_resamples, seed)
    result["total_seconds"] = round(time.perf_counter() - t_all, 1)
    result["run"] = dict(run_info or {}, load_average_end=list(os.getloadavg()))
    if out_dir:
        from .report import write_report

        write_report(result, out_dir)
    return result
