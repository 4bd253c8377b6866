"""A file that passes the checks on its header / footer but breaks while Spark reads it."""

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import functions as F

from recsys_spark.data.ingest import Rules, ingest_entity
from recsys_spark.tables import Tables


def test_parquet_with_a_corrupt_page_is_quarantined_whole_and_the_batch_goes_on(spark, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    pq.write_table(pa.table({"track_id": [f"t{i}" for i in range(200)], "creator_id": ["c"] * 200,
                             "title": [f"title number {i} " * 5 for i in range(200)]}), str(raw / "page.parquet"))
    data = bytearray((raw / "page.parquet").read_bytes())
    data[200:900] = b"\xff" * 700  # inside the first data page; the footer (and its row count) intact
    (raw / "page.parquet").write_bytes(bytes(data))
    (raw / "ok.json").write_text('{"track_id": "t_ok", "creator_id": "c1"}\n')
    tables = Tables(spark, warehouse=str(tmp_path / "wh"))
    rep = ingest_entity(spark, tables, "tracks", str(raw), Rules(), "r1", now=dt.datetime(2026, 11, 23))
    files = {f.path.rsplit("/", 1)[-1]: (f.seen, f.parsed, f.loaded, f.quarantined, f.reason) for f in rep.files}
    assert files == {"page.parquet": (1, 0, 0, 1, "record_count_mismatch"), "ok.json": (1, 1, 1, 0, None)}
    assert [r["track_id"] for r in tables.read("tracks").collect()] == ["t_ok"]
    q = tables.read("quarantine").where(F.col("reason") == "record_count_mismatch").first()
    assert q["source"].endswith("page.parquet") and "200 records counted" in q["raw_record"]
