"""Every quarantine reason, counts that reconcile, idempotent re-ingestion, new optional columns."""

import datetime as dt
import json

import pandas as pd
import pytest
from pyspark.sql import functions as F

from recsys_spark.data.ingest import Rules, ingest_entity, parse_timestamp

NOW = dt.datetime(2026, 11, 23, 12, 0, 0)
RULES = Rules(default_weights={"play": 1.0, "upvote": 3.0, "skip": 0.0}, event_types=("play", "upvote", "skip"),
              max_text_chars=100, max_title_chars=20, epoch_units={"tracks": "ms"})


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def _reasons(tables, entity):
    q = tables.read("quarantine").where(F.col("entity") == entity)
    return sorted((r["reason"], r["raw_record"]) for r in q.collect())


@pytest.fixture()
def loaded_tracks(spark, tables, tmp_path):
    good = [{"track_id": "t1", "creator_id": "c1", "title": "One", "tags": "lofi, Chill", "play_count": 10,
             "upvote_count": 2, "comment_count": 0, "created_at": "2026-01-01T00:00:00Z", "genre": "Hip Hop"},
            {"track_id": "t2", "creator_id": "c2", "title": "Two", "tags": ["Rock"], "play_count": "5",
             "created_at": 1767225600000},
            {"track_id": "t3", "creator_id": "c1", "title": "Three", "duration_s": 120.5}]
    bad = [
        '{"track_id": null, "creator_id": "c1"}',                                   # null_key:track_id
        '{"track_id": "t4"}',                                                        # null_key:creator_id
        '{"track_id": "t5", "creator_id": "c1", "title": "' + "x" * 30 + '"}',     # oversize_field (title > 20)
        '{"track_id": "t6", "creator_id": "c1", "play_count": -1}',                 # invalid_count
        '{"track_id": "t7", "creator_id": "c1", "upvote_count": "many"}',           # invalid_count
        '{"track_id": "t8", "creator_id": "c1", "duration_s": "long"}',             # invalid_duration
        '{"track_id": "t9", "creator_id": "c1", "created_at": "last tuesday"}',     # unparseable_timestamp
        '{"track_id": "t10", "creator_id": "c1", "created_at": "2099-01-01T00:00:00Z"}',  # future_timestamp
        '{"track_id": "t11", "creator_id": ',                                        # malformed_record
        '{"track_id": "t1", "creator_id": "c9", "title": "dup"}',                   # duplicate of t1
    ]
    text = "\n".join(json.dumps(g) for g in good) + "\n" + "\n".join(bad) + "\n"
    path = _write(tmp_path / "raw" / "tracks" / "a.json", text.encode() + b'{"track_id": "t12", "creator_id": "c1", "title": "caf\xe9"}\n')
    report = ingest_entity(spark, tables, "tracks", path, RULES, "r1", now=NOW)
    return report, path


def test_tracks_quarantine_every_reason(spark, tables, loaded_tracks):
    report, _ = loaded_tracks
    assert report.read == 14
    assert report.loaded == 3
    assert report.quarantined == 11
    assert report.reasons == {"null_key:track_id": 1, "null_key:creator_id": 1, "oversize_field": 1,
                              "invalid_count": 2, "invalid_duration": 1, "unparseable_timestamp": 1,
                              "future_timestamp": 1, "malformed_record": 1, "duplicate": 1,
                              "broken_encoding": 1}
    rows = {r["track_id"]: r for r in tables.read("tracks").collect()}
    assert sorted(rows) == ["t1", "t2", "t3"]
    assert rows["t1"]["tags"] == ["lofi", "chill"] and rows["t1"]["genre"] == "hip hop"
    assert rows["t2"]["tags"] == ["rock"] and rows["t2"]["play_count"] == 5
    assert rows["t2"]["created_at"] == dt.datetime(2026, 1, 1)  # unix milliseconds
    assert rows["t3"]["play_count"] == 0 and rows["t3"]["duration_s"] == 120.5
    dup = [raw for reason, raw in _reasons(tables, "tracks") if reason == "duplicate"]
    assert dup == ['{"track_id": "t1", "creator_id": "c9", "title": "dup"}']


def test_reingest_adds_nothing_and_updates_changed_stats(spark, tables, loaded_tracks, tmp_path):
    _, path = loaded_tracks
    again = ingest_entity(spark, tables, "tracks", path, RULES, "r2", now=NOW)
    assert (again.loaded, again.updated, again.already_present, again.quarantined) == (0, 0, 3, 11)
    assert tables.read("tracks").count() == 3
    assert tables.read("quarantine").count() == 11
    upd = _write(tmp_path / "raw2" / "t.json", json.dumps({"track_id": "t3", "creator_id": "c1", "title": "Three",
                                                           "duration_s": 120.5, "play_count": 99}) + "\n")
    rep = ingest_entity(spark, tables, "tracks", upd, RULES, "r3", now=NOW)
    assert (rep.loaded, rep.updated) == (0, 1)
    assert tables.read("tracks").where("track_id = 't3'").first()["play_count"] == 99


def test_interactions_every_reason_and_defaults(spark, tables, loaded_tracks, tmp_path):
    csv = "\n".join([
        "user_id,track_id,event_ts,event_type,weight,device",     # 'device': a new optional column
        "u1,t1,2026-11-20T10:00:00Z,play,2,ios",                   # ok
        "u1,t2,2026-11-20 11:00:00,UPVOTE,,web",                   # ok, default weight 3 for upvote
        "u2,t1,1795168800,skip,,ios",                              # ok, unix seconds, weight 0
        ",t1,2026-11-20T10:00:00Z,play,1,ios",                     # null_key:user_id
        "u1,,2026-11-20T10:00:00Z,play,1,ios",                     # null_key:track_id
        "u1,t1,,play,1,ios",                                       # null_key:event_ts
        "u1,t1,2026-11-20T10:00:00Z,teleport,1,ios",               # unknown_event_type
        "u1,t1,2026-11-20T10:00:00Z,play,-1,ios",                  # negative_weight
        "u1,t1,2026-11-20T10:00:00Z,play,abc,ios",                 # non_numeric_weight
        "u1,t1,2026-11-20T10:00:00Z,play,NaN,ios",                 # non_numeric_weight
        "u1,t1,yesterday,play,1,ios",                              # unparseable_timestamp
        "u1,t1,1899-01-01T00:00:00Z,play,1,ios",                   # timestamp_out_of_range
        "u1,t1,2026-12-25T00:00:00Z,play,1,ios",                   # future_timestamp
        "u1,t404,2026-11-20T10:00:00Z,play,1,ios",                 # unknown_track_id
        "u1,t1,2026-11-20T10:00:00Z,play,2,android",               # duplicate key (user, track, ts, type)
        "u3,t1,2026-11-21T10:00:00Z,play," + "9" * 120 + ",ios",   # oversize_field (> 100 chars)
    ]) + "\n"
    path = _write(tmp_path / "raw" / "interactions" / "a.csv", csv)
    rep = ingest_entity(spark, tables, "interactions", path, RULES, "r1", now=NOW)
    assert (rep.read, rep.loaded, rep.quarantined) == (16, 3, 13)
    assert rep.reasons == {"null_key:user_id": 1, "null_key:track_id": 1, "null_key:event_ts": 1,
                           "unknown_event_type": 1, "negative_weight": 1, "non_numeric_weight": 2,
                           "unparseable_timestamp": 1, "timestamp_out_of_range": 1, "future_timestamp": 1,
                           "unknown_track_id": 1, "duplicate": 1, "oversize_field": 1}
    got = sorted((r["user_id"], r["track_id"], r["event_type"], r["weight"], r["event_date"].isoformat())
                 for r in tables.read("interactions").collect())
    assert got == [("u1", "t1", "play", 2.0, "2026-11-20"), ("u1", "t2", "upvote", 3.0, "2026-11-20"),
                   ("u2", "t1", "skip", 0.0, "2026-11-20")]
    again = ingest_entity(spark, tables, "interactions", path, RULES, "r2", now=NOW)
    assert (again.loaded, again.already_present, again.quarantined) == (0, 3, 13)
    assert tables.read("interactions").count() == 3
    assert again.reconciles


def test_prompts_from_parquet_and_json(spark, tables, tmp_path):
    d = tmp_path / "raw" / "user_prompts"
    d.mkdir(parents=True)
    pd.DataFrame({"prompt_id": ["p1", "p2", "p3"], "user_id": ["u1", "u2", None],
                  "prompt_text": ["dreamy synthwave, female vocals", "  ", "lofi"],
                  "created_at": pd.to_datetime(["2026-11-01", "2026-11-02", "2026-11-03"])}
                 ).to_parquet(d / "a.parquet")
    _write(d / "b.json", json.dumps({"prompt_id": "p4", "user_id": "u1", "prompt_text": "x" * 101}) + "\n"
           + json.dumps({"prompt_id": "p5", "user_id": "u5", "prompt_text": "sad piano", "created_at": "2026-11-05"}) + "\n")
    rep = ingest_entity(spark, tables, "user_prompts", str(d), RULES, "r1", now=NOW)
    assert rep.reasons == {"empty_text": 1, "null_key:user_id": 1, "oversize_field": 1}
    assert sorted(r["prompt_id"] for r in tables.read("user_prompts").collect()) == ["p1", "p5"]
    assert rep.reconciles and rep.read == 5


def test_parse_timestamp_formats_and_explicit_epoch_units(spark):
    rows = [("2026-11-20T10:00:00Z",), ("2026-11-20T10:00:00.250Z",), ("2026-11-20T11:00:00+01:00",),
            ("2026-11-20 10:00:00",), ("2026-11-20T10:00:00.250000000+0000",), ("2026-11-20 10:00:00.25 Z",),
            ("2026-11-20",), ("1795168800",), ("1795168800000",), ("1795168800000000000",), ("1e30",),
            ("garbage",), ("2026-11-20T10:00:00+25:00",)]
    df = spark.createDataFrame(rows, "s string")
    got = {unit: [r["t"] for r in df.select(parse_timestamp(F.col("s"), unit).alias("t")).collect()]
           for unit in ("s", "ms", "ns")}
    t = dt.datetime(2026, 11, 20, 10, 0)
    iso = [t, t.replace(microsecond=250000), t, t, t.replace(microsecond=250000), t.replace(microsecond=250000),
           dt.datetime(2026, 11, 20)]
    # numbers are read in the given unit only: never guessed from their magnitude
    assert got["s"] == iso + [t, None, None, None, None, None]
    assert got["ms"] == iso + [dt.datetime(1970, 1, 21, 18, 39, 28, 800000), t, None, None, None, None]
    assert got["ns"] == iso + [dt.datetime(1970, 1, 1, 0, 0, 1, 795168), dt.datetime(1970, 1, 1, 0, 29, 55, 168800), t,
                               None, None, None]
    with pytest.raises(ValueError, match="epoch_unit"):
        parse_timestamp(F.col("s"), "minutes")


def test_rules_take_their_defaults_and_values_from_the_config():
    from recsys_spark.config import IngestConf

    conf = IngestConf(max_text_chars=123, default_weights={"play": 1.0, "like": 2.0})
    rules = Rules.from_conf(conf)
    assert (rules.max_text_chars, rules.event_types, rules.max_title_chars) == (123, ("play", "like"),
                                                                                 IngestConf().max_title_chars)
    assert Rules().max_text_chars == IngestConf().max_text_chars
    with pytest.raises(ValueError, match="epoch unit"):
        Rules(epoch_units={"tracks": "days"})


def test_generator_bad_rows_accounted_per_file(tiny_platform):
    """The synthetic export's deliberately bad rows: every file reconciles, each new kind has its reason."""
    reports = tiny_platform["reports"]
    for rep in reports.values():
        assert rep.reconciles
        for f in rep.files:
            assert f.seen == f.loaded + f.updated + f.already_present + f.duplicates + f.quarantined, f
            assert f.reason is None, f  # the generator writes no bad FILE
    bad = {e: next(f for f in reports[e].files if "bad-rows" in f.path) for e in ("tracks", "interactions")}
    # tracks: per kind null key, oversize, negative count, overflowing count, ZWSP id, concatenated objects
    # (each bad_row_rate * n_users = 2 times), then broken encoding and a truncated line
    assert (bad["tracks"].seen, bad["tracks"].loaded, bad["tracks"].quarantined) == (14, 0, 14)
    assert {"invalid_count", "invalid_id:track_id", "concatenated_json"} <= set(reports["tracks"].reasons)
    # interactions: 9 kinds x 2 and the duplicated pair (one kept or already present, one duplicate)
    assert bad["interactions"].seen == 20 and bad["interactions"].duplicates == 1
    assert reports["interactions"].reasons["unknown_track_id"] >= 6
