"""Ingestion with validation: raw JSON lines / CSV / Parquet into the Delta tables.

Every raw record ends in exactly one place:

- its table (new rows are inserted with a Delta MERGE on the table key, so ingesting the same
  file twice adds nothing; tracks whose statistics changed are updated),
- ``already_present`` (valid, and that key is already in the table), or
- ``quarantine`` with the raw record and a reason.

so ``read = loaded + already_present + quarantined`` (checked and logged for every entity).

Reasons: ``malformed_record`` (unparseable JSON / CSV line), ``broken_encoding`` (invalid UTF-8,
seen as U+FFFD), ``null_key:<field>``, ``unknown_event_type``, ``negative_weight``,
``non_numeric_weight``, ``unparseable_timestamp``, ``timestamp_out_of_range``,
``future_timestamp``, ``unknown_track_id``, ``invalid_count``, ``invalid_duration``,
``empty_text``, ``oversize_field``, ``duplicate`` (same key earlier in the same batch),
``invalid_id:<field>`` (an id holding a JSON object/array or control characters such as NUL),
and for whole files that cannot be read: ``unsupported_file`` (unknown extension) and
``unreadable_file`` (corrupt archive, not Parquet); such a file is one record.
The first failing rule is the reason.

Raw columns are read as strings, so a new optional column in the input is carried along in the raw
record and ignored, never an error.
"""

from __future__ import annotations

import bz2
import csv as csvmod
import datetime as dt
import glob
import gzip
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..tables import Tables

log = logging.getLogger(__name__)

RAW_FIELDS = {
    "tracks": ["track_id", "creator_id", "title", "prompt", "tags", "genre", "duration_s", "created_at",
               "audio_uri", "play_count", "upvote_count", "comment_count"],
    "interactions": ["user_id", "track_id", "event_ts", "event_type", "weight"],
    "user_prompts": ["prompt_id", "user_id", "prompt_text", "created_at"],
}
KEYS = {"tracks": ["track_id"], "interactions": ["user_id", "track_id", "event_ts", "event_type"],
        "user_prompts": ["prompt_id"]}
TS_FORMATS = ("yyyy-MM-dd'T'HH:mm:ss'Z'", "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'", "yyyy-MM-dd'T'HH:mm:ssXXX",
              "yyyy-MM-dd'T'HH:mm:ss.SSSXXX", "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd")
EXTENSIONS = {".json": "json", ".jsonl": "json", ".ndjson": "json", ".csv": "csv", ".parquet": "parquet"}
COMPRESSED = (".gz", ".bz2")  # codecs Spark picks from the extension (JSON lines and CSV)


@dataclass(frozen=True)
class Rules:
    """Validation limits (mirrors ``IngestConf``)."""

    event_types: Tuple[str, ...] = ("play", "complete", "upvote", "comment", "share", "download", "remix", "skip")
    default_weights: Dict[str, float] = field(default_factory=dict)
    max_text_chars: int = 4000
    max_title_chars: int = 300
    future_tolerance_hours: int = 24
    min_event_year: int = 2000

    @classmethod
    def from_conf(cls, conf) -> "Rules":
        return cls(event_types=tuple(conf.default_weights), default_weights=dict(conf.default_weights),
                   max_text_chars=conf.max_text_chars, max_title_chars=conf.max_title_chars,
                   future_tolerance_hours=conf.future_tolerance_hours, min_event_year=conf.min_event_year)


@dataclass
class IngestReport:
    entity: str
    read: int = 0
    loaded: int = 0
    updated: int = 0
    already_present: int = 0
    quarantined: int = 0
    reasons: Dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def reconciles(self) -> bool:
        return self.read == self.loaded + self.updated + self.already_present + self.quarantined


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------


def _format_of(base: str) -> Optional[str]:
    """``json`` / ``csv`` / ``parquet`` from a file name (``x.json.gz`` is JSON), else None."""
    stem, ext = os.path.splitext(base.lower())
    if ext in COMPRESSED:
        fmt = EXTENSIONS.get(os.path.splitext(stem)[1])
        return fmt if fmt in ("json", "csv") else None
    return EXTENSIONS.get(ext)


def list_raw_files(path: str) -> Dict[str, List[str]]:
    """Files under ``path`` (a file or a folder), grouped by format; Spark side files ignored.

    Files of no known format are listed under ``"unsupported"`` (they are quarantined, not ignored).
    """
    if os.path.isfile(path):
        files = [path]
    else:
        files = [f for f in glob.glob(os.path.join(path, "**", "*"), recursive=True) if os.path.isfile(f)]
    out: Dict[str, List[str]] = {}
    for f in sorted(files):
        base = os.path.basename(f)
        if base.startswith((".", "_")):
            continue
        out.setdefault(_format_of(base) or "unsupported", []).append(os.path.abspath(f))
    return out


def _string_schema(fields: Sequence[str], corrupt: Optional[str] = None) -> T.StructType:
    cols = [T.StructField(f, T.StringType()) for f in fields]
    if corrupt:
        cols.append(T.StructField(corrupt, T.StringType()))
    return T.StructType(cols)


def _open(path: str):
    if path.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    if path.lower().endswith(".bz2"):
        return bz2.open(path, "rb")
    return open(path, "rb")


def _check_file(path: str, fmt: str) -> Tuple[Optional[str], bytes]:
    """``(problem, first line)`` of a raw file, read on the driver (headers and footers only,
    except compressed files, which are decompressed once to check their integrity: Spark fails
    the whole read on a corrupt archive)."""
    try:
        if fmt == "parquet":
            size = os.path.getsize(path)
            with open(path, "rb") as fh:
                head = fh.read(4)
                fh.seek(max(0, size - 4))
                tail = fh.read(4)
            return (None, b"") if size >= 12 and head == b"PAR1" and tail == b"PAR1" else \
                ("not a parquet file (no PAR1 magic)", b"")
        with _open(path) as fh:
            first = fh.readline(1 << 20)
            if path.lower().endswith(COMPRESSED):
                while fh.read(1 << 20):
                    pass
        return None, first
    except (OSError, EOFError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"[:300], b""


def _first_text(line: bytes) -> str:
    return line.decode("utf-8", "replace").lstrip("\ufeff").strip()


def _file_records(spark: SparkSession, fields: Sequence[str], rows: List[Tuple[str, str, str]]) -> DataFrame:
    """One record per unusable file: ``(path, error, description)``; quarantined with the error."""
    schema = _string_schema(list(fields) + ["_raw", "_source", "_error"]).add("_malformed", T.BooleanType())
    data = [tuple([None] * len(fields)) + (desc, Path(pth).as_uri(), err, False) for pth, err, desc in rows]
    return spark.createDataFrame(data, schema)


def _csv_schema(header: str, corrupt: str) -> T.StructType:
    """String schema named after a CSV header (BOM and quotes stripped, blanks/duplicates renamed)."""
    names: List[str] = []
    for i, col in enumerate(next(csvmod.reader([header]), [])):
        name = col.strip().strip("\ufeff").strip()
        if not name or name in names or name == corrupt:
            name = f"_c{i}"
        names.append(name)
    return _string_schema(names, corrupt)


def read_raw(spark: SparkSession, path: str, entity: str) -> DataFrame:
    """Raw records of ``entity`` under ``path`` as strings.

    Robust to what real landing folders hold: a UTF-8 BOM, CRLF line ends, ``.gz`` / ``.bz2``
    JSON and CSV, CSV files with different headers (missing, extra or reordered columns; read per
    header) and quoted multi-line fields, JSON arrays instead of JSON lines, Parquet files with
    different column types (read per schema), empty files. A file that cannot be read at all
    (unknown extension, corrupt archive, not Parquet) becomes one quarantined record
    (``unsupported_file`` / ``unreadable_file``) instead of failing the ingestion.

    Returns
    -------
    DataFrame
        One string column per field of ``RAW_FIELDS[entity]`` plus ``_raw`` (the record as read),
        ``_source`` (file), ``_malformed`` (boolean: the record could not be parsed) and
        ``_error`` (``unsupported_file`` / ``unreadable_file`` for a whole unusable file, else null).
    """
    fields = RAW_FIELDS[entity]
    parts: List[DataFrame] = []
    groups = list_raw_files(path)
    bad_files: List[Tuple[str, str, str]] = [
        (f, "unsupported_file", f"unsupported file {os.path.basename(f)} ({os.path.getsize(f)} bytes)")
        for f in groups.get("unsupported", [])]
    checked: Dict[str, List[Tuple[str, bytes]]] = {}
    for fmt in ("json", "csv", "parquet"):
        for f in groups.get(fmt, []):
            problem, first = _check_file(f, fmt)
            if problem:
                bad_files.append((f, "unreadable_file", f"unreadable {fmt} file {os.path.basename(f)}: {problem}"))
            else:
                checked.setdefault(fmt, []).append((f, first))
    for f, err, desc in bad_files:
        log.warning("ingest %s: %s -> quarantined as %s", entity, desc, err)

    def _tail(df: DataFrame, raw: Column, malformed: Column) -> DataFrame:
        return df.select(*[F.col(f).cast("string").alias(f) for f in fields], raw.alias("_raw"),
                         F.col("_metadata.file_path").alias("_source"), F.lit(None).cast("string").alias("_error"),
                         malformed.alias("_malformed"))

    json_files = checked.get("json", [])
    lines_files = [f for f, first in json_files if not _first_text(first).startswith("[")]
    array_files = [f for f, first in json_files if _first_text(first).startswith("[")]
    if lines_files:
        txt = spark.read.text(lines_files).select(
            F.col("value").alias("_raw"), F.col("_metadata.file_path").alias("_source"))
        txt = txt.where(F.length(F.trim(F.col("_raw"))) > 0)
        body = F.regexp_replace(F.col("_raw"), "^\ufeff", "")
        parsed = txt.withColumn("_p", F.from_json(body, _string_schema(fields, "_corrupt"),
                                                  {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt"}))
        parts.append(parsed.select(*[F.col(f"_p.{f}").alias(f) for f in fields], "_raw", "_source",
                                   F.lit(None).cast("string").alias("_error"),
                                   (F.col("_p").isNull() | F.col("_p._corrupt").isNotNull()).alias("_malformed")))
    if array_files:
        # a JSON array (one document per file) instead of JSON lines: one record per element
        log.warning("ingest %s: %d file(s) hold a JSON array instead of JSON lines; read element-wise",
                    entity, len(array_files))
        arr = (spark.read.schema(_string_schema(fields, "_corrupt")).option("multiLine", True)
               .option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", "_corrupt").json(array_files))
        parts.append(_tail(arr, F.coalesce(F.col("_corrupt"), F.to_json(F.struct(*[F.col(f) for f in fields]))),
                           F.col("_corrupt").isNotNull()))
    by_header: Dict[str, List[str]] = {}
    for f, first in checked.get("csv", []):
        header = first.decode("utf-8", "replace").lstrip("\ufeff").rstrip("\r\n")
        if header.strip():  # an empty file holds no records
            by_header.setdefault(header, []).append(f)
    for header, files in by_header.items():
        # one read per distinct header: Spark takes the schema of the first file for all files
        corrupt = "_corrupt_record_"
        schema = _csv_schema(header, corrupt)
        csv = (spark.read.schema(schema).option("header", True).option("mode", "PERMISSIVE")
               .option("multiLine", True).option("columnNameOfCorruptRecord", corrupt).csv(files))
        present = [c.name for c in schema.fields if not c.name.startswith("_")]
        for f in fields:
            if f not in csv.columns:
                csv = csv.withColumn(f, F.lit(None).cast("string"))
        as_json = F.to_json(F.struct(*[F.col(c) for c in present])) if present else F.lit("{}")
        parts.append(_tail(csv, F.coalesce(F.col(corrupt), as_json), F.col(corrupt).isNotNull()))
    if checked.get("parquet"):
        import pyarrow.parquet as pq_meta

        # pandas writes TIMESTAMP(NANOS), which Spark only reads as a long (parsed below as epoch ns)
        spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
        by_schema: Dict[str, List[str]] = {}
        for f, _ in checked["parquet"]:
            try:
                key = str(pq_meta.read_schema(f).remove_metadata())
            except Exception as exc:  # noqa: BLE001 - a corrupt footer is a bad file, not a crash
                bad = (f, "unreadable_file", f"unreadable parquet file {os.path.basename(f)}: {exc}"[:300])
                log.warning("ingest %s: %s", entity, bad[2])
                bad_files.append(bad)
                continue
            by_schema.setdefault(key, []).append(f)
        for files in by_schema.values():
            # one read per distinct schema: incompatible column types across files cannot be merged
            pq = spark.read.parquet(*files)
            present = list(pq.columns)
            for f in fields:
                if f not in pq.columns:
                    pq = pq.withColumn(f, F.lit(None).cast("string"))
            as_str = [(F.date_format(F.col(f), "yyyy-MM-dd'T'HH:mm:ss'Z'")
                       if isinstance(pq.schema[f].dataType, T.TimestampType) else F.col(f).cast("string")).alias(f)
                      for f in fields]
            parts.append(pq.select(*as_str, F.to_json(F.struct(*[F.col(c) for c in present])).alias("_raw"),
                                   F.col("_metadata.file_path").alias("_source"),
                                   F.lit(None).cast("string").alias("_error"), F.lit(False).alias("_malformed")))
    if bad_files:
        parts.append(_file_records(spark, fields, bad_files))
    if not parts:
        return spark.createDataFrame([], _string_schema(list(fields) + ["_raw", "_source", "_error"])
                                     .add("_malformed", T.BooleanType()))
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out


# ------------------------------------------------------------------------------------------------
# parsing helpers
# ------------------------------------------------------------------------------------------------


def parse_timestamp(col: Column) -> Column:
    """ISO-8601 strings (several layouts) or unix seconds / ms / µs / ns (by magnitude) -> timestamp, else null."""
    s = F.trim(col)
    num = s.try_cast("double")
    from_num = F.when(num.isNotNull() & (F.abs(num) < 1e11), F.timestamp_seconds(num.cast("long"))) \
        .when(num.isNotNull() & (F.abs(num) < 1e14), F.timestamp_millis(num.cast("long"))) \
        .when(num.isNotNull() & (F.abs(num) < 1e17), F.timestamp_micros(num.cast("long"))) \
        .when(num.isNotNull(), F.timestamp_micros((s.try_cast("long") / 1000).cast("long")))
    iso = F.coalesce(*[F.try_to_timestamp(s, F.lit(fmt)) for fmt in TS_FORMATS])
    return F.when(s.rlike(r"^-?[0-9]+(\.[0-9]+)?$"), from_num).otherwise(iso)


def _blank(c: Column) -> Column:
    return c.isNull() | (F.length(F.trim(c)) == 0)


def _finite_number(c: Column) -> Column:
    v = c.try_cast("double")
    return F.when(v.isNull() | F.isnan(v) | (F.abs(v) == float("inf")), None).otherwise(v)


def _first_reason(rules: List[Tuple[str, Column]]) -> Column:
    expr = F.lit(None).cast("string")
    for reason, cond in reversed(rules):
        expr = F.when(cond, F.lit(reason)).otherwise(expr)
    return expr


def _oversize(cols: Sequence[str], limit: int) -> Column:
    return F.greatest(*[F.coalesce(F.length(F.col(c)), F.lit(0)) for c in cols], F.lit(0)) > limit


def _common_rules(fields: Sequence[str], keys: Sequence[str], file_error: bool = False) -> List[Tuple[str, Column]]:
    rules: List[Tuple[str, Column]] = []
    if file_error:
        rules.append(("unsupported_file", F.col("_error") == "unsupported_file"))
        rules.append(("unreadable_file", F.col("_error") == "unreadable_file"))
    rules.append(("malformed_record", F.col("_malformed")))
    rules.append(("broken_encoding", ~F.is_valid_utf8(F.col("_raw")) | F.col("_raw").contains("\ufffd")))
    for k in keys:
        rules.append((f"null_key:{k}", _blank(F.col(k))))
    # ids are scalars: a JSON object / array, or control characters (NUL, newline), is not an id
    for k in keys:
        if k.endswith("_id"):
            rules.append((f"invalid_id:{k}", F.col(k).rlike("[\\x00-\\x1f\\x7f]") | F.trim(F.col(k)).rlike("^[\\[{]")))
    return rules


def validate(raw: DataFrame, entity: str, rules: Rules, now: dt.datetime,
             known_tracks: Optional[DataFrame] = None) -> DataFrame:
    """Typed rows plus a ``_reason`` column (null for valid rows); duplicates flagged too."""
    future_limit = F.lit(now + dt.timedelta(hours=rules.future_tolerance_hours))
    min_ts = F.lit(dt.datetime(rules.min_event_year, 1, 1))
    ferr = "_error" in raw.columns
    if entity == "interactions":
        df = raw.withColumn("_ts", parse_timestamp(F.col("event_ts")))
        df = df.withColumn("_type", F.lower(F.trim(F.col("event_type"))))
        df = df.withColumn("_w", _finite_number(F.col("weight")))
        checks = _common_rules(RAW_FIELDS[entity], ["user_id", "track_id", "event_ts", "event_type"], ferr) + [
            ("unknown_event_type", ~F.col("_type").isin(*rules.event_types)),
            ("non_numeric_weight", ~_blank(F.col("weight")) & F.col("_w").isNull()),
            ("negative_weight", F.col("_w") < 0),
            ("unparseable_timestamp", F.col("_ts").isNull()),
            ("timestamp_out_of_range", F.col("_ts") < min_ts),
            ("future_timestamp", F.col("_ts") > future_limit),
            ("oversize_field", _oversize(RAW_FIELDS[entity], rules.max_text_chars)),
        ]
        if known_tracks is not None:
            kt = known_tracks.select(F.col("track_id").alias("_kt")).distinct()
            df = df.join(kt, F.trim(df["track_id"]) == kt["_kt"], "left")
            checks.append(("unknown_track_id", F.col("_kt").isNull()))
        defaults = F.create_map(*[x for k, v in rules.default_weights.items() for x in (F.lit(k), F.lit(float(v)))])
        typed = df.select(
            F.trim("user_id").alias("user_id"), F.trim("track_id").alias("track_id"),
            F.col("_ts").alias("event_ts"), F.col("_type").alias("event_type"),
            F.coalesce(F.col("_w"), F.element_at(defaults, F.col("_type")), F.lit(1.0)).alias("weight"),
            F.to_date("_ts").alias("event_date"), "_raw", "_source", _first_reason(checks).alias("_reason"))
    elif entity == "tracks":
        df = raw.withColumn("_created", parse_timestamp(F.col("created_at")))
        counts = ["play_count", "upvote_count", "comment_count"]
        for c in counts:
            df = df.withColumn(f"_{c}", _finite_number(F.col(c)))
        df = df.withColumn("_dur", _finite_number(F.col("duration_s")))
        bad_count = F.lit(False)
        for c in counts:
            bad_count = bad_count | (~_blank(F.col(c)) & (F.col(f"_{c}").isNull() | (F.col(f"_{c}") < 0)))
        checks = _common_rules(RAW_FIELDS[entity], ["track_id", "creator_id"], ferr) + [
            ("oversize_field", (F.coalesce(F.length("title"), F.lit(0)) > rules.max_title_chars)
             | _oversize(["prompt", "tags", "audio_uri", "genre"], rules.max_text_chars)),
            ("invalid_count", bad_count),
            ("invalid_duration", ~_blank(F.col("duration_s")) & (F.col("_dur").isNull() | (F.col("_dur") < 0))),
            ("unparseable_timestamp", ~_blank(F.col("created_at")) & F.col("_created").isNull()),
            ("future_timestamp", F.col("_created") > future_limit),
        ]
        tags = F.when(F.trim(F.col("tags")).startswith("["),
                      F.from_json(F.col("tags"), T.ArrayType(T.StringType()))) \
            .otherwise(F.split(F.coalesce(F.col("tags"), F.lit("")), r"\s*[,|;]\s*"))
        tags = F.filter(F.transform(tags, lambda x: F.lower(F.trim(x))), lambda x: F.length(x) > 0)
        typed = df.select(
            F.trim("track_id").alias("track_id"), F.trim("creator_id").alias("creator_id"), "title", "prompt",
            tags.alias("tags"), F.lower(F.trim("genre")).alias("genre"), F.col("_dur").alias("duration_s"),
            F.col("_created").alias("created_at"), "audio_uri",
            *[F.coalesce(F.col(f"_{c}"), F.lit(0.0)).cast("long").alias(c) for c in counts],
            "_raw", "_source", _first_reason(checks).alias("_reason"))
    elif entity == "user_prompts":
        df = raw.withColumn("_created", parse_timestamp(F.col("created_at")))
        checks = _common_rules(RAW_FIELDS[entity], ["prompt_id", "user_id"], ferr) + [
            ("empty_text", _blank(F.col("prompt_text"))),
            ("oversize_field", _oversize(RAW_FIELDS[entity], rules.max_text_chars)),
            ("unparseable_timestamp", ~_blank(F.col("created_at")) & F.col("_created").isNull()),
            ("future_timestamp", F.col("_created") > future_limit),
        ]
        typed = df.select(F.trim("prompt_id").alias("prompt_id"), F.trim("user_id").alias("user_id"),
                          F.trim("prompt_text").alias("prompt_text"), F.col("_created").alias("created_at"),
                          "_raw", "_source", _first_reason(checks).alias("_reason"))
    else:
        raise ValueError(f"unknown entity {entity!r}")
    # duplicates of the key inside this batch: keep the first (deterministic order), flag the rest
    keys = KEYS[entity]
    w = Window.partitionBy(*keys).orderBy(F.col("_reason").isNotNull(), F.col("_source"), F.col("_raw"))
    dup = F.when(F.col("_reason").isNull(), F.row_number().over(w) > 1).otherwise(F.lit(False))
    return typed.withColumn("_reason", F.when(dup, F.lit("duplicate")).otherwise(F.col("_reason")))


def quarantine_rows(df: DataFrame, entity: str, run_id: str, now: dt.datetime) -> DataFrame:
    """Rows with a ``_reason`` shaped for the quarantine table."""
    bad = df.where(F.col("_reason").isNotNull())
    return bad.select(
        F.concat(F.lit(entity + ":"), F.col("_source")).alias("source"),
        F.lit(entity).alias("entity"),
        F.col("_raw").alias("raw_record"),
        F.col("_reason").alias("reason"),
        F.sha2(F.concat_ws("\u0001", F.lit(entity), F.col("_raw"), F.col("_reason")), 256).alias("record_hash"),
        F.lit(run_id).alias("run_id"),
        F.lit(now).alias("ingested_at"),
        F.lit(now.date()).alias("ingest_date"),
    ).dropDuplicates(["record_hash"])


# ------------------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------------------


def _merge_metrics(tables: Tables, name: str, version_before: Optional[int]) -> Dict[str, int]:
    """Operation metrics of the last commit, or {} when the MERGE committed nothing."""
    if tables.version(name) == version_before:
        return {}
    row = tables.delta(name).history(1).select("operation", "operationMetrics").first()
    m = row["operationMetrics"] or {}
    return {k: int(v) for k, v in m.items() if str(v).isdigit()}


def ingest_entity(spark: SparkSession, tables: Tables, entity: str, path: str, rules: Rules,
                  run_id: str, now: Optional[dt.datetime] = None) -> IngestReport:
    """Load one entity's raw files into its Delta table; bad rows to quarantine.

    Parameters
    ----------
    spark, tables
    entity : {"tracks", "interactions", "user_prompts"}
    path : str
        File or folder of raw files (``.json``/``.jsonl``, ``.csv``, ``.parquet``).
    rules : Rules
    run_id : str
    now : datetime, optional
        Reference time for the future-timestamp rule (UTC, naive); defaults to now.

    Returns
    -------
    IngestReport
        ``read == loaded + updated + already_present + quarantined`` holds (``reconciles``).
    """
    t0 = time.time()
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    report = IngestReport(entity)
    raw = read_raw(spark, path, entity)
    known = tables.read("tracks").select("track_id") if entity == "interactions" else None
    checked = validate(raw, entity, rules, now, known).persist()
    try:
        report.read = checked.count()
        if report.read == 0:
            log.warning("ingest %s: no records under %s", entity, path)
            return report
        reasons = {r["_reason"]: int(r["n"]) for r in
                   checked.where(F.col("_reason").isNotNull()).groupBy("_reason").agg(F.count("*").alias("n")).collect()}
        report.reasons = reasons
        report.quarantined = sum(reasons.values())
        good = checked.where(F.col("_reason").isNull()).drop("_raw", "_source", "_reason") \
            .withColumn("ingested_at", F.lit(now))
        n_good = report.read - report.quarantined
        if n_good:
            before = tables.version(entity)
            if entity == "tracks":
                tables.upsert("tracks", good, KEYS[entity],
                              changed=["play_count", "upvote_count", "comment_count", "title", "prompt", "tags",
                                       "audio_uri", "duration_s", "genre", "creator_id", "created_at"])
                m = _merge_metrics(tables, "tracks", before)
                report.loaded = m.get("numTargetRowsInserted", 0)
                report.updated = m.get("numTargetRowsUpdated", 0)
            else:
                tables.merge_insert_new(entity, good, KEYS[entity])
                report.loaded = _merge_metrics(tables, entity, before).get("numTargetRowsInserted", 0)
        report.already_present = n_good - report.loaded - report.updated
        q = quarantine_rows(checked, entity, run_id, now)
        if report.quarantined:
            tables.merge_insert_new("quarantine", q, ["record_hash"])
    finally:
        checked.unpersist()
    report.seconds = round(time.time() - t0, 2)
    log.info("ingest %s: read=%d loaded=%d updated=%d already_present=%d quarantined=%d %s (%.1fs)",
             entity, report.read, report.loaded, report.updated, report.already_present, report.quarantined,
             report.reasons, report.seconds)
    if not report.reconciles:
        raise RuntimeError(f"ingest {entity}: counts do not reconcile: {report}")
    return report


def ingest_all(spark: SparkSession, tables: Tables, raw_dir: str, rules: Rules, run_id: str,
               now: Optional[dt.datetime] = None) -> Dict[str, IngestReport]:
    """Ingest ``raw_dir/{tracks,interactions,user_prompts}`` in dependency order (tracks first)."""
    reports = {}
    for entity in ("tracks", "interactions", "user_prompts"):
        p = os.path.join(raw_dir, entity)
        if os.path.exists(p):
            reports[entity] = ingest_entity(spark, tables, entity, p, rules, run_id, now)
        else:
            log.warning("ingest: %s has no %s folder; skipped", raw_dir, entity)
    return reports
