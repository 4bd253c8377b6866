"""Two runs of the same week: the one that commits second fails with ConcurrentRunError, writes
nothing, and the table holds exactly the other run's complete week (earlier weeks untouched).

The runs are the runner's claim/commit around the real ``load`` and ``write`` stages, on a copy
of the session's warehouse after week W (its ``candidates[W]`` are the write stage's input), so
the protocol is tested without recomputing the week three times."""

import datetime as dt
import shutil

import pytest
from pyspark.sql import functions as F

from conftest import TINY_WEEK
from recsys_spark.config import load_config
from recsys_spark.pipeline import ConcurrentRunError, run_pipeline
from recsys_spark.pipeline.stages import LoadStage, WriteStage
from recsys_spark.tables import ALL_TABLES, Tables

pytestmark = pytest.mark.slow

W = dt.date.fromisoformat(TINY_WEEK)
PREV = W - dt.timedelta(days=7)


def _rows(tables, week):
    return sorted(tuple(r) for r in tables.read("discover_weekly").where(F.col("week_start") == week)
                  .select("user_id", "position", "track_id", "run_id").collect())


def _load_and_write(spark, cfg, week, run_id, tables):
    return run_pipeline(spark, cfg, week, [LoadStage(), WriteStage()], run_id=run_id, tables=tables)


def test_run_started_before_another_runs_commit_fails_and_table_holds_the_other_week(
        spark, tiny_platform, tiny_weeks, tmp_path, monkeypatch):
    for sub in ("warehouse", "models"):
        if (tiny_weeks["after_w"] / sub).exists():
            shutil.copytree(tiny_weeks["after_w"] / sub, tmp_path / sub)
    cfg = load_config(overrides=tiny_platform["overrides"] + [f"storage.warehouse={tmp_path / 'warehouse'}",
                                                               f"storage.model_dir={tmp_path / 'models'}"])
    tables = Tables.from_config(spark, cfg.storage)
    tables.create_all()
    earlier = spark.createDataFrame(
        [(PREV, f"u{i}", p, f"t{p}", 1.0, ["popular"], "r", "v", "older-run", dt.datetime(2026, 11, 16))
         for i in range(3) for p in range(1, 31)], ALL_TABLES["discover_weekly"].schema)
    tables.replace_partition("discover_weekly", earlier, "week_start", PREV)
    prev_rows = _rows(tables, PREV)

    # run A computes week W; when it reaches its final commit, run B (started later) runs to
    # completion and commits W first
    real_commit = Tables.commit_partition
    seen = {}

    def b_commits_first(self, claim, df):
        if claim.owner == "run-a" and "b" not in seen:
            seen["b"] = _load_and_write(spark, cfg, W, run_id="run-b", tables=tables)
        return real_commit(self, claim, df)

    monkeypatch.setattr(Tables, "commit_partition", b_commits_first)
    with pytest.raises(ConcurrentRunError, match=r"another run of week 2026-11-23 committed discover_weekly after "
                                                 r"this run \(run-a\) started; this run wrote nothing"):
        _load_and_write(spark, cfg, W, run_id="run-a", tables=tables)

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
    c = _load_and_write(spark, cfg, W, run_id="run-c", tables=tables)
    rows_c = _rows(tables, W)
    assert {r[3] for r in rows_c} == {"run-c"} and len(rows_c) == c.rows
    assert [r[:3] for r in rows_c] == [r[:3] for r in rows]          # same inputs and seed: same playlist
    assert _rows(tables, PREV) == prev_rows
