"""Choosing settings on a validation split, through the real weekly job (never on the test users).

There is no second copy of the pipeline here: every candidate setting is a set of dotted config
overrides (what ``--set`` does), and each is scored by running the weekly job on the validation
split (:func:`recsys_spark.evaluation.weekly_path.run_weekly_path`) and reading its playlists.

Protocol:

1. :func:`validation_split`: the EVALUATION.md split applied to the *training* events of the test
   split (cut at their 90th percentile). Its truth lies before the test cutoff; no test-period
   event is seen.
2. :func:`tune_weekly`: for each named candidate ``{name: {dotted key: value}}``, one weekly run
   for the Monday on or after the validation cutoff, scored @K with per-user bootstrap intervals
   and paired intervals against the first candidate (the baseline, e.g. the shipped settings).
3. :func:`choose`: the best candidate by validation NDCG@K. Whoever ships it records the
   validation figure beside the setting (``conf/base.yaml`` comment or ``benchmarks/results``).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

from .metrics import paired_bootstrap_ci, ranking_metrics
from .split import Split, temporal_split

log = logging.getLogger(__name__)


def validation_split(split: Split, quantile: float = 0.9) -> Split:
    """The same protocol on ``split.train_events`` only (nothing at or after the test cutoff)."""
    return temporal_split(split.train_events, quantile)


def monday_on_or_after(t: dt.datetime) -> dt.date:
    """The week the weekly job builds for a cutoff ``t`` (every event before ``t`` lies before it)."""
    d = t.date() if isinstance(t, dt.datetime) else t
    if isinstance(t, dt.datetime) and t.time() != dt.time(0):
        d = d + dt.timedelta(days=1)
    return d + dt.timedelta(days=(7 - d.weekday()) % 7)


def tune_weekly(spark, cfg, dataset, split: Split, candidates: Mapping[str, Mapping[str, Any]], k: int = 30,
                n_resamples: int = 1000, seed: int = 0,
                on_candidate: Optional[Callable[[Dict[str, Any]], None]] = None,
                on_run: Optional[Callable[[str, Dict[str, Any]], Dict[str, Any]]] = None,
                steady_state: bool = True, first_run: Sequence[str] = ()) -> Dict[str, Any]:
    """Score each candidate setting with a weekly run on ``split`` (a validation split).

    Parameters
    ----------
    cfg : Config
        The shipped configuration; each candidate's overrides are applied on top of it.
    split : Split
        A validation split (:func:`validation_split`); the caller keeps the test split away.
    candidates : mapping
        ``{name: {dotted config key: value}}``; the first is the baseline of the paired intervals.
    on_candidate : callable, optional
        Called with the result so far after each candidate (e.g. to save it: a long comparison
        that dies keeps what it measured).
    on_run : callable, optional
        ``on_run(name, run)`` with the :func:`~recsys_spark.evaluation.weekly_path.run_weekly_path`
        result, right after the candidate's run (its tables still hold its week W); the dict it
        returns goes into the candidate's entry as ``"extra"`` (e.g. per-channel figures).
    steady_state : bool
        Each candidate's run first runs, with the candidate's settings, the recall stages of the
        earlier weeks its W reads (:func:`recsys_spark.pipeline.warm_up`): what a
        platform running weekly with those settings would have; their seconds count in ``seconds``.
    first_run : sequence of str
        Candidates measured as a warehouse's first run even when ``steady_state`` (e.g. a candidate
        named ``first_run`` with the baseline's settings: what steady state changes, paired).

    Candidates share one private warehouse (the split's tables written once) until a run has
    written earlier weeks' recall candidates; the next candidate then gets a new one, so no
    candidate's run sees another's earlier weeks.

    Returns
    -------
    dict
        ``{"cutoff", "week", "users", "candidates": {name: {"overrides", "recall@k", "ndcg@k",
        "..._ci95", "seconds", "stage_log", "vs_baseline": {...}}}}``.
    """
    from .weekly_path import playlists_as_recs, private_warehouse, run_weekly_path

    if not candidates:
        raise ValueError("no candidate settings to compare")
    week = monday_on_or_after(split.cutoff)
    out: Dict[str, Any] = {"cutoff": str(split.cutoff), "week": week.isoformat(), "k": k, "candidates": {}}
    per_user: Dict[str, Any] = {}
    base: Optional[str] = None
    root, coverage, warmed = None, None, False
    for name, overrides in candidates.items():
        t0 = time.perf_counter()
        if root is None or warmed:  # the split's tables, written again only after a warm-up
            root, coverage, warmed = private_warehouse("recsys-tune-"), None, False
        steady = steady_state and name not in set(first_run)
        run = run_weekly_path(spark, cfg, dataset, split, week, root=root, overrides=overrides, coverage=coverage,
                              steady_state=steady)
        coverage, warmed = run["coverage"], bool(run["warm_up"])
        recs = playlists_as_recs(run["tables"], week, split.test_users)
        m = ranking_metrics(recs, split.truth, split.test_users, k, n_resamples=n_resamples, seed=seed,
                            return_per_user=True)
        per_user[name] = m.pop("_per_user")
        m.update(overrides=dict(overrides), seconds=round(time.perf_counter() - t0, 1),
                 stage_log=run["stage_log"], data_coverage=run["coverage"], steady_state=steady,
                 warm_up=run["warm_up"])
        if on_run is not None:
            m["extra"] = on_run(name, run)
        if base is None:
            base = name
            out["users"] = len(per_user[name]["user_id"])
        else:
            e = {}
            for metric in ("recall", "ndcg"):
                a, b = per_user[name][metric], per_user[base][metric]
                e[f"{metric}@{k}_diff"] = float((a - b).mean())
                e[f"{metric}@{k}_diff_ci95"] = list(paired_bootstrap_ci(a, b, n_resamples, seed))
            m["vs_baseline"] = e
        out["candidates"][name] = m
        log.info("tuning %s: validation recall@%d %.4f ndcg@%d %.4f (%.0fs)", name, k, m[f"recall@{k}"], k,
                 m[f"ndcg@{k}"], m["seconds"])
        if on_candidate is not None:
            on_candidate(dict(out, baseline=base, complete=False))
    out["baseline"] = base
    out["chosen"] = choose(out, k)
    out["complete"] = True
    return out


def choose(result: Mapping[str, Any], k: int = 30) -> str:
    """The candidate with the best validation NDCG@K (ties: the earlier one, i.e. the baseline)."""
    best, best_v = None, None
    for name, m in result["candidates"].items():
        v = m[f"ndcg@{k}"]
        if best_v is None or v > best_v:
            best, best_v = name, v
    return best
