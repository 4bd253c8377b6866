"""A hand-made platform for the stage tests (imported by them; not a conftest, whose module name
would shadow tests/conftest.py for ``from conftest import ...``): 3 users, 6 tracks (+1 created after W), known answers.

Week W = 2026-11-23.

=====  =======  ======  ==========================================================
track  creator  genre   note
=====  =======  ======  ==========================================================
t1     c1       rock    audio
t2     c1       rock
t3     c2       jazz
t4     c2       jazz
t5     c3       pop
t6     c3       pop
t7     c3       pop     created 2026-11-25, after W: not in W's catalog
=====  =======  ======  ==========================================================

Users: ``u1`` played t1 (11-10) and t2 (11-17), and t3 on 11-24 (after W: not history);
``u2`` played t1 and t3 (11-18); ``u3`` only skipped t5 (weight 0, 11-19) and wrote a prompt
(11-20). Every user is served; heard before W: u1 {t1, t2}, u2 {t1, t3}, u3 {t5}.
"""

import atexit
import datetime as dt
import os
import shutil
import tempfile

import pytest

W = dt.date(2026, 11, 23)
OLD = dt.datetime(2026, 10, 1)


def track_rows(creators=True, stats=True, audio=True):
    rows = []
    for i, (c, g) in enumerate([("c1", "rock"), ("c1", "rock"), ("c2", "jazz"), ("c2", "jazz"), ("c3", "pop"),
                                ("c3", "pop"), ("c3", "pop")], start=1):
        created = dt.datetime(2026, 11, 25) if i == 7 else OLD
        counts = (100 * i, 10 * i, i) if stats else (None, None, None)
        rows.append(dict(track_id=f"t{i}", creator_id=c if creators else "", title=f"song {i}", prompt=f"{g} song",
                         tags=[g], genre=g, duration_s=120.0, created_at=created,
                         audio_uri=f"/audio/t{i}.wav" if (audio and i == 1) else None,
                         play_count=counts[0], upvote_count=counts[1], comment_count=counts[2], ingested_at=OLD))
    return rows


INTERACTIONS = [
    ("u1", "t1", dt.datetime(2026, 11, 10, 12), "play", 1.0),
    ("u1", "t2", dt.datetime(2026, 11, 17, 12), "play", 1.0),
    ("u1", "t3", dt.datetime(2026, 11, 24, 12), "play", 1.0),
    ("u2", "t1", dt.datetime(2026, 11, 18, 12), "play", 1.0),
    ("u2", "t3", dt.datetime(2026, 11, 18, 13), "play", 1.0),
    ("u3", "t5", dt.datetime(2026, 11, 19, 12), "skip", 0.0),
]


#: the hand-made platform's three tables per variant ``(creators, stats, audio, prompts)``,
#: written once per test process into a folder of their own (:func:`write_platform` copies them)
_WRITTEN = {}
PLATFORM_TABLES = ("tracks", "interactions", "user_prompts")


def write_platform(spark, tables, creators=True, stats=True, audio=True, prompts=True):
    """The hand-made tables (see the module doc) in ``tables``.

    Each variant is written through ``Tables.overwrite`` once per process; a warehouse that has
    none of the three tables yet gets a copy of those Delta folders (the same log and files, about
    2.6 s of Spark writes saved per call: the stage tests call this ~30 times), any other warehouse
    (a catalog, or one that has one of them already) gets them written."""
    from recsys_spark.safety import is_uri
    from recsys_spark.tables import Tables

    key = (creators, stats, audio, prompts)
    if tables.mode != "path" or is_uri(tables.warehouse) or any(os.path.exists(tables.path(t))
                                                               for t in PLATFORM_TABLES):
        return _write_platform(spark, tables, *key)
    if key not in _WRITTEN:
        folder = tempfile.mkdtemp(prefix="recsys-hand-platform-")
        atexit.register(shutil.rmtree, folder, True)
        _write_platform(spark, Tables(spark, warehouse=folder), *key)
        _WRITTEN[key] = folder
    for name in PLATFORM_TABLES:
        shutil.copytree(os.path.join(_WRITTEN[key], name), tables.path(name))
    return tables


def _write_platform(spark, tables, creators, stats, audio, prompts):
    from recsys_spark.tables import ALL_TABLES

    tables.overwrite("tracks", spark.createDataFrame(track_rows(creators, stats, audio),
                                                     ALL_TABLES["tracks"].schema))
    inter = [(u, t, ts, e, w, ts.date(), OLD) for u, t, ts, e, w in INTERACTIONS]
    tables.overwrite("interactions", spark.createDataFrame(inter, ALL_TABLES["interactions"].schema))
    p = [("p1", "u3", "calm piano at night", dt.datetime(2026, 11, 20), OLD)] if prompts else []
    tables.overwrite("user_prompts", spark.createDataFrame(p, ALL_TABLES["user_prompts"].schema))
    return tables


def make_cfg(tmp_path, *overrides):
    from recsys_spark.config import load_config

    return load_config(overrides=[f"storage.warehouse={tmp_path / 'warehouse'}",
                                  f"storage.model_dir={tmp_path / 'models'}", "spark.shuffle_partitions=2",
                                  *overrides])


def make_ctx(spark, cfg, run_id="run-1"):
    from recsys_spark.pipeline import RunContext
    from recsys_spark.tables import Tables

    return RunContext(spark, cfg, Tables.from_config(spark, cfg.storage), W, run_id)


def log_runs(ctx, stages):
    """Run ``stages`` on ``ctx`` through the runner, recording them in ``runs`` (ctx.run_id)."""
    from recsys_spark.pipeline import run_stages
    from recsys_spark.runlog import RunLog

    runlog = RunLog(ctx.tables, ctx.run_id, ctx.week, "weekly", ctx.fingerprint, progress_seconds=0)
    run_stages(ctx, stages, runlog)
    return {r.stage: r for r in runlog.records}


@pytest.fixture()
def hand_platform(spark, tmp_path):
    """Config (embeddings off, small playlists) and tables of the hand-made platform."""
    cfg = make_cfg(tmp_path, "embeddings.enabled=false")
    ctx = make_ctx(spark, cfg)
    write_platform(spark, ctx.tables)
    return cfg, ctx
