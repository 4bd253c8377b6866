"""The runner with hand-made stages: skips, resume, force, invalidation, hooks, the runs log,
release of cached frames, the claimed commit and ``--if-needed``."""

import pytest
from stage_fixtures import W, make_cfg, make_ctx
from pyspark.sql import functions as F

from recsys_spark.pipeline import RunHooks, StageReport, run_pipeline, run_stages
from recsys_spark.pipeline.stage import Stage
from recsys_spark.runlog import RunLog
from recsys_spark.tables import ALL_TABLES


class Fake(Stage):
    """Records its calls in ``calls``; ``done``/``skip`` as given."""

    def __init__(self, name, calls, done=False, skip=None, after=(), fail=False):
        self.name, self.calls, self._done, self._skip, self.after, self.fail = name, calls, done, skip, after, fail

    def skip_reason(self, ctx):
        return self._skip

    def done(self, ctx):
        return self._done

    def run(self, ctx):
        self.calls.append(self.name)
        if self.fail:
            raise ValueError(f"{self.name} broke")
        return StageReport(rows_in=1, rows_out=2, counts={"x": 3.0})


@pytest.fixture()
def ctx(spark, tmp_path):
    return make_ctx(spark, make_cfg(tmp_path, "embeddings.enabled=false"))


def _run(ctx, stages, **kw):
    rl = RunLog(None, ctx.run_id, W, persist=False, progress_seconds=0)
    run_stages(ctx, stages, rl, **kw)
    return [(r.stage, r.status, r.skipped) for r in rl.records]


def test_skip_resume_invalidation_and_hooks(ctx):
    calls, seen = [], []
    stages = [Fake("a", calls, skip="no inputs"), Fake("b", calls, done=True), Fake("c", calls),
              Fake("d", calls, done=True, after=("c",)), Fake("e", calls, done=True, after=("b",))]
    log = _run(ctx, stages, hooks=RunHooks(after_stage=seen.append))
    assert log == [("a", "skipped", "no inputs"),
                   ("b", "skipped", "already done by run ? (resume; --force reruns it)"),
                   ("c", "succeeded", None),
                   ("d", "succeeded", None),      # done, but c (which it builds on) ran again
                   ("e", "skipped", "already done by run ? (resume; --force reruns it)")]
    assert calls == ["c", "d"]
    assert seen == ["a", "b", "c", "d", "e"]       # after every stage, in order
    assert ctx.finished == {"b", "c", "d", "e"}


def test_force_reruns_done_stages_but_not_skipped_ones(ctx):
    calls = []
    log = _run(ctx, [Fake("a", calls, skip="disabled in config"), Fake("b", calls, done=True)], force=True)
    assert [s for s, st, _ in log if st == "succeeded"] == ["b"] and calls == ["b"]


def test_a_failing_stage_is_logged_and_stops_the_run(ctx):
    calls, seen = [], []
    rl = RunLog(None, "r", W, persist=False, progress_seconds=0)
    with pytest.raises(ValueError, match="b broke"):
        run_stages(ctx, [Fake("a", calls), Fake("b", calls, fail=True), Fake("c", calls)], rl,
                   hooks=RunHooks(after_stage=seen.append))
    assert [(r.stage, r.status) for r in rl.records] == [("a", "succeeded"), ("b", "failed")]
    assert rl.records[1].message == "ValueError: b broke"
    assert calls == ["a", "b"] and seen == ["a"]


class Writer(Stage):
    """Caches a frame and commits two playlist rows for W through ``ctx.commit``."""

    name = "write"

    def __init__(self):
        self.cached = None

    def run(self, ctx):
        import datetime as dt

        rows = [(W, "u1", p, f"t{p}", 1.0, ["popular"], "r", "v", ctx.run_id, dt.datetime(2026, 11, 23))
                for p in (1, 2)]
        self.cached = ctx.cache(ctx.spark.createDataFrame(rows, ALL_TABLES["discover_weekly"].schema))
        version = ctx.commit(self.cached)
        return StageReport(rows_out=2, counts={"users": 1.0, "short_users": 1.0, "table_version": float(version)})


def test_run_pipeline_commits_logs_releases_and_honours_if_needed(spark, tmp_path):
    cfg = make_cfg(tmp_path, "embeddings.enabled=false")
    order = []
    w = Writer()
    res = run_pipeline(spark, cfg, W, [w], run_id="first",
                       hooks=RunHooks(after_stage=order.append, before_commit=lambda: order.append("commit")))
    assert (res.users, res.rows, res.short_users, res.stages, res.skipped_run) == (1, 2, 1, ["write", "run"], False)
    assert order == ["commit", "write"]
    assert not w.cached.is_cached                      # released when the run ended
    tables = make_ctx(spark, cfg).tables
    assert sorted((r["position"], r["run_id"]) for r in tables.read("discover_weekly").collect()) == [
        (1, "first"), (2, "first")]
    runs = {r["stage"]: r for r in tables.read("runs").where(F.col("run_id") == "first").collect()}
    assert runs["write"]["status"] == runs["run"]["status"] == "succeeded"
    assert runs["run"]["config_hash"] == cfg.fingerprint() and runs["run"]["rows_out"] == 2
    again = run_pipeline(spark, cfg, W, [Writer()], run_id="second", if_needed=True)
    assert again.skipped_run and again.rows == 0
    assert tables.read("runs").where(F.col("run_id") == "second").count() == 0


def test_a_crash_before_the_commit_writes_nothing_and_releases_the_cache(spark, tmp_path):
    cfg = make_cfg(tmp_path, "embeddings.enabled=false")
    w = Writer()

    def crash():
        raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        run_pipeline(spark, cfg, W, [w], run_id="crashed", hooks=RunHooks(before_commit=crash))
    tables = make_ctx(spark, cfg).tables
    assert tables.read("discover_weekly").count() == 0
    assert not w.cached.is_cached
    status = {r["stage"]: r["status"] for r in tables.read("runs").collect()}
    assert status == {"write": "failed"}
