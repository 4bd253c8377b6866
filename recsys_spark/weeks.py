"""Week arithmetic. A week starts on Monday 00:00 in the pipeline's time zone (UTC by default)."""

from __future__ import annotations

import datetime as dt
from typing import Optional, Tuple, Union

DateLike = Union[str, dt.date, dt.datetime]


def to_date(value: DateLike) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip()[:10])
    except ValueError as exc:
        raise ValueError(f"not a date (expected YYYY-MM-DD): {value!r}") from exc


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


def week_bounds(week: DateLike) -> Tuple[dt.datetime, dt.datetime]:
    """``[W, W+7d)``: the week whose playlists are being built (and evaluated against)."""
    w = require_monday(week)
    start = dt.datetime.combine(w, dt.time())
    return start, start + dt.timedelta(days=7)


def previous_weeks(week: DateLike, n: int):
    """The ``n`` Mondays before ``week``, most recent first."""
    w = require_monday(week)
    return [w - dt.timedelta(days=7 * i) for i in range(1, n + 1)]
