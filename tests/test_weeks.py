import datetime as dt

import pytest

from recsys_spark.weeks import current_week, parse_week, require_monday, this_week_window, week_start


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


@pytest.mark.parametrize("text", ["2026-11-30garbage", "2026-11-30T00:00", "20261130", "2026-W49-1", "2026-11-3",
                                  "30/11/2026", "", "2026-02-30"])
def test_week_is_parsed_strictly(text):
    with pytest.raises(ValueError, match="not a date"):
        parse_week(text)


def test_parse_week_accepts_a_monday_only():
    assert parse_week(" 2026-11-30 ") == dt.date(2026, 11, 30)
    with pytest.raises(ValueError, match="must be a Monday"):
        parse_week("2026-12-01")


def test_cli_refuses_a_garbage_week_before_spark(capsys):
    from recsys_spark.cli import base_parser, parse

    with pytest.raises(SystemExit) as exc:
        parse(base_parser("x"), ["--week", "2026-11-30garbage"])
    assert exc.value.code == 2
    assert "not a date" in capsys.readouterr().err
