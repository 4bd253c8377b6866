"""The notebooks run end to end (as plain Python) on the session's tiny synthetic platform."""

import datetime as dt
import runpy
import shutil

import pytest

from conftest import TINY_OVERRIDES
from recsys_spark.config import REPO_ROOT
from recsys_spark.tables import Tables

NB = REPO_ROOT / "notebooks"
W = dt.date(2026, 11, 23)
W_PREV = dt.date(2026, 11, 16)
SETTINGS = TINY_OVERRIDES


@pytest.fixture(scope="module")
def platform(spark, tiny_weeks, tmp_path_factory):
    # the session's tiny platform after weeks W-7 and W (conftest), copied as it was after W
    root = tmp_path_factory.mktemp("nb")
    for sub in ("warehouse", "models"):
        if (tiny_weeks["after_w"] / sub).exists():
            shutil.copytree(tiny_weeks["after_w"] / sub, root / sub)
    tables = Tables(spark, warehouse=str(root / "warehouse"))
    # a user served both weeks (chosen from the data only to have something to show)
    user = sorted(r["user_id"] for r in tables.read("discover_weekly").groupBy("user_id").count()
                  .where("count > 40").collect())[0]
    return root, tables, tiny_weeks["res"], user


def _run(nb, monkeypatch, capsys, root, **env):
    monkeypatch.setenv("RECSYS_WAREHOUSE", str(root / "warehouse"))
    monkeypatch.setenv("RECSYS_SET", ";".join(SETTINGS))
    for k, v in env.items():
        monkeypatch.setenv(f"RECSYS_{k.upper()}", v)
    runpy.run_path(str(NB / nb), run_name="__main__")
    return capsys.readouterr().out


def _sections(out):
    return [line.strip("= ") for line in out.splitlines() if line.startswith("=== ") and line.endswith(" ===")]


@pytest.mark.parametrize("path", sorted(NB.glob("*.py")), ids=lambda p: p.name)
def test_databricks_source_format(path):
    text = path.read_text()
    assert text.startswith("# Databricks notebook source\n")
    assert text.count("# COMMAND ----------") >= 3
    assert "# MAGIC %md" in text
    # thin callers: no function or class definitions, no Spark transformations of their own
    assert "\ndef " not in text and "\nclass " not in text and "groupBy(" not in text and ".join(" not in text


def test_explore_user_playlist(platform, monkeypatch, capsys):
    root, tables, _, user = platform
    out = _run("01_explore_user_playlist.py", monkeypatch, capsys, root, week=W.isoformat(), user=user)
    assert _sections(out) == ["Seeds and playlist", "Why each track is there", "Last week's playlist"]
    assert f"user: {user}" in out and f"Discover Weekly for {user}, week of 2026-11-23" in out
    assert "Recently played" in out
    why = out.split("=== Why each track is there ===", 1)[1].split("=== Last week's playlist ===")[0]
    titles = {r["title"] for r in tables.read("discover_weekly").where(f"user_id = '{user}' AND week_start = '{W}'")
              .join(tables.read("tracks"), "track_id").select("title").collect()}
    assert len(titles) > 20 and all(t[:20] in why for t in titles)


def test_downstream_queries(platform, monkeypatch, capsys):
    root, tables, res, user = platform
    out = _run("02_downstream_queries.py", monkeypatch, capsys, root, user=user)
    assert _sections(out) == ["This week's playlist", "Last week's playlist (week_start partition)",
                              "Last week's playlist (Delta time travel)", "Channel mix", "Creator exposure",
                              "Quarantine summary", "Last run summary", "SQL views"]
    assert "week=2026-11-23" in out                     # default week: the latest in discover_weekly
    # last week's run was the table's first data write (the commits before it add CHECK constraints)
    first_write = min(r["version"] for r in tables.delta("discover_weekly").history().collect()
                      if r["operation"] == "WRITE")
    assert f"discover_weekly version written for last week: {first_write}" in out
    assert f"run {res.run_id} (weekly, week 2026-11-23): SUCCEEDED" in out
    assert "dw_channel_mix" in out and "future_timestamp" in out


def test_evaluation_report(platform, monkeypatch, capsys, tmp_path):
    root, _, _, _ = platform
    out = _run("03_evaluation_report.py", monkeypatch, capsys, root, eval_methods="popularity",
               eval_out=str(tmp_path / "eval"))
    assert _sections(out) == ["Evaluation", "Report"]
    assert "popularity       recall@30" in out
    assert (tmp_path / "eval" / "report.md").exists() and (tmp_path / "eval" / "metrics.json").exists()
