"""A killed or crashed weekly run, rerun, equals an uninterrupted run; earlier weeks stay untouched."""

import datetime as dt
import os
import shutil
import subprocess
import sys

import pytest
from pyspark.sql import functions as F

from conftest import TINY_WEEK, copy_warehouse
from recsys_spark.config import load_config
from recsys_spark.pipeline import run_weekly
from recsys_spark.tables import Tables

W = dt.date.fromisoformat(TINY_WEEK)
PREV = W - dt.timedelta(days=7)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _playlist(tables, week=W):
    return sorted(tuple(r) for r in tables.read("discover_weekly").where(F.col("week_start") == week)
                  .select("user_id", "position", "track_id").collect())


@pytest.fixture(scope="module")
def weeks_done(tiny_weeks):
    """Week W-7 written (a snapshot of the warehouse then, for the kill tests to start from) and
    W's playlist from an uninterrupted run on top of it, the expected one (conftest's session run;
    the exception test starts without W-7 and must still get this playlist)."""
    return {"snapshot": tiny_weeks["after_prev"], "prev_rows": tiny_weeks["playlist_prev"],
            "reference": tiny_weeks["playlist_w"]}


@pytest.fixture(scope="module")
def reference(weeks_done):
    return weeks_done["reference"]


def _kill_run(overrides, stage, timeout=900):
    env = dict(os.environ, RECSYS_TEST_SIGKILL_AFTER_STAGE=stage, PYTHONPATH=ROOT)
    cmd = [sys.executable, os.path.join(ROOT, "jobs", "weekly.py"), "--week", TINY_WEEK,
           "--set", "spark.master=local[2]", "--set", "spark.driver_memory=2g"]
    for o in overrides:
        cmd += ["--set", o]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc


@pytest.mark.parametrize("stage", ["recall.als", "write.during_commit"])
def test_sigkill_then_rerun_equals_uninterrupted(spark, tiny_platform, tmp_path, weeks_done, reference, stage):
    # starts from the warehouse as it was after week W-7: that earlier week must stay untouched
    for sub in ("warehouse", "models"):
        if (weeks_done["snapshot"] / sub).exists():
            shutil.copytree(weeks_done["snapshot"] / sub, tmp_path / sub)
    overrides = tiny_platform["overrides"] + [f"storage.warehouse={tmp_path / 'warehouse'}",
                                              f"storage.model_dir={tmp_path / 'models'}"]
    cfg = load_config(overrides=overrides)
    tables = Tables.from_config(spark, cfg.storage)
    prev, prev_rows = PREV, weeks_done["prev_rows"]
    assert prev_rows and _playlist(tables, prev) == prev_rows
    proc = _kill_run(overrides, stage)
    assert proc.returncode == -9, proc.stdout[-2000:] + proc.stderr[-2000:]
    # nothing of week W is visible after the kill (the write is one atomic commit)
    assert _playlist(tables) == []
    assert _playlist(tables, prev) == prev_rows
    res = run_weekly(spark, cfg, W, tables=tables)
    assert _playlist(tables) == reference
    assert _playlist(tables, prev) == prev_rows
    runs = tables.read("runs").where(F.col("run_id") == res.run_id)
    skipped = {r["stage"] for r in runs.where(F.col("status") == "skipped").collect()}
    if stage == "recall.als":
        # killed right after recall.als committed: the rerun resumes after it (nothing before it is
        # recomputed) and runs the stages the kill prevented
        assert {"embed", "recall.popular", "recall.item_cf", "recall.als"} <= skipped
        assert not ({"recall.content", "recall.prompt", "train.din", "rank", "write"} & skipped)
    dups = tables.read("discover_weekly").groupBy("week_start", "user_id", "position").count()
    assert dups.where(F.col("count") > 1).count() == 0


def test_exception_mid_run_then_resume(spark, tiny_platform, tmp_path, reference):
    cfg = load_config(overrides=copy_warehouse(tiny_platform, tmp_path))
    tables = Tables.from_config(spark, cfg.storage)
    with pytest.raises(RuntimeError, match="simulated crash after stage rank"):
        run_weekly(spark, cfg, W, tables=tables, fail_after_stage="rank")
    assert _playlist(tables) == []
    failed = tables.read("runs").where(F.col("status") == "succeeded").select("stage").collect()
    assert "rank" in {r["stage"] for r in failed}
    run_weekly(spark, cfg, W, tables=tables)
    assert _playlist(tables) == reference
    # --force recomputes everything and still gives the same playlist (deterministic given the seed)
    res = run_weekly(spark, cfg, W, tables=tables, force=True)
    assert _playlist(tables) == reference
    assert tables.read("runs").where((F.col("run_id") == res.run_id) & (F.col("status") == "skipped")
                                     & F.col("stage").startswith("recall")).count() == 0
