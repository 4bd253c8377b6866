"""Spark Connect: the downstream queries, views and notebooks run over a Connect session; the
weekly job stops at once there, naming the stages that need a classic session.

A local Spark Connect server (the ``spark-connect`` jar shipped with pyspark, Delta's jars by
``--packages``, :func:`recsys_spark.spark.connect_server_command`) is started as a subprocess on a
free port and always stopped, with its whole process group, also when a test fails.

Everything on the client side runs in ONE separate Python process (this file run as a script):
creating a Connect session flips PySpark into Connect mode for the whole process
(``SPARK_CONNECT_MODE_ENABLED``), which must not leak into the classic session of the other tests.
That process writes a tiny warehouse through Connect (``Tables``: tables created by SQL DDL with
their CHECK constraints and properties), asks every query with hand-computed answers, registers
the views, runs notebooks 01 and 02, calls ``run_weekly`` and runs ``recsys weekly`` with
``SPARK_REMOTE`` set; it reports a JSON that the tests below check.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

W, P = "2026-11-23", "2026-11-16"  # this week and last week (Mondays)
HERE = Path(__file__).resolve()
REPO = HERE.parents[2]


# ------------------------------------------------------------------------------------------------
# the server (pytest process)
# ------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive_in_group(pgid: int) -> list:
    """Live (not zombie) processes of process group ``pgid``, from /proc."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # state, ppid, pgrp
            alive.append(int(stat.parent.name))
    return alive


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL what is left after 20 s."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        deadline = time.time() + wait  # children (a launcher shell) may outlive the JVM briefly
        while _alive_in_group(proc.pid) and time.time() < deadline:
            time.sleep(0.2)
        if not _alive_in_group(proc.pid):
            return


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory):
    for mod in ("grpc", "grpc_status", "google.rpc", "zstandard"):
        pytest.importorskip(mod, reason="Spark Connect client: pip install 'recsys-spark[connect]'")
    from recsys_spark.spark import connect_server_command

    root = tmp_path_factory.mktemp("connect")
    port = _free_port()
    # small and quick to warm up: 2 partitions, no AQE, the JVM's C1 compiler only (short-lived server)
    cmd = connect_server_command(port=port, warehouse_dir=str(root / "spark-warehouse"), conf={
        "spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2", "spark.sql.adaptive.enabled": "false",
        "spark.databricks.delta.snapshotPartitions": "1",
        "spark.driver.extraJavaOptions": "-Dio.netty.tryReflectionSetAccessible=true -XX:TieredStopAtLevel=1 "
                                         "-XX:+UseSerialGC"})
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    env.pop("SPARK_REMOTE", None)
    log_path = root / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env,
                                start_new_session=True)  # own process group: stopped as a whole
    try:
        deadline = time.time() + 150
        while True:
            if proc.poll() is not None:
                pytest.fail(f"Spark Connect server exited with {proc.returncode}:\n"
                            f"{log_path.read_text()[-4000:]}")
            with socket.socket() as s:
                s.settimeout(1)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.time() > deadline:
                pytest.fail(f"Spark Connect server not listening on {port} after 150 s:\n"
                            f"{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        yield {"url": f"sc://127.0.0.1:{port}", "root": root, "proc": proc, "log": log_path,
               "start_seconds": round(time.time() - deadline + 150, 1)}
    finally:
        _stop(proc)
        assert proc.poll() is not None, "the Spark Connect server is still running"
        assert _alive_in_group(proc.pid) == [], "processes of the Spark Connect server left behind"


@pytest.fixture(scope="module")
def results(connect_server):
    """Runs the client process once; its JSON report."""
    out = connect_server["root"] / "client.json"
    wh = connect_server["root"] / "warehouse"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECSYS_", "SPARK_REMOTE"))}
    proc = subprocess.run([sys.executable, str(HERE), connect_server["url"], str(wh), str(out)],
                          cwd=connect_server["root"], env={**env, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 or not out.exists():
        pytest.fail(f"Connect client failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    report = json.loads(out.read_text())
    print(f"server start {connect_server['start_seconds']}s, client steps {report['seconds']}")
    return report


def _ok(results, key):
    value = results[key]
    assert not (isinstance(value, dict) and "error" in value), f"{key}: {value.get('error')}"
    return value


# ------------------------------------------------------------------------------------------------
# the tests (pytest process)
# ------------------------------------------------------------------------------------------------


def test_the_session_is_a_connect_session_and_tables_are_created_with_their_rules(results):
    s = _ok(results, "session")
    assert s["is_connect"] and s["module"].startswith("pyspark.sql.connect")
    t = _ok(results, "tables")
    assert t["partition_columns"] == ["week_start"]
    assert t["properties"]["delta.enableChangeDataFeed"] == "true"
    assert t["properties"]["delta.deletedFileRetentionDuration"] == "interval 14 days"
    assert "delta.constraints.position_1_to_30" in t["properties"]
    assert "DELTA_VIOLATE_CONSTRAINT" in t["bad_position_write"] or "CHECK constraint" in t["bad_position_write"]
    assert t["exists"] == {"discover_weekly": True, "user_prompts": False}
    assert t["versions"]["after_p"] < t["versions"]["after_rerun_p"]


def test_playlists_over_connect(results):
    q = _ok(results, "queries")
    assert q["playlist_u1_w"] == [[1, "t1", "T1"], [2, "t2", "T2"], [3, "t4", "T4"]]
    assert q["playlist_injection"] == []  # a bound parameter: matches nobody
    assert q["last_week_partition"] == [[1, "t5"]]  # the rerun of P replaced the partition
    # as last week's run published it (the Delta version recorded in runs), before the rerun
    assert q["version_for_p"] == _ok(results, "tables")["versions"]["after_p"]
    assert q["last_week_time_travel"] == [[1, "t3"], [2, "t2"]]
    assert q["why_u1_t1"] == [[1, "t1", ["item_cf", "als"], "T6", 0.9, "because you played T6"]]


def test_aggregates_and_runs_over_connect(results):
    q = _ok(results, "queries")
    # week W: u1 {t1:[item_cf,als], t2:[popular], t4:[item_cf]}, u2 {t1:[popular], t5:[als]} = 5 slots
    assert q["channel_mix_w"] == [["als", 2, 2, 1, 0.4], ["item_cf", 2, 1, 1, 0.4], ["popular", 2, 2, 2, 0.4]]
    assert q["creator_exposure_w"] == [["c1", 3, 2, 2, 1.0], ["c2", 2, 2, 2, 1.0]]
    assert q["quarantine"] == [["interactions", "negative_weight", 2, 1]]
    assert q["last_run"] == {"run_id": "weekly-W", "status": "succeeded", "users_served": 2, "users_short": 0,
                             "stages": ["write", "run"]}
    assert q["runs_overview"] == [["weekly-W", "succeeded"], ["weekly-P", "succeeded"]]


def test_views_over_connect(results):
    v = _ok(results, "views")
    assert {"dw_playlists", "dw_latest_playlists", "dw_explanations", "dw_channel_mix", "dw_creator_exposure",
            "dw_quarantine_summary", "dw_runs_overview", "dw_run_stages"} <= set(v["created"])
    assert v["latest_playlists"] == [[W, 5]]  # only the newest week
    assert v["playlists_rows"] == 6  # 5 of W + 1 of P (after its rerun)
    assert v["channel_mix_p"] == [["als", 1]]


def test_notebooks_over_connect(results):
    nb1 = _ok(results, "notebook_01")
    assert nb1["sections"] == ["Seeds and playlist", "Why each track is there", "Last week's playlist"]
    assert f"Discover Weekly for u1, week of {W}" in nb1["out"]
    assert "T6" in nb1["out"]  # the seed, from u1's interactions
    nb2 = _ok(results, "notebook_02")
    assert f"week={W}" in nb2["out"]  # the default week: the latest in discover_weekly
    assert nb2["sections"][0] == "This week's playlist" and nb2["sections"][-1] == "SQL views"
    assert f"discover_weekly version written for last week: {_ok(results, 'tables')['versions']['after_p']}" \
        in nb2["out"]
    assert "dw_channel_mix" in nb2["out"] and "weekly-W" in nb2["out"]


def test_weekly_stops_at_once_over_connect(results):
    lib = _ok(results, "run_weekly")
    assert lib["raised"] == "ClassicSessionRequired"
    assert set(lib["stages"]) == {"recall.als", "recall.content", "recall.prompt", "write"}
    cli = _ok(results, "cli_weekly")
    assert cli["rc"] == 2
    msg = cli["stderr"]
    assert "`recsys weekly` needs a classic SparkSession" in msg and "Spark Connect session" in msg
    for stage, why in (("recall.als", "SparkContext.broadcast"), ("recall.content", "faiss index")):
        assert f"stage {stage} " in msg and why in msg
    assert "Nothing was run" in msg
    # nothing written: no run row, no new discover_weekly version
    assert cli["runs_rows_before"] == cli["runs_rows_after"]
    assert cli["dw_version_before"] == cli["dw_version_after"]


# ------------------------------------------------------------------------------------------------
# the client process: python tests/deploy/test_connect.py URL WAREHOUSE OUT.json
# ------------------------------------------------------------------------------------------------


def _write_tiny_warehouse(spark, tables, report):
    """Tracks, interactions, quarantine, candidates, discover_weekly (P, W, a rerun of P) and runs."""
    import datetime as dt

    from recsys_spark import tables as tbl

    w, p = dt.date.fromisoformat(W), dt.date.fromisoformat(P)
    ts = dt.datetime(2026, 11, 22, 12, 0)
    tracks = [(f"t{i}", c, f"T{i}", f"prompt {i}", ["synth", g], g, 120.0, dt.datetime(2026, 10, 1), None, 10 * i, i, 0,
               ts) for i, c, g in ((1, "c1", "pop"), (2, "c1", "pop"), (3, "c1", "rock"), (4, "c2", "jazz"),
                                   (5, "c2", "jazz"), (6, "c3", "rock"))]
    tables.overwrite("tracks", spark.createDataFrame(tracks, tbl.TRACKS.schema))
    inter = [("u1", "t6", dt.datetime(2026, 11, d, 9), "play", 1.0, dt.date(2026, 11, d), ts) for d in (18, 20)]
    inter += [("u2", "t3", dt.datetime(2026, 11, 19, 9), "upvote", 2.0, dt.date(2026, 11, 19), ts)]
    tables.append("interactions", spark.createDataFrame(inter, tbl.INTERACTIONS.schema))
    quarantine = [("interactions:file:/raw/i.json", "interactions", f'{{"weight": -{i}}}', "negative_weight",
                   f"h{i}", "ingest-1", ts, dt.date(2026, 11, 22)) for i in (1, 2)]
    tables.append("quarantine", spark.createDataFrame(quarantine, tbl.QUARANTINE.schema))
    cands = [(w, "u1", "t1", ["item_cf", "als"], 0.7, 0.8, 0.5, 0.9, "t6", None),
             (w, "u1", "t2", ["popular"], 0.5, 0.6, 0.5, 0.6, None, None)]
    tables.replace_partition("candidates", spark.createDataFrame(cands, tbl.CANDIDATES.schema), "week_start", w)

    def dw(week, rows, run_id):
        return spark.createDataFrame(
            [(week, u, pos, t, 1.0 - pos / 10, src, "because you played T6" if t == "t1" else "popular", "m1",
              run_id, ts) for u, pos, t, src in rows], tbl.DISCOVER_WEEKLY.schema)

    week_p = [("u1", 1, "t3", ["popular"]), ("u1", 2, "t2", ["item_cf"])]
    week_w = [("u1", 1, "t1", ["item_cf", "als"]), ("u1", 2, "t2", ["popular"]), ("u1", 3, "t4", ["item_cf"]),
              ("u2", 1, "t1", ["popular"]), ("u2", 2, "t5", ["als"])]
    tables.replace_partition("discover_weekly", dw(p, week_p, "weekly-P"), "week_start", p)
    v_p = tables.version("discover_weekly")
    tables.replace_partition("discover_weekly", dw(w, week_w, "weekly-W"), "week_start", w)
    # a rerun of P replaces the partition: time travel to v_p still shows what users got
    tables.replace_partition("discover_weekly", dw(p, [("u1", 1, "t5", ["als"])], "weekly-P2"), "week_start", p)
    v_rerun = tables.version("discover_weekly")

    def run_rows(run_id, week, t0, users, version):
        return [(run_id, week, "weekly", "write", "succeeded", t0, t0 + dt.timedelta(seconds=5), 5.0, None, 5,
                 {"table_version": float(version)}, None, None, "cfg"),
                (run_id, week, "weekly", "run", "succeeded", t0, t0 + dt.timedelta(seconds=9), 9.0, None, 5,
                 {"users": float(users), "short_users": 0.0, "total_seconds": 9.0}, None, None, "cfg")]

    runs = run_rows("weekly-P", p, dt.datetime(2026, 11, 16, 6), 1, v_p) + \
        run_rows("weekly-W", w, dt.datetime(2026, 11, 23, 6), 2, v_p + 1)
    tables.append("runs", spark.createDataFrame(runs, tbl.RUNS.schema))

    detail = spark.sql(f"DESCRIBE DETAIL {tables.qualified('discover_weekly')}").first()
    try:
        tables.append("discover_weekly", dw(w, [("u9", 31, "t1", ["popular"])], "bad"))
        bad = "accepted"
    except Exception as exc:  # noqa: BLE001 - the CHECK constraint must refuse it
        bad = str(exc)[:500]
    report["tables"] = {
        "partition_columns": list(detail["partitionColumns"]), "properties": dict(detail["properties"]),
        "bad_position_write": bad,
        "exists": {"discover_weekly": tables.exists("discover_weekly"), "user_prompts": tables.exists("user_prompts")},
        "versions": {"after_p": v_p, "after_rerun_p": v_rerun},
    }


def _queries(spark, tables):
    from recsys_spark import queries as Q

    def rows(df, *cols):
        return [[r[c] for c in cols] for r in df.collect()]

    summary = Q.last_run_summary(spark, tables, week=W)
    return {
        "playlist_u1_w": rows(Q.playlist(spark, tables, "u1", W), "position", "track_id", "title"),
        "playlist_injection": rows(Q.playlist(spark, tables, "x' OR '1'='1", W), "position"),
        "last_week_partition": rows(Q.last_week_playlist(spark, tables, "u1", W), "position", "track_id"),
        "version_for_p": Q.version_for_week(spark, tables, P),
        "last_week_time_travel": rows(Q.last_week_playlist_time_travel(spark, tables, "u1", W), "position", "track_id"),
        "why_u1_t1": rows(Q.why_picked(spark, tables, "u1", W, track_id="t1"), "position", "track_id", "channels",
                          "seed_title", "final_score", "reason"),
        "channel_mix_w": sorted([r[0], r[1], r[2], r[3], round(r[4], 6)] for r in rows(
            Q.channel_mix(spark, tables, since=W, until=W), "channel", "slots", "users", "only_source_slots",
            "share_of_slots")),
        "creator_exposure_w": [[r[0], r[1], r[2], r[3], round(r[4], 6)] for r in rows(
            Q.creator_exposure(spark, tables, W), "creator_id", "slots", "tracks", "users", "share_of_users")],
        "quarantine": rows(Q.quarantine_summary(spark, tables), "entity", "reason", "records", "files"),
        "last_run": {"run_id": summary.run_id, "status": summary.status, "users_served": summary.users_served,
                     "users_short": summary.users_short, "stages": [s["stage"] for s in summary.stages]},
        "runs_overview": rows(Q.runs_overview(spark, tables), "run_id", "status"),
    }


def _views(spark, tables):
    from recsys_spark import queries as Q

    created = Q.create_views(spark, tables)
    return {
        "created": sorted(created),
        "latest_playlists": [[str(r[0]), r[1]] for r in spark.sql(
            "SELECT week_start, COUNT(*) FROM dw_latest_playlists GROUP BY week_start").collect()],
        "playlists_rows": spark.sql("SELECT * FROM dw_playlists").count(),
        "channel_mix_p": [[r[0], r[1]] for r in spark.sql(
            f"SELECT channel, slots FROM dw_channel_mix WHERE week_start = DATE'{P}'").collect()],
    }


def _notebook(name, wh, **params):
    import contextlib
    import io
    import runpy

    env = {"RECSYS_WAREHOUSE": wh, **{f"RECSYS_{k.upper()}": v for k, v in params.items()}}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            runpy.run_path(str(REPO / "notebooks" / name), run_name="__main__")
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    out = buf.getvalue()
    return {"out": out, "sections": [ln.strip("= ") for ln in out.splitlines()
                                     if ln.startswith("=== ") and ln.endswith(" ===")]}


def _weekly_refusal(spark, tables, url, wh):
    from recsys_spark.config import load_config
    from recsys_spark.pipeline import run_weekly
    from recsys_spark.spark import ClassicSessionRequired
    from recsys_spark.weeks import require_monday

    cfg = load_config(None, overrides=[f"storage.warehouse={wh}"])
    try:
        run_weekly(spark, cfg, require_monday(W))
        lib = {"raised": None}
    except ClassicSessionRequired as exc:
        lib = {"raised": type(exc).__name__, "stages": sorted(exc.stages)}

    before = (tables.read("runs").count(), tables.version("discover_weekly"))
    env = {**os.environ, "SPARK_REMOTE": url}
    proc = subprocess.run([sys.executable, "-m", "recsys_spark.cli", "weekly", "--week", W, "--set",
                           f"storage.warehouse={wh}"], env=env, capture_output=True, text=True, timeout=120)
    after = (tables.read("runs").count(), tables.version("discover_weekly"))
    cli = {"rc": proc.returncode, "stderr": proc.stderr[-3000:], "stdout": proc.stdout[-2000:],
           "runs_rows_before": before[0], "runs_rows_after": after[0],
           "dw_version_before": before[1], "dw_version_after": after[1]}
    return lib, cli


def _client(url: str, wh: str, out: str) -> None:
    import traceback

    from recsys_spark.spark import get_spark, is_connect
    from recsys_spark.tables import Tables

    report = {}
    spark = get_spark(remote=url)
    report["session"] = {"is_connect": is_connect(spark), "module": type(spark).__module__}
    tables = Tables(spark, warehouse=wh)

    timings = report.setdefault("seconds", {})

    def step(key, fn):
        t0 = time.time()
        try:
            value = fn()
            if value is not None:
                report[key] = value
        except Exception as exc:  # noqa: BLE001 - reported, the tests say which part failed
            report[key] = {"error": f"{type(exc).__name__}: {str(exc)[:1500]}\n{traceback.format_exc()[-2500:]}"}
        timings[key] = round(time.time() - t0, 1)

    step("tables", lambda: _write_tiny_warehouse(spark, tables, report))
    step("queries", lambda: _queries(spark, tables))
    step("views", lambda: _views(spark, tables))
    step("notebook_01", lambda: _notebook("01_explore_user_playlist.py", wh, week=W, user="u1"))
    step("notebook_02", lambda: _notebook("02_downstream_queries.py", wh, user="u1"))

    def refusal():
        report["run_weekly"], report["cli_weekly"] = _weekly_refusal(spark, tables, url, wh)

    step("run_weekly", refusal)
    for key in ("run_weekly", "cli_weekly"):
        report.setdefault(key, report.get("run_weekly"))
    with open(out, "w") as f:
        json.dump(report, f, default=str)
    spark.stop()


if __name__ == "__main__":
    _client(*sys.argv[1:4])
