"""Benchmark "two_tower": the content channel's trained two-tower against the raw-embedding similarity
channel, through the shipped weekly path, on a synthetic platform with audio for every track.

    # the platform: generate it with audio for every track, then one weekly run embeds the audio
    python jobs/generate.py --root R --set generator.n_tracks=500 --set generator.audio_tracks=500 \\
        --set generator.n_creators=100 --set generator.seed=11 --week 2026-11-30 --overwrite
    python jobs/weekly.py --root R (same --set) --week 2026-11-30
    # the comparison (validation split first, then the test split)
    python benchmarks/run.py --suite two_tower --root R   # or benchmarks/suite_two_tower.py --root R [--out F]
    # ... with the shipped creator pooling (mean) instead of attention in both (no pooling comparison)
    python benchmarks/suite_two_tower.py --root R --pooling shipped --out ...
    # cold start with the cold-item protocol
    python benchmarks/suite_two_tower.py --root R --cold-share 0.1 --out benchmarks/results/content_two_tower_cold.json
    # the fresh share open to unplayed tracks of any age (rerank.fresh_unplayed), same protocol
    python benchmarks/suite_two_tower.py --root R --cold-share 0.1 --candidates unplayed --out ...
    # each user's best fresh candidates past the rank stage's and the re-ranking's cuts (rerank.fresh_lane)
    python benchmarks/suite_two_tower.py --root R --cold-share 0.1 --candidates lane --out ...
    # prompt-only new users with the cold-user protocol, both prompt-channel targets
    python benchmarks/suite_two_tower.py --root R --cold-users 0.1 --candidates prompt --out ...
    # ... and the prompt channel's fusion weight for them (fusion.cold_user_channel_weights) or for everyone
    python benchmarks/suite_two_tower.py --root R --cold-users 0.2 --candidates newusers --out ...

For each split (EVALUATION.md's temporal split of the platform's interactions, and the validation
split cut from its training part) the weekly job runs twice on the same materialised tables
(:func:`recsys_spark.evaluation.tuning.tune_weekly`): ``recall.content.model=similarity`` and
``=two_tower``, everything else as shipped (``conf/base.yaml`` + the local overlay). From each run's
own tables:

* per channel, recall@30 of its top 30 ``recall_candidates`` over the test users (95% bootstrap
  intervals over users), and the share of the playlists' hits each channel retrieved;
* cold start: the same over the truth pairs whose track is in the run's catalogue (created before
  the cutoff) but has no training interaction at all (users with at least one such pair), for the
  content and the popularity channel, and the final playlists' recall of it; and for the test
  users with no training interaction (new users: prompts are all they have), the prompt and the
  popularity channel. On the platform the generator plays new tracks within days, so a split holds
  few cold pairs (21 in the validation week, none in the test week); ``--cold-share 0.1`` applies
  the cold-item protocol (:func:`cold_holdout`: a seeded 10% of the catalogue loses its training
  plays and its counts in each split; ``--cold-new-days 7`` also makes them the last week's
  uploads) for hundreds; the generator's prompt-only users never listen, so no split holds one:
  ``--cold-users 0.1`` applies the cold-user protocol (:func:`cold_user_holdout`: a seeded 10% of
  the test users who wrote prompts loses its training plays) and reports their prompt and popular
  channels' and playlists' recall (``--candidates prompt`` compares the prompt channel's targets);
* the playlists' recall@30 / NDCG@30 and the paired interval of two_tower minus similarity;
* what fills the playlists' slots (:func:`fresh_slot_figures`): new uploads (the ``rerank.fresh_days``
  before W), older tracks nobody played, played tracks: slots, hits, hit rate per slot with its
  interval, and the channels that retrieved the fresh ones (``--candidates shipped``: the shipped
  configuration alone, for these figures without a comparison);
* the creator aggregation's attention vs mean pooling AUC on its held-out week (stage log; every
  candidate runs ``aggregation.method=attention`` for it, so the playlists' diversity rule uses
  attention-pooled creator vectors: ``--pooling shipped`` keeps the configuration's pooling instead);
* the two-tower's own verdict (held-out recall of the tower vs the raw embeddings, served or not).

Writes the JSON after each run (``"complete": false`` until the end).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

K = 30
# aggregation.method=attention in both: the creator stage then trains attention pooling and reports
# attention vs mean AUC on its held-out week (the shipped default, mean, trains nothing); creator
# vectors only feed the playlist's diversity rule, the same way in both candidates
CANDIDATES = {"similarity": {"recall.content.model": "similarity", "aggregation.method": "attention"},
              "two_tower": {"recall.content.model": "two_tower", "aggregation.method": "attention"}}
# the shipped configuration alone (with --pooling shipped): what fills its playlists (--candidates shipped)
SHIPPED = {"two_tower": CANDIDATES["two_tower"]}
# the track tower with the catalogue's 64 most common style tags beside the audio (--candidates tags)
TAGS = {"two_tower": CANDIDATES["two_tower"],
        "two_tower_tags": {**CANDIDATES["two_tower"], "recall.content.tower_tags": 64}}
# the fresh share also open to tracks nobody played before W, whatever their age (--candidates unplayed)
UNPLAYED = {"two_tower": {**CANDIDATES["two_tower"], "rerank.fresh_unplayed": False},
            "two_tower_unplayed_fresh": {**CANDIDATES["two_tower"], "rerank.fresh_unplayed": True}}
# each user's 10 best fresh candidates past the pre-rank and max_candidates cuts (--candidates lane)
LANE = {"two_tower": {**CANDIDATES["two_tower"], "rerank.fresh_lane": 0},
        "two_tower_fresh_lane": {**CANDIDATES["two_tower"], "rerank.fresh_lane": 10}}
# the prompt channel's target: the tracks' audio (shipped) or the text of the tracks' own prompts
# (explicit in both: the local overlay ships track_prompt while CLAP is untrained, the base audio)
PROMPT = {"two_tower_prompt_audio": {**CANDIDATES["two_tower"], "recall.prompt.target": "audio"},
          "two_tower": {**CANDIDATES["two_tower"], "recall.prompt.target": "track_prompt"}}

# users no history channel reached (new users) weigh the prompt channel 1.0 instead of 0.5 (the popular
# pool's 0.5 stays: their prompt candidates come first), and everyone does (--candidates newusers)
NEWUSERS = {"two_tower": {**CANDIDATES["two_tower"], "fusion.cold_user_channel_weights": {}},
            "two_tower_cold_prompt_1": {**CANDIDATES["two_tower"], "fusion.cold_user_channel_weights": {"prompt": 1.0}},
            "two_tower_prompt_1": {**CANDIDATES["two_tower"], "fusion.cold_user_channel_weights": {},
                                   "fusion.channel_weights.prompt": 1.0}}


def _metric(m, k=K):
    return {"value": round(m[f"recall@{k}"], 6), "ci95": [round(x, 6) for x in m[f"recall@{k}_ci95"]],
            "users": m.get("users_with_truth", m.get("users"))}


def _recall_entry(m, k=K):
    """``{"recall@30", "recall@30_ci95"}`` of one :func:`ranking_metrics` result, rounded."""
    return {"recall@30": round(m[f"recall@{k}"], 6), "recall@30_ci95": [round(x, 6) for x in m[f"recall@{k}_ci95"]]}


def channel_figures(spark, run, split, played, k=K):
    """Per-channel recall@k (all truth, cold truth), hit shares and stage counts of one weekly run."""
    from pyspark.sql import functions as F

    from recsys_spark.evaluation.metrics import ranking_metrics
    from recsys_spark.evaluation.weekly_path import playlists_as_recs

    tables, week = run["tables"], run["result"].week
    rc = tables.read("recall_candidates").where(F.col("week_start") == F.lit(week)).cache()
    truth = split.truth
    # cold tracks: in the run's own catalogue (created before the cutoff) and never played before it
    cold_tracks = tables.read("tracks").select("track_id").distinct().join(played, "track_id", "left_anti")
    cold_truth = truth.join(cold_tracks, "track_id", "left_semi").cache()
    cold_users = cold_truth.groupBy("user_id").agg(F.count(F.lit(1)).alias("n_truth")).cache()
    out = {"channels": {}, "cold": {}, "cold_truth_pairs": cold_truth.count(), "cold_users": cold_users.count()}
    for ch in [r[0] for r in rc.select("channel").distinct().orderBy("channel").collect()]:
        recs = rc.where(F.col("channel") == ch).select("user_id", "track_id", "rank")
        m = ranking_metrics(recs, truth, split.test_users, k)
        out["channels"][ch] = {**_recall_entry(m, k), "users_with_recs": m["users_with_recs"]}
        if out["cold_users"]:
            c = ranking_metrics(recs, cold_truth, cold_users, k)
            out["cold"][ch] = _recall_entry(c, k)
    if out["cold_users"]:  # what the users received: the playlists' recall@k of the cold truth
        c = ranking_metrics(playlists_as_recs(tables, week, cold_users), cold_truth, cold_users, k)
        placed = playlists_as_recs(tables, week).join(cold_tracks, "track_id", "left_semi").count()
        out["cold_playlists"] = {**_recall_entry(c, k), "cold_tracks_in_playlists": placed}
    # prompt-only new users: test users with no training interaction (their prompts are all they have)
    new_users = split.test_users.join(split.train_events.select("user_id").distinct(), "user_id", "left_anti")
    out["new_users"] = new_users.count()
    out["new_users_channels"] = {}
    if out["new_users"]:
        for ch in ("prompt", "popular"):
            recs = rc.where(F.col("channel") == ch).select("user_id", "track_id", "rank")
            m = ranking_metrics(recs, truth, new_users, k)
            out["new_users_channels"][ch] = {**_recall_entry(m, k), "users_with_recs": m["users_with_recs"]}
        m = ranking_metrics(playlists_as_recs(tables, week, new_users), truth, new_users, k)  # what they received
        out["new_users_playlists"] = {**_recall_entry(m, k), f"ndcg@{k}": round(m[f"ndcg@{k}"], 6),
                                      f"ndcg@{k}_ci95": [round(x, 6) for x in m[f"ndcg@{k}_ci95"]]}
    hits = playlists_as_recs(tables, week, split.test_users).join(truth, ["user_id", "track_id"], "left_semi")
    n_hits = hits.count()
    by = (hits.join(rc.select("user_id", "track_id", "channel"), ["user_id", "track_id"])
          .groupBy("channel").agg(F.count(F.lit(1)).alias("n")).collect())
    out["playlist_hits"] = n_hits
    out["hit_share"] = {r["channel"]: round(r["n"] / max(n_hits, 1), 4) for r in by}
    out["fresh_slots"] = fresh_slot_figures(tables, week, split, played, run["cfg"].rerank.fresh_days, rc)
    stages = {s["stage"]: s for s in run["stage_log"]}
    out["content_stage"] = {k2: stages.get("recall.content", {}).get(k2) for k2 in ("status", "message", "counts")}
    out["creator_stage"] = {k2: stages.get("aggregate.creators", {}).get(k2) for k2 in ("status", "message", "counts")}
    rc.unpersist()
    cold_truth.unpersist()
    cold_users.unpersist()
    return out


FRESH_KINDS = ("new", "unplayed", "played")


def fresh_slot_figures(tables, week, split, played, fresh_days, rc=None, n_resamples=1000, seed=0):
    """What fills the test users' playlist slots, by kind of track: ``new`` (created in the
    ``fresh_days`` before W), ``unplayed`` (older, nobody played it before the cutoff; the fresh share
    counts both as fresh with ``rerank.fresh_unplayed``), ``played`` (the rest). Per kind: slots, share
    of the slots, hits (truth pairs), share of the hits, and the hit rate of a slot of that kind (per
    user with such a slot, averaged, 95% bootstrap interval over those users); with ``rc`` (that week's
    ``recall_candidates``) the channels that retrieved the fresh slots (a slot retrieved by two channels
    counts for both; ``none``: no channel, e.g. a back-fill)."""
    from pyspark.sql import functions as F

    from recsys_spark.evaluation.metrics import bootstrap_ci
    from recsys_spark.evaluation.weekly_path import playlists_as_recs
    from recsys_spark.rerank.rules import fresh_tracks

    # the fresh share's own rule (rerank.rules.fresh_tracks): by date only (new), and by date or no play
    catalogue = tables.read("tracks")
    new = fresh_tracks(catalogue, week, fresh_days).distinct().withColumn("_new", F.lit(True))
    fresh = fresh_tracks(catalogue, week, fresh_days, played).distinct().withColumn("_fresh", F.lit(True))
    kinds = (catalogue.select("track_id").distinct().join(new, "track_id", "left").join(fresh, "track_id", "left")
             .select("track_id", F.when(F.col("_new"), "new").when(F.col("_fresh"), "unplayed")
                     .otherwise("played").alias("kind")))
    truth = split.truth.select("user_id", "track_id").distinct().withColumn("_hit", F.lit(1))
    slots = (playlists_as_recs(tables, week, split.test_users).select("user_id", "track_id")
             .join(kinds, "track_id", "left").withColumn("kind", F.coalesce(F.col("kind"), F.lit("played")))
             .join(truth, ["user_id", "track_id"], "left").withColumn("_hit", F.coalesce(F.col("_hit"), F.lit(0)))
             .cache())
    # one row per (test user, kind): as many as ranking_metrics' per-user vectors, for the bootstrap
    per_user = (slots.groupBy("user_id", "kind").agg(F.count(F.lit(1)).alias("n"), F.sum("_hit").alias("hits"))
                .toPandas())
    n_slots, n_hits = int(per_user["n"].sum()), int(per_user["hits"].sum())
    out = {"fresh_days": fresh_days, "slots": n_slots, "hits": n_hits,
           "playlists": int(per_user["user_id"].nunique()), "kinds": {}}
    for kind in FRESH_KINDS:
        k = per_user[per_user["kind"] == kind]
        entry = {"slots": int(k["n"].sum()), "slot_share": round(float(k["n"].sum()) / max(n_slots, 1), 4),
                 "hits": int(k["hits"].sum()), "hit_share": round(float(k["hits"].sum()) / max(n_hits, 1), 4),
                 "users": int(len(k))}
        if len(k):
            rate = (k["hits"] / k["n"]).to_numpy()
            entry["hit_rate"] = round(float(rate.mean()), 6)
            entry["hit_rate_ci95"] = [round(float(x), 6) for x in bootstrap_ci(rate, n_resamples, seed)]
        out["kinds"][kind] = entry
    if rc is not None:
        fresh = slots.where(F.col("kind").isin("new", "unplayed"))
        by = (fresh.join(rc.select("user_id", "track_id", "channel").distinct(), ["user_id", "track_id"], "left")
              .withColumn("channel", F.coalesce(F.col("channel"), F.lit("none")))
              .groupBy("kind", "channel").agg(F.count(F.lit(1)).alias("n"), F.sum("_hit").alias("hits")).collect())
        out["fresh_slot_channels"] = {kind: {r["channel"]: {"slots": int(r["n"]), "hits": int(r["hits"])}
                                             for r in sorted(by, key=lambda r: r["channel"]) if r["kind"] == kind}
                                      for kind in ("new", "unplayed")}
    slots.unpersist()
    return out


def cold_user_holdout(ds, split, share, seed=0):
    """``(dataset, split, cold user ids)`` with a seeded ``share`` of the test users who wrote a prompt
    before the cutoff made new, the cold-user protocol: every training event of theirs is dropped, their
    prompts and truth kept. The weekly run meets them as prompt-only users (served because they wrote
    prompts); :func:`channel_figures` reports them as ``new_users``. Chosen by a hash of (seed,
    user_id). A pair they had played before the cutoff is still not truth, but no longer heard."""
    from pyspark.sql import functions as F

    from recsys_spark.evaluation.split import Split

    if ds.user_prompts is None:
        raise SystemExit("--cold-users needs the platform's user_prompts")
    writers = ds.user_prompts.where(F.col("created_at") < F.lit(split.cutoff)).select("user_id").distinct()
    bucket = F.pmod(F.xxhash64(F.lit(f"cold-user-holdout:{seed}"), F.col("user_id")), F.lit(10_000))
    cold = (split.test_users.select("user_id").join(writers, "user_id", "left_semi")
            .where(bucket < F.lit(int(round(share * 10_000)))).cache())
    new = Split(cutoff=split.cutoff, end=split.end,
                train_events=split.train_events.join(cold, "user_id", "left_anti"),
                train=split.train.join(cold, "user_id", "left_anti"), truth=split.truth,
                test_users=split.test_users).cache()
    return ds, new, cold


def cold_holdout(ds, split, share, seed=0, new_days=0.0):
    """``(dataset, split, cold track ids)`` with a seeded ``share`` of the catalogue's pre-cutoff tracks
    made cold, the cold-item protocol: every training event of theirs is dropped and their catalogue
    counts are zeroed (a track nobody has played yet, with its audio), the truth and the test users
    unchanged. The weekly run then meets them as unplayed tracks; their truth pairs are the cold
    truth of :func:`channel_figures`. Chosen by a hash of (seed, track_id): the same tracks on every
    run. ``new_days`` > 0 also moves their ``created_at`` into the ``new_days`` before the cutoff
    (spread by the same hash): they are then what a generation platform's unplayed tracks are, new
    uploads, which the playlists' fresh share (``rerank.fresh_days``) may take; 0 keeps their age.
    A pair a user had played before the cutoff is still not truth (a re-listen), but no longer heard:
    a channel that proposes it spends a slot (for every channel alike)."""
    import dataclasses

    from pyspark.sql import functions as F

    from recsys_spark.evaluation.split import Split
    from recsys_spark.evaluation.weekly_path import TRACK_STAT_COLUMNS

    known = ds.tracks.where(F.col("created_at") < F.lit(split.cutoff)).select("track_id").distinct()
    bucket = F.pmod(F.xxhash64(F.lit(f"cold-holdout:{seed}"), F.col("track_id")), F.lit(10_000))
    cold = known.where(bucket < F.lit(int(round(share * 10_000)))).cache()
    tracks = ds.tracks.join(cold.withColumn("_cold", F.lit(True)), "track_id", "left")
    for c in TRACK_STAT_COLUMNS:
        if c in tracks.columns:
            tracks = tracks.withColumn(c, F.when(F.col("_cold"), F.lit(0).cast(tracks.schema[c].dataType))
                                       .otherwise(F.col(c)))
    if new_days > 0:  # uploaded 1 minute .. new_days before the cutoff
        age_s = 60 + F.pmod(F.xxhash64(F.lit(f"cold-age:{seed}"), F.col("track_id")), F.lit(int(new_days * 86400) - 60))
        created = (F.lit(split.cutoff).cast("long") - age_s).cast("timestamp")
        tracks = tracks.withColumn("created_at", F.when(F.col("_cold"), created).otherwise(F.col("created_at")))
    tracks = tracks.drop("_cold").select(*ds.tracks.columns)
    warm = Split(cutoff=split.cutoff, end=split.end,
                 train_events=split.train_events.join(cold, "track_id", "left_anti"),
                 train=split.train.join(cold, "track_id", "left_anti"), truth=split.truth,
                 test_users=split.test_users).cache()
    return dataclasses.replace(ds, tracks=tracks), warm, cold


def compare(spark, cfg, ds, split, label, dest, result):
    from recsys_spark.evaluation.tuning import tune_weekly

    played = split.train_events.select("track_id").distinct()

    def on_run(name, run):
        return channel_figures(spark, run, split, played)

    def save(res):
        result[label] = res
        result["load_average_at_save"] = list(os.getloadavg())
        with open(dest, "w") as fh:
            json.dump(result, fh, indent=1, default=str)

    res = tune_weekly(spark, cfg, ds, split, result["candidates"], k=K, on_candidate=save, on_run=on_run)
    save(res)
    return res


def headline(res):
    """The issue's keys from one split's result."""
    c = {n: m["extra"] for n, m in res["candidates"].items()}
    out = {}
    for name in c:
        ch = c[name]["channels"].get("content")
        out[name] = {"recall@30": ch["recall@30"], "ci95": ch["recall@30_ci95"]} if ch else None
    def cold(name, channel):
        m = c[name]["cold"].get(channel)
        return {"recall@30": m["recall@30"], "ci95": m["recall@30_ci95"]} if m else None

    for name in c:
        out[f"cold_{name}"] = cold(name, "content")
    out["cold_popularity"] = cold("two_tower", "popular")
    for name in c:  # the final playlists' recall of the cold truth (absent in older results)
        m = c[name].get("cold_playlists")
        if m:
            out[f"cold_playlists_{name}"] = {"recall@30": m["recall@30"], "ci95": m["recall@30_ci95"]}
    for name in c:  # prompt-only new users (the cold-user protocol): their channels and playlists
        for ch, m in (c[name].get("new_users_channels") or {}).items():
            out[f"new_users_{ch}_{name}"] = {"recall@30": m["recall@30"], "ci95": m["recall@30_ci95"]}
        m = c[name].get("new_users_playlists")
        if m:
            out[f"new_users_playlists_{name}"] = {"recall@30": m["recall@30"], "ci95": m["recall@30_ci95"],
                                                  "ndcg@30": m["ndcg@30"], "ndcg@30_ci95": m["ndcg@30_ci95"]}
    for name in c:  # what fills the playlists' slots (absent in older results)
        f = c[name].get("fresh_slots")
        if f:
            out[f"fresh_slots_{name}"] = {kind: {k2: e.get(k2) for k2 in ("slot_share", "hit_share", "hit_rate",
                                                                           "hit_rate_ci95")}
                                          for kind, e in f["kinds"].items()}
    return out


def with_pooling(candidates, pooling):
    """The candidates' overrides; ``pooling="shipped"`` drops their ``aggregation.method`` (the
    configuration's creator pooling then applies, as in the weekly job)."""
    if pooling == "attention":
        return candidates
    return {n: {k: v for k, v in o.items() if k != "aggregation.method"} for n, o in candidates.items()}


def summarise(result):
    """The issue's keys (``recall@30``, ``creator_pooling``) from the per-split results."""
    # the keys: channel recall from the test split; the pooling choice from the validation split
    # (a split whose truth holds no cold track gives no cold figure: the validation split's is used, labelled)
    heads = {label: headline(result[label]) for label in ("test", "validation") if label in result}
    result["recall@30"] = {}
    names = list(result["candidates"])
    for key in (*names, *(f"cold_{n}" for n in names), "cold_popularity", *(f"cold_playlists_{n}" for n in names)):
        for label, h in heads.items():
            if h.get(key):
                result["recall@30"][key] = {"value": h[key]["recall@30"], "ci95": h[key]["ci95"], "split": label}
                break
        else:
            result["recall@30"][key] = None
    result["creator_pooling"] = {}
    for label in ("validation", "test"):
        if label not in result:
            continue
        c = result[label]["candidates"]["two_tower"]["extra"]["creator_stage"].get("counts") or {}
        result["creator_pooling"][label] = {
            "attention_auc": c.get("attention_model_auc"), "mean_auc": c.get("mean_model_auc"),
            "attention_cosine_auc": c.get("attention_cosine_auc"), "mean_cosine_auc": c.get("mean_cosine_auc"),
            "source": f"aggregate.creators stage counts of the {label} split's two_tower run (its held-out week)"}
    pv = result["creator_pooling"].get("validation") or {}
    result["creator_pooling"].update(attention_auc=pv.get("attention_auc"), mean_auc=pv.get("mean_auc"))
    return result


def main(argv=None):
    """``argv``: command-line words, or the namespace of ``benchmarks/run.py --suite two_tower --root R``
    (its unparsed words and its ``--out`` folder are used)."""
    if isinstance(argv, argparse.Namespace):
        argv = list(argv.extra) + ["--out", os.path.join(argv.out, "content_two_tower.json")]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True, help="the platform's root (warehouse/ under it)")
    ap.add_argument("--conf", default="local")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "content_two_tower.json"))
    ap.add_argument("--splits", default="validation,test")
    ap.add_argument("--candidates", default="model",
                    choices=["model", "shipped", "tags", "unplayed", "lane", "prompt", "newusers"],
                    help="model: similarity vs two_tower (the issue's keys); shipped: two_tower alone (with "
                         "--pooling shipped: the shipped configuration, no comparison); "
                         "tags: two_tower vs two_tower_tags; "
                         "unplayed: two_tower vs two_tower_unplayed_fresh (rerank.fresh_unplayed); "
                         "lane: two_tower vs two_tower_fresh_lane (rerank.fresh_lane 10); "
                         "prompt: recall.prompt.target audio vs track_prompt; newusers: the prompt channel "
                         "weighs 1.0 for users without history (fusion.cold_user_channel_weights) or everyone")
    ap.add_argument("--pooling", default="attention", choices=["attention", "shipped"],
                    help="attention: every candidate trains creator attention pooling (the pooling comparison's "
                         "AUCs; the playlists' diversity then uses attention-pooled creator vectors); shipped: "
                         "the configuration's aggregation.method (mean as shipped): the playlists exactly as shipped, "
                         "no pooling comparison")
    ap.add_argument("--summarise", action="store_true", help="only recompute the summary keys of --out")
    ap.add_argument("--cold-share", type=float, default=0.0,
                    help="> 0: the cold-item protocol (cold_holdout): this share of the catalogue's tracks "
                         "loses its training plays in each split (write to another --out)")
    ap.add_argument("--cold-users", type=float, default=0.0,
                    help="> 0: the cold-user protocol (cold_user_holdout): this share of the test users who "
                         "wrote prompts loses its training plays (prompt-only new users; write to another --out)")
    ap.add_argument("--cold-new-days", type=float, default=0.0,
                    help="with --cold-share: the cold tracks become uploads of the last N days (0: keep their age)")
    a = ap.parse_args(argv)
    if a.summarise:
        with open(a.out) as fh:
            result = summarise(json.load(fh))
        with open(a.out, "w") as fh:
            json.dump(result, fh, indent=1, default=str)
        return result

    from recsys_spark.cli import setup_logging
    from recsys_spark.config import load_config
    from recsys_spark.evaluation.loaders import load_platform
    from recsys_spark.evaluation.split import temporal_split
    from recsys_spark.evaluation.tuning import validation_split
    from recsys_spark.spark import get_spark
    from recsys_spark.tables import Tables

    setup_logging("INFO")
    t0 = time.perf_counter()
    os.environ["RECSYS_ROOT"] = os.path.abspath(a.root)  # what --root does for the jobs
    cfg = load_config(a.conf)
    spark = get_spark(app_name="bench-two-tower", master="local[2]", driver_memory="6g", shuffle_partitions=8)
    tables = Tables.from_config(spark, cfg.storage)
    ds = load_platform(spark, tables)
    n_tracks = ds.tracks.select("track_id").distinct().count()
    n_audio = ds.track_embeddings.select("track_id").distinct().count()
    test = temporal_split(ds.interactions).cache()
    val = validation_split(test).cache()
    result = {"suite": "two_tower", "platform_root": a.root, "platform_tracks": n_tracks,
              "tracks_with_audio_embedding": n_audio,
              "embedding_versions": [r[0] for r in ds.track_embeddings.select("model_version").distinct().collect()],
              "interactions": ds.interactions.count(),
              "conf": f"conf/base.yaml + {a.conf} overlay + each candidate's overrides (they differ only in "
                      "recall.content.model / recall.content.tower_tags / rerank.fresh_unplayed / rerank.fresh_lane / "
                      "recall.prompt.target / the prompt channel's fusion weights)",
              "candidates": with_pooling({"model": CANDIDATES, "shipped": SHIPPED, "tags": TAGS, "unplayed": UNPLAYED,
                                          "lane": LANE, "prompt": PROMPT, "newusers": NEWUSERS}[a.candidates],
                                         a.pooling),
              "creator_pooling_override": a.pooling, "k": K, "complete": False,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "load_average_start": list(os.getloadavg()),
              "note": ("CLAP weights are untrained here (no checkpoint can be downloaded): both channels "
                       "see random-weight HTSAT embeddings of the synthetic audio")}
    splits = {"validation": val, "test": test}
    for label in a.splits.split(","):
        ds_l, split = ds, splits[label]
        if a.cold_share > 0:
            ds_l, split, cold = cold_holdout(ds, split, a.cold_share, seed=cfg.pipeline.seed,
                                             new_days=a.cold_new_days)
            result.setdefault("cold_holdout", {})[label] = {
                "share": a.cold_share, "new_days": a.cold_new_days, "cold_tracks": cold.count(),
                "cold_tracks_with_audio": cold.join(ds.track_embeddings, "track_id", "left_semi").count(),
                "training_events_dropped": splits[label].train_events.count() - split.train_events.count()}
        if a.cold_users > 0:
            ds_l, split, cold_u = cold_user_holdout(ds_l, split, a.cold_users, seed=cfg.pipeline.seed)
            result.setdefault("cold_user_holdout", {})[label] = {
                "share": a.cold_users, "cold_users": cold_u.count(),
                "training_events_dropped": splits[label].train_events.count() - split.train_events.count()}
        compare(spark, cfg, ds_l, split, label, a.out, result)
        result[f"{label}_headline"] = headline(result[label])
    summarise(result)
    result["total_seconds"] = round(time.perf_counter() - t0, 1)
    result["load_average_end"] = list(os.getloadavg())
    result["complete"] = True
    with open(a.out, "w") as fh:
        json.dump(result, fh, indent=1, default=str)
    print(json.dumps({k: result[k] for k in ("recall@30", "creator_pooling", "total_seconds")}, indent=1))
    return result


if __name__ == "__main__":
    main()
