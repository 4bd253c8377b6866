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

import base64
import datetime as dt
import gzip
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from recsys_spark.data.ingest import Rules, ingest_all, ingest_entity, list_raw_files
from recsys_spark.validation import InputError
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
    # counts: checked integers in [0, 2^63), never an overflowing cast
    _write(tr, "counts.json", "\n".join([
        '{"track_id": "t_big1", "creator_id": "c1", "play_count": 1e30}',               # invalid_count
        '{"track_id": "t_big2", "creator_id": "c1", "play_count": "1e19"}',             # invalid_count
        '{"track_id": "t_big3", "creator_id": "c1", "play_count": 9223372036854775808}',  # 2^63: invalid_count
        '{"track_id": "t_max", "creator_id": "c1", "play_count": 9223372036854775807}',   # kept exactly
        '{"track_id": "t_float", "creator_id": "c1", "play_count": 12.0, "upvote_count": "3"}',  # kept
    ]) + "\n")
    # RFC 4180: doubled quotes and a newline inside one quoted field
    _write(tr, "rfc4180.csv", 'track_id,creator_id,title\r\nt_quote,c1,"Hello, ""World""\nsecond line"\r\n')
    # Parquet: column names in other case; list<string> tags kept; a struct title rejected; uint64 2^63
    pq.write_table(pa.table({
        "Track_ID": ["t_pq1", "t_pq2", "t_pq3"], " Creator_ID ": ["c1", "c1", "c1"],
        "Title": pa.array([{"x": "a"}, None, None], type=pa.struct([("x", pa.string())])),
        "Tags": pa.array([["Jazz"], ["Rock", "Pop"], []], type=pa.list_(pa.string())),
        "Play_Count": pa.array([1, 5, 2 ** 63], type=pa.uint64())}), str(tr / "upper.parquet"))
    # identity: NFC, edge NBSP / zero-width space trimmed; a zero-width space inside is no id
    _write(tr, "ids.json", "\n".join(json.dumps(t) for t in [
        {"track_id": "\u00a0t_nbsp\u200b", "creator_id": " c1 "},   # kept as t_nbsp
        {"track_id": "Cafe\u0301", "creator_id": "c1"},              # kept as Caf\u00e9 (NFC)
        {"track_id": "t_zw\u200bin", "creator_id": "c1"},            # invalid_id:track_id
        {"track_id": "\u200b\u00a0", "creator_id": "c1"},           # null_key:track_id
    ]) + "\n")
    # JSON lines standard: file-level reasons when the file is not JSON lines ...
    _write(tr, "array.json", '[{"track_id": "t_arr", "creator_id": "c1"}]\n{"track_id": "t_after", "creator_id": "c1"}\n')
    _write(tr, "pretty.json", json.dumps({"track_id": "t_pretty", "creator_id": "c1"}, indent=2) + "\n")
    _write(tr, "concat.json", '{"track_id": "t_c1", "creator_id": "c1"}{"track_id": "t_c2", "creator_id": "c1"}\n')
    # ... and row-level ones on later lines
    _write(tr, "late.json", '{"track_id": "t_late1", "creator_id": "c1"}\n'
                            '{"track_id": "t_c3", "creator_id": "c1"} {"track_id": "t_c4", "creator_id": "c1"}\n'
                            '[{"track_id": "t_a5", "creator_id": "c1"}]\n')
    # compression by content, not by name
    _write(tr, "gz_named.json", gzip.compress(b'{"track_id": "t_gz", "creator_id": "c1"}\n'))      # kept
    _write(tr, "plain.json.gz", b'{"track_id": "t_plain", "creator_id": "c1"}\n')                  # kept
    _write(tr, "zstd.json", b"\x28\xb5\x2f\xfd" + bytes(range(256)))                             # unsupported
    # CSV: a header is required; an unterminated quote is a file-level reason
    _write(tr, "noheader.csv", "t_nh1,c1,One\nt_nh2,c1,Two\n")
    _write(tr, "unterminated.csv", 'track_id,creator_id,title\nt_u1,c1,"open title\nt_u2,c1,Two\n')
    _write(tr, "broken.parquet", b"PAR1" + b"\x00" * 64 + b"PAR1")                                  # unreadable

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
    _write(it, "Upper.csv", "User_ID, Track_ID ,EVENT_TS,Event_Type,weight\n"        # header matched
                            f"u_upper,t1,{TS},play,1\n")                            # case-insensitively
    _write(it, "timestamps.csv", H + "\n".join([
        "u_ts1,t1,2026-11-20T10:00:00.123456Z,play,1",            # 6 fractional digits
        "u_ts2,t1,2026-11-20T10:00:00.123456789+00:00,play,1",    # 9 digits (kept to the microsecond)
        "u_ts3,t1,2026-11-20T11:00:00+0100,play,1",               # +HHMM
        "u_ts4,t1,2026-11-20 10:00:00 +00:00,play,1",             # space before the offset
        "u_ts5,t1,2026-11-20T10:00Z,play,1",                      # no seconds
        "u_ts6,t1,2026-11-20T09:00:00-01,play,1",                 # -HH
        "u_ts7,t1,1795168800,play,1",                             # epoch seconds (the configured unit)
        "u_ts8,t1,2026-11-20T25:00:00Z,play,1",                   # unparseable_timestamp
        "u_ts9,t1,1795168800000,play,1",                          # ms given where s is configured: out of range
    ]) + "\n")
    _write(it, "ids.json", "\n".join([
        _ev("\u00a0u_nbsp").replace('"t1"', '"Caf\\u00e9"'),       # kept: u_nbsp plays Caf\u00e9 (NFC-equal)
        _ev("u_id2").replace('"t1"', '"t_nbsp\\u200b"'),           # kept: plays t_nbsp
        _ev("u_zw\u200bx"),                                         # invalid_id:user_id
    ]) + "\n")
    _write(it, "gzipped.csv", gzip.compress((H + f"u_gzcsv,t2,{TS},play,1\n").encode()))  # gzip named .csv
    _write(it, "utf16.csv", (H + f"u_utf16,t1,{TS},play,1\n").encode("utf-16"))         # unsupported_encoding
    _write(it, "cr_only.csv", (H + f"u_cr,t1,{TS},play,1\n").replace("\n", "\r"))       # old Mac line ends: kept
    _write(it, "quoted.csv", '"user_id","track_id","event_ts","event_type","weight"\n'    # quoted header: kept
                             f'"u_quoted","t1","{TS}","play","1"\n'
                             f'"u_stray"x,t1,{TS},play,1\n')          # a stray quote: kept verbatim
    _write(it, "truncated.json.gz", gzip.compress(((_ev("u_trunc") + "\n") * 50).encode())[:-30])  # unreadable

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


def _files(rep):
    """``{file name: (seen, loaded, already_present, duplicates, quarantined, file reason)}``."""
    return {f.path.rsplit("/", 1)[-1]: (f.seen, f.loaded, f.already_present, f.duplicates, f.quarantined, f.reason)
            for f in rep.files}


# per file: (seen, loaded, already_present, duplicates, quarantined, file-level reason); written by hand
INTERACTION_FILES = {
    "empty.csv": (0, 0, 0, 0, 0, None), "header_only.csv": (0, 0, 0, 0, 0, None),
    "missing_cols.csv": (1, 0, 0, 0, 1, None), "reordered_extra.csv": (1, 1, 0, 0, 0, None),
    "semicolon.csv": (1, 1, 0, 0, 0, None), "bom.csv": (1, 1, 0, 0, 0, None), "crlf.csv": (1, 1, 0, 0, 0, None),
    "fields.csv": (3, 1, 0, 0, 2, None), "cp1252.csv": (1, 0, 0, 0, 1, None), "nul.csv": (1, 0, 0, 0, 1, None),
    "unclosed_quote.csv": (1, 0, 0, 0, 1, "csv_unterminated_quote"),
    "plays.json.gz": (1, 1, 0, 0, 0, None), "corrupt.json.gz": (1, 0, 0, 0, 1, None),
    "garbage.json": (1, 0, 0, 0, 1, "binary_file"), "array.json": (1, 0, 0, 0, 1, "json_array_file"),
    "notes.txt": (1, 0, 0, 0, 1, "unsupported_file"), "crlf.json": (1, 1, 0, 0, 0, None),
    "bom.json": (1, 1, 0, 0, 0, None), "nul.json": (2, 0, 0, 0, 2, None), "long_line.json": (2, 1, 0, 0, 1, None),
    "typed_ids.json": (6, 1, 0, 1, 4, None), "int_ids.parquet": (1, 1, 0, 0, 0, None),
    "str_ids.parquet": (1, 1, 0, 0, 0, None), "fake.parquet": (1, 0, 0, 0, 1, "unreadable_file"),
    "Upper.csv": (1, 1, 0, 0, 0, None), "timestamps.csv": (9, 7, 0, 0, 2, None), "ids.json": (3, 2, 0, 0, 1, None),
    "gzipped.csv": (1, 1, 0, 0, 0, None), "utf16.csv": (1, 0, 0, 0, 1, "unsupported_encoding"),
    "cr_only.csv": (1, 1, 0, 0, 0, None), "quoted.csv": (2, 2, 0, 0, 0, None),
    "truncated.json.gz": (1, 0, 0, 0, 1, "unreadable_file"),
}
TRACK_FILES = {
    "tracks.json": (2, 2, 0, 0, 0, None), "multiline.csv": (1, 1, 0, 0, 0, None),
    "counts.json": (5, 2, 0, 0, 3, None), "rfc4180.csv": (1, 1, 0, 0, 0, None),
    "upper.parquet": (3, 1, 0, 0, 2, None), "ids.json": (4, 2, 0, 0, 2, None),
    "array.json": (1, 0, 0, 0, 1, "json_array_file"), "pretty.json": (1, 0, 0, 0, 1, "pretty_printed_json"),
    "concat.json": (1, 0, 0, 0, 1, "concatenated_json"), "late.json": (3, 1, 0, 0, 2, None),
    "gz_named.json": (1, 1, 0, 0, 0, None), "plain.json.gz": (1, 1, 0, 0, 0, None),
    "zstd.json": (1, 0, 0, 0, 1, "unsupported_compression"), "noheader.csv": (1, 0, 0, 0, 1, "csv_missing_header"),
    "unterminated.csv": (1, 0, 0, 0, 1, "csv_unterminated_quote"),
    "broken.parquet": (1, 0, 0, 0, 1, "unreadable_file"),
}


def test_every_file_accounted_for(ingested):
    _, reps, _ = ingested
    assert _files(reps["interactions"]) == INTERACTION_FILES
    assert _files(reps["tracks"]) == TRACK_FILES
    for rep in reps.values():
        assert rep.reconciles and all(f.reconciles for f in rep.files)
    rep = reps["interactions"]
    assert (rep.read, rep.loaded, rep.already_present, rep.duplicates, rep.quarantined) == (50, 26, 0, 1, 24)


def test_interactions_every_valid_row_kept(ingested):
    tables, reps, _ = ingested
    got = sorted((r["user_id"], r["track_id"], r["event_type"], r["weight"])
                 for r in tables.read("interactions").collect())
    ts_users = [("u_ts%d" % i, "t1", "play", 1.0) for i in range(1, 8)]
    assert got == sorted([
        ("u_reordered", "t1", "play", 2.0), ("u_bom_csv", "t1", "play", 1.0), ("u_crlf_csv", "t1", "play", 1.0),
        ("u_fields_ok", "t1", "upvote", 3.0), ("u_gzip", "t1", "play", 1.0), ("u_semicolon", "t1", "play", 1.0),
        ("u_crlf_json", "t1", "play", 1.0), ("u_bom_json", "t1", "play", 1.0),
        ("u_long_line", "t1", "play", 1.0), ("12345", "t1", "play", 2.0), ("777", "t2", "play", 1.5),
        ("u_parquet", "t2", "skip", 0.0), ("u_upper", "t1", "play", 1.0), ("u_gzcsv", "t2", "play", 1.0),
        ("u_nbsp", "Caf\u00e9", "play", 1.0), ("u_id2", "t_nbsp", "play", 1.0), ("u_cr", "t1", "play", 1.0),
        ("u_quoted", "t1", "play", 1.0), ('"u_stray"x', "t1", "play", 1.0),
    ] + ts_users)


def test_timestamps_in_their_common_forms(ingested):
    tables, _, _ = ingested
    got = {r["user_id"]: r["event_ts"] for r in tables.read("interactions").where("user_id LIKE 'u_ts%'").collect()}
    t = dt.datetime(2026, 11, 20, 10, 0)
    assert got == {"u_ts1": t.replace(microsecond=123456), "u_ts2": t.replace(microsecond=123456), "u_ts3": t,
                   "u_ts4": t, "u_ts5": t, "u_ts6": t, "u_ts7": t}


def test_interactions_every_bad_row_quarantined_with_reason(ingested):
    tables, reps, _ = ingested
    assert _quarantine(tables, "interactions") == sorted([
        ("missing_cols.csv", "null_key:event_ts"),
        ("fields.csv", "malformed_record"), ("fields.csv", "malformed_record"),
        ("cp1252.csv", "broken_encoding"),
        ("nul.csv", "invalid_id:user_id"),
        ("unclosed_quote.csv", "csv_unterminated_quote"),
        ("corrupt.json.gz", "malformed_record"),   # named .gz, plain text inside: read as text
        ("garbage.json", "binary_file"),
        ("array.json", "json_array_file"),
        ("notes.txt", "unsupported_file"),
        ("nul.json", "malformed_record"), ("nul.json", "invalid_id:user_id"),
        ("long_line.json", "oversize_field"),
        ("typed_ids.json", "invalid_id:user_id"), ("typed_ids.json", "invalid_id:user_id"),
        ("typed_ids.json", "malformed_record"), ("typed_ids.json", "malformed_record"),
        ("typed_ids.json", "duplicate"),
        ("fake.parquet", "unreadable_file"),
        ("timestamps.csv", "unparseable_timestamp"), ("timestamps.csv", "timestamp_out_of_range"),
        ("ids.json", "invalid_id:user_id"),
        ("utf16.csv", "unsupported_encoding"), ("truncated.json.gz", "unreadable_file"),
    ])


def test_tracks_values_identity_and_json_lines(ingested):
    tables, reps, _ = ingested
    rows = {r["track_id"]: r for r in tables.read("tracks").collect()}
    assert sorted(rows) == sorted(["t1", "t2", "t3", "t_max", "t_float", "t_quote", "t_pq2", "t_nbsp", "Caf\u00e9",
                                   "t_late1", "t_gz", "t_plain"])
    assert rows["t_max"]["play_count"] == 2 ** 63 - 1
    assert (rows["t_float"]["play_count"], rows["t_float"]["upvote_count"]) == (12, 3)
    assert rows["t_quote"]["title"] == 'Hello, "World"\nsecond line'
    assert rows["t_pq2"]["tags"] == ["rock", "pop"] and rows["t_pq2"]["play_count"] == 5
    assert rows["t_nbsp"]["creator_id"] == "c1"
    assert sorted(_quarantine(tables, "tracks")) == sorted([
        ("counts.json", "invalid_count"), ("counts.json", "invalid_count"), ("counts.json", "invalid_count"),
        ("upper.parquet", "nested_value:title"), ("upper.parquet", "invalid_count"),
        ("ids.json", "invalid_id:track_id"), ("ids.json", "null_key:track_id"),
        ("array.json", "json_array_file"), ("pretty.json", "pretty_printed_json"),
        ("concat.json", "concatenated_json"),
        ("late.json", "concatenated_json"), ("late.json", "json_array_line"),
        ("zstd.json", "unsupported_compression"), ("noheader.csv", "csv_missing_header"),
        ("unterminated.csv", "csv_unterminated_quote"), ("broken.parquet", "unreadable_file"),
    ])


def test_quarantine_keeps_the_raw_record(ingested):
    tables, _, _ = ingested
    q = {(r["source"].rsplit("/", 1)[-1], r["reason"]): r["raw_record"]
         for r in tables.read("quarantine").collect()}
    assert q[("unclosed_quote.csv", "csv_unterminated_quote")]
    notes = json.loads(q[("notes.txt", "unsupported_file")])
    assert (notes["content"], notes["encoding"], notes["bytes"], notes["truncated"]) == \
        ("operator notes, not data\n", "utf-8", 25, False)
    assert q[("corrupt.json.gz", "malformed_record")] == "this is not gzip at all"
    assert q[("typed_ids.json", "duplicate")] == _ev("u_bom_csv")
    # a whole file keeps every line (the valid one after the array too), replayable
    arr = json.loads(q[("array.json", "json_array_file")])
    assert arr["content"].endswith('{"track_id": "t_after", "creator_id": "c1"}\n') and arr["detail"]
    zstd = json.loads(q[("zstd.json", "unsupported_compression")])
    assert zstd["encoding"] == "base64" and base64.b64decode(zstd["content"]) == b"\x28\xb5\x2f\xfd" + bytes(range(256))
    # the Parquet row keeps its columns as written (original names, the struct as JSON)
    pq_raw = json.loads(q[("upper.parquet", "nested_value:title")])
    assert pq_raw["Track_ID"] == "t_pq1" and pq_raw["Title"] == {"x": "a"}
    assert json.loads(q[("counts.json", "invalid_count")])["track_id"].startswith("t_big")


def test_tracks_and_prompts_multiline_fields(ingested):
    tables, reps, _ = ingested
    t3 = tables.read("tracks").where("track_id = 't3'").first()
    assert t3["prompt"] == "dreamy synthwave\nwith female vocals" and t3["tags"] == ["synth", "dream"]
    prompts = {r["prompt_id"]: r["prompt_text"] for r in tables.read("user_prompts").collect()}
    assert prompts == {"p1": "lofi beats\nrainy night, soft piano", "p4": "sad piano"}
    assert _quarantine(tables, "user_prompts") == [("prompts.csv", "empty_text"), ("prompts.json", "malformed_record"),
                                                    ("prompts.json", "malformed_record")]
    assert reps["user_prompts"].reconciles and reps["user_prompts"].read == 5


def test_reingest_is_idempotent_for_file_level_records(spark, ingested):
    tables, reps, root = ingested
    n_q = tables.read("quarantine").count()
    again = ingest_entity(spark, tables, "interactions", str(root / "raw" / "interactions"), RULES, "bad-2", now=NOW)
    assert (again.read, again.loaded, again.already_present, again.quarantined) == (50, 0, 26, 24)
    assert _files(again)["timestamps.csv"] == (9, 0, 7, 0, 2, None)
    assert all(f.reconciles for f in again.files)
    assert tables.read("quarantine").count() == n_q
    assert tables.read("interactions").count() == 26


def test_unreadable_source_fails_clearly(spark, tmp_path):
    tables = Tables(spark, warehouse=str(tmp_path / "wh"))
    with pytest.raises(InputError, match="does not exist"):
        ingest_entity(spark, tables, "tracks", str(tmp_path / "nowhere"), RULES, "r", now=NOW)
    with pytest.raises(InputError, match="does not exist"):
        ingest_all(spark, tables, str(tmp_path / "nowhere"), RULES, "r", now=NOW)
