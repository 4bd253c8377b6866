"""Malformed input at FILE level (and a few more row kinds) fed through ingestion.

tests/data/test_ingest.py covers the row-level reasons one by one. Here a landing folder holds,
per entity, one file per kind of bad input next to valid rows, as real exports do:

    empty file, header-only CSV, CSV missing required columns, CSV with extra and reordered
    columns, wrong delimiter, UTF-8 BOM (CSV and JSON), CRLF line ends (CSV and JSON), rows with
    too few / too many CSV fields, an unclosed CSV quote, gzip JSON lines, a corrupt ``.json.gz``,
    binary garbage named ``.json``, a JSON array instead of JSON lines, an unknown file type,
    raw and escaped NUL bytes, an extremely long line, non-string ids (numbers, objects, arrays),
    JSON scalars instead of objects, Windows-1252 bytes in a CSV, Parquet files whose id column
    types differ, garbage named ``.parquet``, quoted multi-line prompts (CSV), an unescaped newline
    inside a JSON string, and a key duplicated across formats.

Every valid row is asserted by id (hand-written list), every bad row by (file, reason), and the
counts must reconcile. One module-scoped landing folder and warehouse keep this to one ingestion
per entity (plus one re-ingestion).
"""

import datetime as dt
import gzip
import json

import pandas as pd
import pytest
from pyspark.sql import functions as F

from recsys_spark.data.ingest import Rules, ingest_entity, list_raw_files
from recsys_spark.tables import Tables

NOW = dt.datetime(2026, 11, 23, 12, 0, 0)
RULES = Rules(default_weights={"play": 1.0, "upvote": 3.0, "skip": 0.0}, event_types=("play", "upvote", "skip"),
              max_text_chars=100, max_title_chars=40)
TS = "2026-11-20T10:00:00Z"
H = "user_id,track_id,event_ts,event_type,weight\n"


def _ev(user, **extra):
    return json.dumps({"user_id": user, "track_id": "t1", "event_ts": TS, "event_type": "play", **extra})


def _write(folder, name, data):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def _landing(root):
    tr = root / "tracks"
    _write(tr, "tracks.json", "\n".join(json.dumps({"track_id": t, "creator_id": "c1", "title": t.upper()})
                                        for t in ("t1", "t2")) + "\n")
    # quoted multi-line prompt in CSV (RFC 4180): one valid record, newline kept
    _write(tr, "multiline.csv", 'track_id,creator_id,title,prompt,tags\r\n'
                                't3,c2,Three,"dreamy synthwave\nwith female vocals","synth, dream"\r\n')

    it = root / "interactions"
    _write(it, "empty.csv", b"")                                                      # no records
    _write(it, "header_only.csv", H)                                                  # no records
    _write(it, "missing_cols.csv", "user_id,track_id\nu_missing,t1\n")                # null_key:event_ts
    _write(it, "reordered_extra.csv", "weight,event_type,device,event_ts,track_id,user_id\n"
                                      f"2,play,ios,{TS},t1,u_reordered\n")            # kept (new column)
    _write(it, "semicolon.csv", H.replace(",", ";") + f"u_semicolon;t1;{TS};play;1\n")  # null_key:user_id
    _write(it, "bom.csv", b"\xef\xbb\xbf" + (H + f"u_bom_csv,t1,{TS},play,1\n").encode())
    _write(it, "crlf.csv", (H + f"u_crlf_csv,t1,{TS},play,1\n").replace("\n", "\r\n"))
    _write(it, "fields.csv", H + f"u_short,t1,{TS}\n"                                 # malformed (too few)
                             f"u_long_row,t1,{TS},play,1,extra,more\n"                # malformed (too many)
                             f"u_fields_ok,t1,{TS},upvote,\n")                        # kept, default weight 3
    _write(it, "cp1252.csv", (H + f"u_caf\xe9,t1,{TS},play,1\n").encode("cp1252"))   # broken_encoding
    _write(it, "nul.csv", H + f"u_n\x00ul,t1,{TS},play,1\n")                          # invalid_id:user_id
    _write(it, "unclosed_quote.csv", H + f'"u_unclosed,t1,{TS},play,1\n')            # malformed
    _write(it, "plays.json.gz", gzip.compress((_ev("u_gzip") + "\n").encode()))        # kept
    _write(it, "corrupt.json.gz", b"this is not gzip at all\n")                       # unreadable_file
    _write(it, "garbage.json", b"\x89PNG\r\n\x1a\n" + bytes(range(0x80, 0x100)) * 4)  # 3 lines, malformed
    _write(it, "array.json", json.dumps([json.loads(_ev("u_array1")), json.loads(_ev("u_array2"))], indent=2))
    _write(it, "notes.txt", "operator notes, not data\n")                             # unsupported_file
    _write(it, "crlf.json", _ev("u_crlf_json") + "\r\n")                              # kept
    _write(it, "bom.json", b"\xef\xbb\xbf" + _ev("u_bom_json").encode() + b"\n")      # kept
    _write(it, "nul.json", b'{"user_id": "u_raw\x00nul", "track_id": "t1", "event_ts": "' + TS.encode()
           + b'", "event_type": "play"}\n'                                            # malformed (raw NUL)
           + _ev("u_esc\u0000nul").encode() + b"\n")                                 # invalid_id:user_id
    _write(it, "long_line.json", _ev("u_long_line", note="x" * 1_000_000) + "\n"      # kept (new field)
           + _ev("u_" + "y" * 150) + "\n")                                            # oversize_field
    _write(it, "typed_ids.json", "\n".join([
        json.dumps({"user_id": 12345, "track_id": "t1", "event_ts": TS, "event_type": "play", "weight": 2}),  # kept "12345"
        json.dumps({"user_id": {"id": "u9"}, "track_id": "t1", "event_ts": TS, "event_type": "play"}),  # invalid_id
        json.dumps({"user_id": ["u9"], "track_id": "t1", "event_ts": TS, "event_type": "play"}),        # invalid_id
        "null",                                                                        # malformed
        "42",                                                                          # malformed
        _ev("u_bom_csv"),                                                              # duplicate of bom.csv row
    ]) + "\n")
    pd.DataFrame({"user_id": [777], "track_id": ["t2"], "event_ts": [TS], "event_type": ["play"],
                  "weight": [1.5]}).to_parquet(it / "int_ids.parquet")                 # kept "777"
    pd.DataFrame({"user_id": ["u_parquet"], "track_id": ["t2"], "event_ts": [TS], "event_type": ["skip"],
                  "weight": [None], "country": ["SE"]}).to_parquet(it / "str_ids.parquet")  # kept, new column
    _write(it, "fake.parquet", b"PAR1 but not really a parquet file")                 # unreadable_file

    pr = root / "user_prompts"
    _write(pr, "prompts.csv", "prompt_id,user_id,prompt_text,created_at\n"
                              'p1,u1,"lofi beats\nrainy night, soft piano",2026-11-01T00:00:00Z\n'  # kept, multi-line
                              "p2,u1,,2026-11-02T00:00:00Z\n")                                 # empty_text
    _write(pr, "prompts.json", '{"prompt_id": "p3", "user_id": "u2", "prompt_text": "broken\n'    # malformed x2
                               'across lines"}\n'
                               + json.dumps({"prompt_id": "p4", "user_id": "u2", "prompt_text": "sad piano"}) + "\n")


@pytest.fixture(scope="module")
def ingested(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")
    _landing(root / "raw")
    tables = Tables(spark, warehouse=str(root / "warehouse"))
    reps = {e: ingest_entity(spark, tables, e, str(root / "raw" / e), RULES, "bad-1", now=NOW)
            for e in ("tracks", "interactions", "user_prompts")}
    return tables, reps, root


def _quarantine(tables, entity):
    q = tables.read("quarantine").where(F.col("entity") == entity)
    return sorted((r["source"].rsplit("/", 1)[-1], r["reason"]) for r in q.collect())


def test_raw_files_grouped_with_compressed_and_unknown(tmp_path):
    _landing(tmp_path)
    groups = {k: sorted(p.rsplit("/", 1)[-1] for p in v) for k, v in
              list_raw_files(str(tmp_path / "interactions")).items()}
    assert groups["unsupported"] == ["notes.txt"]
    assert "plays.json.gz" in groups["json"] and "corrupt.json.gz" in groups["json"]
    assert groups["parquet"] == ["fake.parquet", "int_ids.parquet", "str_ids.parquet"]


def test_interactions_every_valid_row_kept(ingested):
    tables, reps, _ = ingested
    got = sorted((r["user_id"], r["track_id"], r["event_type"], r["weight"])
                 for r in tables.read("interactions").collect())
    assert got == sorted([
        ("u_reordered", "t1", "play", 2.0), ("u_bom_csv", "t1", "play", 1.0), ("u_crlf_csv", "t1", "play", 1.0),
        ("u_fields_ok", "t1", "upvote", 3.0), ("u_gzip", "t1", "play", 1.0), ("u_array1", "t1", "play", 1.0),
        ("u_array2", "t1", "play", 1.0), ("u_crlf_json", "t1", "play", 1.0), ("u_bom_json", "t1", "play", 1.0),
        ("u_long_line", "t1", "play", 1.0), ("12345", "t1", "play", 2.0), ("777", "t2", "play", 1.5),
        ("u_parquet", "t2", "skip", 0.0),
    ])


def test_interactions_every_bad_row_quarantined_with_reason(ingested):
    tables, reps, _ = ingested
    assert _quarantine(tables, "interactions") == sorted([
        ("missing_cols.csv", "null_key:event_ts"),
        ("semicolon.csv", "null_key:user_id"),
        ("fields.csv", "malformed_record"), ("fields.csv", "malformed_record"),
        ("cp1252.csv", "broken_encoding"),
        ("nul.csv", "invalid_id:user_id"),
        ("unclosed_quote.csv", "malformed_record"),
        ("corrupt.json.gz", "unreadable_file"),
        ("garbage.json", "malformed_record"), ("garbage.json", "malformed_record"),
        ("garbage.json", "malformed_record"),
        ("notes.txt", "unsupported_file"),
        ("nul.json", "malformed_record"), ("nul.json", "invalid_id:user_id"),
        ("long_line.json", "oversize_field"),
        ("typed_ids.json", "invalid_id:user_id"), ("typed_ids.json", "invalid_id:user_id"),
        ("typed_ids.json", "malformed_record"), ("typed_ids.json", "malformed_record"),
        ("typed_ids.json", "duplicate"),
        ("fake.parquet", "unreadable_file"),
    ])
    rep = reps["interactions"]
    assert (rep.read, rep.loaded, rep.quarantined, rep.already_present) == (34, 13, 21, 0)
    assert rep.reconciles


def test_quarantine_keeps_the_raw_record(ingested):
    tables, _, _ = ingested
    q = {(r["source"].rsplit("/", 1)[-1], r["reason"]): r["raw_record"]
         for r in tables.read("quarantine").where(F.col("entity") == "interactions").collect()}
    assert "u_semicolon;t1" in q[("semicolon.csv", "null_key:user_id")]
    assert q[("unclosed_quote.csv", "malformed_record")].startswith('"u_unclosed,t1')
    assert q[("notes.txt", "unsupported_file")] == "unsupported file notes.txt (25 bytes)"
    assert q[("corrupt.json.gz", "unreadable_file")].startswith("unreadable json file corrupt.json.gz")
    assert q[("typed_ids.json", "duplicate")] == _ev("u_bom_csv")


def test_tracks_and_prompts_multiline_fields(ingested):
    tables, reps, _ = ingested
    t3 = tables.read("tracks").where("track_id = 't3'").first()
    assert t3["prompt"] == "dreamy synthwave\nwith female vocals" and t3["tags"] == ["synth", "dream"]
    assert sorted(r["track_id"] for r in tables.read("tracks").collect()) == ["t1", "t2", "t3"]
    assert reps["tracks"].reconciles and reps["tracks"].quarantined == 0
    prompts = {r["prompt_id"]: r["prompt_text"] for r in tables.read("user_prompts").collect()}
    assert prompts == {"p1": "lofi beats\nrainy night, soft piano", "p4": "sad piano"}
    assert _quarantine(tables, "user_prompts") == [("prompts.csv", "empty_text"), ("prompts.json", "malformed_record"),
                                                    ("prompts.json", "malformed_record")]
    assert reps["user_prompts"].reconciles and reps["user_prompts"].read == 5


def test_reingest_is_idempotent_for_file_level_records(spark, ingested):
    tables, _, root = ingested
    n_q = tables.read("quarantine").count()
    again = ingest_entity(spark, tables, "interactions", str(root / "raw" / "interactions"), RULES, "bad-2", now=NOW)
    assert (again.read, again.loaded, again.already_present, again.quarantined) == (34, 0, 13, 21)
    assert tables.read("quarantine").count() == n_q
    assert tables.read("interactions").count() == 13
