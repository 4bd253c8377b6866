"""Two runs of the same week: the one that commits second fails with ConcurrentRunError, writes
nothing, and the table holds exactly the other run's complete week (earlier weeks untouched)."""

import datetime as dt

import pytest
from pyspark.sql import functions as F

from conftest import TINY_WEEK, copy_warehouse
from recsys_spark.config import load_config
from recsys_spark.pipeline import ConcurrentRunError, run_weekly
from recsys_spark.tables import ALL_TABLES, Tables

W = dt.date.fromisoformat(TINY_WEEK)
PREV = W - dt.timedelta(days=7)


def _rows(tables, week):
    return sorted(tuple(r) for r in tables.read("discover_weekly").where(F.col("week_start") == week)
                  .select("user_id", "position", "track_id", "run_id").collect())


def test_run_started_before_another_runs_commit_fails_and_table_holds_the_other_week(
        spark, tiny_platform, tmp_path, monkeypatch):
    cfg = load_config(overrides=copy_warehouse(tiny_platform, tmp_path))
    tables = Tables.from_config(spark, cfg.storage)
    tables.create_all()
    earlier = spark.createDataFrame(
        [(PREV, f"u{i}", p, f"t{p}", 1.0, ["popular"], "r", "v", "older-run", dt.datetime(2026, 11, 16))
         for i in range(3) for p in range(1, 31)], ALL_TABLES["discover_weekly"].schema)
    tables.replace_partition("discover_weekly", earlier, "week_start", PREV)
    prev_rows = _rows(tables, PREV)

    # run A computes week W; when it reaches its final commit, run B (started later, so it resumes
    # A's finished stages) runs to completion and commits W first
    real_commit = Tables.commit_partition
    seen = {}

    def b_commits_first(self, claim, df):
        if claim.owner == "run-a" and "b" not in seen:
            seen["b"] = run_weekly(spark, cfg, W, run_id="run-b", tables=tables)
        return real_commit(self, claim, df)

    monkeypatch.setattr(Tables, "commit_partition", b_commits_first)
    with pytest.raises(ConcurrentRunError, match=r"another run of week 2026-11-23 committed discover_weekly after "
                                                 r"this run \(run-a\) started; this run wrote nothing"):
        run_weekly(spark, cfg, W, run_id="run-a", tables=tables)

    b = seen["b"]
    assert b.users > 0 and b.rows > 0
    rows = _rows(tables, W)
    assert {r[3] for r in rows} == {"run-b"}                       # only B's rows
    assert len(rows) == b.rows                                       # B's complete week, nothing of A
    keys = [(r[0], r[1]) for r in rows]
    assert len(keys) == len(set(keys))                               # no duplicate (user, position)
    assert len({r[0] for r in rows}) == b.users
    assert _rows(tables, PREV) == prev_rows                          # earlier weeks untouched
    runs = {(r["run_id"], r["stage"]): r for r in tables.read("runs").where(F.col("stage").isin("write", "run"))
            .collect()}
    assert runs[("run-a", "write")]["status"] == "failed"
    assert "ConcurrentRunError" in runs[("run-a", "write")]["message"]
    assert ("run-a", "run") not in runs
    assert runs[("run-b", "run")]["status"] == "succeeded"

    # the loser's rerun is not blocked (no lock left behind) and replaces the week cleanly
    monkeypatch.setattr(Tables, "commit_partition", real_commit)
    c = run_weekly(spark, cfg, W, run_id="run-c", tables=tables)
    rows_c = _rows(tables, W)
    assert {r[3] for r in rows_c} == {"run-c"} and len(rows_c) == c.rows
    assert [r[:3] for r in rows_c] == [r[:3] for r in rows]          # same inputs and seed: same playlist
    assert _rows(tables, PREV) == prev_rows
