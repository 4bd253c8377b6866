"""A killed or crashed weekly run, rerun, equals an uninterrupted run; earlier weeks stay untouched.

One chain of faults on one warehouse (it starts from the session's snapshot after week W-7), so
the expensive work is done once: a process SIGKILLed right after ``recall.als`` committed; a
second process that resumes it and is SIGKILLed during the final commit; an in-process run that
resumes everything and raises before the commit (a hook); and the rerun that completes the week.
After every fault nothing of week W is visible and W-7 is untouched; the final playlist equals
the uninterrupted run's. The faults are injected by hooks the tests pass to the runner
(``tests/weekly_driver.py`` for the subprocesses), never by production code.
"""

import datetime as dt
import os
import shutil
import subprocess
import sys

import pytest
from pyspark.sql import functions as F

from conftest import TINY_WEEK
from recsys_spark.config import load_config
from recsys_spark.pipeline import RunHooks, run_weekly
from recsys_spark.tables import Tables

pytestmark = [pytest.mark.slow, pytest.mark.integration]

W = dt.date.fromisoformat(TINY_WEEK)
PREV = W - dt.timedelta(days=7)
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PERSISTED = {"embed", "recall.popular", "recall.item_cf", "recall.als", "recall.content", "recall.prompt",
             "train.din", "aggregate.creators", "rank"}


def _playlist(tables, week=W):
    return sorted(tuple(r) for r in tables.read("discover_weekly").where(F.col("week_start") == week)
                  .select("user_id", "position", "track_id").collect())


def _status(tables, run_id):
    return {r["stage"]: r["status"] for r in tables.read("runs").where(F.col("run_id") == run_id).collect()}


def _session_jars(spark, dest):
    """The jars this session's JVM resolved through Ivy (Delta and its dependencies), linked into
    one folder for the subprocesses' ``spark.jars_dir``: they start without resolving Delta again.
    None (the subprocesses resolve it themselves) when the session has no Delta jar listed."""
    listed = [j for j in spark.sparkContext.getConf().get("spark.jars", "").split(",") if j]
    jars = [j[len("file://"):] if j.startswith("file://") else j[len("file:"):] if j.startswith("file:") else j
            for j in listed]
    jars = [j for j in jars if j.endswith(".jar") and os.path.isfile(j)]
    if not any("delta-spark" in os.path.basename(j) for j in jars):
        return None
    dest.mkdir()
    for j in jars:
        os.symlink(j, dest / os.path.basename(j))
    return str(dest)


def _killed_run(overrides, *flags, timeout=900):
    """``tests/weekly_driver.py`` in a fresh process; returns (process, run_id of that run)."""
    cmd = [sys.executable, os.path.join(HERE, "weekly_driver.py"), *flags, "--week", TINY_WEEK,
           "--set", "spark.master=local[2]", "--set", "spark.driver_memory=2g"]
    for o in overrides:
        cmd += ["--set", o]
    return subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True,
                          timeout=timeout)


def _last_run_id(tables, before):
    ids = {r["run_id"] for r in tables.read("runs").where(F.col("week_start") == W).select("run_id").collect()}
    new = ids - before
    assert len(new) == 1, new
    return new.pop()


def test_kills_and_a_crash_then_resume_equal_the_uninterrupted_run(spark, tiny_platform, tiny_weeks, tmp_path):
    for sub in ("warehouse", "models"):
        if (tiny_weeks["after_prev"] / sub).exists():
            shutil.copytree(tiny_weeks["after_prev"] / sub, tmp_path / sub)
    overrides = tiny_platform["overrides"] + [f"storage.warehouse={tmp_path / 'warehouse'}",
                                              f"storage.model_dir={tmp_path / 'models'}"]
    cfg = load_config(overrides=overrides)
    jars = _session_jars(spark, tmp_path / "jars")
    sub_overrides = overrides + ([f"spark.jars_dir={jars}"] if jars else [])  # execution only: same fingerprint
    tables = Tables.from_config(spark, cfg.storage)
    prev_rows, reference = tiny_weeks["playlist_prev"], tiny_weeks["playlist_w"]
    assert prev_rows and reference and _playlist(tables, PREV) == prev_rows

    def nothing_of_w_visible():
        assert _playlist(tables) == []
        assert _playlist(tables, PREV) == prev_rows

    # 1. SIGKILL right after recall.als committed its candidates
    proc = _killed_run(sub_overrides, "--kill-after", "recall.als")
    assert proc.returncode == -9, proc.stdout[-2000:] + proc.stderr[-2000:]
    nothing_of_w_visible()
    first = _last_run_id(tables, set())
    assert {s for s, st in _status(tables, first).items() if st == "succeeded"} >= {
        "load", "embed", "recall.popular", "recall.item_cf", "recall.als"}

    # 2. the rerun resumes after recall.als (nothing before it is recomputed), runs the stages the
    #    kill prevented, and is SIGKILLed while Delta writes the week's files
    proc = _killed_run(sub_overrides, "--kill-during-commit")
    assert proc.returncode == -9, proc.stdout[-2000:] + proc.stderr[-2000:]
    nothing_of_w_visible()
    second = _status(tables, _last_run_id(tables, {first}))
    # (train.ranker: skipped in every run, disabled in the shipped config)
    assert {s for s, st in second.items() if st == "skipped"} - {"train.ranker"} == {
        "embed", "recall.popular", "recall.item_cf", "recall.als"}
    assert all(second[s] == "succeeded" for s in ("recall.content", "recall.prompt", "train.din",
                                                  "aggregate.creators", "rank")), second
    assert "run" not in second

    # 3. an exception right before the commit (in process): every persisted stage resumed, nothing
    #    written, the write stage recorded as failed
    def crash():
        raise RuntimeError("simulated crash before the commit")

    with pytest.raises(RuntimeError, match="simulated crash before the commit"):
        run_weekly(spark, cfg, W, run_id="crash", tables=tables, hooks=RunHooks(before_commit=crash))
    nothing_of_w_visible()
    third = _status(tables, "crash")
    assert {s for s, st in third.items() if st == "skipped"} - {"train.ranker"} == PERSISTED
    assert third["write"] == "failed" and "run" not in third

    # 4. the rerun completes the week: the uninterrupted run's playlist, earlier week untouched
    res = run_weekly(spark, cfg, W, tables=tables)
    assert _playlist(tables) == reference
    assert _playlist(tables, PREV) == prev_rows
    assert _status(tables, res.run_id)["run"] == "succeeded"
    dups = tables.read("discover_weekly").groupBy("week_start", "user_id", "position").count()
    assert dups.where(F.col("count") > 1).count() == 0
