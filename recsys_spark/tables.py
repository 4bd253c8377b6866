"""Every Delta table of the product: name, schema, partitioning, comments, and I/O helpers.

Names resolve to ``<warehouse>/<name>`` (path mode, the local default) or to
``<catalog>.<schema>.<name>`` (catalog mode, Databricks / Unity Catalog). All writes of weekly
outputs go through :func:`replace_partition`, one atomic Delta commit with ``replaceWhere`` on the
partition column: a rerun replaces exactly that week and a crash leaves the previous version.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from .safety import UnsafeValueError, is_uri, safe_path, validate_identifier

log = logging.getLogger(__name__)

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def column(name, dtype, nullable=True, comment=""):
    """A table column: a ``StructField`` whose ``comment`` becomes the Delta column comment."""
    return T.StructField(name, dtype, nullable, metadata={"comment": comment} if comment else {})


_f = column  # short name for the schemas below


@dataclass(frozen=True)
class TableSpec:
    """A table: schema, key, partitioning and the rules Delta enforces on every write.

    ``checks`` are ``(name, SQL expression)`` CHECK constraints (a write with one violating row
    fails as a whole); ``properties`` are table properties on top of :data:`TABLE_PROPERTIES`;
    ``cluster_by`` replaces ``partition_by`` when liquid clustering is on (catalog mode option);
    ``merge_prune_by`` names partition columns determined by the key, so that an insert-if-new
    MERGE may restrict the target to the source's partition values (partition pruning).
    """

    name: str
    schema: T.StructType
    key: Sequence[str]
    partition_by: Sequence[str] = ()
    comment: str = ""
    checks: Tuple[Tuple[str, str], ...] = ()
    properties: Tuple[Tuple[str, str], ...] = ()
    cluster_by: Sequence[str] = ()
    merge_prune_by: Sequence[str] = ()


#: Set on every table: any VACUUM keeps 14 days of removed files (time travel to the last two
#: weekly runs), the transaction log keeps 30 days.
TABLE_PROPERTIES: Dict[str, str] = {
    "delta.deletedFileRetentionDuration": "interval 14 days",
    "delta.logRetentionDuration": "interval 30 days",
    "delta.appendOnly": "false",
}

_MAX_DOUBLE = "1.7976931348623157E308"


def finite(col: str, nullable: bool = False) -> str:
    """CHECK expression: ``col`` is a finite number (NaN compares above every double in Spark SQL,
    so ``abs(NaN) <= MAX`` is false, as is ``abs(+-Infinity) <= MAX``)."""
    expr = f"abs({col}) <= {_MAX_DOUBLE}"
    return f"{col} IS NULL OR {expr}" if nullable else expr


EMB = T.ArrayType(T.FloatType(), containsNull=False)

TRACKS = TableSpec(
    "tracks",
    T.StructType([
        _f("track_id", T.StringType(), False, "track id (platform song id)"),
        _f("creator_id", T.StringType(), False, "user id of the track's creator"),
        _f("title", T.StringType(), comment="track title"),
        _f("prompt", T.StringType(), comment="the generation prompt / style description"),
        _f("tags", T.ArrayType(T.StringType()), comment="style tags, lower case"),
        _f("genre", T.StringType(), comment="primary genre when known"),
        _f("duration_s", T.DoubleType(), comment="duration in seconds"),
        _f("created_at", T.TimestampType(), comment="creation time (UTC)"),
        _f("audio_uri", T.StringType(), comment="location of the audio file, when available"),
        _f("play_count", T.LongType(), comment="platform play count"),
        _f("upvote_count", T.LongType(), comment="platform upvote count"),
        _f("comment_count", T.LongType(), comment="platform comment count"),
        _f("ingested_at", T.TimestampType(), comment="when this version of the row was ingested"),
    ]),
    key=("track_id",),
    comment="Track catalog: one row per track.",
)

INTERACTIONS = TableSpec(
    "interactions",
    T.StructType([
        _f("user_id", T.StringType(), False, "listener"),
        _f("track_id", T.StringType(), False, "track"),
        _f("event_ts", T.TimestampType(), False, "event time (UTC)"),
        _f("event_type", T.StringType(), False, "play | complete | upvote | comment | share | download | remix | skip"),
        _f("weight", T.DoubleType(), False, "interaction weight >= 0 (play count or event default)"),
        _f("event_date", T.DateType(), False, "partition: date of event_ts"),
        _f("ingested_at", T.TimestampType(), comment="ingestion time"),
    ]),
    key=("user_id", "track_id", "event_ts", "event_type"),
    partition_by=("event_date",),
    comment="User-track interactions, de-duplicated on (user_id, track_id, event_ts, event_type).",
    checks=(("weight_non_negative", f"weight >= 0 AND {finite('weight')}"),),
    merge_prune_by=("event_date",),  # derived from event_ts, which is part of the key
)

USER_PROMPTS = TableSpec(
    "user_prompts",
    T.StructType([
        _f("prompt_id", T.StringType(), False, "prompt id"),
        _f("user_id", T.StringType(), False, "author"),
        _f("prompt_text", T.StringType(), False, "the text the user wrote to generate music"),
        _f("created_at", T.TimestampType(), comment="when the prompt was written (UTC)"),
        _f("ingested_at", T.TimestampType(), comment="ingestion time"),
    ]),
    key=("prompt_id",),
    comment="Generation prompts written by users (their stated intent).",
)

QUARANTINE = TableSpec(
    "quarantine",
    T.StructType([
        _f("source", T.StringType(), False, "entity and file the record came from"),
        _f("entity", T.StringType(), False, "tracks | interactions | user_prompts | audio"),
        _f("raw_record", T.StringType(), comment="the record as read (JSON of the raw fields or the raw line)"),
        _f("reason", T.StringType(), False, "why the record was rejected"),
        _f("record_hash", T.StringType(), False, "sha2 of entity+raw record+reason (idempotent re-ingest)"),
        _f("run_id", T.StringType(), comment="run that quarantined it"),
        _f("ingested_at", T.TimestampType(), comment="when"),
        _f("ingest_date", T.DateType(), False, "partition: date of ingestion"),
    ]),
    key=("record_hash",),
    partition_by=("ingest_date",),
    comment="Rejected input: nothing is silently dropped.",
)

TRACK_EMBEDDINGS = TableSpec(
    "track_embeddings",
    T.StructType([
        _f("track_id", T.StringType(), False, "track"),
        _f("model_version", T.StringType(), False, "CLAP model version (checkpoint name or 'untrained-<seed>')"),
        _f("embedding", EMB, False, "L2-normalised CLAP audio embedding (512-d)"),
        _f("n_windows", T.IntegerType(), comment="number of audio windows averaged"),
        _f("created_at", T.TimestampType(), comment="when computed"),
    ]),
    key=("track_id", "model_version"),
    comment="CLAP audio embeddings of tracks.",
)

TRACK_AESTHETICS = TableSpec(
    "track_aesthetics",
    T.StructType([
        _f("track_id", T.StringType(), False, "track"),
        _f("model_version", T.StringType(), False, "Audiobox Aesthetics model version (checkpoint name or 'untrained-seed<n>')"),
        _f("ce", T.FloatType(), False, "content enjoyment (1-10 with the released model)"),
        _f("cu", T.FloatType(), False, "content usefulness"),
        _f("pc", T.FloatType(), False, "production complexity"),
        _f("pq", T.FloatType(), False, "production quality"),
        _f("n_windows", T.IntegerType(), comment="number of 10 s audio windows scored"),
        _f("created_at", T.TimestampType(), comment="when computed"),
    ]),
    key=("track_id", "model_version"),
    comment="Audiobox Aesthetics scores of tracks' audio (four axes), incremental per model version.",
)

PROMPT_EMBEDDINGS = TableSpec(
    "prompt_embeddings",
    T.StructType([
        _f("id", T.StringType(), False, "prompt_id for user prompts, track_id for track prompts"),
        _f("kind", T.StringType(), False, "user_prompt | track_prompt"),
        _f("user_id", T.StringType(), comment="author (user prompts)"),
        _f("model_version", T.StringType(), False, "CLAP model version"),
        _f("embedding", EMB, False, "L2-normalised CLAP text embedding (512-d)"),
        _f("created_at", T.TimestampType(), comment="when computed"),
    ]),
    key=("id", "kind", "model_version"),
    comment="CLAP text embeddings of user prompts and of tracks' own prompt text.",
)

ITEM_NEIGHBORS = TableSpec(
    "item_neighbors",
    T.StructType([
        _f("week_start", T.DateType(), False, "partition: week the model was trained for"),
        _f("track_id", T.StringType(), False, "track"),
        _f("neighbor_id", T.StringType(), False, "similar track"),
        _f("score", T.DoubleType(), False, "similarity"),
        _f("rank", T.IntegerType(), False, "1 = most similar"),
    ]),
    key=("week_start", "track_id", "neighbor_id"),
    partition_by=("week_start",),
    comment="Item-item CF neighbours, top-K per track, per week.",
    checks=(("score_finite", finite("score")), ("rank_positive", "rank >= 1")),
)

RECALL_CANDIDATES = TableSpec(
    "recall_candidates",
    T.StructType([
        _f("week_start", T.DateType(), False, "partition"),
        _f("channel", T.StringType(), False, "partition: recall channel"),
        _f("user_id", T.StringType(), False, "user"),
        _f("track_id", T.StringType(), False, "candidate track"),
        _f("score", T.DoubleType(), False, "channel score (not comparable across channels)"),
        _f("rank", T.IntegerType(), False, "1 = the channel's best candidate for the user"),
        _f("seed_track_id", T.StringType(), comment="seed that contributed most"),
    ]),
    key=("week_start", "channel", "user_id", "track_id"),
    partition_by=("week_start", "channel"),
    comment="Raw candidates of every recall channel per week (resume point; DIN negatives; funnel).",
    checks=(("score_finite", finite("score")), ("rank_positive", "rank >= 1")),
)

CANDIDATES = TableSpec(
    "candidates",
    T.StructType([
        _f("week_start", T.DateType(), False, "partition"),
        _f("user_id", T.StringType(), False, "user"),
        _f("track_id", T.StringType(), False, "candidate track"),
        _f("channels", T.ArrayType(T.StringType()), comment="recall channels that proposed it"),
        _f("recall_score", T.DoubleType(), comment="fused recall score"),
        _f("din_score", T.DoubleType(), comment="DIN click probability (null when DIN skipped)"),
        _f("quality", T.DoubleType(), comment="engagement quality in [0, 1]"),
        _f("final_score", T.DoubleType(), comment="score used by re-ranking"),
        _f("seed_track_id", T.StringType(), comment="seed that contributed most (explanation)"),
        _f("ranker_score", T.DoubleType(), comment="learned ranker's P(played) (null when not used)"),
    ]),
    key=("week_start", "user_id", "track_id"),
    partition_by=("week_start",),
    comment="Scored candidates per user and week (funnel analysis, explanations).",
    checks=(("final_score_finite", finite("final_score", nullable=True)),
            ("quality_0_to_1", "quality IS NULL OR quality BETWEEN 0 AND 1")),
    cluster_by=("week_start", "user_id"),
)

DISCOVER_WEEKLY = TableSpec(
    "discover_weekly",
    T.StructType([
        _f("week_start", T.DateType(), False, "partition: the Monday of the playlist's week"),
        _f("user_id", T.StringType(), False, "user"),
        _f("position", T.IntegerType(), False, "1..30"),
        _f("track_id", T.StringType(), False, "recommended track (never heard, never own)"),
        _f("score", T.DoubleType(), False, "final score"),
        _f("sources", T.ArrayType(T.StringType()), False, "channels that proposed the track"),
        _f("reason", T.StringType(), comment="human-readable explanation"),
        _f("model_version", T.StringType(), False, "pipeline model version"),
        _f("run_id", T.StringType(), comment="run that wrote the row"),
        _f("generated_at", T.TimestampType(), False, "when the playlist was generated"),
    ]),
    key=("week_start", "user_id", "position"),
    partition_by=("week_start",),
    comment="Discover Weekly: 30 new tracks per user and week.",
    checks=(("position_1_to_30", "position BETWEEN 1 AND 30"), ("score_finite", finite("score"))),
    # the serving sync reads the changes of each weekly run (table_changes / readChangeFeed)
    properties=(("delta.enableChangeDataFeed", "true"),),
    cluster_by=("week_start", "user_id"),
)

RUNS = TableSpec(
    "runs",
    T.StructType([
        _f("run_id", T.StringType(), False, "run id"),
        _f("week_start", T.DateType(), comment="week of the run"),
        _f("job", T.StringType(), comment="weekly | ingest | generate | evaluate | maintenance"),
        _f("stage", T.StringType(), False, "stage name ('run' for the whole run)"),
        _f("status", T.StringType(), False, "running | succeeded | failed | skipped"),
        _f("started_at", T.TimestampType(), comment="stage start"),
        _f("finished_at", T.TimestampType(), comment="stage end"),
        _f("seconds", T.DoubleType(), comment="wall time"),
        _f("rows_in", T.LongType(), comment="rows read"),
        _f("rows_out", T.LongType(), comment="rows produced"),
        _f("counts", T.MapType(T.StringType(), T.DoubleType()), comment="further counts and metrics"),
        _f("skipped", T.StringType(), comment="what was skipped and why"),
        _f("message", T.StringType(), comment="error or note"),
        _f("config_hash", T.StringType(), comment="fingerprint of the effective config"),
    ]),
    key=("run_id", "stage"),
    comment="One row per stage of each run: what it did, how many rows, how long, what it skipped.",
)

# in the core registry (not registered by its module on import): the write stage and the
# maintenance job must know it even in a run that never imports the aggregation code
CREATOR_EMBEDDINGS = TableSpec(
    "creator_embeddings",
    T.StructType([
        _f("week_start", T.DateType(), False, "partition: week the embeddings were computed for"),
        _f("creator_id", T.StringType(), False, "creator"),
        _f("model_version", T.StringType(), False, "track embedding model version + pooling model id"),
        _f("method", T.StringType(), False, "attention | mean"),
        _f("embedding", EMB, False, "pooled creator embedding in the track-embedding space"),
        _f("n_tracks", T.IntegerType(), False, "tracks pooled"),
        _f("created_at", T.TimestampType(), comment="when computed"),
    ]),
    key=("week_start", "creator_id", "method", "model_version"),
    partition_by=("week_start",),
    comment="Creator embeddings pooled from their tracks' CLAP embeddings (creator-level diversity).",
)

ALL_TABLES: Dict[str, TableSpec] = {
    t.name: t
    for t in (TRACKS, INTERACTIONS, USER_PROMPTS, QUARANTINE, TRACK_EMBEDDINGS, TRACK_AESTHETICS,
              PROMPT_EMBEDDINGS, ITEM_NEIGHBORS, RECALL_CANDIDATES, CANDIDATES, DISCOVER_WEEKLY, RUNS, CREATOR_EMBEDDINGS)
}


def register(spec: TableSpec) -> TableSpec:
    """Add a table defined by another module (e.g. ``evaluation_runs``) to the registry.

    The name must be a plain identifier (it becomes a folder under the warehouse and a SQL name)."""
    validate_identifier(spec.name, "table name")
    ALL_TABLES[spec.name] = spec
    return spec


class ConcurrentWriteError(RuntimeError):
    """Another writer committed the partition after this writer claimed it; this writer wrote nothing."""


_CONCURRENT_NAMES = ("ConcurrentAppendException", "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
                     "ConcurrentTransactionException", "ConcurrentWriteException", "MetadataChangedException",
                     "ProtocolChangedException", "ConcurrentModificationException")


def is_concurrent_modification(exc: BaseException) -> bool:
    """True for Delta's optimistic-concurrency conflicts (``ConcurrentAppendException`` & co.),
    whether raised as the Python class of ``delta.exceptions`` or as a wrapped JVM error."""
    try:
        from delta.exceptions import ConcurrentModificationException

        if isinstance(exc, ConcurrentModificationException):
            return True
    except ImportError:  # pragma: no cover - delta-spark is a dependency
        pass
    text = f"{type(exc).__name__}: {str(exc)[:1000]}"
    return any(n in text for n in _CONCURRENT_NAMES)


@dataclass(frozen=True)
class PartitionClaim:
    """What a writer saw of one partition when it started: the base of an optimistic commit.

    ``base_version`` is the Delta version of the latest *claimed* commit of the partition
    (:meth:`Tables.commit_partition` tags its commits), or the earliest retained version - 1 when
    there is none. :meth:`Tables.commit_partition` succeeds only if no claimed commit of the
    partition happened after it; two writers holding claims on the same base can never both
    commit.
    """

    table: str
    conds: Tuple[Tuple[str, str], ...]
    owner: str
    base_version: int
    base_owner: Optional[str] = None

    @property
    def tag(self) -> str:
        """``userMetadata`` prefix of this partition's claimed commits."""
        return "recsys-partition:" + self.table + ":" + ",".join(f"{c}={v}" for c, v in self.conds)

    @property
    def app_id(self) -> str:
        """Delta idempotent-write id (``txnAppId``) of this partition."""
        return self.tag

    @property
    def txn_version(self) -> int:
        """Delta ``txnVersion`` of this claim's commit: Delta skips the write when a commit of the
        same partition recorded a version >= this one (i.e. another holder of the same base)."""
        return self.base_version + 1


class Tables:
    """Resolves table names and reads/writes Delta tables for one storage configuration.

    Parameters
    ----------
    spark : SparkSession
    warehouse : str
        Root folder of path-mode tables (``warehouse/`` under the repo by default).
    mode : {"path", "catalog"}
    catalog, schema : str
        Catalog-mode namespace: ``<catalog>.<schema>.<name>``.
    """

    def __init__(self, spark: SparkSession, warehouse: str = "warehouse", mode: str = "path",
                 catalog: str = "", schema: str = "recsys", clustering: bool = False):
        if mode not in ("path", "catalog"):
            raise ValueError(f"storage mode must be 'path' or 'catalog', got {mode!r}")
        self.spark = spark
        self.mode = mode
        self.clustering = clustering  # liquid clustering (cluster_by) instead of partitioning for new tables
        self._ready: set = set()  # tables created and checked for their rules by this object
        if mode == "path":
            # the warehouse is the root every table path must stay under, and it is quoted into
            # ``delta.`<path>``` SQL references: no NUL / backtick / newline
            safe_path(warehouse if is_uri(warehouse) else os.path.abspath(warehouse), ".")
        self.warehouse = warehouse.rstrip("/") if is_uri(warehouse) else os.path.abspath(warehouse)
        for part, label in ((catalog, "catalog"), (schema, "schema")):
            if part and not _IDENT.match(part):
                raise ValueError(f"invalid {label} identifier {part!r}")
        self.catalog = catalog
        self.schema = schema

    @classmethod
    def from_config(cls, spark: SparkSession, storage) -> "Tables":
        from .config import resolve_path

        wh = storage.warehouse
        if storage.mode == "path":
            wh = resolve_path(wh)  # relative: against --root / $RECSYS_ROOT / the working directory
        return cls(spark, warehouse=wh, mode=storage.mode, catalog=storage.catalog, schema=storage.schema,
                   clustering=bool(getattr(storage, "liquid_clustering", False)))

    # -- names ---------------------------------------------------------------------------------
    def spec(self, name: str) -> TableSpec:
        if name not in ALL_TABLES:
            raise KeyError(f"unknown table {name!r}; known: {', '.join(sorted(ALL_TABLES))}")
        return ALL_TABLES[name]

    def path(self, name: str) -> str:
        """``<warehouse>/<name>``; refused (:class:`~recsys_spark.safety.UnsafeValueError`) when the
        name is not a plain identifier or the folder resolves outside the warehouse (a symlink)."""
        self.spec(name)
        validate_identifier(name, "table name")
        if is_uri(self.warehouse):
            return safe_path(self.warehouse, name)
        safe_path(self.warehouse, name)  # raises when <warehouse>/<name> escapes through a symlink
        return os.path.join(self.warehouse, name)

    def qualified(self, name: str) -> str:
        """SQL reference: ``delta.`/path``` in path mode, ``catalog.schema.name`` in catalog mode."""
        self.spec(name)
        if self.mode == "path":
            return f"delta.`{self.path(name)}`"
        prefix = f"`{self.catalog}`.`{self.schema}`" if self.catalog else f"`{self.schema}`"
        return f"{prefix}.`{name}`"

    # -- create / read -------------------------------------------------------------------------
    def properties(self, name: str) -> Dict[str, str]:
        """The table properties ``name`` must carry: :data:`TABLE_PROPERTIES` + its own."""
        return {**TABLE_PROPERTIES, **dict(self.spec(name).properties)}

    def create(self, name: str) -> None:
        """Create the table with its schema, partitioning (or liquid clustering), comments, properties
        and CHECK constraints if it does not exist; a table created by an older version gets the
        nullable columns, properties and constraints it lacks.

        A new table is created in one Delta commit with its constraints (:meth:`_create`; SQL
        :meth:`create_sql` over Spark Connect): no reader ever sees the table without its rules, and
        no validation scan per constraint (``ALTER TABLE ADD CONSTRAINT`` is a commit and a job each;
        creating the twelve tables of that time that way took 7.2 s against 3.5 s on a local session)."""
        if name in self._ready and self.exists(name):
            return
        if self.exists(name):
            self.ensure_rules(name)
        elif self._connect:
            self._create_sql(name)
        else:
            self._create(name)
        self._ready.add(name)

    def _create(self, name: str) -> None:
        """``DeltaTable.createIfNotExists`` with the exact column types (SQL DDL cannot say that an
        array's elements are never null) and the CHECK constraints as the table properties that
        ``ALTER TABLE ADD CONSTRAINT`` would store: one commit, as :meth:`create_sql`."""
        from delta.tables import DeltaTable

        spec = self.spec(name)
        b = DeltaTable.createIfNotExists(self.spark)
        if self.mode == "path":
            b = b.location(self.path(name))
        else:
            if self.catalog:
                self.spark.sql(f"CREATE SCHEMA IF NOT EXISTS `{self.catalog}`.`{self.schema}`")
            else:
                self.spark.sql(f"CREATE SCHEMA IF NOT EXISTS `{self.schema}`")
            b = b.tableName(self.qualified(name).replace("`", ""))
        for fld in spec.schema.fields:
            b = b.addColumn(fld.name, fld.dataType, nullable=fld.nullable,
                            comment=fld.metadata.get("comment") or None)
        if self.clustering and spec.cluster_by:
            b = b.clusterBy(*spec.cluster_by)  # liquid clustering: no partitions, OPTIMIZE clusters
        elif spec.partition_by:
            b = b.partitionedBy(*spec.partition_by)
        if spec.comment:
            b = b.comment(spec.comment)
        for k, v in self.create_properties(name).items():
            b = b.property(k, v)
        b.execute()

    def create_properties(self, name: str) -> Dict[str, str]:
        """The properties a new table is created with: :meth:`properties` plus each CHECK constraint
        as the ``delta.constraints.<name>`` property ``ALTER TABLE ADD CONSTRAINT`` would store
        (Delta enforces them and upgrades the protocol to checkConstraints)."""
        return {**self.properties(name), **{f"delta.constraints.{c.lower()}": e for c, e in self.spec(name).checks}}

    def ensure_rules(self, name: str) -> Dict[str, List[str]]:
        """Set missing table properties and add missing CHECK constraints of an existing table
        ``name`` (one created by an older version). A constraint that a concurrent writer added in
        between is skipped ("already exists").

        Returns
        -------
        dict
            ``{"properties": [...], "constraints": [...]}``: what was added now.
        """
        spec = self.spec(name)
        self._add_missing_columns(name)
        detail = self._detail(name).select("properties").first()
        have = dict(detail["properties"] or {}) if detail else {}
        want = self.properties(name)
        missing = {k: v for k, v in want.items() if have.get(k) != v}
        ref = self.qualified(name)
        if missing:
            kv = ", ".join(f"'{k}' = '{v}'" for k, v in missing.items())
            self.spark.sql(f"ALTER TABLE {ref} SET TBLPROPERTIES ({kv})")
        added = []
        for cname, expr in spec.checks:
            if f"delta.constraints.{cname.lower()}" in have:
                continue
            try:
                self.spark.sql(f"ALTER TABLE {ref} ADD CONSTRAINT {cname} CHECK ({expr})")
                added.append(cname)
            except Exception as exc:  # an older table whose rows break the rule: keep it readable, say so
                if "already exists" in str(exc):
                    continue
                log.error("table %s: CHECK constraint %s (%s) not added: %s", name, cname, expr,
                          str(exc).splitlines()[0][:300])
        if missing or added:
            log.info("table %s: properties %s, constraints %s added", name, sorted(missing), added)
        return {"properties": sorted(missing), "constraints": added}

    def _add_missing_columns(self, name: str) -> List[str]:
        """``ALTER TABLE ADD COLUMNS`` for nullable columns of the spec that an existing table
        (created by an older version) lacks; a missing non-nullable column is an error."""
        have = {f.name for f in self.read(name).schema.fields}
        missing = [f for f in self.spec(name).schema.fields if f.name not in have]
        if not missing:
            return []
        strict = [f.name for f in missing if not f.nullable]
        if strict:
            raise ValueError(f"table {name} lacks the non-nullable column(s) {strict}; migrate it first")
        cols = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
        self.spark.sql(f"ALTER TABLE {self.qualified(name)} ADD COLUMNS ({cols})")
        log.info("table %s: column(s) %s added", name, [f.name for f in missing])
        return [f.name for f in missing]

    # -- Spark Connect ---------------------------------------------------------------------------
    # Over Spark Connect, delta-spark's DeltaTable API needs Delta's Connect plugin on the server
    # (absent from a plain Connect server; no artifact for delta-spark 4.4 / Spark 4.2 resolved from
    # Maven Central): table checks and DDL go through SQL there. Classic sessions keep DeltaTable.
    @property
    def _connect(self) -> bool:
        from .spark import is_connect

        return is_connect(self.spark)

    def _detail(self, name: str) -> DataFrame:
        """``DESCRIBE DETAIL`` of the table (DeltaTable.detail() on a classic session)."""
        if self._connect:
            return self.spark.sql(f"DESCRIBE DETAIL {self.qualified(name)}")
        return self.delta(name).detail()

    def create_sql(self, name: str) -> str:
        """``CREATE TABLE IF NOT EXISTS`` with the table's schema, partitioning (or liquid clustering),
        comments, properties and CHECK constraints: what :meth:`create` builds with DeltaTable and
        :meth:`ensure_rules`, as one SQL statement (Spark Connect)."""
        spec = self.spec(name)

        def quote(text: str) -> str:
            return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

        cols = []
        for fld in spec.schema.fields:
            validate_identifier(fld.name, "column name")
            col = f"`{fld.name}` {fld.dataType.simpleString()}{'' if fld.nullable else ' NOT NULL'}"
            if fld.metadata.get("comment"):
                col += f" COMMENT {quote(fld.metadata['comment'])}"
            cols.append(col)
        sql = f"CREATE TABLE IF NOT EXISTS {self.qualified(name)} ({', '.join(cols)}) USING DELTA"
        if self.clustering and spec.cluster_by:
            sql += f" CLUSTER BY ({', '.join(f'`{c}`' for c in spec.cluster_by)})"
        elif spec.partition_by:
            sql += f" PARTITIONED BY ({', '.join(f'`{c}`' for c in spec.partition_by)})"
        if spec.comment:
            sql += f" COMMENT {quote(spec.comment)}"
        props = self.create_properties(name)  # CHECK constraints included: one commit, on an empty table
        sql += " TBLPROPERTIES (" + ", ".join(f"{quote(k)} = {quote(v)}" for k, v in props.items()) + ")"
        return sql

    def _create_sql(self, name: str) -> None:
        if self.mode == "catalog":
            self.spark.sql(f"CREATE SCHEMA IF NOT EXISTS `{self.catalog}`.`{self.schema}`" if self.catalog
                           else f"CREATE SCHEMA IF NOT EXISTS `{self.schema}`")
        self.spark.sql(self.create_sql(name))

    def _exists_sql(self, name: str) -> bool:
        """Whether the path-mode table is a Delta table, by ``DESCRIBE DETAIL`` (Spark Connect)."""
        try:
            row = self.spark.sql(f"DESCRIBE DETAIL {self.qualified(name)}").select("format").first()
        except Exception as exc:  # noqa: BLE001 - only "no table there" means False; anything else raises
            cond = getattr(exc, "getCondition", lambda: None)() or ""
            if cond in _ABSENT or any(m in str(exc) for m in ("is not a Delta table", "PATH_NOT_FOUND")):
                return False
            raise
        return bool(row) and (row["format"] or "").lower() == "delta"

    def create_all(self, names: Optional[Sequence[str]] = None) -> None:
        for name in names or list(ALL_TABLES):
            self.create(name)

    def exists(self, name: str) -> bool:
        from delta.tables import DeltaTable

        if self.mode == "path":
            if self._connect:
                return self._exists_sql(name)
            return DeltaTable.isDeltaTable(self.spark, self.path(name))
        return self.spark.catalog.tableExists(self.qualified(name).replace("`", ""))

    def delta(self, name: str):
        from delta.tables import DeltaTable

        if self.mode == "path":
            return DeltaTable.forPath(self.spark, self.path(name))
        return DeltaTable.forName(self.spark, self.qualified(name).replace("`", ""))

    def read(self, name: str, version: Optional[int] = None) -> DataFrame:
        """Read a table (optionally as of a Delta version); an absent table reads as empty."""
        if not self.exists(name):
            return self.spark.createDataFrame([], self.spec(name).schema)
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", int(version))
        if self.mode == "path":
            return reader.load(self.path(name))
        if version is not None:
            return self.spark.sql(f"SELECT * FROM {self.qualified(name)} VERSION AS OF {int(version)}")
        return self.spark.table(self.qualified(name).replace("`", ""))

    # -- write ---------------------------------------------------------------------------------
    def _conform(self, name: str, df: DataFrame) -> DataFrame:
        spec = self.spec(name)
        have = set(df.columns)   # one schema round trip (not one per column: 0.2 s a write on small frames)
        missing = [f.name for f in spec.schema.fields if f.name not in have]
        if missing:
            raise ValueError(f"cannot write {name}: missing columns {missing}")
        return df.select(*[F.col(f"`{f.name}`").cast(f.dataType).alias(f.name) for f in spec.schema.fields])

    def _writer(self, name: str, df: DataFrame, mode: str):
        return self._conform(name, df).write.format("delta").mode(mode)

    def _save(self, name: str, writer) -> None:
        if self.mode == "path":
            writer.save(self.path(name))
        else:
            writer.saveAsTable(self.qualified(name).replace("`", ""))

    def append(self, name: str, df: DataFrame) -> None:
        self.create(name)
        self._save(name, self._writer(name, df, "append"))

    def overwrite(self, name: str, df: DataFrame) -> None:
        self.create(name)
        self._save(name, self._writer(name, df, "overwrite"))

    def replace_partition(self, name: str, df: DataFrame, column: str, value, **more) -> None:
        """Atomically replace the rows where ``column = value`` (and ``k = v`` for ``more``) by ``df``.

        One Delta commit with ``replaceWhere``: a rerun replaces exactly that partition, a crash
        leaves the previous version. Every row of ``df`` must satisfy the predicate (Delta checks
        it and fails otherwise), so a bug cannot spill into another week's partition.
        """
        spec = self.spec(name)
        names = [f.name for f in spec.schema.fields]
        conds = {column: value, **more}
        for c in conds:
            if c not in names:
                raise ValueError(f"{name} has no column {c!r}")
        self.create(name)
        predicate = " AND ".join(f"{c} = '{_literal(v)}'" for c, v in conds.items())
        writer = self._writer(name, df, "overwrite").option("replaceWhere", predicate)
        self._save(name, writer)

    # -- optimistic partition commits ------------------------------------------------------------
    def _partition_conds(self, name: str, column: str, value, more) -> Tuple[Tuple[str, str], ...]:
        names = [f.name for f in self.spec(name).schema.fields]
        conds = {column: value, **more}
        for c in conds:
            if c not in names:
                raise ValueError(f"{name} has no column {c!r}")
        return tuple((c, _literal(v)) for c, v in conds.items())

    def partition_commits(self, claim: PartitionClaim) -> List[Tuple[int, str]]:
        """``[(version, owner)]`` of the retained claimed commits of the claim's partition, newest first."""
        tag = claim.tag
        if not self.exists(claim.table):
            return []
        rows = (self.delta(claim.table).history().where(F.col("userMetadata").startswith(tag + ";owner="))
                .select("version", "userMetadata").collect())  # a few rows per partition
        out = [(int(r["version"]), r["userMetadata"][len(tag) + len(";owner="):]) for r in rows]
        return sorted(out, reverse=True)

    def claim_partition(self, name: str, column: str, value, owner: str, **more) -> PartitionClaim:
        """Record what the partition ``column = value`` looks like now, for :meth:`commit_partition`.

        Take the claim when the work that will produce the partition *starts* (a weekly run takes
        it at run start): a commit of the same partition by anyone else after this point makes
        this writer's :meth:`commit_partition` fail. Nothing is written and nothing is locked, so a
        writer that dies leaves nothing to clean up.
        """
        conds = self._partition_conds(name, column, value, more)
        self.create(name)
        probe = PartitionClaim(name, conds, owner, -1)
        commits = self.partition_commits(probe)
        if commits:
            base, base_owner = commits[0]
        else:  # never claimed (or older than the retained log): below every retained version
            base = int(self.delta(name).history().agg(F.min("version")).first()[0]) - 1
            base_owner = None
        return PartitionClaim(name, conds, owner, base, base_owner)

    def commit_partition(self, claim: PartitionClaim, df: DataFrame) -> int:
        """Replace the claimed partition by ``df`` in one atomic Delta commit, unless another writer
        committed it since the claim was taken.

        Three layers, so that of two writers holding claims on the same base exactly one commits:
        (1) a check of the partition's claimed commits before writing (the common case: the other
        run committed minutes ago); (2) the write carries Delta's ``txnAppId`` / ``txnVersion``
        (``base + 1``), so Delta itself skips it, inside the transaction, when another holder of the
        same base committed between the check and this commit; Delta's own conflict detection
        (``ConcurrentAppendException`` & co.) covers two commits racing at the same instant; (3) the
        commit is looked up afterwards and a skipped write is reported.

        A claim commits once.

        Returns
        -------
        int
            The Delta version of the commit.

        Raises
        ------
        ConcurrentWriteError
            Another writer committed the partition after the claim; this writer wrote nothing.
        """
        def conflict(detail: str) -> ConcurrentWriteError:
            return ConcurrentWriteError(
                f"{claim.table} partition {dict(claim.conds)} was committed by another writer after "
                f"{claim.owner} claimed it at version {claim.base_version}: {detail}; {claim.owner} wrote nothing")

        newer = [(v, o) for v, o in self.partition_commits(claim) if v > claim.base_version]
        if newer:
            raise conflict(f"{newer[0][1]} committed version {newer[0][0]}")
        predicate = " AND ".join(f"{c} = '{v}'" for c, v in claim.conds)
        writer = (self._writer(claim.table, df, "overwrite").option("replaceWhere", predicate)
                  .option("txnAppId", claim.app_id).option("txnVersion", str(claim.txn_version))
                  .option("userMetadata", f"{claim.tag};owner={claim.owner}"))
        try:
            self._save(claim.table, writer)
        except Exception as exc:
            if is_concurrent_modification(exc):
                raise conflict(f"Delta refused the commit ({type(exc).__name__})") from exc
            raise
        mine = [v for v, o in self.partition_commits(claim) if o == claim.owner and v > claim.base_version]
        if not mine:
            winner = self.partition_commits(claim)
            raise conflict(f"Delta skipped this write (txnVersion {claim.txn_version} already committed"
                           + (f" by {winner[0][1]} at version {winner[0][0]})" if winner else ")"))
        return mine[0]

    def merge_insert_new(self, name: str, df: DataFrame, key: Sequence[str]) -> None:
        """Insert rows whose key is not in the table yet (idempotent ingestion).

        ``df`` must already be de-duplicated on ``key``.
        """
        self.create(name)
        src = self._conform(name, df)
        cond = " AND ".join(f"t.`{k}` = s.`{k}`" for k in key) + self._prune_condition(name, src)
        (self.delta(name).alias("t")
         .merge(src.alias("s"), cond)
         .whenNotMatchedInsertAll()
         .execute())

    def _prune_condition(self, name: str, src: DataFrame, max_values: int = 500) -> str:
        """`` AND t.p = s.p AND t.p IN ('v1', ...)`` for the table's ``merge_prune_by`` partition
        columns: the literal list lets Delta read only the source's partitions of the target (a
        range ``BETWEEN min AND max`` when the source spans more than ``max_values`` of them)."""
        spec = self.spec(name)
        cols = [c for c in spec.merge_prune_by if c in spec.partition_by and not self.clustering]
        out = ""
        for c in cols:
            vals = [r[0] for r in src.select(c).distinct().limit(max_values + 1).collect()]  # partitions, not rows
            vals = [v for v in vals if v is not None]
            if not vals:
                continue
            out += f" AND t.`{c}` = s.`{c}`"
            if len(vals) <= max_values:
                out += f" AND t.`{c}` IN ({', '.join(repr(_literal(v)) for v in sorted(vals))})"
            else:
                lo, hi = src.agg(F.min(c), F.max(c)).first()
                out += f" AND t.`{c}` BETWEEN '{_literal(lo)}' AND '{_literal(hi)}'"
        return out

    def upsert(self, name: str, df: DataFrame, key: Sequence[str], changed: Sequence[str]) -> None:
        """Insert new keys; update existing rows only when one of ``changed`` differs."""
        self.create(name)
        cond = " AND ".join(f"t.`{k}` = s.`{k}`" for k in key)
        diff = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in changed)
        (self.delta(name).alias("t")
         .merge(self._conform(name, df).alias("s"), cond)
         .whenMatchedUpdateAll(condition=diff)
         .whenNotMatchedInsertAll()
         .execute())

    def size_bytes(self, name: str) -> Optional[int]:
        """Bytes of the table's current files (Delta's ``sizeInBytes``); None when it does not exist."""
        if not self.exists(name):
            return None
        return int(self._detail(name).select("sizeInBytes").first()[0] or 0)

    def version(self, name: str) -> Optional[int]:
        if not self.exists(name):
            return None
        if self._connect:
            return int(self.spark.sql(f"DESCRIBE HISTORY {self.qualified(name)} LIMIT 1").first()["version"])
        return int(self.delta(name).history(1).select("version").first()[0])


#: Error conditions meaning "no Delta table at that path" (Tables.exists over Spark Connect).
_ABSENT = frozenset({"DELTA_MISSING_DELTA_TABLE", "DELTA_TABLE_NOT_FOUND", "PATH_NOT_FOUND",
                     "DELTA_PATH_DOES_NOT_EXIST", "TABLE_OR_VIEW_NOT_FOUND"})


def _literal(value) -> str:
    """A safe SQL literal for a partition value (dates, ints, simple strings only)."""
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()[:10]
    text = str(value)
    if not re.match(r"^[A-Za-z0-9_\-:. ]{1,64}$", text):
        raise ValueError(f"unsafe partition value {value!r}")
    return text
