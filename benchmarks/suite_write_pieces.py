"""Suite "write_pieces": where the write stage's per-user selection (``rules.select_playlists``)
spends its time, on the candidates an earlier weekly run wrote.

    RECSYS_ROOT=ROOT python benchmarks/run.py --suite write_pieces --week YYYY-MM-DD [--name NAME] [--set k=v ...]

``ROOT`` is a platform a weekly run has written week W's ``candidates`` into (``--root`` of the
jobs, or the pipeline suite's cache with ``--set storage.warehouse=... --set storage.model_dir=...``);
``--set`` repeats the overrides that run used. The selection's input is built as the write stage
builds it (``rules._decorate``: catalog metadata, track embeddings and creator embeddings joined
per candidate row), persisted, then each piece is timed alone (``noop`` writes):

* ``shuffle_sort``: the repartition by user and the sort within partitions;
* ``arrow_all_columns``: that plus the Arrow transfer of every column into pandas (an empty UDF);
* ``arrow_without_channels`` / ``arrow_without_lists``: the same without the ``channels`` array,
  and without every array column (channels, track and creator embeddings);
* ``select_playlists_row_arrays``: the whole selection (shuffle, Arrow, MMR, Arrow back) with the
  embeddings as an array on every candidate row (the write stage before ``ShippedVectors``);
* ``select_playlists``: the whole selection as the write stage runs it now: the rows carry ids
  only and the track / creator unit vectors are broadcast once (``rules.ShippedVectors``, whose
  driver-side build is timed apart as ``ship_vectors``). Both selections' playlists are compared
  (``playlists_equal``).

Result: ``benchmarks/results/write_pieces_<NAME>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time

from suite_clap_cpu import _git

COLUMNS = ["user_id", "track_id", "final_score", "channels", "seed_track_id", "creator_id", "genre", "is_fresh",
           "is_backfill", "embedding", "creator_embedding"]


def main(args) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--week", required=True)
    p.add_argument("--name", default="run")
    p.add_argument("--set", action="append", default=[])
    a = p.parse_args(args.extra)

    from pyspark.sql import functions as F

    from recsys_spark.config import load_config
    from recsys_spark.pipeline.context import RunContext
    from recsys_spark.pipeline.stages.aggregate_creators import creators_for_diversity
    from recsys_spark.rerank import rules
    from recsys_spark.spark import get_spark
    from recsys_spark.tables import Tables

    load0 = os.getloadavg()[0]
    cfg = load_config(overrides=a.set)
    spark = get_spark(app_name="bench-write-pieces", master="local[2]", driver_memory="12g",
                      shuffle_partitions=cfg.spark.shuffle_partitions, extra={"spark.ui.enabled": "false"})
    tables = Tables.from_config(spark, cfg.storage)
    week = dt.date.fromisoformat(a.week)
    ctx = RunContext(spark, cfg, tables, week, "bench-write-pieces")
    rr = cfg.rerank
    cands = ctx.partition("candidates").drop("week_start").select(
        "user_id", "track_id", "channels", "final_score", "seed_track_id")
    emb = ctx.track_embeddings
    dec = rules._decorate(cands, ctx.inputs.tracks, week, rr.fresh_days,
                          None if emb is None else emb.select("track_id", "embedding"),
                          creators_for_diversity(tables, week)).persist()
    t0 = time.time()
    rows = dec.count()
    res = {"suite": "write_pieces", "name": a.name, "code": os.environ.get("RECSYS_CODE") or _git(),
           "root": os.environ.get("RECSYS_ROOT", ""), "overrides": a.set, "week": a.week,
           "candidate_rows": rows, "decorate_seconds": round(time.time() - t0, 1),
           "rows_with_track_embedding": dec.where(F.col("embedding").isNotNull()).count(),
           "rows_with_creator_embedding": dec.where(F.col("creator_embedding").isNotNull()).count(),
           "users": dec.select("user_id").distinct().count(), "load_avg_1m_at_start": round(load0, 2),
           "machine": f"{os.cpu_count()} cores, local[2]", "seconds": {}}
    cols = [c for c in COLUMNS if c in dec.columns]
    part = dec.select(*cols).repartition("user_id").sortWithinPartitions("user_id")

    def empty(batches):
        for pdf in batches:
            yield pdf.iloc[:0][["user_id"]]

    lists = [c for c in ("channels", "embedding", "creator_embedding") if c in cols]
    t0 = time.time()
    cemb = creators_for_diversity(tables, week)
    tv = None if emb is None else rules.ShippedVectors(spark, emb, "track_id")
    cv = None if cemb is None else rules.ShippedVectors(spark, cemb, "creator_id")
    res["ship_vectors"] = {"seconds": round(time.time() - t0, 1), "track_vectors": 0 if tv is None else tv.size,
                           "creator_vectors": 0 if cv is None else cv.size,
                           "mb": round(sum(v.nbytes for v in (tv, cv) if v is not None) / 2**20, 1)}
    sel = (rr.playlist_size, rr.creator_cap, rr.diversity_lambda, rr.fresh_share, rr.diversity_enabled,
           rr.creator_similarity_weight)
    by_rows = rules.select_playlists(dec, *sel)
    shipped = rules.select_playlists(dec.drop("embedding", "creator_embedding"), *sel, tv, cv)
    pieces = [("shuffle_sort", part),
              ("arrow_all_columns", part.mapInPandas(empty, "user_id string")),
              ("arrow_without_channels", part.drop("channels").mapInPandas(empty, "user_id string")),
              ("arrow_without_lists", part.drop(*lists).mapInPandas(empty, "user_id string")),
              ("select_playlists_row_arrays", by_rows),
              ("select_playlists", shipped)]
    for name, df in pieces:
        t0 = time.time()
        df.write.format("noop").mode("overwrite").save()
        res["seconds"][name] = round(time.time() - t0, 1)
        print(name, res["seconds"][name], flush=True)
    keys = ["user_id", "position", "track_id"]
    res["playlists_equal"] = (by_rows.select(*keys).exceptAll(shipped.select(*keys)).count() == 0
                              and shipped.select(*keys).exceptAll(by_rows.select(*keys)).count() == 0)
    res["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    res["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    dec.unpersist()
    with open(os.path.join(args.out, f"write_pieces_{a.name}.json"), "w") as fh:
        json.dump(res, fh, indent=1)
    print(json.dumps(res, indent=1))
    return res
