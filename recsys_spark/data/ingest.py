"""Ingestion with validation: raw JSON lines / CSV / Parquet into the Delta tables.

Every raw record ends in exactly one place:

- its table (new rows are inserted with a Delta MERGE on the table key, so ingesting the same
  file twice adds nothing; tracks whose statistics changed are updated),
- ``already_present`` (valid, and that key is already in the table),
- ``duplicate`` (same key earlier in the same batch; quarantined with that reason), or
- ``quarantine`` with the raw record and a reason.

**Per file**, ``seen = loaded + updated + already_present + duplicates + quarantined``
(:class:`FileReport`), where ``seen`` is counted independently of the Spark parser: records
of a CSV file by Python's ``csv`` module (RFC 4180, header excluded), non-blank lines of a JSON
lines file, rows of a Parquet file from its footer. A file whose parsed records do not add up to
``seen`` is quarantined whole (``record_count_mismatch``) and none of its rows is loaded.

**Isolation.** A bad value quarantines its row; a bad file is quarantined whole as one record with
a file-level reason and never fails the others; only an unusable *source* (missing path, no
permission) fails the run (:class:`~recsys_spark.validation.InputError`).

Formats:

- JSON lines: one object per line. A JSON array, pretty-printed JSON or concatenated objects is
  a file-level reason when the file starts that way (``json_array_file``,
  ``pretty_printed_json``, ``concatenated_json``), and a row-level one (``json_array_line``,
  ``concatenated_json``) on a later line.
- CSV (RFC 4180: ``""`` inside quotes, quoted newlines) with a required header, matched
  case-insensitively after trimming (``User_ID`` is ``user_id``); ``,`` ``;`` tab and ``|``
  delimiters are recognised from the header. No known column in the first record:
  ``csv_missing_header``; a quote left open at the end of the file: ``csv_unterminated_quote``.
- Parquet: columns matched like CSV headers; ``list<string>`` tags kept as tags; other nested
  values (struct / map / list) rejected per row as ``nested_value:<field>``; TIMESTAMP(NANOS)
  read exactly.
- Compression is recognised by content (magic bytes), not by name: gzip / bzip2 are read
  whatever the file is called; zstd / xz / zip content is ``unsupported_compression``; a
  ``.gz`` file holding plain text is read as text; binary content in a text format is
  ``binary_file``; Parquet bytes named ``.json`` / ``.csv`` are ``format_mismatch``.
- Timestamps: ISO-8601 / RFC 3339 in their common forms (``T`` or space, 0-9 fractional digits
  (kept to the microsecond), ``Z``, ``+00:00``, ``+0000``, ``+00``, a space before the offset,
  date only). Numbers are epoch timestamps in the unit configured per entity
  (``Rules.epoch_units``: ``s`` / ``ms`` / ``us`` / ``ns``, default ``s``): never guessed from
  the magnitude.
- Numbers: counts are checked integers in ``[0, 2^63)``, never cast with overflow; ``1e30``,
  ``"1e19"`` and ``2^63`` are ``invalid_count``, not errors and not clamped.
- Ids: one rule (:func:`recsys_spark.validation.normalize_id`): NFC, edge whitespace and
  invisible characters removed; a control / format character inside or a JSON object / array is
  ``invalid_id:<field>``.

Row reasons: ``malformed_record``, ``broken_encoding`` (invalid UTF-8, seen as U+FFFD),
``null_key:<field>``, ``invalid_id:<field>``, ``nested_value:<field>``, ``json_array_line``,
``concatenated_json``, ``unknown_event_type``, ``negative_weight``, ``non_numeric_weight``,
``unparseable_timestamp``, ``timestamp_out_of_range``, ``future_timestamp``,
``unknown_track_id``, ``invalid_count``, ``invalid_duration``, ``empty_text``,
``oversize_field``, ``duplicate``. File reasons: ``unsupported_file``, ``unreadable_file``,
``unsupported_compression``, ``unsupported_encoding`` (UTF-16 / UTF-32), ``binary_file``,
``format_mismatch``, ``json_array_file``,
``pretty_printed_json``, ``concatenated_json``, ``csv_missing_header``,
``csv_unterminated_quote``, ``record_count_mismatch``. The first failing rule is the reason.

The quarantine keeps what it rejects: a row's raw line (CSV rows as JSON of their named fields;
malformed CSV rows as the raw text), a whole file as a JSON envelope
``{"file", "bytes", "detail", "encoding": "utf-8"|"base64", "truncated", "content"}``; both are
capped at ``Rules.max_raw_bytes``.

Raw columns are read as strings, so a new optional column in the input is carried along in the raw
record and ignored, never an error.
"""

from __future__ import annotations

import base64
import bz2
import codecs
import csv as csvmod
import dataclasses
import datetime as dt
import glob
import gzip
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..config import IngestConf
from ..tables import Tables
from ..validation import InputError, check_input_path, id_problem, normalize_id

log = logging.getLogger(__name__)

RAW_FIELDS = {
    "tracks": ["track_id", "creator_id", "title", "prompt", "tags", "genre", "duration_s", "created_at",
               "audio_uri", "play_count", "upvote_count", "comment_count"],
    "interactions": ["user_id", "track_id", "event_ts", "event_type", "weight"],
    "user_prompts": ["prompt_id", "user_id", "prompt_text", "created_at"],
}
KEYS = {"tracks": ["track_id"], "interactions": ["user_id", "track_id", "event_ts", "event_type"],
        "user_prompts": ["prompt_id"]}
ID_FIELDS = {"tracks": ["track_id", "creator_id"], "interactions": ["user_id", "track_id"],
             "user_prompts": ["prompt_id", "user_id"]}
LIST_FIELDS = {"tags"}  # Parquet list<string> columns kept (as a JSON array string, parsed like "[...]" text)
EXTENSIONS = {".json": "json", ".jsonl": "json", ".ndjson": "json", ".csv": "csv", ".parquet": "parquet"}
COMPRESSED = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bzip2"}
EPOCH_FACTORS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
MAGIC = [(b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\xfd7zXZ\x00", "xz"),
         (b"PK\x03\x04", "zip"), (b"PAR1", "parquet")]
HEAD_BYTES = 1 << 16
CSV_DELIMITERS = (",", ";", "\t", "|")

_CONF = IngestConf()


@dataclass(frozen=True)
class Rules:
    """Validation limits: the ``ingest`` section of the configuration plus ingestion-only settings.

    Every field that ``IngestConf`` also has takes its default from ``IngestConf`` and its value
    from the configuration in :meth:`from_conf`; the others (``epoch_units``, ``max_raw_bytes``,
    ``staging_dir``) are read from the configuration too as soon as it has them.
    """

    event_types: Tuple[str, ...] = tuple(_CONF.default_weights)
    default_weights: Dict[str, float] = field(default_factory=lambda: dict(_CONF.default_weights))
    max_text_chars: int = _CONF.max_text_chars
    max_title_chars: int = _CONF.max_title_chars
    future_tolerance_hours: int = _CONF.future_tolerance_hours
    min_event_year: int = _CONF.min_event_year
    # unit of numeric (epoch) timestamps per entity; entities not listed use "s"
    epoch_units: Dict[str, str] = field(default_factory=lambda: dict(getattr(_CONF, "epoch_units", {}) or {}))
    max_raw_bytes: int = getattr(_CONF, "max_raw_bytes", 1 << 20)  # quarantine cap per record / file
    staging_dir: str = getattr(_CONF, "staging_dir", "")  # symlinks for Spark; "" = system temp (local)

    def __post_init__(self):
        for entity, unit in self.epoch_units.items():
            if unit not in EPOCH_FACTORS:
                raise ValueError(f"ingest epoch unit for {entity!r} must be one of {sorted(EPOCH_FACTORS)}, "
                                 f"got {unit!r}")
        if self.max_raw_bytes < 1024:
            raise ValueError(f"max_raw_bytes must be >= 1024, got {self.max_raw_bytes}")

    def epoch_unit(self, entity: str) -> str:
        return self.epoch_units.get(entity, "s")

    @classmethod
    def from_conf(cls, conf) -> "Rules":
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name != "event_types" and hasattr(conf, f.name):
                value = getattr(conf, f.name)
                kwargs[f.name] = dict(value) if isinstance(value, dict) else value
        weights = kwargs.get("default_weights", dict(_CONF.default_weights))
        return cls(event_types=tuple(weights), **kwargs)


@dataclass
class FileReport:
    """Accounting of one raw file: ``seen == loaded + updated + already_present + duplicates + quarantined``.

    ``seen`` is counted independently of the parser; a file quarantined whole counts as one
    record (``reason`` says why).
    """

    path: str
    format: str
    seen: int = 0
    parsed: int = 0
    loaded: int = 0
    updated: int = 0
    already_present: int = 0
    duplicates: int = 0
    quarantined: int = 0
    reason: Optional[str] = None
    detail: str = ""

    @property
    def reconciles(self) -> bool:
        return self.seen == self.loaded + self.updated + self.already_present + self.duplicates + self.quarantined


@dataclass
class IngestReport:
    """Totals of one entity (``quarantined`` includes ``duplicates``) and the per-file accounting."""

    entity: str
    read: int = 0
    loaded: int = 0
    updated: int = 0
    already_present: int = 0
    quarantined: int = 0
    duplicates: int = 0
    reasons: Dict[str, int] = field(default_factory=dict)
    files: List[FileReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def reconciles(self) -> bool:
        return (self.read == self.loaded + self.updated + self.already_present + self.quarantined
                and all(f.reconciles for f in self.files))


# ------------------------------------------------------------------------------------------------
# files: listing, sniffing, counting (driver / plain Python; no Spark)
# ------------------------------------------------------------------------------------------------


@dataclass
class RawFile:
    """One landing file as inspected: format by name, codec by content, a file-level problem."""

    path: str
    format: str  # json | csv | parquet | unsupported
    codec: Optional[str] = None  # gzip | bzip2 | None, from the magic bytes
    reason: Optional[str] = None  # file-level quarantine reason
    detail: str = ""
    delimiter: str = ","
    header: List[str] = field(default_factory=list)  # normalized CSV header
    seen: int = 0
    parquet_schema: object = None

    @property
    def uri(self) -> str:
        return Path(self.path).as_uri()


def _format_of(base: str) -> Tuple[Optional[str], Optional[str]]:
    """``(format, codec named)`` from a file name: ``x.json.gz`` is ``("json", "gzip")``."""
    stem, ext = os.path.splitext(base.lower())
    if ext in COMPRESSED:
        fmt = EXTENSIONS.get(os.path.splitext(stem)[1])
        return (fmt if fmt in ("json", "csv") else None), COMPRESSED[ext]
    return EXTENSIONS.get(ext), None


def list_raw_files(path: str) -> Dict[str, List[str]]:
    """Files under ``path`` (a file or a folder), grouped by format (by name); Spark side files
    (``_SUCCESS``, ``.crc``, hidden files) ignored. Files of no known format are listed under
    ``"unsupported"`` (they are quarantined, not ignored).

    Raises
    ------
    InputError
        ``path`` does not exist or cannot be read.
    """
    check_input_path(path, "ingest path")
    if os.path.isfile(path):
        files = [path]
    else:
        try:
            os.listdir(path)
        except OSError as exc:
            raise InputError(f"ingest path: cannot list {path}: {exc.strerror or exc}") from exc
        files = [f for f in glob.glob(os.path.join(glob.escape(path), "**", "*"), recursive=True)
                 if os.path.isfile(f)]
    out: Dict[str, List[str]] = {}
    for f in sorted(files):
        base = os.path.basename(f)
        if base.startswith((".", "_")):
            continue
        out.setdefault(_format_of(base)[0] or "unsupported", []).append(os.path.abspath(f))
    return out


def _magic(head: bytes) -> Optional[str]:
    for sig, name in MAGIC:
        if head.startswith(sig):
            return name
    return None


def _open_decoded(path: str, codec: Optional[str]):
    if codec == "gzip":
        return gzip.open(path, "rb")
    if codec == "bzip2":
        return bz2.open(path, "rb")
    return open(path, "rb")


def _binary_share(data: bytes) -> float:
    """Share of bytes that are neither text nor part of valid UTF-8 (0 for text, ~1 for binary)."""
    if not data:
        return 0.0
    text = data.decode("utf-8", "replace")
    bad = text.count("\ufffd") + sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f\x0b")
    return bad / max(1, len(text))


def _norm_col(name: str) -> str:
    return name.strip().lstrip("\ufeff").strip().lower()


def _sniff_csv(rf: RawFile, text: str, fields: Sequence[str]) -> None:
    first = re.split(r"\r\n|\r|\n", text, maxsplit=1)[0]
    if not first.strip():
        return
    best, best_hits, best_cols = ",", -1, []
    for d in CSV_DELIMITERS:
        cols = [_norm_col(c) for c in next(csvmod.reader([first], delimiter=d), [])]
        hits = len(set(cols) & set(fields))
        if hits > best_hits:
            best, best_hits, best_cols = d, hits, cols
    if best_hits <= 0:
        rf.reason, rf.detail = "csv_missing_header", f"first record {first[:200]!r} names no column of {list(fields)}"
        return
    rf.delimiter, rf.header = best, best_cols


def _sniff_json(rf: RawFile, text: str) -> None:
    lines = text.lstrip("\ufeff").split("\n")
    idx = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if idx is None:
        return
    first = lines[idx].strip()
    complete = idx + 1 < len(lines)  # the first line is whole (not cut by the head limit)
    dec = json.JSONDecoder()
    if first.startswith("["):
        rf.reason, rf.detail = "json_array_file", "the file holds a JSON array, not one JSON object per line"
        return
    try:
        _, end = dec.raw_decode(first)
        if first[end:].strip():
            rf.reason = "concatenated_json"
            rf.detail = "the first line holds more than one JSON value (concatenated objects), not JSON lines"
        return
    except json.JSONDecodeError:
        pass
    if not complete:
        return
    rest = "\n".join(lines[idx:]).strip()
    pretty = first in ("{", "[") or first.endswith(("{", "[", ","))
    if not pretty:
        try:
            dec.raw_decode(rest)
            pretty = True
        except json.JSONDecodeError:
            pass
    if pretty and first.startswith("{"):
        rf.reason, rf.detail = "pretty_printed_json", "JSON spread over several lines, not one object per line"


def inspect_file(path: str, entity: str) -> RawFile:
    """Sniff one file (its first 64 KiB; Parquet: its footer): codec, file-level problems."""
    fmt, named_codec = _format_of(os.path.basename(path))
    rf = RawFile(path, fmt or "unsupported")
    try:
        size = os.path.getsize(path)
        if fmt is None:
            rf.reason, rf.detail = "unsupported_file", f"unsupported file {os.path.basename(path)} ({size} bytes)"
            return rf
        with open(path, "rb") as fh:
            raw_head = fh.read(HEAD_BYTES)
        magic = _magic(raw_head)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            if magic != "parquet":
                rf.reason, rf.detail = "unreadable_file", "not a parquet file (no PAR1 magic)"
                return rf
            meta = pq.ParquetFile(path)
            rf.seen = meta.metadata.num_rows
            rf.parquet_schema = meta.schema_arrow
            return rf
        if magic in ("zstd", "xz", "zip"):
            rf.reason, rf.detail = "unsupported_compression", f"{magic} content (only gzip and bzip2 are read)"
            return rf
        if magic == "parquet":
            rf.reason, rf.detail = "format_mismatch", f"Parquet content in a file named as {fmt}"
            return rf
        if raw_head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)) \
                and not raw_head.startswith(codecs.BOM_UTF8):
            rf.reason, rf.detail = "unsupported_encoding", "UTF-16 / UTF-32 text (byte order mark); export as UTF-8"
            return rf
        rf.codec = magic if magic in ("gzip", "bzip2") else None
        if named_codec and not rf.codec:
            log.info("ingest: %s is named %s but holds plain text; read as text", path, named_codec)
        with _open_decoded(path, rf.codec) as fh:
            head = fh.read(HEAD_BYTES)
        if _binary_share(head) > 0.1:
            rf.reason, rf.detail = "binary_file", f"binary content in a {fmt} file"
            return rf
        text = head.decode("utf-8", "replace")
        if fmt == "csv":
            _sniff_csv(rf, text.lstrip("\ufeff"), RAW_FIELDS[entity])
        else:
            _sniff_json(rf, text)
        return rf
    except Exception as exc:  # noqa: BLE001 - an unreadable file is a file-level reason, never a crash
        rf.reason, rf.detail = "unreadable_file", f"{type(exc).__name__}: {exc}"[:300]
        return rf


def _json_segments(fh) -> Iterator[bytes]:
    """Lines as Hadoop's line reader splits them (LF, CR, CRLF)."""
    for line in fh:
        parts = line.rstrip(b"\n").split(b"\r")
        if len(parts) > 1 and parts[-1] == b"":
            parts = parts[:-1]
        yield from parts


def count_records(path: str, fmt: str, codec: Optional[str], delimiter: str = ",") -> Tuple[int, Optional[str], str]:
    """Records in a JSON lines / CSV file, counted without Spark: ``(count, file reason, detail)``.

    JSON lines: non-blank lines. CSV: RFC 4180 records (quoted newlines inside a record), header
    and blank lines excluded; a quote still open at the end of the file is
    ``csv_unterminated_quote``. Runs on executors (one task per few files).
    """
    try:
        with _open_decoded(path, codec) as fh:
            if fmt == "json":
                n = 0
                for i, seg in enumerate(_json_segments(fh)):
                    if i == 0 and seg.startswith(codecs.BOM_UTF8):
                        seg = seg[len(codecs.BOM_UTF8):]
                    if seg.strip(b" \t\r\n\x0b\x0c"):
                        n += 1
                return n, None, ""
            csvmod.field_size_limit(2 ** 31 - 1)  # a long quoted field is a field, not an error
            text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="replace", newline="")
            for strict in (True, False):
                text.seek(0) if strict is False else None
                try:
                    reader = csvmod.reader(text, delimiter=delimiter, quotechar='"', doublequote=True, strict=strict)
                    n = sum(1 for row in reader if row)
                    return max(0, n - 1), None, ""
                except csvmod.Error as exc:
                    if "unexpected end of data" in str(exc) or "EOF" in str(exc):
                        return (0, "csv_unterminated_quote",
                                f"a quoted field is still open at the end of the file ({exc})")
                    if not strict:
                        raise
            raise RuntimeError("unreachable")
    except Exception as exc:  # noqa: BLE001
        return 0, "unreadable_file", f"{type(exc).__name__}: {exc}"[:300]


def _count_task(item):
    path, fmt, codec, delimiter = item
    return (path,) + count_records(path, fmt, codec, delimiter)


def file_envelope(rf: RawFile, cap: int) -> str:
    """The quarantine record of a whole file: its bytes (up to ``cap``) in a JSON envelope."""
    try:
        size = os.path.getsize(rf.path)
        with open(rf.path, "rb") as fh:
            data = fh.read(cap)
    except OSError as exc:
        size, data = -1, b""
        rf.detail = rf.detail or f"{type(exc).__name__}: {exc}"
    try:
        content, enc = data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        content, enc = base64.b64encode(data).decode("ascii"), "base64"
    return json.dumps({"file": rf.uri, "bytes": size, "detail": rf.detail, "encoding": enc,
                       "truncated": size > len(data), "content": content}, ensure_ascii=False)


# ------------------------------------------------------------------------------------------------
# reading with Spark
# ------------------------------------------------------------------------------------------------


def _string_schema(fields: Sequence[str], corrupt: Optional[str] = None) -> T.StructType:
    cols = [T.StructField(f, T.StringType()) for f in fields]
    if corrupt:
        cols.append(T.StructField(corrupt, T.StringType()))
    return T.StructType(cols)


RAW_EXTRA = ["_raw", "_source", "_pre"]


def _empty_raw(spark: SparkSession, fields: Sequence[str]) -> DataFrame:
    return spark.createDataFrame([], _string_schema(list(fields) + RAW_EXTRA).add("_malformed", T.BooleanType()))


class _Staging:
    """Symlinks ``<dir>/<index>.<ext>`` to the landing files: the name tells Spark the codec (found
    by content) and maps every row back to its file through ``_metadata.file_name``."""

    def __init__(self, base: str = ""):
        if base:
            os.makedirs(base, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="ingest-staging-", dir=base or None)
        self.sources: Dict[int, str] = {}

    def link(self, rf: RawFile) -> str:
        i = len(self.sources)
        ext = {"json": ".json", "csv": ".csv", "parquet": ".parquet"}[rf.format]
        ext += {"gzip": ".gz", "bzip2": ".bz2"}.get(rf.codec or "", "")
        dest = os.path.join(self.dir, f"{i:07d}{ext}")
        os.symlink(os.path.abspath(rf.path), dest)
        self.sources[i] = rf.uri
        return dest

    def source_col(self) -> Column:
        idx = F.regexp_extract(F.col("_metadata.file_name"), r"^([0-9]+)", 1).cast("int")
        pairs = [x for k, v in self.sources.items() for x in (F.lit(k), F.lit(v))]
        return F.element_at(F.create_map(*pairs), idx) if pairs else F.lit(None).cast("string")

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def _read_json_lines(spark, files: List[str], fields: Sequence[str], st: _Staging) -> DataFrame:
    # a file that breaks while Spark reads it is skipped, not fatal: its count then differs from the
    # independent one and the file is quarantined whole (record_count_mismatch)
    txt = spark.read.option("ignoreCorruptFiles", True).text(files).select(F.col("value").alias("_line"), st.source_col().alias("_source"))
    body = F.regexp_replace(F.col("_line"), "^\ufeff", "")
    txt = txt.withColumn("_body", body).where(~F.col("_body").rlike("^[ \\t\\r\\n\\x0B\\f]*$"))
    parsed = txt.withColumn("_p", F.from_json(F.col("_body"), _string_schema(fields, "_corrupt"),
                                              {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt"}))
    # strings blanked out, what is left of a JSON object line must be one object: "}" is followed
    # only by "," "}" "]" or the end (from_json silently ignores a second object or trailing text)
    skeleton = F.trim(F.regexp_replace(F.col("_body"), r'"[^"\\]*+(?:\\.[^"\\]*+)*+"', '""'))
    pre = (F.when(skeleton.startswith("["), F.lit("json_array_line"))
           .when(skeleton.rlike(r"[}\]]\s*[^\s,}\]]"), F.lit("concatenated_json")))
    return parsed.select(*[F.col(f"_p.{f}").alias(f) for f in fields], F.col("_line").alias("_raw"), "_source",
                         pre.alias("_pre"),
                         (F.col("_p").isNull() | F.col("_p._corrupt").isNotNull()).alias("_malformed"))


def _read_csv(spark, files: List[str], header: List[str], delimiter: str, fields: Sequence[str],
              st: _Staging) -> DataFrame:
    corrupt = "_corrupt_record_"
    names: List[str] = []
    for i, name in enumerate(header):
        names.append(name if name and name not in names and name != corrupt else f"_c{i}")
    schema = _string_schema(names, corrupt)
    csv = (spark.read.schema(schema).option("header", True).option("enforceSchema", True)
           .option("ignoreCorruptFiles", True)
           .option("mode", "PERMISSIVE").option("multiLine", True).option("sep", delimiter)
           .option("quote", '"').option("escape", '"').option("columnNameOfCorruptRecord", corrupt).csv(files))
    as_json = F.to_json(F.struct(*[F.col(f"`{c}`") for c in names])) if names else F.lit("{}")
    cols = [(F.col(f"`{f}`") if f in names else F.lit(None).cast("string")).alias(f) for f in fields]
    return csv.select(*cols, F.coalesce(F.col(corrupt), as_json).alias("_raw"), st.source_col().alias("_source"),
                      F.lit(None).cast("string").alias("_pre"), F.col(corrupt).isNotNull().alias("_malformed"))


def _read_parquet(spark, files: List[str], schema, fields: Sequence[str], st: _Staging) -> DataFrame:
    import pyarrow as pa

    pq = spark.read.option("ignoreCorruptFiles", True).parquet(*files)
    by_norm: Dict[str, str] = {}
    for name in schema.names:
        by_norm.setdefault(_norm_col(name), name)
    cols, pre = [], []
    for f in fields:
        orig = by_norm.get(f)
        if orig is None:
            cols.append(F.lit(None).cast("string").alias(f))
            continue
        c = F.col(f"`{orig}`")
        at = schema.field(orig).type
        if pa.types.is_list(at) or pa.types.is_large_list(at):
            if f in LIST_FIELDS and (pa.types.is_string(at.value_type) or pa.types.is_large_string(at.value_type)):
                cols.append(F.to_json(c).alias(f))
            else:
                cols.append(F.to_json(c).alias(f))
                pre.append(F.when(c.isNotNull(), F.lit(f"nested_value:{f}")))
        elif pa.types.is_struct(at) or pa.types.is_map(at):
            cols.append(F.to_json(c).alias(f))
            pre.append(F.when(c.isNotNull(), F.lit(f"nested_value:{f}")))
        elif pa.types.is_timestamp(at) or pa.types.is_date(at):
            spark_type = pq.schema[orig].dataType
            if isinstance(spark_type, T.LongType):  # TIMESTAMP(NANOS), read as a long (nanosAsLong)
                ts = F.to_utc_timestamp(F.timestamp_micros(F.expr(f"`{orig}` div 1000")), F.current_timezone())
            elif isinstance(spark_type, T.TimestampType):  # an instant: shown in UTC
                ts = F.to_utc_timestamp(c, F.current_timezone())
            else:  # TIMESTAMP_NTZ / DATE: the wall time, taken as UTC
                ts = c
            cols.append(F.date_format(ts, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'").alias(f))
        else:
            cols.append(c.cast("string").alias(f))
    raw = F.to_json(F.struct(*[F.col(f"`{c}`") for c in pq.columns]))
    return pq.select(*cols, raw.alias("_raw"), st.source_col().alias("_source"),
                     (F.coalesce(*pre) if pre else F.lit(None).cast("string")).alias("_pre"),
                     F.lit(False).alias("_malformed"))


def read_raw(spark: SparkSession, files: Sequence[RawFile], entity: str, staging: "_Staging") -> DataFrame:
    """Raw records of the readable ``files`` (no file-level reason) as strings.

    Returns
    -------
    DataFrame
        One string column per field of ``RAW_FIELDS[entity]`` plus ``_raw`` (the record as read),
        ``_source`` (the file's URI), ``_pre`` (a reason found while reading, e.g.
        ``nested_value:title``, else null) and ``_malformed`` (the record could not be parsed).
    """
    fields = RAW_FIELDS[entity]
    parts: List[DataFrame] = []
    json_links = [staging.link(f) for f in files if f.format == "json"]
    if json_links:
        parts.append(_read_json_lines(spark, json_links, fields, staging))
    by_header: Dict[Tuple[str, Tuple[str, ...]], List[str]] = {}
    for f in files:
        if f.format == "csv" and f.header:
            by_header.setdefault((f.delimiter, tuple(f.header)), []).append(staging.link(f))
    for (delim, header), links in by_header.items():
        # one read per distinct header: Spark applies one (positional) schema to all files of a read
        parts.append(_read_csv(spark, links, list(header), delim, fields, staging))
    pq_groups: Dict[str, Tuple[object, List[str]]] = {}
    for f in files:
        if f.format == "parquet":
            key = str(f.parquet_schema.remove_metadata())
            pq_groups.setdefault(key, (f.parquet_schema, []))[1].append(staging.link(f))
    if pq_groups:
        spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
    for schema, links in pq_groups.values():
        # one read per distinct schema: incompatible column types across files cannot be merged
        parts.append(_read_parquet(spark, links, schema, fields, staging))
    if not parts:
        return _empty_raw(spark, fields)
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out


# ------------------------------------------------------------------------------------------------
# parsing helpers
# ------------------------------------------------------------------------------------------------

_ISO = (r"^([0-9]{4}-[0-9]{2}-[0-9]{2})(?:[Tt ]([0-9]{2}:[0-9]{2})(?::([0-9]{2}))?(?:[.,]([0-9]{1,9}))?)?"
        r" *(Z|z|UTC|GMT|[+-][0-9]{2}(?::?[0-9]{2})?)?$")
_EPOCH = r"^[+-]?[0-9]+(\.[0-9]+)?$"
_MAX_EPOCH_S = 253402300800  # 10000-01-01: beyond it a number is not a timestamp in its unit


def _iso_timestamp(s: Column) -> Column:
    """ISO-8601 / RFC 3339 -> timestamp (fraction kept to the microsecond), else null."""
    def g(i):
        return F.regexp_extract(s, _ISO, i)

    sec = F.when(g(3) == "", F.lit("00")).otherwise(g(3))
    frac = F.substring(F.rpad(g(4), 6, "0"), 1, 6)
    off = g(5)
    off = (F.when(off.isin("", "Z", "z", "UTC", "GMT"), F.lit("+00:00"))
           .when(F.length(off) == 3, F.concat(off, F.lit(":00")))
           .otherwise(F.regexp_replace(off, r"^([+-][0-9]{2}):?([0-9]{2})$", "$1:$2")))
    hm = F.when(g(2) == "", F.lit("00:00")).otherwise(g(2))
    canonical = F.concat(g(1), F.lit("T"), hm, F.lit(":"), sec, F.lit("."), frac, off)
    return F.when(s.rlike(_ISO), F.try_to_timestamp(canonical, F.lit("yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX")))


def _epoch_seconds(s: Column, unit: str) -> Column:
    return F.when(s.rlike(_EPOCH), s.try_cast("double") / F.lit(float(EPOCH_FACTORS[unit])))


def epoch_out_of_range(col: Column, unit: str) -> Column:
    """True for a number that is no timestamp in ``unit`` (beyond year 9999 either way)."""
    sec = _epoch_seconds(F.trim(col), unit)
    return sec.isNotNull() & (F.abs(sec) >= F.lit(float(_MAX_EPOCH_S)))


def parse_timestamp(col: Column, epoch_unit: str = "s") -> Column:
    """ISO-8601 / RFC 3339 strings, or numbers as epoch timestamps in ``epoch_unit`` (``s``, ``ms``,
    ``us``, ``ns``; never guessed) -> timestamp, else null (also for numbers beyond year 9999)."""
    if epoch_unit not in EPOCH_FACTORS:
        raise ValueError(f"epoch_unit must be one of {sorted(EPOCH_FACTORS)}, got {epoch_unit!r}")
    s = F.trim(col)
    factor = EPOCH_FACTORS[epoch_unit]
    sec = _epoch_seconds(s, epoch_unit)
    in_range = sec.isNotNull() & (F.abs(sec) < F.lit(float(_MAX_EPOCH_S)))
    whole = s.try_cast("long")
    if factor <= 1_000_000:
        exact = F.try_multiply(whole, F.lit(1_000_000 // factor))
    else:
        exact = F.call_function("div", whole, F.lit(factor // 1_000_000))
    approx = F.round(s.try_cast("double") * F.lit(1_000_000 / factor)).try_cast("long")
    micros = F.when(in_range, F.coalesce(exact, approx))
    return F.when(s.rlike(_EPOCH), F.timestamp_micros(micros)).otherwise(_iso_timestamp(s))


def _blank(c: Column) -> Column:
    return c.isNull() | (F.length(F.trim(c)) == 0)


def _finite_number(c: Column) -> Column:
    v = F.trim(c).try_cast("double")
    return F.when(v.isNull() | F.isnan(v) | (F.abs(v) == float("inf")), None).otherwise(v)


def _count_value(c: Column) -> Column:
    """A count as a long: an integer literal, or an integral number, in ``[0, 2^63)``; else null.
    Never a cast that overflows (``1e30``, ``"1e19"``, ``2^63`` are null, not errors or clamped)."""
    s = F.trim(c)
    as_int = F.when(s.rlike(r"^\+?[0-9]+$"), s.try_cast("long"))
    d = _finite_number(c)
    as_num = F.when(d.isNotNull() & (d >= 0) & (d < F.lit(9.0e18)) & (d == F.round(d)), d.try_cast("long"))
    return F.when(s.rlike(r"^\+?[0-9]+$"), as_int).otherwise(as_num)


def _first_reason(rules: List[Tuple[str, Column]]) -> Column:
    expr = F.lit(None).cast("string")
    for reason, cond in reversed(rules):
        expr = F.when(cond, F.lit(reason)).otherwise(expr)
    return expr


def _first_reason_col(rules: List[Tuple[Column, Column]]) -> Column:
    expr = F.lit(None).cast("string")
    for reason, cond in reversed(rules):
        expr = F.when(cond, reason).otherwise(expr)
    return expr


def _oversize(cols: Sequence[str], limit: int) -> Column:
    return F.greatest(*[F.coalesce(F.length(F.col(c)), F.lit(0)) for c in cols], F.lit(0)) > limit


def _common_rules(keys: Sequence[str], ids: Sequence[str]) -> List[Tuple[str, Column]]:
    """Reading, encoding, key and id rules; ids are checked on their normalized form ``_n_<id>``."""
    rules: List[Tuple[str, Column]] = [
        ("malformed_record", F.col("_malformed")),
        ("broken_encoding", ~F.is_valid_utf8(F.col("_raw")) | F.col("_raw").contains("\ufffd")),
    ]
    for k in keys:
        rules.append((f"null_key:{k}", _blank(F.col(f"_n_{k}") if k in ids else F.col(k))))
    for k in ids:
        if k not in keys:
            rules.append((f"null_key:{k}", _blank(F.col(f"_n_{k}"))))
    for k in ids:
        rules.append((f"invalid_id:{k}", id_problem(F.col(f"_n_{k}"))))
    return rules


def validate(raw: DataFrame, entity: str, rules: Rules, now: dt.datetime,
             known_tracks: Optional[DataFrame] = None) -> DataFrame:
    """Typed rows plus a ``_reason`` column (null for valid rows); duplicates flagged too.

    ``raw`` is :func:`read_raw`'s output (``_pre`` and ``_malformed`` optional). Ids are normalized
    with :func:`recsys_spark.validation.normalize_id` (also the track ids of ``known_tracks``).
    """
    future_limit = F.lit(now + dt.timedelta(hours=rules.future_tolerance_hours))
    min_ts = F.lit(dt.datetime(rules.min_event_year, 1, 1))
    unit = rules.epoch_unit(entity)
    if "_pre" not in raw.columns:
        raw = raw.withColumn("_pre", F.lit(None).cast("string"))
    if "_malformed" not in raw.columns:
        raw = raw.withColumn("_malformed", F.lit(False))
    ids = ID_FIELDS[entity]
    df = raw.select("*", *[normalize_id(F.col(k)).alias(f"_n_{k}") for k in ids])
    # a reason found while reading (nested Parquet value, an array / concatenated objects on a JSON
    # line) comes first: it says more than "malformed"
    pre = [(F.col("_pre"), F.col("_pre").isNotNull())]

    def ts_rules(col: str, ts: str, required: bool) -> List[Tuple[str, Column]]:
        given = ~_blank(F.col(col))
        return [("timestamp_out_of_range", given & epoch_out_of_range(F.col(col), unit)),
                ("unparseable_timestamp", (given if not required else F.lit(True)) & F.col(ts).isNull()),
                ("timestamp_out_of_range", F.col(ts) < min_ts),
                ("future_timestamp", F.col(ts) > future_limit)]

    if entity == "interactions":
        df = df.withColumn("_ts", parse_timestamp(F.col("event_ts"), unit))
        df = df.withColumn("_type", F.lower(F.trim(F.col("event_type"))))
        df = df.withColumn("_w", _finite_number(F.col("weight")))
        checks = _common_rules(KEYS[entity], ids) + [
            ("unknown_event_type", ~F.col("_type").isin(*rules.event_types)),
            ("non_numeric_weight", ~_blank(F.col("weight")) & F.col("_w").isNull()),
            ("negative_weight", F.col("_w") < 0),
        ] + ts_rules("event_ts", "_ts", True) + [
            ("oversize_field", _oversize(RAW_FIELDS[entity], rules.max_text_chars)),
        ]
        if known_tracks is not None:
            kt = known_tracks.select(F.col("track_id").alias("_kt")).distinct()
            df = df.join(kt, df["_n_track_id"] == kt["_kt"], "left")
            checks.append(("unknown_track_id", F.col("_kt").isNull()))
        defaults = F.create_map(*[x for k, v in rules.default_weights.items() for x in (F.lit(k), F.lit(float(v)))])
        typed = df.select(
            F.col("_n_user_id").alias("user_id"), F.col("_n_track_id").alias("track_id"),
            F.col("_ts").alias("event_ts"), F.col("_type").alias("event_type"),
            F.coalesce(F.col("_w"), F.element_at(defaults, F.col("_type")), F.lit(1.0)).alias("weight"),
            F.to_date("_ts").alias("event_date"), "_raw", "_source",
            _first_reason_col(pre + [(F.lit(r), c) for r, c in checks]).alias("_reason"))
    elif entity == "tracks":
        df = df.withColumn("_created", parse_timestamp(F.col("created_at"), unit))
        counts = ["play_count", "upvote_count", "comment_count"]
        for c in counts:
            df = df.withColumn(f"_{c}", _count_value(F.col(c)))
        df = df.withColumn("_dur", _finite_number(F.col("duration_s")))
        bad_count = F.lit(False)
        for c in counts:
            bad_count = bad_count | (~_blank(F.col(c)) & F.col(f"_{c}").isNull())
        checks = _common_rules(KEYS[entity], ids) + [
            ("oversize_field", (F.coalesce(F.length("title"), F.lit(0)) > rules.max_title_chars)
             | _oversize(["prompt", "tags", "audio_uri", "genre"], rules.max_text_chars)),
            ("invalid_count", bad_count),
            ("invalid_duration", ~_blank(F.col("duration_s")) & (F.col("_dur").isNull() | (F.col("_dur") < 0))),
        ] + ts_rules("created_at", "_created", False)
        tags = F.when(F.trim(F.col("tags")).startswith("["),
                      F.from_json(F.col("tags"), T.ArrayType(T.StringType()))) \
            .otherwise(F.split(F.coalesce(F.col("tags"), F.lit("")), r"\s*[,|;]\s*"))
        tags = F.filter(F.transform(tags, lambda x: F.lower(F.trim(x))), lambda x: F.length(x) > 0)
        typed = df.select(
            F.col("_n_track_id").alias("track_id"), F.col("_n_creator_id").alias("creator_id"), "title", "prompt",
            tags.alias("tags"), F.lower(F.trim("genre")).alias("genre"), F.col("_dur").alias("duration_s"),
            F.col("_created").alias("created_at"), "audio_uri",
            *[F.coalesce(F.col(f"_{c}"), F.lit(0).cast("long")).alias(c) for c in counts],
            "_raw", "_source",
            _first_reason_col(pre + [(F.lit(r), c) for r, c in checks]).alias("_reason"))
    elif entity == "user_prompts":
        df = df.withColumn("_created", parse_timestamp(F.col("created_at"), unit))
        checks = _common_rules(KEYS[entity], ids) + [
            ("empty_text", _blank(F.col("prompt_text"))),
            ("oversize_field", _oversize(RAW_FIELDS[entity], rules.max_text_chars)),
        ] + ts_rules("created_at", "_created", False)
        typed = df.select(F.col("_n_prompt_id").alias("prompt_id"), F.col("_n_user_id").alias("user_id"),
                          F.trim("prompt_text").alias("prompt_text"), F.col("_created").alias("created_at"),
                          "_raw", "_source",
                          _first_reason_col(pre + [(F.lit(r), c) for r, c in checks]).alias("_reason"))
    else:
        raise ValueError(f"unknown entity {entity!r}")
    # duplicates of the key inside this batch: keep the first (deterministic order), flag the rest
    keys = KEYS[entity]
    w = Window.partitionBy(*keys).orderBy(F.col("_reason").isNotNull(), F.col("_source"), F.col("_raw"))
    dup = F.when(F.col("_reason").isNull(), F.row_number().over(w) > 1).otherwise(F.lit(False))
    return typed.withColumn("_reason", F.when(dup, F.lit("duplicate")).otherwise(F.col("_reason")))


def quarantine_rows(df: DataFrame, entity: str, run_id: str, now: dt.datetime,
                    max_raw_chars: int = 1 << 20) -> DataFrame:
    """Rows with a ``_reason`` shaped for the quarantine table (raw record capped at ``max_raw_chars``)."""
    bad = df.where(F.col("_reason").isNotNull())
    raw = F.when(F.length("_raw") > max_raw_chars,
                 F.concat(F.substring("_raw", 1, max_raw_chars),
                          F.format_string("...[truncated: %d characters in all]", F.length("_raw")))) \
        .otherwise(F.col("_raw"))
    return bad.select(
        F.concat(F.lit(entity + ":"), F.col("_source")).alias("source"),
        F.lit(entity).alias("entity"),
        raw.alias("raw_record"),
        F.col("_reason").alias("reason"),
        F.sha2(F.concat_ws("\u0001", F.lit(entity), F.col("_source"), F.col("_raw"), F.col("_reason")), 256)
        .alias("record_hash"),
        F.lit(run_id).alias("run_id"),
        F.lit(now).alias("ingested_at"),
        F.lit(now.date()).alias("ingest_date"),
    ).dropDuplicates(["record_hash"])


def _file_quarantine(spark: SparkSession, entity: str, files: Sequence[RawFile], run_id: str, now: dt.datetime,
                     cap: int) -> DataFrame:
    rows = []
    for f in files:
        raw = file_envelope(f, cap)
        digest = hashlib.sha256("\u0001".join([entity, f.uri, raw, f.reason]).encode()).hexdigest()
        rows.append((f"{entity}:{f.uri}", entity, raw, f.reason, digest, run_id, now, now.date()))
    schema = ("source string, entity string, raw_record string, reason string, record_hash string, "
              "run_id string, ingested_at timestamp, ingest_date date")
    return spark.createDataFrame(rows, schema)


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


CHANGED_TRACK_COLS = ["play_count", "upvote_count", "comment_count", "title", "prompt", "tags", "audio_uri",
                      "duration_s", "genre", "creator_id", "created_at"]


def _inspect_all(spark: SparkSession, path: str, entity: str) -> List[RawFile]:
    """Every file under ``path`` inspected, and the records of the readable JSON / CSV files counted
    (on the executors, one task per file group)."""
    groups = list_raw_files(path)
    files = [inspect_file(f, entity) for fmt in sorted(groups) for f in groups[fmt]]
    todo = [(f.path, f.format, f.codec, f.delimiter) for f in files if not f.reason and f.format in ("json", "csv")]
    if todo:
        n_tasks = max(1, min(len(todo), spark.sparkContext.defaultParallelism * 2))
        rdd = spark.sparkContext.parallelize(todo, n_tasks).map(_count_task)
        counted = {p: (n, r, d) for p, n, r, d in rdd.collect()}
        for f in files:
            if f.path in counted:
                f.seen, reason, detail = counted[f.path]
                if reason:
                    f.reason, f.detail = reason, detail
    for f in files:
        if f.reason:
            f.seen = 1
            log.warning("ingest %s: %s quarantined whole: %s (%s)", entity, f.path, f.reason, f.detail)
    return files


def ingest_entity(spark: SparkSession, tables: Tables, entity: str, path: str, rules: Rules,
                  run_id: str, now: Optional[dt.datetime] = None) -> IngestReport:
    """Load one entity's raw files into its Delta table; bad rows and bad files to quarantine.

    Parameters
    ----------
    spark, tables
    entity : {"tracks", "interactions", "user_prompts"}
    path : str
        File or folder of raw files (``.json``/``.jsonl``/``.ndjson``, ``.csv``, ``.parquet``;
        JSON and CSV may be gzip / bzip2 compressed).
    rules : Rules
    run_id : str
    now : datetime, optional
        Reference time for the future-timestamp rule (UTC, naive); defaults to now.

    Returns
    -------
    IngestReport
        Totals (``read == loaded + updated + already_present + quarantined``) and one
        :class:`FileReport` per file (``seen == loaded + updated + already_present + duplicates +
        quarantined``).

    Raises
    ------
    InputError
        ``path`` does not exist or cannot be read (nothing is ingested).
    """
    if entity not in RAW_FIELDS:
        raise ValueError(f"unknown entity {entity!r}")
    t0 = time.time()
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    report = IngestReport(entity)
    files = _inspect_all(spark, path, entity)
    if not files:
        log.warning("ingest %s: no files under %s", entity, path)
    staging = _Staging(rules.staging_dir)
    checked = None
    try:
        readable = [f for f in files if not f.reason and (f.seen > 0 or f.format == "parquet")]
        raw = read_raw(spark, readable, entity, staging)
        known = tables.read("tracks").select("track_id") if entity == "interactions" else None
        checked = validate(raw, entity, rules, now, known).persist()
        per_file: Dict[str, Dict[Optional[str], int]] = {}
        for r in checked.groupBy("_source", "_reason").agg(F.count("*").alias("n")).collect():
            per_file.setdefault(r["_source"], {})[r["_reason"]] = int(r["n"])
        by_uri = {f.uri: f for f in files}
        for f in readable:
            got = per_file.get(f.uri, {})
            f_parsed = sum(got.values())
            if f_parsed != f.seen:
                f.reason = "record_count_mismatch"
                f.detail = (f"{f.seen} records counted in the file, the {f.format} parser produced {f_parsed}; "
                            f"no row of this file was loaded")
                log.error("ingest %s: %s: %s", entity, f.path, f.detail)
        unknown = set(per_file) - set(by_uri)
        if unknown:  # cannot happen: every row comes from a staged file
            raise RuntimeError(f"ingest {entity}: rows from unlisted files {sorted(unknown)[:3]}")
        bad_uris = [f.uri for f in files if f.reason]
        keep = ~F.col("_source").isin(*bad_uris) if bad_uris else F.lit(True)
        good = checked.where(F.col("_reason").isNull() & keep)
        file_reports = []
        for f in files:
            fr = FileReport(f.uri, f.format, seen=f.seen, reason=f.reason, detail=f.detail)
            got = per_file.get(f.uri, {})
            fr.parsed = sum(got.values())
            if f.reason:
                fr.quarantined = fr.seen = 1
            else:
                fr.duplicates = got.get("duplicate", 0)
                fr.quarantined = sum(n for r, n in got.items() if r is not None and r != "duplicate")
                fr.loaded = got.get(None, 0)  # split into already_present / updated below
            file_reports.append(fr)
        n_good = sum(fr.loaded for fr in file_reports)
        if n_good:
            keys = KEYS[entity]
            before = tables.version(entity)
            target = tables.read(entity)
            present: Dict[str, Tuple[int, int]] = {}
            if before is not None and not target.isEmpty():
                # per file: valid keys already in the table (unchanged / changed), before the MERGE
                t = target.select(*[F.col(k).alias(f"_t_{k}") for k in keys],
                                  *([F.col(c).alias(f"_t_{c}") for c in CHANGED_TRACK_COLS] if entity == "tracks"
                                    else []))
                j = good.join(t, [good[k] == t[f"_t_{k}"] for k in keys], "inner")
                changed = F.lit(False)
                if entity == "tracks":
                    for c in CHANGED_TRACK_COLS:
                        changed = changed | ~good[c].eqNullSafe(F.col(f"_t_{c}"))
                for r in j.groupBy("_source").agg(
                        F.sum(F.when(changed, 0).otherwise(1)).alias("same"),
                        F.sum(F.when(changed, 1).otherwise(0)).alias("changed")).collect():
                    present[r["_source"]] = (int(r["same"]), int(r["changed"]))
            good_rows = good.drop("_raw", "_source", "_reason").withColumn("ingested_at", F.lit(now))
            if entity == "tracks":
                tables.upsert("tracks", good_rows, keys, changed=CHANGED_TRACK_COLS)
                m = _merge_metrics(tables, "tracks", before)
            else:
                tables.merge_insert_new(entity, good_rows, keys)
                m = _merge_metrics(tables, entity, before)
            for fr in file_reports:
                same, chg = present.get(fr.path, (0, 0))
                fr.already_present, fr.updated = same, chg
                fr.loaded -= same + chg
            inserted = m.get("numTargetRowsInserted", 0)
            if inserted != sum(fr.loaded for fr in file_reports):
                log.warning("ingest %s: MERGE inserted %d rows, %d expected (a concurrent writer?)",
                            entity, inserted, sum(fr.loaded for fr in file_reports))
        q = quarantine_rows(checked.where(keep), entity, run_id, now, rules.max_raw_bytes)
        bad_files = [f for f in files if f.reason]
        if bad_files:
            q = q.unionByName(_file_quarantine(spark, entity, bad_files, run_id, now, rules.max_raw_bytes))
        if any(fr.quarantined or fr.duplicates for fr in file_reports):
            tables.merge_insert_new("quarantine", q, ["record_hash"])
        reasons: Dict[str, int] = {}
        for fr, f in zip(file_reports, files):
            if f.reason:
                reasons[f.reason] = reasons.get(f.reason, 0) + 1
            else:
                for r, n in per_file.get(f.uri, {}).items():
                    if r is not None:
                        reasons[r] = reasons.get(r, 0) + n
        report.files = file_reports
        report.reasons = reasons
        report.read = sum(fr.seen for fr in file_reports)
        report.loaded = sum(fr.loaded for fr in file_reports)
        report.updated = sum(fr.updated for fr in file_reports)
        report.already_present = sum(fr.already_present for fr in file_reports)
        report.duplicates = sum(fr.duplicates for fr in file_reports)
        report.quarantined = sum(fr.quarantined + fr.duplicates for fr in file_reports)
    finally:
        if checked is not None:
            checked.unpersist()
        staging.close()
    report.seconds = round(time.time() - t0, 2)
    log.info("ingest %s: read=%d loaded=%d updated=%d already_present=%d quarantined=%d %s (%.1fs)",
             entity, report.read, report.loaded, report.updated, report.already_present, report.quarantined,
             report.reasons, report.seconds)
    for fr in report.files:
        if not fr.reconciles:
            raise RuntimeError(f"ingest {entity}: counts of {fr.path} do not reconcile: {fr}")
    if not report.reconciles:
        raise RuntimeError(f"ingest {entity}: counts do not reconcile: {report}")
    return report


def ingest_all(spark: SparkSession, tables: Tables, raw_dir: str, rules: Rules, run_id: str,
               now: Optional[dt.datetime] = None) -> Dict[str, IngestReport]:
    """Ingest ``raw_dir/{tracks,interactions,user_prompts}`` in dependency order (tracks first).

    Raises
    ------
    InputError
        ``raw_dir`` does not exist or cannot be read.
    """
    check_input_path(raw_dir, "raw folder")
    if not os.path.isdir(raw_dir):
        raise InputError(f"raw folder: {raw_dir} is not a folder (it should hold tracks/, interactions/, "
                         f"user_prompts/)")
    reports = {}
    for entity in ("tracks", "interactions", "user_prompts"):
        p = os.path.join(raw_dir, entity)
        if os.path.exists(p):
            reports[entity] = ingest_entity(spark, tables, entity, p, rules, run_id, now)
        else:
            log.warning("ingest: %s has no %s folder; skipped", raw_dir, entity)
    return reports


def plan_ingest(raw_dir: Optional[str] = None, entity: Optional[str] = None,
                path: Optional[str] = None) -> List[Tuple[str, str]]:
    """Check ingestion arguments before Spark starts: ``[(entity, path), ...]`` in load order.

    Either ``raw_dir`` (a folder holding ``tracks/``, ``interactions/``, ``user_prompts/``; at least
    one of them) or ``entity`` and ``path``.

    Raises
    ------
    InputError
        Missing or conflicting arguments, a path that does not exist or cannot be read.
    """
    if raw_dir and (entity or path):
        raise InputError("give either --raw DIR, or --entity and --path, not both")
    if raw_dir:
        check_input_path(raw_dir, "--raw")
        if not os.path.isdir(raw_dir):
            raise InputError(f"--raw: {raw_dir} is not a folder (it should hold tracks/, interactions/, user_prompts/)")
        plan = [(e, os.path.join(raw_dir, e)) for e in ("tracks", "interactions", "user_prompts")
                if os.path.exists(os.path.join(raw_dir, e))]
        if not plan:
            raise InputError(f"--raw: {raw_dir} holds none of tracks/, interactions/, user_prompts/")
        return plan
    if not entity or not path:
        raise InputError("give --raw DIR, or --entity and --path")
    if entity not in RAW_FIELDS:
        raise InputError(f"--entity must be one of {sorted(RAW_FIELDS)}, got {entity!r}")
    check_input_path(path, "--path")
    return [(entity, path)]


def ingest_plan(spark: SparkSession, tables: Tables, plan: Sequence[Tuple[str, str]], rules: Rules, run_id: str,
                now: Optional[dt.datetime] = None) -> Dict[str, IngestReport]:
    """Run :func:`ingest_entity` for each ``(entity, path)`` of :func:`plan_ingest`."""
    return {e: ingest_entity(spark, tables, e, p, rules, run_id, now) for e, p in plan}
