"""The learned ranker: a Spark ML model over every channel's candidates, trained on what it ranks.

Training (the ``train.ranker`` stage) and serving (the ``rank`` stage) share one feature function,
:func:`candidate_features`, applied to the same kind of input: the per-channel candidates of the
recall channels as of a cutoff, their fusion, and the interactions before the cutoff.

* **Label window.** :func:`label_window` picks a Monday L before W: the fewest whole weeks before W
  holding ``label_share`` of the events before W, or ``min_label_events`` events, whichever comes
  first (a dense platform: one week; a sparse public data set: the weeks holding its last tenth,
  like the evaluation protocol's split). The recall channels are fitted on the events before L and
  asked for the users with a new positive play in [L, W); a candidate is labelled 1 when the user
  played it (weight > 0, not heard before L) in [L, W), 0 otherwise.
* **Features** (:data:`FEATURES`), all computed in Spark with joins and aggregations, nothing
  per user collected: per channel its reciprocal rank and its per-user min-max scaled score
  (0 = not retrieved), the number of channels, the fused recall score and its rank in the user's
  list; the track's listeners (all time and last 28 days, log-scaled relative to the catalog's
  most-listened track), its trend (recent share) and age; the user's history length, recent
  activity and days since the last play; the user's affinity to the candidate's creator.
* **Model.** ``gbt`` (Spark ML ``GBTClassifier``, pointwise logloss), ``logistic`` (Spark ML
  ``LogisticRegression`` on standardised features, pointwise) or ``pairwise`` (the same logistic
  regression, without intercept, on feature differences of a user's positive and negative
  candidates: the pairwise logistic loss of BPR / RankNet over each user's list; linear, so the
  model scores one candidate at a time). It is fitted on 80% of the label users and
  checked on the other 20% (hashed by user id and seed): NDCG@K of the users' candidate lists
  ordered by its blends with the fused recall score (and by the ranker alone with
  ``blend_alone``; :func:`blend_options` says why that is off by default), against the same lists
  ordered by the fused recall score. The best way to use it is chosen there, and its gain is
  cross-fitted (chosen on half of the held-out users, measured on the other half, both ways). With
  ``require_gain`` the ranker is used only when that gain is positive; the verdict is saved with
  the model and logged.
* **Scoring.** ``PipelineModel.transform`` (a Spark job; no driver collection), ``ranker_score`` =
  P(label = 1).

The model is a Spark ML ``PipelineModel`` saved under any Hadoop URI, with a JSON metadata file
(features, cutoffs, sizes, held-out NDCG, verdict).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from .. import schema as C
from ..common import read_metadata, write_metadata

log = logging.getLogger(__name__)

#: channels whose rank / score are features (a fixed list: the feature vector is the same on every
#: data set; a channel that did not run contributes zeros)
FEATURE_CHANNELS = ("popular", "item_cf", "als", "content", "prompt")
RECENT_DAYS = 28
FEATURES: Tuple[str, ...] = (
    *(f"rr_{c}" for c in FEATURE_CHANNELS), *(f"ns_{c}" for c in FEATURE_CHANNELS),
    "n_channels", "recall_score", "recall_rank_pct",
    "track_pop", "track_pop_recent", "track_trend", "track_age_log",
    "user_hist_log", "user_recent_log", "user_idle_log", "creator_affinity",
)
MODELS = ("gbt", "logistic", "pairwise")


def label_window(weekly_counts: Sequence[Tuple[dt.date, int]], week: dt.date, label_share: float,
                 min_label_events: int, max_label_weeks: int) -> Optional[dt.date]:
    """The label cutoff L (a Monday before ``week``), or None when there is no earlier history.

    ``weekly_counts``: ``(monday, events)`` of the weeks before ``week``. L is ``week`` minus the
    fewest whole weeks (at most ``max_label_weeks``) holding ``label_share`` of all those events or
    ``min_label_events`` events; some events must remain before L."""
    counts = {w: int(n) for w, n in weekly_counts if w < week and n > 0}
    total = sum(counts.values())
    if total == 0:
        return None
    target = min(label_share * total, float(min_label_events))
    acc, cut = 0, None
    for k in range(1, max_label_weeks + 1):
        cut = week - dt.timedelta(weeks=k)
        acc += counts.get(cut, 0)
        if acc >= target:
            break
    before = sum(n for w, n in counts.items() if w < cut)
    return cut if before > 0 and acc > 0 else None


def weekly_event_counts(interactions: DataFrame) -> List[Tuple[dt.date, int]]:
    """``(monday, events)`` per week of ``interactions`` (one row per week reaches the driver)."""
    rows = (interactions.groupBy(F.to_date(F.date_trunc("week", C.TS)).alias("w")).count().collect())
    return [(r["w"], int(r["count"])) for r in rows]


def candidate_features(recall: DataFrame, fused: DataFrame, interactions: DataFrame,
                       tracks: Optional[DataFrame], as_of: dt.date) -> DataFrame:
    """The ranker's features of every fused candidate (see the module doc), as of ``as_of``.

    Parameters
    ----------
    recall : DataFrame
        ``user_id, track_id, channel, score, rank``: the channels' candidates.
    fused : DataFrame
        ``user_id, track_id, recall_score`` (and any other columns, kept): one row per candidate.
    interactions : DataFrame
        The interactions contract, only events before ``as_of``.
    tracks : DataFrame, optional
        ``track_id, creator_id`` (creator affinity; 0 without it).

    Returns
    -------
    DataFrame
        ``fused``'s columns plus every column of :data:`FEATURES` (double, never null).
    """
    end = dt.datetime.combine(as_of, dt.time())
    recent = end - dt.timedelta(days=RECENT_DAYS)
    uc = Window.partitionBy(C.USER, C.CHANNEL)
    lo, hi = F.min(C.SCORE).over(uc), F.max(C.SCORE).over(uc)
    per = recall.select(C.USER, C.TRACK, C.CHANNEL, (1.0 / F.col(C.RANK).cast("double")).alias("rr"),
                        F.when(hi > lo, (F.col(C.SCORE) - lo) / (hi - lo)).otherwise(F.lit(1.0)).alias("ns"))
    aggs = []
    for c in FEATURE_CHANNELS:
        aggs += [F.max(F.when(F.col(C.CHANNEL) == c, F.col("rr"))).alias(f"rr_{c}"),
                 F.max(F.when(F.col(C.CHANNEL) == c, F.col("ns"))).alias(f"ns_{c}")]
    chan = per.groupBy(C.USER, C.TRACK).agg(*aggs, F.countDistinct(C.CHANNEL).cast("double").alias("n_channels"))

    pos = interactions.where(F.col(C.WEIGHT) > 0)
    ts = (pos.groupBy(C.TRACK).agg(F.countDistinct(C.USER).alias("_n"),
                                   F.countDistinct(F.when(F.col(C.TS) >= F.lit(recent), F.col(C.USER))).alias("_nr"),
                                   F.min(C.TS).alias("_first")))
    mx = ts.agg(F.max("_n").alias("_mn"), F.max("_nr").alias("_mr"))
    ts = ts.crossJoin(F.broadcast(mx)).select(
        C.TRACK,
        (F.log1p("_n") / F.greatest(F.log1p("_mn"), F.lit(1e-9))).alias("track_pop"),
        (F.log1p("_nr") / F.greatest(F.log1p("_mr"), F.lit(1e-9))).alias("track_pop_recent"),
        (F.col("_nr") / F.greatest(F.col("_n"), F.lit(1))).alias("track_trend"),
        F.log1p(F.greatest((F.lit(end).cast("long") - F.col("_first").cast("long")) / 86400.0, F.lit(0.0)))
        .alias("track_age_log"))
    us = (interactions.groupBy(C.USER).agg(
        F.countDistinct(C.TRACK).alias("_h"), F.sum(F.when(F.col(C.TS) >= F.lit(recent), 1).otherwise(0)).alias("_r"),
        F.max(C.TS).alias("_last"))
        .select(C.USER, F.log1p("_h").alias("user_hist_log"), F.log1p("_r").alias("user_recent_log"),
                F.log1p(F.greatest((F.lit(end).cast("long") - F.col("_last").cast("long")) / 86400.0, F.lit(0.0)))
                .alias("user_idle_log")))

    out = fused.join(chan, [C.USER, C.TRACK], "left")
    uw = Window.partitionBy(C.USER).orderBy(F.col("recall_score").desc(), F.col(C.TRACK))
    out = out.withColumn("recall_rank_pct", F.percent_rank().over(uw))
    out = out.join(ts, C.TRACK, "left").join(us, C.USER, "left")
    if tracks is not None and "creator_id" in tracks.columns:
        tc = tracks.select(C.TRACK, "creator_id").where(F.col("creator_id").isNotNull()).dropDuplicates([C.TRACK])
        heard = pos.select(C.USER, C.TRACK).distinct().join(tc, C.TRACK)
        aff = heard.groupBy(C.USER, "creator_id").agg(F.count(F.lit(1)).alias("_c"))
        tot = heard.groupBy(C.USER).agg(F.count(F.lit(1)).alias("_t"))
        aff = aff.join(tot, C.USER).select(C.USER, "creator_id", (F.col("_c") / F.col("_t")).alias("creator_affinity"))
        out = out.join(tc, C.TRACK, "left").join(aff, [C.USER, "creator_id"], "left").drop("creator_id")
    else:
        out = out.withColumn("creator_affinity", F.lit(0.0))
    return out.fillna(0.0, subset=list(FEATURES)).select(
        *[c for c in out.columns if c not in FEATURES], *[F.col(f).cast("double").alias(f) for f in FEATURES])


def _estimator(model: str, max_iter: int, max_depth: int, step_size: float, reg_param: float, seed: int):
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import GBTClassifier, LogisticRegression
    from pyspark.ml.feature import StandardScaler, VectorAssembler

    if model not in MODELS:
        raise ValueError(f"ranker model must be one of {MODELS}, got {model!r}")
    va = VectorAssembler(inputCols=list(FEATURES), outputCol="_x", handleInvalid="keep")
    if model == "gbt":
        clf = GBTClassifier(featuresCol="_x", labelCol="label", maxIter=max_iter, maxDepth=max_depth,
                            stepSize=step_size, subsamplingRate=0.8, seed=seed, predictionCol="_pred")
        clf.setProbabilityCol("_p").setRawPredictionCol("_raw")
        return Pipeline(stages=[va, clf])
    # pairwise: fitted on feature differences (pairwise_frame), applied to one candidate's features;
    # without centring or intercept w.(x_a - x_b) = w.x_a - w.x_b, so the score orders a user's list
    pairwise = model == "pairwise"
    sc = StandardScaler(inputCol="_x", outputCol="_xs", withMean=not pairwise, withStd=True)
    clf = LogisticRegression(featuresCol="_xs", labelCol="label", maxIter=max(max_iter, 50), regParam=reg_param,
                             predictionCol="_pred", fitIntercept=not pairwise)
    clf.setProbabilityCol("_p").setRawPredictionCol("_raw")
    return Pipeline(stages=[va, sc, clf])


def pairwise_frame(df: DataFrame, negatives_per_positive: int, seed: int = 0) -> DataFrame:
    """Pairs for a pairwise (BPR / RankNet-style logistic) loss: each positive of a user against up
    to ``negatives_per_positive`` of the same user's negatives (the first by a hash of user, track
    and ``seed``: deterministic, uniform). A row holds the :data:`FEATURES` difference and
    ``label``: ``positive - negative`` with label 1 or, for half of the pairs (by hash),
    ``negative - positive`` with label 0, so that a logistic regression without intercept on these
    rows minimises the pairwise logistic loss of the users' lists."""
    h = F.xxhash64(F.col(C.USER), F.col(C.TRACK), F.lit(int(seed) + 3))
    neg = (df.where(F.col("label") <= 0)
           .withColumn("_k", F.row_number().over(Window.partitionBy(C.USER).orderBy(h, F.col(C.TRACK))))
           .where(F.col("_k") <= int(negatives_per_positive)))
    p = df.where(F.col("label") > 0).select(C.USER, F.col(C.TRACK).alias("_pt"), *[F.col(f).alias(f"_p_{f}") for f in FEATURES])
    n = neg.select(C.USER, F.col(C.TRACK).alias("_nt"), *[F.col(f).alias(f"_n_{f}") for f in FEATURES])
    flip = (F.abs(F.xxhash64(F.col(C.USER), F.col("_pt"), F.col("_nt"), F.lit(int(seed) + 4))) % 2) == 1
    sign = F.when(flip, F.lit(-1.0)).otherwise(F.lit(1.0))
    return p.join(n, C.USER).select(
        C.USER, "_pt", "_nt", *[(sign * (F.col(f"_p_{f}") - F.col(f"_n_{f}"))).alias(f) for f in FEATURES],
        F.when(flip, F.lit(0.0)).otherwise(F.lit(1.0)).alias("label"))


def score(model, df: DataFrame, out_col: str = "ranker_score") -> DataFrame:
    """``df`` (with :data:`FEATURES`) plus ``out_col`` = the model's P(label = 1)."""
    from pyspark.ml.functions import vector_to_array

    drop = [c for c in ("_x", "_xs", "_p", "_raw", "_pred") if c]
    scored = model.transform(df).withColumn(out_col, vector_to_array(F.col("_p"))[1].cast("double"))
    return scored.drop(*[c for c in drop if c in scored.columns])


def _user_ndcg(df: DataFrame, score_col: str, k: int) -> DataFrame:
    """``user_id, _n``: NDCG@k of each user's candidates ordered by ``score_col`` (ties by
    ``track_id``) against ``label``, for users with a positive; ideal DCG over min(k, positives)."""
    w = Window.partitionBy(C.USER).orderBy(F.col(score_col).desc(), F.col(C.TRACK))
    r = df.select(C.USER, C.TRACK, "label", F.row_number().over(w).alias("_r")).where(F.col("_r") <= k)
    dcg = r.groupBy(C.USER).agg(F.sum(F.col("label") / F.log2(F.col("_r") + 1.0)).alias("_dcg"))
    npos = df.groupBy(C.USER).agg(F.sum("label").alias("_np")).where(F.col("_np") > 0)
    idcg = F.aggregate(F.sequence(F.lit(1), F.least(F.col("_np").cast("int"), F.lit(k))), F.lit(0.0),
                       lambda acc, i: acc + 1.0 / F.log2(i + 1.0))
    return npos.join(dcg, C.USER, "left").select(C.USER, (F.coalesce("_dcg", F.lit(0.0)) / idcg).alias("_n"))


def list_ndcg(df: DataFrame, score_col: str, k: int) -> Tuple[float, int]:
    """Mean NDCG@k of each user's candidates ordered by ``score_col`` (ties by ``track_id``) against
    ``label``, over users with a positive; ideal DCG over min(k, positives among the candidates).
    Returns ``(ndcg, users)`` (two numbers reach the driver)."""
    row = _user_ndcg(df, score_col, k).agg(F.avg("_n").alias("m"), F.count(F.lit(1)).alias("n")).first()
    return (float(row["m"] or 0.0), int(row["n"] or 0))


def blend_options(blend_weights: Sequence[float], alone: bool = True) -> List[Tuple[str, float, float]]:
    """``(name, recall_weight, ranker_weight)`` of the ways to use the ranker: blended with the fused
    recall score at each of ``blend_weights`` (the ranker's weight, the recall score's being 1; both
    put on one per-user scale by :func:`~recsys_spark.ranking.fusion.final_score`), and alone when
    ``alone`` (or when no blend weight is positive).

    The rank stage adds the DIN to whichever is chosen, which the held-out check cannot see (the
    DIN of W has trained on the label window's plays): on the synthetic platform's validation split
    the ranker alone won that check by .0003 and lost .0135 NDCG@30 in the playlists, the loss arising
    where the DIN joins it (read from the funnel: the DIN's spread-out scaled score reorders the
    ranker's probabilities, squeezed near 0 for most candidates); blended with the recall score it did not (``benchmarks/README.md``, learned ranker)."""
    opts = [(f"blend_{float(w):g}", 1.0, float(w)) for w in blend_weights if w > 0]
    return opts + [("ranker", 0.0, 1.0)] if alone or not opts else opts


def choose_blend(scored: DataFrame, options: Sequence[Tuple[str, float, float]], k: int,
                 seed: int = 0, scale: str = "minmax", rrf_k: float = 60.0) -> Dict[str, Any]:
    """Pick how to use the ranker on held-out users, and measure that choice honestly.

    ``scored`` holds the held-out users' candidates with ``label``, ``recall_score`` and
    ``ranker_score``. Every option of :func:`blend_options` is scored with the rank stage's blend
    (:func:`~recsys_spark.ranking.fusion.final_score` with the same ``scale`` and ``rrf_k``; NDCG@k per user in Spark;
    sums per option and fold reach the driver). The option with the best mean NDCG over all held-out
    users is chosen (ties: the earlier option). Because choosing on the users that measure the
    choice flatters it, the gain is cross-fitted: the users are split in two folds by hash, the
    option is chosen on one fold and scored on the other, both ways.

    Returns
    -------
    dict
        ``holdout_options@k`` (mean NDCG per option), ``blend`` (chosen option),
        ``blend_recall_weight``, ``blend_ranker_weight``, ``holdout_crossfit_ndcg@k`` (None when a
        fold is empty).
    """
    from functools import reduce

    from .fusion import final_score

    base = scored.select(C.USER, C.TRACK, "label", "recall_score", "ranker_score")
    parts = []
    for name, wr, wk in options:
        b = final_score(base, din_weight=0.0, recall_weight=wr, quality_weight=0.0, ranker_weight=wk, scale=scale,
                        rrf_k=rrf_k)
        parts.append(_user_ndcg(b, "final_score", k).withColumn("_opt", F.lit(name)))
    fold = (F.abs(F.xxhash64(F.col(C.USER), F.lit(int(seed) + 2))) % 2).cast("int")
    rows = (reduce(lambda a, b: a.unionByName(b), parts).withColumn("_fold", fold)
            .groupBy("_opt", "_fold").agg(F.sum("_n").alias("s"), F.count(F.lit(1)).alias("n")).collect())
    s = {(r["_opt"], int(r["_fold"])): float(r["s"] or 0.0) for r in rows}
    n = {(r["_opt"], int(r["_fold"])): int(r["n"]) for r in rows}
    names = [o[0] for o in options]
    users = [max((n.get((o, f), 0) for o in names), default=0) for f in (0, 1)]

    def best(folds):
        tot = sum(users[f] for f in folds)
        means = {o: sum(s.get((o, f), 0.0) for f in folds) / tot if tot else 0.0 for o in names}
        return max(names, key=lambda o: (means[o], -names.index(o))), means

    chosen, means = best((0, 1))
    crossfit = None
    if min(users) > 0:
        crossfit = sum(s.get((best((1 - f,))[0], f), 0.0) for f in (0, 1)) / float(sum(users))
    opt = dict((o[0], o) for o in options)[chosen]
    return {f"holdout_options@{k}": means, "blend": chosen, "blend_recall_weight": opt[1],
            "blend_ranker_weight": opt[2], f"holdout_crossfit_ndcg@{k}": crossfit}


def fit_ranker(train: DataFrame, model: str = "logistic", max_iter: int = 60, max_depth: int = 5,
               step_size: float = 0.1, reg_param: float = 0.01, seed: int = 0, holdout_share: float = 0.2,
               k: int = 30, max_rows: int = 2_000_000,
               blend_weights: Sequence[float] = (0.5, 1.0, 2.0),
               pair_negatives: int = 50, scale: str = "minmax", rrf_k: float = 60.0,
               blend_alone: bool = True) -> Tuple[Any, Dict[str, Any]]:
    """Fit the ranker on ``train`` (``user_id, track_id, label`` and :data:`FEATURES`).

    Users are split by a hash of ``user_id`` and ``seed``: ``holdout_share`` of them are held out.
    Negatives of the fitting users are sampled (deterministically) so that at most ``max_rows``
    rows are fitted on; the held-out users keep every candidate.

    On the held-out users, :func:`choose_blend` picks how the ranker is used (blended with the fused
    recall score at one of ``blend_weights``, or alone when ``blend_alone``; ``scale`` / ``rrf_k``: the rank stage's
    :func:`~recsys_spark.ranking.fusion.final_score` scale) and measures that choice cross-fitted.

    Returns
    -------
    (PipelineModel, dict)
        The model and its report: rows, positives, held-out users, held-out NDCG@k of the ranker
        alone, of the fused recall order, of each way to use the ranker, the chosen one and its
        cross-fitted NDCG@k.
    """
    bucket = (F.abs(F.xxhash64(F.col(C.USER), F.lit(int(seed)))) % 1000) / 1000.0
    df = train.withColumn("_hold", bucket < F.lit(float(holdout_share))).withColumn("label", F.col("label").cast("double"))
    stats = df.groupBy("_hold").agg(F.count(F.lit(1)).alias("n"), F.sum("label").alias("p")).collect()
    by = {bool(r["_hold"]): (int(r["n"]), int(r["p"] or 0)) for r in stats}
    n_fit, p_fit = by.get(False, (0, 0))
    fit = df.where(~F.col("_hold"))
    if n_fit > max_rows and n_fit > p_fit:
        rate = max(0.0, (max_rows - p_fit) / float(n_fit - p_fit))
        keep = (F.abs(F.xxhash64(F.col(C.USER), F.col(C.TRACK), F.lit(int(seed) + 1))) % 100000) / 100000.0
        fit = fit.where((F.col("label") > 0) | (keep < F.lit(rate)))
    pipe = _estimator(model, max_iter, max_depth, step_size, reg_param, seed)
    if model == "pairwise":  # every fitting user's candidates, as pairs (the row cap bounds the pairs)
        fit = pairwise_frame(df.where(~F.col("_hold")), pair_negatives, seed)
        fit = fit.where((F.abs(F.xxhash64("_pt", "_nt", F.lit(int(seed) + 5))) % 100000) / 100000.0
                        < F.lit(min(1.0, max_rows / float(max(1, p_fit * pair_negatives)))))
    fitted = pipe.fit(fit.drop("_hold"))
    report: Dict[str, Any] = {"model": model, "rows": n_fit, "positives": p_fit,
                              "holdout_rows": by.get(True, (0, 0))[0], "holdout_positives": by.get(True, (0, 0))[1],
                              "feature_weights": feature_weights(fitted)}
    hold = df.where(F.col("_hold"))
    if report["holdout_positives"] > 0:
        scored = score(fitted, hold)
        report[f"holdout_ndcg@{k}"], report["holdout_users"] = list_ndcg(scored, "ranker_score", k)
        report[f"holdout_fusion_ndcg@{k}"], _ = list_ndcg(hold, "recall_score", k)
        report.update(choose_blend(scored, blend_options(blend_weights, blend_alone), k, seed, scale=scale, rrf_k=rrf_k))
    return fitted, report


def feature_weights(fitted) -> Dict[str, float]:
    """What the fitted ranker leans on, per feature of :data:`FEATURES`, largest first: the GBT's
    ``featureImportances`` (sum 1), or the logistic regression's coefficients on standardised
    features (signed: a unit is one standard deviation of the feature)."""
    clf = fitted.stages[-1]
    vals = clf.featureImportances.toArray() if hasattr(clf, "featureImportances") else clf.coefficients.toArray()
    pairs = sorted(zip(FEATURES, (float(v) for v in vals)), key=lambda p: (-abs(p[1]), p[0]))
    return {f: round(v, 5) for f, v in pairs}


def save_ranker(spark: SparkSession, model, path: str, meta: Dict[str, Any]) -> None:
    """Write the PipelineModel under ``path/model`` and ``meta`` under ``path/metadata``."""
    p = path.rstrip("/")
    model.write().overwrite().save(f"{p}/model")
    write_metadata(spark, f"{p}/metadata", {**meta, "features": list(FEATURES)})


def load_ranker(spark: SparkSession, path: str) -> Tuple[Any, Dict[str, Any]]:
    """The PipelineModel and metadata written by :func:`save_ranker` (refuses other features)."""
    from pyspark.ml import PipelineModel

    p = path.rstrip("/")
    meta = read_metadata(spark, f"{p}/metadata")
    if list(meta.get("features") or []) != list(FEATURES):
        raise ValueError(f"ranker at {p} was trained on other features: {meta.get('features')}")
    return PipelineModel.load(f"{p}/model"), meta


def ranker_gain(meta: Dict[str, Any], k: int = 30) -> Optional[float]:
    """Held-out NDCG@k of the chosen way to use the ranker (cross-fitted; when the held-out users
    were too few to split, that option's own held-out NDCG, else the ranker alone's) minus that of
    the fused order (None when not measured)."""
    a = meta.get(f"holdout_crossfit_ndcg@{k}")
    if a is None:
        a = (meta.get(f"holdout_options@{k}") or {}).get(meta.get("blend"), meta.get(f"holdout_ndcg@{k}"))
    b = meta.get(f"holdout_fusion_ndcg@{k}")
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
        return None
    return float(a) - float(b)
