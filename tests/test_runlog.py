"""Long stages show progress: a heartbeat logs elapsed time and the Spark stages in flight (no Spark)."""

import logging
import time
from types import SimpleNamespace

from recsys_spark.runlog import RunLog, spark_progress


class _Tracker:
    def getActiveStageIds(self):
        return [42, 41]

    def getStageInfo(self, sid):
        return SimpleNamespace(numCompletedTasks=3 if sid == 41 else 0, numTasks=8)


_SC = SimpleNamespace(statusTracker=lambda: _Tracker(), setJobGroup=lambda *a: None)


def test_spark_progress_lists_active_stages_with_task_counts():
    assert spark_progress(_SC) == "spark stage 41 (3/8 tasks), stage 42 (0/8 tasks)"
    assert spark_progress(None) == ""
    broken = SimpleNamespace(statusTracker=lambda: (_ for _ in ()).throw(RuntimeError("gone")))
    assert spark_progress(broken) == ""


def test_long_stage_logs_heartbeats_until_it_ends(caplog):
    tables = SimpleNamespace(spark=SimpleNamespace(sparkContext=_SC))
    rl = RunLog(tables, "run-1", None, persist=False, progress_seconds=0.05)
    caplog.set_level(logging.INFO, logger="recsys_spark.run")
    with rl.stage("rank") as st:
        time.sleep(0.4)
        st.rows_out = 1
    beats = [r.getMessage() for r in caplog.records if "running for" in r.getMessage()]
    assert len(beats) >= 3, beats
    assert beats[0].startswith("[run-1] stage rank running for ")
    assert beats[0].endswith(": spark stage 41 (3/8 tasks), stage 42 (0/8 tasks)")
    n = len(beats)
    time.sleep(0.2)  # the heartbeat stops with the stage
    assert len([r for r in caplog.records if "running for" in r.getMessage()]) == n
    assert rl.records[0].status == "succeeded"


def test_no_heartbeat_for_short_stages_or_when_disabled(caplog):
    caplog.set_level(logging.INFO, logger="recsys_spark.run")
    for secs in (60.0, 0):
        with RunLog(None, "run-2", None, persist=False, progress_seconds=secs).stage("load"):
            time.sleep(0.1)
    assert not [r for r in caplog.records if "running for" in r.getMessage()]


class _ConnectSession:
    """Like a Spark Connect session: no SparkContext, job tags instead."""

    def __init__(self):
        self.tags = []

    @property
    def sparkContext(self):
        raise RuntimeError("[JVM_ATTRIBUTE_NOT_SUPPORTED] sparkContext is not supported in Spark Connect")

    def addTag(self, tag):
        self.tags.append(tag)

    def removeTag(self, tag):
        self.tags.remove(tag)


def test_jobs_are_labelled_with_the_job_group_or_on_connect_with_one_tag():
    from recsys_spark.runlog import tag_jobs

    groups = []
    classic = SimpleNamespace(sparkContext=SimpleNamespace(setJobGroup=lambda g, d: groups.append((g, d))))
    assert tag_jobs(classic, "run-1:rank", "weekly rank") == "job_group"
    assert groups == [("run-1:rank", "weekly rank")]
    connect = _ConnectSession()
    assert tag_jobs(connect, "run-1:load") == "tag"
    assert tag_jobs(connect, "run-1:rank,x") == "tag"
    assert connect.tags == ["run-1:rank;x"]          # one tag at a time, no comma
    rl = RunLog(SimpleNamespace(spark=connect), "run-2", None, persist=False, progress_seconds=0)
    with rl.stage("write") as st:
        st.rows_out = 1
    assert connect.tags == ["run-2:write"] and rl.records[0].status == "succeeded"
