"""Argument and path checks made before Spark starts, the week-vs-data check, the id rule."""

import datetime as dt
import importlib.util
import os

import pytest

from recsys_spark.validation import (InputError, check_input_path, check_warehouse_path, check_week_against_data,
                                     normalize_id_value)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ingest_job():
    spec = importlib.util.spec_from_file_location("jobs_ingest", os.path.join(REPO, "jobs", "ingest.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_week_far_after_the_data_is_refused():
    last = dt.datetime(2026, 11, 22, 23, 0)
    assert check_week_against_data("2026-11-23", last, 7) == dt.date(2026, 11, 23)
    assert check_week_against_data("2026-11-30", last, 7) == dt.date(2026, 11, 30)
    with pytest.raises(InputError, match="days after the last interaction"):
        check_week_against_data("2027-06-07", last, 7)
    with pytest.raises(InputError, match="no interactions at all"):
        check_week_against_data("2026-11-23", None, 7)
    with pytest.raises(ValueError, match="must be a Monday"):
        check_week_against_data("2026-11-24", last, 7)


def test_paths(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    assert check_input_path(str(f)) == str(f)
    with pytest.raises(InputError, match="does not exist"):
        check_input_path(str(tmp_path / "missing"))
    assert check_input_path(f"file://{f}") == f"file://{f}"
    # raw input is read with Python: an object-store URI is refused up front, naming what works
    for uri in ("s3a://bucket/raw", "abfss://c@a.dfs.core.windows.net/raw", "dbfs:/mnt/raw"):
        with pytest.raises(InputError, match=r"--raw: .* URI; raw input is read from a local or mounted path \(/Volumes"):
            check_input_path(uri, "--raw")
    with pytest.raises(InputError, match="is a file"):
        check_warehouse_path(str(f))
    with pytest.raises(InputError, match="is a file"):
        check_warehouse_path(str(f / "sub"))
    assert check_warehouse_path(str(tmp_path / "new" / "wh")) == str(tmp_path / "new" / "wh")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_unreadable_input_path(tmp_path):
    d = tmp_path / "locked"
    d.mkdir()
    d.chmod(0)
    try:
        with pytest.raises(InputError, match="permission denied"):
            check_input_path(str(d))
    finally:
        d.chmod(0o755)


def test_ingest_job_exits_2_before_spark(tmp_path, capsys):
    job = _ingest_job()
    with pytest.raises(SystemExit) as exc:
        job.main(["--entity", "tracks", "--path", str(tmp_path / "missing.json")])
    assert exc.value.code == 2
    assert "input path does not exist" in capsys.readouterr().err
    raw = tmp_path / "raw"
    (raw / "tracks").mkdir(parents=True)
    wh = tmp_path / "warehouse-file"
    wh.write_text("not a folder")
    with pytest.raises(SystemExit) as exc:
        job.main(["--raw", str(raw), "--set", f"storage.warehouse={wh}"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "is a file" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exc:
        job.main(["--raw", str(tmp_path / "empty-raw-missing")])
    assert exc.value.code == 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        job.main(["--raw", "s3a://bucket/recsys/raw"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--raw: s3a://bucket/recsys/raw is a s3a: URI" in err and "Traceback" not in err


def test_normalize_id_python_and_spark_agree(spark):
    from pyspark.sql import functions as F

    from recsys_spark.validation import id_problem, normalize_id

    raw = ["\u00a0t1\u200b", "Cafe\u0301", " u\u3000", "\ufeffx\u2060", "t\u200b1", "a b", "\u200b", "plain"]
    want = ["t1", "Caf\u00e9", "u", "x", "t\u200b1", "a b", "", "plain"]
    assert [normalize_id_value(v) for v in raw] == want
    df = spark.createDataFrame([(v,) for v in raw], "s string")
    got = df.select(normalize_id(F.col("s")).alias("n")).withColumn("bad", id_problem(F.col("n"))).collect()
    assert [r["n"] for r in got] == want
    assert [r["bad"] for r in got] == [False, False, False, False, True, False, False, False]


def test_weekly_refuses_a_warehouse_that_is_a_file_before_spark(tmp_path, capsys):
    from recsys_spark.cli import weekly_main

    wh = tmp_path / "warehouse-file"
    wh.write_text("not a folder")
    assert weekly_main(["--week", "2026-11-23", "--set", f"storage.warehouse={wh}"]) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
