"""OPTIMIZE / Z-ORDER and VACUUM on a tiny Delta table with known file counts."""

import datetime as dt

import pytest
from pyspark.sql import functions as F

from recsys_spark import maintenance as M

W_PREV = dt.date(2026, 11, 16)
W = dt.date(2026, 11, 23)
GEN = dt.datetime(2026, 11, 23, 6)


def _rows(spark, week, users):
    data = [(week, u, p, f"t{p}", 1.0, ["popular"], "r", "v", "run", GEN) for u in users for p in (1, 2)]
    return spark.createDataFrame(data, "week_start date, user_id string, position int, track_id string, score double, "
                                       "sources array<string>, reason string, model_version string, run_id string, "
                                       "generated_at timestamp").coalesce(1)


def _files(spark, tables, week=None):
    df = spark.read.format("delta").load(tables.path("discover_weekly"))
    if week is not None:
        df = df.where(F.col("week_start") == F.lit(week))
    return df.select(F.input_file_name().alias("f")).distinct().count()


def _content(tables):
    return sorted(tuple(r) for r in tables.read("discover_weekly").select("week_start", "user_id", "position").collect())


@pytest.fixture()
def small_files(spark, tables):
    for users in (["u1"], ["u2"], ["u3"], ["u4"]):      # 4 appends -> 4 files in week W
        tables.append("discover_weekly", _rows(spark, W, users))
    for users in (["u1"], ["u2"]):                      # 2 files in week W_PREV
        tables.append("discover_weekly", _rows(spark, W_PREV, users))
    return tables


def test_optimize_zorder_compacts_only_the_week(spark, small_files):
    tables = small_files
    before = _content(tables)
    assert (_files(spark, tables, W), _files(spark, tables, W_PREV)) == (4, 2)
    m = M.optimize(spark, tables, "discover_weekly", ["user_id"], week=W)
    assert m == {"files_added": 1.0, "files_removed": 4.0, "partitions_optimized": 1.0}
    assert (_files(spark, tables, W), _files(spark, tables, W_PREV)) == (1, 2)
    assert _content(tables) == before
    op = tables.delta("discover_weekly").history(1).select("operation", "operationParameters").first()
    assert op["operation"] == "OPTIMIZE" and "user_id" in op["operationParameters"]["zOrderBy"]
    with pytest.raises(ValueError, match="partition column"):
        M.optimize(spark, tables, "discover_weekly", ["week_start"])
    with pytest.raises(ValueError, match="no column"):
        M.optimize(spark, tables, "discover_weekly", ["nope"])


def test_vacuum_default_keeps_time_travel_and_refuses_short_retention(spark, small_files):
    tables = small_files
    v_before = tables.version("discover_weekly")
    M.optimize(spark, tables, "discover_weekly", ["user_id"])
    assert len(tables.read("discover_weekly", version=v_before).collect()) == 12  # old small files still there

    res = M.vacuum(spark, tables, "discover_weekly")
    assert res["retention_hours"] == 336.0 and res["files_deleted"] == 0.0
    assert len(tables.read("discover_weekly", version=v_before).collect()) == 12  # time travel still works

    conf_before = spark.conf.get(M.RETENTION_CHECK_CONF, None)
    with pytest.raises(ValueError, match="refusing"):
        M.vacuum(spark, tables, "discover_weekly", retention_hours=0)
    with pytest.raises(ValueError, match="refusing"):
        M.run_maintenance(spark, tables, retention_hours=24)
    assert len(tables.read("discover_weekly", version=v_before).collect()) == 12

    forced = M.vacuum(spark, tables, "discover_weekly", retention_hours=0, force_retention=True)
    assert forced["files_deleted"] == 6.0                        # the 4 + 2 compacted small files
    assert spark.conf.get(M.RETENTION_CHECK_CONF, None) == conf_before   # check restored, not disabled globally
    assert tables.read("discover_weekly").count() == 12
    with pytest.raises(Exception):  # count() could be answered from the log's stats; collect reads files
        tables.read("discover_weekly", version=v_before).collect()


def test_run_maintenance_records_steps(spark, small_files):
    tables = small_files
    steps = M.run_maintenance(spark, tables, week=W, names=["discover_weekly", "candidates", "runs"])
    got = [(s["table"], s["operation"]) for s in steps]
    assert got == [("discover_weekly", "optimize"), ("discover_weekly", "vacuum"), ("runs", "optimize"),
                   ("runs", "vacuum")]
    assert steps[0]["files_removed"] == 4.0
    runs = {r["stage"]: r for r in tables.read("runs").where(F.col("job") == "maintenance").collect()}
    assert runs["optimize.discover_weekly"]["status"] == "succeeded"
    assert runs["optimize.discover_weekly"]["counts"]["files_removed"] == 4.0
    assert runs["optimize.candidates"]["status"] == "skipped"
    assert runs["optimize.candidates"]["skipped"] == "table does not exist"
