import datetime as dt

import pytest

from recsys_spark.weeks import current_week, require_monday, this_week_window, week_start


def test_week_start_and_window():
    assert week_start("2026-11-27") == dt.date(2026, 11, 23)
    assert week_start(dt.date(2026, 11, 23)) == dt.date(2026, 11, 23)
    assert current_week(dt.date(2026, 11, 29)) == dt.date(2026, 11, 23)
    assert this_week_window("2026-11-23") == (dt.datetime(2026, 11, 16), dt.datetime(2026, 11, 23))


def test_require_monday_explains():
    with pytest.raises(ValueError, match="2026-11-27 is a Friday, its week starts 2026-11-23"):
        require_monday("2026-11-27")
    with pytest.raises(ValueError, match="not a date"):
        require_monday("next monday")
