"""Checks made before any Spark work: identifiers, input and warehouse paths, weeks against the data.

One rule for identifiers, used wherever an id is read (ingestion of every entity, the known-track
check of interactions): :func:`normalize_id` (Spark) and :func:`normalize_id_value` (Python)
apply the same steps:

1. Unicode NFC (``e`` + combining acute and the precomposed ``é`` are the same id);
2. leading / trailing whitespace and invisible characters removed: ASCII whitespace, every
   Unicode space separator (NBSP U+00A0, U+2000-U+200A, U+3000, ...) and format character
   (zero-width space U+200B, ZWJ / ZWNJ, word joiner U+2060, BOM U+FEFF, ...);
3. an id that still holds a control or format character, or that is a JSON object / array, is
   rejected (:func:`id_problem`): ingestion quarantines it as ``invalid_id:<field>``; an id
   empty after step 2 is ``null_key:<field>``.

Argument errors are :class:`InputError` (a ``ValueError``) with a one-line message; jobs turn
them into exit code 2.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import unicodedata
from typing import Optional, Union

from pyspark.sql import Column
from pyspark.sql import functions as F

from .artifacts import is_local, scheme

# Java regex (Spark): whitespace, Unicode separators (Z*), format characters (Cf), BOM
_EDGE_JAVA = r"^[\s\p{Z}\p{Cf}\x{FEFF}]+|[\s\p{Z}\p{Cf}\x{FEFF}]+$"
_BAD_INSIDE_JAVA = r"[\p{Cc}\p{Cf}]"
_ASCII_SPACE = " \t\n\x0b\f\r"  # what Java's \s matches
_EDGE_CATEGORIES = ("Zs", "Zl", "Zp", "Cf")


class InputError(ValueError):
    """An argument, input path or warehouse path that cannot be used (jobs exit with code 2)."""


def normalize_id(col: Column) -> Column:
    """Spark: NFC, then edge whitespace / invisible characters removed (null stays null)."""
    nfc = F.when(col.isNotNull(), F.call_function("reflect", F.lit("com.ibm.icu.text.Normalizer"),
                                                  F.lit("compose"), col.cast("string"), F.lit(False)))
    return F.regexp_replace(nfc, _EDGE_JAVA, "")


def id_problem(normalized: Column) -> Column:
    """Spark: true when a normalized id is not acceptable (control / format character inside, or a
    JSON object / array instead of a scalar)."""
    return normalized.rlike(_BAD_INSIDE_JAVA) | normalized.rlike(r"^[\[{]")


def normalize_id_value(value: Optional[str]) -> Optional[str]:
    """Python twin of :func:`normalize_id` (same result for the same string)."""
    if value is None:
        return None
    text = unicodedata.normalize("NFC", str(value))

    def edge(ch: str) -> bool:
        return ch in _ASCII_SPACE or unicodedata.category(ch) in _EDGE_CATEGORIES

    start, end = 0, len(text)
    while start < end and edge(text[start]):
        start += 1
    while end > start and edge(text[end - 1]):
        end -= 1
    stripped = text[start:end]
    return stripped


def check_input_path(path: Optional[str], what: str = "--path") -> str:
    """The path, if it exists and can be read; else :class:`InputError` (one line)."""
    if not path:
        raise InputError(f"{what}: no input path given")
    if not is_local(path):
        # ingestion reads raw files with Python (records counted apart from Spark's parser, content
        # sniffed for compression and encoding), so an object-store URI would only fail later as
        # "not a folder" or "no such file"
        raise InputError(f"{what}: {path} is a {scheme(path)}: URI; raw input is read from a local "
                         f"or mounted path (/Volumes/..., /dbfs/..., a bucket mounted with a FUSE "
                         f"driver), not through an object-store client")
    local = path[len("file:"):] if path.startswith("file:") else path
    local = re.sub(r"^/+", "/", local)
    if not os.path.exists(local):
        raise InputError(f"{what}: input path does not exist: {path}")
    if not os.access(local, os.R_OK) or (os.path.isdir(local) and not os.access(local, os.X_OK)):
        raise InputError(f"{what}: input path is not readable (permission denied): {path}")
    return path


def check_warehouse_path(path: str, what: str = "storage.warehouse") -> str:
    """A warehouse folder must be a directory (or creatable as one) and writable."""
    if "://" in path and not path.startswith("file:"):
        return path
    local = path[len("file:"):] if path.startswith("file:") else path
    if os.path.exists(local):
        if not os.path.isdir(local):
            raise InputError(f"{what}: warehouse path {path} is a file, not a folder")
        if not os.access(local, os.W_OK | os.X_OK):
            raise InputError(f"{what}: warehouse folder {path} is not writable")
        return path
    parent = os.path.dirname(os.path.abspath(local))
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise InputError(f"{what}: cannot create warehouse {path}: {parent} is a file")
    if parent and not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{what}: cannot create warehouse {path}: {parent} is not writable")
    return path


def check_week_against_data(week: Union[dt.date, str], last_event_ts: Optional[dt.datetime],
                            tolerance_days: int = 7) -> dt.date:
    """Refuse a week that the data cannot support.

    Parameters
    ----------
    week : date or str
        The Monday whose playlists are built (strict ``YYYY-MM-DD``).
    last_event_ts : datetime or None
        The latest interaction timestamp in the tables (naive UTC); None when there are none.
    tolerance_days : int
        How many days the week may start after the last event (a week is built from the
        interactions before it: ``week - last_event <= tolerance_days + 7`` is accepted, i.e. the
        data must reach into the ``tolerance_days`` before the week's previous week ends).

    Returns
    -------
    date
        The week, when acceptable.

    Raises
    ------
    InputError
        No interactions at all, or none in the ``7 + tolerance_days`` days before the week.
    """
    from .weeks import require_monday

    w = require_monday(week)
    if tolerance_days < 0:
        raise InputError(f"tolerance_days must be >= 0, got {tolerance_days}")
    if last_event_ts is None:
        raise InputError(f"week {w.isoformat()}: there are no interactions at all; ingest data first")
    last = last_event_ts.date() if isinstance(last_event_ts, dt.datetime) else last_event_ts
    gap = (w - last).days
    if gap > 7 + tolerance_days:
        raise InputError(
            f"week {w.isoformat()} is {gap} days after the last interaction ({last.isoformat()}); at most "
            f"{7 + tolerance_days} days (one week + {tolerance_days} days tolerance) are allowed: "
            f"a week must be built from interactions before it")
    return w
