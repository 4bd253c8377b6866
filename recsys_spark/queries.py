"""Downstream access: the questions analysts, the serving layer and operators ask of the tables.

Every helper takes ``(spark, tables, ...)`` and plain values and returns a DataFrame (or, for the
run summary, a small :class:`RunSummary`). The SQL lives in one place (:data:`VIEWS`): the same
text defines the SQL views of :func:`create_views` and, wrapped with a filter, the helpers.

Safety
------
- Table references come only from the table registry (``Tables.read`` / ``Tables.qualified``);
  no identifier is ever built from a caller's string.
- User ids, weeks, channels and dates are passed as **bound named parameters**
  (``spark.sql(query, args={...})``): a user id like ``x' OR '1'='1`` is a literal that matches
  nobody. Weeks must parse as ISO dates; versions must be integers; timestamps must parse.

Questions answered
------------------
=========================================  =====================================================
this week's playlist of a user             :func:`playlist`
last week's, through the partition         :func:`last_week_playlist`
last week's, through Delta time travel     :func:`last_week_playlist_time_travel`,
                                           :func:`playlist_as_of`, :func:`version_for_week`
why each track was picked                  :func:`why_picked`
channel mix per week                       :func:`channel_mix`
creator exposure                           :func:`creator_exposure`
quarantine summary                         :func:`quarantine_summary`
"what happened in last Monday's run?"      :func:`last_run_summary`, :func:`runs_overview`
=========================================  =====================================================
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

from pyspark.sql import DataFrame, SparkSession

from .tables import Tables
from .weeks import require_monday, to_date

log = logging.getLogger(__name__)

DateLike = Union[str, dt.date, dt.datetime]

# Tables each view reads; placeholders ``{name}`` are filled from the registry only.
VIEW_TABLES: Dict[str, List[str]] = {
    "playlists": ["discover_weekly", "tracks"],
    "latest_playlists": ["discover_weekly", "tracks"],
    "explanations": ["discover_weekly", "candidates", "tracks"],
    "channel_mix": ["discover_weekly"],
    "creator_exposure": ["discover_weekly", "tracks"],
    "quarantine_summary": ["quarantine"],
    "runs_overview": ["runs"],
    "run_stages": ["runs"],
}

VIEWS: Dict[str, str] = {
    # one row per playlist entry, with track metadata
    "playlists": """
SELECT d.week_start, d.user_id, d.position, d.track_id, t.title, t.creator_id, t.genre, d.score,
       d.sources, d.reason, d.model_version, d.run_id, d.generated_at
FROM {discover_weekly} d LEFT JOIN {tracks} t ON t.track_id = d.track_id""",
    # the newest week only: what the serving layer / a dashboard shows as "this week's playlist"
    "latest_playlists": """
SELECT d.week_start, d.user_id, d.position, d.track_id, t.title, t.creator_id, t.genre, d.score,
       d.sources, d.reason, d.model_version, d.run_id, d.generated_at
FROM {discover_weekly} d LEFT JOIN {tracks} t ON t.track_id = d.track_id
WHERE d.week_start = (SELECT MAX(week_start) FROM {discover_weekly})""",
    # why a track was picked: the playlist row, its candidate scores and the seed it came from
    "explanations": """
SELECT d.week_start, d.user_id, d.position, d.track_id, t.title, t.creator_id, t.genre,
       d.sources, d.reason, d.score, c.channels, c.recall_score, c.din_score, c.quality,
       c.final_score, c.seed_track_id, s.title AS seed_title
FROM {discover_weekly} d
LEFT JOIN {candidates} c
  ON c.week_start = d.week_start AND c.user_id = d.user_id AND c.track_id = d.track_id
LEFT JOIN {tracks} t ON t.track_id = d.track_id
LEFT JOIN {tracks} s ON s.track_id = c.seed_track_id""",
    # per week and channel: playlist slots the channel proposed (a slot can have several channels)
    "channel_mix": """
SELECT e.week_start, e.channel, COUNT(*) AS slots, COUNT(DISTINCT e.user_id) AS users,
       SUM(CASE WHEN e.n_sources = 1 THEN 1 ELSE 0 END) AS only_source_slots,
       CAST(COUNT(*) AS DOUBLE) / MAX(w.total_slots) AS share_of_slots
FROM (SELECT week_start, user_id, size(sources) AS n_sources, explode(sources) AS channel
      FROM {discover_weekly}) e
JOIN (SELECT week_start, COUNT(*) AS total_slots FROM {discover_weekly} GROUP BY week_start) w
  ON w.week_start = e.week_start
GROUP BY e.week_start, e.channel""",
    # per week and creator: slots, distinct tracks, users reached and their share of the week's users
    "creator_exposure": """
SELECT d.week_start, t.creator_id, COUNT(*) AS slots, COUNT(DISTINCT d.track_id) AS tracks,
       COUNT(DISTINCT d.user_id) AS users,
       CAST(COUNT(DISTINCT d.user_id) AS DOUBLE) / MAX(u.n_users) AS share_of_users
FROM {discover_weekly} d
JOIN {tracks} t ON t.track_id = d.track_id
JOIN (SELECT week_start, COUNT(DISTINCT user_id) AS n_users FROM {discover_weekly} GROUP BY week_start) u
  ON u.week_start = d.week_start
GROUP BY d.week_start, t.creator_id""",
    "quarantine_summary": """
SELECT entity, reason, ingest_date, COUNT(*) AS records, COUNT(DISTINCT source) AS files,
       MIN(ingested_at) AS first_seen, MAX(ingested_at) AS last_seen
FROM {quarantine}
GROUP BY entity, reason, ingest_date""",
    # one row per run: status, users served, users short of a full playlist, timings, errors
    "runs_overview": """
SELECT run_id, job, week_start, MIN(started_at) AS started_at, MAX(finished_at) AS finished_at,
       CASE WHEN MAX(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) = 1 THEN 'failed'
            WHEN MAX(CASE WHEN stage = 'run' AND status = 'succeeded' THEN 1 ELSE 0 END) = 1 THEN 'succeeded'
            ELSE 'incomplete' END AS status,
       COUNT(*) AS stages,
       SUM(CASE WHEN status = 'skipped' THEN 1 ELSE 0 END) AS skipped_stages,
       MAX(CASE WHEN stage = 'run' THEN counts['users'] END) AS users_served,
       MAX(CASE WHEN stage = 'run' THEN counts['short_users'] END) AS users_short,
       MAX(CASE WHEN stage = 'run' THEN rows_out END) AS rows_written,
       MAX(CASE WHEN stage = 'run' THEN counts['total_seconds'] END) AS total_seconds,
       concat_ws('; ', collect_list(CASE WHEN status = 'failed' THEN concat(stage, ': ', message) END)) AS errors
FROM {runs}
GROUP BY run_id, job, week_start""",
    "run_stages": """
SELECT run_id, job, week_start, stage, status, started_at, finished_at, seconds, rows_in, rows_out,
       counts, skipped, message, config_hash
FROM {runs}""",
}

_VIEW_COMMENTS = {
    "playlists": "Discover Weekly entries with track title, creator and genre.",
    "latest_playlists": "The newest week of Discover Weekly (what users see now), with track metadata.",
    "explanations": "Why each playlist track was picked: channels, scores, seed track, reason.",
    "channel_mix": "Per week and recall channel: playlist slots, users, share of slots.",
    "creator_exposure": "Per week and creator: slots, distinct tracks, users reached, share of users.",
    "quarantine_summary": "Rejected input records by entity, reason and ingestion date.",
    "runs_overview": "One row per run: status, users served, users short of a full playlist, timings.",
    "run_stages": "One row per stage of each run (the runs table).",
}

_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


# ------------------------------------------------------------------------------------------------
# plumbing
# ------------------------------------------------------------------------------------------------


def _week(value: DateLike) -> dt.date:
    """A Monday from a date or ISO string; anything else fails (never reaches SQL text)."""
    if not isinstance(value, (str, dt.date)):
        raise TypeError(f"week must be a date or 'YYYY-MM-DD', got {type(value).__name__}")
    if isinstance(value, str) and not _ISO_DATE.match(value.strip()):
        raise ValueError(f"week must be 'YYYY-MM-DD', got {value!r}")
    return require_monday(value)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    return value


def _frames(tables: Tables, view: str, overrides: Optional[Dict[str, DataFrame]] = None) -> Dict[str, DataFrame]:
    """The DataFrames a view reads (absent tables read as empty), keyed by placeholder."""
    frames = {name: tables.read(name) for name in VIEW_TABLES[view]}
    frames.update(overrides or {})
    return frames


def _query(spark: SparkSession, tables: Tables, view: str, where: str = "", order: str = "",
           args: Optional[Dict[str, Any]] = None, overrides: Optional[Dict[str, DataFrame]] = None,
           limit: Optional[int] = None) -> DataFrame:
    """``SELECT * FROM (<view>) [WHERE ...] [ORDER BY ...]`` with bound parameters.

    ``where`` / ``order`` are fixed strings written in this module (never caller input); caller
    values go through ``args`` as named parameters (``:name``).
    """
    sql = f"SELECT * FROM ({VIEWS[view]}) v"
    if where:
        sql += f" WHERE {where}"
    if order:
        sql += f" ORDER BY {order}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    if args:
        ensure_parameter_binding(spark)
    return spark.sql(sql, args=args or {}, **_frames(tables, view, overrides))


PARAM_CONF = "spark.sql.legacy.parameterSubstitution.constantsOnly"


def ensure_parameter_binding(spark: SparkSession) -> None:
    """Make ``spark.sql(query, args=...)`` bind parameters on a session with Delta's SQL extension.

    Since Spark 4.1 parameter markers are bound inside the parser, and Delta's ``DeltaSqlParser``
    (delta-spark 4.x, delta-io/delta#7640) does not forward them: every parameterized query fails
    with ``UNBOUND_SQL_PARAMETER``. The analyzer-side binding of Spark <= 4.0
    (``spark.sql.legacy.parameterSubstitution.constantsOnly=true``) still works and binds values
    as literals, which is all these queries need. Set once per session when extensions are on.
    """
    if not spark.conf.get("spark.sql.extensions", ""):
        return
    try:
        if spark.conf.get(PARAM_CONF, "false").lower() != "true":
            spark.conf.set(PARAM_CONF, "true")
            log.info("set %s=true (Delta's parser drops SQL parameters on Spark >= 4.1)", PARAM_CONF)
    except Exception as exc:  # noqa: BLE001 - a managed session may forbid it and bind natively
        log.debug("could not set %s: %s", PARAM_CONF, exc)


# ------------------------------------------------------------------------------------------------
# playlists
# ------------------------------------------------------------------------------------------------


def playlist(spark: SparkSession, tables: Tables, user_id: str, week: DateLike) -> DataFrame:
    """One user's Discover Weekly for ``week`` (the ``week_start`` partition), in playlist order.

    Returns
    -------
    DataFrame
        ``week_start date, user_id string, position int, track_id string, title string,
        creator_id string, genre string, score double, sources array<string>, reason string,
        model_version string, run_id string, generated_at timestamp``; empty for an unknown user.
    """
    return _query(spark, tables, "playlists", "user_id = :user_id AND week_start = :week", "position",
                  {"user_id": _text(user_id, "user_id"), "week": _week(week)})


def previous_week(week: DateLike) -> dt.date:
    """The Monday before ``week``."""
    return _week(week) - dt.timedelta(days=7)


def last_week_playlist(spark: SparkSession, tables: Tables, user_id: str, week: DateLike) -> DataFrame:
    """The playlist of the week before ``week``, read from its ``week_start`` partition (what the
    table holds *now* for that week; a rerun of that week would have replaced it)."""
    return playlist(spark, tables, user_id, _week(week) - dt.timedelta(days=7))


def _as_of(tables: Tables, name: str, version: Optional[int], timestamp: Optional[DateLike]) -> DataFrame:
    if (version is None) == (timestamp is None):
        raise ValueError("give exactly one of version= or timestamp=")
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(f"version must be a non-negative integer, got {version!r}")
        return tables.read(name, version=version)
    if isinstance(timestamp, dt.datetime):
        ts = timestamp
    elif isinstance(timestamp, dt.date):
        ts = dt.datetime.combine(timestamp, dt.time())
    else:
        ts = dt.datetime.fromisoformat(_text(timestamp, "timestamp"))
    if ts.tzinfo is not None:
        ts = ts.astimezone(dt.timezone.utc).replace(tzinfo=None)
    stamp = ts.strftime("%Y-%m-%d %H:%M:%S.%f")  # rebuilt from a parsed datetime: no caller text in SQL
    if tables.mode == "path":
        return tables.spark.read.format("delta").option("timestampAsOf", stamp).load(tables.path(name))
    return tables.spark.sql(f"SELECT * FROM {tables.qualified(name)} TIMESTAMP AS OF '{stamp}'")


def playlist_as_of(spark: SparkSession, tables: Tables, user_id: str, week: DateLike,
                   version: Optional[int] = None, timestamp: Optional[DateLike] = None) -> DataFrame:
    """One user's playlist of ``week`` as the ``discover_weekly`` table was at a Delta ``version``
    or ``timestamp`` (time travel). Same columns as :func:`playlist`.

    Time travel reaches versions whose files VACUUM has not removed yet (see
    :mod:`recsys_spark.maintenance`: ``discover_weekly`` keeps 14 days by default).
    """
    dw = _as_of(tables, "discover_weekly", version, timestamp)
    return _query(spark, tables, "playlists", "user_id = :user_id AND week_start = :week", "position",
                  {"user_id": _text(user_id, "user_id"), "week": _week(week)}, overrides={"discover_weekly": dw})


def version_for_week(spark: SparkSession, tables: Tables, week: DateLike) -> Optional[int]:
    """The ``discover_weekly`` Delta version committed by the last successful write of ``week``
    (from the ``runs`` table: stage ``write``, ``counts['table_version']``), or None."""
    row = _query(spark, tables, "run_stages",
                 "job = 'weekly' AND stage = 'write' AND status = 'succeeded' AND week_start = :week "
                 "AND counts['table_version'] IS NOT NULL",
                 "finished_at DESC", {"week": _week(week)}, limit=1).first()
    return int(row["counts"]["table_version"]) if row else None


def last_week_playlist_time_travel(spark: SparkSession, tables: Tables, user_id: str,
                                   week: DateLike) -> DataFrame:
    """Last week's playlist exactly as last week's run published it: the table at the version that
    run committed (``version_for_week``), immune to later reruns of that partition."""
    prev = _week(week) - dt.timedelta(days=7)
    version = version_for_week(spark, tables, prev)
    if version is None:
        raise LookupError(f"no successful weekly write of {prev} recorded in runs; "
                          f"use playlist_as_of(..., version=... or timestamp=...)")
    return playlist_as_of(spark, tables, user_id, prev, version=version)


def why_picked(spark: SparkSession, tables: Tables, user_id: str, week: DateLike,
               track_id: Optional[str] = None) -> DataFrame:
    """Why each track (or one ``track_id``) is in the user's playlist.

    Returns
    -------
    DataFrame
        ``week_start, user_id, position, track_id, title, creator_id, genre, sources, reason,
        score, channels, recall_score, din_score, quality, final_score, seed_track_id,
        seed_title`` (candidate columns null when the run kept no ``candidates``).
    """
    args = {"user_id": _text(user_id, "user_id"), "week": _week(week)}
    where = "user_id = :user_id AND week_start = :week"
    if track_id is not None:
        args["track_id"] = _text(track_id, "track_id")
        where += " AND track_id = :track_id"
    return _query(spark, tables, "explanations", where, "position", args)


# ------------------------------------------------------------------------------------------------
# aggregates
# ------------------------------------------------------------------------------------------------


def channel_mix(spark: SparkSession, tables: Tables, since: Optional[DateLike] = None,
                until: Optional[DateLike] = None) -> DataFrame:
    """Per week and channel: ``week_start, channel, slots, users, only_source_slots,
    share_of_slots`` (weeks in ``[since, until]`` when given), by week then slots."""
    where, args = _range("week_start", since, until)
    return _query(spark, tables, "channel_mix", where, "week_start, slots DESC, channel", args)


def creator_exposure(spark: SparkSession, tables: Tables, week: DateLike,
                     top: Optional[int] = None) -> DataFrame:
    """Per creator in ``week``: ``week_start, creator_id, slots, tracks, users, share_of_users``
    (most exposed first; ``top`` rows when given)."""
    return _query(spark, tables, "creator_exposure", "week_start = :week", "slots DESC, creator_id",
                  {"week": _week(week)}, limit=top)


def quarantine_summary(spark: SparkSession, tables: Tables, since: Optional[DateLike] = None,
                       until: Optional[DateLike] = None) -> DataFrame:
    """Rejected records: ``entity, reason, ingest_date, records, files, first_seen, last_seen``."""
    where, args = _range("ingest_date", since, until)
    return _query(spark, tables, "quarantine_summary", where, "ingest_date DESC, entity, records DESC, reason",
                  args)


def _date(value: DateLike) -> dt.date:
    if isinstance(value, str) and not _ISO_DATE.match(value.strip()):
        raise ValueError(f"expected 'YYYY-MM-DD', got {value!r}")
    if not isinstance(value, (str, dt.date)):
        raise TypeError(f"expected a date, got {type(value).__name__}")
    return to_date(value)


def _range(col: str, since: Optional[DateLike], until: Optional[DateLike]):
    conds, args = [], {}
    if since is not None:
        conds.append(f"{col} >= :since")
        args["since"] = _date(since)
    if until is not None:
        conds.append(f"{col} <= :until")
        args["until"] = _date(until)
    return " AND ".join(conds), args


# ------------------------------------------------------------------------------------------------
# runs
# ------------------------------------------------------------------------------------------------


def runs_overview(spark: SparkSession, tables: Tables, job: str = "weekly", limit: int = 20) -> DataFrame:
    """The latest runs of ``job``: ``run_id, job, week_start, started_at, finished_at, status,
    stages, skipped_stages, users_served, users_short, rows_written, total_seconds, errors``."""
    return _query(spark, tables, "runs_overview", "job = :job", "started_at DESC", {"job": _text(job, "job")},
                  limit=limit)


@dataclass
class RunSummary:
    """What one run did, from the ``runs`` table (see :func:`last_run_summary`)."""

    run_id: str
    job: str
    week: Optional[dt.date]
    status: str
    started_at: Optional[dt.datetime]
    finished_at: Optional[dt.datetime]
    users_served: Optional[int]
    users_short: Optional[int]
    rows_written: Optional[int]
    stages: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def seconds(self) -> Optional[float]:
        if self.started_at and self.finished_at:
            return round((self.finished_at - self.started_at).total_seconds(), 1)
        return None

    @property
    def skipped(self) -> Dict[str, str]:
        return {s["stage"]: s["skipped"] or "" for s in self.stages if s["status"] == "skipped"}

    @property
    def failed(self) -> Dict[str, str]:
        return {s["stage"]: s["message"] or "" for s in self.stages if s["status"] == "failed"}

    def format(self) -> str:
        lines = [f"run {self.run_id} ({self.job}, week {self.week}): {self.status.upper()}",
                 f"  started {self.started_at}, finished {self.finished_at} ({self.seconds}s)",
                 f"  users served {self.users_served}, users short of a full playlist {self.users_short}, "
                 f"rows written {self.rows_written}",
                 f"  {'stage':<26} {'status':<9} {'seconds':>8} {'rows_in':>9} {'rows_out':>9}  note"]
        for s in self.stages:
            note = s["skipped"] or s["message"] or ""
            counts = {k: (int(v) if float(v).is_integer() else round(v, 3)) for k, v in (s["counts"] or {}).items()}
            lines.append(f"  {s['stage']:<26} {s['status']:<9} {s['seconds'] or 0:>8.1f} "
                         f"{'' if s['rows_in'] is None else s['rows_in']:>9} "
                         f"{'' if s['rows_out'] is None else s['rows_out']:>9}  {note}{' ' if note and counts else ''}"
                         f"{counts if counts else ''}")
        return "\n".join(lines)

    __str__ = format


def last_run_summary(spark: SparkSession, tables: Tables, week: Optional[DateLike] = None,
                     job: str = "weekly") -> Optional[RunSummary]:
    """The latest run of ``job`` (of ``week`` when given) and its stages; None when there is none.

    Answers "what happened in last Monday's run?": status (``succeeded`` / ``failed`` /
    ``incomplete`` for a run that died without recording its end), per stage status, rows in/out,
    seconds, what was skipped and why, users served and users short of a full playlist.
    Collects one run's stage rows (tens) to the driver.
    """
    where, args = "job = :job", {"job": _text(job, "job")}
    if week is not None:
        where += " AND week_start = :week"
        args["week"] = _week(week)
    head = _query(spark, tables, "runs_overview", where, "started_at DESC, run_id DESC", args, limit=1).first()
    if head is None:
        return None
    stages = _query(spark, tables, "run_stages", "run_id = :run_id", "started_at, finished_at",
                    {"run_id": head["run_id"]}).collect()
    return RunSummary(
        run_id=head["run_id"], job=head["job"], week=head["week_start"], status=head["status"],
        started_at=head["started_at"], finished_at=head["finished_at"],
        users_served=None if head["users_served"] is None else int(head["users_served"]),
        users_short=None if head["users_short"] is None else int(head["users_short"]),
        rows_written=head["rows_written"],
        stages=[{k: r[k] for k in ("stage", "status", "seconds", "rows_in", "rows_out", "counts", "skipped",
                                   "message")} for r in stages])


# ------------------------------------------------------------------------------------------------
# views
# ------------------------------------------------------------------------------------------------


def view_sql(tables: Tables, view: str) -> str:
    """The view's SELECT with the registry's table references (``delta.`path``` or
    ``catalog.schema.table``)."""
    return VIEWS[view].format(**{name: tables.qualified(name) for name in VIEW_TABLES[view]}).strip()


def create_views(spark: SparkSession, tables: Tables, prefix: str = "dw_") -> Dict[str, str]:
    """Register the SQL views ``<prefix><view>`` for every query of this module.

    Path mode: session-scoped TEMP views over ``delta.`<warehouse>/<table>```. Catalog mode
    (Databricks / Unity Catalog): persistent views in the tables' schema, with comments. Tables a
    view reads are created empty when absent, so the views always resolve.

    Returns
    -------
    dict
        ``{view name as referenced in SQL: its SELECT text}``.
    """
    if not _PREFIX.match(prefix):
        raise ValueError(f"invalid view prefix {prefix!r}")
    needed = sorted({t for names in VIEW_TABLES.values() for t in names})
    for name in needed:
        if not tables.exists(name):
            tables.create(name)
    created: Dict[str, str] = {}
    for view in VIEWS:
        body = view_sql(tables, view)
        if tables.mode == "path":
            ref = f"{prefix}{view}"
            spark.sql(f"CREATE OR REPLACE TEMP VIEW `{ref}` AS {body}")
        else:
            ns = tables.qualified("runs").rsplit(".", 1)[0]  # `catalog`.`schema` from the registry
            ref = f"{ns}.`{prefix}{view}`"
            comment = _VIEW_COMMENTS[view].replace("'", "")
            spark.sql(f"CREATE OR REPLACE VIEW {ref} COMMENT '{comment}' AS {body}")
        created[ref] = body
        log.info("view %s registered", ref)
    return created
