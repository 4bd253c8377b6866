"""Week arithmetic. A week starts on Monday 00:00 in the pipeline's time zone (UTC by default)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Optional, Tuple, Union

DateLike = Union[str, dt.date, dt.datetime]


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def to_date(value: DateLike) -> dt.date:
    """A date from a ``date``/``datetime`` or a string that is exactly ``YYYY-MM-DD``.

    Strings are parsed strictly (surrounding whitespace aside): ``2026-11-30garbage``,
    ``2026-11-30T00:00``, ``20261130`` and ``2026-W49-1`` are refused, never truncated.
    """
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    if not _ISO_DATE.fullmatch(text):
        raise ValueError(f"not a date (expected YYYY-MM-DD): {value!r}")
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"not a date (expected YYYY-MM-DD): {value!r} ({exc})") from exc


def parse_week(value: DateLike) -> dt.date:
    """Strict week argument: exactly ``YYYY-MM-DD`` and a Monday (what ``--week`` accepts)."""
    return require_monday(value)


def week_start(value: DateLike) -> dt.date:
    """The Monday on or before ``value``."""
    d = to_date(value)
    return d - dt.timedelta(days=d.weekday())


def require_monday(value: DateLike) -> dt.date:
    """Parse ``value`` and fail clearly unless it is a Monday."""
    d = to_date(value)
    if d.weekday() != 0:
        raise ValueError(f"week must be a Monday (YYYY-MM-DD); {d.isoformat()} is a {d.strftime('%A')}, "
                         f"its week starts {week_start(d).isoformat()}")
    return d


def current_week(today: Optional[dt.date] = None) -> dt.date:
    """The Monday of the current UTC week."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    return week_start(today)


def this_week_window(week: DateLike) -> Tuple[dt.datetime, dt.datetime]:
    """``[W-7d, W)`` as naive UTC datetimes: the "this week" window used for history mixing."""
    w = require_monday(week)
    end = dt.datetime.combine(w, dt.time())
    return end - dt.timedelta(days=7), end


def previous_weeks(week: DateLike, n: int):
    """The ``n`` Mondays before ``week``, most recent first."""
    w = require_monday(week)
    return [w - dt.timedelta(days=7 * i) for i in range(1, n + 1)]
